"""MatchingEngine in Amaranth's own simulator against the golden MatchingModel: the pinned
rules one by one (directed streams) and a short seeded random stream with backpressure; every
event compared, and the ITCH output byte for byte against ``MatchingModel.itch`` encoded, its
messages framed by ``last``, and fed into the golden BookBuilder to rebuild the model's book."""

import random

from amaranth.sim import Simulator

from tickpath.hdl.matching import MatchingEngine
from tickpath.model.book import BookBuilder
from tickpath.model.matching import MatchingModel
from tickpath.protocol import itch
from tickpath.protocol.records import Action, Event, Order, OrderType, Side, TimeInForce
from tickpath.sim.matching.stimulus import new_model, random_actions

B, S = Side.Buy, Side.Sell
DAY, IOC, FOK = TimeInForce.Day, TimeInForce.Ioc, TimeInForce.Fok
LMT, MKT = OrderType.Limit, OrderType.Market
P = 1_000_000           # $100.00
SMALL = {"symbols": 2, "capacity": 16, "levels": 4, "token_bits": 8,   # quick to elaborate
         "itch_width": 1}                # the ITCH checks here read one byte a beat


def enter(token, side, shares, price, *, firm=1, symbol=0, tif=DAY, kind=LMT, min_qty=0):
    return Order(Action.Enter, side, tif, kind, token, 0, firm, symbol, shares, price, min_qty)


def cancel(token, shares=0):
    return Order(Action.Cancel, order_id=token, shares=shares)


def replace(token, new, shares, price):
    return Order(Action.Replace, order_id=token, new_order_id=new, shares=shares, price=price)


EOD = Order(action=Action.EndOfDay)


def itch_messages(data, lasts):
    """Split ITCH bytes at their ``last`` flags; check each piece is one whole message."""
    out, start = [], 0
    for i, last in enumerate(lasts):
        if last:
            out.append(itch.decode(bytes(data[start:i + 1]), length=i + 1 - start))
            start = i + 1
    assert start == len(data), "ITCH bytes after the last message's end"
    return out


