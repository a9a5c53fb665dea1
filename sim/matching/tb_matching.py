"""cocotb testbench for MatchingEngine: OrderRecord actions in, EventRecord events out, every
event scoreboarded in order against the golden MatchingModel; the final book (levels, queues,
tokens, open shares, ITCH references) read back through the ``peek`` port and compared. The
ITCH output (``itch_width`` bytes a beat, ``first``/``last`` per message) is compared byte for
byte with ``MatchingModel.itch`` encoded, its messages fed into the golden BookBuilder must
rebuild the model's book, and each message's ``ingress`` stamp is the cycle its action was
taken in."""

import random
from collections import defaultdict
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from tickpath.hdl.matching.itch_out import itch_beat_layout
from tickpath.hdl.matching.layouts import level_layout, slot_layout
from tickpath.model.book import BookBuilder
from tickpath.protocol import itch
from tickpath.protocol.feed import join_wide_beats
from tickpath.protocol.records import (
    Action,
    EventKind,
    EventRecord,
    Order,
    OrderRecord,
    Side,
)
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamDriver, StreamMonitor, make_unpacker
from tickpath.sim.common.tb import TB
from tickpath.sim.matching.stimulus import new_model

__all__ = ["MatchingTB", "ACTION_KINDS", "action_kind", "itch_width_of"]

ACTION_KINDS = ("reject", "rest", "cross", "ioc", "cancel", "replace", "end_of_day")


def action_kind(order: Order, events: list) -> str:
    """Latency class of one action from its events."""
    first = events[0]
    if first.kind is EventKind.Rejected:
        return "reject"
    if order.action is Action.Cancel:
        return "cancel"
    if order.action is Action.Replace:
        return "replace"
    if order.action is Action.EndOfDay:
        return "end_of_day"
    if any(e.kind is EventKind.Executed for e in events):
        return "cross"
    return "rest" if len(events) == 1 else "ioc"


def itch_width_of(dut, prefix: str = "itch_stream") -> int:
    """Bytes per beat of the DUT's ITCH stream, from its payload vector's width."""
    bits = len(getattr(dut, f"{prefix}__payload").value)
    return next(w for w in range(1, 65) if itch_beat_layout(w).size == bits)


def _event_dict(event) -> dict[str, Any]:
    return event._asdict()


def order_streams(tb, dut, scoreboard, *, seed, valid_probability, ready_probability,
                  monitor_tag="monitor"):
    """The driver of ``i_stream`` (OrderRecord) and the monitor of ``o_stream`` (EventRecord)
    that checks every event against ``scoreboard``, seeded as the matching benches seed them."""
    driver = StreamDriver(dut, "i_stream", OrderRecord, tb.clk,
                          rng=random.Random(f"drive-{seed}"),
                          valid_probability=valid_probability)

    def check(item):
        item.pop("_pad", None)
        scoreboard.check(item)
    monitor = StreamMonitor(dut, "o_stream", EventRecord, tb.clk,
                            rng=random.Random(f"{monitor_tag}-{seed}"),
                            ready_probability=ready_probability, callback=check)
    return driver, monitor


