"""MoldSession (pure logic): sequencing, duplicates, gaps, re-requests with rate limit, back-off
and bounds, A/B arbitration, end of session and session change; driven with integer time."""

from __future__ import annotations

import random

import pytest

from tickpath import generator
from tickpath.host.feed.publisher import RerequestServer, RetransmissionStore
from tickpath.host.feed.session import MoldSession
from tickpath.protocol import moldudp64
from tickpath.protocol.moldudp64 import Rerequest

MS = 1_000_000
S = "SESS01"


def msg(i: int) -> bytes:
    """A distinct message body per sequence number (the session never looks inside)."""
    return b"M" + i.to_bytes(4, "big")


def pkt(seq: int, n: int, session: str = S) -> bytes:
    return moldudp64.encode_packet(session, seq, [msg(i) for i in range(seq, seq + n)])


def seqs(messages: list[bytes]) -> list[int]:
    return [int.from_bytes(m[1:], "big") for m in messages]


def test_in_order_delivery_and_counters():
    s = MoldSession(gap_delay_ns=0)
    out = []
    for seq in range(1, 31, 3):
        out += s.on_packet(pkt(seq, 3), seq)
    assert seqs(out) == list(range(1, 31))
    st = s.stats
    assert (st.delivered, st.packets, st.gaps, st.duplicate_packets) == (30, 10, 0, 0)
    assert s.next_sequence == 31 and s.session == S and not s.complete
    assert s.on_packet(moldudp64.end_of_session(S, 31), 100) == []
    assert s.complete and s.end_of_session == 31
    assert s.poll(200) == ([], [])


def test_duplicates_dropped_and_counted():
    s = MoldSession()
    out = s.on_packet(pkt(1, 5), 0)
    out += s.on_packet(pkt(1, 5), 1)               # whole duplicate
    out += s.on_packet(pkt(4, 4), 2)               # overlaps the front: 2 old, 2 new
    assert seqs(out) == list(range(1, 8))
    assert s.stats.duplicate_packets == 1
    assert s.stats.duplicate_messages == 5 + 2
    assert s.stats.delivered == 7


def test_malformed_and_foreign_session_counted():
    s = MoldSession(session=S)
    assert s.on_packet(b"\x00" * 7, 0) == []
    assert s.on_packet(pkt(1, 2, session="OTHER"), 0) == []
    assert s.on_packet(pkt(1, 2)[:-1], 0) == []
    assert (s.stats.malformed, s.stats.foreign_packets, s.stats.delivered) == (2, 1, 0)
    assert seqs(s.on_packet(pkt(1, 2), 1)) == [1, 2]


def test_gap_requested_after_delay_and_merged_in_order():
    s = MoldSession(gap_delay_ns=2 * MS)
    assert seqs(s.on_packet(pkt(1, 3), 0)) == [1, 2, 3]
    assert s.on_packet(pkt(7, 3), 1 * MS) == []        # 4..6 missing
    assert s.missing == [(4, 7)] and s.buffered == 3
    assert s.poll(2 * MS) == ([], [])                  # within the gap delay
    _, reqs = s.poll(3 * MS)
    assert reqs == [Rerequest(S, 4, 3)]
    assert s.outstanding == 1
    assert s.poll(4 * MS) == ([], [])                  # outstanding: not asked again
    out = s.on_packet(pkt(4, 3), 5 * MS, feed=-1)
    assert seqs(out) == list(range(4, 10))
    st = s.stats
    assert (st.gaps, st.gap_messages, st.recovered, st.requests) == (1, 3, 3, 1)
    assert s.missing == [] and s.buffered == 0 and s.outstanding == 0


def test_reordering_inside_gap_delay_needs_no_request():
    s = MoldSession(gap_delay_ns=5 * MS)
    out = s.on_packet(pkt(1, 2), 0)
    out += s.on_packet(pkt(5, 2), 1 * MS)
    out += s.on_packet(pkt(3, 2), 2 * MS)
    assert seqs(out) == list(range(1, 7))
    assert s.poll(10 * MS) == ([], [])
    assert s.stats.requests == 0 and s.stats.recovered == 2


def test_partial_answer_is_continued_at_once():
    s = MoldSession(gap_delay_ns=0, max_request_count=100)
    s.on_packet(pkt(1, 1), 0)
    s.on_packet(pkt(251, 1), 0)                        # 2..250 missing (249)
    _, reqs = s.poll(0)
    assert reqs == [Rerequest(S, 2, 100)]              # clamped to max_request_count
    s.on_packet(pkt(2, 40), 1 * MS)                    # a server answered only 40 (MTU)
    _, reqs = s.poll(1 * MS)
    assert reqs == [Rerequest(S, 42, 100)]
    assert s.stats.continuations == 1 and s.stats.request_retries == 0


