"""cocotb testbench for the 64-bit feed front (MoldSequencerWide -> ItchDecoder(64)): MoldUDP64
packets in as ``wide_udp_beat(8)`` beats, the sequencer's messages (sequence, bytes, ingress),
the decoder's FeedEvents and the gap events scoreboarded against MoldSequencerModel and
feed.expected_event; the counters against the models'; and the input's line rate measured:
cycles the input was offered a beat and not ready, the longest such run, the FIFO levels."""

import random
from typing import Any

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from tickpath.model.netfeed import MoldSequencerModel
from tickpath.protocol.feed import EventKind, FeedEvent, expected_event, wide_beats
from tickpath.protocol.netfeed import SEQ_COUNTERS, SeqEvent, wide_message_beat, wide_udp_beat
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamMonitor, make_packer, make_unpacker
from tickpath.sim.common.tb import TB
from tickpath.sim.feed_wide.top import WIDTH

__all__ = ["FeedWideTB", "expected_front", "wire_idle_beats"]


def wire_idle_beats(width: int = WIDTH) -> int:
    """Beats a UDP payload's frame spends on the 10 GbE wire beyond the payload itself, rounded
    down: preamble and SFD (8 bytes), Ethernet header (14), IPv4 header (20), UDP header (8),
    FCS (4) and the inter-frame gap (12) are 66 bytes, 8 beats of 8 bytes."""
    return (8 + 14 + 20 + 8 + 4 + 12) // width


def expected_front(payloads: list[bytes]) -> dict[str, Any]:
    """The models' outputs: messages (sequence, bytes, packet index), events, counters."""
    model = MoldSequencerModel()
    messages, events = [], []
    for i, p in enumerate(payloads):
        out, ev = model.packet(p)
        messages.extend((m.sequence, m.data, i) for m in out)
        events.extend(ev)
    malformed = sum(expected_event(d)["kind"] is EventKind.Malformed for _, d, _ in messages)
    counters = {f"seq_{k}": v for k, v in model.counters.items()}
    counters.update(dec_messages=len(messages), dec_malformed=malformed)
    return {"messages": messages, "events": events, "counters": counters}


