"""cocotb testbench for MoldSequencer: UDP payloads in (random idle cycles), messages out (random
backpressure) and gap events, scoreboarded against MoldSequencerModel."""

import random
from typing import Any

from cocotb.triggers import ClockCycles, RisingEdge

from tickpath.model.netfeed import MoldSequencerModel
from tickpath.protocol.netfeed import SEQ_COUNTERS, MessageBeat, SeqEvent, UdpBeat, udp_beats
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamDriver, StreamMonitor, make_packer
from tickpath.sim.common.tb import TB
from tickpath.sim.net_rx.tb_net_rx import read_counters

__all__ = ["MoldSequencerTB"]


class MoldSequencerTB(TB):
    def __init__(self, dut, *, seed: int = 0, valid_probability: float = 1.0,
                 ready_probability: float = 1.0):
        super().__init__(dut)
        dut.session_check.value = 0
        dut.session_config.value = 0
        self.driver = StreamDriver(dut, "i_stream", UdpBeat, self.clk,
                                   rng=random.Random(f"drive-{seed}"),
                                   valid_probability=valid_probability)
        self.scoreboard = Scoreboard("mold_sequencer messages")
        self.event_board = Scoreboard("mold_sequencer events")
        self.received = 0
        self._current = bytearray()
        self.monitor = StreamMonitor(dut, "o_stream", MessageBeat, self.clk,
                                     rng=random.Random(f"monitor-{seed}"),
                                     ready_probability=ready_probability, callback=self._beat)
        self.events = StreamMonitor(dut, "o_event", SeqEvent, self.clk,
                                    callback=self.event_board.check)

    def _beat(self, beat: dict[str, int]) -> None:
        self._current.append(beat["data"])
        if beat["last"]:
            self.scoreboard.check({"sequence": beat["sequence"], "data": bytes(self._current),
                                   "ingress": beat["ingress"]})
            self._current = bytearray()
            self.received += 1

    async def run(self, payloads: list[bytes]) -> dict[str, Any]:
        await self.reset()
        model = MoldSequencerModel()
        pack = make_packer(UdpBeat)
        beats: list[int] = []
        expected = 0
        for i, p in enumerate(payloads):
            out, events = model.packet(p)
            for msg in out:
                self.scoreboard.expect({"sequence": msg.sequence, "data": msg.data,
                                        "ingress": i}, f"(packet {i})")
            for e in events:
                self.event_board.expect(e, f"(packet {i})")
            expected += len(out)
            beats.extend(pack(b) for b in udp_beats(p, group=i & 15, port=30001, ingress=i))
        self.monitor.start()
        self.events.start()
        await self.driver.send(beats)
        waited = 0
        while self.received < expected and waited < 2000:
            await RisingEdge(self.clk)
            waited += 1
        await ClockCycles(self.clk, 10)
        self.monitor.stop()
        self.events.stop()
        return {
            "packets": len(payloads),
            "messages": expected,
            "expected_counters": model.counters,
            "counters": read_counters(self.dut, SEQ_COUNTERS),
        }
