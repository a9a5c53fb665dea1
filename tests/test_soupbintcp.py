import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpath.protocol import soupbintcp as sb

alpha = st.text(alphabet="abcXYZ0189", max_size=6)
alpha10 = st.text(alphabet="abcXYZ0189", max_size=10)
seqnum = st.integers(0, 10**20 - 1)
body = st.binary(max_size=200)

packets = st.one_of(
    st.builds(sb.Debug, st.text(alphabet="hello world.", max_size=40)),
    st.builds(sb.LoginAccepted, alpha10, seqnum),
    st.builds(sb.LoginRejected, st.sampled_from("AS")),
    st.builds(sb.SequencedData, body),
    st.builds(sb.ServerHeartbeat),
    st.builds(sb.EndOfSession),
    st.builds(sb.LoginRequest, alpha, alpha10, alpha10, seqnum),
    st.builds(sb.UnsequencedData, body),
    st.builds(sb.ClientHeartbeat),
    st.builds(sb.LogoutRequest),
)


@given(packets)
def test_round_trip(packet):
    raw = packet.encode()
    assert int.from_bytes(raw[:2], "big") == len(raw) - 2
    assert sb.decode_packet(raw) == packet


@given(st.lists(packets, max_size=20), st.lists(st.integers(1, 50), min_size=1))
def test_framer_splits_any_segmentation(pkts, cuts):
    stream = b"".join(p.encode() for p in pkts)
    framer, got, pos, i = sb.SoupFramer(), [], 0, 0
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        got.extend(framer.feed(stream[pos:pos + n]))
        pos, i = pos + n, i + 1
    assert got == pkts and framer.buffered == 0 and framer.offset == len(stream)


def test_wire_padding_follows_spec():
    raw = sb.LoginRequest("bob", "pw", "S1", 42).encode()
    assert raw[3:9] == b"bob   " and raw[9:19] == b"pw        "
    assert raw[19:29] == b"S1        " and raw[29:49] == b"42".rjust(20)
    acc = sb.LoginAccepted("SESSION1", 1234).encode()
    assert acc == b"\x00\x1fASESSION1  " + b"1234".rjust(20)


@pytest.mark.parametrize("raw, offset", [
    (b"\x00", 0),                     # truncated length
    (b"\x00\x05S12", 0),              # truncated packet
    (b"\x00\x01Q", 0),                # unknown type
    (b"\x00\x02HX", 0),               # heartbeat with a payload
    (b"\x00\x00", 0),                 # no type byte
])
def test_bad_input_names_offset(raw, offset):
    with pytest.raises(sb.SoupError) as e:
        sb.decode_packet(raw)
    assert e.value.offset == offset and f"offset {offset}" in str(e.value)


def test_leftover_offset():
    with pytest.raises(sb.SoupError) as e:
        sb.decode_packet(b"\x00\x01Hxx")
    assert e.value.offset == 3


def test_framer_error_uses_stream_offset():
    framer = sb.SoupFramer()
    framer.feed(sb.ServerHeartbeat().encode() * 2)
    with pytest.raises(sb.SoupError) as e:
        framer.feed(b"\x00\x01?")
    assert e.value.offset == 6 and "offset 6" in str(e.value)


def test_bad_login_sequence_number():
    raw = b"\x00\x1fAS1        " + b"12x".rjust(20)
    with pytest.raises(sb.SoupError, match="not an ASCII number"):
        sb.decode_packet(raw)
