"""cocotb tests for MarketData (run through tickpath.sim.common.runner.run_bench).

Environment: ``PARAM_*`` (the hardware parameters: the engine's, ``mtu``, ``max_messages``,
``flush_cycles``), ``MOLD_OUT_COUNT`` actions per seed (default 600), ``MOLD_OUT_SEEDS``
(comma-separated, default ``1``), ``MOLD_OUT_RESULTS`` a JSON path for the statistics.
"""

import json
import os
import pathlib
import random

import cocotb

from tickpath.protocol.moldudp64 import MAX_MESSAGES
from tickpath.protocol.records import Action, Order
from tickpath.sim.matching.stimulus import random_actions
from tickpath.sim.mold_out.stimulus import non_crossing_actions
from tickpath.sim.mold_out.tb_mold_out import MarketDataTB

SESSION = "TICKPATH"           # MarketData's default session


def _params() -> dict[str, int]:
    out = {k: int(os.environ[f"PARAM_{k.upper()}"])
           for k in ("symbols", "capacity", "levels", "token_bits")}
    out["mtu"] = int(os.environ.get("PARAM_MTU", "1400"))
    out["max_messages"] = int(os.environ.get("PARAM_MAX_MESSAGES", str(MAX_MESSAGES)))
    return out


def _record(name: str, stats: dict) -> None:
    path = os.environ.get("MOLD_OUT_RESULTS")
    if not path:
        return
    path = pathlib.Path(path)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[name] = stats
    path.write_text(json.dumps(results, indent=1))


def _tb(dut, p, seed, valid_probability, ready_probability):
    return MarketDataTB(dut, symbols=p["symbols"], capacity=p["capacity"], session=SESSION,
                        mtu=p["mtu"], max_messages=p["max_messages"], seed=seed,
                        valid_probability=valid_probability,
                        ready_probability=ready_probability)


SEEDS = [int(s) for s in os.environ.get("MOLD_OUT_SEEDS", "1").split(",")]


@cocotb.test()
@cocotb.parametrize(seed=SEEDS)
async def random_stream(dut, seed):
    """Seeded random actions with input gaps and backpressure on events and packets; the
    packets checked and the book rebuilt mid-day (after the idle flush) and after end of
    day, which ends the session."""
    p = _params()
    count = int(os.environ.get("MOLD_OUT_COUNT", "600"))
    orders = random_actions(random.Random(seed), count, symbols=p["symbols"],
                            capacity=p["capacity"], token_bits=p["token_bits"],
                            prices=p["levels"])
    tb = _tb(dut, p, seed, 0.85, 0.75)
    await tb.run(orders)
    tb.scoreboard.result()
    mid_day = tb.check()
    assert len(tb.model) > 0 and not mid_day["end_of_session"]
    await tb.run([Order(action=Action.EndOfDay)])
    await tb.wait_end_of_session()
    tb.scoreboard.result()
    stats = tb.check()
    assert stats["end_of_session"]
    counters = {n: int(str(getattr(dut, n).value), 2)
                for n in ("packets", "messages", "next_sequence", "ended")}
    assert counters == {"packets": stats["packets"], "messages": stats["messages"],
                        "next_sequence": stats["messages"] + 1, "ended": 1}, counters
    stats["mid_day"] = mid_day
    tb.log.info("random_stream seed=%d: %s", seed, json.dumps(stats))
    _record(f"random_stream/seed={seed}", stats)
    tb.monitor.stop()
    tb.mold_monitor.stop()


@cocotb.test()
async def non_crossing(dut):
    """Resting enters and cancels back to back, everything ready: sustained cycles per action
    through the engine and the framer, and the packets checked."""
    p = _params()
    count = int(os.environ.get("MOLD_OUT_COUNT", "600"))
    orders = non_crossing_actions(random.Random(2), count, symbols=p["symbols"],
                                  capacity=p["capacity"], levels=p["levels"],
                                  token_bits=p["token_bits"])
    tb = _tb(dut, p, 2, 1.0, 1.0)
    await tb.run(orders)
    tb.scoreboard.result()
    stats = tb.check()
    sent = tb.driver.sent_at
    last_event = tb.monitor.received_at[-1]
    cycles = tb.cycle_of(last_event) - tb.cycle_of(sent[0]) + 1
    stats["actions"] = len(orders)
    stats["cycles"] = cycles
    stats["cycles_per_action"] = cycles / len(orders)
    tb.log.info("non_crossing: %s", json.dumps(stats))
    _record("non_crossing", stats)
    tb.monitor.stop()
    tb.mold_monitor.stop()
