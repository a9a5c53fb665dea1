"""cocotb testbench for MarketData (the matching engine with its ITCH output framed into
MoldUDP64): actions in, every event scoreboarded in order against the golden MatchingModel,
the MoldUDP64 packets collected from ``mold_stream`` and checked:

* every packet decodes with :func:`tickpath.protocol.moldudp64.decode_packet`, in the
  configured session, and its sideband (sequence, count) is its header's;
* sequence numbers run on from 1 without a gap or overlap; no packet is over the MTU or holds
  more than ``max_messages`` messages;
* the packets' messages joined are exactly ``MatchingModel.itch`` encoded, and rebuild the
  model's book in the golden BookBuilder;
* the end-of-session packet (count 0xFFFF, the next sequence) comes last, right after the
  packet holding ``S`` ``C``;
* a packet's ``ingress`` is the cycle the action of its first message was taken in, and each
  beat's ``egress`` the cycle it was offered (rising, and its transfer cycle when it was not
  held back), both on the bench's clock (one offset: the engine's and the framer's cycle
  counters start together at reset).
"""

import random
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from tickpath.hdl.matching.mold_out import mold_beat_layout
from tickpath.model.book import BookBuilder
from tickpath.protocol import itch, moldudp64
from tickpath.protocol.feed import join_wide_beats
from tickpath.protocol.netfeed import session_int
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamMonitor
from tickpath.sim.common.tb import TB
from tickpath.sim.matching.stimulus import new_model
from tickpath.sim.matching.tb_matching import order_streams

__all__ = ["MarketDataTB", "mold_width_of"]


def mold_width_of(dut, prefix: str = "mold_stream") -> int:
    """Bytes per beat of the DUT's MoldUDP64 stream, from its payload vector's width."""
    bits = len(getattr(dut, f"{prefix}__payload").value)
    return next(w for w in range(2, 65) if mold_beat_layout(w).size == bits)


