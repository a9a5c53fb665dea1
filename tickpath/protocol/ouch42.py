"""NASDAQ OUCH 4.2 order entry messages (carried in SoupBinTCP).

Ref: NASDAQ OUCH 4.2 specification; layouts in ``docs/PROTOCOLS.md``.

As for ITCH, one table per direction defines every message (offset, size, name, kind) and the
codec and typed records derive from it. Inbound (client to exchange) and outbound (exchange to
client) share letters (``U``, ``M``), so each direction has its own table. The table machinery
here is shared with :mod:`tickpath.protocol.ouch50`, whose messages add an appendage.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import Any, ClassVar

__all__ = [
    "Kind", "Field", "MessageSpec", "OuchError", "OuchMessage", "Codec", "build_specs",
    "INBOUND", "OUTBOUND", "INBOUND_RECORDS", "OUTBOUND_RECORDS", "decode_inbound",
    "decode_outbound", "encode", "MARKET_PRICE", "MAX_PRICE",
    "TIF_IOC", "TIF_MARKET_HOURS", "TIF_SYSTEM_HOURS",
]

#: Price for cross orders meaning "market"; the largest real price is $199,999.9900.
MARKET_PRICE = 0x7FFFFFFF
MAX_PRICE = 1_999_999_900
TIF_IOC = 0
TIF_MARKET_HOURS = 99998
TIF_SYSTEM_HOURS = 99999


class Kind(enum.Enum):
    UINT = "uint"          # big-endian unsigned integer
    ALPHA = "alpha"        # space-padded ASCII; one-byte codes stay one-character strings
    PRICE = "price"        # unsigned integer ticks, 4 implied decimals (u32 in 4.2, u64 in 5.0)


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    kind: Kind = Kind.UINT


@dataclasses.dataclass(frozen=True)
class MessageSpec:
    protocol: str
    direction: str                     # "inbound" | "outbound"
    type: str
    name: str
    length: int                        # fixed part; an appendage (OUCH 5.0) follows it
    fields: tuple[Field, ...]          # message_type at offset 0 included
    appendage: bool = False            # last field is the u16 appendage length

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.protocol} {self.direction} {self.type!r} has no field {name!r}")


class OuchError(ValueError):
    """Malformed OUCH input; ``offset`` is where, in the input given, the message starts."""

    def __init__(self, message: str, offset: int | None = None):
        self.offset = offset
        super().__init__(message if offset is None else f"at offset {offset}: {message}")


def build_specs(protocol: str, direction: str, table, *,
                appendage_types: frozenset[str] = frozenset()) -> dict[str, MessageSpec]:
    """Specs from ``(type, name, length, [(offset, size, name, kind)])`` rows after the type
    byte; checks every layout tiles its length exactly."""
    specs = {}
    for type_, name, length, rows in table:
        fields = (Field("message_type", 0, 1, Kind.ALPHA),) + tuple(
            Field(n, o, s, k) for o, s, n, k in rows)
        pos = 0
        for f in fields:
            assert f.offset == pos, (protocol, direction, type_, f)
            pos += f.size
        assert pos == length, (protocol, direction, type_, pos, length)
        has_app = type_ in appendage_types
        if has_app:
            assert fields[-1].name == "appendage_length" and fields[-1].size == 2, type_
        specs[type_] = MessageSpec(protocol, direction, type_, name, length, fields, has_app)
    return specs


class OuchMessage:
    """Base of the typed OUCH records (generated from the tables)."""

    __slots__ = ()
    spec: ClassVar[MessageSpec]
    type: ClassVar[str]
    direction: ClassVar[str]
    codec: ClassVar[Codec]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):      # type: ignore[arg-type]
            d[f.name] = getattr(self, f.name)
        return d

    def encode(self) -> bytes:
        return self.codec.encode(self)


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_"))


_INT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


class Codec:
    """Decoder/encoder and record classes for one direction of one protocol."""

    def __init__(self, specs: dict[str, MessageSpec], module: str):
        self.specs = specs
        self.records: dict[str, type[OuchMessage]] = {}
        self._plans: dict[str, tuple[struct.Struct, tuple[str, ...]]] = {}
        for spec in specs.values():
            fmt, plan, fields = [">"], [], []
            for f in spec.fields:
                if f.kind is Kind.ALPHA:
                    fmt.append(f"{f.size}s")
                    plan.append("a1" if f.size == 1 else "an")
                else:
                    fmt.append(_INT_FORMATS[f.size])
                    plan.append("int")
                if f.name == "message_type":
                    plan[-1] = "skip"
                elif f.name == "appendage_length" and spec.appendage:
                    plan[-1] = "skip"
                else:
                    fields.append((f.name, str if f.kind is Kind.ALPHA else int))
            if spec.appendage:
                fields.append(("appendage", tuple, dataclasses.field(default=())))
            name = _camel(spec.name)
            cls = dataclasses.make_dataclass(
                name, fields, bases=(OuchMessage,), frozen=True, slots=True,
                namespace={"spec": spec, "type": spec.type, "direction": spec.direction,
                           "codec": self})
            cls.__module__ = module
            self.records[spec.type] = cls
            self._plans[spec.type] = (struct.Struct("".join(fmt)), tuple(plan))

    def _label(self, spec: MessageSpec) -> str:
        return f"{spec.protocol} {spec.direction} {spec.type!r}"

    def decode(self, buf: bytes | bytearray | memoryview, offset: int = 0,
               length: int | None = None) -> OuchMessage:
        """Decode one message at ``offset``; ``length`` (from the framing) must match."""
        end = len(buf)
        if offset >= end:
            raise OuchError("no message: input ends here", offset)
        t = chr(buf[offset])
        spec = self.specs.get(t)
        if spec is None:
            some = next(iter(self.specs.values()))
            raise OuchError(f"unknown {some.protocol} {some.direction} message type {t!r} "
                            f"(0x{buf[offset]:02x})", offset)
        total = spec.length
        if spec.appendage and end - offset >= total:
            total += (buf[offset + total - 2] << 8) | buf[offset + total - 1]
        if length is not None and length != total:
            raise OuchError(f"{self._label(spec)} message is {total} bytes, framing says "
                            f"{length}", offset)
        if end - offset < total:
            raise OuchError(f"truncated {self._label(spec)} message: {end - offset} of "
                            f"{total} bytes", offset)
        st, plan = self._plans[t]
        out: list[Any] = []
        for p, v in zip(plan, st.unpack_from(buf, offset), strict=True):
            if p == "int":
                out.append(v)
            elif p == "a1":
                out.append(v.decode("latin-1"))
            elif p == "an":
                out.append(v.decode("latin-1").rstrip(" \x00"))
        if spec.appendage:
            out.append(_decode_appendage(buf, offset + spec.length, offset + total))
        return self.records[t](*out)

    def encode(self, msg: OuchMessage) -> bytes:
        spec = msg.spec
        st, _ = self._plans[spec.type]
        vals: list[Any] = []
        tail = b""
        if spec.appendage:
            tail = _encode_appendage(msg.appendage)          # type: ignore[attr-defined]
        for f in spec.fields:
            if f.name == "message_type":
                vals.append(spec.type.encode())
            elif f.name == "appendage_length" and spec.appendage:
                vals.append(len(tail))
            elif f.kind is Kind.ALPHA:
                v = getattr(msg, f.name)
                b = v.encode("latin-1")
                if len(b) > f.size or (f.size == 1 and len(b) != 1):
                    raise OuchError(f"{self._label(spec)} field {f.name}: {v!r} does not fit "
                                    f"{f.size} bytes")
                vals.append(b.ljust(f.size, b" "))
            else:
                v = getattr(msg, f.name)
                if not isinstance(v, int) or not 0 <= v < 1 << (8 * f.size):
                    raise OuchError(f"{self._label(spec)} field {f.name}: {v!r} does not fit "
                                    f"{8 * f.size} bits")
                vals.append(v)
        return st.pack(*vals) + tail


def _decode_appendage(buf, pos: int, end: int) -> tuple[tuple[int, bytes], ...]:
    """OUCH 5.0 appendage: entries of (length byte counting tag + value, tag byte, value)."""
    entries = []
    while pos < end:
        n = buf[pos]
        if n == 0:
            raise OuchError("appendage entry of length 0 (no tag)", pos)
        if end - pos - 1 < n:
            raise OuchError(f"appendage entry says {n} bytes, {end - pos - 1} left", pos)
        entries.append((buf[pos + 1], bytes(buf[pos + 2:pos + 1 + n])))
        pos += 1 + n
    return tuple(entries)


def _encode_appendage(entries) -> bytes:
    out = bytearray()
    for tag, value in entries:
        if not 0 <= tag < 256 or len(value) > 254:
            raise OuchError(f"appendage entry tag {tag} with {len(value)} bytes does not fit")
        out += bytes((1 + len(value), tag))
        out += value
    if len(out) > 0xFFFF:
        raise OuchError(f"appendage of {len(out)} bytes is too long")
    return bytes(out)


U, A, P = Kind.UINT, Kind.ALPHA, Kind.PRICE

_INBOUND_TABLE = [
    ("O", "enter_order", 49, [
        (1, 14, "order_token", A), (15, 1, "side", A), (16, 4, "shares", U),
        (20, 8, "stock", A), (28, 4, "price", P), (32, 4, "time_in_force", U),
        (36, 4, "firm", A), (40, 1, "display", A), (41, 1, "capacity", A),
        (42, 1, "intermarket_sweep", A), (43, 4, "minimum_quantity", U),
        (47, 1, "cross_type", A), (48, 1, "customer_type", A)]),
    ("U", "replace_order", 47, [
        (1, 14, "existing_token", A), (15, 14, "replacement_token", A), (29, 4, "shares", U),
        (33, 4, "price", P), (37, 4, "time_in_force", U), (41, 1, "display", A),
        (42, 1, "intermarket_sweep", A), (43, 4, "minimum_quantity", U)]),
    ("X", "cancel_order", 19, [(1, 14, "order_token", A), (15, 4, "shares", U)]),
    ("M", "modify_order", 20, [
        (1, 14, "order_token", A), (15, 1, "side", A), (16, 4, "shares", U)]),
]

_ACCEPTED = [
    (1, 8, "timestamp", U), (9, 14, "order_token", A), (23, 1, "side", A),
    (24, 4, "shares", U), (28, 8, "stock", A), (36, 4, "price", P),
    (40, 4, "time_in_force", U), (44, 4, "firm", A), (48, 1, "display", A),
    (49, 8, "order_reference_number", U), (57, 1, "capacity", A),
    (58, 1, "intermarket_sweep", A), (59, 4, "minimum_quantity", U), (63, 1, "cross_type", A),
    (64, 1, "order_state", A)]

_OUTBOUND_TABLE = [
    ("S", "system_event", 10, [(1, 8, "timestamp", U), (9, 1, "event_code", A)]),
    ("A", "accepted", 66, _ACCEPTED + [(65, 1, "bbo_weight", A)]),
    ("U", "replaced", 80, _ACCEPTED + [
        (65, 14, "previous_order_token", A), (79, 1, "bbo_weight", A)]),
    ("E", "executed", 40, [
        (1, 8, "timestamp", U), (9, 14, "order_token", A), (23, 4, "executed_shares", U),
        (27, 4, "execution_price", P), (31, 1, "liquidity_flag", A), (32, 8, "match_number", U)]),
    ("C", "canceled", 28, [
        (1, 8, "timestamp", U), (9, 14, "order_token", A), (23, 4, "decrement_shares", U),
        (27, 1, "reason", A)]),
    ("J", "rejected", 24, [
        (1, 8, "timestamp", U), (9, 14, "order_token", A), (23, 1, "reason", A)]),
    ("D", "aiq_canceled", 37, [
        (1, 8, "timestamp", U), (9, 14, "order_token", A), (23, 4, "decrement_shares", U),
        (27, 1, "reason", A), (28, 4, "quantity_prevented_from_trading", U),
        (32, 4, "execution_price", P), (36, 1, "liquidity_flag", A)]),
    ("I", "cancel_reject", 23, [(1, 8, "timestamp", U), (9, 14, "order_token", A)]),
    ("B", "broken_trade", 32, [
        (1, 8, "timestamp", U), (9, 14, "order_token", A), (23, 8, "match_number", U),
        (31, 1, "reason", A)]),
    ("M", "order_modified", 28, [
        (1, 8, "timestamp", U), (9, 14, "order_token", A), (23, 1, "side", A),
        (24, 4, "shares", U)]),
]

INBOUND = build_specs("OUCH 4.2", "inbound", _INBOUND_TABLE)
OUTBOUND = build_specs("OUCH 4.2", "outbound", _OUTBOUND_TABLE)
_IN = Codec(INBOUND, __name__)
_OUT = Codec(OUTBOUND, __name__)
INBOUND_RECORDS = _IN.records
OUTBOUND_RECORDS = _OUT.records

# Inbound and outbound share letters, so class names say the direction where they would clash.
EnterOrder = INBOUND_RECORDS["O"]
ReplaceOrder = INBOUND_RECORDS["U"]
CancelOrder = INBOUND_RECORDS["X"]
ModifyOrder = INBOUND_RECORDS["M"]
SystemEvent = OUTBOUND_RECORDS["S"]
Accepted = OUTBOUND_RECORDS["A"]
Replaced = OUTBOUND_RECORDS["U"]
Executed = OUTBOUND_RECORDS["E"]
Canceled = OUTBOUND_RECORDS["C"]
Rejected = OUTBOUND_RECORDS["J"]
AiqCanceled = OUTBOUND_RECORDS["D"]
CancelReject = OUTBOUND_RECORDS["I"]
BrokenTrade = OUTBOUND_RECORDS["B"]
OrderModified = OUTBOUND_RECORDS["M"]
__all__ += [c.__name__ for c in (*INBOUND_RECORDS.values(), *OUTBOUND_RECORDS.values())]


def decode_inbound(buf: bytes | bytearray | memoryview, offset: int = 0,
                   length: int | None = None) -> OuchMessage:
    """Decode a client-to-exchange message (SoupBinTCP unsequenced data)."""
    return _IN.decode(buf, offset, length)


def decode_outbound(buf: bytes | bytearray | memoryview, offset: int = 0,
                    length: int | None = None) -> OuchMessage:
    """Decode an exchange-to-client message (SoupBinTCP sequenced data)."""
    return _OUT.decode(buf, offset, length)


def encode(msg: OuchMessage) -> bytes:
    return msg.encode()
