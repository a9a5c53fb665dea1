"""cocotb testbench for ItchDecoder: byte stream in, feed events out, golden-model scoreboard."""

import random
from typing import Any

from cocotb.triggers import ClockCycles, RisingEdge

from tickpath.protocol.feed import ByteBeat, EventKind, FeedEvent, byte_beats, expected_event
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamDriver, StreamMonitor, make_packer
from tickpath.sim.common.tb import TB

__all__ = ["ItchDecoderTB"]


class ItchDecoderTB(TB):
    """Driver on ``i_stream`` (random idle cycles when ``valid_probability`` < 1), monitor on
    ``o_stream`` (random backpressure when ``ready_probability`` < 1), and a scoreboard fed by
    :func:`expected_event` as each message is queued."""

    def __init__(self, dut, *, seed: int = 0, valid_probability: float = 1.0,
                 ready_probability: float = 1.0, check: bool = True):
        super().__init__(dut)
        self.check = check
        self.scoreboard = Scoreboard("itch_decoder")
        self.driver = StreamDriver(dut, "i_stream", ByteBeat, self.clk,
                                   rng=random.Random(f"drive-{seed}"),
                                   valid_probability=valid_probability)
        self.monitor = StreamMonitor(dut, "o_stream", FeedEvent, self.clk,
                                     rng=random.Random(f"monitor-{seed}"),
                                     ready_probability=ready_probability,
                                     callback=self.scoreboard.check if check else None)

    def counters(self) -> dict[str, int]:
        return {"messages": self.dut.messages.value.to_unsigned(),
                "malformed": self.dut.malformed.value.to_unsigned()}

    async def run(self, messages: list[bytes]) -> dict[str, Any]:
        """Reset, send ``messages``, wait for every event; return cycle statistics and the
        final counters. Scoreboard results are left for the caller (``scoreboard.result()``)."""
        await self.reset()
        self.monitor.start()
        pack = make_packer(ByteBeat)
        beats: list[int] = []
        last_beat: list[int] = []
        malformed = 0
        for i, raw in enumerate(messages):
            if self.check:
                want = expected_event(raw)
                malformed += want["kind"] is EventKind.Malformed
                self.scoreboard.expect(want, f"(message {i}: {raw[:1]!r}, {len(raw)} bytes)")
            beats.extend(pack(b) for b in byte_beats(raw))
            last_beat.append(len(beats) - 1)

        await self.driver.send(beats)
        waited, limit = 0, 1000 + 100 * len(messages)
        while len(self.monitor.received) < len(messages):
            await RisingEdge(self.clk)
            waited += 1
            if waited > limit:
                raise AssertionError(f"only {len(self.monitor.received)} of {len(messages)} "
                                     f"events after {limit} cycles: the decoder stalled")
        await ClockCycles(self.clk, 2)     # any extra event would show up here
        self.monitor.stop()

        cycle_of = self.cycle_of
        sent = self.driver.sent_at
        got = self.monitor.received_at
        first = cycle_of(sent[0]) if sent else 0
        latencies = [cycle_of(got[i]) - cycle_of(sent[last_beat[i]])
                     for i in range(len(messages))]
        cycles = (cycle_of(got[-1]) - first + 1) if got else 0
        return {
            "messages": len(messages),
            "bytes": len(beats),
            "cycles": cycles,
            "cycles_per_message": cycles / len(messages) if messages else 0.0,
            "latency_cycles_min": min(latencies, default=0),
            "latency_cycles_max": max(latencies, default=0),
            "expected_malformed": malformed if self.check else None,
            "counters": self.counters(),
        }
