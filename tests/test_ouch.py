import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpath.protocol import ouch42, ouch50
from tickpath.protocol import soupbintcp as sb
from tickpath.protocol.ouch42 import Kind, OuchError
from tickpath.protocol.pcap import iter_tcp_segments

ALNUM = "ABCXYZ0189"


def _value(spec_field):
    if spec_field.kind is Kind.ALPHA:
        if spec_field.size == 1:
            return st.sampled_from("BSYNAR ")
        return st.text(alphabet=ALNUM, max_size=spec_field.size)
    return st.integers(0, 2 ** (8 * spec_field.size) - 1)


def _records(codec_specs, records, with_appendage=False):
    strategies = []
    for t, spec in codec_specs.items():
        kw = {f.name: _value(f) for f in spec.fields[1:] if f.name != "appendage_length"}
        if spec.appendage:
            kw["appendage"] = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=8)),
                                       max_size=3).map(tuple)
        strategies.append(st.builds(records[t], **kw))
    return st.one_of(strategies)


@given(_records(ouch42.INBOUND, ouch42.INBOUND_RECORDS))
def test_ouch42_inbound_round_trip(msg):
    raw = msg.encode()
    assert len(raw) == msg.spec.length
    assert ouch42.decode_inbound(raw, 0, len(raw)) == msg


@given(_records(ouch42.OUTBOUND, ouch42.OUTBOUND_RECORDS))
def test_ouch42_outbound_round_trip(msg):
    raw = msg.encode()
    assert len(raw) == msg.spec.length
    assert ouch42.decode_outbound(raw, 0, len(raw)) == msg


@given(_records(ouch50.INBOUND, ouch50.INBOUND_RECORDS)
       | _records(ouch50.OUTBOUND, ouch50.OUTBOUND_RECORDS))
def test_ouch50_round_trip(msg):
    raw = msg.encode()
    decode = ouch50.decode_inbound if msg.direction == "inbound" else ouch50.decode_outbound
    assert decode(raw, 0, len(raw)) == msg


def test_every_ouch42_type_and_length():
    assert {t: s.length for t, s in ouch42.INBOUND.items()} == {"O": 49, "U": 47, "X": 19,
                                                                "M": 20}
    assert {t: s.length for t, s in ouch42.OUTBOUND.items()} == {
        "S": 10, "A": 66, "U": 80, "E": 40, "C": 28, "J": 24, "D": 37, "I": 23, "B": 32,
        "M": 28}


def test_ouch42_enter_order_wire_bytes():
    m = ouch42.EnterOrder(order_token="TOK1", side="B", shares=100, stock="AAPL",
                          price=1_500_000, time_in_force=ouch42.TIF_MARKET_HOURS, firm="FIRM",
                          display="Y", capacity="A", intermarket_sweep="N",
                          minimum_quantity=0, cross_type="N", customer_type="R")
    raw = m.encode()
    assert raw[:16] == b"OTOK1          B" and raw[20:28] == b"AAPL    "
    assert int.from_bytes(raw[28:32], "big") == 1_500_000
    assert ouch42.EnterOrder is not ouch42.ModifyOrder
    assert isinstance(ouch42.decode_inbound(raw), ouch42.EnterOrder)


def test_shared_letters_decode_by_direction():
    inbound = ouch42.ModifyOrder(order_token="T", side="S", shares=5).encode()
    outbound = ouch42.OrderModified(timestamp=1, order_token="T", side="S", shares=5).encode()
    assert inbound[:1] == outbound[:1] == b"M"
    assert type(ouch42.decode_inbound(inbound)).__name__ == "ModifyOrder"
    assert type(ouch42.decode_outbound(outbound)).__name__ == "OrderModified"


