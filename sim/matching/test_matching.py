"""cocotb tests for MatchingEngine (run through tickpath.sim.common.runner.run_bench).

Environment: ``PARAM_SYMBOLS``/``PARAM_CAPACITY``/``PARAM_LEVELS``/``PARAM_TOKEN_BITS`` (the
hardware parameters), ``MATCHING_COUNT`` actions per seed (default 300), ``MATCHING_SEEDS``
(comma-separated, default ``1``), ``MATCHING_RESULTS`` a JSON path for the statistics.
"""

import json
import os
import pathlib
import random

import cocotb

from tickpath.protocol.records import Action, Order, OrderType, Side, TimeInForce
from tickpath.sim.matching.stimulus import random_actions
from tickpath.sim.matching.tb_matching import MatchingTB


def _params():
    return {k: int(os.environ[f"PARAM_{k.upper()}"])
            for k in ("symbols", "capacity", "levels", "token_bits")}


def _record(name, stats):
    path = os.environ.get("MATCHING_RESULTS")
    if not path:
        return
    path = pathlib.Path(path)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[name] = stats
    path.write_text(json.dumps(results, indent=1))


def _merge(a, b):
    out = dict(a)
    for key in ("actions", "events", "cycles"):
        out[key] = a[key] + b[key]
    out["cycles_per_action"] = out["cycles"] / out["actions"]
    out["max_action_cycles"] = max(a["max_action_cycles"], b["max_action_cycles"])
    for key in ("kinds", "coverage"):
        out[key] = {k: a[key].get(k, 0) + b[key].get(k, 0) for k in {*a[key], *b[key]}}
    lat = {}
    for k in {*a["first_event_latency"], *b["first_event_latency"]}:
        x, y = a["first_event_latency"].get(k), b["first_event_latency"].get(k)
        if x is None or y is None:
            lat[k] = x or y
            continue
        na, nb = a["kinds"][k], b["kinds"][k]
        lat[k] = (min(x[0], y[0]), max(x[1], y[1]), (x[2] * na + y[2] * nb) / (na + nb))
    out["first_event_latency"] = lat
    return out


SEEDS = [int(s) for s in os.environ.get("MATCHING_SEEDS", "1").split(",")]


@cocotb.test()
@cocotb.parametrize(seed=SEEDS)
async def random_stream(dut, seed):
    """A seeded random stream with backpressure, book and ITCH checked, then end of day and
    after."""
    p = _params()
    count = int(os.environ.get("MATCHING_COUNT", "300"))
    if True:
        orders = random_actions(random.Random(seed), count, symbols=p["symbols"],
                                capacity=p["capacity"], token_bits=p["token_bits"],
                                prices=p["levels"])
        tb = MatchingTB(dut, symbols=p["symbols"], capacity=p["capacity"], levels=p["levels"],
                        seed=seed, valid_probability=0.85, ready_probability=0.75)
        chunk = int(os.environ.get("MATCHING_CHUNK", "20000"))
        stats = None
        for at in range(0, len(orders), chunk):
            part = await tb.run(orders[at:at + chunk])
            tb.scoreboard.result()
            stats = part if stats is None else _merge(stats, part)
        resting = await tb.check_book()
        stats["resting_at_end"] = resting
        stats["itch"] = tb.check_itch()
        stats["counters"] = tb.counters()
        assert stats["counters"] == tb.expected_counters(stats["events"]), \
            f"counters {stats['counters']}, expected {tb.expected_counters(stats['events'])}"
        after = [Order(action=Action.EndOfDay),
                 Order(Action.Enter, Side.Buy, TimeInForce.Day, OrderType.Limit, 1, 0, 1, 0,
                       100, 1_000_000, 0),
                 Order(Action.Cancel, order_id=2), Order(action=Action.EndOfDay)]
        eod = await tb.run(after)
        assert await tb.check_book() == 0
        tb.scoreboard.result()
        stats["itch_with_end_of_day"] = tb.check_itch()
        stats["end_of_day"] = eod
        tb.log.info("random_stream seed=%d: %s", seed, json.dumps(stats))
        _record(f"random_stream/seed={seed}", stats)
        tb.monitor.stop()
