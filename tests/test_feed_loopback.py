"""Publisher → deterministic lossy relay → capture → session, on loopback multicast only.

Every group is pinned to 127.0.0.1 (TTL 0); ports are picked free per test and groups are
derived from the process id, so parallel workers never meet. Threads and child processes are
bounded in time and stopped (process groups killed) in teardown.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tickpath import generator
from tickpath.host.capture import open_capture
from tickpath.host.feed import (
    Listener,
    LossyRelay,
    MoldSession,
    Publisher,
    PublisherConfig,
    SessionConfig,
    multicast_receiver,
)
from tickpath.protocol import itch, moldudp64, pcap

S = 1_000_000_000
_counter = itertools.count(1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group() -> tuple[str, int]:
    """A multicast group unique to this process and call, with a free port."""
    pid = os.getpid()
    n = next(_counter)
    return f"239.{200 + pid % 50}.{(pid // 50) % 256}.{n % 250 + 1}", free_port()


def messages(n: int, seed: int = 0) -> list[bytes]:
    return list(generator.iter_messages(generator.GeneratorConfig(messages=n, seed=seed)))


class Running:
    """Threads (publisher, relays) that stop with the test, bounded in time."""

    def __init__(self):
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, fn, *args, **kwargs):
        def body():
            try:
                fn(*args, **kwargs)
            except BaseException as e:            # reported by the test
                self.errors.append(e)
        t = threading.Thread(target=body, daemon=True)
        t.start()
        self.threads.append(t)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)
        assert not any(t.is_alive() for t in self.threads)


@pytest.fixture
def running():
    r = Running()
    try:
        yield r
    finally:
        r.close()


def publish_through_relays(running, msgs, relays_cfg, *, rate=2_000_000, rerequest=True,
                           timeout_s=60, session_kwargs=None):
    """Publish ``msgs`` to a group, relay it to one group per entry of ``relays_cfg``
    (LossyRelay keywords), listen to all of them; returns (delivered, result, relays, pub)."""
    src = group()
    dsts = [group() for _ in relays_cfg]
    rr = ("127.0.0.1", free_port()) if rerequest else None
    relays = [LossyRelay(src, d, **cfg) for d, cfg in zip(dsts, relays_cfg, strict=True)]
    capture = open_capture("socket", [f"{a}:{p}" for a, p in dsts])
    pub = Publisher(src, PublisherConfig(session="LOOP", rate=rate, linger_ns=timeout_s * S,
                                         heartbeat_ns=50_000_000), rerequest_bind=rr)
    try:
        for relay in relays:
            running.start(relay.run, stop=running.stop.is_set, timeout_ns=timeout_s * S)
        time.sleep(0.05)
        deadline = time.monotonic_ns() + timeout_s * S
        running.start(pub.run, msgs, stop=running.stop.is_set, deadline_ns=deadline)
        delivered: list[bytes] = []
        session = MoldSession(SessionConfig(rerequest=rerequest, **(session_kwargs or {})))
        with Listener(capture, session, groups=dsts, rerequest=rr,
                      sink=delivered.extend) as listener:
            result = listener.run(timeout_ns=timeout_s * S)
        running.close()
        assert not running.errors, running.errors
        return delivered, result, relays, pub
    finally:
        running.stop.set()
        capture.close()
        for relay in relays:
            relay.close()
        pub.close()


@pytest.mark.parametrize("loss_ppm", [10_000, 100_000], ids=["loss1pct", "loss10pct"])
def test_lossy_relay_100k_byte_identical(running, loss_ppm):
    msgs = messages(100_000, seed=loss_ppm)
    delivered, result, (relay,), pub = publish_through_relays(
        running, msgs, [dict(seed=7, loss_ppm=loss_ppm, dup_ppm=20_000, reorder_ppm=20_000)])
    assert result.reason == "complete" and result.ok
    assert delivered == msgs                              # byte-identical, once, in order
    st = result.stats
    assert st["delivered"] == len(msgs) and st["lost"] == 0
    assert relay.stats.dropped > 0 and relay.stats.duplicated > 0 and relay.stats.reordered > 0
    assert st["gaps"] > 0 and st["recovered"] == st["gap_messages"]
    assert st["requests"] > 0 and pub.server.stats.answered > 0 and pub.server.stats.bad == 0
    assert st["feed_packets"][0] == result.capture["received"]
    if result.capture["dropped"] == 0:                    # then only the relay lost anything
        assert st["duplicate_packets"] >= relay.stats.duplicated
        assert st["feed_packets"][0] == relay.stats.forwarded


def test_a_b_arbitration_independent_losses(running):
    msgs = messages(50_000, seed=3)
    delivered, result, (ra, rb), pub = publish_through_relays(
        running, msgs, [dict(seed=1, loss_ppm=100_000, reorder_ppm=10_000),
                        dict(seed=2, loss_ppm=100_000, dup_ppm=10_000)],
        session_kwargs={"gap_delay_ns": 100_000_000})   # wait for the slower feed's copy
    assert result.reason == "complete"
    assert delivered == msgs
    st = result.stats
    wins = st["feed_wins"]
    assert wins[0] > 0 and wins[1] > 0
    # Feeds cover each other: re-requests only where both lost (about 1% of packets).
    assert st["requests"] < min(ra.stats.dropped, rb.stats.dropped)
    assert st["lost"] == 0


def test_a_b_without_rerequests_covers_single_feed_losses(running):
    """Feed A loses 10%, feed B nothing: complete without a single re-request."""
    msgs = messages(20_000, seed=4)
    delivered, result, (ra, _rb), _pub = publish_through_relays(
        running, msgs, [dict(seed=1, loss_ppm=100_000), dict(seed=2)], rerequest=False,
        session_kwargs={"gap_delay_ns": 0})
    assert result.reason == "complete" and delivered == msgs
    assert result.stats["requests"] == 0 and ra.stats.dropped > 0


@pytest.mark.long
@pytest.mark.parametrize("loss_ppm", [10_000, 100_000], ids=["loss1pct", "loss10pct"])
def test_lossy_relay_1m_byte_identical(running, loss_ppm):
    msgs = messages(1_000_000, seed=loss_ppm)
    delivered, result, _relays, _pub = publish_through_relays(
        running, msgs, [dict(seed=9, loss_ppm=loss_ppm, dup_ppm=10_000, reorder_ppm=10_000)],
        timeout_s=240)
    assert result.reason == "complete"
    assert delivered == msgs and result.stats["lost"] == 0


def test_publisher_heartbeats_and_end_of_session_on_the_wire():
    g = group()
    rx = multicast_receiver(g)
    pub = Publisher(g, PublisherConfig(session="HB", rate=100, burst=1, heartbeat_ns=20_000_000,
                                       eos_repeats=3, eos_interval_ns=1_000_000, linger_ns=0))
    try:
        pub.run([b"S" + bytes(10) + b"O", b"S" + bytes(10) + b"Q"],
                deadline_ns=time.monotonic_ns() + 5 * S)
        got = []
        while True:
            try:
                got.append(moldudp64.decode_packet(rx.recv(2048)))
            except BlockingIOError:
                break
    finally:
        rx.close()
        pub.close()
    data = [p for p in got if p.count not in (0, 0xFFFF)]
    assert [(p.sequence, p.count) for p in data] == [(1, 1), (2, 1)]
    eos = [p for p in got if p.is_end_of_session]
    assert len(eos) == 3 and all(p.sequence == 3 for p in eos)
    assert got[-1].is_end_of_session and all(p.session == "HB" for p in got)


@pytest.mark.skipif(shutil.which("tshark") is None,
                    reason="tshark (Debian package tshark) is not installed")
def test_publisher_packets_decode_in_tshark(tmp_path):
    """The publisher's real datagrams, framed and handed to Wireshark's MoldUDP64 dissector."""
    g = group()
    msgs = messages(3_000, seed=11)
    rx = multicast_receiver(g)
    pub = Publisher(g, PublisherConfig(session="TSHARK", eos_repeats=1, linger_ns=0))
    try:
        pub.run(msgs, deadline_ns=time.monotonic_ns() + 10 * S)
        frames = []
        while True:
            try:
                payload = rx.recv(2048)
            except BlockingIOError:
                break
            frames.append((1_000_000_000 * (len(frames) + 1),
                           pcap.udp_frame(payload, src_ip="127.0.0.1", dst_ip=g[0],
                                          sport=40000, dport=g[1])))
    finally:
        rx.close()
        pub.close()
    path = tmp_path / "pub.pcap"
    pcap.write_pcap(path, frames)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-d", f"udp.port=={g[1]},moldudp64", "-T", "fields",
         "-E", "separator=|", "-e", "moldudp64.session", "-e", "moldudp64.sequence",
         "-e", "moldudp64.count", "-e", "moldudp64.msgdata"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    decoded: list[bytes] = []
    next_seq = 1
    rows = [line.split("|") for line in out.splitlines() if line]
    assert len(rows) == len(frames)
    for session, seq, count, data in rows:
        assert session.strip() == "TSHARK"
        assert int(seq) == next_seq
        if int(count) == 0xFFFF:
            continue
        blocks = [bytes.fromhex(h.replace(":", "")) for h in data.split(",")]
        assert len(blocks) == int(count)
        decoded += blocks
        next_seq += len(blocks)
    assert decoded == msgs
    assert int(rows[-1][2]) == 0xFFFF and int(rows[-1][1]) == len(msgs) + 1


# --- the real captures, through the pcap replay backend --------------------------------------

def real_capture_stream(shared_data, tmp_path, *, drop_index=None):
    """The ITCH messages of every ../shared/data/pcap/*-itch50 file, rewritten as one
    consistent MoldUDP64 stream (session, consecutive sequences, valid checksums, one group)
    with end of session; the ITCH messages themselves stay byte for byte."""
    files = sorted(shared_data.glob("pcap/*-itch50/*.pcap"))
    if not files:
        pytest.skip("no *-itch50 captures in ../shared/data/pcap")
    packets = []
    for f in files:
        for _ts, _d, p in pcap.iter_mold_messages(f):
            packets.append(p.messages)
    g = ("239.1.1.1", 30001)
    frames, seq, msgs = [], 1, []
    for i, block in enumerate(packets):
        payload = moldudp64.encode_packet("REPLAY", seq, block)
        seq += len(block)
        if i != drop_index:
            frames.append(payload)
        msgs += block
    frames.append(moldudp64.end_of_session("REPLAY", seq))
    path = tmp_path / "real.pcap"
    pcap.write_pcap(path, [(1_000 * (k + 1), pcap.udp_frame(p, src_ip="127.0.0.1", dst_ip=g[0],
                                                           sport=30000, dport=g[1]))
                           for k, p in enumerate(frames)])
    return path, g, msgs, len(files)


def test_real_captures_through_pcap_replay(shared_data, tmp_path):
    path, g, msgs, nfiles = real_capture_stream(shared_data, tmp_path)
    assert nfiles == 23 and len(msgs) == 107           # the BX and PSX sample sets
    assert {chr(m[0]) for m in msgs} == set("ACDEFHNPSUXY")
    assert all(len(m) == itch.message_length(chr(m[0])) for m in msgs)
    delivered: list[bytes] = []
    capture = open_capture("pcap", [f"{g[0]}:{g[1]}"], path=str(path))
    with capture, Listener(capture, MoldSession(SessionConfig(rerequest=False)), groups=[g],
                           sink=delivered.extend) as listener:
        result = listener.run(timeout_ns=30 * S)
    assert result.reason == "complete" and result.session == "REPLAY"
    assert delivered == msgs
    assert result.stats["gaps"] == 0 and result.stats["delivered"] == len(msgs)


# --- the command line, as subprocesses ---------------------------------------------------------

def feed_cmd() -> list[str]:
    """``tickpath feed`` once it is registered in the CLI, the module itself until then."""
    from tickpath.host.cli import COMMANDS
    if "feed" in COMMANDS:
        return [os.path.join(os.path.dirname(sys.executable), "tickpath"), "feed"]
    return [sys.executable, "-m", "tickpath.host.commands.feed"]


class Procs:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, args, **kw) -> subprocess.Popen:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait(timeout=10)
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()


@pytest.fixture
def procs():
    p = Procs()
    try:
        yield p
    finally:
        p.close()


def test_cli_publish_relay_listen_end_to_end(tmp_path, procs, running):
    src, dst = group(), group()
    rr_port = free_port()
    feed = tmp_path / "in.itch"
    generator.write_binaryfile(generator.GeneratorConfig(messages=20_000, seed=21), feed)
    out = tmp_path / "out.itch"
    relay = LossyRelay(src, dst, seed=5, loss_ppm=50_000, dup_ppm=10_000, reorder_ppm=10_000)
    try:
        running.start(relay.run, stop=running.stop.is_set, timeout_ns=60 * S)
        listen = procs.start(feed_cmd() + ["listen", "--group", f"{dst[0]}:{dst[1]}",
                                           "--rerequest", f"127.0.0.1:{rr_port}",
                                           "--out", str(out), "--timeout", "60"])
        time.sleep(1.0)          # the listener has joined before the first packet
        publish = procs.start(feed_cmd() + ["publish", str(feed), "--group",
                                            f"{src[0]}:{src[1]}", "--rate", "200000",
                                            "--rerequest-bind", f"127.0.0.1:{rr_port}",
                                            "--linger", "30"])
        lout, lerr = listen.communicate(timeout=90)
        assert listen.returncode == 0, lerr.decode()
        os.killpg(publish.pid, signal.SIGINT)      # stop its linger: the run is done
        pout, perr = publish.communicate(timeout=30)
    finally:
        running.close()
        relay.close()
    summary = json.loads(lout.decode().strip().splitlines()[-1])
    assert summary["result"] == "complete" and summary["messages"] == 20_000
    assert summary["gaps"] > 0 and summary["recovered"] > 0 and summary["lost"] == 0
    assert out.read_bytes() == feed.read_bytes()
    assert b"messages 20,000" in lerr                # the live counts on stderr
    assert publish.returncode == 0, perr.decode()
    psum = json.loads(pout.decode().strip().splitlines()[-1])
    assert psum["messages"] == 20_000 and psum["rerequests"]["answered"] > 0


def test_cli_listen_pcap_backend_and_unrecoverable_gap(shared_data, tmp_path, procs):
    path, g, msgs, _ = real_capture_stream(shared_data, tmp_path)
    out = tmp_path / "out.itch"
    ok = procs.start(feed_cmd() + ["listen", "--group", f"{g[0]}:{g[1]}", "--backend", "pcap",
                                   "--pcap", str(path), "--out", str(out), "--timeout", "30",
                                   "-q"])
    sout, serr = ok.communicate(timeout=60)
    assert ok.returncode == 0, serr.decode()
    assert out.read_bytes() == itch.encode_binaryfile(msgs)
    assert json.loads(sout)["messages"] == len(msgs)
    # one packet missing and nobody to ask for it: reported, non-zero exit, no traceback
    (tmp_path / "gap").mkdir()
    path, g, msgs, _ = real_capture_stream(shared_data, tmp_path / "gap", drop_index=3)
    bad = procs.start(feed_cmd() + ["listen", "--group", f"{g[0]}:{g[1]}", "--backend", "pcap",
                                    "--pcap", str(path), "--timeout", "30", "-q",
                                    "--recovery-timeout", "0.2"])
    sout, serr = bad.communicate(timeout=60)
    assert bad.returncode == 1
    assert b"Traceback" not in serr and b"could not be recovered" in serr
    summary = json.loads(sout)
    assert summary["lost"] >= 1 and summary["messages"] == len(msgs) - summary["lost"]


def test_cli_operator_errors(procs):
    p = procs.start(feed_cmd() + ["publish", "/nonexistent.itch", "--group", "239.1.1.1:1"])
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and b"Traceback" not in err and b"/nonexistent.itch" in err
    p = procs.start(feed_cmd() + ["listen", "--group", "10.0.0.1"])
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and b"is not ADDR:PORT" in err
    p = procs.start(feed_cmd() + ["publish", "--generate", "10", "--group", "127.0.0.1:5000"])
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and b"not a multicast group" in err
