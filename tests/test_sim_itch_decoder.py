"""ItchDecoder in cocotb on Icarus and Verilator: real captures, random faulty streams.

Icarus runs at about 6k cycles/s here, so it gets the first ICARUS_BX_MESSAGES of the BX
sample; Verilator (about 18k cycles/s) gets all 12,012 and one 70,145-byte message. Both get
every ITCH message of the *-itch50 captures and the bench's own seeded random streams, with
random idle cycles and output backpressure.
"""

import json
import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.hdl.itch_decoder import ItchDecoder
from tickpath.protocol.feed import ByteBeat, EventKind, FeedEvent, expected_event
from tickpath.sim.common.runner import BenchError, run_bench, toolchain_environment
from tickpath.sim.itch_decoder import TEST_MODULE, run_decoder
from tickpath.sim.itch_decoder.stimulus import bx_messages, pcap_messages, random_messages
from tickpath.sim.itch_decoder.test_itch_decoder import RANDOM_COUNT_ENV, STIMULUS_ENV

pytestmark = pytest.mark.sim

ICARUS_BX_MESSAGES = 2000


def _simulator_available(name):
    import shutil
    with toolchain_environment():
        return shutil.which("iverilog" if name == "icarus" else "verilator") is not None


def simulators():
    return [pytest.param(s, marks=pytest.mark.skipif(not _simulator_available(s),
                                                     reason=f"{s} is not installed"))
            for s in ("icarus", "verilator")]


def write_stimulus(path, messages, **options):
    path.write_text(json.dumps({"messages": [m.hex() for m in messages], **options}))
    return path


@pytest.mark.parametrize("simulator", simulators())
def test_real_and_random_streams(simulator, bx_sample, shared_data, tmp_path):
    limit = ICARUS_BX_MESSAGES if simulator == "icarus" else None
    messages = bx_messages(bx_sample, limit)
    messages += pcap_messages(sorted(shared_data.glob("pcap/*-itch50")))
    if simulator == "verilator":     # longer than the 16-bit length field: it must saturate
        messages.append(b"Z" + bytes(range(256)) * 274)
    malformed = sum(expected_event(m)["kind"] is EventKind.Malformed for m in messages)
    results = tmp_path / "results.json"
    stimulus = write_stimulus(tmp_path / "stimulus.json", messages, seed=11,
                              valid_probability=0.95, ready_probability=0.9,
                              check=True, results=str(results))
    bench = run_bench(ItchDecoder, "itch_decoder", TEST_MODULE, simulator,
                      env={STIMULUS_ENV: str(stimulus), RANDOM_COUNT_ENV: "300"})
    ran = {o.name for o in bench.outcomes if o.passed and not o.skipped}
    assert ran == {"replay", "random_stream/seed=1", "random_stream/seed=2"}
    stats = json.loads(results.read_text())["stats"]
    assert stats["counters"] == {"messages": len(messages), "malformed": malformed}
    assert stats["latency_cycles_min"] == 1


def _side_flipped_decoder():
    """An ItchDecoder with a fault on its output, to prove the bench can fail."""
    class SideFlipped(wiring.Component):
        i_stream:  In(stream.Signature(ByteBeat))
        o_stream:  Out(stream.Signature(FeedEvent))
        messages:  Out(32)
        malformed: Out(32)

        def elaborate(self, platform):
            m = Module()
            m.submodules.inner = inner = ItchDecoder()
            wiring.connect(m, wiring.flipped(self.i_stream), inner.i_stream)
            m.d.comb += [
                self.o_stream.valid.eq(inner.o_stream.valid),
                inner.o_stream.ready.eq(self.o_stream.ready),
                self.o_stream.p.eq(inner.o_stream.p),
                self.o_stream.p.side.eq(~inner.o_stream.p.side),
                self.messages.eq(inner.messages),
                self.malformed.eq(inner.malformed),
            ]
            return m
    return SideFlipped()


def test_a_wrong_decode_fails_the_bench(tmp_path):
    messages = random_messages(random.Random(5), 20, malformed_share=0)
    stimulus = write_stimulus(tmp_path / "stimulus.json", messages, check=True)
    with pytest.raises(BenchError, match="side: expected"):
        run_bench(_side_flipped_decoder, "itch_decoder", TEST_MODULE, "icarus",
                  bench="itch_decoder_mutant", testcase="replay",
                  env={STIMULUS_ENV: str(stimulus)})


@pytest.mark.parametrize("simulator", simulators())
def test_run_decoder_matches_the_model(simulator):
    messages = random_messages(random.Random(9), 60)
    out = run_decoder(messages, simulator)
    assert out["events"] == [expected_event(m) for m in messages]
    assert out["stats"]["counters"]["malformed"] == sum(
        e["kind"] is EventKind.Malformed for e in out["events"])
    # back to back at one byte a cycle: the message bytes plus the one-cycle output register
    assert out["stats"]["cycles"] == out["stats"]["bytes"] + 1
