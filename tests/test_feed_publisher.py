"""Retransmission store and re-request server (pure logic): bounds, MTU clamping, bad requests."""

from __future__ import annotations

import pytest

from tickpath.host.feed.publisher import PublisherConfig, RerequestServer, RetransmissionStore
from tickpath.protocol import moldudp64
from tickpath.protocol.moldudp64 import Rerequest


def test_store_is_a_bounded_ring():
    store = RetransmissionStore(capacity=100)
    store.extend(bytes([i % 256]) * 10 for i in range(250))
    assert (store.first_sequence, store.next_sequence) == (151, 251)
    assert 150 not in store and 151 in store and 250 in store and 251 not in store
    assert store.get(150, 5) == []
    assert store.get(151, 2) == [bytes([150]) * 10, bytes([151]) * 10]
    assert store.get(249, 10) == [bytes([248]) * 10, bytes([249]) * 10]   # end of what is held
    store.append(b"x")
    assert store.first_sequence == 152 and store.get(251, 1) == [b"x"]


def test_answer_is_clamped_to_one_mtu():
    store = RetransmissionStore(capacity=1000)
    msgs = [bytes([65 + i % 26]) * 36 for i in range(500)]
    store.extend(msgs)
    server = RerequestServer("SRV", store, max_payload=1472)
    answer = server.answer(Rerequest("SRV", 10, 400).encode())
    p = moldudp64.decode_packet(answer)
    fit = (1472 - 20) // 38                              # 38 bytes per block
    assert (p.session, p.sequence, p.count) == ("SRV", 10, fit)
    assert list(p.messages) == msgs[9:9 + fit]
    assert len(answer) <= 1472
    assert (server.stats.answered, server.stats.clamped, server.stats.messages) == (1, 1, fit)
    exact = moldudp64.decode_packet(server.answer(Rerequest("SRV", 1, 3).encode()))
    assert exact.messages == tuple(msgs[:3]) and server.stats.clamped == 1


def test_bad_rerequests_are_counted():
    store = RetransmissionStore(capacity=10)
    store.extend([b"abc"] * 30)                           # holds 21..30
    server = RerequestServer("SRV", store)
    bad = [
        b"short",                                         # not 20 bytes
        Rerequest("OTHER", 25, 1).encode(),               # another session
        moldudp64.encode_packet("SRV", 25, [])[:18] + b"\x00\x00",    # count 0
        moldudp64.end_of_session("SRV", 25),              # count 0xFFFF
        Rerequest("SRV", 31, 1).encode(),                 # not published yet
        Rerequest("SRV", 5, 3).encode(),                  # no longer held
    ]
    for b in bad:
        assert server.answer(b) is None
    assert server.stats.bad == len(bad) and server.stats.too_old == 1
    assert server.stats.requests == len(bad) and server.stats.answered == 0
    assert moldudp64.decode_packet(server.answer(Rerequest("SRV", 30, 5).encode())).count == 1


def test_publisher_config_validation():
    with pytest.raises(ValueError):
        PublisherConfig(session="ELEVENCHARS")
    with pytest.raises(ValueError):
        PublisherConfig(rate=0)
    with pytest.raises(ValueError):
        PublisherConfig(max_payload=10)
