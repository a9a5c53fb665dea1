"""cocotb tests for the 64-bit feed front (run through tickpath.sim.common.runner.run_bench).

``replay`` takes its stimulus from the JSON file named by ``FEED_WIDE_STIMULUS``:
``{"payloads": [hex, ...], "runs": [{"idle": int, "packets": int or null,
"valid_probability": float, "ready_probability": float}, ...], "results": path or null}``: the
payloads (the first ``packets`` of them) are sent once per run (``idle`` cycles after each
packet), from reset, and every run is checked; the statistics of each run go to
``results``. ``random_stream`` makes its own seeded faulty stream of
``FEED_WIDE_RANDOM_COUNT`` random messages (default 300) plus packets with blocks of every
small length, with random idle cycles in and backpressure out.
"""

import json
import os
import pathlib
import random

import cocotb

from tickpath.sim.feed_wide.stimulus import edge_payloads, faulty_payloads
from tickpath.sim.feed_wide.tb_feed_wide import FeedWideTB

STIMULUS_ENV = "FEED_WIDE_STIMULUS"
RANDOM_COUNT_ENV = "FEED_WIDE_RANDOM_COUNT"


@cocotb.test(skip=STIMULUS_ENV not in os.environ)
async def replay(dut):
    spec = json.loads(pathlib.Path(os.environ[STIMULUS_ENV]).read_text())
    payloads = [bytes.fromhex(h) for h in spec["payloads"]]
    results = []
    for k, run in enumerate(spec.get("runs", [{}])):
        tb = FeedWideTB(dut, seed=k, ready_probability=run.get("ready_probability", 1.0))
        stats = await tb.run(payloads[:run.get("packets")], idle=run.get("idle", 0),
                             valid_probability=run.get("valid_probability", 1.0))
        tb.log.info("replay run %d: %s", k, {n: v for n, v in stats.items()
                                               if "counters" not in n})
        results.append(stats)
        tb.check(stats)
    if spec.get("results"):
        pathlib.Path(spec["results"]).write_text(json.dumps(results))


@cocotb.test()
@cocotb.parametrize(seed=[1, 2])
async def random_stream(dut, seed):
    count = int(os.environ.get(RANDOM_COUNT_ENV, "300"))
    rng = random.Random(seed)
    payloads = faulty_payloads(rng, count)
    payloads += edge_payloads(rng, max(20, count // 5), first_sequence=count + 1)
    tb = FeedWideTB(dut, seed=seed, ready_probability=0.7)
    stats = await tb.run(payloads, valid_probability=0.8)
    tb.log.info("random_stream seed=%d: %s", seed, stats)
    want = stats["expected_counters"]
    for name in ("ahead", "duplicates", "duplicate_messages", "gaps", "malformed", "heartbeats",
                 "end_of_session", "foreign", "empty_messages"):
        assert want[f"seq_{name}"] > 0, f"no {name} in the stream"
    assert want["dec_malformed"] > 0
    tb.check(stats)
