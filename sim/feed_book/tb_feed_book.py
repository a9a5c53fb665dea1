"""cocotb testbench for FeedBook: feed events (or ITCH bytes) in, book updates out, scoreboarded
against :class:`~tickpath.sim.feed_book.model.FeedBookModel` (itself checked against the golden
BookBuilder)."""

import random
from collections import defaultdict
from typing import Any

from cocotb.triggers import ClockCycles, RisingEdge

from tickpath.hdl.feed_book import COUNTERS
from tickpath.protocol.bookfeed import BookQuery, Subscription, book_update_layout
from tickpath.protocol.feed import ByteBeat, EventKind, FeedEvent, byte_beats, expected_event
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamDriver, StreamMonitor, make_packer
from tickpath.sim.common.tb import TB
from tickpath.sim.feed_book.model import FeedBookModel

__all__ = ["FeedBookTB", "STAMPS"]

STAMPS = ("ingress", "egress")
MASK32 = (1 << 32) - 1


class FeedBookTB(TB):
    def __init__(self, dut, params: dict[str, Any], *, seed: int = 0,
                 valid_probability: float = 1.0, ready_probability: float = 1.0):
        super().__init__(dut)
        self.source = params.pop("source")
        self.params = params
        self.model = FeedBookModel(**params)
        self.scoreboard = Scoreboard("feed_book")
        layout = FeedEvent if self.source == "events" else ByteBeat
        self.driver = StreamDriver(dut, "i_stream", layout, self.clk,
                                   rng=random.Random(f"drive-{seed}"),
                                   valid_probability=valid_probability)
        self.monitor = StreamMonitor(dut, "o_stream", book_update_layout(params["depth"]),
                                     self.clk, rng=random.Random(f"monitor-{seed}"),
                                     ready_probability=ready_probability,
                                     callback=self._check)
        self.subscriber = StreamDriver(dut, "subscribe", Subscription, self.clk)
        self.querier = StreamDriver(dut, "query", BookQuery, self.clk)
        self.clearer = StreamDriver(dut, "clear", None, self.clk)
        self.update_event: list[int | None] = []     # per expected update: its event index

    def _check(self, item):
        self.scoreboard.check({k: v for k, v in item.items() if k not in STAMPS})

    def counters(self) -> dict[str, int]:
        return {name: getattr(self.dut, name).value.to_unsigned() for name in COUNTERS}

    def invalid(self) -> set[int]:
        bits = self.dut.invalid.value.to_unsigned()
        return {s for s in range(self.params["slots"]) if bits >> s & 1}

    async def start(self):
        await self.reset()
        self.monitor.start()

    async def subscribe(self, entries):
        for locate, slot, enable in entries:
            self.model.subscribe(locate, slot, bool(enable))
        await self.subscriber.send([{"stock_locate": loc, "slot": s, "enable": e}
                                    for loc, s, e in entries])

    async def clear(self, slots):
        for s in slots:
            self.model.clear(s)
        await self.clearer.send(list(slots))

    async def wait_for(self, count: int, limit: int):
        waited = 0
        while len(self.monitor.received) < count:
            await RisingEdge(self.clk)
            waited += 1
            if waited > limit:
                raise AssertionError(f"only {len(self.monitor.received)} of {count} updates "
                                     f"after {limit} cycles: the feed book stalled")
        await ClockCycles(self.clk, 40)      # anything extra shows up here

    async def feed(self, messages: list[bytes]) -> dict[str, Any]:
        """Send ``messages`` (as events or bytes), wait for every update; cycle statistics."""
        events = [expected_event(raw) for raw in messages]
        first_update = len(self.update_event)
        for i, ev in enumerate(events):
            _, up = self.model.event(ev)
            if up is not None:
                self.scoreboard.expect(up, f"(event {i}: {ev['kind'].name} ref {ev['order_ref']})")
                self.update_event.append(i)
        sent_before = len(self.driver.sent_at)
        if self.source == "events":
            pack = make_packer(FeedEvent)
            items = [pack(ev) for ev in events]
            last = list(range(len(items)))
        else:
            pack = make_packer(ByteBeat)
            items, last = [], []
            for raw in messages:
                items.extend(pack(b) for b in byte_beats(raw))
                last.append(len(items) - 1)
        await self.driver.send(items)
        await self.wait_for(len(self.update_event), 2000 + 20 * len(messages))

        # stamps: ingress is the cycle the event (its last byte) was taken, on the DUT's clock
        cycle_of = self.cycle_of
        sent = self.driver.sent_at
        offsets, latency = set(), defaultdict(list)
        for n in range(first_update, len(self.update_event)):
            got = self.monitor.received[n]
            i = self.update_event[n]
            taken = cycle_of(sent[sent_before + last[i]])
            offsets.add((got["ingress"] - taken) & MASK32)
            latency[got["kind"].name].append((got["egress"] - got["ingress"]) & MASK32)
        assert len(offsets) <= 1, f"ingress stamps are not the arrival cycles: {sorted(offsets)}"
        cycles = cycle_of(sent[-1]) - cycle_of(sent[sent_before]) + 1 if len(sent) else 0
        return {
            "messages": len(messages), "beats": len(items), "cycles": cycles,
            "updates": len(self.update_event) - first_update,
            "latency": {k: [min(v), max(v), round(sum(v) / len(v), 2)]
                        for k, v in sorted(latency.items())},
        }

    async def query_all(self):
        """One query per subscribed slot and side, scoreboarded (the full top-N at the end)."""
        queries = []
        for slot in sorted(set(self.model.subscriptions.values())):
            for side in (0, 1):
                self.scoreboard.expect(self.model.query(slot, side), f"(query {slot}/{side})")
                self.update_event.append(None)
                queries.append({"slot": slot, "side": side})
        await self.querier.send(queries)
        await self.wait_for(len(self.update_event), 100 + 10 * len(queries))

    def check_end(self):
        """Scoreboard, counters, flags, golden agreement: raise AssertionError on any miss."""
        self.scoreboard.result()
        want = {name: self.model.counters[name] & MASK32 for name in COUNTERS
                if name != "occupancy"}
        want["occupancy"] = self.model.occupancy()
        got = self.counters()
        assert got == want, f"counters {got}, expected {want}"
        assert self.invalid() == self.model.invalid, \
            f"invalid {sorted(self.invalid())}, expected {sorted(self.model.invalid)}"
        assert not self.model.golden_mismatches, self.model.golden_mismatches
        problems = self.model.check_final()
        assert not problems, problems


def kinds_present(stats) -> set[str]:
    return set(stats["latency"]) - {EventKind.Other.name}