@pytest.mark.parametrize("raw, length, reason", [
    (b"Q" + bytes(10), None, "unknown OUCH 4.2 inbound message type 'Q'"),
    (b"X" + bytes(10), None, "truncated"),
    (b"X" + bytes(18), 20, "framing says 20"),
    (b"", None, "no message"),
])
def test_ouch42_bad_input(raw, length, reason):
    with pytest.raises(OuchError, match=reason) as e:
        ouch42.decode_inbound(b"pad" + raw, 3, length)
    assert e.value.offset == 3


def test_ouch42_encode_rejects_overflow():
    with pytest.raises(OuchError, match="shares"):
        ouch42.CancelOrder(order_token="T", shares=2**32).encode()
    with pytest.raises(OuchError, match="order_token"):
        ouch42.CancelOrder(order_token="X" * 15, shares=1).encode()


def test_ouch50_bad_appendage():
    raw = ouch50.EnterOrder(1, "B", 1, "A", 1, "0", "Y", "A", "N", "N", "C",
                            appendage=((2, b"LIME"),)).encode()
    with pytest.raises(OuchError, match="framing says"):
        ouch50.decode_inbound(raw, 0, len(raw) - 1)
    broken = raw[:-6] + b"\x09" + raw[-5:]         # entry claims more than the appendage
    with pytest.raises(OuchError, match="appendage entry") as e:
        ouch50.decode_inbound(broken)
    assert e.value.offset == 47


def _messages(path):
    framer, out = sb.SoupFramer(), []
    for _ts, seg in iter_tcp_segments(path):
        out.extend(framer.feed(seg.payload))
    assert framer.buffered == 0
    return out


def test_real_ouch50_captures(shared_data):
    d = shared_data / "pcap" / "nasdaq-ouch50"
    [enter] = _messages(d / "EnterOrderMessage.pcap")
    assert isinstance(enter, sb.UnsequencedData) and len(enter.message) == 53
    o = ouch50.decode_inbound(enter.message, 0, len(enter.message))
    assert (o.type, o.user_ref_num, o.side, o.quantity, o.symbol, o.price) == \
        ("O", 113, "T", 225, "CVLT", 630_200)             # $63.0200
    assert o.cl_ord_id == "H8FUB8IV" and ouch50.options(o) == {"firm": "LIME"}
    assert o.encode() == enter.message

    [acc] = _messages(d / "OrderAcceptedMessage.pcap")
    a = ouch50.decode_outbound(acc.message, 0, len(acc.message))
    assert (a.symbol, a.side, a.quantity, a.price, a.order_state) == \
        ("ADBE", "B", 40, 4_777_800, "L")
    assert a.order_reference_number == 257_340_661 and a.cl_ord_id == "7682701"
    assert ouch50.options(a) == {"firm": "MLRO", "bbo_weight_indicator": "0"}

    [cancel] = _messages(d / "CancelOrderMessage.pcap")
    x = ouch50.decode_inbound(cancel.message, 0, len(cancel.message))
    assert (x.type, x.user_ref_num, x.quantity) == ("X", 7_679_601, 0)

    [canceled] = _messages(d / "CanceledMessage.pcap")
    c = ouch50.decode_outbound(canceled.message, 0, len(canceled.message))
    assert (c.user_ref_num, c.quantity, c.reason) == (a.user_ref_num, 40, "U")
    assert c.timestamp > a.timestamp                       # canceled after it was accepted

    assert _messages(d / "ClientHeartbeatPacket.pcap") == [sb.ClientHeartbeat()]
    assert _messages(d / "ServerHeartbeatPacket.pcap") == [sb.ServerHeartbeat()]


def test_ouch50_appendage_helper():
    entries = ouch50.appendage(firm="LIME", min_qty=100, peg_offset=-5)
    m = ouch50.EnterOrder(1, "B", 1, "A", 1, "0", "Y", "A", "N", "N", "C", appendage=entries)
    back = ouch50.decode_inbound(m.encode())
    assert ouch50.options(back) == {"firm": "LIME", "min_qty": 100, "peg_offset": -5}
