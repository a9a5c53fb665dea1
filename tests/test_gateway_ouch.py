"""OUCH 4.2 over SoupBinTCP server: NASDAQ's nasdaq-protocols as the SoupBinTCP client (login,
sequenced data, heartbeats, logout, replay), and a raw client on tickpath.protocol for every
OUCH message, malformed input, cancel-on-disconnect, end of session."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib

import pytest

from tickpath.engine import ModelEngine
from tickpath.host.gateway.hub import EngineSink, OrderHub
from tickpath.host.gateway.ouch import OuchServer, OuchUser
from tickpath.protocol import ouch42 as ouch
from tickpath.protocol import soupbintcp as soup

USERS = [OuchUser("U1", "pw1", "F1", "ACC1"), OuchUser("U2", "pw2", "F2", "ACC2"),
         OuchUser("U3", "pw3", "F1", "ACC3", cancel_on_disconnect=False)]


@contextlib.asynccontextmanager
async def server(store_dir: pathlib.Path | None = None, **kw):
    hub = OrderHub(EngineSink(ModelEngine()))
    srv = OuchServer(hub, USERS, store_dir=store_dir, **kw)
    port = await srv.start("127.0.0.1", 0)
    try:
        yield hub, srv, port
    finally:
        await srv.close()


class SoupClient:
    """A raw SoupBinTCP client on tickpath.protocol.soupbintcp."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.framer = soup.SoupFramer()
        self.queue: list[soup.SoupPacket] = []

    @classmethod
    async def login(cls, port: int, user: str, password: str, sequence: int = 1,
                    session: str = "") -> tuple[SoupClient, soup.SoupPacket]:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        c = cls(r, w)
        c.send(soup.LoginRequest(user, password, session, sequence))
        return c, await c.recv()

    def send(self, packet: soup.SoupPacket) -> None:
        self.writer.write(packet.encode())

    def ouch(self, msg: ouch.OuchMessage) -> None:
        self.send(soup.UnsequencedData(msg.encode()))

    async def recv(self, timeout: float = 5.0) -> soup.SoupPacket:
        for _ in range(1000):
            if self.queue:
                return self.queue.pop(0)
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("closed")
            self.queue += self.framer.feed(data)
        raise AssertionError("unreachable")

    async def msg(self, timeout: float = 5.0) -> ouch.OuchMessage:
        """The next sequenced OUCH message (heartbeats skipped)."""
        for _ in range(100):
            p = await self.recv(timeout)
            if isinstance(p, soup.SequencedData):
                return ouch.decode_outbound(p.message, 0, len(p.message))
            if not isinstance(p, soup.ServerHeartbeat):
                raise AssertionError(f"unexpected {p}")
        raise AssertionError("only heartbeats")

    async def quiet(self, seconds: float) -> list[soup.SoupPacket]:
        got = []
        with contextlib.suppress(TimeoutError):
            for _ in range(100):
                p = await self.recv(seconds)
                if not isinstance(p, soup.ServerHeartbeat):
                    got.append(p)
        return got

    def close(self) -> None:
        self.writer.close()


def enter(token, side, shares, price, *, stock="AAPL", tif=ouch.TIF_MARKET_HOURS, firm="",
          min_qty=0):
    return ouch.EnterOrder(token, side, shares, stock, price, tif, firm, "Y", "A", "N",
                           min_qty, "N", "R")


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --- nasdaq-protocols as the SoupBinTCP client ----------------------------------------------

