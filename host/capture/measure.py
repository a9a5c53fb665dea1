"""Throughput of each capture backend: datagrams per second received, with losses.

    python -m tickpath.host.capture.measure [--count N] [--seconds S] [--messages K]
                                            [--backends recv,socket,ring,xdp,pcap]

A sender child process (its own process group, killed when the run ends) sends ``count``
MoldUDP64 packets of ``messages`` messages each as fast as it can, bounded by ``seconds``.
``recv`` (a plain blocking ``recv_into`` loop), ``socket`` and ``ring`` run on loopback, with
multicast pinned to 127.0.0.1; ``xdp`` (and ``ring-veth``, for comparison) run on a veth pair
between two network namespaces made for the run (root only) and removed afterwards. ``pcap``
replays an in-memory capture as fast as possible. ``*-frames`` take raw frames
(``poll_frames``) and skip parsing each one in Python. Rates are integers (datagrams/s); the
sender's own rate is printed too, since on a 2-core machine it is often the limit.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

from tickpath.protocol import moldudp64, pcap

from .base import Capture, Group

ALL = ("recv", "socket", "ring", "ring-frames", "ring-veth", "xdp", "xdp-frames", "pcap")
SESSION = "MEASURE001"


def _payloads(count: int, messages: int) -> list[bytes]:
    """A handful of distinct MoldUDP64 packets reused round robin (the sender must be fast)."""
    msg = bytes(30)                       # a 30-byte message body, ITCH-sized
    out = []
    for k in range(min(count, 64)):
        out.append(moldudp64.encode_packet(SESSION, 1 + k * messages, [msg] * messages))
    return out


def send_main(args: argparse.Namespace) -> int:
    g = Group.parse(args.group)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(args.iface))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    payloads = _payloads(args.count, args.messages)
    k = len(payloads)
    dst = (g.addr, g.port)
    start = time.monotonic_ns()
    deadline = start + args.seconds * 1_000_000_000
    sent = 0
    sendto = s.sendto
    while sent < args.count:
        try:
            sendto(payloads[sent % k], dst)
        except BlockingIOError:
            continue
        sent += 1
        if sent & 1023 == 0 and time.monotonic_ns() > deadline:
            break
    took = max(1, time.monotonic_ns() - start)
    print(json.dumps({"sent": sent, "sent_per_s": sent * 1_000_000_000 // took}), flush=True)
    return 0


def _sender(group: str, iface: str, count: int, seconds: int, messages: int,
            netns: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tickpath.host.capture.measure", "send", "--group", group,
           "--iface", iface, "--count", str(count), "--seconds", str(seconds),
           "--messages", str(messages)]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)


def _kill(proc: subprocess.Popen) -> str:
    """Stop the sender (its whole process group) and return what it printed."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, _err = proc.communicate(timeout=10)
    return out or ""


def _drain(receive, proc: subprocess.Popen, count: int, seconds: int) -> tuple[int, int]:
    """Call ``receive()`` (returns how many datagrams it got) until all ``count`` arrived, or
    the sender ended and nothing came for 300 ms, or ``seconds`` + 2 passed. Returns
    ``(received, ns from first to last datagram)``."""
    got = 0
    first = last = 0
    deadline = time.monotonic_ns() + (seconds + 2) * 1_000_000_000
    idle_since = None
    while got < count:
        now = time.monotonic_ns()
        if now > deadline:
            break
        n = receive()
        now = time.monotonic_ns()
        if n:
            if not got:
                first = now
            got += n
            last = now
            idle_since = None
        elif proc.poll() is not None:
            if idle_since is None:
                idle_since = now
            elif now - idle_since > 300_000_000:
                break
    return got, max(1, last - first)


def _run_capture(cap: Capture, proc: subprocess.Popen, count: int, seconds: int,
                 frames: bool = False) -> dict:
    poll = cap.poll_frames if frames else cap.poll

    def receive() -> int:
        return len(poll(50_000_000, 4096))
    try:
        got, took = _drain(receive, proc, count, seconds)
    finally:
        out = _kill(proc)
    return {"received": got, "per_s": got * 1_000_000_000 // took, **_sender_report(out),
            **{k: v for k, v in cap.stats().as_dict().items() if k in ("dropped", "filtered")}}


def _sender_report(out: str) -> dict:
    for line in out.splitlines():
        try:
            return json.loads(line)
        except ValueError:
            pass
    return {"sent": None}


