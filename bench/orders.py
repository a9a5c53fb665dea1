"""Order round trips through ``tickpath gateway run`` on loopback (the gateway is a child
process in its own process group; this process is the client): FIX NewOrderSingle to
ExecutionReport new, OUCH Enter Order to Accepted, each p50/p99, one order at a time; then the
kill switch through the control directory (``tickpath kill``'s file write) to the last cancel
received by the clients, beside the order path's own command-to-last-cancel figure.

The journal is real (group commit, O_DSYNC), in a temporary directory: the round trip includes
making the order durable. Bounded: ``N`` orders per protocol, every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

from bench.report import Row
from tickpath.host.orders.control import KillFile
from tickpath.protocol import ouch42 as ouch
from tickpath.protocol import soupbintcp as soup
from tickpath.protocol.fix42 import FixFramer, FixMessage, encode, utc_timestamp

N = 400                 # orders per protocol
DEADLINE = 60.0         # seconds for the whole run


def _pct(values: list[int], q: int) -> int:
    s = sorted(values)
    return s[min(len(s) - 1, (len(s) * q) // 100)]


class _Fix:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = FixFramer()
        self.queue: list[FixMessage] = []
        self.seq = 1
        self.send("A", [(98, 0), (108, 30), (141, "Y")])
        assert self.next().msg_type == "A"

    def send(self, msg_type: str, body) -> None:
        self.sock.sendall(encode(msg_type, [(49, "B1"), (56, "TICKPATH"), (34, self.seq),
                                            (52, utc_timestamp())], body))
        self.seq += 1

    def next(self) -> FixMessage:
        for _ in range(100_000):
            if self.queue:
                return self.queue.pop(0)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("gateway closed FIX")
            self.queue += [m for m in self.framer.feed(data) if isinstance(m, FixMessage)]
        raise TimeoutError("no FIX message")

    def report(self) -> FixMessage:
        for _ in range(1000):
            m = self.next()
            if m.msg_type == "8":
                return m
        raise TimeoutError("no ExecutionReport")


class _Ouch:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = soup.SoupFramer()
        self.queue: list = []
        self.sock.sendall(soup.LoginRequest("B2", "pw", "", 1).encode())
        assert isinstance(self._packet(), soup.LoginAccepted)

    def _packet(self):
        for _ in range(100_000):
            if self.queue:
                return self.queue.pop(0)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("gateway closed OUCH")
            self.queue += self.framer.feed(data)
        raise TimeoutError("no SoupBinTCP packet")

    def msg(self) -> ouch.OuchMessage:
        for _ in range(1000):
            p = self._packet()
            if isinstance(p, soup.SequencedData):
                m = ouch.decode_outbound(p.message, 0, len(p.message))
                if m.type != "S":
                    return m
        raise TimeoutError("no OUCH message")

    def enter(self, token: str, price: int) -> None:
        m = ouch.EnterOrder(token, "S", 100, "BNCH", price, ouch.TIF_MARKET_HOURS, "", "Y", "A",
                            "N", 0, "N", "R")
        self.sock.sendall(soup.UnsequencedData(m.encode()).encode())


def run(n: int = N) -> list[Row]:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tickpath-bench-orders-") as tmp:
        d = pathlib.Path(tmp)
        out = d / "gateway.out"
        with out.open("w") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tickpath.host.commands.gateway", "run",
                 "--fix", "127.0.0.1:0", "--fix-session", "B1:BACC1:BF1",
                 "--ouch", "127.0.0.1:0", "--ouch-user", "B2:pw:BF2:BACC2",
                 "--journal", str(d / "journal"), "--store", str(d / "store"),
                 "--control", str(d / "control"), "--duration", str(DEADLINE)],
                stdout=f, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            ready = None
            while time.monotonic() - start < 30 and ready is None:
                text = out.read_text()
                if text.endswith("\n"):
                    ready = json.loads(text.splitlines()[0])
                elif proc.poll() is not None:
                    raise RuntimeError("gateway did not start")
                time.sleep(0.02)
            if ready is None:
                raise RuntimeError("gateway did not start in 30 s")
            fix, och = _Fix(ready["fix_port"]), _Ouch(ready["ouch_port"])
            fix_rt: list[int] = []
            for i in range(n):                      # resting buys, never crossing the sells
                t0 = time.perf_counter_ns()
                fix.send("D", [(11, f"b{i}"), (21, 1), (55, "BNCH"), (54, 1),
                               (60, utc_timestamp()), (40, 2), (38, 100),
                               (44, f"{10 + i % 50}.00"), (59, 0)])
                m = fix.report()
                fix_rt.append(time.perf_counter_ns() - t0)
                assert m.get(150) == "0", m.get(58)
            ouch_rt: list[int] = []
            for i in range(n):
                t0 = time.perf_counter_ns()
                och.enter(f"s{i}", 1_000_000 + 100 * (i % 50))
                m = och.msg()
                ouch_rt.append(time.perf_counter_ns() - t0)
                assert m.type == "A", m
            # kill switch: the file `tickpath kill` writes, to the last cancel received
            t0 = time.perf_counter_ns()
            KillFile(d / "control").change(kill=True)
            for _ in range(n):
                assert fix.report().get(150) == "4"
            t_fix = time.perf_counter_ns() - t0
            for _ in range(n):
                assert och.msg().type == "C"
            t_last = time.perf_counter_ns() - t0
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
            kill = next(json.loads(x) for x in out.read_text().splitlines()
                        if json.loads(x)["event"] == "kill")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return [
        Row("FIX order round trip p50", _pct(fix_rt, 50) / 1000, "us",
            note=f"{n} orders, NewOrderSingle to ExecutionReport new, journal durable"),
        Row("FIX order round trip p99", _pct(fix_rt, 99) / 1000, "us"),
        Row("OUCH order round trip p50", _pct(ouch_rt, 50) / 1000, "us",
            note=f"{n} orders, Enter Order to Accepted"),
        Row("OUCH order round trip p99", _pct(ouch_rt, 99) / 1000, "us"),
        Row("kill switch via gateway, to last cancel at the clients", t_last / 1000, "us",
            note=f"{2 * n} resting orders; last FIX cancel at {t_fix // 1000} us; "
                 "includes the control-file poll (5 ms)"),
        Row("kill switch in the order path, command to last cancel",
            kill["time_to_last_cancel_ns"] / 1000, "us",
            note=f"{kill['orders_canceled']} canceled"),
    ]
