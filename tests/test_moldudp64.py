import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpath.protocol import itch
from tickpath.protocol.moldudp64 import (
    MAX_PAYLOAD,
    MoldError,
    Packer,
    Rerequest,
    decode_packet,
    encode_packet,
    end_of_session,
    heartbeat,
    pack_messages,
)

sessions = st.text(alphabet="ABCDEFGHIJ0123456789", max_size=10)
messages = st.lists(st.binary(max_size=60), max_size=30)
sequences = st.integers(0, 2**64 - 1000)


@given(sessions, sequences, messages)
def test_packet_round_trip(session, sequence, msgs):
    p = decode_packet(encode_packet(session, sequence, msgs))
    assert (p.session, p.sequence, p.count, p.messages) == (session, sequence, len(msgs),
                                                            tuple(msgs))
    assert p.session_raw == session.encode().ljust(10, b" ")
    assert p.next_sequence == sequence + len(msgs)


@given(sessions, sequences)
def test_heartbeat_and_end_of_session(session, seq):
    hb = decode_packet(heartbeat(session, seq))
    assert hb.is_heartbeat and not hb.is_end_of_session and hb.sequence == seq
    eos = decode_packet(end_of_session(session, seq))
    assert eos.is_end_of_session and not eos.is_heartbeat and eos.messages == ()


@given(sessions, sequences, st.integers(1, 0xFFFE))
def test_rerequest_round_trip(session, seq, count):
    raw = Rerequest(session, seq, count).encode()
    assert len(raw) == 20
    assert Rerequest.decode(raw) == Rerequest(session, seq, count)


def test_nul_padded_session_is_stripped():
    p = decode_packet(b"\x00" * 10 + bytes(8) + b"\x00\x00")
    assert p.session == "" and p.session_raw == b"\x00" * 10


@pytest.mark.parametrize("raw, offset", [
    (b"ABC", 0),                                                   # truncated header
    (b"S" * 10 + bytes(8) + b"\x00\x01" + b"\x00", 20),            # truncated block length
    (b"S" * 10 + bytes(8) + b"\x00\x01" + b"\x00\x05abc", 20),     # block past the end
    (b"S" * 10 + bytes(8) + b"\x00\x01" + b"\x00\x01a" + b"zz", 23),  # leftover bytes
    (b"S" * 10 + bytes(8) + b"\xff\xff" + b"x", 20),               # bytes after end of session
])
def test_bad_packets_name_the_offset(raw, offset):
    with pytest.raises(MoldError) as e:
        decode_packet(raw)
    assert e.value.offset == offset
    assert f"offset {offset}" in str(e.value)


def test_rerequest_wrong_size():
    with pytest.raises(MoldError):
        Rerequest.decode(bytes(19))


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=200),
       st.integers(60, MAX_PAYLOAD))
def test_pack_messages_fills_packets_in_order(msgs, max_payload):
    msgs = [m for m in msgs if len(m) + 22 <= max_payload]
    out = list(pack_messages("SESS", 7, msgs, max_payload=max_payload))
    seq, got = 7, []
    for first, raw in out:
        assert len(raw) <= max_payload
        p = decode_packet(raw)
        assert p.sequence == first == seq and p.session == "SESS"
        seq += p.count
        got.extend(p.messages)
    assert got == msgs
    # greedy: the next packet's first message would not have fitted in the previous one
    for (_, a), (_, b) in zip(out, out[1:], strict=False):
        nxt = decode_packet(b).messages[0]
        assert len(a) + 2 + len(nxt) > max_payload


def test_packer_matches_pack_messages(bx_sample):
    raw = [r for _, r in itch.iter_binaryfile_raw(bx_sample)]
    expected = list(pack_messages("BX", 1, raw))
    packer, got = Packer("BX", 1), []
    for m in raw:
        got.extend(packer.add(m))
    got.append(packer.flush())
    assert got == expected
    assert packer.next_sequence == 1 + len(raw)
    assert decode_packet(packer.heartbeat()).sequence == 1 + len(raw)
    assert sum(decode_packet(p).count for _, p in expected) == len(raw) == 12012


def test_oversized_message_rejected():
    with pytest.raises(MoldError):
        list(pack_messages("S", 1, [bytes(MAX_PAYLOAD)]))
    with pytest.raises(MoldError):
        encode_packet("TOO-LONG-SESSION", 1, [])
