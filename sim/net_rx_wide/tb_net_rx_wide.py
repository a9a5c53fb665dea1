"""cocotb testbench for NetRxWide: frames in as wide beats at line rate, UDP payloads out as wide
beats, checked against NetRxModel (the 8-bit receiver's golden model: the payloads, metadata and
counters do not depend on the beat width).

Every accepted payload is compared (bytes, ``first``/``last``/``nbytes`` framing, ``group``,
``port``, and ``ingress`` against the DUT's ``cycle`` when the frame's last beat was taken),
every counter is compared, and ``i_stream.ready`` is checked every cycle.
"""

import random
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from tickpath.model.netfeed import FilterEntry, NetRxModel, RxReason
from tickpath.protocol.feed import join_wide_beats, wide_beats
from tickpath.protocol.netfeed import (
    RX_COUNTERS,
    TIMESTAMP_WIDTH,
    FilterWrite,
    filter_write,
    wide_frame_beat,
    wide_udp_beat,
)
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamDriver, StreamMonitor, make_packer
from tickpath.sim.common.tb import TB

__all__ = ["WideFrameSource", "NetRxWideTB", "frame_wide_beats", "read_counters"]


def read_counters(dut, names=RX_COUNTERS) -> dict[str, int]:
    return {n: getattr(dut, n).value.to_unsigned() for n in names}


def frame_wide_beats(frame: bytes, fcs_bad: bool, width: int) -> list[dict[str, int]]:
    """The :func:`~tickpath.protocol.netfeed.wide_frame_beat` beats of one frame."""
    beats = wide_beats(frame, width)
    beats[-1]["fcs_bad"] = int(fcs_bad)
    return beats


class WideFrameSource:
    """Programs the filter table, then drives frames (``(bytes, fcs_bad)``) as wide beats back
    to back (``valid_probability`` < 1: random idle cycles between beats) and checks every cycle
    that ``i_stream.ready`` is high (the wire cannot wait)."""

    def __init__(self, dut, clk, width: int, *, valid_probability: float = 1.0, seed: int = 0):
        self.dut = dut
        self.clk = clk
        self.width = width
        self.layout = wide_frame_beat(width)
        self.driver = StreamDriver(dut, "i_stream", self.layout, clk,
                                   rng=random.Random(f"frames-{seed}"),
                                   valid_probability=valid_probability)
        dut.filter_write__valid.value = 0     # an X here would poison the filter table
        self.not_ready_cycles = 0
        self._checker = None
        self.last_beat: list[int] = []        # index into driver.sent_at of each frame's end

    async def program(self, filters: list[tuple[Any, int]]) -> None:
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
        pack = make_packer(self.layout)
        beats: list[int] = []
        base = len(self.driver.sent_at)
        for data, fcs_bad in frames:
            beats.extend(pack(b) for b in frame_wide_beats(data, fcs_bad, self.width))
            self.last_beat.append(base + len(beats) - 1)
        await self.driver.send(beats)


