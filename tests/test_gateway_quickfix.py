"""FIX 4.2 acceptor against a real FIX engine: QuickFIX (the ``quickfix-ssl`` wheel) as the
initiator, in a child process of its own (own process group, killed in teardown). QuickFIX
validates every message we send against its FIX42.xml data dictionary and answers a bad one
with a session Reject, which the acceptor counts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap

import pytest

from tickpath.engine import ModelEngine
from tickpath.host.gateway.fix import FixAcceptor, FixSessionConfig
from tickpath.host.gateway.hub import EngineSink, OrderHub

quickfix = pytest.importorskip("quickfix")

CLIENT = textwrap.dedent(r'''
    import json, os, queue, sys, time
    import quickfix as fix
    import quickfix42 as fix42

    port, store, sender = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.makedirs(store, exist_ok=True)
    dd = os.path.join(sys.prefix, "share", "quickfix", "FIX42.xml")
    cfg = f"""[DEFAULT]
    ConnectionType=initiator
    ReconnectInterval=1
    FileStorePath={store}/qf
    StartTime=00:00:00
    EndTime=00:00:00
    UseDataDictionary=Y
    DataDictionary={dd}
    ValidateUserDefinedFields=N
    HeartBtInt=30
    SocketConnectHost=127.0.0.1
    SocketConnectPort={port}
    [SESSION]
    BeginString=FIX.4.2
    SenderCompID={sender}
    TargetCompID=TICKPATH
    """
    with open(f"{store}/qf.cfg", "w") as f:
        f.write("\n".join(line.strip() for line in cfg.splitlines()))
    events = queue.Queue()

    def dump(kind, msg):
        fields = {}
        s = msg.toString().split("\x01")
        for part in s:
            if "=" in part:
                t, v = part.split("=", 1)
                fields[t] = v
        events.put((kind, fields))

    class App(fix.Application):
        def onCreate(self, sid): pass
        def onLogon(self, sid): events.put(("logon", {}))
        def onLogout(self, sid): events.put(("logout", {}))
        def toAdmin(self, msg, sid): pass
        def fromAdmin(self, msg, sid): dump("admin", msg)
        def toApp(self, msg, sid): pass
        def fromApp(self, msg, sid): dump("app", msg)

    settings = fix.SessionSettings(f"{store}/qf.cfg")
    app = App()
    init = fix.SocketInitiator(app, fix.FileStoreFactory(settings), settings,
                               fix.ScreenLogFactory(False, False, False))
    init.start()
    sid = fix.SessionID("FIX.4.2", sender, "TICKPATH")

    def wait(kind, n=1, timeout=10):
        got = []
        end = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < end:
            try:
                k, f = events.get(timeout=0.2)
            except queue.Empty:
                continue
            print(json.dumps({"kind": k, "fields": f}), flush=True)
            if k == kind:
                got.append(f)
        return got

    def send(msg):
        fix.Session.sendToTarget(msg, sid)

    def header(m):
        return m

    assert wait("logon"), "no logon"
    tag = sys.argv[4]
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "D":
            m = fix42.NewOrderSingle()
            m.setField(fix.ClOrdID(cmd["cl"]))
            m.setField(fix.HandlInst("1"))
            m.setField(fix.Symbol(cmd.get("stock", "AAPL")))
            m.setField(fix.Side(cmd["side"]))
            m.setField(fix.TransactTime())
            m.setField(fix.OrdType("2"))
            m.setField(fix.StringField(38, str(cmd["qty"])))
            m.setField(fix.StringField(44, cmd["price"]))
            send(m)
        elif cmd["op"] == "G":
            m = fix42.OrderCancelReplaceRequest()
            m.setField(fix.OrigClOrdID(cmd["orig"]))
            m.setField(fix.ClOrdID(cmd["cl"]))
            m.setField(fix.HandlInst("1"))
            m.setField(fix.Symbol("AAPL"))
            m.setField(fix.Side(cmd["side"]))
            m.setField(fix.TransactTime())
            m.setField(fix.OrdType("2"))
            m.setField(fix.StringField(38, str(cmd["qty"])))
            m.setField(fix.StringField(44, cmd["price"]))
            send(m)
        elif cmd["op"] == "F":
            m = fix42.OrderCancelRequest()
            m.setField(fix.OrigClOrdID(cmd["orig"]))
            m.setField(fix.ClOrdID(cmd["cl"]))
            m.setField(fix.Symbol("AAPL"))
            m.setField(fix.Side(cmd["side"]))
            m.setField(fix.TransactTime())
            send(m)
        elif cmd["op"] == "wait":
            wait("app", cmd["n"])
        elif cmd["op"] == "quit":
            break
    init.stop()
    print(json.dumps({"kind": "done", "fields": {}}), flush=True)
''')


async def run_client(port: int, store: str, sender: str, commands: list[dict],
                     timeout: float = 30.0) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), store, sender, "x",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)
    out: list[dict] = []
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("".join(json.dumps(c) + "\n" for c in commands).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            line = await asyncio.wait_for(proc.stdout.readline(), deadline - loop.time())
            if not line:
                break
            item = json.loads(line)
            out.append(item)
            if item["kind"] == "done":
                break
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if not any(i["kind"] == "done" for i in out):
        err = (await proc.stderr.read()).decode()[-2000:] if proc.stderr else ""
        raise AssertionError(f"QuickFIX client did not finish: {out[-5:]} {err}")
    return out


def test_quickfix_initiator_orders_and_sequence_resume(tmp_path):
    async def main():
        hub = OrderHub(EngineSink(ModelEngine()))
        acc = FixAcceptor(hub, "TICKPATH", [FixSessionConfig("QF1", account="A", firm="F1"),
                                            FixSessionConfig("QF2", account="B", firm="F2")],
                          store_dir=tmp_path / "fixstore")
        port = await acc.start("127.0.0.1", 0)
        try:
            first = await run_client(port, str(tmp_path), "QF1", [
                {"op": "D", "cl": "Q1", "side": "2", "qty": 300, "price": "10.00"},
                {"op": "wait", "n": 1},
                {"op": "G", "orig": "Q1", "cl": "Q2", "side": "2", "qty": 200,
                 "price": "10.01"},
                {"op": "wait", "n": 1},
                {"op": "D", "cl": "Q9", "side": "2", "qty": 100, "price": "10.00001"},
                {"op": "wait", "n": 1},
                {"op": "quit"}])
            apps = [i["fields"] for i in first if i["kind"] == "app"]
            assert [(f["35"], f["150"], f["39"]) for f in apps] == [
                ("8", "0", "0"), ("8", "5", "5"), ("8", "8", "8")]
            assert apps[1]["11"] == "Q2" and apps[1]["41"] == "Q1" and apps[1]["151"] == "200"
            # QF1 logged out: cancel-on-disconnect canceled Q2, so QF2's buy rests
            assert hub.live_orders(session="fix:QF1") == []
            second = await run_client(port, str(tmp_path / "b"), "QF2", [
                {"op": "D", "cl": "B1", "side": "1", "qty": 50, "price": "10.01"},
                {"op": "wait", "n": 1},
                {"op": "quit"}])
            apps2 = [i["fields"] for i in second if i["kind"] == "app"]
            assert [(f["150"], f["39"]) for f in apps2] == [("0", "0")]
            assert acc.counters["rejects_received"] == 0, acc.counters
            # QF1 reconnects with its own stored sequence numbers (no reset): the
            # cancel-on-disconnect ExecutionReport sent while it was away arrives
            out_before = acc.session_store("QF1").next_out
            third = await run_client(port, str(tmp_path), "QF1", [
                {"op": "wait", "n": 1}, {"op": "quit"}])
            apps3 = [i["fields"] for i in third if i["kind"] == "app"]
            # QuickFIX saw our higher MsgSeqNum, asked for a resend, got the stored report
            assert [(f["11"], f["41"], f["150"], f.get("43")) for f in apps3] == [
                ("Q2", "Q1", "4", "Y")]
            assert not any(i["kind"] == "admin" and i["fields"].get("35") == "5"
                           and "too low" in i["fields"].get("58", "") for i in third)
            assert acc.session_store("QF1").next_out > out_before
            assert acc.counters["rejects_received"] == 0, acc.counters
            assert acc.counters["seq_too_low"] == 0
        finally:
            await acc.close()
    asyncio.run(asyncio.wait_for(main(), 90))
