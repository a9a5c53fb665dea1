"""NetRxWide (Ethernet/IPv4/UDP receive, 8 bytes a cycle: the 10 GbE width; and 4) in cocotb,
against the 8-bit receiver's golden model NetRxModel.

Real data: every *-itch50 capture rewritten into one consistent MoldUDP64 stream (ITCH bytes and
VLAN tags untouched), then the BX sample packed into frames (Icarus: the first
ICARUS_BX_MESSAGES; Verilator: all of it), back to back at one beat a cycle with the output
always ready: input ready asserted every cycle, cycles == beats, every payload, its framing and
its metadata (group, port, exact ingress cycle) compared, counters exact, latency exact. Then the
bench's own cases: every IPv4 header length x VLAN tag x payload length (each realigner shift
and every last-beat lane), a frame cut at every length, runs of tiny frames; and seeded faulty
streams (every fault kind, bad FCS among them: undone, never delivered) with output
backpressure and idle input cycles; and the output stalled until the packet buffer and the
metadata queue are full to the last word and entry (Overflow exact, whole frames dropped).
"""

import json

import pytest

from tickpath.hdl.net_rx_wide import NetRxWide
from tickpath.sim.common.runner import run_bench, toolchain_environment
from tickpath.sim.net_rx.stimulus import FILTERS, bx_frames, capture_frames, capture_messages
from tickpath.sim.net_rx_wide import TEST_MODULE
from tickpath.sim.net_rx_wide.test_net_rx_wide import RANDOM_COUNT_ENV, STIMULUS_ENV

pytestmark = pytest.mark.sim

ICARUS_BX_MESSAGES = 600


def _simulator_available(name):
    import shutil
    with toolchain_environment():
        return shutil.which("iverilog" if name == "icarus" else "verilator") is not None


def _run(simulator, width, shared_data, bx_sample, tmp_path, bx_limit, random_count):
    dirs = sorted(shared_data.glob("pcap/*-itch50"))
    frames = capture_frames(dirs)
    captured = sum(len(messages) for messages, _ in capture_messages(dirs))
    if bx_limit != 0:
        frames += bx_frames(bx_sample, bx_limit, first_sequence=1 + captured)[0]
    results = tmp_path / "results.json"
    stimulus = tmp_path / "stimulus.json"
    stimulus.write_text(json.dumps({
        "frames": [[f.data.hex(), f.fcs_bad] for f in frames], "filters": list(FILTERS),
        "valid_probability": 1.0, "ready_probability": 1.0, "results": str(results)}))
    bench = run_bench(NetRxWide, "net_rx_wide", TEST_MODULE, simulator,
                      parameters={"width": width},
                      env={STIMULUS_ENV: str(stimulus), RANDOM_COUNT_ENV: str(random_count)})
    ran = {o.name for o in bench.outcomes if o.passed and not o.skipped}
    assert ran == {"replay", "alignment", "random_stream/seed=3", "random_stream/seed=5",
                   "overflow"}
    stats = json.loads(results.read_text())
    assert stats["counters"]["accepted"] == stats["accepted"] == len(frames)
    assert stats["not_ready_cycles"] == 0
    assert stats["cycles"] == stats["beats"] == sum(-(-len(f.data) // width) for f in frames)
    return stats


@pytest.mark.skipif(not _simulator_available("icarus"), reason="icarus is not installed")
@pytest.mark.parametrize("width", [8, 4])
def test_icarus(width, shared_data, bx_sample, tmp_path):
    _run("icarus", width, shared_data, bx_sample, tmp_path,
         ICARUS_BX_MESSAGES if width == 8 else 0, 300 if width == 8 else 120)


@pytest.mark.skipif(not _simulator_available("verilator"), reason="verilator is not installed")
def test_verilator(shared_data, bx_sample, tmp_path):
    """Volume: all of the BX sample and 2,000-message faulty streams, 64 bits a cycle."""
    stats = _run("verilator", 8, shared_data, bx_sample, tmp_path, None, 2000)
    assert stats["payload_bytes"] > 300_000
