"""Randomised order flow through both gateways (two FIX clients, two OUCH users, three firms
so self-match prevention happens) into the golden engine. Checks: the engine records the
gateways made are the clients' actions; a fresh golden model given the same records gives the
same events; every ExecutionReport and every OUCH message each client got is what the engine's
events say, in order, and nothing else."""

from __future__ import annotations

import asyncio
import random

import pytest
from test_gateway_fix import FixClient, new_order, s
from test_gateway_ouch import SoupClient, enter

from tickpath.engine import ModelEngine
from tickpath.host.gateway.fix import FixAcceptor, FixSessionConfig, avg_px, ticks_to_price
from tickpath.host.gateway.hub import EngineSink, OrderHub
from tickpath.host.gateway.ouch import OuchServer, OuchUser
from tickpath.model.matching import MatchingModel
from tickpath.protocol import ouch42 as ouch
from tickpath.protocol import soupbintcp as soup
from tickpath.protocol.fix42 import utc_timestamp
from tickpath.protocol.records import Action, CancelReason, EventKind, RejectReason

N_ACTIONS = 150


class RecordingSink(EngineSink):
    def __init__(self):
        super().__init__(ModelEngine())
        self.log = []

    async def submit(self, order, ctx):
        events = await super().submit(order, ctx)
        self.log.append((order, ctx, events))
        return events


async def settle(counters, key, want):
    for _ in range(500):
        if counters[key] >= want:
            await asyncio.sleep(0.002)
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"{key} never reached {want}")


