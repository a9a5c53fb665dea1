"""MatchingEngine gateware in cocotb on Icarus and Verilator against the golden MatchingModel:
seeded random streams with heavy crossing on several symbols, every event compared in order,
the final book read back and compared, then end of day."""

import json
import shutil

import pytest

from tickpath.hdl.matching import MatchingEngine
from tickpath.sim.common.runner import run_bench, toolchain_environment
from tickpath.sim.matching import PARAMETERS, TEST_MODULE

pytestmark = pytest.mark.sim


def _available(name):
    with toolchain_environment():
        return shutil.which("iverilog" if name == "icarus" else "verilator") is not None


def _run(simulator, tmp_path, count, seeds):
    results = tmp_path / "results.json"
    bench = run_bench(MatchingEngine, "matching_engine", TEST_MODULE, simulator,
                      parameters=PARAMETERS,
                      env={"MATCHING_COUNT": str(count),
                           "MATCHING_SEEDS": ",".join(map(str, seeds)),
                           "MATCHING_RESULTS": str(results)})
    assert {o.name for o in bench.outcomes if o.passed} == \
        {f"random_stream/seed={s}" for s in seeds}
    return json.loads(results.read_text())


@pytest.mark.skipif(not _available("icarus"), reason="icarus is not installed")
def test_icarus_random_streams(tmp_path):
    stats = _run("icarus", tmp_path, 500, [1, 2])
    assert all(s["kinds"].get("cross") for s in stats.values())


@pytest.mark.skipif(not _available("verilator"), reason="verilator is not installed")
def test_verilator_random_streams(tmp_path):
    stats = _run("verilator", tmp_path, 5000, [3, 4])
    assert all(s["kinds"].get("cross") for s in stats.values())
