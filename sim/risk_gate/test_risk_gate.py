"""cocotb tests for GatedEngine (run through tickpath.sim.common.runner.run_bench).

Environment: ``PARAM_*`` (the hardware parameters), ``GATE_COUNT`` actions per seed (default
500), ``GATE_SEEDS`` (comma-separated, default ``1``), ``GATE_RESULTS`` a JSON path for the
statistics.
"""

import json
import os
import pathlib
import random

import cocotb
from cocotb.triggers import RisingEdge, Timer

from tickpath.model.risk_gate import GATE_REASONS, GateLimits, PairLimits
from tickpath.protocol.records import Action, Order, OrderType, Side, TimeInForce
from tickpath.sim.matching.stimulus import new_model, random_actions
from tickpath.sim.risk_gate.tb_risk_gate import GatedTB

MIDS = [1_000_000 + 250_000 * s for s in range(16)]       # the stimulus' mids


def _params():
    return {k: int(os.environ[f"PARAM_{k.upper()}"])
            for k in ("firms", "symbols", "capacity", "levels", "token_bits")}


def _record(name, stats):
    path = os.environ.get("GATE_RESULTS")
    if not path:
        return
    path = pathlib.Path(path)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[name] = stats
    path.write_text(json.dumps(results, indent=1))


def random_limits(rng: random.Random, firms: int, symbols: int) -> GateLimits:
    """Limits that the stimulus runs into: every check bites now and then."""
    limits = GateLimits(firms=firms, symbols=symbols)
    for f in range(firms):
        for s in range(symbols):
            limits.pairs[(f, s)] = PairLimits(
                max_shares=rng.choice((None, 700, 950)),
                max_notional=rng.choice((None, 400 * MIDS[s], 800 * MIDS[s])),
                collar_bp=rng.choice((None, 2, 3, 6)),
                max_position=rng.choice((None, 600, 2_000)))
    limits.rates = {1: (150, 6), min(3, firms - 1): (40, 4)}
    limits.no_reference_reject = True           # at first: the bench turns it off later
    return limits


SEEDS = [int(s) for s in os.environ.get("GATE_SEEDS", "1").split(",")]


@cocotb.test()
@cocotb.parametrize(seed=SEEDS)
async def random_stream(dut, seed):
    """A seeded random stream with limits set, then kill switches, halts, references and the
    dead-man switch at quiet points between segments; every event in order, counters exact."""
    p = _params()
    count = int(os.environ.get("GATE_COUNT", "500"))
    rng = random.Random(seed)
    orders = random_actions(rng, count, symbols=p["symbols"], capacity=p["capacity"],
                            token_bits=p["token_bits"], prices=p["levels"], firms=3)
    limits = random_limits(rng, p["firms"], p["symbols"])
    tb = GatedTB(dut, firms=p["firms"], symbols=p["symbols"], capacity=p["capacity"],
                 token_bits=p["token_bits"], limits=limits, seed=seed,
                 valid_probability=0.85, ready_probability=0.75)
    await tb.start()
    cuts = [int(count * x) for x in (0.25, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 1.0)]
    segments = [orders[a:b] for a, b in zip([0] + cuts[:-1], cuts, strict=True)]

    async def heartbeats():
        while True:
            await Timer(1_000 * tb.period_ns, unit="ns")
            await tb.write("heartbeat", 1)

    await tb.send(segments[0])                                  # limits only
    await tb.set_no_reference_reject(False)
    await tb.set_reference(0, MIDS[0] - 200, MIDS[0] + 200)
    await tb.set_reference(1, MIDS[1] - 300, 0)
    await tb.send(segments[1])                                  # + references
    await tb.set_kill(1 << 2)                                   # firm 2: its orders go
    await tb.send(segments[2])
    await tb.set_kill(0)
    await tb.set_halted({p["symbols"] - 1})
    await tb.send(segments[3])
    await tb.set_halted(set())
    await tb.send(segments[4])
    await tb.deadman(200)                                       # everything goes
    await tb.send(segments[5])
    await tb.rearm()
    await tb.set_kill(1 << p["firms"] | 1 << 1)                 # global and firm 1
    await tb.send(segments[6])
    await tb.set_kill(0)
    # armed, heartbeats keep it (the heartbeat first: the cycles since the last one may be
    # past the timeout already, and it would trip at once)
    await tb.write("heartbeat", 1)
    await tb.write("deadman_cycles", 3_000)
    beat = cocotb.start_soon(heartbeats())
    await tb.send(segments[7])
    beat.cancel()
    await tb.quiet()
    await tb.write("deadman_cycles", 0)
    assert tb.dut.deadman_tripped.value == 0
    await tb.send([Order(action=Action.EndOfDay)])
    tb.scoreboard.result()
    await tb.itch_drained()
    itch_counts = tb.check_itch()
    assert itch_counts.get("D", 0) >= tb.mass_events

    counters = tb.counters()
    assert counters == tb.expected_counters(), \
        f"counters {counters}, expected {tb.expected_counters()}"
    via_bus = {chr(r): await tb.read(f"rejects_{chr(r)}") for r in GATE_REASONS}
    assert via_bus == counters, f"counters over the bus {via_bus}, ports {counters}"
    stats = {"actions": len(orders) + 1, "events": tb.expected, "gate_rejects": counters,
             "mass_cancel_events": tb.mass_events, "itch": itch_counts,
             "coverage": dict(sorted(tb.coverage.items())),
             "engine_rejects": {chr(k): v for k, v in tb.model.engine.rejects.items()}}
    tb.log.info("random_stream seed=%d: %s", seed, json.dumps(stats))
    _record(f"random_stream/seed={seed}", stats)
    tb.monitor.stop()


