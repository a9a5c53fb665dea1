"""cocotb tests for MoldSequencer (run through tickpath.sim.common.runner.run_bench).

``random_stream`` feeds the UDP payloads that NetRxModel accepts from a seeded faulty frame
stream (gaps, duplicates, reordering, heartbeats, malformed blocks, end of session) of
``MOLD_SEQUENCER_RANDOM_COUNT`` ITCH messages (default 400), plus payloads too short for a
header, with random idle cycles in and random backpressure out.
"""

import os
import random

import cocotb

from tickpath.model.netfeed import FilterEntry, NetRxModel, RxReason
from tickpath.sim.itch_decoder.stimulus import random_messages
from tickpath.sim.mold_sequencer.tb_mold_sequencer import MoldSequencerTB
from tickpath.sim.net_rx.stimulus import FILTERS, faulty_stream

RANDOM_COUNT_ENV = "MOLD_SEQUENCER_RANDOM_COUNT"


def payloads(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    frames = faulty_stream(rng, random_messages(rng, count, malformed_share=0.1), fault_rate=0.7)
    rx = NetRxModel([FilterEntry.of(g, p) for g, p in FILTERS])
    out = [r.payload for f in frames
           if (r := rx.frame(f.data, f.fcs_bad)).reason is RxReason.Accepted]
    out[len(out) // 2:len(out) // 2] = [b"short", b"OTHERSESSN" + bytes(10)]
    return out


@cocotb.test()
@cocotb.parametrize(seed=[1, 2])
async def random_stream(dut, seed):
    count = int(os.environ.get(RANDOM_COUNT_ENV, "400"))
    tb = MoldSequencerTB(dut, seed=seed, valid_probability=0.8, ready_probability=0.7)
    stats = await tb.run(payloads(seed, count))
    tb.log.info("random_stream seed=%d: %s", seed, stats)
    want = stats["expected_counters"]
    for name in ("ahead", "duplicates", "gaps", "malformed", "heartbeats", "end_of_session",
                 "foreign"):
        assert want[name] > 0, f"no {name} in the stream"
    tb.scoreboard.result()
    tb.event_board.result()
    assert stats["counters"] == want, f"counters {stats['counters']}, expected {want}"
