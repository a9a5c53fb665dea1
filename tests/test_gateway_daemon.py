"""The gateway on the real host order path (tickpath.host.gateway.daemon): acknowledgements only
after the journal made them durable, the kill switch and risk reload through the control
directory while it runs (kill cancels reach FIX and OUCH clients), Prometheus metrics scraped
over HTTP, restart state from the journal, and the operator commands `orders list` and
`positions`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import re
import urllib.request

import simplefix
from click.testing import CliRunner

from tickpath.host.audit import Kind, iter_records, replay, verify
from tickpath.host.cli import main as cli
from tickpath.host.commands.positions import command as positions_cmd
from tickpath.host.gateway.daemon import Gateway, GatewayOptions
from tickpath.host.gateway.fix import FixSessionConfig
from tickpath.host.gateway.ouch import OuchUser
from tickpath.protocol import ouch42 as ouch
from tickpath.protocol import soupbintcp as soup
from tickpath.protocol.fix42 import utc_timestamp

SERVER = "TICKPATH"


class Fix:
    """A small simplefix initiator."""

    def __init__(self, reader, writer, sender):
        self.reader, self.writer, self.sender, self.seq = reader, writer, sender, 1
        self.parser = simplefix.FixParser()

    @classmethod
    async def logon(cls, port: int, sender: str, *, reset: bool = False) -> Fix:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        c = cls(r, w, sender)
        c.send("A", [(98, 0), (108, 30)] + ([(141, "Y")] if reset else []))
        assert (await c.recv()).get(35) == b"A"
        return c

    def send(self, msg_type: str, fields) -> None:
        m = simplefix.FixMessage()
        m.append_pair(8, "FIX.4.2", header=True)
        m.append_pair(35, msg_type, header=True)
        m.append_pair(49, self.sender, header=True)
        m.append_pair(56, SERVER, header=True)
        m.append_pair(34, self.seq, header=True)
        m.append_pair(52, utc_timestamp(), header=True)
        for tag, value in fields:
            m.append_pair(tag, value)
        self.seq += 1
        self.writer.write(m.encode())

    def order(self, cl: str, side: str, qty: int, price: str, stock: str = "AAPL") -> None:
        self.send("D", [(11, cl), (21, 1), (55, stock), (54, side), (60, utc_timestamp()),
                        (40, 2), (38, qty), (44, price), (59, 0)])

    async def recv(self, timeout: float = 5.0) -> simplefix.FixMessage:
        for _ in range(1000):
            msg = self.parser.get_message()
            if msg is not None:
                return msg
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed")
            self.parser.append_buffer(data)
        raise AssertionError("unreachable")

    async def report(self, timeout: float = 5.0) -> simplefix.FixMessage:
        """The next ExecutionReport (heartbeats skipped)."""
        for _ in range(100):
            m = await self.recv(timeout)
            if m.get(35) == b"8":
                return m
        raise AssertionError("no ExecutionReport")

    def close(self) -> None:
        self.writer.close()


class Soup:
    def __init__(self, reader, writer):
        self.reader, self.writer, self.framer, self.queue = reader, writer, soup.SoupFramer(), []

    @classmethod
    async def login(cls, port: int, user: str, password: str) -> Soup:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        c = cls(r, w)
        w.write(soup.LoginRequest(user, password, "", 1).encode())
        assert isinstance(await c.packet(), soup.LoginAccepted)
        return c

    async def packet(self, timeout: float = 5.0) -> soup.SoupPacket:
        for _ in range(1000):
            if self.queue:
                return self.queue.pop(0)
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed")
            self.queue += self.framer.feed(data)
        raise AssertionError("unreachable")

    async def msg(self, timeout: float = 5.0) -> ouch.OuchMessage:
        for _ in range(100):
            p = await self.packet(timeout)
            if isinstance(p, soup.SequencedData):
                m = ouch.decode_outbound(p.message, 0, len(p.message))
                if m.type != "S":                  # system events (start of day)
                    return m
        raise AssertionError("only heartbeats and system events")

    def enter(self, token: str, side: str, shares: int, price: int) -> None:
        m = ouch.EnterOrder(token, side, shares, "AAPL", price, ouch.TIF_MARKET_HOURS, "", "Y",
                            "A", "N", 0, "N", "R")
        self.writer.write(soup.UnsequencedData(m.encode()).encode())

    def close(self) -> None:
        self.writer.close()


def options(tmp: pathlib.Path, **kw) -> GatewayOptions:
    base = dict(journal_dir=tmp / "journal", store=tmp / "store", control_dir=tmp / "control",
                fix_at=("127.0.0.1", 0),
                fix_sessions=[FixSessionConfig("C1", "ACC1", "F1", False),
                              FixSessionConfig("C2", "ACC2", "F2", False)],
                ouch_at=("127.0.0.1", 0), ouch_users=[OuchUser("U1", "pw", "F3", "ACC3", False)],
                metrics_at=("127.0.0.1", 0))
    base.update(kw)
    return GatewayOptions(**base)


@contextlib.asynccontextmanager
async def running(opts: GatewayOptions):
    lines: list[str] = []
    gw = Gateway(opts, echo=lines.append)
    ready = await gw.start()
    task = asyncio.get_running_loop().create_task(gw.run(30))
    try:
        yield gw, ready, lines
    finally:
        gw.stop.set()
        await task
        await gw.close()


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_acks_leave_only_after_the_journal_made_them_durable(tmp_path):
    """Every ExecutionReport is written when the journal's durable record number has reached
    its last appended one; with the path's durability wait removed the same check fails (the
    group commit is slowed to 30 ms so the window is wide)."""

    async def scenario(disable_wait: bool) -> tuple[int, int]:
        opts = options(tmp_path / str(disable_wait), commit_interval=0.03, metrics_at=None)
        async with running(opts) as (gw, ready, _):
            if disable_wait:
                async def no_wait() -> None:
                    return None
                gw.path._durable = no_wait
            session = gw.fix.sessions["C1"]
            send = session.send
            seen = {"acks": 0, "early": 0}

            def checked(msg_type, body):
                if msg_type == "8":
                    seen["acks"] += 1
                    if gw.journal.durable_seq < gw.journal.last_seq:
                        seen["early"] += 1
                return send(msg_type, body)

            session.send = checked
            a = await Fix.logon(ready["fix_port"], "C1")
            for i in range(6):
                a.order(f"o{i}", "1", 100, "10.00")
                assert (await a.report()).get(150) == b"0"
            a.close()
            return seen["acks"], seen["early"]

    acks, early = run(scenario(False))
    assert acks == 6 and early == 0
    acks, early = run(scenario(True))
    assert acks == 6 and early > 0          # the check has teeth


def test_kill_and_reload_through_the_control_dir_reach_fix_and_ouch_clients(tmp_path):
    risk = tmp_path / "risk.toml"
    risk.write_text("[global]\nmax_order_shares = 500\n")
    runner = CliRunner()

    async def main():
        async with running(options(tmp_path, risk_file=risk)) as (gw, ready, lines):
            control = tmp_path / "control"
            a = await Fix.logon(ready["fix_port"], "C1")
            u = await Soup.login(ready["ouch_port"], "U1", "pw")
            for i in range(3):
                a.order(f"k{i}", "1", 100, f"9.{i}0")
                r = await a.report()
                assert r.get(150) == b"0" and r.get(11) == f"k{i}".encode()
            u.enter("T1", "S", 200, 110_000)
            assert (await u.msg()).type == "A"
            # too big for the limits in force: a risk reject
            a.order("big", "1", 800, "9.00")
            r = await a.report()
            assert r.get(150) == b"8" and r.get(39) == b"8"

            # tickpath kill (everything) while the gateway runs
            res = await asyncio.to_thread(runner.invoke, cli, ["kill", "--control",
                                                               str(control)])
            assert res.exit_code == 0, res.output
            cancels = [await a.report() for _ in range(3)]
            assert sorted(r.get(11) for r in cancels) == [b"k0", b"k1", b"k2"]
            assert all(r.get(150) == b"4" and r.get(39) == b"4" and r.get(151) == b"0"
                       for r in cancels)
            assert all(r.get(58) == b"canceled by supervisor" for r in cancels)
            m = await u.msg()
            assert m.type == "C" and m.reason == "S" and m.decrement_shares == 200
            a.order("after", "1", 100, "9.00")
            r = await a.report()
            assert r.get(150) == b"8" and r.get(11) == b"after"        # blocked
            res = await asyncio.to_thread(runner.invoke, cli, ["unkill", "--control",
                                                               str(control)])
            assert res.exit_code == 0
            for _ in range(200):                                      # bounded: 2 s
                if any(json.loads(x)["event"] == "unkill" for x in lines):
                    break
                await asyncio.sleep(0.01)
            a.order("again", "1", 100, "9.00")
            assert (await a.report()).get(150) == b"0"

            # risk reload while running: the bigger limit takes, a bad file is refused
            risk.write_text("[global]\nmax_order_shares = 1000\n")
            res = await asyncio.to_thread(runner.invoke, cli, ["risk", "reload", "--control",
                                                               str(control), "--json"])
            assert res.exit_code == 0, res.output
            assert json.loads(res.output)["ok"] is True
            a.order("big2", "1", 800, "9.00")
            assert (await a.report()).get(150) == b"0"
            risk.write_text("[global]\nmax_order_shares = -3\n")
            res = await asyncio.to_thread(runner.invoke, cli, ["risk", "reload", "--control",
                                                               str(control)])
            assert res.exit_code == 1 and "max_order_shares" in res.output
            a.order("big3", "1", 800, "9.00")
            assert (await a.report()).get(150) == b"0"              # old limits stay
            a.close()
            u.close()
            return lines

    lines = run(main())
    events = [json.loads(x) for x in lines]
    kill = next(e for e in events if e["event"] == "kill")
    assert kill["scope"] == "global" and kill["orders_canceled"] == 4
    assert kill["time_to_last_cancel_ns"] > 0
    assert [e["ok"] for e in events if e["event"] == "reload"] == [True, False]
    records = list(iter_records(tmp_path / "journal"))
    kinds = [r.kind for r in records]
    assert kinds.count(Kind.KILL) == 3 and kinds.count(Kind.CONFIG) == 3
    risk_rejects = [r.reason for r in records if r.kind == Kind.RISK and r.reason != "pass"]
    assert risk_rejects == ["max_qty", "killed_global"]
    assert verify(tmp_path / "journal").ok


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_endpoint_counts_orders_rejects_fills_and_latency(tmp_path):
    risk = tmp_path / "risk.toml"
    risk.write_text("[global]\nmax_order_shares = 500\ncheck_price = false\n")

    async def main():
        async with running(options(tmp_path, risk_file=risk)) as (gw, ready, _):
            a = await Fix.logon(ready["fix_port"], "C1")
            b = await Fix.logon(ready["fix_port"], "C2")
            a.order("b1", "1", 300, "10.00")
            assert (await a.report()).get(150) == b"0"
            b.order("s1", "2", 200, "10.00")
            assert (await b.report()).get(150) == b"0"
            assert (await b.report()).get(150) == b"2"                # filled
            assert (await a.report()).get(150) == b"1"                # partial
            a.order("big", "1", 900, "10.00")
            assert (await a.report()).get(150) == b"8"
            a.order("bad", "1", 100, "0.00")
            assert (await a.report()).get(150) == b"8"                 # engine: price
            text = await asyncio.to_thread(_scrape, ready["metrics_port"])
            a.close()
            b.close()
            return text

    text = run(main())
    assert _value(text, "tickpath_orders_total", gateway="fix", action="enter") == 4
    assert _value(text, "tickpath_rejects_total", source="risk", reason="max_qty") == 1
    assert _value(text, "tickpath_rejects_total", source="engine") == 1
    assert _value(text, "tickpath_fills_total", gateway="fix") == 2
    assert _value(text, "tickpath_filled_shares_total", gateway="fix") == 400
    assert _value(text, "tickpath_order_latency_seconds_count", gateway="fix",
                  action="enter") == 4
    assert _value(text, "tickpath_order_latency_seconds_bucket", gateway="fix",
                  action="enter", le="+Inf") == 4
    assert _value(text, "tickpath_journal_durable_records") > 0


def test_restart_continues_ids_cancels_orphans_and_rebuilds_positions(tmp_path):
    async def first():
        async with running(options(tmp_path)) as (gw, ready, _):
            a = await Fix.logon(ready["fix_port"], "C1")
            b = await Fix.logon(ready["fix_port"], "C2")
            a.order("r1", "1", 300, "10.00")
            ack = await a.report()
            b.order("r2", "2", 100, "10.00")
            for _ in range(2):
                await b.report()
            await a.report()
            a.order("r3", "1", 50, "9.00")
            await a.report()
            a.close()
            b.close()
            return int(ack.get(37))

    first_id = run(first())
    runner = CliRunner()
    res = runner.invoke(cli, ["orders", "list", "--journal", str(tmp_path / "journal"),
                              "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.output.splitlines()]
    assert [(r["client_id"], r["open"], r["filled"], r["session"]) for r in rows] == [
        ("r1", 200, 100, "fix:C1"), ("r3", 50, 0, "fix:C1")]
    table = runner.invoke(cli, ["orders", "list", "--journal", str(tmp_path / "journal")])
    assert "r3" in table.output and "9.0000" in table.output and "2 open orders" in table.output
    pos = runner.invoke(positions_cmd, ["--journal", str(tmp_path / "journal"), "--json"])
    assert pos.exit_code == 0
    got = {(r["account"], r["stock"]): r["position"] for r in map(json.loads,
                                                                     pos.output.splitlines())}
    assert got == {("ACC1", "AAPL"): 100, ("ACC2", "AAPL"): -100}
    assert "realized_pnl" in runner.invoke(positions_cmd, ["--journal",
                                                    str(tmp_path / "journal")]).output

    async def second():
        async with running(options(tmp_path)) as (gw, ready, _):
            assert ready["restart_canceled"] == 2 and ready["first_order_id"] > first_id + 2
            assert gw.positions.get("ACC1", "AAPL").position == 100
            a = await Fix.logon(ready["fix_port"], "C1", reset=True)
            a.order("r4", "1", 10, "9.00")
            ack = await a.report()
            a.close()
            return int(ack.get(37))

    assert run(second()) >= first_id + 3
    res = runner.invoke(cli, ["orders", "list", "--journal", str(tmp_path / "journal"),
                              "--json"])
    assert [json.loads(x)["client_id"] for x in res.output.splitlines()] == ["r4"]
    assert [r.position for r in replay(tmp_path / "journal")] == [100, -100]