@cocotb.test()
async def off_by_default(dut):
    """No limits written: the gated path's events are the plain matching model's."""
    p = _params()
    orders = random_actions(random.Random(99), 300, symbols=p["symbols"],
                            capacity=p["capacity"], token_bits=p["token_bits"],
                            prices=p["levels"], firms=3)
    tb = GatedTB(dut, firms=p["firms"], symbols=p["symbols"], capacity=p["capacity"],
                 token_bits=p["token_bits"], seed=99, valid_probability=0.9,
                 ready_probability=0.8)
    await tb.start()
    await tb.send(orders)
    tb.scoreboard.result()
    plain = new_model(p["symbols"], p["capacity"]).process_all(orders)
    assert [e for _, events in tb.actions for e in events] == plain
    assert tb.counters() == {chr(r): 0 for r in GATE_REASONS}
    await tb.itch_drained()
    tb.check_itch()
    tb.monitor.stop()


@cocotb.test()
async def latency(dut):
    """Cycles from an order's handshake on the gated path to its first event out, one action
    at a time with the output always ready: resting accept, crossing accept, gate reject,
    engine reject, priority-keeping replace, cancel."""
    p = _params()
    limits = GateLimits(firms=p["firms"], symbols=p["symbols"],
                        pairs={(1, 0): PairLimits(max_shares=1_000)})
    tb = GatedTB(dut, firms=p["firms"], symbols=p["symbols"], capacity=p["capacity"],
                 token_bits=p["token_bits"], limits=limits)
    await tb.start()
    mid = MIDS[0]

    def enter(token, side, shares, price, firm=1):
        return Order(Action.Enter, side, TimeInForce.Day, OrderType.Limit, token, 0, firm, 0,
                     shares, price, 0)

    actions = [enter(1, Side.Buy, 100, mid), enter(2, Side.Sell, 100, mid + 100),
               enter(3, Side.Buy, 50, mid + 100, firm=2),            # crosses 2
               enter(4, Side.Buy, 5_000, mid),                       # gate: max shares
               enter(5, Side.Buy, 100, mid + 50),                    # engine: bad price
               Order(Action.Replace, order_id=1, new_order_id=6, shares=50, price=mid),
               Order(Action.Cancel, order_id=6), Order(Action.Cancel, order_id=2)]
    for _ in range(3):
        for order in actions:
            await tb.send([order])
            for _ in range(5):
                await RisingEdge(tb.clk)
        actions = [o._replace(order_id=o.order_id + 10,
                              new_order_id=o.new_order_id and o.new_order_id + 10)
                   for o in actions]
    tb.scoreboard.result()
    lat = {"from_handshake": tb.latencies(), "from_offer": tb.latencies(offered=True)}
    tb.log.info("latency: %s", json.dumps(lat))
    _record("latency", lat)
    tb.monitor.stop()
