"""Reading a journal without writing it: :func:`verify` (the whole proof) and
:func:`iter_records` (decoded records for replay, tail and export)."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .format import (
    CHECKPOINT_FILE,
    HEADER_LEN,
    JOURNAL_FILE,
    Record,
    check_header,
    decode_record,
    genesis_hash,
)
from .journal import JournalCorrupt, JournalError, read_checkpoints
from .scan import Problem, scan

__all__ = ["VerifyReport", "verify", "iter_records", "journal_path"]


@dataclass
class VerifyReport:
    records: int = 0
    bytes: int = 0
    head: bytes = b""
    checkpoints: int = 0
    checkpoints_matched: int = 0
    problems: list[str] = field(default_factory=list)
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.problem is None

    def summary(self) -> str:
        return (f"ok: {self.records} records, {self.bytes} bytes, head {self.head.hex()}, "
                f"{self.checkpoints_matched}/{self.checkpoints} checkpoints matched")


def journal_path(directory: str | os.PathLike) -> Path:
    """The journal file of ``directory``; :class:`JournalError` (one line) if there is none."""
    directory = Path(directory)
    if not directory.exists():
        raise JournalError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise JournalError(f"{directory}: not a directory")
    path = directory / JOURNAL_FILE
    if not path.is_file():
        raise JournalError(f"{directory}: no journal ({JOURNAL_FILE}) in this directory")
    return path


def _open_map(path: Path):
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEADER_LEN)
        error = check_header(head)
        if error:
            raise JournalError(f"{path}: {error}")
        return mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)


def verify(directory: str | os.PathLike, *, hmac_key: bytes | None = None) -> VerifyReport:
    """Check every record and every checkpoint of the journal in ``directory``.

    The report's ``problem`` is the first place the journal stops being intact (record number
    and byte offset); ``problems`` lists checkpoint-file problems. Raises :class:`JournalError`
    for a directory that holds no journal.
    """
    path = journal_path(directory)
    report = VerifyReport()
    cp_path = path.parent / CHECKPOINT_FILE
    checkpoints = []
    if not cp_path.is_file():
        report.problems.append(f"{cp_path}: checkpoint file missing: truncation cannot be ruled "
                               "out")
    else:
        checkpoints, problems = read_checkpoints(cp_path, hmac_key=hmac_key)
        report.problems.extend(problems)
        if hmac_key is None and any(cp.mac is not None for cp in checkpoints):
            report.notes.append("checkpoints are signed; signatures not checked (no key given)")
    report.checkpoints = len(checkpoints)
    with _open_map(path) as buf:
        result = scan(buf, genesis_hash(buf[:HEADER_LEN]), checkpoints)
    report.records, report.bytes, report.head = result.count, result.size, result.head
    report.checkpoints_matched = result.checkpoints_matched
    report.problem = result.problem
    return report


def iter_records(directory: str | os.PathLike, *,
                 tolerate_torn: bool = True) -> Iterator[Record]:
    """The records of the journal in ``directory``, in order.

    Chain and checksums are checked on the way (checkpoints are ``verify``'s job). A torn tail
    ends the iteration if ``tolerate_torn``; other damage raises :class:`JournalCorrupt` after the
    intact records before it.
    """
    path = journal_path(directory)
    out: list[Record] = []
    with _open_map(path) as buf:
        result = scan(buf, genesis_hash(buf[:HEADER_LEN]),
                      on_record=lambda raw, offset: out.append(decode_record(raw, offset)))
    yield from out
    if result.problem is not None and not (result.problem.torn and tolerate_torn):
        raise JournalCorrupt(result.problem)
