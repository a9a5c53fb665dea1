"""Walk a journal's records checking lengths, checksums, sequence numbers, the hash chain and the
checkpoints; the one walker behind the writer's reopen, ``verify`` and the readers.

The result says how far the journal is intact and, if not to the end, what is wrong and where, and
whether what is wrong is a torn tail (see :mod:`.format`): provably a crash's partial last record,
which a writer may trim.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .format import (
    HEADER_LEN,
    MAX_RECORD,
    MIN_RECORD,
    RECORD_MAGIC,
    VERSION,
    Checkpoint,
)

__all__ = ["Problem", "ScanResult", "scan"]

_LEAD = struct.Struct("<I2sB")      # length, magic, version
_SEQ = struct.Struct("<Q")
_SYNC = RECORD_MAGIC + bytes([VERSION])


@dataclass(frozen=True)
class Problem:
    record: int          # the record number where the journal stops being intact (0: header)
    offset: int          # its byte offset in journal.tpj
    message: str
    torn: bool = False   # provably a torn tail: a writer may trim from ``offset``

    def __str__(self) -> str:
        if self.record == 0:
            return f"file header at byte offset 0: {self.message}"
        return f"record {self.record} at byte offset {self.offset}: {self.message}"


@dataclass
class ScanResult:
    count: int                   # intact records
    end: int                     # byte offset just after the last intact record
    head: bytes                  # hash of the last intact record (genesis if none)
    size: int                    # bytes in the file
    problem: Problem | None = None
    checkpoints_matched: int = 0
    notes: list[str] = field(default_factory=list)


def _complete_record_at(buf, pos: int, size: int) -> bool:
    if size - pos < MIN_RECORD:
        return False
    length, magic, version = _LEAD.unpack_from(buf, pos)
    if magic != RECORD_MAGIC or version != VERSION or not MIN_RECORD <= length <= MAX_RECORD:
        return False
    end = pos + length
    if end > size:
        return False
    return zlib.crc32(buf[pos:end - 4]) == int.from_bytes(buf[end - 4:end], "little")


def _valid_record_after(buf, pos: int, size: int) -> int | None:
    """The offset of the first complete, checksum-valid record starting after ``pos``."""
    find = buf.find
    at = find(_SYNC, pos + 1)
    while at != -1:
        start = at - 4
        if start > pos and _complete_record_at(buf, start, size):
            return start
        at = find(_SYNC, at + 1)
    return None


def scan(buf, genesis: bytes, checkpoints: Iterable[Checkpoint] = (), *,
         on_record: Callable[[bytes, int], None] | None = None, start: int = HEADER_LEN,
         start_count: int = 0) -> ScanResult:
    """Walk the records of ``buf`` (a journal file's bytes, header included).

    ``checkpoints``: each is checked when the walk reaches its record count; ``on_record(raw,
    offset)`` is called for each intact record, in order. ``start``/``start_count`` resume a walk
    after ``start_count`` records ending at ``start`` (then ``genesis`` is that record's hash).
    """
    size = len(buf)
    pos = start
    prev = genesis
    seq = start_count
    pending = sorted((c for c in checkpoints if c.count >= seq),
                     key=lambda c: (c.count, c.line_number))
    matched = 0
    cp_i = 0
    sha256 = hashlib.sha256
    crc32 = zlib.crc32
    lead = _LEAD.unpack_from
    seq_at = _SEQ.unpack_from

    def bad(message: str, torn_possible: bool) -> ScanResult:
        torn = False
        if torn_possible:
            later = _valid_record_after(buf, pos, size)
            if later is None and cp_i < len(pending):
                cp = pending[-1]
                message += (f" (the journal's last bytes, not a torn tail: checkpoint line "
                            f"{cp.line_number} records {cp.count} records ending at byte offset "
                            f"{cp.offset}; the journal was truncated or damaged)")
            elif later is None:
                torn = True
                message += (f" at the end of the journal (torn tail: {size - pos} bytes; "
                            "reopening the journal for writing trims it)")
            else:
                message += f"; an intact record follows at byte offset {later}: corruption"
        return ScanResult(seq, pos, prev, size, Problem(seq + 1, pos, message, torn), matched)

    def check_checkpoints() -> Problem | None:
        nonlocal cp_i, matched
        while cp_i < len(pending) and pending[cp_i].count == seq:
            cp = pending[cp_i]
            cp_i += 1
            if seq == 0 and (cp.offset != pos or cp.head != prev):
                return Problem(0, 0, f"does not hash to the genesis in checkpoint line "
                               f"{cp.line_number}: the journal header was edited or replaced")
            if cp.offset != pos or cp.head != prev:
                where = "byte offset" if cp.offset != pos else "head hash"
                return Problem(seq, pos, (
                    f"checkpoint line {cp.line_number} says record {seq} ends at byte offset "
                    f"{cp.offset} with head {cp.head.hex()[:16]}…; the journal's {where} "
                    "differs: records before it were edited, removed or reordered"))
            matched += 1
        return None

    problem = check_checkpoints()
    if problem:
        return ScanResult(seq, pos, prev, size, problem, matched)
    next_cp = pending[cp_i].count if cp_i < len(pending) else -1
    while pos < size:
        if size - pos < MIN_RECORD:
            return bad(f"incomplete record ({size - pos} bytes)", True)
        length, magic, version = lead(buf, pos)
        if magic != RECORD_MAGIC or version != VERSION:
            # A crash leaves a prefix of a real record (magic intact) or, on some filesystems,
            # zeros; anything else is damage.
            zeros = not any(buf[pos:size]) if size - pos <= MAX_RECORD else False
            return bad("bad record magic or version", zeros)
        if not MIN_RECORD <= length <= MAX_RECORD:
            return bad(f"bad record length {length}", True)
        end = pos + length
        if end > size:
            return bad(f"incomplete record (length {length}, {size - pos} bytes present)", True)
        raw = buf[pos:end]
        if crc32(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            return bad("checksum mismatch: the record was edited or damaged", end == size)
        (rseq,) = seq_at(raw, 8)
        if rseq != seq + 1:
            what = "removed or reordered" if rseq > seq + 1 else "duplicated or reordered"
            return ScanResult(seq, pos, prev, size, Problem(
                seq + 1, pos, f"sequence number {rseq}, expected {seq + 1}: records {what}"),
                matched)
        if raw[24:56] != prev:
            return ScanResult(seq, pos, prev, size, Problem(
                seq + 1, pos, f"previous-record hash does not match record {seq}: the hash chain "
                "is broken (a record before it was edited, removed or reordered)"), matched)
        if on_record is not None:
            on_record(raw, pos)
        prev = sha256(raw).digest()
        seq += 1
        pos = end
        if seq == next_cp:
            problem = check_checkpoints()
            if problem:
                return ScanResult(seq, pos, prev, size, problem, matched)
            next_cp = pending[cp_i].count if cp_i < len(pending) else -1
    result = ScanResult(seq, pos, prev, size, None, matched)
    if cp_i < len(pending):
        cp = pending[-1]
        result.problem = Problem(seq + 1, pos, (
            f"the journal ends after record {seq}, but checkpoint line {cp.line_number} records "
            f"{cp.count} records ending at byte offset {cp.offset}: the journal was truncated"))
    return result
