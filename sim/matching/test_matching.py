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


SEEDS = [int(s) for s in os.environ.get("MATCHING_SEEDS", "1").split(",")]


@cocotb.test()
@cocotb.parametrize(seed=SEEDS)
async def random_stream(dut, seed):
    """A seeded random stream with backpressure, book checked, then end of day and after."""
    p = _params()
    count = int(os.environ.get("MATCHING_COUNT", "300"))
    if True:
        orders = random_actions(random.Random(seed), count, symbols=p["symbols"],
                                capacity=p["capacity"], token_bits=p["token_bits"],
                                prices=p["levels"])
        tb = MatchingTB(dut, symbols=p["symbols"], capacity=p["capacity"], levels=p["levels"],
                        seed=seed, valid_probability=0.85, ready_probability=0.75)
        stats = await tb.run(orders)
        tb.scoreboard.result()
        resting = await tb.check_book()
        stats["resting_at_end"] = resting
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
        stats["end_of_day"] = eod
        tb.log.info("random_stream seed=%d: %s", seed, json.dumps(stats))
        _record(f"random_stream/seed={seed}", stats)
        tb.monitor.stop()
