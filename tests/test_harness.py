"""The fast Verilator harness (tickpath.sim.harness) on a small component: ports by name, wide
values, reset, stepping, watches and the C++ streaming loop under backpressure."""

import shutil

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.sim.common.runner import toolchain_environment
from tickpath.sim.harness import build
from tickpath.sim.harness.build import parse_ports

Beat = data.StructLayout({"data": 8, "last": 1})
Out_ = data.StructLayout({"sum": 64, "count": 24, "data": 8, "last": 1})   # 97 bits: wide


class Accumulator(wiring.Component):
    """Running sum of the bytes of each packet, one output beat per input beat, through a small
    FIFO that the output side drains only every other cycle when ``slow`` is set."""
    i_stream: In(stream.Signature(Beat))
    o_stream: Out(stream.Signature(Out_))
    slow:     In(1)
    total:    Out(32)
    packets:  Out(16)

    def elaborate(self, platform):
        m = Module()
        m.submodules.q = q = fifo.SyncFIFOBuffered(width=Out_.size, depth=4)
        acc, count, toggle = Signal(64), Signal(24), Signal()
        i = self.i_stream
        beat = Signal(Out_)
        m.d.comb += [
            beat.sum.eq(acc + i.p.data), beat.count.eq(count + 1),
            beat.data.eq(i.p.data), beat.last.eq(i.p.last),
            q.w_data.eq(beat), q.w_en.eq(i.valid), i.ready.eq(q.w_rdy),
        ]
        with m.If(i.valid & i.ready):
            m.d.sync += [acc.eq(beat.sum), count.eq(beat.count),
                         self.total.eq(self.total + i.p.data)]
            with m.If(i.p.last):
                m.d.sync += [acc.eq(0), count.eq(0), self.packets.eq(self.packets + 1)]
        m.d.sync += toggle.eq(~toggle)
        m.d.comb += [self.o_stream.valid.eq(q.r_rdy & (~self.slow | toggle)),
                     self.o_stream.payload.eq(q.r_data),
                     q.r_en.eq(self.o_stream.ready & self.o_stream.valid)]
        return m


def _have_verilator():
    with toolchain_environment():
        return shutil.which("verilator") is not None


pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(not _have_verilator(), reason="verilator is not installed")]


@pytest.fixture(scope="module")
def accumulator():
    h = build(Accumulator(), "accumulator")
    yield h
    h.close()


def expected(packets):
    out = []
    for pkt in packets:
        acc = 0
        for k, b in enumerate(pkt):
            acc += b
            out.append({"sum": acc, "count": k + 1, "data": b, "last": int(k == len(pkt) - 1)})
    return out


def beats_of(packets):
    return [b | (k == len(p) - 1) << 8 for p in packets for k, b in enumerate(p)]


def test_parse_ports():
    text = "module top(a, b);\n  input [8:0] a;\n  output b;\n  input clk;\nendmodule\n"
    assert parse_ports(text, "top") == [("a", 9, True), ("b", 1, False), ("clk", 1, True)]


@pytest.mark.parametrize("slow", [0, 1])
def test_stream_collects_every_beat(accumulator, slow):
    h = accumulator
    rng = np.random.default_rng(slow)
    packets = [list(rng.integers(0, 256, rng.integers(1, 40))) for _ in range(300)]
    beats = np.array(beats_of(packets), dtype=np.uint16)
    h.reset()
    h.set("slow", slow)
    r = h.stream("i_stream", beats, "o_stream")
    assert not r.timed_out and r.sent == len(beats) == r.taken == r.collected
    got = [Out_.from_bits(v) for v in r.payloads()]
    got = [{k: int(g[k]) for k in ("sum", "count", "data", "last")} for g in got]
    assert got == expected(packets)
    # backpressure throttles the input: one beat every other cycle when slow
    assert r.cycles >= (2 * len(beats) if slow else len(beats))
    assert h.get("total") == sum(sum(p) for p in packets) & 0xFFFFFFFF
    assert h.get("packets") == len(packets)


def test_set_get_step_reset_and_watch(accumulator):
    h = accumulator
    h.reset()
    assert h.get("total") == 0
    h.watch(["packets", "total"])
    h.set("slow", 0)
    h.set("o_stream__ready", 1)
    start = h.cycle
    for b, last in ((5, 0), (7, 1)):
        h.set("i_stream__payload", b | last << 8)
        h.set("i_stream__valid", 1)
        h.eval()
        assert h.get("i_stream__ready") == 1
        h.step()
    h.set("i_stream__valid", 0)
    h.step(3)
    assert h.cycle == start + 5
    assert h.get("total") == 12 and h.get("packets") == 1
    recs = h.records()
    assert [(r.cycle - start, r.port, r.value) for r in recs] == [
        (1, "total", 5), (2, "packets", 1), (2, "total", 12)]
    # wide values both ways as bytes
    with pytest.raises(ValueError):
        h.set("total", 1)                      # an output
    with pytest.raises(ValueError):
        h.set("i_stream__payload", 1 << 9)     # too wide
    assert len(h.get_bytes("o_stream__payload")) == 13
    h.watch([])
    h.reset()
    assert h.get("total") == 0 and h.get("packets") == 0


def test_cached_build_is_reused(accumulator):
    again = build(Accumulator(), "accumulator")
    assert again.library == accumulator.library
    again.close()