def run_engine(orders, *, ready_probability=1.0, seed=0, itch_out=None, **params):
    """Events of ``orders`` from the gateware, and the cycle each action was taken in and
    each event left; the ITCH bytes and their ``last`` flags go to ``itch_out`` (a list of
    two lists) when given."""
    params = {**SMALL, **params}
    dut = MatchingEngine(**params)
    got, taken_at, out_at = [], [], []
    itch_bytes, itch_lasts = itch_out if itch_out is not None else ([], [])
    done = [False]
    cycle = [0]
    n_last = len(orders)

    async def clock(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def produce(ctx):
        for order in orders:
            ctx.set(dut.i_stream.payload, order.to_const())
            ctx.set(dut.i_stream.valid, 1)
            await ctx.tick().until(dut.i_stream.ready)
            taken_at.append(cycle[0])
            ctx.set(dut.i_stream.valid, 0)

    async def consume(ctx):
        rng = random.Random(seed)
        lasts = 0
        waited = 0
        while lasts < n_last:
            ready = rng.random() < ready_probability
            ctx.set(dut.o_stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                           dut.o_stream.payload)
            waited += 1
            assert waited < 200 * (n_last + 1), "the engine stalled"
            if valid and ready:
                event = Event.from_const(payload)
                got.append(event)
                out_at.append(cycle[0])
                lasts += event.last
        done[0] = True

    async def consume_itch(ctx):
        rng = random.Random(seed + 1)
        idle = 0
        while not done[0] or idle < 64:        # drain: the ITCH bytes trail the events
            ready = rng.random() < ready_probability
            ctx.set(dut.itch_stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.itch_stream.valid,
                                                           dut.itch_stream.payload)
            idle = 0 if valid else idle + 1
            if valid and ready:
                itch_bytes.append(payload.data)
                itch_lasts.append(payload.last)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(clock)
    sim.add_testbench(produce)
    sim.add_testbench(consume)
    sim.add_testbench(consume_itch)
    sim.run()
    return got, taken_at, out_at


def check_itch(model, itch_out):
    """The gateware's ITCH bytes are the model's, encoded, and rebuild the model's book."""
    data, lasts = itch_out
    assert bytes(data) == b"".join(itch.encode(msg) for msg in model.itch)
    messages = itch_messages(data, lasts)
    assert messages == model.itch
    book = BookBuilder().apply_all(messages)
    assert book.snapshot() == model.snapshot()
    return messages


def check(orders, **params):
    params = {**SMALL, **params}
    model = new_model(params["symbols"], params["capacity"])
    want = model.process_all(orders)
    itch_out = ([], [])
    got, taken_at, out_at = run_engine(orders, itch_out=itch_out, **params)
    assert got == want
    check_itch(model, itch_out)
    return got, taken_at, out_at


def test_rest_cross_partial_fills():
    _, taken_at, out_at = check([enter(1, B, 100, P), enter(2, B, 50, P), enter(3, B, 70, P - 100),
           enter(4, S, 180, P - 100, firm=2), enter(5, S, 10, P + 100, firm=2),
           enter(6, B, 30, P + 200, firm=3)])
    assert out_at[0] - taken_at[0] == 7          # a resting enter: accepted 7 cycles after


def test_cancel_reduce_full_no_change_unknown():
    check([enter(1, B, 100, P), cancel(1, 60), cancel(1, 60), cancel(1, 80), cancel(1, 0),
           cancel(1, 0), cancel(77, 0)])


def test_validation_rejects():
    _, taken_at, out_at = check([
           enter(1, B, 0, P), enter(1, B, 1_000_000, P), enter(1, B, 10, P + 50),
           enter(1, B, 10, 9_900), enter(1, B, 10, 2_000_000_000), enter(1, B, 10, P, symbol=2),
           enter(1, B, 10, P, min_qty=5), enter(1, B, 10, P, tif=IOC, min_qty=11),
           enter(1, B, 10, P), enter(1, S, 10, P + 100), replace(9, 10, 5, P),
           replace(1, 1, 5, P), replace(1, 2, 0, P), replace(1, 2, 5, P + 1)])
    assert out_at[0] - taken_at[0] == 3          # a rejected enter


def test_ioc_fok_market_min_qty():
    check([enter(1, S, 100, P, firm=2), enter(2, S, 100, P + 100, firm=1),
           enter(3, B, 150, P + 100, firm=1, tif=FOK),          # own liquidity does not count
           enter(4, B, 100, P + 100, firm=3, tif=FOK),
           enter(5, B, 50, 0, firm=3, kind=MKT),
           enter(6, B, 80, P + 100, firm=3, tif=IOC, min_qty=60),
           enter(7, B, 80, P + 100, firm=2, tif=IOC, min_qty=60),
           enter(8, S, 500, 0, firm=3, kind=MKT, tif=FOK)])


def test_self_match_prevention():
    check([enter(1, S, 100, P, firm=1), enter(2, S, 100, P, firm=2), enter(3, S, 100, P, firm=1),
           enter(4, B, 250, P, firm=1), enter(5, B, 10, P + 100, firm=2)])


def test_replace_keeps_or_loses_priority():
    check([enter(1, B, 100, P), enter(2, B, 100, P, firm=2), replace(1, 3, 80, P),
           enter(4, S, 90, P, firm=3), replace(2, 5, 200, P), replace(3, 6, 50, P - 100),
           enter(7, S, 100, P + 200, firm=3), replace(6, 8, 120, P + 200),
           enter(9, S, 10, P - 100, firm=3)])


def test_full_order_store_and_end_of_day():
    orders = [enter(t, B, 10, P - 100 * (t % 3), symbol=t % 2) for t in range(1, 20)]
    orders += [enter(30, S, 5, P - 300, tif=IOC, firm=2), cancel(3), enter(31, B, 5, P),
               EOD, enter(40, B, 5, P), cancel(31), EOD]
    events, _, _ = check(orders, capacity=16)
    assert sum(e.reason == ord("f") for e in events) == 3


def test_random_stream_with_backpressure():
    orders = random_actions(random.Random(21), 150, symbols=2, capacity=16, prices=4,
                            token_bits=8)
    model = new_model(2, 16)
    want = model.process_all(orders)
    itch_out = ([], [])
    got, _, _ = run_engine(orders, ready_probability=0.6, seed=3, itch_out=itch_out)
    assert got == want
    messages = check_itch(model, itch_out)
    assert {"S", "R", "A", "E", "X", "D", "U"} <= {msg.type for msg in messages}
    want += model.process(EOD)
    itch_out = ([], [])
    got, _, _ = run_engine(orders + [EOD], ready_probability=0.6, seed=3, itch_out=itch_out)
    assert got == want
    check_itch(model, itch_out)


def test_itch_off():
    orders = random_actions(random.Random(4), 60, symbols=2, capacity=16, prices=4,
                            token_bits=8)
    model = new_model(2, 16)
    want = model.process_all(orders)
    itch_out = ([], [])
    got, _, _ = run_engine(orders, itch=False, itch_out=itch_out)
    assert got == want
    assert itch_out == ([], [])


def test_itch_stock_names_and_locates():
    """Locates by first accepted enter (a rejected enter does not take one); stock names from
    ``stocks``."""
    stocks = ("AAPL", "MSFT")
    orders = [enter(1, B, 10, P + 1, symbol=1), enter(2, S, 10, P, symbol=1),
              enter(3, B, 10, P, symbol=0), enter(4, B, 5, P, symbol=1, firm=2), EOD]
    model = MatchingModel(capacity=16)
    for s, name in enumerate(stocks):
        model.set_symbol(s, name)
    want = model.process_all(orders)
    itch_out = ([], [])
    got, _, _ = run_engine(orders, itch_out=itch_out, stocks=stocks)
    assert got == want
    messages = check_itch(model, itch_out)
    assert [(m.stock_locate, m.stock) for m in messages if m.type == "R"] == \
        [(1, "MSFT"), (2, "AAPL")]
