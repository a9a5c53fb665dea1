"""cocotb testbench for the feed chain (NetRx -> MoldSequencer -> ItchDecoder): frames in at line
rate, feed events and gap events out, scoreboarded against NetRxModel -> MoldSequencerModel ->
feed.expected_event."""

import random
from typing import Any

from cocotb.triggers import ClockCycles, RisingEdge

from tickpath.model.netfeed import FilterEntry, MoldSequencerModel, NetRxModel, RxReason
from tickpath.protocol.feed import EventKind, FeedEvent, expected_event
from tickpath.protocol.netfeed import RX_COUNTERS, SEQ_COUNTERS, SeqEvent
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamMonitor
from tickpath.sim.common.tb import TB
from tickpath.sim.net_rx.tb_net_rx import FrameSource, read_counters

__all__ = ["FeedChainTB", "expected_chain"]


def expected_chain(frames, filters, session=None):
    """Model outputs: per frame, the messages (sequence, bytes) it delivers; the events; and
    the counters of all three blocks."""
    rx = NetRxModel([FilterEntry.of(g, p) for g, p in filters])
    seq = MoldSequencerModel(session)
    per_frame, events = [], []
    for data, fcs_bad in frames:
        r = rx.frame(data, fcs_bad)
        delivered = []
        if r.reason is RxReason.Accepted:
            out, ev = seq.packet(r.payload)
            delivered = [(m.sequence, m.data) for m in out]
            events.extend(ev)
        per_frame.append(delivered)
    messages = [m for d in per_frame for _, m in d]
    malformed = sum(expected_event(m)["kind"] is EventKind.Malformed for m in messages)
    counters = {f"rx_{k}": v for k, v in rx.counters.items()}
    counters.update({f"seq_{k}": v for k, v in seq.counters.items()})
    counters.update(dec_messages=len(messages), dec_malformed=malformed)
    return per_frame, events, counters


class FeedChainTB(TB):
    def __init__(self, dut, *, seed: int = 0, ready_probability: float = 1.0):
        super().__init__(dut)
        self.source = FrameSource(dut, self.clk, seed=seed)
        self.scoreboard = Scoreboard("feed_chain events")
        self.event_board = Scoreboard("feed_chain gap events")
        self.monitor = StreamMonitor(dut, "o_stream", FeedEvent, self.clk,
                                     rng=random.Random(f"monitor-{seed}"),
                                     ready_probability=ready_probability,
                                     callback=self.scoreboard.check)
        self.events = StreamMonitor(dut, "o_event", SeqEvent, self.clk,
                                    callback=self.event_board.check)

    async def run(self, frames: list[tuple[bytes, bool]], filters: list[tuple[int, int]],
                  *, check_events: bool = True) -> dict[str, Any]:
        await self.reset()
        await self.source.program(filters)
        per_frame, events, counters = expected_chain(frames, filters)
        total = 0
        last_event_of: dict[int, int] = {}
        for i, delivered in enumerate(per_frame):
            for sequence, raw in delivered:
                self.scoreboard.expect(expected_event(raw), f"(frame {i}, sequence {sequence})")
                total += 1
            if delivered:
                last_event_of[i] = total - 1
        for e in events:
            self.event_board.expect(e)
        self.monitor.start()
        self.events.start()
        self.source.start_checker()
        await self.source.send(frames)
        waited, limit = 0, 3000 + 3 * sum(len(d) for d, _ in frames[-4:])
        while len(self.monitor.received) < total and waited < limit:
            await RisingEdge(self.clk)
            waited += 1
        await ClockCycles(self.clk, 40)
        self.source.stop_checker()
        self.monitor.stop()
        self.events.stop()

        cyc = self.cycle_of
        sent, got = self.source.driver.sent_at, self.monitor.received_at
        latency = {i: cyc(got[k]) - cyc(sent[self.source.last_beat[i]])
                   for i, k in last_event_of.items() if k < len(got)}
        rx = NetRxModel([FilterEntry.of(g, p) for g, p in filters])
        # store-and-forward: the payload is read out after the frame ends, so the last
        # message leaves a fixed number of cycles after the payload's length
        beyond_payload = sorted({latency[i] - len(rx.classify(*frames[i]).payload)
                                 for i in latency})
        return {
            "frames": len(frames),
            "bytes": sum(len(d) for d, _ in frames),
            "events": total,
            "cycles": (cyc(sent[-1]) - cyc(sent[0]) + 1) if sent else 0,
            "not_ready_cycles": self.source.not_ready_cycles,
            "latency_min": min(latency.values(), default=0),
            "latency_max": max(latency.values(), default=0),
            "latency_beyond_payload": beyond_payload,
            "expected_counters": counters,
            "counters": {**read_counters(self.dut, [f"rx_{n}" for n in RX_COUNTERS]),
                         **read_counters(self.dut, [f"seq_{n}" for n in SEQ_COUNTERS]),
                         **read_counters(self.dut, ["dec_messages", "dec_malformed"])},
        }
