"""Crash test (issue 6, Proof): ``tickpath gateway run`` as a child process (its own process
group) killed with SIGKILL at random moments while two FIX clients (simplefix) send crossing
orders, restarted each time. Afterwards:

- ``tickpath audit verify`` passes;
- every ExecutionReport the clients received (new and fills) is in the journal (ACCEPTED /
  EXECUTED with the same order id, shares and price);
- a fill in the journal that no client saw belongs to the action that was running when the
  process died (the last one of its run: its acknowledgement had not been written yet);
- ``tickpath audit replay --json`` equals the positions the clients' fills imply (plus those
  last-action fills);
- FIX sequence numbers resume: after every restart the acceptor's Logon continues the
  numbering (never lower than the client expects), the gaps are filled by resend, and at the
  end both sides' numbers agree with the acceptor's persisted ones.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import select
import signal
import socket
import subprocess
import sys
import time

import pytest
import simplefix
from click.testing import CliRunner

from tickpath.host.audit import Kind, iter_records
from tickpath.host.cli import main as cli
from tickpath.host.positions import Positions
from tickpath.protocol.fix42 import utc_timestamp

SERVER = "TICKPATH"
SESSIONS = {"C1": ("ACC1", "1"), "C2": ("ACC2", "2")}        # sender -> (account, FIX side)


class Gateway:
    def __init__(self, tmp: pathlib.Path):
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> dict:
        self.runs += 1
        out = self.tmp / f"gw{self.runs}.out"
        args = [sys.executable, "-m", "tickpath.host.commands.gateway", "run",
                "--fix", "127.0.0.1:0", "--journal", str(self.tmp / "journal"),
                "--store", str(self.tmp / "store"), "--control", str(self.tmp / "control"),
                "--no-cancel-on-disconnect", "--duration", "120"]
        for sender, (account, _) in SESSIONS.items():
            args += ["--fix-session", f"{sender}:{account}"]
        with out.open("w") as f, open(self.tmp / f"gw{self.runs}.err", "w") as err:
            self.proc = subprocess.Popen(args, stdout=f, stderr=err, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = out.read_text()
            if text.endswith("\n"):
                return json.loads(text.splitlines()[0])
            if self.proc.poll() is not None:
                raise AssertionError((self.tmp / f"gw{self.runs}.err").read_text())
            time.sleep(0.02)
        raise AssertionError("gateway did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        assert self.proc.wait(20) == 0, (self.tmp / f"gw{self.runs}.err").read_text()


class Client:
    """One FIX session's client: numbers persist across connections, like a real engine."""

    def __init__(self, sender: str):
        self.sender = sender
        self.out_seq = 1
        self.in_seq = 1
        self.sock: socket.socket | None = None
        self.parser = simplefix.FixParser()
        self.exec_ids: set[bytes] = set()
        self.news: list[tuple[int, str]] = []                 # (OrderID, ClOrdID)
        self.fills: list[tuple[int, int, int, str]] = []      # (OrderID, shares, ticks, side)
        self.pending: set[str] = set()                        # ClOrdIDs sent, not answered
        self.logon_seqs: list[tuple[int, int]] = []           # (their Logon 34, expected)
        self.gap_fills_sent = 0
        self.resend_asked = 0
        self.log: list[tuple] = []

    def send(self, msg_type: str, fields, *, seq: int | None = None, poss_dup=False) -> None:
        m = simplefix.FixMessage()
        m.append_pair(8, "FIX.4.2", header=True)
        m.append_pair(35, msg_type, header=True)
        m.append_pair(49, self.sender, header=True)
        m.append_pair(56, SERVER, header=True)
        m.append_pair(34, self.out_seq if seq is None else seq, header=True)
        if poss_dup:
            m.append_pair(43, "Y", header=True)
        m.append_pair(52, utc_timestamp(), header=True)
        for tag, value in fields:
            m.append_pair(tag, value)
        if seq is None:
            self.out_seq += 1
        assert self.sock is not None
        self.sock.sendall(m.encode())

    def connect(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.parser = simplefix.FixParser()
        self.resend_asked = 0
        self.send("A", [(98, 0), (108, 30)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for msg in self.read(0.2):
                if msg.get(35) == b"A":
                    return
        raise AssertionError(f"{self.sender}: no Logon answer")

    def read(self, timeout: float) -> list[simplefix.FixMessage]:
        """Messages that arrive within ``timeout`` (handled); [] on a dead connection."""
        assert self.sock is not None
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return []
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            raise ConnectionError("gateway gone")
        self.parser.append_buffer(data)
        out = []
        for _ in range(10_000):
            msg = self.parser.get_message()
            if msg is None:
                break
            self.handle(msg)
            out.append(msg)
        return out

    def handle(self, msg: simplefix.FixMessage) -> None:
        t = msg.get(35)
        seq = int(msg.get(34))
        self.log.append((seq, self.in_seq, t, msg.get(43), msg.get(17), msg.get(11)))
        if t == b"2" and seq >= self.in_seq:               # answered even out of order
            begin = int(msg.get(7))
            self.send("4", [(123, "Y"), (36, self.out_seq)], seq=begin, poss_dup=True)
            self.gap_fills_sent += 1
        if t == b"4" and msg.get(123) == b"Y":               # gap fill
            new = int(msg.get(36))
            assert seq <= self.in_seq or msg.get(43) == b"Y", "gap fill from the future"
            self.in_seq = max(self.in_seq, new)
            return
        if t == b"A":
            self.logon_seqs.append((seq, self.in_seq))
            assert seq >= self.in_seq, f"{self.sender}: sequence went back to {seq}"
        if seq > self.in_seq:
            if msg.get(43) != b"Y" and self.resend_asked != self.in_seq:
                self.resend_asked = self.in_seq
                self.send("2", [(7, self.in_seq), (16, 0)])
            if t != b"A":
                return                                     # comes back with the resend
        elif seq < self.in_seq:
            assert msg.get(43) == b"Y", f"{self.sender}: MsgSeqNum {seq} too low"
            return
        if t != b"A" or seq == self.in_seq:
            self.in_seq = seq + 1
        if t == b"1":
            self.send("0", [(112, msg.get(112).decode())])
        elif t == b"8":
            exec_id = msg.get(17)
            if exec_id in self.exec_ids:
                return
            self.exec_ids.add(exec_id)
            cl = msg.get(11).decode()
            kind = msg.get(150)
            if kind in (b"0", b"1", b"2", b"8"):
                self.pending.discard(cl)
            if kind == b"0":
                self.news.append((int(msg.get(37)), cl))
            elif kind in (b"1", b"2"):
                price = msg.get(31).decode()
                whole, _, frac = price.partition(".")
                ticks = int(whole) * 10_000 + int((frac + "0000")[:4])
                self.fills.append((int(msg.get(37)), int(msg.get(32)), ticks,
                                   "B" if msg.get(54) == b"1" else "S"))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _trial(gw: Gateway, clients: dict[str, Client], rng: random.Random, n: int,
           kill_after: float) -> int:
    ready = gw.start()
    for c in clients.values():
        c.connect(ready["fix_port"])
    start = time.monotonic()
    sent = 0
    try:
        for step in range(100_000):                      # bounded; ends with the kill
            if time.monotonic() - start >= kill_after:
                gw.kill()
                for _ in range(50):                      # drain what was delivered
                    for c in clients.values():
                        c.read(0.01)
                break
            price = f"{rng.randint(99, 101)}.00"
            for sender, c in clients.items():
                if len(c.pending) < 4:
                    cl = f"{sender}-{n}-{step}"
                    c.pending.add(cl)
                    c.send("D", [(11, cl), (21, 1), (55, rng.choice(["AAPL", "MSFT"])),
                                 (54, SESSIONS[sender][1]), (60, utc_timestamp()), (40, 2),
                                 (38, rng.randint(1, 5) * 100), (44, price), (59, 0)])
                    sent += 1
            for c in clients.values():
                c.read(0.002)
    except ConnectionError:
        gw.kill()
    for c in clients.values():
        c.pending.clear()                                # unanswered: never acknowledged
        c.close()
    return sent


def _run_crashes(tmp_path: pathlib.Path, trials: int, seed: int) -> None:
    rng = random.Random(seed)
    gw = Gateway(tmp_path)
    clients = {s: Client(s) for s in SESSIONS}
    try:
        sent = 0
        for n in range(trials):
            sent += _trial(gw, clients, rng, n, rng.uniform(0.05, 0.8))
        # a last clean run: reconnect (resend fills the gaps), a few orders, then SIGTERM
        ready = gw.start()
        for c in clients.values():
            c.connect(ready["fix_port"])
        for _ in range(50):
            for c in clients.values():
                c.read(0.01)
        gw.stop()
        for c in clients.values():
            c.close()
    finally:
        gw.kill()

    journal = tmp_path / "journal"
    runner = CliRunner()
    res = runner.invoke(cli, ["audit", "verify", "--journal", str(journal)])
    assert res.exit_code == 0, res.output

    records = list(iter_records(journal))
    accepted = {(r.order_id, r.client_id) for r in records if r.kind == Kind.ACCEPTED}
    executed: dict[tuple[int, int, int], list] = {}
    for r in records:
        if r.kind == Kind.EXECUTED:
            executed.setdefault((r.order_id, r.quantity, r.price), []).append(r)
    # the last client action of each run: records after it may not have reached the client
    last_action_from: list[int] = []
    runs: list[list] = []
    for r in records:
        if r.kind == Kind.CONFIG:
            runs.append([])
        elif runs:
            runs[-1].append(r)
    for run in runs:
        orders = [r.seq for r in run if r.kind in (Kind.ORDER, Kind.CANCEL_REQUEST)]
        last_action_from.append(orders[-1] if orders else 1 << 62)
    assert len(runs) == trials + 1 == gw.runs

    news = fills = 0
    seen = []
    for sender, c in clients.items():
        for order_id, cl in c.news:
            assert (order_id, cl) in accepted, f"acknowledged {cl} ({order_id}) not journaled"
            news += 1
        for order_id, shares, price, side in c.fills:
            found = executed.get((order_id, shares, price))
            assert found, f"acknowledged fill {order_id} {shares}@{price} not journaled"
            r = found.pop(0)                              # in order, per order id
            assert (r.side, r.account) == (side, SESSIONS[sender][0])
            seen.append(r)
            fills += 1
    unseen = [r for rs in executed.values() for r in rs]
    for r in unseen:
        run_index = max(i for i, run in enumerate(runs) if run and run[0].seq <= r.seq)
        assert r.seq > last_action_from[run_index], \
            f"journal fill {r.seq} never reached the client and was not the last action"
    assert news > 0 and fills > 0
    # positions the clients' fills imply (in journal order: the engine's order), plus the
    # fills of the actions cut by a kill
    positions = Positions()
    for r in sorted(seen + unseen, key=lambda r: r.seq):
        positions.apply_fill(r.account, r.symbol, r.side, r.quantity, r.price)

    res = runner.invoke(cli, ["audit", "replay", "--journal", str(journal), "--json"])
    assert res.exit_code == 0, res.output
    replayed = [json.loads(x) for x in res.output.splitlines()]
    assert replayed == list(positions.rows())

    # sequence numbers: every restart continued; both sides agree with the persisted store
    for sender, c in clients.items():
        assert len(c.logon_seqs) == trials + 1
        assert all(theirs >= expected for theirs, expected in c.logon_seqs)
        assert any(theirs > 1 for theirs, _ in c.logon_seqs[1:])
        stored = json.loads((tmp_path / "store" / "fix" / f"{sender}.seq").read_text())
        assert stored["next_out"] == c.in_seq, (sender, stored, c.in_seq)
        assert stored["next_in"] == c.out_seq, (sender, stored, c.out_seq)
    print(f"crash test: {trials} SIGKILLs, {sent} orders sent, {news} acks, {fills} fills "
          f"acknowledged, {len(unseen)} journaled fills of the action cut by a kill")


def test_gateway_survives_sigkill(tmp_path):
    _run_crashes(tmp_path, trials=6, seed=6)


@pytest.mark.long
def test_gateway_survives_many_sigkills(tmp_path):
    _run_crashes(tmp_path, trials=40, seed=1234)
