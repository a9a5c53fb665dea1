"""``tickpath feed listen`` through the ring and AF_XDP backends, end to end, and recovery when
the re-request path itself loses requests and answers.

Loopback groups are pinned to 127.0.0.1 (TTL 0); the AF_XDP run happens between two network
namespaces this test makes and removes (a veth pair for the feed, a second one for the unicast
re-request path, since AF_XDP takes every frame of its interface). Child processes run in their
own process groups and are killed with the test.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from test_feed_loopback import (  # noqa: F401 - fixtures
    S,
    feed_cmd,
    free_port,
    group,
    messages,
    procs,
    running,
)

from tickpath import generator
from tickpath.host.feed import (
    Listener,
    LossyRelay,
    MoldSession,
    Publisher,
    PublisherConfig,
    RerequestRelay,
    SessionConfig,
)
from tickpath.protocol import moldudp64

MS = 1_000_000
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="AF_PACKET / AF_XDP / namespaces need root")


def _summary(out: bytes) -> dict:
    return json.loads(out.decode().strip().splitlines()[-1])


@needs_root
def test_cli_listen_ring_backend_on_lo(tmp_path, procs, running):  # noqa: F811
    """publish -> lossy relay -> `feed listen --backend ring` on lo: byte-identical BinaryFILE."""
    src, dst = group(), group()
    rr_port = free_port()
    feed = tmp_path / "in.itch"
    generator.write_binaryfile(generator.GeneratorConfig(messages=20_000, seed=31), feed)
    out = tmp_path / "out.itch"
    relay = LossyRelay(src, dst, seed=6, loss_ppm=30_000, dup_ppm=10_000, reorder_ppm=10_000)
    try:
        running.start(relay.run, stop=running.stop.is_set, timeout_ns=60 * S)
        listen = procs.start(feed_cmd() + ["listen", "--group", f"{dst[0]}:{dst[1]}",
                                           "--backend", "ring", "--ifname", "lo",
                                           "--rerequest", f"127.0.0.1:{rr_port}",
                                           "--out", str(out), "--timeout", "60", "-q"])
        time.sleep(1.0)
        publish = procs.start(feed_cmd() + ["publish", str(feed), "--group",
                                            f"{src[0]}:{src[1]}", "--rate", "200000",
                                            "--rerequest-bind", f"127.0.0.1:{rr_port}",
                                            "--linger", "30"])
        lout, lerr = listen.communicate(timeout=90)
        assert listen.returncode == 0, lerr.decode()
        os.killpg(publish.pid, signal.SIGINT)
        publish.communicate(timeout=30)
    finally:
        running.close()
        relay.close()
    summary = _summary(lout)
    assert summary["result"] == "complete" and summary["messages"] == 20_000
    assert summary["lost"] == 0 and summary["gaps"] > 0 and summary["recovered"] > 0
    assert relay.stats.dropped > 0
    assert out.read_bytes() == feed.read_bytes()              # byte-identical, once, in order


def _second_link(lab) -> tuple[str, str]:
    """A second veth pair between the lab's namespaces for the unicast re-request path;
    returns (server address in tx, its peer in rx). Removed with the namespaces."""
    tag = lab.tx_if[3:]
    a, b = f"tpc{tag}"[:15], f"tpd{tag}"[:15]
    lab.tx.ip("link", "add", a, "type", "veth", "peer", "name", b, "netns", lab.rx.name)
    lab.tx.ip("addr", "add", "198.18.0.5/30", "dev", a)
    lab.rx.ip("addr", "add", "198.18.0.6/30", "dev", b)
    lab.tx.ip("link", "set", a, "up")
    lab.rx.ip("link", "set", b, "up")
    return "198.18.0.5", "198.18.0.6"


@needs_root
def test_cli_listen_xdp_backend_in_netns(tmp_path, procs, running):  # noqa: F811
    """publisher and a lossy relay in one namespace, `feed listen --backend xdp` on the veth in
    the other; re-requests over a second veth pair. Byte-identical, and the publisher's own
    group (also on the wire) is counted as filtered, not received."""
    from tickpath.host.capture.netns import VethLab, have_netns
    from tickpath.host.capture.xdp import xdp_unavailable
    why = have_netns() or xdp_unavailable()
    if why:
        pytest.skip(why)
    feed = tmp_path / "in.itch"
    generator.write_binaryfile(generator.GeneratorConfig(messages=20_000, seed=32), feed)
    out = tmp_path / "out.itch"
    src, dst = group(), group()
    with VethLab() as lab:
        server, _peer = _second_link(lab)
        rr = f"{server}:{free_port()}"
        relay = lab.tx.run(LossyRelay, src, dst, seed=8, loss_ppm=30_000, dup_ppm=10_000,
                           reorder_ppm=10_000, interface=lab.TX_ADDR)
        try:
            running.start(relay.run, stop=running.stop.is_set, timeout_ns=60 * S)
            listen = procs.start(["ip", "netns", "exec", lab.rx.name] + feed_cmd() + [
                "listen", "--group", f"{dst[0]}:{dst[1]}", "--backend", "xdp",
                "--ifname", lab.rx_if, "--rerequest", rr, "--out", str(out),
                "--timeout", "60", "-q"])
            time.sleep(1.5)                                  # the XDP socket is bound
            publish = procs.start(["ip", "netns", "exec", lab.tx.name] + feed_cmd() + [
                "publish", str(feed), "--group", f"{src[0]}:{src[1]}", "--rate", "100000",
                "--interface", lab.TX_ADDR, "--rerequest-bind", rr, "--linger", "30"])
            lout, lerr = listen.communicate(timeout=90)
            assert listen.returncode == 0, lerr.decode()
            os.killpg(publish.pid, signal.SIGINT)
            pout, perr = publish.communicate(timeout=30)
        finally:
            running.close()
            relay.close()
    summary = _summary(lout)
    assert summary["result"] == "complete" and summary["messages"] == 20_000
    assert summary["lost"] == 0 and summary["gaps"] > 0 and summary["recovered"] > 0
    assert relay.stats.dropped > 0
    assert out.read_bytes() == feed.read_bytes()
    psum = _summary(pout)
    assert psum["rerequests"]["answered"] > 0
    # Every relayed datagram reached the listener, and nothing else was taken as feed data
    # (the publisher's source group crossed the same veth and was filtered).
    assert summary["packets"] - summary["recovered"] >= 0
    assert summary["drops"] == 0


def test_lost_rerequests_and_lost_answers_back_off_and_recover(running):  # noqa: F811
    """The re-request path itself is lossy: a real UDP relay between the listener and the
    server drops 30 % of re-requests and 30 % of answers. The session retries with growing
    timeouts and still delivers every message once, in order."""
    msgs = messages(20_000, seed=41)
    src, dst = group(), group()
    server = ("127.0.0.1", free_port())
    base, cap = 20 * MS, 160 * MS
    feed_relay = LossyRelay(src, dst, seed=12, loss_ppm=50_000)
    rr_relay = RerequestRelay(server, seed=13, request_loss_ppm=300_000,
                              answer_loss_ppm=300_000)
    from tickpath.host.capture import open_capture
    capture = open_capture("socket", [f"{dst[0]}:{dst[1]}"])
    pub = Publisher(src, PublisherConfig(session="BACKOFF", rate=200_000, linger_ns=60 * S,
                                         heartbeat_ns=50 * MS), rerequest_bind=server)
    try:
        running.start(feed_relay.run, stop=running.stop.is_set, timeout_ns=60 * S)
        running.start(rr_relay.run, stop=running.stop.is_set, timeout_ns=60 * S)
        time.sleep(0.05)
        running.start(pub.run, msgs, stop=running.stop.is_set,
                      deadline_ns=time.monotonic_ns() + 60 * S)
        delivered: list[bytes] = []
        session = MoldSession(SessionConfig(request_timeout_ns=base, max_request_timeout_ns=cap,
                                            recovery_timeout_ns=50 * S))
        polled: list[tuple[int, moldudp64.Rerequest]] = []
        session_poll = session.poll

        def poll(now_ns):                       # what the session asked for, and when
            out, requests = session_poll(now_ns)
            polled.extend((now_ns, r) for r in requests)
            return out, requests
        session.poll = poll
        with Listener(capture, session, groups=[dst], rerequest=rr_relay.address,
                      sink=delivered.extend) as listener:
            result = listener.run(timeout_ns=60 * S)
        running.close()
        assert not running.errors, running.errors
    finally:
        running.stop.set()
        capture.close()
        feed_relay.close()
        rr_relay.close()
        pub.close()
    assert result.reason == "complete" and result.ok
    assert delivered == msgs
    st = result.stats
    rs = rr_relay.stats
    assert feed_relay.stats.dropped > 0
    assert rs.requests_dropped > 0 and rs.answers_dropped > 0
    assert st["request_retries"] > 0 and st["lost"] == 0
    assert rs.requests == st["requests"]                       # every request went via the relay
    # Back-off, as the session timed it (its own clock): the same re-request (same first
    # sequence and count, so no progress in between) is repeated no sooner than its doubling
    # timeout allows.
    sends: dict[tuple[int, int], list[int]] = {}
    for now, r in polled:
        sends.setdefault((r.sequence, r.count), []).append(now)
    repeated = [ts for ts in sends.values() if len(ts) >= 3]
    assert repeated, "no re-request needed a third attempt"
    for ts in sends.values():
        for j in range(1, len(ts)):
            assert ts[j] - ts[j - 1] >= min(base << (j - 1), cap)
    assert max(ts[2] - ts[1] for ts in repeated) >= 2 * base      # the wait really doubled
    # ... and the relay saw them arrive: requests it dropped were asked for again.
    seen = {}
    for _t, kind, data, dropped in rr_relay.log:
        if kind == "req":
            r = moldudp64.Rerequest.decode(data)
            assert r.session == "BACKOFF"
            seen.setdefault((r.sequence, r.count), []).append(dropped)
    assert any(d[0] and len(d) > 1 for d in seen.values())