class FeedWideTB(TB):
    def __init__(self, dut, *, seed: int = 0, ready_probability: float = 1.0):
        super().__init__(dut)
        dut.session_check.value = 0
        dut.session_config.value = 0
        self.rng = random.Random(f"drive-{seed}")
        self.events_board = Scoreboard("feed_wide feed events")
        self.message_board = Scoreboard("feed_wide sequenced messages")
        self.gap_board = Scoreboard("feed_wide gap events")
        self.monitor = StreamMonitor(dut, "o_stream", FeedEvent, self.clk,
                                     rng=random.Random(f"monitor-{seed}"),
                                     ready_probability=ready_probability,
                                     callback=self.events_board.check)
        self.events = StreamMonitor(dut, "o_event", SeqEvent, self.clk,
                                    callback=self.gap_board.check)
        self._pack = make_packer(wide_udp_beat(WIDTH))
        self._unpack_msg = make_unpacker(wide_message_beat(WIDTH))
        self.dut.i_stream__valid.value = 0

    async def _probe(self, stats: dict[str, Any]) -> None:
        """Every cycle: the FIFO levels and the sequencer's message beats."""
        dut = self.dut
        settled, edge = ReadOnly(), RisingEdge(self.clk)
        current: list[dict[str, int]] = []
        while True:
            await settled
            level = dut.level.value.to_unsigned()
            out_level = dut.out_level.value.to_unsigned()
            if level > stats["max_level"]:
                stats["max_level"] = level
            if out_level > stats["max_out_level"]:
                stats["max_out_level"] = out_level
            if dut.msg_valid.value == 1 and dut.msg_ready.value == 1:
                beat = self._unpack_msg(dut.msg_payload.value.to_unsigned())
                stats["message_beats"] += 1
                current.append(beat)
                if beat["last"]:
                    self._message(current)
                    current = []
            await edge

    def _message(self, beats: list[dict[str, int]]) -> None:
        framing = ""
        if not beats[0]["first"] or any(b["first"] for b in beats[1:]):
            framing = "first flags"
        if any(b["nbytes"] != WIDTH for b in beats[:-1]) or not 1 <= beats[-1]["nbytes"] <= WIDTH:
            framing = "nbytes"
        if any(b["sequence"] != beats[0]["sequence"] or b["ingress"] != beats[0]["ingress"]
               for b in beats):
            framing = "sequence/ingress change inside a message"
        raw = b"".join((b["data"] & ((1 << 8 * b["nbytes"]) - 1)).to_bytes(b["nbytes"], "little")
                       for b in beats if 1 <= b["nbytes"] <= WIDTH)
        self.message_board.check({"sequence": beats[0]["sequence"], "data": raw,
                                  "ingress": beats[0]["ingress"], "framing": framing})

    async def _send(self, packets: list[list[int]], idle: int, valid_probability: float,
                    stats: dict[str, Any]) -> None:
        dut, rng = self.dut, self.rng
        payload, valid, ready = dut.i_stream__payload, dut.i_stream__valid, dut.i_stream__ready
        settled, edge = ReadOnly(), RisingEdge(self.clk)
        run = 0
        first_cycle = None
        for beats in packets:
            for bits in beats:
                if valid_probability < 1.0:
                    while rng.random() >= valid_probability:
                        valid.value = 0
                        await edge
                payload.value = bits
                valid.value = 1
                while True:
                    await settled
                    taken = ready.value == 1
                    if taken:
                        run = 0
                        if first_cycle is None:
                            first_cycle = self.cycle()
                        stats["last_cycle"] = self.cycle()
                    else:
                        run += 1
                        stats["not_ready_cycles"] += 1
                        stats["longest_not_ready"] = max(stats["longest_not_ready"], run)
                    await edge
                    if taken:
                        break
            if idle:
                valid.value = 0
                await ClockCycles(self.clk, idle)
        valid.value = 0
        stats["first_cycle"] = first_cycle or 0

    async def run(self, payloads: list[bytes], *, idle: int = 0,
                  valid_probability: float = 1.0) -> dict[str, Any]:
        """Reset, send ``payloads`` (``idle`` cycles after each), wait for every output; return
        statistics and the counters (scoreboards are left to the caller)."""
        await self.reset()
        want = expected_front(payloads)
        for sequence, raw, i in want["messages"]:
            self.message_board.expect({"sequence": sequence, "data": raw, "ingress": i,
                                       "framing": ""}, f"(packet {i}, sequence {sequence})")
            self.events_board.expect(expected_event(raw), f"(packet {i}, sequence {sequence})")
        for e in want["events"]:
            self.gap_board.expect(e)
        packets = [[self._pack({**b, "group": i & 15, "port": 30001, "ingress": i})
                    for b in wide_beats(p, WIDTH)] for i, p in enumerate(payloads)]
        out_beats = [0] * len(payloads)
        for _, raw, i in want["messages"]:
            out_beats[i] += -(-len(raw) // WIDTH)
        stats: dict[str, Any] = {
            "packets": len(payloads), "beats": sum(map(len, packets)),
            "bytes": sum(map(len, payloads)), "messages": len(want["messages"]),
            "expected_message_beats": sum(-(-len(d) // WIDTH) for _, d, _ in want["messages"]),
            # per packet, the larger of what the parser takes (a cycle a beat, two more for
            # the header's decision) and what the output takes (a cycle a message beat)
            "packet_bound_cycles": sum(max(len(b) + 2, o) for b, o in zip(packets, out_beats,
                                                                          strict=True)),
            "idle": idle, "not_ready_cycles": 0, "longest_not_ready": 0, "max_level": 0,
            "max_out_level": 0, "message_beats": 0, "first_cycle": 0, "last_cycle": 0,
        }
        self.monitor.start()
        self.events.start()
        probe = cocotb.start_soon(self._probe(stats))
        await self._send(packets, idle, valid_probability, stats)
        total, waited = len(want["messages"]), 0
        limit = 2000 + 10 * stats["expected_message_beats"]
        while len(self.monitor.received) < total and waited < limit:
            await RisingEdge(self.clk)
            waited += 1
        await ClockCycles(self.clk, 20)          # anything extra would show up here
        probe.cancel()
        self.monitor.stop()
        self.events.stop()
        stats["input_cycles"] = stats["last_cycle"] - stats["first_cycle"] + 1
        stats["drain_cycles"] = waited
        stats["sim_time_ns"] = get_sim_time("ns")
        stats["expected_counters"] = want["counters"]
        names = [f"seq_{n}" for n in SEQ_COUNTERS] + ["dec_messages", "dec_malformed"]
        stats["counters"] = {n: getattr(self.dut, n).value.to_unsigned() for n in names}
        return stats

    def check(self, stats: dict[str, Any]) -> None:
        self.message_board.result()
        self.events_board.result()
        self.gap_board.result()
        assert stats["counters"] == stats["expected_counters"], (
            f"counters {stats['counters']}, expected {stats['expected_counters']}")
        assert stats["message_beats"] == stats["expected_message_beats"]
