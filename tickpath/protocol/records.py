"""The internal order and event records: what the matching engine (model, simulated or real
FPGA) receives and emits. Every front end (OUCH 4.2, FIX 4.2, the command line) translates into
:class:`OrderRecord`; every back end speaks :class:`EventRecord`.

Ref: ``docs/STYLE.md`` §2 (one definition as Amaranth ``data.Struct``: packed LSB-first, the
first field in the first byte of a little-endian wire); reason codes from OUCH 4.2
(``docs/PROTOCOLS.md``).

The layouts are the single definition. :class:`Order` and :class:`Event` are plain-Python
twins generated from them (field names, offsets and widths read from ``data.Layout.cast``),
for the model and the host, where Amaranth ``Const`` access is too slow.

Field meanings
--------------
``OrderRecord``: ``order_id`` is the host-assigned internal token of the order acted on;
``new_order_id`` the replacement token (replace only); ``firm`` and ``symbol`` internal ids
(the engine is told each symbol's ITCH stock name); ``shares`` the order size (enter), the new
intended open size (cancel, replace); ``price`` in ticks (4 implied decimals, ignored for market
orders); ``min_qty`` the minimum quantity of an IOC order (0 = none).

``EventRecord``: ``last`` marks the final event caused by one action; ``order_id`` the token the
event is about; ``contra_id`` the contra order's token (executed) or the new token (replaced);
``reason`` an ASCII code from :class:`CancelReason` (canceled) or :class:`RejectReason`
(rejected), else 0; ``match_number`` numbers fills 1, 2, 3... (executed only).

Reason codes
------------
Canceled: ``U`` user request, ``I`` immediate-or-cancel remainder (also FOK, market and
minimum-quantity misses), ``Q`` self-match prevention, ``S`` supervisory, ``E`` end of day.

Rejected (OUCH 4.2 codes where one fits, lower case for our own): ``X`` invalid price, ``Z``
invalid shares, ``S`` unknown symbol, ``N`` invalid minimum quantity, ``C`` market closed (after
end of day), ``O`` other (a field value outside its enum), ``u`` unknown or finished token
(cancel, replace), ``d`` token already live (enter, replace's new token), ``f`` order store full.

Rejected by the pre-trade risk gate (:mod:`tickpath.model.risk_gate`, ``hdl/matching/risk_gate``):
``k`` kill switch (the firm's or global), ``m`` dead-man switch (no host heartbeat), ``H`` symbol
halted (OUCH 4.2's code), ``q`` shares above the maximum order size, ``r`` no reference price
where one is needed, ``n`` notional above the maximum, ``c`` price outside the collar, ``p``
position limit (counting open orders), ``t`` order-rate limit (token bucket empty). The kill and
dead-man switches cancel resting orders with reason ``S``.
"""

# No `from __future__ import annotations`: data.Struct reads its annotations as shapes.

import enum as py_enum
from collections import namedtuple
from typing import Any

from amaranth.lib import data, enum

__all__ = [
    "Action", "Side", "TimeInForce", "OrderType", "EventKind", "CancelReason", "RejectReason",
    "OrderRecord", "EventRecord", "Order", "Event", "RecordError",
    "wire_size", "pack", "unpack", "as_dict", "ORDER_SIZE", "EVENT_SIZE",
]


class Action(enum.Enum, shape=2):
    Enter    = 0
    Cancel   = 1
    Replace  = 2
    EndOfDay = 3        # expire day orders: canceled (reason E) each, then closed


class Side(enum.Enum, shape=1):
    Buy  = 0
    Sell = 1


class TimeInForce(enum.Enum, shape=2):
    Day = 0
    Ioc = 1
    Fok = 2


class OrderType(enum.Enum, shape=1):
    Limit  = 0
    Market = 1


class EventKind(enum.Enum, shape=3):
    Accepted = 0
    Executed = 1
    Canceled = 2
    Replaced = 3
    Rejected = 4
    Closed   = 5        # the end-of-day action's final event


class CancelReason(py_enum.IntEnum):
    User = ord("U")
    ImmediateOrCancel = ord("I")
    SelfMatch = ord("Q")
    Supervisory = ord("S")
    EndOfDay = ord("E")


class RejectReason(py_enum.IntEnum):
    InvalidPrice = ord("X")
    InvalidShares = ord("Z")
    UnknownSymbol = ord("S")
    InvalidMinQty = ord("N")
    Closed = ord("C")
    Other = ord("O")
    UnknownToken = ord("u")
    DuplicateToken = ord("d")
    Full = ord("f")
    # the pre-trade risk gate's own
    Killed = ord("k")
    DeadMan = ord("m")
    Halted = ord("H")
    MaxShares = ord("q")
    NoReference = ord("r")
    MaxNotional = ord("n")
    Collar = ord("c")
    Position = ord("p")
    Rate = ord("t")