def test_retry_with_exponential_backoff():
    s = MoldSession(gap_delay_ns=0, request_timeout_ns=10 * MS, max_request_timeout_ns=40 * MS,
                    recovery_timeout_ns=None)
    s.on_packet(pkt(1, 1), 0)
    s.on_packet(pkt(3, 1), 0)
    sent_at = []
    for t in range(0, 200 * MS, MS):
        _, reqs = s.poll(t)
        if reqs:
            assert reqs == [Rerequest(S, 2, 1)]
            sent_at.append(t)
    # timeouts 10, 20, 40, 40, 40 ... ms after each request
    assert sent_at[:6] == [0, 10 * MS, 30 * MS, 70 * MS, 110 * MS, 150 * MS]
    assert s.stats.request_retries == len(sent_at) - 1
    assert seqs(s.on_packet(pkt(2, 1), 200 * MS)) == [2, 3]


def test_outstanding_and_rate_bounds_are_counted_not_fatal():
    s = MoldSession(gap_delay_ns=0, max_outstanding=3, request_rate=1000, request_burst=4,
                    request_timeout_ns=1000 * MS)
    s.on_packet(pkt(1, 1), 0)
    for k in range(10):                                # ten one-message gaps: 2, 4, ..., 20
        s.on_packet(pkt(3 + 2 * k, 1), 0)
    _, reqs = s.poll(0)
    assert [r.sequence for r in reqs] == [2, 4, 6]
    assert s.stats.outstanding_limited == 1 and s.outstanding == 3
    # answers free the outstanding slots; the bucket held 4 requests, one is left
    for q in (2, 4, 6):
        s.on_packet(pkt(q, 1), 1)
    _, reqs = s.poll(1)
    assert [r.sequence for r in reqs] == [8]
    assert s.stats.rate_limited == 1
    _, reqs = s.poll(1 + 2 * MS)                       # 2 ms buys two more
    assert [r.sequence for r in reqs] == [10, 12]


def test_reorder_buffer_bound_overflow_is_recovered():
    s = MoldSession(gap_delay_ns=0, max_buffered=10)
    s.on_packet(pkt(1, 1), 0)
    assert s.on_packet(pkt(3, 8), 0) == []             # buffered: 8
    assert s.on_packet(pkt(11, 5), 0) == []            # 8 + 5 > 10: not kept
    assert s.stats.overflow_packets == 1 and s.stats.overflow_messages == 5
    assert s.missing == [(2, 3), (11, 16)]
    _, reqs = s.poll(0)
    assert [(r.sequence, r.count) for r in reqs] == [(2, 1), (11, 5)]
    out = s.on_packet(pkt(2, 1), 1)
    out += s.on_packet(pkt(11, 5), 2)
    assert seqs(out) == list(range(2, 16))


def test_heartbeat_reveals_tail_loss_and_end_of_session_waits():
    s = MoldSession(gap_delay_ns=0)
    s.on_packet(pkt(1, 5), 0)
    s.on_packet(moldudp64.heartbeat(S, 9), 1)          # 6..8 were sent and lost
    assert s.missing == [(6, 9)] and s.stats.heartbeats == 1
    s.on_packet(moldudp64.end_of_session(S, 9), 2)
    assert not s.complete
    _, reqs = s.poll(3)
    assert reqs == [Rerequest(S, 6, 3)]
    assert seqs(s.on_packet(pkt(6, 3), 4)) == [6, 7, 8]
    assert s.complete


def test_session_change_after_end_of_session():
    s = MoldSession()
    s.on_packet(pkt(1, 2), 0)
    assert s.on_packet(pkt(1, 2, session="NEXT"), 0) == []   # old one unfinished
    assert s.stats.foreign_packets == 1
    s.on_packet(moldudp64.end_of_session(S, 3), 0)
    assert s.complete
    out = s.on_packet(pkt(1, 2, session="NEXT"), 1)
    assert seqs(out) == [1, 2] and s.session == "NEXT" and not s.complete
    assert s.stats.session_changes == 1 and s.stats.delivered == 4


def test_late_join_starts_at_first_packet():
    s = MoldSession(first_sequence=None)
    assert seqs(s.on_packet(pkt(1000, 2), 0)) == [1000, 1001]
    assert s.missing == []


def test_give_up_after_recovery_timeout():
    s = MoldSession(gap_delay_ns=0, recovery_timeout_ns=100 * MS)
    s.on_packet(pkt(1, 1), 0)
    s.on_packet(pkt(4, 2), 0)
    s.poll(0)
    out, _ = s.poll(100 * MS)
    assert seqs(out) == [4, 5]
    assert s.stats.lost == 2 and s.lost_ranges == [(S, 2, 4)]
    assert s.on_packet(pkt(2, 2), 101 * MS) == []      # too late: duplicates now
    assert seqs(s.on_packet(pkt(6, 1), 102 * MS)) == [6]


def test_gateware_gap_event_hint():
    s = MoldSession(gap_delay_ns=0)
    s.on_packet(pkt(1, 2), 0)
    s.on_sequence_hint(6, 1)
    assert s.missing == [(3, 6)]


