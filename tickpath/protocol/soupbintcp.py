"""SoupBinTCP 3.00: NASDAQ's session layer over TCP (carries OUCH).

Ref: NASDAQ SoupBinTCP Specification, version 3.00; summary in ``docs/PROTOCOLS.md``.

Every packet is a big-endian u16 length (type byte + payload), the type byte and the payload.
Alpha fields are left-justified and right-padded with spaces; Numeric fields (sequence
numbers) are ASCII digits right-justified and left-padded with spaces. Server and client use
distinct type letters, so one table decodes both directions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import ClassVar

__all__ = [
    "SoupError", "SoupPacket", "Debug", "LoginAccepted", "LoginRejected", "SequencedData",
    "ServerHeartbeat", "EndOfSession", "LoginRequest", "UnsequencedData", "ClientHeartbeat",
    "LogoutRequest", "PACKETS", "SERVER_TYPES", "CLIENT_TYPES", "encode", "decode_packet",
    "iter_packets", "SoupFramer",
]


class SoupError(ValueError):
    """Malformed SoupBinTCP input; ``offset`` is where the bad packet starts."""

    def __init__(self, message: str, offset: int | None = None):
        self.offset = offset
        self.reason = message
        super().__init__(message if offset is None else f"at offset {offset}: {message}")


def _alpha(value: str, size: int, name: str) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > size:
        raise SoupError(f"{name} {value!r} is longer than {size} bytes")
    return raw.ljust(size, b" ")


def _numeric(value: int, size: int, name: str) -> bytes:
    text = str(value)
    if value < 0 or len(text) > size:
        raise SoupError(f"{name} {value} does not fit {size} ASCII digits")
    return text.rjust(size, " ").encode("ascii")


def _parse_numeric(raw: bytes, name: str, offset: int) -> int:
    text = raw.decode("latin-1").strip(" ")
    if not text.isdigit() or not text.isascii():
        raise SoupError(f"{name} {raw!r} is not an ASCII number", offset)
    return int(text)


class SoupPacket:
    """Base of the packet records; ``TYPE`` is the packet type byte."""

    __slots__ = ()
    TYPE: ClassVar[str]
    PAYLOAD_LENGTH: ClassVar[int | None] = 0      # None: variable

    def payload(self) -> bytes:
        return b""

    @classmethod
    def from_payload(cls, payload: bytes, offset: int) -> SoupPacket:
        return cls()

    def encode(self) -> bytes:
        return encode(self)


@dataclasses.dataclass(frozen=True, slots=True)
class Debug(SoupPacket):
    """Free-form text; either side may send it."""

    TYPE: ClassVar[str] = "+"
    PAYLOAD_LENGTH: ClassVar[int | None] = None
    text: str

    def payload(self) -> bytes:
        return self.text.encode("ascii")

    @classmethod
    def from_payload(cls, payload: bytes, offset: int) -> Debug:
        return cls(payload.decode("latin-1"))


@dataclasses.dataclass(frozen=True, slots=True)
class LoginAccepted(SoupPacket):
    TYPE: ClassVar[str] = "A"
    PAYLOAD_LENGTH: ClassVar[int | None] = 30
    session: str
    sequence: int          # next sequence number the server will send

    def payload(self) -> bytes:
        return _alpha(self.session, 10, "session") + _numeric(self.sequence, 20, "sequence")

    @classmethod
    def from_payload(cls, payload: bytes, offset: int) -> LoginAccepted:
        return cls(payload[:10].decode("latin-1").rstrip(" "),
                   _parse_numeric(payload[10:30], "sequence number", offset + 13))


@dataclasses.dataclass(frozen=True, slots=True)
class LoginRejected(SoupPacket):
    TYPE: ClassVar[str] = "J"
    PAYLOAD_LENGTH: ClassVar[int | None] = 1
    NOT_AUTHORIZED: ClassVar[str] = "A"
    SESSION_NOT_AVAILABLE: ClassVar[str] = "S"
    reason: str

    def payload(self) -> bytes:
        if len(self.reason) != 1:
            raise SoupError(f"reject reason must be one character, not {self.reason!r}")
        return self.reason.encode("ascii")

    @classmethod
    def from_payload(cls, payload: bytes, offset: int) -> LoginRejected:
        return cls(payload.decode("latin-1"))


@dataclasses.dataclass(frozen=True, slots=True)
class SequencedData(SoupPacket):
    """One outbound (server to client) application message, e.g. OUCH."""

    TYPE: ClassVar[str] = "S"
    PAYLOAD_LENGTH: ClassVar[int | None] = None
    message: bytes

    def payload(self) -> bytes:
        return self.message

    @classmethod
    def from_payload(cls, payload: bytes, offset: int) -> SequencedData:
        return cls(payload)


@dataclasses.dataclass(frozen=True, slots=True)
class ServerHeartbeat(SoupPacket):
    TYPE: ClassVar[str] = "H"


@dataclasses.dataclass(frozen=True, slots=True)
class EndOfSession(SoupPacket):
    TYPE: ClassVar[str] = "Z"


@dataclasses.dataclass(frozen=True, slots=True)
class LoginRequest(SoupPacket):
    TYPE: ClassVar[str] = "L"
    PAYLOAD_LENGTH: ClassVar[int | None] = 46
    username: str
    password: str
    session: str = ""        # blank: the currently active session
    sequence: int = 0        # 0: start from the most recent message

    def payload(self) -> bytes:
        return (_alpha(self.username, 6, "username") + _alpha(self.password, 10, "password")
                + _alpha(self.session, 10, "session") + _numeric(self.sequence, 20, "sequence"))

    @classmethod
    def from_payload(cls, payload: bytes, offset: int) -> LoginRequest:
        text = payload[:26].decode("latin-1")
        return cls(text[:6].rstrip(" "), text[6:16].rstrip(" "), text[16:26].rstrip(" "),
                   _parse_numeric(payload[26:46], "requested sequence number", offset + 29))


@dataclasses.dataclass(frozen=True, slots=True)
class UnsequencedData(SoupPacket):
    """One inbound (client to server) application message, e.g. OUCH."""

    TYPE: ClassVar[str] = "U"
    PAYLOAD_LENGTH: ClassVar[int | None] = None
    message: bytes

    def payload(self) -> bytes:
        return self.message

    @classmethod
    def from_payload(cls, payload: bytes, offset: int) -> UnsequencedData:
        return cls(payload)


@dataclasses.dataclass(frozen=True, slots=True)
class ClientHeartbeat(SoupPacket):
    TYPE: ClassVar[str] = "R"


@dataclasses.dataclass(frozen=True, slots=True)
class LogoutRequest(SoupPacket):
    TYPE: ClassVar[str] = "O"


PACKETS: dict[str, type[SoupPacket]] = {c.TYPE: c for c in (
    Debug, LoginAccepted, LoginRejected, SequencedData, ServerHeartbeat, EndOfSession,
    LoginRequest, UnsequencedData, ClientHeartbeat, LogoutRequest)}
SERVER_TYPES = frozenset("+AJSHZ")
CLIENT_TYPES = frozenset("+LURO")
MAX_PACKET = 0xFFFF            # length field counts type + payload


def encode(packet: SoupPacket) -> bytes:
    body = packet.payload()
    n = 1 + len(body)
    if n > MAX_PACKET:
        raise SoupError(f"{type(packet).__name__} payload of {len(body)} bytes is too long")
    return n.to_bytes(2, "big") + packet.TYPE.encode("ascii") + body


def _decode_at(buf, pos: int, end: int) -> tuple[SoupPacket, int]:
    """Decode the packet starting at ``pos``; returns it and the offset after it."""
    if end - pos < 2:
        raise SoupError(f"truncated packet length: {end - pos} of 2 bytes", pos)
    n = (buf[pos] << 8) | buf[pos + 1]
    if n == 0:
        raise SoupError("packet length 0 (no type byte)", pos)
    if end - pos - 2 < n:
        raise SoupError(f"truncated packet: length says {n} bytes, {end - pos - 2} left", pos)
    t = chr(buf[pos + 2])
    cls = PACKETS.get(t)
    if cls is None:
        raise SoupError(f"unknown SoupBinTCP packet type {t!r} (0x{buf[pos + 2]:02x})", pos)
    want = cls.PAYLOAD_LENGTH
    if want is not None and n - 1 != want:
        raise SoupError(f"SoupBinTCP {t!r} payload is {want} bytes, length says {n - 1}", pos)
    return cls.from_payload(bytes(buf[pos + 3:pos + 2 + n]), pos), pos + 2 + n


def decode_packet(buf: bytes | bytearray | memoryview) -> SoupPacket:
    """Decode exactly one packet (the buffer must hold nothing else)."""
    packet, pos = _decode_at(buf, 0, len(buf))
    if pos != len(buf):
        raise SoupError(f"{len(buf) - pos} bytes left over after the packet", pos)
    return packet


def iter_packets(buf: bytes | bytearray | memoryview) -> Iterator[tuple[int, SoupPacket]]:
    """Yield ``(offset, packet)`` for a buffer holding whole packets only."""
    pos, end = 0, len(buf)
    while pos < end:
        packet, nxt = _decode_at(buf, pos, end)
        yield pos, packet
        pos = nxt


class SoupFramer:
    """Splits a TCP byte stream (one direction) into packets, whatever the segment borders.
    Offsets in errors count from the start of the stream."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0            # stream offset of _buf[0]

    @property
    def buffered(self) -> int:
        """Bytes of a packet not yet complete."""
        return len(self._buf)

    @property
    def offset(self) -> int:
        """Stream offset of the next packet."""
        return self._base

    def feed(self, data: bytes) -> list[SoupPacket]:
        self._buf += data
        buf = self._buf
        out: list[SoupPacket] = []
        pos, end = 0, len(buf)
        try:
            while end - pos >= 2:
                n = (buf[pos] << 8) | buf[pos + 1]
                if n and end - pos - 2 < n:
                    break
                packet, pos = _decode_at(buf, pos, end)
                out.append(packet)
        except SoupError as e:
            raise SoupError(e.reason, self._base + (e.offset or 0)) from e
        del buf[:pos]
        self._base += pos
        return out
