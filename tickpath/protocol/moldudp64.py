"""MoldUDP64 1.00: NASDAQ's sequenced, message-blocked UDP transport (used under ITCH 5.0).

Ref: NASDAQ MoldUDP64 Protocol Specification, version 1.00; layout in ``docs/PROTOCOLS.md``.

Downstream packet: session(10) sequence(u64) count(u16), then ``count`` message blocks, each a
u16 length (not counting itself) and the message. Count 0 is a heartbeat, 0xFFFF the end of
session; both carry the next expected sequence and no blocks. A re-request is the same 20-byte
header sent upstream (session, first sequence wanted, count wanted).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "MoldError", "MoldPacket", "Rerequest", "Packer", "HEADER_LENGTH", "SESSION_LENGTH",
    "MAX_PAYLOAD", "HEARTBEAT_COUNT", "END_OF_SESSION_COUNT", "MAX_MESSAGES",
    "encode_packet", "heartbeat", "end_of_session", "decode_packet", "pack_messages",
    "session_bytes", "session_text",
]

HEADER = struct.Struct(">10sQH")
HEADER_LENGTH = HEADER.size              # 20
SESSION_LENGTH = 10
HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF
MAX_MESSAGES = 0xFFFE                    # 0xFFFF means end of session
#: 1500-byte Ethernet MTU less the IPv4 (20) and UDP (8) headers.
MAX_PAYLOAD = 1500 - 20 - 8
_U16 = struct.Struct(">H")


class MoldError(ValueError):
    """Malformed MoldUDP64 input; ``offset`` is where in the given buffer the fault is."""

    def __init__(self, message: str, offset: int | None = None):
        self.offset = offset
        super().__init__(message if offset is None else f"at offset {offset}: {message}")


def session_bytes(session: str | bytes) -> bytes:
    """The 10 wire bytes of a session name (ASCII, right-padded with spaces)."""
    raw = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(raw) > SESSION_LENGTH:
        raise MoldError(f"session {session!r} is longer than {SESSION_LENGTH} bytes")
    return raw.ljust(SESSION_LENGTH, b" ")


def session_text(raw: bytes) -> str:
    """Session name as text: right padding of spaces and NULs removed (all-zero gives "")."""
    return raw.decode("latin-1").rstrip(" \x00")


@dataclasses.dataclass(frozen=True)
class MoldPacket:
    session: str
    session_raw: bytes
    sequence: int
    count: int
    messages: tuple[bytes, ...]

    @property
    def is_heartbeat(self) -> bool:
        return self.count == HEARTBEAT_COUNT

    @property
    def is_end_of_session(self) -> bool:
        return self.count == END_OF_SESSION_COUNT

    @property
    def next_sequence(self) -> int:
        """Sequence the receiver expects after this packet."""
        return self.sequence + len(self.messages)


def _check_sequence(sequence: int) -> None:
    if not 0 <= sequence < 1 << 64:
        raise MoldError(f"sequence {sequence} does not fit 64 bits")


def encode_packet(session: str | bytes, sequence: int, messages: Sequence[bytes]) -> bytes:
    """A downstream packet carrying ``messages``, the first numbered ``sequence``."""
    if len(messages) > MAX_MESSAGES:
        raise MoldError(f"{len(messages)} messages in one packet; at most {MAX_MESSAGES}")
    _check_sequence(sequence)
    parts = [HEADER.pack(session_bytes(session), sequence, len(messages))]
    for i, m in enumerate(messages):
        if len(m) > 0xFFFF:
            raise MoldError(f"message {i} is {len(m)} bytes; a block holds at most 65535")
        parts.append(_U16.pack(len(m)))
        parts.append(m)
    return b"".join(parts)


def heartbeat(session: str | bytes, next_sequence: int) -> bytes:
    _check_sequence(next_sequence)
    return HEADER.pack(session_bytes(session), next_sequence, HEARTBEAT_COUNT)


def end_of_session(session: str | bytes, next_sequence: int) -> bytes:
    _check_sequence(next_sequence)
    return HEADER.pack(session_bytes(session), next_sequence, END_OF_SESSION_COUNT)


def decode_packet(buf: bytes | bytearray | memoryview) -> MoldPacket:
    """Decode one downstream packet; the buffer must hold exactly the packet."""
    end = len(buf)
    if end < HEADER_LENGTH:
        raise MoldError(f"truncated MoldUDP64 header: {end} of {HEADER_LENGTH} bytes", 0)
    raw_session, sequence, count = HEADER.unpack_from(buf, 0)
    pos = HEADER_LENGTH
    messages: list[bytes] = []
    if count != END_OF_SESSION_COUNT:
        mv = memoryview(buf)
        for i in range(count):
            if end - pos < 2:
                raise MoldError(f"truncated length of block {i} of {count}", pos)
            n = (mv[pos] << 8) | mv[pos + 1]
            if end - pos - 2 < n:
                raise MoldError(f"block {i} of {count} says {n} bytes, {end - pos - 2} left",
                                pos)
            messages.append(bytes(mv[pos + 2:pos + 2 + n]))
            pos += 2 + n
    if pos != end:
        raise MoldError(f"{end - pos} bytes left over after {count & 0xFFFF} blocks"
                        if count != END_OF_SESSION_COUNT else
                        f"{end - pos} bytes after an end-of-session header", pos)
    return MoldPacket(session_text(raw_session), raw_session, sequence, count, tuple(messages))


@dataclasses.dataclass(frozen=True)
class Rerequest:
    """Upstream request for ``count`` messages from ``sequence`` on."""

    session: str
    sequence: int
    count: int

    def encode(self) -> bytes:
        _check_sequence(self.sequence)
        if not 0 < self.count <= MAX_MESSAGES:
            raise MoldError(f"re-request count {self.count} is not in 1..{MAX_MESSAGES}")
        return HEADER.pack(session_bytes(self.session), self.sequence, self.count)

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview) -> Rerequest:
        if len(buf) != HEADER_LENGTH:
            raise MoldError(f"re-request is {HEADER_LENGTH} bytes, got {len(buf)}",
                            min(len(buf), HEADER_LENGTH))
        raw, sequence, count = HEADER.unpack_from(buf, 0)
        return cls(session_text(raw), sequence, count)


def pack_messages(session: str | bytes, first_sequence: int, messages: Iterable[bytes],
                  max_payload: int = MAX_PAYLOAD) -> Iterator[tuple[int, bytes]]:
    """Yield ``(first sequence, packet)`` with as many consecutive messages per packet as fit
    in ``max_payload`` bytes of UDP payload."""
    _check_sequence(first_sequence)
    room = max_payload - HEADER_LENGTH
    if room < 2:
        raise MoldError(f"max_payload {max_payload} leaves no room for a message")
    prefix = session_bytes(session)
    pack_header = HEADER.pack
    pack_len = _U16.pack
    seq = first_sequence
    parts: list[bytes] = [b""]          # parts[0] is the header, filled in on flush
    used = 0
    for m in messages:
        n = len(m)
        if n + 2 > room:
            raise MoldError(f"a {n}-byte message does not fit a {max_payload}-byte packet")
        if used + n + 2 > room or len(parts) > 2 * MAX_MESSAGES:
            count = (len(parts) - 1) >> 1
            parts[0] = pack_header(prefix, seq, count)
            yield seq, b"".join(parts)
            seq += count
            parts = [b""]
            used = 0
        parts.append(pack_len(n))
        parts.append(m)
        used += n + 2
    if len(parts) > 1:
        count = (len(parts) - 1) >> 1
        parts[0] = pack_header(prefix, seq, count)
        yield seq, b"".join(parts)


class Packer:
    """Stateful packer for a publisher: ``add`` messages, get full packets back as they fill;
    ``flush`` sends what is pending. Tracks the session's next sequence number."""

    def __init__(self, session: str | bytes, next_sequence: int = 1, *,
                 max_payload: int = MAX_PAYLOAD):
        self._session = session_bytes(session)
        _check_sequence(next_sequence)
        self._next_sequence = next_sequence          # of the first pending message
        self._max_payload = max_payload
        if max_payload - HEADER_LENGTH < 2:
            raise MoldError(f"max_payload {max_payload} leaves no room for a message")
        self._pending: list[bytes] = []
        self._used = HEADER_LENGTH

    @property
    def session(self) -> bytes:
        return self._session

    @property
    def next_sequence(self) -> int:
        """Sequence the next message added will get."""
        return self._next_sequence + len(self._pending)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, message: bytes) -> list[tuple[int, bytes]]:
        out = []
        need = len(message) + 2
        if HEADER_LENGTH + need > self._max_payload:
            raise MoldError(f"a {len(message)}-byte message does not fit a "
                            f"{self._max_payload}-byte packet")
        if self._used + need > self._max_payload or len(self._pending) == MAX_MESSAGES:
            out.append(self._take())
        self._pending.append(message)
        self._used += need
        return out

    def flush(self) -> tuple[int, bytes] | None:
        return self._take() if self._pending else None

    def heartbeat(self) -> bytes:
        return heartbeat(self._session, self.next_sequence)

    def end_of_session(self) -> bytes:
        return end_of_session(self._session, self.next_sequence)

    def _take(self) -> tuple[int, bytes]:
        seq = self._next_sequence
        packet = encode_packet(self._session, seq, self._pending)
        self._next_sequence += len(self._pending)
        self._pending = []
        self._used = HEADER_LENGTH
        return seq, packet