class OrderRecord(data.Struct):
    action:       Action
    side:         Side
    tif:          TimeInForce
    ord_type:     OrderType
    _pad:         2
    order_id:     32
    new_order_id: 32
    firm:         16
    symbol:       16
    shares:       32
    price:        32
    min_qty:      32


class EventRecord(data.Struct):
    kind:         EventKind
    last:         1
    side:         Side
    _pad:         3
    reason:       8
    order_id:     32
    contra_id:    32
    symbol:       16
    shares:       32
    price:        32
    match_number: 64


class RecordError(ValueError):
    """A record that does not fit its layout (value too wide, bad enum, wrong byte count)."""


def wire_size(layout) -> int:
    bits = data.Layout.cast(layout).size
    if bits % 8:
        raise RecordError(f"{layout!r} is not byte-aligned ({bits} bits)")
    return bits // 8


def pack(layout, fields: Any) -> bytes:
    """Wire bytes of ``fields``: a dict, a twin (:class:`Order`/:class:`Event`) or a Const."""
    if isinstance(fields, data.Const):
        return fields.as_bits().to_bytes(wire_size(layout), "little")
    if hasattr(fields, "_asdict"):
        fields = fields._asdict()
    return layout.const(fields).as_bits().to_bytes(wire_size(layout), "little")


def unpack(layout, raw: bytes) -> data.Const:
    """The ``data.Const`` view of wire bytes (``.side`` is a :class:`Side`, etc.)."""
    if len(raw) != wire_size(layout):
        raise RecordError(f"{layout.__name__} is {wire_size(layout)} bytes, got {len(raw)}")
    return layout.from_bits(int.from_bytes(raw, "little"))


def as_dict(const: data.Const) -> dict[str, Any]:
    """Readable fields of a Const (its ``repr`` shows only raw bits)."""
    return {name: const[name] for name, _ in data.Layout.cast(const.shape())}


# --- plain-Python twins, generated from the layouts -------------------------------------------

def _twin(layout, name: str):
    """A NamedTuple class with the layout's public fields (enum fields as the Python enum,
    others as int, all defaulting to zero) and exact bytes/Const conversions."""
    plan = []                            # (name, offset, width, enum class or None)
    for field_name, field in data.Layout.cast(layout):
        if field_name.startswith("_"):
            continue
        shape = field.shape
        enum_cls = shape if isinstance(shape, type) and issubclass(shape, py_enum.Enum) else None
        plan.append((field_name, field.offset, field.width, enum_cls))
    plan = tuple(plan)
    size = wire_size(layout)
    names = [p[0] for p in plan]
    defaults = [p[3](0) if p[3] is not None else 0 for p in plan]
    base = namedtuple(name, names, defaults=defaults)

    def to_bits(self) -> int:
        bits = 0
        for (field_name, offset, width, _), value in zip(plan, self, strict=True):
            value = int(value.value if isinstance(value, py_enum.Enum) else value)
            if not 0 <= value < 1 << width:
                raise RecordError(f"{name}.{field_name}: {value} does not fit {width} bits")
            bits |= value << offset
        return bits

    def to_bytes(self) -> bytes:
        return to_bits(self).to_bytes(size, "little")

    def from_bits(cls, bits: int):
        values = []
        for field_name, offset, width, enum_cls in plan:
            value = (bits >> offset) & ((1 << width) - 1)
            if enum_cls is not None:
                try:
                    value = enum_cls(value)
                except ValueError:
                    raise RecordError(f"{name}.{field_name}: {value} is not a valid "
                                      f"{enum_cls.__name__}") from None
            values.append(value)
        return cls._make(values)

    def from_bytes(cls, raw: bytes):
        if len(raw) != size:
            raise RecordError(f"{name} is {size} bytes, got {len(raw)}")
        return from_bits(cls, int.from_bytes(raw, "little"))

    def to_const(self) -> data.Const:
        return layout.from_bits(to_bits(self))

    def from_const(cls, const: data.Const):
        return from_bits(cls, const.as_bits())

    namespace = {
        "__slots__": (), "__doc__": f"Plain-Python twin of :class:`{layout.__name__}`.",
        "layout": layout, "size": size, "plan": plan,
        "to_bits": to_bits, "to_bytes": to_bytes, "to_const": to_const,
        "from_bits": classmethod(from_bits), "from_bytes": classmethod(from_bytes),
        "from_const": classmethod(from_const),
    }
    cls = type(name, (base,), namespace)
    cls.__module__ = __name__
    return cls


Order = _twin(OrderRecord, "Order")
Event = _twin(EventRecord, "Event")

ORDER_SIZE = wire_size(OrderRecord)
EVENT_SIZE = wire_size(EventRecord)
