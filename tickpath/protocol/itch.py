"""NASDAQ TotalView-ITCH 5.0: the one definition of every message layout.

Ref: NASDAQ TotalView-ITCH 5.0 specification; field names and offsets as in
``docs/PROTOCOLS.md`` (cross-checked against the real captures in ``../shared/data``).

Everything that touches ITCH derives from :data:`SPECS`: the Python codec below, the
gateware decoder's per-type length and field offsets (``tickpath.hdl``), the testbench
drivers, the golden book builder and the generator.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Iterator
from typing import Any, ClassVar

__all__ = [
    "Kind", "Field", "MessageSpec", "SPECS", "RECORDS", "ItchError", "ItchMessage",
    "decode", "encode", "message_length", "iter_binaryfile", "encode_binaryfile",
    "BOOK_TYPES", "HEADER_LENGTH",
]


class Kind(enum.Enum):
    UINT = "uint"        # big-endian unsigned integer
    ALPHA = "alpha"      # space-padded ASCII
    PRICE4 = "price4"    # u32, 4 implied decimals (kept as integer ticks)
    PRICE8 = "price8"    # u64, 8 implied decimals (kept as integer ticks)


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    kind: Kind = Kind.UINT

    @property
    def is_text(self) -> bool:
        return self.kind is Kind.ALPHA


@dataclasses.dataclass(frozen=True)
class MessageSpec:
    type: str
    name: str
    length: int
    fields: tuple[Field, ...]          # every field, the common header included

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"ITCH {self.type!r} has no field {name!r}")


HEADER = (
    Field("message_type", 0, 1, Kind.ALPHA),
    Field("stock_locate", 1, 2),
    Field("tracking_number", 3, 2),
    Field("timestamp", 5, 6),
)
HEADER_LENGTH = 11

U, A, P4, P8 = Kind.UINT, Kind.ALPHA, Kind.PRICE4, Kind.PRICE8

# type, name, length, [(offset, size, name, kind)] after the common header.
_TABLE = [
    ("S", "system_event_message", 12, [(11, 1, "event_code", A)]),
    ("R", "stock_directory_message", 39, [
        (11, 8, "stock", A), (19, 1, "market_category", A),
        (20, 1, "financial_status_indicator", A), (21, 4, "round_lot_size", U),
        (25, 1, "round_lots_only", A), (26, 1, "issue_classification", A),
        (27, 2, "issue_sub_type", A), (29, 1, "authenticity", A),
        (30, 1, "short_sale_threshold_indicator", A), (31, 1, "ipo_flag", A),
        (32, 1, "luld_reference_price_tier", A), (33, 1, "etp_flag", A),
        (34, 4, "etp_leverage_factor", U), (38, 1, "inverse_indicator", A)]),
    ("H", "stock_trading_action_message", 25, [
        (11, 8, "stock", A), (19, 1, "trading_state", A), (20, 1, "reserved", A),
        (21, 4, "reason_code", A)]),
    ("Y", "reg_sho_short_sale_price_test_restricted_indicator_message", 20, [
        (11, 8, "stock", A), (19, 1, "reg_sho_action", A)]),
    ("L", "market_participant_position_message", 26, [
        (11, 4, "mpid", A), (15, 8, "stock", A), (23, 1, "primary_market_maker", A),
        (24, 1, "market_maker_mode", A), (25, 1, "market_participant_state", A)]),
    ("V", "mwcb_decline_level_message", 35, [
        (11, 8, "level_1", P8), (19, 8, "level_2", P8), (27, 8, "level_3", P8)]),
    ("W", "mwcb_status_level_message", 12, [(11, 1, "breached_level", A)]),
    ("K", "ipo_quoting_period_update", 28, [
        (11, 8, "stock", A), (19, 4, "ipo_quotation_release_time", U),
        (23, 1, "ipo_quotation_release_qualifier", A), (24, 4, "ipo_price", P4)]),
    ("J", "luld_auction_collar_message", 35, [
        (11, 8, "stock", A), (19, 4, "auction_collar_reference_price", P4),
        (23, 4, "upper_auction_collar_price", P4), (27, 4, "lower_auction_collar_price", P4),
        (31, 4, "auction_collar_extension", U)]),
    ("h", "operational_halt_message", 21, [
        (11, 8, "stock", A), (19, 1, "market_code", A), (20, 1, "operational_halt_action", A)]),
    ("A", "add_order_no_mpid_attribution_message", 36, [
        (11, 8, "order_reference_number", U), (19, 1, "buy_sell_indicator", A),
        (20, 4, "shares", U), (24, 8, "stock", A), (32, 4, "price", P4)]),
    ("F", "add_order_with_mpid_attribution_message", 40, [
        (11, 8, "order_reference_number", U), (19, 1, "buy_sell_indicator", A),
        (20, 4, "shares", U), (24, 8, "stock", A), (32, 4, "price", P4),
        (36, 4, "attribution", A)]),
    ("E", "order_executed_message", 31, [
        (11, 8, "order_reference_number", U), (19, 4, "executed_shares", U),
        (23, 8, "match_number", U)]),
    ("C", "order_executed_with_price_message", 36, [
        (11, 8, "order_reference_number", U), (19, 4, "executed_shares", U),
        (23, 8, "match_number", U), (31, 1, "printable", A), (32, 4, "execution_price", P4)]),
    ("X", "order_cancel_message", 23, [
        (11, 8, "order_reference_number", U), (19, 4, "canceled_shares", U)]),
    ("D", "order_delete_message", 19, [(11, 8, "order_reference_number", U)]),
    ("U", "order_replace_message", 35, [
        (11, 8, "original_order_reference_number", U), (19, 8, "new_order_reference_number", U),
        (27, 4, "shares", U), (31, 4, "price", P4)]),
    ("P", "non_cross_trade_message", 44, [
        (11, 8, "order_reference_number", U), (19, 1, "buy_sell_indicator", A),
        (20, 4, "shares", U), (24, 8, "stock", A), (32, 4, "price", P4),
        (36, 8, "match_number", U)]),
    ("Q", "cross_trade_message", 40, [
        (11, 8, "cross_shares", U), (19, 8, "stock", A), (27, 4, "cross_price", P4),
        (31, 8, "match_number", U), (39, 1, "cross_type", A)]),
    ("B", "broken_trade_message", 19, [(11, 8, "match_number", U)]),
    ("I", "net_order_imbalance_indicator_message", 50, [
        (11, 8, "paired_shares", U), (19, 8, "imbalance_shares", U),
        (27, 1, "imbalance_direction", A), (28, 8, "stock", A), (36, 4, "far_price", P4),
        (40, 4, "near_price", P4), (44, 4, "current_reference_price", P4),
        (48, 1, "cross_type", A), (49, 1, "price_variation_indicator", A)]),
    ("N", "retail_price_improvement_indicator_message", 20, [
        (11, 8, "stock", A), (19, 1, "interest_flag", A)]),
    ("O", "direct_listing_with_capital_raise_price_discovery_message", 48, [
        (11, 8, "stock", A), (19, 1, "open_eligibility_status", A),
        (20, 4, "minimum_allowable_price", P4), (24, 4, "maximum_allowable_price", P4),
        (28, 4, "near_execution_price", P4), (32, 8, "near_execution_time", U),
        (40, 4, "lower_price_range_collar", P4), (44, 4, "upper_price_range_collar", P4)]),
]

SPECS: dict[str, MessageSpec] = {}
for _type, _name, _length, _fields in _TABLE:
    _all = HEADER + tuple(Field(n, o, s, k) for o, s, n, k in _fields)
    # The table must tile the message exactly: no gaps, no overlaps, ending at its length.
    _pos = 0
    for _f in _all:
        assert _f.offset == _pos, (_type, _f)
        _pos += _f.size
    assert _pos == _length, (_type, _pos, _length)
    SPECS[_type] = MessageSpec(_type, _name, _length, _all)
del _type, _name, _length, _fields, _all, _pos, _f

#: Messages that change the displayed book.
BOOK_TYPES = frozenset("AFECXDU")


class ItchError(ValueError):
    """Malformed ITCH input. ``offset`` is where, in the input given, the bad message starts."""

    def __init__(self, message: str, offset: int | None = None):
        self.offset = offset
        self.reason = message
        super().__init__(message if offset is None else f"at offset {offset}: {message}")


def _struct_format(spec: MessageSpec) -> str:
    parts = [">"]
    for f in spec.fields:
        if f.kind is Kind.ALPHA:
            parts.append(f"{f.size}s")
        elif f.size == 6:              # 48-bit timestamp: high 16 bits, low 32 bits
            parts.append("HI")
        else:
            parts.append({1: "B", 2: "H", 4: "I", 8: "Q"}[f.size])
    return "".join(parts)


class ItchMessage:
    """Base of the typed ITCH records. Subclasses are generated from :data:`SPECS`."""

    __slots__ = ()
    spec: ClassVar[MessageSpec]
    type: ClassVar[str]
    _struct: ClassVar[struct.Struct]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):      # type: ignore[arg-type]
            d[f.name] = getattr(self, f.name)
        return d

    def encode(self) -> bytes:
        return encode(self)


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_"))


RECORDS: dict[str, type[ItchMessage]] = {}


def _make_record(spec: MessageSpec) -> type[ItchMessage]:
    fields = []
    for f in spec.fields[1:]:                # message_type is the class, not a field
        fields.append((f.name, str if f.kind is Kind.ALPHA else int))
    cls = dataclasses.make_dataclass(
        _camel(spec.name), fields, bases=(ItchMessage,), frozen=True, slots=True,
        namespace={"spec": spec, "type": spec.type, "_struct": struct.Struct(_struct_format(spec))})
    cls.__module__ = __name__
    return cls


for _spec in SPECS.values():
    _cls = _make_record(_spec)
    RECORDS[_spec.type] = _cls
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)
del _spec, _cls


def message_length(message_type: str) -> int:
    return SPECS[message_type].length


def _decoder(spec: MessageSpec):
    """Build a decoder for one type: raw bytes -> typed record (single-char Alpha kept as is,
    longer Alpha fields stripped of their space (and NUL) padding)."""
    cls = RECORDS[spec.type]
    st = cls._struct
    plan = []                                # per struct item: ('skip'|'ts'|'a1'|'an'|'int')
    for f in spec.fields:
        if f.name == "message_type":
            plan.append("skip")
        elif f.size == 6:
            plan.append("ts")
        elif f.kind is Kind.ALPHA:
            plan.append("a1" if f.size == 1 else "an")
        else:
            plan.append("int")

    def decode_one(buf, offset: int):
        raw = st.unpack_from(buf, offset)
        out = []
        i = 0
        for p in plan:
            v = raw[i]
            if p == "skip":
                pass
            elif p == "ts":
                out.append((v << 32) | raw[i + 1])
                i += 1
            elif p == "a1":
                out.append(v.decode("latin-1"))
            elif p == "an":
                out.append(v.decode("latin-1").rstrip(" \x00"))
            else:
                out.append(v)
            i += 1
        return cls(*out)
    return decode_one


_DECODERS = {t: _decoder(s) for t, s in SPECS.items()}


def decode(buf: bytes | bytearray | memoryview, offset: int = 0,
           length: int | None = None) -> ItchMessage:
    """Decode one ITCH message starting at ``offset``.

    ``length`` is the framing's length for the message (MoldUDP64 block, BinaryFILE prefix);
    when given it must equal the type's length. Errors name the offset.
    """
    if offset >= len(buf):
        raise ItchError("no message: input ends here", offset)
    t = chr(buf[offset])
    spec = SPECS.get(t)
    if spec is None:
        raise ItchError(f"unknown ITCH message type {t!r} (0x{buf[offset]:02x})", offset)
    if length is not None and length != spec.length:
        raise ItchError(f"ITCH {t!r} message is {spec.length} bytes, framing says {length}", offset)
    if len(buf) - offset < spec.length:
        raise ItchError(f"truncated ITCH {t!r} message: {len(buf) - offset} of "
                        f"{spec.length} bytes", offset)
    return _DECODERS[t](buf, offset)


def encode(msg: ItchMessage) -> bytes:
    spec = msg.spec
    vals: list[Any] = []
    for f in spec.fields:
        if f.name == "message_type":
            vals.append(spec.type.encode())
            continue
        v = getattr(msg, f.name)
        if f.kind is Kind.ALPHA:
            b = v.encode("latin-1")
            if len(b) > f.size:
                raise ItchError(f"ITCH {spec.type!r} field {f.name}: {v!r} is longer than "
                                f"{f.size} bytes")
            vals.append(b.ljust(f.size, b" "))
        elif f.size == 6:
            if not 0 <= v < 1 << 48:
                raise ItchError(f"ITCH {spec.type!r} field {f.name}: {v} does not fit 48 bits")
            vals.extend((v >> 32, v & 0xFFFFFFFF))
        else:
            if not 0 <= v < 1 << (8 * f.size):
                raise ItchError(f"ITCH {spec.type!r} field {f.name}: {v} does not fit "
                                f"{8 * f.size} bits")
            vals.append(v)
    return msg._struct.pack(*vals)


def from_dict(d: dict[str, Any]) -> ItchMessage:
    """Inverse of :meth:`ItchMessage.to_dict`."""
    cls = RECORDS[d["type"]]
    return cls(**{k: v for k, v in d.items() if k != "type"})


# --- NASDAQ BinaryFILE: a big-endian u16 length before each message ---------------------

def iter_binaryfile(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, ItchMessage]]:
    """Yield ``(offset, message)`` for each message of a BinaryFILE image; errors name the
    offset of the bad length prefix or message."""
    mv = memoryview(data)
    pos, end = 0, len(mv)
    while pos < end:
        if end - pos < 2:
            raise ItchError("truncated BinaryFILE length prefix", pos)
        n = (mv[pos] << 8) | mv[pos + 1]
        if end - pos - 2 < n:
            raise ItchError(f"truncated BinaryFILE message: prefix says {n} bytes, "
                            f"{end - pos - 2} left", pos)
        yield pos, decode(mv, pos + 2, n)
        pos += 2 + n


def iter_binaryfile_raw(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, raw message bytes)`` without decoding (length-checked against type)."""
    mv = memoryview(data)
    pos, end = 0, len(mv)
    while pos < end:
        if end - pos < 2:
            raise ItchError("truncated BinaryFILE length prefix", pos)
        n = (mv[pos] << 8) | mv[pos + 1]
        if end - pos - 2 < n:
            raise ItchError(f"truncated BinaryFILE message: prefix says {n} bytes, "
                            f"{end - pos - 2} left", pos)
        if n == 0:
            raise ItchError("empty BinaryFILE message", pos)
        spec = SPECS.get(chr(mv[pos + 2]))
        if spec is None:
            raise ItchError(f"unknown ITCH message type 0x{mv[pos + 2]:02x}", pos + 2)
        if spec.length != n:
            raise ItchError(f"ITCH {spec.type!r} message is {spec.length} bytes, "
                            f"framing says {n}", pos + 2)
        yield pos, bytes(mv[pos + 2:pos + 2 + n])
        pos += 2 + n


def encode_binaryfile(messages) -> bytes:
    """BinaryFILE image of ``messages`` (typed records or raw bytes)."""
    out = bytearray()
    for m in messages:
        raw = m if isinstance(m, (bytes, bytearray)) else encode(m)
        out += len(raw).to_bytes(2, "big")
        out += raw
    return bytes(out)