class MatchingTB(TB):
    def __init__(self, dut, *, symbols: int, capacity: int, levels: int, seed: int = 0,
                 valid_probability: float = 1.0, ready_probability: float = 1.0):
        super().__init__(dut)
        self.symbols, self.capacity, self.levels = symbols, capacity, levels
        self.model = new_model(symbols, capacity)
        self.scoreboard = Scoreboard("matching_engine")
        self.driver, self.monitor = order_streams(
            self, dut, self.scoreboard, seed=seed, valid_probability=valid_probability,
            ready_probability=ready_probability)
        self._unpack = make_unpacker(EventRecord)
        slot_width = max((capacity - 1).bit_length(), 1)
        self._slot = make_unpacker(slot_layout(
            slot_width=slot_width, symbol_width=max((symbols - 1).bit_length(), 1),
            level_width=max((levels - 1).bit_length(), 1)))
        self._level = make_unpacker(level_layout(slot_width=slot_width))
        self.itch_width = itch_width_of(dut)
        self.itch_monitor = StreamMonitor(dut, "itch_stream", itch_beat_layout(self.itch_width),
                                          self.clk, rng=random.Random(f"itch-{seed}"),
                                          ready_probability=ready_probability)
        self.itch_action: list[int | None] = [None] * len(self.model.itch)   # their actions
        self.expected_events: list[list] = []
        self.sent = 0
        dut.peek_addr.value = 0

    def counters(self) -> dict[str, int]:
        return {name: getattr(self.dut, name).value.to_unsigned()
                for name in ("actions", "events", "rejects", "fills", "free")}

    def expected_counters(self, events: int) -> dict[str, int]:
        return {"actions": self.sent, "events": events,
                "rejects": sum(self.model.rejects.values()), "fills": self.model.match_number,
                "free": self.capacity - len(self.model)}

    async def run(self, orders: list[Order], *, cycle_bound: int | None = None
                  ) -> dict[str, Any]:
        """Send ``orders`` (reset first when nothing was sent yet) and wait for all their
        events; returns cycle statistics. Fails loudly if any action takes more than
        ``cycle_bound`` cycles from being taken to its last event (a stall)."""
        if self.sent == 0:
            await self.reset()
            self.monitor.start()
            self.itch_monitor.start()
        model = self.model
        start_events = len(self.monitor.received)
        first_action = self.sent
        per_action = []
        for i, order in enumerate(orders):
            events = model.process(order)
            per_action.append(events)
            self.itch_action.extend([first_action + i] * (len(model.itch)
                                                          - len(self.itch_action)))
            for e in events:
                self.scoreboard.expect(_event_dict(e), f"(action {first_action + i}: "
                                       f"{order.action.name} {order})")
        want = sum(len(e) for e in per_action)
        sender = cocotb.start_soon(self.driver.send([o._asdict() for o in orders]))
        # an action's ITCH beats (up to 31 bytes a fill, 19 a delete) can hold it back once
        # the ITCH queue is full
        bound = cycle_bound or (32 + 8 * self.capacity + 4 * self.levels
                                + 64 * (self.capacity + 16))
        waited, limit = 0, bound * (1 + len(orders))
        while len(self.monitor.received) - start_events < want or not sender.done():
            await RisingEdge(self.clk)
            waited += 1
            if waited > limit:
                sender.cancel()
                taken = len(self.driver.sent_at) - first_action
                raise AssertionError(
                    f"{taken} of {len(orders)} actions taken, "
                    f"{len(self.monitor.received) - start_events} of {want} events out "
                    f"after {limit} cycles: the engine stalled "
                    f"(scoreboard: {self.scoreboard.reports[:3]})")
        self.sent += len(orders)
        w = self.itch_width
        want_itch = sum(-(-itch.SPECS[msg.type].length // w) for msg in model.itch)
        while len(self.itch_monitor.received) < want_itch:
            await RisingEdge(self.clk)
            waited += 1
            if waited > limit:
                raise AssertionError(f"{len(self.itch_monitor.received)} of {want_itch} ITCH "
                                     f"beats out after {limit} cycles: the ITCH output stalled")
        await ClockCycles(self.clk, 4)     # an extra event would show up here
        self.expected_events.extend(per_action)

        # cycle statistics: action taken -> first event out, -> last event out
        cyc = self.cycle_of
        sent = self.driver.sent_at[first_action:]
        got = self.monitor.received_at[start_events:]
        first_lat: dict[str, list[int]] = defaultdict(list)
        spans = []
        k = 0
        for i, events in enumerate(per_action):
            taken = cyc(sent[i])
            first_lat[action_kind(orders[i], events)].append(cyc(got[k]) - taken)
            spans.append(cyc(got[k + len(events) - 1]) - taken)
            k += len(events)
        if spans and max(spans) > bound:
            raise AssertionError(f"an action took {max(spans)} cycles, over the bound {bound}")
        total = (cyc(got[-1]) - cyc(sent[0]) + 1) if got else 0
        coverage: dict[str, int] = defaultdict(int)
        for events in per_action:
            for e in events:
                key = e.kind.name + (f"/{chr(e.reason)}" if e.reason else "")
                coverage[key] += 1
        return {
            "actions": len(orders), "events": want, "cycles": total,
            "cycles_per_action": total / len(orders) if orders else 0.0,
            "max_action_cycles": max(spans, default=0),
            "first_event_latency": {k: (min(v), max(v), sum(v) / len(v))
                                    for k, v in sorted(first_lat.items())},
            "kinds": {k: len(v) for k, v in sorted(first_lat.items())},
            "coverage": dict(sorted(coverage.items())),
        }

    def itch_raw(self) -> list[bytes]:
        """The ITCH messages out so far as bytes, framed by ``first``/``last``/``nbytes``."""
        return join_wide_beats(self.itch_monitor.received, self.itch_width)

    def itch_messages(self) -> list:
        """The ITCH messages out so far (each must decode whole)."""
        return [itch.decode(raw, length=len(raw)) for raw in self.itch_raw()]

    def check_itch_ingress(self) -> None:
        """Every beat of a message carries one ``ingress`` stamp, the cycle its action was
        taken in (the engine counts cycles from reset: a constant offset from the bench's)."""
        beats, taken = self.itch_monitor.received, self.driver.sent_at
        stamps, offsets = [], set()
        for beat in beats:
            if beat["first"]:
                stamps.append(beat["ingress"])
            assert beat["ingress"] == stamps[-1], "ingress changes inside a message"
        for k, (stamp, action) in enumerate(zip(stamps, self.itch_action, strict=False)):
            if action is not None:
                offsets.add(stamp - self.cycle_of(taken[action]))
            else:
                assert stamp < 8, f"ITCH message {k} (S O) stamped {stamp}, not after reset"
        assert len(offsets) <= 1, f"ITCH ingress stamps are not the actions' cycles: {offsets}"

    def check_itch(self) -> dict[str, int]:
        """The engine's ITCH bytes are the model's, encoded, byte for byte; the messages
        rebuild the model's book in the golden BookBuilder; their ingress stamps are their
        actions'. Returns messages per type."""
        got = b"".join(self.itch_raw())
        want = b"".join(itch.encode(msg) for msg in self.model.itch)
        if got != want:
            at = next((i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y),
                      min(len(got), len(want)))
            raise AssertionError(f"ITCH bytes differ at byte {at} of {len(want)} "
                                 f"(engine {len(got)} bytes): engine {got[at:at + 40].hex()}, "
                                 f"model {want[at:at + 40].hex()}")
        messages = self.itch_messages()
        assert messages == self.model.itch
        self.check_itch_ingress()
        book = BookBuilder().apply_all(messages)
        assert book.snapshot() == self.model.snapshot(), "ITCH does not rebuild the book"
        counts: dict[str, int] = defaultdict(int)
        for msg in messages:
            counts[msg.type] += 1
        return dict(sorted(counts.items()))

    async def peek(self, addr: int, *, slot: bool) -> tuple:
        """Level entry ``addr`` (``slot=False``) or ``(slot row, open shares, qnext)`` of slot
        ``addr`` (a slot number beyond the store's depth reads X: never asked)."""
        dut = self.dut
        dut.peek_addr.value = addr
        await RisingEdge(self.clk)
        await ReadOnly()
        if slot:
            out = (self._slot(dut.peek_slot.value.to_unsigned()),
                   dut.peek_open.value.to_unsigned(), dut.peek_qnext.value.to_unsigned())
        else:
            out = self._level(dut.peek_level.value.to_unsigned())
        await RisingEdge(self.clk)
        return out

    async def read_book(self) -> dict[tuple[int, int], list]:
        """``(symbol, side) -> [(price, [(token, open, ref), ...]), ...]`` best first."""
        await ReadOnly()
        assert self.dut.busy.value == 0, "read_book while an action is in progress"
        await RisingEdge(self.clk)
        book = {}
        for symbol in range(self.symbols):
            for side in (0, 1):
                entries = []
                for i in range(self.levels):
                    level = await self.peek((symbol * 2 + side) * self.levels + i, slot=False)
                    if not level["valid"]:
                        continue
                    queue, slot = [], level["head"]
                    for _ in range(self.capacity + 1):
                        row, open_, qnext = await self.peek(slot, slot=True)
                        assert row["price"] == level["price"] and row["symbol"] == symbol \
                            and row["side"] == side, f"slot {slot} {row} in level {level}"
                        queue.append((row["token"], open_, row["ref"]))
                        if slot == level["tail"]:
                            break
                        slot = qnext
                    else:
                        raise AssertionError(f"level {level} queue does not end")
                    entries.append((level["price"], queue))
                entries.sort(key=lambda e: -e[0] if side == 0 else e[0])
                book[(symbol, side)] = entries
        return book

    def model_book(self) -> dict[tuple[int, int], list]:
        model = self.model
        book = {}
        for symbol in range(self.symbols):
            locate = model.stock_locate(symbol)
            for side in (Side.Buy, Side.Sell):
                entries = []
                if locate is not None:
                    for price, _, _ in model.levels(locate, side):
                        tokens = model.tokens(locate, side, price)
                        queue = model.queue(locate, side, price)
                        entries.append((price, [(t, o, ref) for t, (ref, o)
                                                in zip(tokens, queue, strict=True)]))
                book[(symbol, side.value)] = entries
        return book

    async def check_book(self) -> int:
        """Compare the engine's book with the model's; return the resting order count."""
        got, want = await self.read_book(), self.model_book()
        for key in want:
            assert got[key] == want[key], \
                f"book (symbol, side) {key}: engine {got[key]}, model {want[key]}"
        return sum(len(q) for entries in want.values() for _, q in entries)