def test_nasdaq_protocols_client_login_data_heartbeats_logout_replay(tmp_path):
    nsoup = pytest.importorskip("nasdaq_protocols.soup")

    async def main():
        async with server(tmp_path) as (hub, srv, port):
            got: list[bytes] = []

            async def on_msg(msg):
                if isinstance(msg, nsoup.SequencedData):
                    got.append(msg.data)

            with pytest.raises(ConnectionRefusedError):
                await nsoup.connect_async(("127.0.0.1", port), "U1", "wrong", "", 1,
                                          connect_timeout=5)
            s1 = await nsoup.connect_async(("127.0.0.1", port), "U1", "pw1", "", 1,
                                           on_msg_coro=on_msg, client_heartbeat_interval=1,
                                           server_heartbeat_interval=2)
            assert s1.session_id.session == "TICKPATH"
            s1.send_unseq_data(enter("TOK1", "B", 100, 1_000_000).encode())
            for _ in range(100):
                if len(got) >= 2:
                    break
                await asyncio.sleep(0.02)
            msgs = [ouch.decode_outbound(m) for m in got]
            assert [m.type for m in msgs] == ["S", "A"]
            assert msgs[0].event_code == "S"
            assert (msgs[1].order_token, msgs[1].shares, msgs[1].price) == ("TOK1", 100,
                                                                           1_000_000)
            # idle 3.5 s: our 1 s heartbeats keep its 2 s server-heartbeat monitor happy, its
            # heartbeats keep our dead-peer timer happy
            await asyncio.sleep(3.5)
            assert not s1.is_closed() and srv.streams["U1"].conn is not None
            # the same user twice: session not available
            with pytest.raises(ConnectionRefusedError):
                await nsoup.connect_async(("127.0.0.1", port), "U1", "pw1", "", 1)
            s1.logout()
            for _ in range(100):
                if srv.streams["U1"].conn is None:
                    break
                await asyncio.sleep(0.02)
            assert srv.streams["U1"].conn is None
            # cancel-on-disconnect: the order's cancel is the stream's 3rd message
            assert hub.live_orders() == []
            got.clear()
            s2 = await nsoup.connect_async(("127.0.0.1", port), "U1", "pw1", "", 2,
                                           on_msg_coro=on_msg)
            for _ in range(100):
                if len(got) >= 2:
                    break
                await asyncio.sleep(0.02)
            msgs = [ouch.decode_outbound(m) for m in got]
            assert [m.type for m in msgs] == ["A", "C"] and msgs[1].reason == "U"
            assert s2.sequence == 3                         # its count of what it received
            s2.logout()
            await asyncio.sleep(0.1)
        # restart from the store: replay still works, numbering continues
        async with server(tmp_path) as (hub, srv, port):
            got.clear()
            s3 = await nsoup.connect_async(("127.0.0.1", port), "U1", "pw1", "", 1,
                                           on_msg_coro=on_msg)
            for _ in range(100):
                if len(got) >= 3:
                    break
                await asyncio.sleep(0.02)
            assert [ouch.decode_outbound(m).type for m in got] == ["S", "A", "C"]
            s3.logout()
            await asyncio.sleep(0.1)
    run(main())


# --- every OUCH message, with a raw client ---------------------------------------------------

