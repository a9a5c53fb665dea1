"""cocotb tests for NetRx (run through tickpath.sim.common.runner.run_bench).

``replay`` takes its stimulus from the JSON file named by ``NET_RX_STIMULUS``:
``{"frames": [[hex, fcs_bad], ...], "filters": [[group, port], ...], "seed": int,
"ready_probability": float, "results": path or null}``. ``random_stream`` makes its own
seeded faulty stream of ``NET_RX_RANDOM_COUNT`` ITCH messages (default 300).
"""

import json
import os
import pathlib
import random

import cocotb

from tickpath.sim.itch_decoder.stimulus import random_messages
from tickpath.sim.net_rx.stimulus import FILTERS, faulty_stream
from tickpath.sim.net_rx.tb_net_rx import NetRxTB

STIMULUS_ENV = "NET_RX_STIMULUS"
RANDOM_COUNT_ENV = "NET_RX_RANDOM_COUNT"


def _check(tb, stats):
    tb.scoreboard.result()
    assert stats["not_ready_cycles"] == 0, f"input not ready in {stats['not_ready_cycles']} cycles"
    assert stats["counters"] == stats["expected_counters"], (
        f"counters {stats['counters']}, expected {stats['expected_counters']}")
    assert len(stats["ingress_offsets"]) <= 1, f"ingress stamps drift: {stats['ingress_offsets']}"


@cocotb.test(skip=STIMULUS_ENV not in os.environ)
async def replay(dut):
    spec = json.loads(pathlib.Path(os.environ[STIMULUS_ENV]).read_text())
    frames = [(bytes.fromhex(h), bool(bad)) for h, bad in spec["frames"]]
    filters = [tuple(f) for f in spec.get("filters", FILTERS)]
    tb = NetRxTB(dut, seed=spec.get("seed", 0),
                 ready_probability=spec.get("ready_probability", 1.0))
    stats = await tb.run(frames, filters)
    tb.log.info("replay: %s", stats)
    if spec.get("results"):
        pathlib.Path(spec["results"]).write_text(json.dumps(stats))
    _check(tb, stats)


@cocotb.test()
@cocotb.parametrize(seed=[1, 2])
async def random_stream(dut, seed):
    rng = random.Random(seed)
    count = int(os.environ.get(RANDOM_COUNT_ENV, "300"))
    frames = [(f.data, f.fcs_bad) for f in
              faulty_stream(rng, random_messages(rng, count, malformed_share=0.1),
                            fault_rate=0.6)]
    tb = NetRxTB(dut, seed=seed, ready_probability=0.7)
    stats = await tb.run(frames, list(FILTERS))
    tb.log.info("random_stream seed=%d: %s", seed, stats)
    for reason in ("bad_fcs", "bad_ip_checksum", "filtered", "malformed", "fragments"):
        assert stats["expected_counters"][reason] > 0, f"no {reason} frame in the stream"
    _check(tb, stats)
