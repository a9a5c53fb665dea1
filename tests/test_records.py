"""The internal order/event records: layouts, wire bytes, and the plain-Python twins."""

import pytest
from amaranth.lib import data
from hypothesis import given
from hypothesis import strategies as st

from tickpath.protocol.records import (
    EVENT_SIZE,
    ORDER_SIZE,
    Action,
    CancelReason,
    Event,
    EventKind,
    EventRecord,
    Order,
    OrderRecord,
    OrderType,
    RecordError,
    RejectReason,
    Side,
    TimeInForce,
    as_dict,
    pack,
    unpack,
    wire_size,
)


def twins(cls):
    fields = {}
    for name, _, width, enum_cls in cls.plan:
        fields[name] = (st.sampled_from(list(enum_cls)) if enum_cls is not None
                        else st.integers(0, (1 << width) - 1))
    return st.builds(cls, **fields)


def test_sizes_are_whole_bytes():
    assert wire_size(OrderRecord) == ORDER_SIZE == 25
    assert wire_size(EventRecord) == EVENT_SIZE == 28


def test_twin_fields_come_from_the_layouts():
    for cls, layout in ((Order, OrderRecord), (Event, EventRecord)):
        public = [n for n, _ in data.Layout.cast(layout) if not n.startswith("_")]
        assert list(cls._fields) == public
        for name, offset, width, _ in cls.plan:
            field = data.Layout.cast(layout)[name]
            assert (offset, width) == (field.offset, field.width)


def test_order_wire_bytes_are_lsb_first_little_endian():
    order = Order(action=Action.Replace, side=Side.Sell, tif=TimeInForce.Fok,
                  ord_type=OrderType.Market, order_id=0x01020304, new_order_id=0x0A0B0C0D,
                  firm=0x1122, symbol=0x3344, shares=100, price=1234500, min_qty=7)
    raw = order.to_bytes()
    # byte 0: action 2 (bits 0-1), side 1 (bit 2), tif 2 (bits 3-4), type 1 (bit 5)
    assert raw[0] == 0b1_10_1_10
    assert raw[1:5] == bytes([4, 3, 2, 1])
    assert raw[5:9] == bytes([0x0D, 0x0C, 0x0B, 0x0A])
    assert raw[9:13] == bytes([0x22, 0x11, 0x44, 0x33])
    assert raw[13:17] == (100).to_bytes(4, "little")
    assert raw[17:21] == (1234500).to_bytes(4, "little")
    assert raw[21:25] == (7).to_bytes(4, "little")


@given(twins(Order))
def test_order_round_trips(order):
    raw = order.to_bytes()
    assert len(raw) == ORDER_SIZE
    assert Order.from_bytes(raw) == order
    assert pack(OrderRecord, order) == raw
    assert pack(OrderRecord, order._asdict()) == raw
    const = unpack(OrderRecord, raw)
    assert Order.from_const(const) == order
    assert order.to_const().as_bits() == const.as_bits()
    readable = as_dict(const)
    assert readable.pop("_pad") == 0
    assert readable == order._asdict()
    assert const.side == order.side and const.price == order.price


@given(twins(Event))
def test_event_round_trips(event):
    raw = event.to_bytes()
    assert len(raw) == EVENT_SIZE
    assert Event.from_bytes(raw) == event
    assert pack(EventRecord, event) == raw
    assert pack(EventRecord, unpack(EventRecord, raw)) == raw
    assert Event.from_const(EventRecord.const(event._asdict())) == event


def test_value_too_wide_names_the_field():
    with pytest.raises(RecordError, match=r"Order\.firm: 65536 does not fit 16 bits"):
        Order(firm=1 << 16).to_bytes()
    with pytest.raises(RecordError, match=r"Event\.shares"):
        Event(shares=-1).to_bytes()


def test_bad_enum_and_length_are_clear_errors():
    raw = bytearray(Event(kind=EventKind.Closed).to_bytes())
    raw[0] = 7                                     # kind 7 is not an EventKind
    with pytest.raises(RecordError, match=r"Event\.kind: 7 is not a valid EventKind"):
        Event.from_bytes(bytes(raw))
    with pytest.raises(RecordError, match="25 bytes, got 24"):
        Order.from_bytes(bytes(24))
    with pytest.raises(RecordError, match="28 bytes, got 29"):
        unpack(EventRecord, bytes(29))


def test_reason_codes_are_distinct_ascii_letters():
    for reasons in (CancelReason, RejectReason):
        codes = [r.value for r in reasons]
        assert len(set(codes)) == len(codes)
        assert all(chr(c).isalpha() for c in codes)
    assert chr(CancelReason.SelfMatch) == "Q" and chr(RejectReason.InvalidPrice) == "X"
    assert max(RejectReason) < 256 and max(CancelReason) < 256     # fit the 8-bit field
