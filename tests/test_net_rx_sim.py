"""NetRx in cocotb: seeded faulty frame streams (garbage, truncated, bad IPv4 checksum, bad
FCS, wrong port/group, fragments, options, padding, VLAN/QinQ, non-IPv4) and the rewritten
real captures, with random output backpressure; input ready asserted every cycle. Icarus in the
default run; Verilator as a long soak (the feed-chain bench covers NetRx on Verilator)."""

import json

import pytest

from tickpath.hdl.net_rx import NetRx
from tickpath.sim.common.runner import run_bench
from tickpath.sim.net_rx import TEST_MODULE
from tickpath.sim.net_rx.stimulus import FILTERS, capture_frames
from tickpath.sim.net_rx.test_net_rx import RANDOM_COUNT_ENV, STIMULUS_ENV

pytestmark = pytest.mark.sim


def _run(simulator, shared_data, tmp_path, count):
    frames = capture_frames(sorted(shared_data.glob("pcap/*-itch50")))
    results = tmp_path / "results.json"
    stimulus = tmp_path / "stimulus.json"
    stimulus.write_text(json.dumps({
        "frames": [[f.data.hex(), f.fcs_bad] for f in frames], "filters": list(FILTERS),
        "ready_probability": 1.0, "results": str(results)}))
    bench = run_bench(NetRx, "net_rx", TEST_MODULE, simulator,
                      env={STIMULUS_ENV: str(stimulus), RANDOM_COUNT_ENV: str(count)})
    ran = {o.name for o in bench.outcomes if o.passed and not o.skipped}
    assert ran == {"replay", "random_stream/seed=1", "random_stream/seed=2"}
    stats = json.loads(results.read_text())
    assert stats["counters"]["accepted"] == len(frames)
    assert stats["not_ready_cycles"] == 0
    # store-and-forward: the first payload byte leaves 3 cycles after the frame's last byte
    # (the buffer read, then the output register)
    assert stats["first_byte_latency"] == [3]


def test_icarus(shared_data, tmp_path):
    _run("icarus", shared_data, tmp_path, 200)


@pytest.mark.long
def test_verilator(shared_data, tmp_path):
    _run("verilator", shared_data, tmp_path, 3000)
