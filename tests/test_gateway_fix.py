"""FIX 4.2 acceptor: session rules, orders, malformed input, cancel-on-disconnect, mass cancel,
against a client built on simplefix (test_gateway_quickfix.py runs QuickFIX as the client)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from decimal import Decimal

import pytest
import simplefix

from tickpath.engine import ModelEngine
from tickpath.host.gateway.fix import (
    FixAcceptor,
    FixSessionConfig,
    avg_px,
    price_to_ticks,
    ticks_to_price,
)
from tickpath.host.gateway.hub import EngineSink, OrderHub
from tickpath.protocol.fix42 import FixFramer, FixMessage, Garbled, encode, utc_timestamp

SERVER = "TICKPATH"


class FixClient:
    """A small FIX 4.2 initiator on simplefix: sends what it is told, collects what comes."""

    def __init__(self, reader, writer, sender: str):
        self.reader, self.writer, self.sender = reader, writer, sender
        self.seq = 1
        self.parser = simplefix.FixParser()
        self.received: list[simplefix.FixMessage] = []

    @classmethod
    async def connect(cls, port: int, sender: str) -> FixClient:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w, sender)

    def build(self, msg_type: str, fields, *, seq: int | None = None, poss_dup=False,
              header=True) -> bytes:
        m = simplefix.FixMessage()
        m.append_pair(8, "FIX.4.2", header=True)
        m.append_pair(35, msg_type, header=True)
        if header:
            m.append_pair(49, self.sender, header=True)
            m.append_pair(56, SERVER, header=True)
            m.append_pair(34, self.seq if seq is None else seq, header=True)
            m.append_pair(52, utc_timestamp(), header=True)
        if poss_dup:
            m.append_pair(43, "Y", header=True)
        for tag, value in fields:
            m.append_pair(tag, value)
        if seq is None:
            self.seq += 1
        return m.encode()

    def send(self, msg_type: str, fields=(), **kw) -> None:
        self.writer.write(self.build(msg_type, fields, **kw))

    def send_raw(self, raw: bytes) -> None:
        self.writer.write(raw)

    async def recv(self, timeout: float = 5.0) -> simplefix.FixMessage:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = self.parser.get_message()
            if msg is not None:
                self.received.append(msg)
                return msg
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("no FIX message")
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if not data:
                raise ConnectionError("closed")
            self.parser.append_buffer(data)

    async def expect(self, msg_type: str, timeout: float = 5.0,
                     skip=(b"0",)) -> simplefix.FixMessage:
        for _ in range(200):
            msg = await self.recv(timeout)
            if msg.get(35) == msg_type.encode():
                return msg
            if msg.get(35) not in skip:
                raise AssertionError(f"expected 35={msg_type}, got {msg.encode()!r}")
        raise AssertionError("too many messages")

    async def logon(self, hb: int = 30, reset: bool = False) -> simplefix.FixMessage:
        fields = [(98, 0), (108, hb)] + ([(141, "Y")] if reset else [])
        self.send("A", fields)
        return await self.expect("A")

    async def closed(self, timeout: float = 5.0) -> bool:
        try:
            for _ in range(100):
                await self.recv(timeout)
        except ConnectionError:
            return True
        return False

    def close(self) -> None:
        self.writer.close()


def s(msg: simplefix.FixMessage, tag: int) -> str | None:
    v = msg.get(tag)
    return None if v is None else v.decode()


def new_order(cl: str, side: str, qty: int, price: str, *, stock="AAPL", tif="0",
              ord_type="2", account=None):
    f = [(11, cl), (21, "1"), (55, stock), (54, side), (60, utc_timestamp()), (40, ord_type),
         (38, qty), (59, tif)]
    if price is not None:
        f.append((44, price))
    if account:
        f.append((1, account))
    return f


@contextlib.asynccontextmanager
async def gateway(store_dir: pathlib.Path | None = None, *, engine=None, cod=True,
                  logon_timeout=5.0):
    hub = OrderHub(EngineSink(engine or ModelEngine()))
    acc = FixAcceptor(hub, SERVER, [
        FixSessionConfig("CLI1", account="ACC1", firm="F1", cancel_on_disconnect=cod),
        FixSessionConfig("CLI2", account="ACC2", firm="F2", cancel_on_disconnect=cod),
    ], store_dir=store_dir, logon_timeout=logon_timeout)
    port = await acc.start("127.0.0.1", 0)
    try:
        yield hub, acc, port
    finally:
        await acc.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


REQUIRED_ER = (37, 17, 20, 150, 39, 55, 54, 151, 14, 6)


def check_er(msg, exec_type: str, status: str, leaves: int, cum: int):
    for tag in REQUIRED_ER:
        assert msg.get(tag) is not None, (tag, msg.encode())
    assert (s(msg, 150), s(msg, 39), int(s(msg, 151)), int(s(msg, 14))) == \
        (exec_type, status, leaves, cum), msg.encode()
    if exec_type in "12":
        assert msg.get(31) is not None and msg.get(32) is not None


# --- pure helpers ------------------------------------------------------------------------

def test_price_conversion_exact():
    assert price_to_ticks("123.45") == 1_234_500
    assert price_to_ticks("0.0001") == 1
    assert price_to_ticks("10") == 100_000
    for bad in ("1.00001", "1e3", "-1", "abc", "", "1.2.3", " 1"):
        assert price_to_ticks(bad) is None, bad
    assert ticks_to_price(1_234_500) == "123.4500"
    assert avg_px(100 * 1_001_000 + 200 * 1_002_000, 300) == "100.16666667"   # half-even, 8
    # exact when the decimal terminates
    assert avg_px(100 * 1_001_000 + 100 * 1_002_000, 200) == "100.15"
    assert Decimal(avg_px(100 * 1_001_000 + 200 * 1_002_000, 300)) == \
        (Decimal(100 * 1_001_000 + 200 * 1_002_000) / Decimal(3_000_000)).quantize(
            Decimal("1E-8"))
    assert avg_px(0, 0) == "0"


def test_framer_checks_length_checksum_and_resyncs():
    good = encode("0", [(49, "A"), (56, "B"), (34, 1), (52, "20260101-00:00:00.000")])
    bad_sum = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
    bad_len = good.replace(b"9=", b"9=1", 1)
    f = FixFramer()
    out = f.feed(b"junk" + bad_sum + bad_len + good[:10])
    out += f.feed(good[10:])
    kinds = [type(x).__name__ for x in out]
    assert kinds.count("FixMessage") == 1 and kinds[-1] == "FixMessage"
    assert sum(isinstance(x, Garbled) for x in out) >= 3
    msg = out[-1]
    assert isinstance(msg, FixMessage) and msg.get(34) == "1" and msg.raw == good
    # byte-at-a-time delivery gives the same message
    f2 = FixFramer()
    got = [m for b in good for m in f2.feed(bytes([b]))]
    assert len(got) == 1 and isinstance(got[0], FixMessage)


# --- sessions and orders -----------------------------------------------------------------

def test_orders_fill_replace_cancel():
    async def main():
        async with gateway() as (hub, acc, port):
            a = await FixClient.connect(port, "CLI1")
            b = await FixClient.connect(port, "CLI2")
            logon = await a.logon()
            assert s(logon, 108) == "30" and s(logon, 49) == SERVER
            await b.logon()
            a.send("D", new_order("A1", "2", 300, "100.10"))
            check_er(await a.expect("8"), "0", "0", 300, 0)
            b.send("D", new_order("B1", "1", 100, "100.50"))
            check_er(await b.expect("8"), "0", "0", 100, 0)
            er = await b.expect("8")
            check_er(er, "2", "2", 0, 100)
            assert (s(er, 31), s(er, 32), s(er, 6)) == ("100.1000", "100", "100.1")
            er = await a.expect("8")
            check_er(er, "1", "1", 200, 100)
            # replace: FIX's total 250 with 100 filled leaves 150 open in the engine
            a.send("G", [(41, "A1"), (11, "A2"), (21, "1"), (55, "AAPL"), (54, "2"),
                         (60, utc_timestamp()), (40, "2"), (38, 250), (44, "100.20")])
            er = await a.expect("8")
            check_er(er, "5", "5", 150, 100)
            assert (s(er, 11), s(er, 41), s(er, 38)) == ("A2", "A1", "250")
            st = hub.live_orders(session="fix:CLI1")
            assert [(x.open, x.price) for x in st] == [(150, 1_002_000)]
            # a second fill at another price: AvgPx exact
            b.send("D", new_order("B2", "1", 50, "100.20"))
            await b.expect("8")
            er = await b.expect("8")
            check_er(er, "2", "2", 0, 50)
            er = await a.expect("8")
            check_er(er, "1", "1", 100, 150)
            assert s(er, 6) == "100.13333333"          # (100 x 100.10 + 50 x 100.20) / 150
            # cancel
            a.send("F", [(41, "A2"), (11, "A3"), (55, "AAPL"), (54, "2"),
                         (60, utc_timestamp())])
            er = await a.expect("8")
            check_er(er, "4", "4", 0, 150)
            assert (s(er, 11), s(er, 41)) == ("A3", "A2")
            # cancel again: OrderCancelReject, too late
            a.send("F", [(41, "A3"), (11, "A4"), (55, "AAPL"), (54, "2"),
                         (60, utc_timestamp())])
            rej = await a.expect("9")
            assert (s(rej, 434), s(rej, 102), s(rej, 11), s(rej, 41)) == ("1", "0", "A4", "A3")
            # unknown order
            a.send("F", [(41, "NOPE"), (11, "A5"), (55, "AAPL"), (54, "2"),
                         (60, utc_timestamp())])
            rej = await a.expect("9")
            assert (s(rej, 102), s(rej, 39)) == ("1", "8")
            # replace below filled: rejected by the gateway
            b.send("D", new_order("B3", "1", 100, "99.00"))
            await b.expect("8")
            b.send("G", [(41, "B3"), (11, "B4"), (21, "1"), (55, "AAPL"), (54, "1"),
                         (60, utc_timestamp()), (40, "2"), (38, 0), (44, "99.00")])
            rej = await b.expect("9")
            assert s(rej, 434) == "2"
            # price not a whole tick, market order with no liquidity, FOK, dup ClOrdID
            b.send("D", new_order("B5", "1", 100, "99.00001"))
            er = await b.expect("8")
            check_er(er, "8", "8", 0, 0)
            b.send("D", new_order("B3", "1", 100, "99.00"))
            er = await b.expect("8")
            assert (s(er, 39), s(er, 103)) == ("8", "6")
            b.send("D", new_order("B6", "2", 100, None, ord_type="1"))
            check_er(await b.expect("8"), "0", "0", 100, 0)
            er = await b.expect("8")          # the market sell meets B3: self-match (firm F2)
            assert (s(er, 150), s(er, 58)) == ("4", "self-match prevention")
            a.send("D", new_order("A9", "1", 10_000, "200.00", tif="4"))
            check_er(await a.expect("8"), "0", "0", 10_000, 0)
            check_er(await a.expect("8"), "4", "4", 0, 0)
            assert acc.counters["rejects_received"] == 0
            a.close()
            b.close()
    run(main())


def test_sequence_numbers_persist_and_resend(tmp_path):
    async def main():
        async with gateway(tmp_path) as (hub, acc, port):
            a = await FixClient.connect(port, "CLI1")
            await a.logon()
            a.send("D", new_order("A1", "1", 100, "10.00"))
            await a.expect("8")
            a.send("1", [(112, "hello")])
            hb = await a.expect("0", skip=())
            assert s(hb, 112) == "hello"
            a.send("5")
            await a.expect("5")
            assert await a.closed()
        assert acc.session_store("CLI1").next_in == 5   # logon, D, 1, 5
        out_next = acc.session_store("CLI1").next_out
        # restart: numbers resume from the files
        async with gateway(tmp_path) as (hub, acc, port):
            a = await FixClient.connect(port, "CLI1")
            a.seq = 5
            logon = await a.logon()
            assert int(s(logon, 34)) == out_next
            # ask for everything: admin messages gap-filled, the ExecutionReport resent
            a.send("2", [(7, 1), (16, 0)])
            got = []
            for _ in range(10):
                m = await a.recv(2)
                got.append(m)
                if s(m, 35) == "4" and int(s(m, 36)) >= out_next:
                    break
            types = [(s(m, 35), int(s(m, 34))) for m in got]
            assert types[0] == ("4", 1) and s(got[0], 123) == "Y" and s(got[0], 36) == "2"
            assert types[1] == ("8", 2) and s(got[1], 43) == "Y" and got[1].get(122)
            assert s(got[1], 11) == "A1"
            assert types[2][0] == "4" and s(got[2], 123) == "Y"
            # too high: ResendRequest for the gap, message not processed
            a.send("D", new_order("A2", "1", 100, "10.00"), seq=a.seq + 5)
            rr = await a.expect("2")
            assert (int(s(rr, 7)), s(rr, 16)) == (a.seq, "0")
            # fill the gap with a SequenceReset-GapFill
            a.send("4", [(123, "Y"), (36, a.seq + 6)], seq=a.seq, poss_dup=True)
            a.seq += 6
            a.send("1", [(112, "after-gap")])
            assert s(await a.expect("0", skip=()), 112) == "after-gap"
            # lower with PossDupFlag: ignored; lower without: Logout
            a.send("1", [(112, "dup")], seq=2, poss_dup=True)
            a.send("1", [(112, "again")])
            assert s(await a.expect("0", skip=()), 112) == "again"
            a.send("0", [], seq=2)
            lo = await a.expect("5")
            assert "too low" in s(lo, 58)
            assert await a.closed()
            assert acc.counters["seq_too_low"] == 1 and acc.counters["seq_gaps"] == 1
        # logon with a number that is too low: Logout
        async with gateway(tmp_path) as (hub, acc, port):
            a = await FixClient.connect(port, "CLI1")
            a.seq = 1
            a.send("A", [(98, 0), (108, 30)])
            lo = await a.expect("5")
            assert "too low" in s(lo, 58)
            assert await a.closed()
            # ResetSeqNumFlag starts both sides at 1
            a = await FixClient.connect(port, "CLI1")
            logon = await a.logon(reset=True)
            assert s(logon, 34) == "1" and s(logon, 141) == "Y"
            a.close()
    run(main())


def test_malformed_input_is_counted_never_fatal():
    async def main():
        async with gateway() as (hub, acc, port):
            a = await FixClient.connect(port, "CLI1")
            await a.logon()
            good = a.build("1", [(112, "x1")], seq=a.seq)
            bad_sum = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
            a.send_raw(bad_sum)                              # ignored, seq not consumed
            a.send_raw(b"\x00\xffgarbage 8=FIY not fix\x01")
            a.send_raw(good.replace(b"9=", b"9=9", 1))       # wrong BodyLength
            a.send_raw(good)
            a.seq += 1
            assert s(await a.expect("0", skip=()), 112) == "x1"
            # missing required tags: session-level Reject, sequence consumed
            a.send("D", [(11, "X1"), (21, "1"), (54, "1"), (60, utc_timestamp()), (40, "2"),
                         (38, 100), (44, "10.00")])              # no Symbol (55)
            rej = await a.expect("3")
            assert (s(rej, 373), s(rej, 371)) == ("1", "55")
            a.send("D", [(11, "X2")], header=True)
            rej = await a.expect("3")
            assert s(rej, 373) == "1"
            # missing SendingTime
            raw = encode("1", [(49, "CLI1"), (56, SERVER), (34, a.seq)], [(112, "z")])
            a.seq += 1
            a.send_raw(raw)
            assert s(await a.expect("3"), 371) == "52"
            a.send("Z", [(1, 2)])                                # unknown MsgType
            assert s(await a.expect("3"), 373) == "11"
            a.send("1", [(112, "alive")])
            assert s(await a.expect("0", skip=()), 112) == "alive"
            assert acc.counters["garbled"] >= 2 and acc.counters["rejects_sent"] == 4
            # no MsgSeqNum: Logout
            a.send_raw(encode("0", [(49, "CLI1"), (56, SERVER), (52, utc_timestamp())]))
            assert "MsgSeqNum" in s(await a.expect("5"), 58)
            assert await a.closed()
            # not a logon first; unknown CompID
            c = await FixClient.connect(port, "CLI2")
            c.send("0")
            assert "Logon" in s(await c.expect("5"), 58)
            c = await FixClient.connect(port, "WHO")
            c.send("A", [(98, 0), (108, 30)])
            assert s(await c.expect("5"), 58).startswith("unknown")
            c = await FixClient.connect(port, "CLI2")
            c.send_raw(b"\xde\xad" * 5000)
            c.close()
            # the acceptor still serves
            d = await FixClient.connect(port, "CLI2")
            await d.logon()
            d.close()
    run(main())


def test_heartbeats_test_request_and_dead_peer():
    async def main():
        async with gateway() as (hub, acc, port):
            a = await FixClient.connect(port, "CLI1")
            await a.logon(hb=1)
            hb = await a.recv(2.5)                    # our silence: a Heartbeat within 1 s
            assert s(hb, 35) == "0"
            # stay silent: TestRequest after 1.2 s of silence, then disconnected
            types = []
            with contextlib.suppress(ConnectionError, TimeoutError):
                for _ in range(20):
                    types.append(s(await a.recv(4), 35))
            assert "1" in types
            assert acc.counters["heartbeat_timeouts"] == 1
            # no logon at all within the logon timeout: closed
        async with gateway(logon_timeout=0.5) as (hub, acc, port):
            c = await FixClient.connect(port, "CLI1")
            data = await asyncio.wait_for(c.reader.read(100), 3)
            assert data == b""
            assert acc.counters["logon_timeouts"] == 1
    run(main())


def test_cancel_on_disconnect_and_mass_cancel():
    async def main():
        async with gateway() as (hub, acc, port):
            a = await FixClient.connect(port, "CLI1")
            b = await FixClient.connect(port, "CLI2")
            await a.logon()
            await b.logon()
            a.send("D", new_order("A1", "1", 100, "10.00"))
            a.send("D", new_order("A2", "1", 100, "10.00", account="OTHER"))
            b.send("D", new_order("B1", "1", 100, "10.00"))
            b.send("D", new_order("B2", "2", 100, "11.00", account="ACC9"))
            for c in (a, a, b, b):
                await c.expect("8")
            assert len(hub.live_orders()) == 4
            assert await hub.mass_cancel("ACC9") == 1
            er = await b.expect("8")
            check_er(er, "4", "4", 0, 0)
            assert s(er, 11) == "B2"
            a.close()                                  # CLI1 cancels on disconnect
            for _ in range(50):
                if not hub.live_orders(session="fix:CLI1"):
                    break
                await asyncio.sleep(0.05)
            assert hub.live_orders(session="fix:CLI1") == []
            assert [x.client_id for x in hub.live_orders()] == ["B1"]
            assert hub.counters["cancel_on_disconnect"] == 2
            # the cancels are stored for CLI1's next logon (resend)
            assert sum(b"150=4" in raw for raw in acc.session_store("CLI1").messages.values()) \
                == 2
            b.close()
    run(main())


def test_no_cancel_on_disconnect_when_off():
    async def main():
        async with gateway(cod=False) as (hub, acc, port):
            a = await FixClient.connect(port, "CLI1")
            await a.logon()
            a.send("D", new_order("A1", "1", 100, "10.00"))
            await a.expect("8")
            a.close()
            await asyncio.sleep(0.3)
            assert [x.client_id for x in hub.live_orders()] == ["A1"]
    run(main())


@pytest.mark.parametrize("tif,expected", [("3", ["0", "4"]), ("0", ["0"])])
def test_ioc_without_liquidity(tif, expected):
    async def main():
        async with gateway() as (hub, acc, port):
            a = await FixClient.connect(port, "CLI1")
            await a.logon()
            a.send("D", new_order("A1", "1", 100, "10.00", tif=tif))
            got = [s(await a.expect("8"), 150) for _ in expected]
            assert got == expected
    run(main())
