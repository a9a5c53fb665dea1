"""cocotb testbench for NetRx: frames in at line rate, UDP payloads out, NetRxModel scoreboard.

:class:`FrameSource` (filter programming, back-to-back frame bytes, the every-cycle check that
the input is ready) is shared with the feed-chain bench.
"""

import random
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from tickpath.model.netfeed import FilterEntry, NetRxModel, RxReason
from tickpath.protocol.netfeed import (
    RX_COUNTERS,
    FilterWrite,
    FrameBeat,
    UdpBeat,
    filter_write,
    frame_beats,
)
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamDriver, StreamMonitor, make_packer
from tickpath.sim.common.tb import TB

__all__ = ["FrameSource", "NetRxTB", "read_counters"]


def read_counters(dut, names, prefix: str = "") -> dict[str, int]:
    return {n: getattr(dut, prefix + n).value.to_unsigned() for n in names}


class FrameSource:
    """Programs the filter table, then drives frames (``(bytes, fcs_bad)``) back to back and
    checks every cycle that ``i_stream.ready`` is high (the wire cannot wait)."""

    def __init__(self, dut, clk, *, valid_probability: float = 1.0, seed: int = 0):
        self.dut = dut
        self.clk = clk
        self.driver = StreamDriver(dut, "i_stream", FrameBeat, clk,
                                   rng=random.Random(f"frames-{seed}"),
                                   valid_probability=valid_probability)
        dut.filter_write__valid.value = 0     # an X here would poison the filter table
        self.not_ready_cycles = 0
        self._checker = None
        self.last_beat: list[int] = []        # index into driver.sent_at of each frame's end

    async def program(self, filters: list[tuple[int, int]]) -> None:
        pack = make_packer(FilterWrite)
        for i, (group, port) in enumerate(filters):
            self.dut.filter_write__payload.value = pack(filter_write(i, group, port))
            self.dut.filter_write__valid.value = 1
            await RisingEdge(self.clk)
        self.dut.filter_write__valid.value = 0

    async def _check_ready(self) -> None:
        ready = self.dut.i_stream__ready
        while True:
            await ReadOnly()
            if ready.value != 1:
                self.not_ready_cycles += 1
            await RisingEdge(self.clk)

    def start_checker(self) -> None:
        self._checker = cocotb.start_soon(self._check_ready())

    def stop_checker(self) -> None:
        if self._checker is not None:
            self._checker.cancel()

    async def send(self, frames: list[tuple[bytes, bool]]) -> None:
        pack = make_packer(FrameBeat)
        beats: list[int] = []
        for data, fcs_bad in frames:
            beats.extend(pack(b) for b in frame_beats(data, fcs_bad))
            self.last_beat.append(len(beats) - 1)
        await self.driver.send(beats)


class NetRxTB(TB):
    """NetRx with a FrameSource on ``i_stream`` and a monitor (random backpressure when
    ``ready_probability`` < 1) on ``o_stream``; payloads are checked against NetRxModel."""

    def __init__(self, dut, *, seed: int = 0, valid_probability: float = 1.0,
                 ready_probability: float = 1.0):
        super().__init__(dut)
        self.source = FrameSource(dut, self.clk, valid_probability=valid_probability, seed=seed)
        self.scoreboard = Scoreboard("net_rx")
        self.payloads: list[dict[str, Any]] = []
        self.payload_start: list[float] = []
        self.payload_end: list[float] = []
        self._current = bytearray()
        self.monitor = StreamMonitor(dut, "o_stream", UdpBeat, self.clk,
                                     rng=random.Random(f"monitor-{seed}"),
                                     ready_probability=ready_probability,
                                     callback=self._beat)
        self._meta = None

    def _beat(self, beat: dict[str, int]) -> None:
        meta = (beat["group"], beat["port"], beat["ingress"])
        if not self._current:
            self._meta = meta
            self.payload_start.append(self.monitor.received_at[-1])
        elif meta != self._meta:
            self.scoreboard._report(f"metadata changed inside a payload: {self._meta} {meta}")
            self.scoreboard.mismatched += 1
        self._current.append(beat["data"])
        if beat["last"]:
            got = {"payload": bytes(self._current), "group": meta[0], "port": meta[1]}
            self.payloads.append({**got, "ingress": meta[2]})
            self.payload_end.append(self.monitor.received_at[-1])
            self._current = bytearray()
            self.scoreboard.check(got)

    async def run(self, frames: list[tuple[bytes, bool]], filters: list[tuple[int, int]],
                  drain_cycles: int = 4000) -> dict[str, Any]:
        await self.reset()
        await self.source.program(filters)
        model = NetRxModel([FilterEntry.of(g, p) for g, p in filters])
        accepted_frames = []
        for i, (data, fcs_bad) in enumerate(frames):
            r = model.frame(data, fcs_bad)
            if r.reason is RxReason.Accepted:
                accepted_frames.append(i)
                self.scoreboard.expect({"payload": r.payload, "group": r.group, "port": r.port},
                                       f"(frame {i}, {len(data)} bytes)")
        self.monitor.start()
        self.source.start_checker()
        await self.source.send(frames)
        waited = 0
        while len(self.payloads) < len(accepted_frames) and waited < drain_cycles:
            await RisingEdge(self.clk)
            waited += 1
        await ClockCycles(self.clk, 4)
        self.source.stop_checker()
        self.monitor.stop()

        cyc = self.cycle_of
        sent = self.source.driver.sent_at
        last_in = [cyc(sent[self.source.last_beat[i]]) for i in accepted_frames]
        n = min(len(last_in), len(self.payloads))
        latency = [cyc(self.payload_end[k]) - last_in[k] for k in range(n)]
        first_out = [cyc(self.payload_start[k]) - last_in[k] for k in range(n)]
        ingress_offsets = {self.payloads[k]["ingress"] - last_in[k] for k in range(n)}
        return {
            "frames": len(frames),
            "bytes": sum(len(d) for d, _ in frames),
            "accepted": len(accepted_frames),
            "cycles": (cyc(sent[-1]) - cyc(sent[0]) + 1) if sent else 0,
            "not_ready_cycles": self.source.not_ready_cycles,
            "first_byte_latency": sorted(set(first_out)),
            "last_byte_latency_max": max(latency, default=0),
            "ingress_offsets": sorted(ingress_offsets),
            "expected_counters": model.counters,
            "counters": read_counters(self.dut, RX_COUNTERS),
        }
