"""ITCH 5.0: the one definition, its codec, BinaryFILE framing, and the real sample."""

import collections

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpath.protocol import itch

# Per-type counts of the BX sample, from ../shared/data/README.md.
BX_COUNTS = {"P": 5000, "A": 4997, "D": 1745, "E": 198, "X": 45, "U": 12, "S": 6, "R": 3,
             "H": 3, "F": 3}


def test_all_23_types_defined():
    assert sorted(itch.SPECS) == sorted("SRHYLVWKJhAFECXDUPQBINO")
    for spec in itch.SPECS.values():
        assert [f.name for f in spec.fields[:4]] == [
            "message_type", "stock_locate", "tracking_number", "timestamp"]
        assert sum(f.size for f in spec.fields) == spec.length


def _field_strategy(f: itch.Field):
    if f.kind is itch.Kind.ALPHA:
        alphabet = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
        if f.size == 1:
            return st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                           min_size=1, max_size=1)
        # Longer text fields come back stripped of their right padding.
        return st.text(alphabet=alphabet, min_size=0, max_size=f.size)
    return st.integers(min_value=0, max_value=(1 << (8 * f.size)) - 1)


def _message_strategy(spec: itch.MessageSpec):
    cls = itch.RECORDS[spec.type]
    return st.builds(cls, **{f.name: _field_strategy(f) for f in spec.fields[1:]})


any_message = st.one_of([_message_strategy(s) for s in itch.SPECS.values()])


@given(any_message)
def test_round_trip(msg):
    raw = itch.encode(msg)
    assert len(raw) == msg.spec.length
    assert raw[0:1] == msg.type.encode()
    assert itch.decode(raw) == msg
    assert itch.decode(raw, 0, len(raw)) == msg
    assert itch.from_dict(msg.to_dict()) == msg


@given(st.lists(any_message, max_size=20))
def test_binaryfile_round_trip(msgs):
    image = itch.encode_binaryfile(msgs)
    assert [m for _, m in itch.iter_binaryfile(image)] == msgs
    assert [raw for _, raw in itch.iter_binaryfile_raw(image)] == [m.encode() for m in msgs]


def test_field_order_and_big_endian():
    msg = itch.AddOrderNoMpidAttributionMessage(
        stock_locate=13, tracking_number=0, timestamp=34200000123456,
        order_reference_number=42, buy_sell_indicator="B", shares=100, stock="AAPL",
        price=1234500)
    raw = msg.encode()
    assert raw == (b"A" + (13).to_bytes(2, "big") + b"\0\0" + (34200000123456).to_bytes(6, "big")
                   + (42).to_bytes(8, "big") + b"B" + (100).to_bytes(4, "big")
                   + b"AAPL    " + (1234500).to_bytes(4, "big"))
    assert msg.to_dict() == {
        "type": "A", "stock_locate": 13, "tracking_number": 0, "timestamp": 34200000123456,
        "order_reference_number": 42, "buy_sell_indicator": "B", "shares": 100, "stock": "AAPL",
        "price": 1234500}


def test_bx_sample_counts_and_round_trip(bx_sample):
    msgs = [m for _, m in itch.iter_binaryfile(bx_sample)]
    assert dict(collections.Counter(m.type for m in msgs)) == BX_COUNTS
    assert sum(BX_COUNTS.values()) == len(msgs) == 12012
    assert itch.encode_binaryfile(msgs) == bx_sample
    # Text fields are stripped of their padding; prices stay integer ticks.
    adds = [m for m in msgs if m.type == "A"]
    assert all(m.stock == m.stock.strip() and m.stock for m in adds)
    assert all(isinstance(m.price, int) for m in adds)


def test_unknown_type_names_offset():
    with pytest.raises(itch.ItchError, match=r"offset 5: unknown ITCH message type 'z'") as e:
        itch.decode(b"\0" * 5 + b"z" + b"\0" * 30, 5)
    assert e.value.offset == 5


def test_truncated_message_names_offset():
    raw = itch.SystemEventMessage(0, 0, 1, "O").encode()
    with pytest.raises(itch.ItchError, match="truncated") as e:
        itch.decode(b"xx" + raw[:-1], 2)
    assert e.value.offset == 2


def test_length_disagreeing_with_type():
    raw = itch.SystemEventMessage(0, 0, 1, "O").encode()
    with pytest.raises(itch.ItchError, match="12 bytes, framing says 13"):
        itch.decode(raw + b"\0", 0, 13)


def test_binaryfile_errors_name_offset(bx_sample):
    image = bx_sample[:1000]
    # Cut inside a message: the error names the offset of that message's length prefix.
    good_end = 0
    for off, _ in itch.iter_binaryfile(bx_sample):
        if off > 990:
            break
        good_end = off
    with pytest.raises(itch.ItchError, match="truncated") as e:
        list(itch.iter_binaryfile(image))
    assert e.value.offset == good_end
    # A length prefix that disagrees with the type.
    bad = bytearray(bx_sample[:200])
    bad[0:2] = (13).to_bytes(2, "big")        # the first message is a 12-byte 'S'
    with pytest.raises(itch.ItchError, match="framing says 13") as e:
        list(itch.iter_binaryfile(bad))
    assert e.value.offset == 2
    with pytest.raises(itch.ItchError, match="length prefix") as e:
        list(itch.iter_binaryfile(b"\x00"))
    assert e.value.offset == 0


def test_encode_rejects_out_of_range():
    with pytest.raises(itch.ItchError, match="shares"):
        itch.OrderCancelMessage(1, 0, 1, 5, 1 << 32).encode()
    with pytest.raises(itch.ItchError, match="stock"):
        itch.StockDirectoryMessage(1, 0, 1, "TOOLONGNAME", "Q", "N", 100, "N", "C", "Z",
                                   "P", "N", "N", "1", "N", 0, "N").encode()
