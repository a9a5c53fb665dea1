"""Book on Amaranth's simulator: book ops in (from the model's order table), updates out,
against the model (itself checked against the golden BookBuilder); level overflow, missing
levels, queries and clearing flags; per-op cycle cost."""

import random

import pytest
from amaranth.sim import Simulator

from tickpath.generator import GeneratorConfig, iter_messages
from tickpath.hdl.book import COUNTERS, Book
from tickpath.protocol.feed import EventKind, as_dict, expected_event
from tickpath.sim.feed_book.model import FeedBookModel


async def stream_put(ctx, stream, payload):
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


def run_book(ops, model, *, slots, levels, depth, stall_probability=0.0, seed=0,
             queries=(), clears=()):
    """Feed ``ops`` to a Book: model ops, or (op, its expected update) pairs already applied
    to the model (so the golden BookBuilder was checked as they came)."""
    dut = Book(slots=slots, levels=levels, depth=depth)
    interleaved = bool(ops) and isinstance(ops[0], tuple)
    if interleaved:
        want = [u for _, u in ops if u is not None]
        ops = [op for op, _ in ops]
    else:
        want = [u for u in (model.book_update(op) for op in ops) if u is not None]
    for s in clears:
        model.clear(s)
    want += [model.query(slot, side) for slot, side in queries]
    rng = random.Random(seed)
    got, end, taken = [], {}, []

    async def producer(ctx):
        for n, op in enumerate(ops):
            await stream_put(ctx, dut.i_stream, {**op, "ingress": n})
            taken.append(ctx.get(dut.cycle) - 1)      # the cycle it was taken in
        for s in clears:
            await stream_put(ctx, dut.clear, s)
        for slot, side in queries:
            await stream_put(ctx, dut.query, {"slot": slot, "side": side})

    async def consumer(ctx):
        while len(got) < len(want):
            ctx.set(dut.o_stream.ready, int(rng.random() >= stall_probability))
            await ctx.tick()
        await ctx.tick().repeat(10)
        end.update({name: ctx.get(getattr(dut, name)) for name in COUNTERS})
        end["invalid"] = ctx.get(dut.invalid)

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
    stamps = []                     # (cycle the op was taken, egress) per op update
    for u in got:
        ingress, egress = u.pop("ingress"), u.pop("egress")
        if u["kind"] is not EventKind.Other:
            stamps.append((taken[ingress], egress))
    assert got == want
    c = model.counters
    assert end == {"ops": c["book_ops"], "updates": c["book_updates"],
                   "level_overflow": c["book_level_overflow"],
                   "level_missing": c["book_level_missing"],
                   "invalid": sum(1 << s for s in model.invalid)}
    if interleaved:
        assert not model.golden_mismatches, model.golden_mismatches
    return stamps


def model_ops(model, config):
    """(op, expected update) per op of a synthetic stream, interleaved as the gateware runs."""
    out = []
    for raw in iter_messages(config):
        op, update = model.event(expected_event(raw))
        if op is not None:
            out.append((op, update))
    return out


@pytest.mark.parametrize("levels", [4, 32])
def test_synthetic_ops_match_the_model(levels):
    params = {"slots": 4, "levels": levels, "depth": 4}
    model = FeedBookModel(capacity=4096, ways=8, locate_bits=4, **params)
    ops = model_ops(model, GeneratorConfig(messages=500, symbols=3, seed=levels))
    run_book(ops, model, stall_probability=0.3, queries=[(0, 0), (0, 1), (2, 1)], **params)
    if levels == 32:
        assert not model.invalid and model.golden_checked > 200
        assert not model.check_final()
    else:
        assert model.counters["book_level_overflow"] > 0 and model.invalid


def test_flags_missing_levels_query_and_clear():
    params = {"slots": 2, "levels": 2, "depth": 2}
    model = FeedBookModel(capacity=64, ways=4, locate_bits=2, **params)
    base = {"kind": EventKind.Add, "slot": 1, "stock_locate": 2, "side": 0, "reduce": 0,
            "remove": 0, "add": 1, "invalidate": 0, "reduce_price": 0, "reduce_shares": 0,
            "add_price": 0, "add_shares": 0}
    ops = [{**base, "add_price": p, "add_shares": 10} for p in (100, 300, 200)]   # overflow
    ops.append({**base, "kind": EventKind.Delete, "add": 0, "reduce": 1, "remove": 1,
                "reduce_price": 999, "reduce_shares": 1})                        # missing
    ops.append({**base, "slot": 0, "side": 1, "add_price": 50, "add_shares": 7})
    ops.append({**base, "slot": 0, "add": 0, "invalidate": 1})                   # flag only
    run_book(ops, model, queries=[(1, 0), (0, 1)], clears=[1], **params)
    assert model.counters["book_level_overflow"] == 1
    assert model.counters["book_level_missing"] == 1
    assert model.invalid == {0}


def test_cycle_cost_per_op():
    """An update is valid 6 cycles after its op was taken (9 for reduce + add)."""
    params = {"slots": 1, "levels": 4, "depth": 2}
    model = FeedBookModel(capacity=64, ways=4, locate_bits=2, **params)
    add = {"kind": EventKind.Add, "slot": 0, "stock_locate": 1, "side": 0, "reduce": 0,
           "remove": 0, "add": 1, "invalidate": 0, "reduce_price": 0, "reduce_shares": 0,
           "add_price": 100, "add_shares": 5}
    replace = {**add, "kind": EventKind.Replace, "reduce": 1, "remove": 1,
               "reduce_price": 100, "reduce_shares": 5, "add_price": 101}
    stamps = run_book([add, replace], model, **params)
    assert [e - i for i, e in stamps] == [6, 9]


def test_updates_only_when_the_top_changes():
    """Replaces that put back what they took, changes below the top N, zero-share reduces:
    an update exactly when the model sends one (the book derives "changed" from its compares)."""
    params = {"slots": 1, "levels": 4, "depth": 2}
    model = FeedBookModel(capacity=64, ways=4, locate_bits=2, **params)
    base = {"kind": EventKind.Add, "slot": 0, "stock_locate": 1, "side": 0, "reduce": 0,
            "remove": 0, "add": 1, "invalidate": 0, "reduce_price": 0, "reduce_shares": 0,
            "add_price": 0, "add_shares": 0}

    def add(price, shares):
        return {**base, "add_price": price, "add_shares": shares}

    def replace(old_price, old_shares, price, shares):
        return {**base, "kind": EventKind.Replace, "reduce": 1, "remove": 1,
                "reduce_price": old_price, "reduce_shares": old_shares,
                "add_price": price, "add_shares": shares}

    def execute(price, shares, remove=0):
        return {**base, "kind": EventKind.Execute, "add": 0, "reduce": 1, "remove": remove,
                "reduce_price": price, "reduce_shares": shares}

    ops = [add(100, 5), add(100, 7), add(99, 3), add(98, 4), add(97, 1),
           replace(100, 5, 100, 5),         # level of two orders, put back: nothing
           replace(99, 3, 99, 3),           # a one-order level, put back: nothing
           replace(99, 3, 99, 4),           # ... with other shares: an update
           replace(98, 4, 98, 4),           # below the top 2: nothing
           replace(98, 4, 101, 4),          # from below the top to the best: an update
           execute(100, 0),                 # zero shares, the order stays: nothing
           execute(97, 1),                  # below the top: nothing
           execute(101, 4, remove=1),       # the best level goes: an update
           replace(100, 5, 96, 5)]          # from the best to below: an update
    run_book(ops, model, stall_probability=0.3, seed=3, **params)
    assert model.counters["book_updates"] < len(ops)