def measure_recv(group: str, count: int, seconds: int, messages: int) -> dict:
    g = Group.parse(group)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((g.addr, g.port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(g.addr) + socket.inet_aton("127.0.0.1"))
    s.settimeout(0.05)
    buf = bytearray(2048)
    proc = _sender(group, "127.0.0.1", count, seconds, messages)

    def receive() -> int:
        n = 0
        try:
            while n < 4096:
                s.recv_into(buf)
                n += 1
        except TimeoutError:
            pass
        return n
    try:
        got, took = _drain(receive, proc, count, seconds)
    finally:
        out = _kill(proc)
        s.close()
    return {"received": got, "per_s": got * 1_000_000_000 // took, **_sender_report(out)}


def measure_pcap(count: int, messages: int) -> dict:
    from .replay import ReplayCapture
    payloads = _payloads(count, messages)
    frames = [pcap.udp_frame(p, src_ip="127.0.0.1", dst_ip="239.255.0.1", sport=1, dport=2)
              for p in payloads]
    image = pcap.pcap_bytes((i * 1000, frames[i % len(frames)]) for i in range(count))
    with ReplayCapture(io.BytesIO(image)) as cap:
        start = time.monotonic_ns()
        got = sum(1 for _ in cap.iterate(timeout_ns=60_000_000_000))
        took = max(1, time.monotonic_ns() - start)
    return {"received": got, "per_s": got * 1_000_000_000 // took}


def measure(backend: str, *, count: int, seconds: int, messages: int) -> dict:
    group = f"239.255.{os.getpid() % 250}.{1 + ALL.index(backend)}:{31000 + os.getpid() % 1000}"
    if backend == "recv":
        return measure_recv(group, count, seconds, messages)
    if backend == "pcap":
        return measure_pcap(count, messages)
    if backend == "socket":
        from .udp import SocketCapture
        with SocketCapture([group], batch=64) as cap:
            return _run_capture(cap, _sender(group, "127.0.0.1", count, seconds, messages),
                                count, seconds)
    if backend in ("ring", "ring-frames"):
        from .ring import RingCapture
        with RingCapture("lo", [group]) as cap:
            return _run_capture(cap, _sender(group, "127.0.0.1", count, seconds, messages),
                                count, seconds, frames=backend.endswith("-frames"))
    from .netns import VethLab, have_netns
    why = have_netns()
    if why:
        return {"skipped": why}
    with VethLab() as lab:
        if backend.startswith("xdp"):
            from .xdp import XdpCapture, xdp_unavailable
            why = xdp_unavailable()
            if why:
                return {"skipped": why}
            cap = lab.rx.run(XdpCapture, lab.rx_if, [group], mode="drv")
        else:
            from .ring import RingCapture
            cap = lab.rx.run(RingCapture, lab.rx_if, [group])
        with cap:
            return _run_capture(cap, _sender(group, lab.TX_ADDR, count, seconds, messages,
                                             netns=lab.tx.name), count, seconds,
                                frames=backend.endswith("-frames"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tickpath.host.capture.measure",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    snd = sub.add_parser("send", help="(internal) the sender child")
    snd.add_argument("--group", required=True)
    snd.add_argument("--iface", default="127.0.0.1")
    for q in (p, snd):
        q.add_argument("--count", type=int, default=200_000, help="datagrams (default 200000)")
        q.add_argument("--seconds", type=int, default=5, help="bound per backend (default 5)")
        q.add_argument("--messages", type=int, default=1,
                       help="30-byte messages per MoldUDP64 packet (default 1)")
    p.add_argument("--backends", default=",".join(ALL), help=f"from {','.join(ALL)}")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    args = p.parse_args(argv)
    if args.cmd == "send":
        return send_main(args)
    base = None
    for backend in args.backends.split(","):
        if backend not in ALL:
            p.error(f"unknown backend {backend!r}")
        r = measure(backend, count=args.count, seconds=args.seconds, messages=args.messages)
        if backend == "recv" and "per_s" in r:
            base = r["per_s"]
        if base and "per_s" in r:
            r["vs_recv_pct"] = r["per_s"] * 100 // base
        if args.json:
            print(json.dumps({"backend": backend, **r}), flush=True)
        else:
            fields = " ".join(f"{k}={v}" for k, v in r.items())
            print(f"{backend:10s} {fields}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
