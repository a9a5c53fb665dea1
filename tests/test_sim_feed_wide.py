"""The 64-bit feed front MoldSequencerWide -> ItchDecoder(data_width=64) in cocotb on Icarus
and Verilator.

Real data: every *-itch50 capture rewritten into one consistent MoldUDP64 stream, then the BX
sample in full-size (1472-byte) MoldUDP64 packets (Icarus: the first ICARUS_BX_MESSAGES;
Verilator: all 12,012, then the synthetic generator's mix up to VERILATOR_MESSAGES), as NetRx
delivers the UDP payloads, 8 bytes a beat, output always ready. Every sequenced message
(sequence, bytes, ingress, framing), FeedEvent, gap event and counter equals the models'.

Line rate, two ways, asserted:

* at the 10 GbE wire rate, each payload followed by the beats its frame spends on the wire
  beyond the payload (``wire_idle_beats``: 8): input ``ready`` never drops;
* back to back (no idle beat at all; the real data only), where the realistic mix needs more
  output beats (a message of L bytes takes ceil(L/8), its 2 length bytes are gone) than input
  beats: the input takes no more cycles than the larger of its beats plus two per packet (the
  header's decision) and its output beats, packet by packet, plus the pipeline's fill; and
  ready never drops for more than MAX_NOT_READY_RUN cycles in a row.

Then the bench's seeded faulty streams with idle cycles and backpressure.
"""

import json

import pytest

from tickpath.hdl.mold_sequencer_wide import FIFO_DEPTH
from tickpath.sim.common.runner import run_bench, toolchain_environment
from tickpath.sim.feed_wide import TEST_MODULE
from tickpath.sim.feed_wide.stimulus import mix_payloads, real_payloads
from tickpath.sim.feed_wide.tb_feed_wide import wire_idle_beats
from tickpath.sim.feed_wide.test_feed_wide import RANDOM_COUNT_ENV, STIMULUS_ENV
from tickpath.sim.feed_wide.top import FeedWide

pytestmark = pytest.mark.sim

ICARUS_BX_MESSAGES = 600
VERILATOR_MESSAGES = 20_000
#: Back to back: the longest run of cycles with the input offered a beat and not ready.
MAX_NOT_READY_RUN = 2
#: Back to back: cycles beyond the sum over packets of max(input beats + 2, output beats).
SLACK_CYCLES = 8


def _simulator_available(name):
    import shutil
    with toolchain_environment():
        return shutil.which("iverilog" if name == "icarus" else "verilator") is not None


def simulators():
    return [pytest.param(s, marks=pytest.mark.skipif(not _simulator_available(s),
                                                     reason=f"{s} is not installed"))
            for s in ("icarus", "verilator")]


@pytest.mark.parametrize("simulator", simulators())
def test_real_data_at_line_rate(simulator, shared_data, bx_sample, tmp_path):
    limit = ICARUS_BX_MESSAGES if simulator == "icarus" else None
    payloads, messages = real_payloads(shared_data, bx_sample, limit)
    real = (len(payloads), messages)
    if simulator == "verilator":
        payloads += mix_payloads(VERILATOR_MESSAGES - messages, seed=7,
                                 first_sequence=messages + 1)
        messages = VERILATOR_MESSAGES
    idle = wire_idle_beats()
    assert idle == 8
    results = tmp_path / "results.json"
    stimulus = tmp_path / "stimulus.json"
    stimulus.write_text(json.dumps({
        "payloads": [p.hex() for p in payloads], "results": str(results),
        "runs": [{"idle": idle}, {"idle": 0, "packets": real[0]}]}))
    bench = run_bench(FeedWide, "feed_wide", TEST_MODULE, simulator,
                      env={STIMULUS_ENV: str(stimulus), RANDOM_COUNT_ENV: "300"})
    ran = {o.name for o in bench.outcomes if o.passed and not o.skipped}
    assert ran == {"replay", "random_stream/seed=1", "random_stream/seed=2"}
    wire, back_to_back = json.loads(results.read_text())
    assert wire["counters"]["seq_messages"] == wire["messages"] == messages
    assert back_to_back["counters"]["seq_messages"] == back_to_back["messages"] == real[1]
    for stats in (wire, back_to_back):
        assert stats["counters"]["seq_gaps"] == stats["counters"]["seq_malformed"] == 0
    # at the wire rate: never a cycle not ready, and the input FIFO never full
    assert wire["not_ready_cycles"] == 0
    assert wire["max_level"] < FIFO_DEPTH
    assert wire["input_cycles"] == wire["beats"] + idle * (wire["packets"] - 1)
    # back to back: per packet, the input (a beat a cycle, and two cycles for the header's
    # decision) or the output (a message beat a cycle) is the limit
    bound = back_to_back["packet_bound_cycles"]
    assert back_to_back["input_cycles"] <= bound + SLACK_CYCLES
    assert back_to_back["longest_not_ready"] <= MAX_NOT_READY_RUN
    print(f"\n{simulator}: wire rate: {messages} messages, {wire['packets']} packets, "
          f"{wire['beats']} input beats, {wire['expected_message_beats']} output beats; "
          f"wire rate: max FIFO {wire['max_level']}, max out queue {wire['max_out_level']}; "
          f"back to back ({real[1]} real messages, {back_to_back['beats']} input beats, "
          f"{back_to_back['expected_message_beats']} output beats): "
          f"{back_to_back['input_cycles']} cycles "
          f"({back_to_back['input_cycles'] / back_to_back['beats']:.3f} per beat), "
          f"(bound {bound}), {back_to_back['not_ready_cycles']} not ready, longest run "
          f"{back_to_back['longest_not_ready']}; test {bench.test_seconds:.0f} s")