def test_every_ouch_message():
    async def main():
        async with server() as (hub, srv, port):
            a, acc = await SoupClient.login(port, "U1", "pw1", 0)
            assert isinstance(acc, soup.LoginAccepted) and acc.sequence == 2
            b, _ = await SoupClient.login(port, "U2", "pw2", 1)
            assert (await b.msg()).type == "S"
            c, _ = await SoupClient.login(port, "U3", "pw3", 0)        # same firm as U1
            a.ouch(enter("A1", "S", 300, 1_000_000))
            m = await a.msg()
            assert m.type == "A" and m.order_state == "L" and m.display == "Y"
            # executed: aggressor R, resting A, same match number
            b.ouch(enter("B1", "B", 100, 1_010_000))
            assert (await b.msg()).type == "A"
            eb, ea = await b.msg(), await a.msg()
            assert (eb.type, eb.liquidity_flag, eb.executed_shares, eb.execution_price) == \
                ("E", "R", 100, 1_000_000)
            assert (ea.type, ea.liquidity_flag, ea.match_number) == ("E", "A", eb.match_number)
            # modify: sell -> sell short, shares down to 150
            a.ouch(ouch.ModifyOrder("A1", "T", 150))
            m = await a.msg()
            assert (m.type, m.side, m.shares) == ("M", "T", 150)
            # replace: new token, new open size 120, new price
            a.ouch(ouch.ReplaceOrder("A1", "A2", 120, 1_002_000, ouch.TIF_MARKET_HOURS, "Y",
                                     "N", 0))
            m = await a.msg()
            assert (m.type, m.order_token, m.previous_order_token, m.shares, m.price,
                    m.side) == ("U", "A2", "A1", 120, 1_002_000, "T")
            # partial cancel, then a cancel that changes nothing (no answer), full cancel
            a.ouch(ouch.CancelOrder("A2", 100))
            m = await a.msg()
            assert (m.type, m.decrement_shares, m.reason) == ("C", 20, "U")
            a.ouch(ouch.CancelOrder("A2", 500))
            a.ouch(ouch.CancelOrder("A2", 0))
            m = await a.msg()
            assert (m.type, m.decrement_shares) == ("C", 100)
            # cancel of a finished token: cancel reject; unknown token: ignored
            a.ouch(ouch.CancelOrder("A2", 0))
            assert (await a.msg()).type == "I"
            a.ouch(ouch.CancelOrder("NEVER", 0))
            a.ouch(ouch.ReplaceOrder("NEVER", "N2", 1, 1_000_000, 0, "Y", "N", 0))
            assert await a.quiet(0.3) == []
            # self-match prevention across sessions of one firm: AIQ canceled D
            a.ouch(enter("A3", "S", 200, 1_000_000))
            await a.msg()
            c.ouch(enter("C1", "B", 50, 1_000_000))
            assert (await c.msg()).type == "A"
            d = await a.msg()
            assert (d.type, d.reason, d.decrement_shares, d.quantity_prevented_from_trading) \
                == ("D", "Q", 200, 50)
            # C1 rests (nothing left to trade with); FOK: IOC with min qty == shares
            b.ouch(enter("B2", "S", 100, 1_000_000, tif=0, min_qty=100))
            m1, m2 = await b.msg(), await b.msg()
            assert (m1.type, m2.type, m2.reason, m2.decrement_shares) == ("A", "C", "I", 100)
            # rejects: engine's (price not whole cents) and the gateway's (firm, tif)
            b.ouch(enter("B3", "B", 100, 1_000_050))
            b.ouch(enter("B4", "B", 100, 1_000_000, firm="F1"))
            b.ouch(enter("B5", "B", 100, 1_000_000, tif=5))
            rej = [await b.msg() for _ in range(3)]
            rej = [m for m in [*rej] if m.type == "J"]
            assert {(m.order_token, m.reason) for m in rej} >= {("B3", "X"), ("B4", "L")}
            # malformed OUCH inside good SoupBinTCP: Debug answer, session lives on
            b.send(soup.UnsequencedData(b"O" + b"x" * 10))
            b.send(soup.UnsequencedData(b"?"))
            dbg = [p for p in await b.quiet(0.3) if isinstance(p, soup.Debug)]
            assert len(dbg) >= 2 and srv.counters["ouch_errors"] == 2
            # bad SoupBinTCP framing: connection closed, counted
            b.writer.write(b"\x00\x05Q1234")
            with pytest.raises(ConnectionError):
                for _ in range(10):
                    await b.recv(2)
            assert srv.counters["soup_errors"] == 1
            # end of day: system event C, then end of session Z, and no new logins
            await hub.end_of_day()
            kinds = []
            with contextlib.suppress(ConnectionError):
                for _ in range(20):
                    p = await c.recv(2)
                    kinds.append(p.TYPE if not isinstance(p, soup.SequencedData)
                                 else "S:" + p.message[:1].decode() + p.message[9:10].decode())
            assert kinds[-2:] == ["S:SC", "Z"]
            x, rej = await SoupClient.login(port, "U2", "pw2", 0)
            assert isinstance(rej, soup.LoginRejected) and rej.reason == "S"
            for cl in (a, c, x):
                cl.close()
    run(main())


def test_login_rules_and_dead_client():
    async def main():
        async with server(heartbeat=0.2, dead=0.8) as (hub, srv, port):
            _, r = await SoupClient.login(port, "NOBODY", "x")
            assert isinstance(r, soup.LoginRejected) and r.reason == "A"
            _, r = await SoupClient.login(port, "U1", "pw1", session="OTHER")
            assert isinstance(r, soup.LoginRejected) and r.reason == "S"
            c, r = await SoupClient.login(port, "U1", "pw1", 99)      # past the end: the end
            assert isinstance(r, soup.LoginAccepted) and r.sequence == 2
            c.ouch(enter("T1", "B", 100, 1_000_000))
            # silent client: heartbeats come, then it is dropped as dead
            beats = 0
            with contextlib.suppress(ConnectionError, TimeoutError):
                for _ in range(50):
                    p = await c.recv(2)
                    beats += isinstance(p, soup.ServerHeartbeat)
            assert beats >= 2 and srv.counters["heartbeat_timeouts"] == 1
            # U1 cancels on disconnect; U3 does not
            await asyncio.sleep(0.1)
            assert hub.live_orders(session="ouch:U1") == []
            d, _ = await SoupClient.login(port, "U3", "pw3", 0)
            d.ouch(enter("T2", "B", 100, 1_000_000))
            await d.msg()
            d.send(soup.LogoutRequest())
            await asyncio.sleep(0.2)
            assert [s.client_id for s in hub.live_orders()] == ["T2"]
            assert await hub.mass_cancel("ACC3") == 1
            assert srv.streams["U3"].store.messages[-1][:1] == b"C"
    run(main())
