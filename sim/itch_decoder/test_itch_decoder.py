"""cocotb tests for ItchDecoder (run through tickpath.sim.common.runner.run_bench).

``replay`` takes its stimulus from the JSON file named by ``ITCH_DECODER_STIMULUS``:
``{"messages": [hex, ...], "seed": int, "valid_probability": float,
"ready_probability": float, "check": bool, "results": path or null}``; it writes the decoded
events and cycle statistics to ``results`` when given. ``random_stream`` generates its own
seeded faulty stream of ``ITCH_DECODER_RANDOM_COUNT`` messages (default 300).
"""

import json
import os
import pathlib
import random

import cocotb

from tickpath.sim.itch_decoder.stimulus import random_messages
from tickpath.sim.itch_decoder.tb_itch_decoder import ItchDecoderTB

STIMULUS_ENV = "ITCH_DECODER_STIMULUS"
RANDOM_COUNT_ENV = "ITCH_DECODER_RANDOM_COUNT"


def _check_counters(stats):
    want = {"messages": stats["messages"] % (1 << 32),
            "malformed": stats["expected_malformed"] % (1 << 32)}
    assert stats["counters"] == want, f"counters {stats['counters']}, expected {want}"


def _jsonable(event):
    return {k: (v.name if k == "kind" else v) for k, v in event.items()}


@cocotb.test(skip=STIMULUS_ENV not in os.environ)
async def replay(dut):
    spec = json.loads(pathlib.Path(os.environ[STIMULUS_ENV]).read_text())
    messages = [bytes.fromhex(h) for h in spec["messages"]]
    tb = ItchDecoderTB(dut, seed=spec.get("seed", 0),
                       valid_probability=spec.get("valid_probability", 1.0),
                       ready_probability=spec.get("ready_probability", 1.0),
                       check=spec.get("check", True))
    stats = await tb.run(messages)
    tb.log.info("replay: %s", stats)
    if spec.get("results"):
        pathlib.Path(spec["results"]).write_text(json.dumps({
            "events": [_jsonable(e) for e in tb.monitor.received],
            "stats": stats,
        }))
    if tb.check:
        tb.scoreboard.result()
        _check_counters(stats)


@cocotb.test()
@cocotb.parametrize(seed=[1, 2])
async def random_stream(dut, seed):
    count = int(os.environ.get(RANDOM_COUNT_ENV, "300"))
    messages = random_messages(random.Random(seed), count)
    tb = ItchDecoderTB(dut, seed=seed, valid_probability=0.7, ready_probability=0.6)
    stats = await tb.run(messages)
    tb.log.info("random_stream seed=%d: %s", seed, stats)
    assert stats["expected_malformed"] > 0
    tb.scoreboard.result()
    _check_counters(stats)
