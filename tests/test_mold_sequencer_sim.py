"""MoldSequencer in cocotb: seeded payload streams with gaps, duplicates, reordering,
heartbeats, malformed blocks, foreign sessions and the end of session, random idle cycles in
and backpressure out; messages, gap events and counters exactly the model's. Icarus in the
default run; Verilator as a long soak (the feed-chain bench covers it on Verilator)."""

import pytest

from tickpath.hdl.mold_sequencer import MoldSequencer
from tickpath.sim.common.runner import run_bench
from tickpath.sim.mold_sequencer import TEST_MODULE
from tickpath.sim.mold_sequencer.test_mold_sequencer import RANDOM_COUNT_ENV

pytestmark = pytest.mark.sim


def _run(simulator, count):
    bench = run_bench(MoldSequencer, "mold_sequencer", TEST_MODULE, simulator,
                      env={RANDOM_COUNT_ENV: str(count)})
    assert {o.name for o in bench.outcomes if o.passed} == {"random_stream/seed=1",
                                                            "random_stream/seed=2"}


def test_icarus():
    _run("icarus", 300)


@pytest.mark.long
def test_verilator():
    _run("verilator", 5000)
