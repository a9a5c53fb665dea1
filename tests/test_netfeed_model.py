"""The golden models of NetRx and MoldSequencer, against the project's own codecs."""

import random

import pytest

from tickpath.model.netfeed import FilterEntry, MoldSequencerModel, NetRxModel, RxReason
from tickpath.protocol import moldudp64, pcap
from tickpath.protocol.netfeed import SeqEventKind, session_int
from tickpath.sim.net_rx.stimulus import (
    FILTERS,
    PORT,
    SESSION,
    build_frame,
    capture_frames,
)


def rx():
    return NetRxModel([FilterEntry.of(g, p) for g, p in FILTERS])


def test_accepts_what_pcap_parses(shared_data):
    model = rx()
    for frame in capture_frames(sorted(shared_data.glob("pcap/*-itch50"))):
        result = model.frame(frame.data)
        d = pcap.parse_udp_frame(frame.data)
        assert result.reason is RxReason.Accepted and d.ip_checksum_ok
        assert (result.payload, result.group, result.port) == (d.payload, 0, PORT)


@pytest.mark.parametrize("kw, reason", [
    ({}, RxReason.Accepted),
    ({"vlan": 7, "options": bytes(8), "padding": bytes(30)}, RxReason.Accepted),
    ({"bad_checksum": True}, RxReason.BadIpChecksum),
    ({"port": PORT + 1}, RxReason.Filtered),
    ({"group": "239.3.3.3"}, RxReason.Filtered),
    ({"proto": 6}, RxReason.Filtered),
    ({"ethertype": 0x0806}, RxReason.Filtered),
    ({"frag": 0x2000}, RxReason.Fragment),
    ({"ulen_delta": -1}, RxReason.Malformed),
    ({"total_delta": 5}, RxReason.Malformed),
    ({"version": 6}, RxReason.Malformed),
])
def test_reasons(kw, reason):
    frame = build_frame(b"payload!", **kw)
    result = rx().classify(frame)
    assert result.reason is reason
    if reason is RxReason.Accepted:
        assert result.payload == b"payload!"
        assert pcap.parse_udp_frame(frame).payload == b"payload!"


def test_fcs_wins_and_truncation():
    frame = build_frame(b"x" * 40)
    assert rx().classify(frame, fcs_bad=True).reason is RxReason.BadFcs
    for cut in range(1, len(frame)):
        assert rx().classify(frame[:cut]).reason is RxReason.Malformed, cut


def test_sequencer_gap_retransmission_end_of_session():
    model = MoldSequencerModel()
    msgs = [bytes([65 + i]) * 3 for i in range(6)]
    p = lambda s, ms: moldudp64.encode_packet(SESSION, s, ms)  # noqa: E731
    out, ev = model.packet(p(1, msgs[:2]))
    assert [(m.sequence, m.data) for m in out] == [(1, msgs[0]), (2, msgs[1])] and ev == []
    out, ev = model.packet(p(5, msgs[4:6]))                     # 3, 4 lost
    sess = session_int(SESSION)
    assert out == [] and ev == [{"kind": SeqEventKind.Gap, "session": sess, "first": 3,
                                 "count": 4}]
    out, ev = model.packet(p(7, [b"G"]))                        # newly found: 7 only
    assert ev[0]["first"] == 7 and ev[0]["count"] == 1
    out, ev = model.packet(p(3, msgs[2:5]))                     # retransmission 3..5
    assert [m.sequence for m in out] == [3, 4, 5] and ev == []
    out, ev = model.packet(p(2, msgs[1:6]))                     # overlaps: 6 only
    assert [m.sequence for m in out] == [6]
    out, ev = model.packet(moldudp64.end_of_session(SESSION, 9))     # 7 known, 8 new
    assert [e["kind"] for e in ev] == [SeqEventKind.Gap, SeqEventKind.EndOfSession]
    assert model.counters["ahead"] == 2 and model.counters["gaps"] == 3
    out, ev = model.packet(p(3, msgs[2:4]))
    assert out == [] and model.counters["duplicates"] == 1


def test_sequencer_malformed_blocks():
    model = MoldSequencerModel()
    packet = moldudp64.encode_packet(SESSION, 1, [b"ABCDE", b"FGHIJ"])
    out, _ = model.packet(packet[:-2])                          # second block cut short
    assert [(m.sequence, m.data) for m in out] == [(1, b"ABCDE"), (2, b"FGH")]
    assert model.expected == 2 and model.counters["malformed"] == 1
    out, _ = model.packet(packet + b"zz")                       # trailing bytes
    assert [m.sequence for m in out] == [2] and model.counters["malformed"] == 2
    rng = random.Random(1)
    for _ in range(200):                                        # never raises
        model.packet(rng.randbytes(rng.randint(0, 60)))
