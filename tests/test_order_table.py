"""OrderTable (with its block RAM) on Amaranth's simulator: ops, counters and occupancy against
the model, on synthetic streams, a small table that fills, and faults; the shared hash."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from tickpath.generator import GeneratorConfig, iter_messages
from tickpath.hdl.order_table import COUNTERS, OrderTable, OrderTableUnit, reference_hash
from tickpath.protocol.bookfeed import bucket_of
from tickpath.protocol.feed import EventKind, as_dict, expected_event, zero_event
from tickpath.sim.feed_book.model import FeedBookModel


async def stream_put(ctx, stream, payload):
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


def run_table(events, *, subscribe=(), stall_probability=0.0, seed=0, **params):
    dut = OrderTableUnit(**params)
    model = FeedBookModel(**params)
    for locate, slot, enable in subscribe:
        model.subscribe(locate, slot, bool(enable))
    want = [op for op in (model.table_op(ev) for ev in events) if op is not None]
    rng = random.Random(seed)
    got, end = [], {}

    async def producer(ctx):
        for locate, slot, enable in subscribe:
            await stream_put(ctx, dut.subscribe, {"stock_locate": locate, "slot": slot,
                                                  "enable": enable})
        for n, ev in enumerate(events):
            await stream_put(ctx, dut.i_stream, {**ev, "ingress": n})

    async def consumer(ctx):
        while len(got) < len(want):
            ctx.set(dut.o_stream.ready, int(rng.random() >= stall_probability))
            await ctx.tick()
        await ctx.tick().repeat(20)
        end.update({name: ctx.get(getattr(dut, name)) for name in COUNTERS + ("occupancy",)})

    async def monitor(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload):
            if valid and ready:
                got.append(as_dict(payload))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_process(monitor)
    sim.run()
    for op in got:
        op.pop("ingress")
    assert got == want
    assert end == {**{n: model.counters[n] for n in COUNTERS}, "occupancy": model.occupancy()}
    return model


def events_of(config):
    return [expected_event(raw) for raw in iter_messages(config)]


def test_synthetic_stream_matches_the_model():
    model = run_table(events_of(GeneratorConfig(messages=300, symbols=3, seed=2)),
                      capacity=1024, ways=4, slots=4, locate_bits=4, stall_probability=0.3)
    assert model.counters["ops"] > 200 and model.counters["table_full"] == 0


def test_small_table_fills_and_faults_are_counted():
    events = events_of(GeneratorConfig(messages=400, symbols=3, seed=4))
    rng = random.Random(1)
    for _ in range(20):                 # unknown references, duplicates, zero shares, overfills
        ev = dict(rng.choice(events))
        if ev["kind"] is EventKind.Add and rng.random() < 0.5:
            ev["shares"] = 0
        elif ev["kind"] is not EventKind.Add:
            ev["order_ref"] ^= 1 << 40
        ev["shares"] = ev["shares"] * rng.choice((1, 3))
        events.insert(rng.randrange(len(events)), ev)
    model = run_table(events, capacity=32, ways=2, slots=2, locate_bits=3,
                      subscribe=[(3, 1, 0)])
    c = model.counters
    assert c["table_full"] and c["unknown_reference"] and c["unsubscribed"]


def test_ignored_kinds_and_unsubscribed_locates():
    other = {**zero_event(), "kind": EventKind.Trade, "stock_locate": 1}
    far = {**zero_event(), "kind": EventKind.Add, "stock_locate": 900, "shares": 5}
    model = run_table([other, far, {**far, "stock_locate": 2}], capacity=64, ways=4, slots=1,
                      locate_bits=4)
    assert model.counters == {"events": 3, "ignored": 1, "unsubscribed": 2}


@pytest.mark.parametrize("bits", [1, 6, 13])
def test_hash_is_the_shared_definition(bits):
    rng = random.Random(bits)
    refs = [rng.getrandbits(64) for _ in range(50)] + list(range(0, 400, 4))
    m = Module()
    ref = Signal(64)
    out = Signal(bits)
    m.d.comb += out.eq(reference_hash(ref, bits))
    seen = []

    async def bench(ctx):
        for r in refs:
            ctx.set(ref, r)
            seen.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [bucket_of(r, bits) for r in refs]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_parameters_are_checked():
    with pytest.raises(ValueError):
        OrderTable(capacity=1000)
    with pytest.raises(ValueError):
        OrderTable(slots=300)
    assert OrderTable(capacity=4096, ways=8).bucket_bits == 9


def test_cycle_cost_per_event():
    """An op is valid 5 cycles after its event was taken: the input register, then the bucket
    read, its data registered, the per-way flags registered and the decision (10 for a
    replace: a second bucket)."""
    add = {**zero_event(), "kind": EventKind.Add, "stock_locate": 1, "order_ref": 7,
           "price": 100, "shares": 5}
    replace = {**zero_event(), "kind": EventKind.Replace, "stock_locate": 1, "order_ref": 7,
               "new_order_ref": 9, "price": 101, "shares": 5}
    dut = OrderTableUnit(capacity=64, ways=4, slots=1, locate_bits=2)
    taken, valid = [], []

    async def bench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        cycle = 0
        for ev in (add, replace):
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, {**ev, "ingress": 0})
            while True:
                ready = ctx.get(dut.i_stream.ready)
                await ctx.tick()
                cycle += 1
                if ready:
                    break
            taken.append(cycle - 1)
            ctx.set(dut.i_stream.valid, 0)
            while not ctx.get(dut.o_stream.valid):
                await ctx.tick()
                cycle += 1
            valid.append(cycle)
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert [v - t for t, v in zip(taken, valid, strict=True)] == [5, 10]