class MarketDataTB(TB):
    def __init__(self, dut, *, symbols: int, capacity: int, session: str, mtu: int,
                 max_messages: int, seed: int = 0, valid_probability: float = 1.0,
                 ready_probability: float = 1.0):
        super().__init__(dut)
        self.session, self.mtu, self.max_messages = session, mtu, max_messages
        dut.session.value = session_int(session)
        self.model = new_model(symbols, capacity)
        self.scoreboard = Scoreboard("market_data")
        self.driver, self.monitor = order_streams(
            self, dut, self.scoreboard, seed=seed, valid_probability=valid_probability,
            ready_probability=ready_probability, monitor_tag="events")
        self.width = mold_width_of(dut)
        self.delivered = 0          # messages in whole packets out so far
        self.eos_seen = False
        self._count = 0

        def packet_beat(beat):
            if beat["first"]:
                self._count = beat["count"]
            if beat["last"]:
                if self._count == moldudp64.END_OF_SESSION_COUNT:
                    self.eos_seen = True
                else:
                    self.delivered += self._count
        self.mold_monitor = StreamMonitor(dut, "mold_stream", mold_beat_layout(self.width),
                                          self.clk, rng=random.Random(f"mold-{seed}"),
                                          ready_probability=ready_probability,
                                          callback=packet_beat)
        self.itch_action: list[int | None] = [None] * len(self.model.itch)
        self.sent = 0

    async def run(self, orders, *, limit_per_action: int = 2000) -> None:
        """Send ``orders`` (reset first when nothing was sent yet) and wait for their events
        and for every ITCH message so far to have left in a whole packet."""
        if self.sent == 0:
            await self.reset()
            self.monitor.start()
            self.mold_monitor.start()
        start = len(self.monitor.received)
        want = 0
        for i, order in enumerate(orders):
            events = self.model.process(order)
            want += len(events)
            self.itch_action.extend([self.sent + i] * (len(self.model.itch)
                                                       - len(self.itch_action)))
            for e in events:
                self.scoreboard.expect(e._asdict(), f"(action {self.sent + i}: {order})")
        sender = cocotb.start_soon(self.driver.send([o._asdict() for o in orders]))
        limit = limit_per_action * (len(orders) + 1)
        waited = 0
        while (len(self.monitor.received) - start < want or not sender.done()
               or self.delivered < len(self.model.itch)):
            await RisingEdge(self.clk)
            waited += 1
            if waited > limit:
                sender.cancel()
                raise AssertionError(
                    f"{len(self.monitor.received) - start} of {want} events and "
                    f"{self.delivered} of {len(self.model.itch)} ITCH messages out after "
                    f"{limit} cycles (scoreboard: {self.scoreboard.reports[:3]})")
        self.sent += len(orders)
        await ClockCycles(self.clk, 8)      # an extra event or packet would show up here

    async def wait_end_of_session(self, limit: int = 1000) -> None:
        for _ in range(limit):
            if self.eos_seen:
                return
            await RisingEdge(self.clk)
        raise AssertionError(f"no end-of-session packet {limit} cycles after the last message")

    def packets(self) -> list[tuple[moldudp64.MoldPacket, int, dict[str, Any]]]:
        """``(packet, wire length, first beat)`` of every packet out so far."""
        beats = self.mold_monitor.received
        raw = join_wide_beats(beats, self.width)
        firsts = [b for b in beats if b["first"]]
        return [(moldudp64.decode_packet(r), len(r), b)
                for r, b in zip(raw, firsts, strict=True)]

    def check(self) -> dict[str, Any]:
        """Every rule of the module docstring on the packets so far; returns statistics."""
        model_raw = [itch.encode(msg) for msg in self.model.itch]
        packets = self.packets()
        joined: list[bytes] = []
        expected = 1
        sizes, counts, latency = [], [], []
        taken = [self.cycle_of(t) for t in self.driver.sent_at]
        offsets: set[int] = set()
        beats, stamps = self.mold_monitor.received, self.mold_monitor.received_at
        egress_offsets = [b["egress"] - self.cycle_of(t) for b, t in zip(beats, stamps,
                                                                          strict=True)]
        egress = [b["egress"] for b in beats]
        assert all(x < y for x, y in zip(egress, egress[1:], strict=False)), "egress not rising"
        eos_at = None
        for n, (packet, size, first) in enumerate(packets):
            where = f"packet {n} (sequence {packet.sequence})"
            assert packet.session == self.session, f"{where}: session {packet.session!r}"
            assert (first["sequence"], first["count"]) == (packet.sequence, packet.count), \
                f"{where}: sideband {first['sequence']}/{first['count']}, header {packet.count}"
            assert packet.sequence == expected, f"{where}: expected sequence {expected}"
            assert size <= self.mtu, f"{where}: {size} bytes, over the MTU {self.mtu}"
            index = packet.sequence - 1 if not packet.is_end_of_session else expected - 2
            action = self.itch_action[index]
            if action is not None:
                offsets.add(first["ingress"] - taken[action])
            latency.append(first["egress"] - first["ingress"])
            if packet.is_end_of_session:
                assert eos_at is None, f"{where}: a second end of session"
                assert joined and joined[-1] == model_raw[-1] and \
                    self.model.itch[-1].type == "S" and self.model.itch[-1].event_code == "C", \
                    f"{where}: end of session not right after S C"
                eos_at = n
                continue
            assert eos_at is None, f"{where} after the end of session"
            assert 1 <= packet.count <= self.max_messages, f"{where}: count {packet.count}"
            joined.extend(packet.messages)
            expected = packet.next_sequence
            sizes.append(size)
            counts.append(packet.count)
        assert len(offsets) == 1, f"ingress is not the action's cycle: offsets {offsets}"
        offset = offsets.pop()
        assert max(egress_offsets) == offset, \
            f"egress later than the transfer, or never the transfer cycle: offset {offset}, " \
            f"egress - transfer {min(egress_offsets)}..{max(egress_offsets)}"
        if self.mold_monitor.ready_probability == 1.0:
            assert set(egress_offsets) == {offset}, "egress is not the transfer cycle"
        if joined != model_raw:
            at = next((i for i, (x, y) in enumerate(zip(joined, model_raw, strict=False))
                       if x != y), min(len(joined), len(model_raw)))
            raise AssertionError(f"message {at} of {len(model_raw)} differs (framer "
                                 f"{len(joined)}): {joined[at:at + 1]} vs {model_raw[at:at + 1]}")
        messages = [itch.decode(raw, length=len(raw)) for raw in joined]
        book = BookBuilder().apply_all(messages)
        assert book.snapshot() == self.model.snapshot(), "the packets do not rebuild the book"
        return {
            "packets": len(packets), "messages": len(joined),
            "end_of_session": eos_at is not None,
            "bytes_per_packet": (min(sizes), sum(sizes) / len(sizes), max(sizes)),
            "messages_per_packet": (min(counts), sum(counts) / len(counts), max(counts)),
            "ingress_to_egress_cycles": (min(latency), sum(latency) / len(latency),
                                         max(latency)),
        }