@pytest.mark.parametrize("seed", [1, 2])
def test_random_flow_both_gateways(seed):
    rng = random.Random(seed)

    async def main():
        sink = RecordingSink()
        hub = OrderHub(sink)
        fix_acc = FixAcceptor(hub, "TICKPATH", [FixSessionConfig("CLI1", "A1", "F1"),
                                                FixSessionConfig("CLI2", "A2", "F2")])
        srv = OuchServer(hub, [OuchUser("U1", "p", "F1", "A3"), OuchUser("U2", "p", "F3", "A4")])
        fport, oport = await fix_acc.start(), await srv.start()
        fix = {n: await FixClient.connect(fport, n) for n in ("CLI1", "CLI2")}
        for c in fix.values():
            await c.logon()
        och = {}
        for n in ("U1", "U2"):
            och[n], acc = await SoupClient.login(oport, n, "p", 0)
            assert isinstance(acc, soup.LoginAccepted)
        sent = {"in_D": 0, "in_F": 0, "in_G": 0, "in_O": 0, "in_X": 0, "in_U": 0}
        mine: dict[str, list[str]] = {n: [] for n in (*fix, *och)}      # tokens / ClOrdIDs
        sides: dict[str, str] = {}
        n_tok = 0
        for _ in range(N_ACTIONS):
            who = rng.choice(list(mine))
            n_tok += 1
            tok = f"{who}T{n_tok}"
            price = rng.randrange(9_900, 10_100, 25) * 100
            r = rng.random()
            if r < 0.6 or not mine[who]:
                side = rng.choice("BS")
                qty = rng.randint(1, 400)
                ioc = rng.random() < 0.2
                if who in fix:
                    fix[who].send("D", new_order(tok, "1" if side == "B" else "2", qty,
                                                 ticks_to_price(price), tif="3" if ioc else "0"))
                    key = "in_D"
                else:
                    och[who].ouch(enter(tok, side, qty, price, tif=0 if ioc else 99998,
                                        min_qty=qty if ioc and rng.random() < 0.3 else 0))
                    key = "in_O"
                sides[tok] = side
                mine[who].append(tok)
            else:
                if who in fix:      # FIX: only live orders (a done one is refused locally)
                    live = [x.client_id for x in hub.live_orders(session=f"fix:{who}")]
                    if not live:
                        continue
                    old = rng.choice(sorted(live))
                else:
                    old = rng.choice(mine[who])
                if r < 0.8:
                    if who in fix:
                        fix[who].send("F", [(41, old), (11, tok), (55, "AAPL"),
                                            (54, "1" if sides[old] == "B" else "2"),
                                            (60, utc_timestamp())])
                        key = "in_F"
                        mine[who].append(tok)
                        sides[tok] = sides[old]
                    else:
                        och[who].ouch(ouch.CancelOrder(old, rng.choice([0, 0, 50])))
                        key = "in_X"
                else:
                    new_open = rng.randint(1, 300)
                    if who in fix:
                        total = _fix_cum(sink, fix_acc, old) + new_open
                        fix[who].send("G", [(41, old), (11, tok), (21, "1"), (55, "AAPL"),
                                            (54, "1" if sides[old] == "B" else "2"),
                                            (60, utc_timestamp()), (40, "2"), (38, total),
                                            (44, ticks_to_price(price))])
                        key = "in_G"
                    else:
                        och[who].ouch(ouch.ReplaceOrder(old, tok, new_open, price, 99998, "Y",
                                                        "N", 0))
                        key = "in_U"
                    mine[who].append(tok)
                    sides[tok] = sides[old]
            sent[key] += 1
            counters = fix_acc.counters if who in fix else srv.counters
            await settle(counters, key, sent[key])
        await asyncio.sleep(0.2)

        # 1. the golden model, given the same records, gives the same events
        oracle = MatchingModel()
        oracle.set_symbol(0, "AAPL")
        for order, _, events in sink.log:
            assert oracle.process(order) == events
        # 2. expected client messages from the engine's events
        owner: dict[int, tuple[str, str]] = {}
        exp: dict[str, list[tuple]] = {n: [] for n in (*fix, *och)}
        open_: dict[int, int] = {}
        chain_cum: dict[str, int] = {}
        chain_notional: dict[str, int] = {}
        chain_of: dict[int, str] = {}
        for order, ctx, events in sink.log:
            who = ctx.session.split(":")[1]
            if order.action is Action.Enter:
                owner[order.order_id] = (who, ctx.client_id)
                chain_of[order.order_id] = ctx.client_id
                chain_cum[ctx.client_id] = chain_notional[ctx.client_id] = 0
            elif order.action is Action.Replace:
                owner[order.new_order_id] = (who, ctx.client_id)
                chain_of[order.new_order_id] = chain_of[order.order_id]
            seen = set()
            for e in events:
                if e.kind is EventKind.Rejected:
                    if who in fix:
                        exp[who].append(("9",) if order.action is not Action.Enter else
                                        ("8", "8", ctx.client_id))
                    elif order.action is Action.Enter:
                        exp[who].append(("J", ctx.client_id, chr(e.reason)))
                    elif order.action is Action.Cancel and e.reason == RejectReason.UnknownToken:
                        exp[who].append(("I", ctx.client_id))
                    continue
                o_who, o_tok = owner[e.order_id]
                ch = chain_of[e.order_id]
                if e.kind is EventKind.Accepted:
                    open_[e.order_id] = e.shares
                    exp[o_who].append(("0", "0", o_tok, e.shares) if o_who in fix
                                      else ("A", o_tok, e.shares, e.price))
                elif e.kind is EventKind.Executed:
                    open_[e.order_id] -= e.shares
                    chain_cum[ch] += e.shares
                    chain_notional[ch] += e.shares * e.price
                    left = open_[e.order_id]
                    if o_who in fix:
                        st = "1" if left else "2"
                        exp[o_who].append((st, st, e.shares, ticks_to_price(e.price), left,
                                           chain_cum[ch], avg_px(chain_notional[ch],
                                                                 chain_cum[ch])))
                    else:
                        exp[o_who].append(("E", o_tok, e.shares, e.price,
                                           "A" if e.match_number in seen else "R",
                                           e.match_number))
                    seen.add(e.match_number)
                elif e.kind is EventKind.Canceled:
                    open_[e.order_id] -= e.shares
                    if o_who in fix:
                        exp[o_who].append(("4", "4", 0, chain_cum[ch]))
                    elif e.reason == CancelReason.SelfMatch:
                        exp[o_who].append(("D", o_tok, e.shares))
                    elif e.shares:
                        exp[o_who].append(("C", o_tok, e.shares, chr(e.reason)))
                elif e.kind is EventKind.Replaced:
                    open_[e.contra_id] = e.shares
                    n_who, n_tok = owner[e.contra_id]
                    exp[n_who].append(("5", "5", n_tok, e.shares) if n_who in fix
                                      else ("U", n_tok, o_tok, e.shares, e.price))
        # 3. what the clients got
        for name, c in fix.items():
            got = []
            for _ in range(10_000):
                try:
                    m = await c.recv(0.2)
                except TimeoutError:
                    break
                t = s(m, 35)
                if t == "9":
                    got.append(("9",))
                elif t == "8":
                    et = s(m, 150)
                    if et in "12":
                        got.append((et, s(m, 39), int(s(m, 32)), s(m, 31), int(s(m, 151)),
                                    int(s(m, 14)), s(m, 6)))
                    elif et == "4":
                        got.append((et, s(m, 39), int(s(m, 151)), int(s(m, 14))))
                    elif et == "8":
                        got.append((et, s(m, 39), s(m, 11)))
                    else:
                        got.append((et, s(m, 39), s(m, 11), int(s(m, 151))))
            assert got == exp[name], name
        for name, c in och.items():
            got = []
            for _ in range(10_000):
                try:
                    m = await c.msg(0.2)
                except TimeoutError:
                    break
                if m.type == "A":
                    got.append(("A", m.order_token, m.shares, m.price))
                elif m.type == "E":
                    got.append(("E", m.order_token, m.executed_shares, m.execution_price,
                                m.liquidity_flag, m.match_number))
                elif m.type == "D":
                    got.append(("D", m.order_token, m.decrement_shares))
                elif m.type == "C":
                    got.append(("C", m.order_token, m.decrement_shares, m.reason))
                elif m.type == "U":
                    got.append(("U", m.order_token, m.previous_order_token, m.shares, m.price))
                elif m.type == "J":
                    got.append(("J", m.order_token, m.reason))
                elif m.type == "I":
                    got.append(("I", m.order_token))
            assert got == exp[name], name
        kinds = {e.kind for _, _, evs in sink.log for e in evs}
        assert {EventKind.Executed, EventKind.Canceled, EventKind.Replaced} <= kinds
        assert any(e.reason == CancelReason.SelfMatch for _, _, evs in sink.log for e in evs
                   if e.kind is EventKind.Canceled) or seed != 1
        for c in (*fix.values(), *och.values()):
            c.close()
        await fix_acc.close()
        await srv.close()

    async def guarded():
        try:
            await main()
        finally:
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()
    asyncio.run(asyncio.wait_for(guarded(), 80))


def _fix_cum(sink, acc, cl: str) -> int:
    chain = acc.sessions["CLI1"].chains.get(cl) or acc.sessions["CLI2"].chains.get(cl)
    return chain.cum_qty if chain else 0