class NetRxWideTB(TB):
    """NetRxWide with a WideFrameSource on ``i_stream`` and a monitor (random backpressure
    when ``ready_probability`` < 1) on ``o_stream``."""

    def __init__(self, dut, width: int, *, seed: int = 0, valid_probability: float = 1.0,
                 ready_probability: float = 1.0):
        super().__init__(dut)
        self.width = width
        self.source = WideFrameSource(dut, self.clk, width, valid_probability=valid_probability,
                                      seed=seed)
        self.scoreboard = Scoreboard("net_rx_wide")
        self.payloads: list[dict[str, Any]] = []
        self.payload_start: list[float] = []
        self.payload_end: list[float] = []
        self._beats: list[dict[str, int]] = []
        self._start = 0.0
        self.monitor = StreamMonitor(dut, "o_stream", wide_udp_beat(width), self.clk,
                                     rng=random.Random(f"monitor-{seed}"),
                                     ready_probability=ready_probability,
                                     callback=self._beat)

    def _beat(self, beat: dict[str, int]) -> None:
        if not self._beats:
            self._start = self.monitor.received_at[-1]
        self._beats.append(beat)
        if not beat["last"]:
            return
        beats, self._beats = self._beats, []
        meta = {(b["group"], b["port"], b["ingress"]) for b in beats}
        try:
            (payload,) = join_wide_beats(beats, self.width)
        except ValueError as e:
            payload = b""
            self.scoreboard._report(f"payload {len(self.payloads)}: bad framing: {e}")
            self.scoreboard.mismatched += 1
        if len(meta) != 1:
            self.scoreboard._report(f"payload {len(self.payloads)}: metadata changed: {meta}")
            self.scoreboard.mismatched += 1
        group, port, ingress = beats[0]["group"], beats[0]["port"], beats[0]["ingress"]
        self.payloads.append({"payload": payload, "group": group, "port": port,
                              "ingress": ingress})
        self.payload_start.append(self._start)
        self.payload_end.append(self.monitor.received_at[-1])
        self.scoreboard.check({"payload": payload, "group": group, "port": port})

    async def run(self, frames: list[tuple[bytes, bool]], filters: list[tuple[Any, int]],
                  drain_cycles: int = 20000, *, stalled: int = 0,
                  capacity: tuple[int, int, int] = (0, 0, 0)) -> dict[str, Any]:
        """Send ``frames`` and check the payloads. With ``stalled`` > 0 the output is held not
        ready while the first ``stalled`` frames go in, then released and drained before the
        rest: ``capacity`` (buffer words, metadata entries, words the read side takes ahead
        once a payload is committed) says which of them overflow."""
        await self.reset()
        await ReadOnly()
        # The DUT's `cycle` against the bench's cycle numbering (both count clock edges).
        cycle_offset = self.dut.cycle.value.to_unsigned() - self.cycle()
        await RisingEdge(self.clk)
        await self.source.program(filters)
        model = NetRxModel([FilterEntry.of(g, p) for g, p in filters])
        accepted = []
        used = entries = 0
        for i, (data, fcs_bad) in enumerate(frames):
            r = model.frame(data, fcs_bad)
            if r.reason is RxReason.Accepted and i < stalled:
                # Nothing is read but the words the read side prefetches after the first
                # commit: a payload fits if its words and a metadata entry are free.
                need = -(-len(r.payload) // self.width)
                room = capacity[0] + (capacity[2] if entries else 0) - used
                if entries == capacity[1] or need > room:
                    model.counters["accepted"] -= 1
                    model.counters["overflow"] += 1
                    continue
                used += need
                entries += 1
            if r.reason is RxReason.Accepted:
                accepted.append(i)
                self.scoreboard.expect({"payload": r.payload, "group": r.group, "port": r.port},
                                       f"(frame {i}, {len(data)} bytes)")
        self.source.start_checker()
        if stalled:
            self.monitor.ready_probability = 0.0
            self.monitor.start()
            await self.source.send(frames[:stalled])
            await ClockCycles(self.clk, 32)
            self.monitor.stop()
            self.monitor.ready_probability = 1.0
            self.monitor.start()
            while len(self.payloads) < entries:
                await RisingEdge(self.clk)
            await self.source.send(frames[stalled:])
        else:
            self.monitor.start()
            await self.source.send(frames)
        waited = 0
        while len(self.payloads) < len(accepted) and waited < drain_cycles:
            await RisingEdge(self.clk)
            waited += 1
        await ClockCycles(self.clk, 16)
        self.source.stop_checker()
        self.monitor.stop()

        cyc = self.cycle_of
        sent = self.source.driver.sent_at
        last_in = [cyc(sent[self.source.last_beat[i]]) for i in accepted]
        n = min(len(last_in), len(self.payloads))
        mask = (1 << TIMESTAMP_WIDTH) - 1
        wrong_ingress = [k for k in range(n)
                         if self.payloads[k]["ingress"] != (last_in[k] + cycle_offset) & mask]
        first_out = [cyc(self.payload_start[k]) - last_in[k] for k in range(n)]
        # with the output always ready, payload k starts `latency` cycles after its frame's
        # end, or right after payload k-1 when that is still being read out
        late = [k for k in range(n)
                if cyc(self.payload_start[k])
                != max(last_in[k] + min(first_out, default=0),
                       cyc(self.payload_end[k - 1]) + 1 if k else 0)]
        return {
            "frames": len(frames),
            "bytes": sum(len(d) for d, _ in frames),
            "beats": len(sent),
            "accepted": len(accepted),
            "payload_bytes": sum(len(p["payload"]) for p in self.payloads),
            "cycles": (cyc(sent[-1]) - cyc(sent[0]) + 1) if sent else 0,
            "not_ready_cycles": self.source.not_ready_cycles,
            "first_beat_latency": sorted(set(first_out)),
            "wrong_ingress": wrong_ingress[:10],
            "late_payloads": late[:10],
            "expected_counters": model.counters,
            "counters": read_counters(self.dut),
        }
