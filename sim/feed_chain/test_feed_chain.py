"""cocotb tests for the feed chain (run through tickpath.sim.common.runner.run_bench).

``replay`` takes its stimulus from the JSON file named by ``FEED_CHAIN_STIMULUS``:
``{"frames": [[hex, fcs_bad], ...], "filters": [[group, port], ...], "seed": int,
"ready_probability": float, "results": path or null}``. ``random_stream`` makes its own seeded
faulty stream of ``FEED_CHAIN_RANDOM_COUNT`` generated ITCH messages (default 300).
"""

import json
import os
import pathlib
import random

import cocotb

from tickpath.generator import GeneratorConfig, iter_messages
from tickpath.sim.feed_chain.tb_feed_chain import FeedChainTB
from tickpath.sim.net_rx.stimulus import FILTERS, faulty_stream

STIMULUS_ENV = "FEED_CHAIN_STIMULUS"
RANDOM_COUNT_ENV = "FEED_CHAIN_RANDOM_COUNT"


def _check(tb, stats):
    tb.scoreboard.result()
    tb.event_board.result()
    assert stats["not_ready_cycles"] == 0, f"input not ready in {stats['not_ready_cycles']} cycles"
    assert stats["counters"] == stats["expected_counters"], (
        f"counters {stats['counters']}, expected {stats['expected_counters']}")


@cocotb.test(skip=STIMULUS_ENV not in os.environ)
async def replay(dut):
    spec = json.loads(pathlib.Path(os.environ[STIMULUS_ENV]).read_text())
    frames = [(bytes.fromhex(h), bool(bad)) for h, bad in spec["frames"]]
    filters = [tuple(f) for f in spec.get("filters", FILTERS)]
    tb = FeedChainTB(dut, seed=spec.get("seed", 0),
                     ready_probability=spec.get("ready_probability", 1.0))
    stats = await tb.run(frames, filters)
    tb.log.info("replay: %s", stats)
    if spec.get("results"):
        pathlib.Path(spec["results"]).write_text(json.dumps(stats))
    _check(tb, stats)


@cocotb.test()
@cocotb.parametrize(seed=[1, 2])
async def random_stream(dut, seed):
    count = int(os.environ.get(RANDOM_COUNT_ENV, "300"))
    messages = list(iter_messages(GeneratorConfig(messages=count, symbols=4, seed=seed)))
    frames = [(f.data, f.fcs_bad)
              for f in faulty_stream(random.Random(seed), messages, fault_rate=0.4)]
    tb = FeedChainTB(dut, seed=seed, ready_probability=0.8)
    stats = await tb.run(frames, list(FILTERS))
    tb.log.info("random_stream seed=%d: %s", seed, stats)
    want = stats["expected_counters"]
    for name in ("rx_bad_fcs", "rx_filtered", "rx_malformed", "seq_ahead", "seq_duplicates",
                 "seq_gaps", "seq_malformed"):
        assert want[name] > 0, f"no {name} in the stream"
    _check(tb, stats)
