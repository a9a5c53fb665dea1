"""FIX 4.2 wire format, defined once here (the session logic is in
:mod:`tickpath.host.gateway.fix`): split a TCP byte stream into tag=value messages, check
BodyLength (9) and CheckSum (10), build outgoing messages with both computed.

Ref: FIX 4.2 specification, Volume 1 (message format, standard header and trailer); summary
in ``docs/PROTOCOLS.md``. Only what the acceptor needs; values stay ``str`` (ASCII/latin-1).

A message that cannot be trusted (no ``8=FIX.4.2``, BodyLength not a number or pointing
anywhere but a ``10=nnn`` trailer, wrong checksum, a field without ``=``, non-numeric tag) is
*garbled*: the FIX rule is to ignore it (no reject, no sequence number consumed) and look for
the next ``8=FIX`` — the framer does that and reports each one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

__all__ = [
    "SOH", "BEGIN_STRING", "FixMessage", "Garbled", "FixFramer", "encode", "utc_timestamp",
    "checksum", "MAX_MESSAGE",
]

SOH = b"\x01"
BEGIN_STRING = "FIX.4.2"
_BEGIN = b"8=FIX.4.2\x01"
_RESYNC = b"8=FIX"
MAX_MESSAGE = 64 * 1024          # bytes of body accepted; more is garbled


def checksum(raw: bytes) -> int:
    return sum(raw) & 0xFF


def utc_timestamp(when: dt.datetime | None = None) -> str:
    """UTCTimestamp with milliseconds: ``YYYYMMDD-HH:MM:SS.sss``."""
    when = when or dt.datetime.now(dt.UTC)
    return when.strftime("%Y%m%d-%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


@dataclasses.dataclass(slots=True)
class FixMessage:
    """One well-framed message: ``fields`` in wire order (tag, value), ``raw`` its bytes."""

    fields: list[tuple[int, str]]
    raw: bytes

    def get(self, tag: int, default: str | None = None) -> str | None:
        for t, v in self.fields:
            if t == tag:
                return v
        return default

    def __contains__(self, tag: int) -> bool:
        return any(t == tag for t, _ in self.fields)

    @property
    def msg_type(self) -> str | None:
        return self.get(35)

    def seq_num(self) -> int | None:
        v = self.get(34)
        return int(v) if v is not None and v.isdigit() and v.isascii() else None


@dataclasses.dataclass(frozen=True, slots=True)
class Garbled:
    """Bytes the framer threw away, and why."""

    reason: str
    size: int


class FixFramer:
    """FIX 4.2 messages out of a byte stream, whatever the segment borders."""

    def __init__(self, *, max_message: int = MAX_MESSAGE):
        self._buf = bytearray()
        self._max = max_message

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[FixMessage | Garbled]:
        self._buf += data
        out: list[FixMessage | Garbled] = []
        for _ in range(1 << 16):              # bounded: each pass consumes bytes or stops
            item = self._next()
            if item is None:
                break
            out.append(item)
        return out

    def _drop(self, n: int, reason: str) -> Garbled:
        del self._buf[:n]
        return Garbled(reason, n)

    def _resync(self, reason: str) -> Garbled:
        """Drop this message start and everything up to the next ``8=FIX``."""
        nxt = self._buf.find(_RESYNC, 1)
        return self._drop(len(self._buf) if nxt < 0 else nxt, reason)

    def _next(self) -> FixMessage | Garbled | None:
        buf = self._buf
        if not buf:
            return None
        if not buf.startswith(_RESYNC[:len(buf)]):
            start = buf.find(_RESYNC)
            if start < 0:                       # keep a tail that may start "8=FIX"
                keep = 0
                for k in range(min(len(_RESYNC) - 1, len(buf)), 0, -1):
                    if buf.endswith(_RESYNC[:k]):
                        keep = k
                        break
                return self._drop(len(buf) - keep, "garbage before 8=FIX") \
                    if len(buf) > keep else None
            return self._drop(start, "garbage before 8=FIX")
        if len(buf) < len(_BEGIN):
            return None
        if not buf.startswith(_BEGIN):
            return self._resync("BeginString is not FIX.4.2")
        pos = len(_BEGIN)
        soh = buf.find(SOH, pos)
        if soh < 0:
            return self._resync("BodyLength too long") if len(buf) - pos > 12 else None
        field = bytes(buf[pos:soh])
        if not field.startswith(b"9=") or not field[2:].isdigit() or len(field) > 9:
            return self._resync("second field is not BodyLength (9)")
        length = int(field[2:])
        if length > self._max:
            return self._resync(f"BodyLength {length} above {self._max}")
        body_end = soh + 1 + length
        end = body_end + 7
        # a message start inside the claimed body: the BodyLength is wrong (too long)
        inner = buf.find(b"\x01" + _BEGIN, soh, min(end, len(buf)))
        if inner >= 0:
            return self._drop(inner + 1, "BodyLength runs into the next message")
        if len(buf) < end:
            return None
        trailer = bytes(buf[body_end:end])
        if not (trailer.startswith(b"10=") and trailer[3:6].isdigit() and trailer[6:] == SOH):
            return self._resync("BodyLength does not end at the CheckSum (10) field")
        if checksum(buf[:body_end]) != int(trailer[3:6]):
            return self._resync(f"CheckSum {trailer[3:6].decode()} is wrong "
                                f"(computed {checksum(buf[:body_end]):03d})")
        raw = bytes(buf[:end])
        body = raw[soh + 1:body_end]
        fields: list[tuple[int, str]] = [(8, BEGIN_STRING), (9, str(length))]
        if body and not body.endswith(SOH):
            return self._resync("body does not end with SOH")
        for part in body.split(SOH)[:-1] if body else []:
            tag, eq, value = part.partition(b"=")
            if not eq or not tag.isdigit() or len(tag) > 9 or tag.startswith(b"0"):
                return self._resync(f"bad field {part[:20]!r}")
            fields.append((int(tag), value.decode("latin-1")))
        fields.append((10, trailer[3:6].decode()))
        del buf[:end]
        return FixMessage(fields, raw)


def encode(msg_type: str, header: Iterable[tuple[int, object]],
           body: Iterable[tuple[int, object]] = ()) -> bytes:
    """``8=FIX.4.2|9=len|35=msg_type|header...|body...|10=sum|`` with both computed.
    Values are written with ``str``; ``None`` values are left out."""
    parts = [f"35={msg_type}".encode()]
    for tag, value in (*header, *body):
        if value is None:
            continue
        text = str(value).encode("latin-1")
        if SOH in text:
            raise ValueError(f"tag {tag}: value contains SOH")
        parts.append(b"%d=%s" % (tag, text))
    content = SOH.join(parts) + SOH
    head = _BEGIN + b"9=%d\x01" % len(content)
    msg = head + content
    return msg + b"10=%03d\x01" % checksum(msg)