def test_a_b_arbitration_first_arrival_wins():
    """Same packets on two feeds with independent 20% losses and jitter, no re-requests: all
    delivered once and in order wherever at least one feed carried the packet."""
    rng = random.Random(5)
    packets = [(seq, pkt(seq, 4)) for seq in range(1, 4001, 4)]
    arrivals = []
    carried = set()
    for i, (seq, p) in enumerate(packets):
        for feed in (0, 1):
            if rng.random() >= 0.2:
                arrivals.append((i * 10 + rng.randrange(25), feed, seq, p))
                carried.add(seq)
    arrivals.sort()
    s = MoldSession(rerequest=False, recovery_timeout_ns=1000, gap_delay_ns=0)
    out = []
    for t, feed, _seq, p in arrivals:
        out += s.on_packet(p, t, feed)
        out += s.poll(t)[0]
    out += s.poll(10 ** 9)[0]
    expected = [q for seq in sorted(carried) for q in range(seq, seq + 4)]
    assert seqs(out) == expected
    st = s.stats
    assert st.feed_wins[0] + st.feed_wins[1] == len(carried)
    assert st.feed_packets[0] + st.feed_packets[1] == len(arrivals)
    assert st.duplicate_packets == len(arrivals) - len(carried)
    assert st.lost == 4 * (len(packets) - len(carried))
    assert st.requests == 0


@pytest.mark.parametrize("seed", range(6))
def test_simulated_lossy_network_with_server(seed):
    """Generator messages through a simulated network (loss, duplication, reordering of
    data and of re-requests and answers) with the real RerequestServer: the delivered stream
    is byte-identical to what was published."""
    rng = random.Random(seed)
    messages = list(generator.iter_messages(generator.GeneratorConfig(messages=6000, seed=seed)))
    store = RetransmissionStore(capacity=1 << 16)
    store.extend(messages)
    server = RerequestServer("SIM", store)
    loss = (0.01, 0.1, 0.3)[seed % 3]
    s = MoldSession(gap_delay_ns=2 * MS, request_timeout_ns=20 * MS, max_outstanding=4,
                    request_burst=8, request_rate=5000)
    events: list[tuple[int, int, str, bytes]] = []      # (time, tiebreak, kind, payload)
    t = 0
    for i, (_seq, p) in enumerate(moldudp64.pack_messages("SIM", 1, messages, 400)):
        t += 100_000
        if rng.random() >= loss:
            events.append((t + rng.randrange(400_000), i, "data", p))
            if rng.random() < 0.05:
                events.append((t + rng.randrange(2 * MS), i, "data", p))
    for k in range(3):
        if rng.random() >= loss:
            events.append((t + (k + 1) * 50 * MS, 10 ** 9 + k, "data",
                           moldudp64.end_of_session("SIM", len(messages) + 1)))
    out: list[bytes] = []
    now = 0
    tick = 10 ** 9 + 100
    while not s.complete and now < 60 * 10 ** 9:
        events.sort()
        nxt = events[0][0] if events else now + MS
        now = max(now, min(nxt, now + MS))
        while events and events[0][0] <= now:
            _t, _k, kind, payload = events.pop(0)
            if kind == "data":
                out += s.on_packet(payload, now, 0)
            else:
                answer = server.answer(payload)
                if answer is not None and rng.random() >= loss:
                    tick += 1
                    events.append((now + rng.randrange(1, 3 * MS), tick, "data", answer))
        released, reqs = s.poll(now)
        out += released
        for r in reqs:
            if rng.random() >= loss:
                tick += 1
                events.append((now + rng.randrange(1, 2 * MS), tick, "req", r.encode()))
    assert s.complete, (s.missing, s.stats)
    assert out == messages
    assert s.stats.lost == 0 and s.stats.delivered == len(messages)
    assert server.stats.bad == 0
    assert s.stats.requests > 0 and s.stats.recovered > 0
    if loss >= 0.1:
        assert s.stats.request_retries > 0 and s.stats.duplicate_packets > 0


def test_request_chunk_asks_for_a_burst_in_pieces_side_by_side():
    store = RetransmissionStore(capacity=1000)
    store.extend(msg(i) for i in range(1, 201))
    server = RerequestServer(S, store)
    s = MoldSession(gap_delay_ns=0, request_chunk=24, max_outstanding=4)
    assert seqs(s.on_packet(pkt(1, 10), 0)) == list(range(1, 11))
    assert s.on_packet(pkt(111, 10), 1 * MS) == []             # 11..110 missing: 100 messages
    _, reqs = s.poll(2 * MS)
    assert [(r.sequence, r.count) for r in reqs] == [(11, 24), (35, 24), (59, 24), (83, 24)]
    assert s.outstanding == 4 and s.missing[-1] == (107, 111)  # the rest waits its turn
    out = []
    for r in reqs:
        out += s.on_packet(server.answer(r.encode()), 3 * MS, feed=-1)
    _, reqs = s.poll(4 * MS)
    assert [(r.sequence, r.count) for r in reqs] == [(107, 4)]
    out += s.on_packet(server.answer(reqs[0].encode()), 5 * MS, feed=-1)
    assert seqs(out) == list(range(11, 121))
    st = s.stats
    assert st.recovered == 100 and st.recovered_gaps == 5 and st.request_retries == 0
    assert len(s.recovery_samples) == 5 and all(t > 0 for t in s.recovery_samples)
