"""The gateware matching engine (:class:`tickpath.hdl.matching.MatchingEngine`) on the fast
Verilator harness, behind the host's :class:`tickpath.engine.Engine` interface: the ``sim``
engine of ``tickpath match``.

Ref: the engine's docstring (ports, cycle counts, deviations from the model, all of which
:class:`SimEngine` turns into :class:`SimEngineLimit` instead of a different answer); the
semantics of :mod:`tickpath.model.matching`; the harness of :mod:`tickpath.sim.harness`.

:class:`MatchingTop` wraps the engine for the harness, whose C++ loop feeds one stream and drains
one: the event stream and the ITCH stream leave merged into one output beat (each with its own
valid bit, both taken in the same cycle), stamped with the cycle count, the cycle the current
action was taken in and the free order store slots. :meth:`SimEngine.run` packs the actions
(:class:`~tickpath.protocol.records.OrderRecord` bytes), streams them in, and splits the beats
into events, ITCH bytes and per-action cycle stamps (:class:`ActionTiming`); the book is read
back through the engine's ``peek`` port, the stock locates from the gateware's own ITCH ``R``
messages.

Sizes (:data:`DEFAULT_CONFIG`): 16 price levels per book side, 4096 resting orders (the 85F's
engine in ``DESIGN.md``; ``capacity`` builds it with the size ``--capacity`` asks for, 2 to
65536), tokens below ``2**16``, and one symbol per stock the input names, at most
:data:`MAX_SYMBOLS`. The ITCH stock names are constants of the gateware
(``MatchingEngine(stocks=...)``): a new set of stocks is a new Verilator build (minutes, then
cached in ``build/harness/``). Where the model would go on but the gateware cannot (more
stocks, tokens, resting orders or price levels than it holds), :class:`SimEngineLimit` says
which, never a wrong answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.engine import Engine, EngineError
from tickpath.protocol import itch
from tickpath.protocol.records import (
    EVENT_SIZE,
    ORDER_SIZE,
    Action,
    Event,
    EventKind,
    EventRecord,
    Order,
    OrderRecord,
    RejectReason,
)

__all__ = ["DEFAULT_CONFIG", "MAX_SYMBOLS", "MatchingTop", "SimEngine", "SimEngineError",
           "SimEngineLimit", "ActionTiming", "matching_harness"]

DEFAULT_CONFIG: dict[str, Any] = {"capacity": 4096, "levels": 16, "token_bits": 16}
MAX_SYMBOLS = 64
MAX_CAPACITY = 1 << 16
CHUNK_ACTIONS = 20_000

# The merged output beat, byte-aligned so that the host slices it without shifting.
_FLAGS, _FREE, _CYCLE, _TAKEN, _EVENT = 0, 1, 4, 12, 20
_ITCH = _EVENT + EVENT_SIZE


class SimEngineError(EngineError):
    """The simulated gateware did not do what it must (stalled, lost or added an event)."""


class SimEngineLimit(ValueError):
    """The actions need more than the simulated gateware holds, where the model would go on.
    ``index``: the action (0-based, in the order given to :meth:`SimEngine.run` calls) that
    met the limit, when one did."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


def out_layout(itch_shape) -> data.StructLayout:
    return data.StructLayout({
        "event_valid": 1, "itch_valid": 1, "_pad": 6,
        "free": 24,
        "cycle": 64,            # cycles since reset (the beat's cycle)
        "taken": 64,            # the cycle the current action was taken in
        "event": EventRecord,
        "itch": itch_shape,
    })


class MatchingTop(wiring.Component):
    """:class:`~tickpath.hdl.matching.MatchingEngine` with its two output streams merged into
    one (the harness drains one stream), and cycle stamps.

    Members
    -------
    i_stream : ``In(stream.Signature(OrderRecord))``
        The engine's action stream.
    o_stream : ``Out(stream.Signature(out_layout(...)))``
        Valid when the engine's event or ITCH stream is; ``ready`` is both streams' ready.
        ``event_valid``/``itch_valid`` say which carries a beat, ``cycle`` counts cycles since
        reset, ``taken`` is the cycle the latest action was taken in, ``free`` the engine's.
    (and every other port of the engine: ``peek_*``, ``busy``, ``free``, the counters)
    """

    def __init__(self, **config):
        from tickpath.hdl.matching import MatchingEngine
        self.engine = MatchingEngine(**config)
        members = self.engine.signature.members
        self.itch_shape = members["itch_stream"].signature.members["payload"].shape
        self.out_shape = out_layout(self.itch_shape)
        ports = {"i_stream": In(stream.Signature(OrderRecord)),
                 "o_stream": Out(stream.Signature(self.out_shape))}
        self._forward = [n for n in members if n not in ("i_stream", "o_stream", "itch_stream")]
        for name in self._forward:
            ports[name] = members[name]
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        wiring.connect(m, wiring.flipped(self.i_stream), engine.i_stream)
        for name in self._forward:
            ours, theirs = getattr(self, name), getattr(engine, name)
            if self.signature.members[name].flow is In:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)
        cycle, taken = Signal(64), Signal(64)
        m.d.sync += cycle.eq(cycle + 1)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += taken.eq(cycle)
        out, ev, it = self.o_stream, engine.o_stream, engine.itch_stream
        m.d.comb += [
            out.valid.eq(ev.valid | it.valid),
            out.p.event_valid.eq(ev.valid), out.p.event.eq(ev.payload),
            out.p.itch_valid.eq(it.valid), out.p.itch.eq(it.payload),
            out.p.cycle.eq(cycle), out.p.taken.eq(taken), out.p.free.eq(engine.free),
            ev.ready.eq(out.ready), it.ready.eq(out.ready),
        ]
        return m


def _check_layout(shape) -> None:
    layout = data.Layout.cast(shape)
    for name, offset in (("free", _FREE), ("cycle", _CYCLE), ("taken", _TAKEN),
                         ("event", _EVENT), ("itch", _ITCH)):
        assert layout[name].offset == 8 * offset, (name, layout[name].offset)


def matching_harness(stocks: tuple[str, ...], **overrides):
    """The built (cached) harness of :class:`MatchingTop` for ``stocks`` (symbol ids 0, 1, ...)
    in the default configuration plus ``overrides``; and that configuration."""
    from tickpath.sim.harness.build import build, source_key
    config = {**DEFAULT_CONFIG, **overrides, "symbols": len(stocks), "stocks": tuple(stocks)}
    here = hashlib.sha256((inspect.getsource(out_layout) + inspect.getsource(MatchingTop))
                          .encode()).hexdigest()
    key = (f"{sorted(config.items())}\0{here}\0"
           f"{source_key('tickpath.hdl.matching', 'tickpath.protocol', 'tickpath.model')}")
    return build(lambda: MatchingTop(**config), "matching_top", key=key), config


@dataclasses.dataclass(frozen=True)
class ActionTiming:
    """One action's cycles: taken (the record's handshake), its first and last event out."""
    taken: int
    first: int
    last: int
    events: int


def _pack_orders(orders: list[Order], symbols: np.ndarray) -> bytes:
    """OrderRecord bytes of ``orders`` (as :meth:`Order.to_bytes`, vectorised), the symbol ids
    below ``len(symbols)`` mapped through ``symbols``."""
    n = len(orders)
    if not n:
        return b""
    out = np.zeros((n, ORDER_SIZE), dtype=np.uint8)
    try:
        columns = list(zip(*orders, strict=True))
        for (name, off, width, enum_cls), col in zip(Order.plan, columns, strict=True):
            if enum_cls is not None:
                col = (v.value for v in col)
            vals = np.fromiter(col, dtype=np.uint64, count=n)
            if (vals >> np.uint64(width)).any():
                raise OverflowError(name)
            if name == "symbol":
                inside = vals < len(symbols)
                vals[inside] = symbols[vals[inside].astype(np.int64)]
            _put(out, off, width, vals)
    except (OverflowError, ValueError, TypeError):
        return b"".join(o.to_bytes() for o in orders)     # raises the RecordError
    return out.tobytes()


def _put(out: np.ndarray, off: int, width: int, vals: np.ndarray) -> None:
    if off % 8 == 0 and width % 8 == 0:
        nb = width // 8
        out[:, off // 8:off // 8 + nb] = vals.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :nb]
    else:
        assert off % 8 + width <= 8, "a field straddles bytes"
        out[:, off // 8] |= (vals << np.uint64(off % 8)).astype(np.uint8)


def _column(rows: np.ndarray, off: int, width: int) -> np.ndarray:
    if off % 8 == 0 and width % 8 == 0:
        nb = width // 8
        wide = np.zeros((len(rows), 8), dtype=np.uint8)
        wide[:, :nb] = rows[:, off // 8:off // 8 + nb]
        return wide.view("<u8").ravel()
    assert off % 8 + width <= 8, "a field straddles bytes"
    return (rows[:, off // 8] >> (off % 8)).astype(np.uint64) & np.uint64((1 << width) - 1)


_ENUMS: dict[type, dict[int, Any]] = {}


def _unpack_events(rows: np.ndarray, symbols_back: np.ndarray) -> list[Event]:
    """Events of EventRecord byte rows (as :meth:`Event.from_bytes`, vectorised), the symbol
    ids below ``len(symbols_back)`` mapped back through it."""
    cols = []
    for name, off, width, enum_cls in Event.plan:
        vals = _column(rows, off, width)
        if name == "symbol":
            inside = vals < len(symbols_back)
            vals[inside] = symbols_back[vals[inside].astype(np.int64)]
        values = vals.tolist()
        if enum_cls is not None:
            table = _ENUMS.setdefault(enum_cls, {int(e.value): e for e in enum_cls})
            try:
                values = [table[v] for v in values]
            except KeyError as e:
                raise SimEngineError(f"event field {name}: {e.args[0]} is not a "
                                     f"{enum_cls.__name__}") from None
        cols.append(values)
    new = tuple.__new__
    return [new(Event, t) for t in zip(*cols, strict=True)]


class SimEngine(Engine):
    """The matching gateware, simulated, behind the :class:`~tickpath.engine.Engine` interface.

    Built (or loaded from the cache) at the first action, for the stocks named so far.
    ``capacity``: most resting orders (``None``: the default build's 4096, and needing more is
    a :class:`SimEngineLimit`; else the gateware is built with exactly that many slots, so its
    ``f`` rejects are the model's). ``keep_timing`` records :class:`ActionTiming` per action.
    """

    def __init__(self, *, capacity: int | None = None, keep_timing: bool = False,
                 **overrides):
        if capacity is not None and not 2 <= capacity <= MAX_CAPACITY:
            raise SimEngineLimit(f"the simulated gateware's order store holds 2 to "
                                 f"{MAX_CAPACITY} orders, not --capacity {capacity}")
        self._capacity = capacity
        self._overrides = dict(overrides)
        if capacity is not None:
            self._overrides["capacity"] = capacity
        self.config = {**DEFAULT_CONFIG, **self._overrides}
        self._stocks: dict[int, str] = {}
        self._h = None
        self._pending: deque[Event] = deque()
        self._actions = 0
        self._itch = bytearray()
        self._itch_ends: list[int] = []         # end offset of each ITCH message
        self._partial = 0                       # bytes of an unfinished ITCH message
        self._messages: list[itch.ItchMessage] = []
        self._decoded = 0
        self.keep_timing = keep_timing
        self.timing: list[ActionTiming] = []
        self.cycles = 0

    #: what the host's translator names when a limit below is met
    limits_name = "the simulated gateware's limit"

    # --- life ------------------------------------------------------------------------------
    @property
    def token_limit(self) -> int:
        """Tokens the gateware holds are below this."""
        return 1 << self.config["token_bits"]

    @property
    def symbol_limit(self) -> int:
        return MAX_SYMBOLS

    def set_symbol(self, symbol: int, stock: str) -> None:
        known = self._stocks.get(symbol)
        if known == stock:
            return
        if known is not None:
            raise ValueError(f"symbol {symbol} is already {known!r}")
        if symbol >= MAX_SYMBOLS:
            raise SimEngineLimit(f"the simulated gateware trades at most {MAX_SYMBOLS} stocks "
                                 f"({stock!r} would be symbol {symbol})")
        if self._h is not None:
            raise SimEngineLimit(f"the simulated gateware was built for {len(self._stocks)} "
                                 f"stocks; stock {stock!r} came after the first action")
        self._stocks[symbol] = stock

    def _harness(self):
        if self._h is None:
            if sorted(self._stocks) != list(range(len(self._stocks))):
                raise SimEngineLimit("symbol ids must be 0, 1, 2... in the simulated gateware")
            # hardware symbol ids in stock name order: the same stocks share one build
            order = sorted(self._stocks, key=self._stocks.__getitem__)
            stocks = tuple(self._stocks[s] for s in order) or ("SYM0",)
            self._from_hw = np.array(order, dtype=np.uint64)
            self._to_hw = np.argsort(self._from_hw).astype(np.uint64)
            from tickpath.sim.harness.build import HarnessError
            try:
                self._h, self.config = matching_harness(stocks, **self._overrides)
            except HarnessError as e:
                raise SimEngineError(f"the simulated gateware did not build: {e}") from e
            top = MatchingTop(**self.config)                 # for its shapes: no elaboration
            top._MustUse__silence = top.engine._MustUse__silence = True
            self._shape = top.out_shape
            self._peek_shapes = {n: top.signature.members[n].shape
                                 for n in ("peek_slot", "peek_level")}
            _check_layout(self._shape)
            layout = data.Layout.cast(self._shape["itch"].shape)
            self._itch_fields = {name: (f.offset, f.width) for name, f in layout}
            self._stride = (self._shape.size + 7) // 8
            self._h.reset()
            self._h.set("peek_addr", 0)
        return self._h

    def prepare(self) -> None:
        """Build (or load) the simulator now, for the stocks set so far (else at the first
        action); a benchmark calls it before timing anything."""
        self._harness()

    def close(self) -> None:
        if self._h is not None:
            self._h.close()

    # --- actions ---------------------------------------------------------------------------
    def _check(self, order: Order, index: int) -> None:
        limit = self.token_limit
        if order.order_id >= limit or (order.action is Action.Replace
                                       and order.new_order_id >= limit):
            raise SimEngineLimit(f"the simulated gateware holds tokens below {limit}", index)

    def run(self, orders: Iterable[Order]) -> list[Event]:
        if self._pending:
            raise EngineError("run with events of earlier actions still unread")
        orders = list(orders)
        h = self._harness()
        events: list[Event] = []
        for start in range(0, len(orders), CHUNK_ACTIONS):
            chunk = orders[start:start + CHUNK_ACTIONS]
            for i, order in enumerate(chunk):
                self._check(order, self._actions + i)
            events += self._stream(h, chunk)
        return events

    def _stream(self, h, orders: list[Order]) -> list[Event]:
        beats = _pack_orders(orders, self._to_hw)
        capacity, levels = self.config["capacity"], self.config["levels"]
        # the longest silence within one action: an FOK pre-scan (a level entry or an order a
        # cycle) with the ITCH queue draining; the longest action: end of day
        drain = 2 * capacity + 4 * levels + 256
        budget = 10_000 + 400 * len(orders) + 64 * capacity
        r = h.stream("i_stream", beats, "o_stream", stride=ORDER_SIZE,
                     collect=64 * len(orders) + 24 * capacity + 4096, drain=drain,
                     max_cycles=budget)
        results = [r]
        while not r.timed_out and (h.get("busy") or r.taken > r.collected):
            if r.taken > r.collected:
                raise SimEngineError(f"{r.taken} output beats, room for {r.collected}")
            r = h.stream(None, sink="o_stream", drain=drain, max_cycles=budget)
            results.append(r)
        if r.timed_out or results[0].sent != len(orders):
            raise SimEngineError(f"the gateware stalled: {results[0].sent} of {len(orders)} "
                                 f"actions taken, busy {h.get('busy')}")
        self.cycles = h.cycle
        return self._split(b"".join(x.data for x in results), orders)

    def _split(self, raw: bytes, orders: list[Order]) -> list[Event]:
        stride = self._stride
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, stride)
        flags = rows[:, _FLAGS]
        ev_rows = rows[(flags & 1) != 0]
        events = _unpack_events(ev_rows[:, _EVENT:_EVENT + EVENT_SIZE], self._from_hw)
        finals = [i for i, e in enumerate(events) if e.last]
        first_action = self._actions
        if len(finals) != len(orders) or (finals and finals[-1] != len(events) - 1):
            raise SimEngineError(f"{len(orders)} actions, {len(finals)} answered in full "
                                 f"({len(events)} events)")
        self._actions += len(orders)
        self._take_itch(rows[(flags & 2) != 0])
        frees = ev_rows[:, _FREE].astype(np.int64) | ev_rows[:, _FREE + 1].astype(np.int64) << 8 \
            | ev_rows[:, _FREE + 2].astype(np.int64) << 16
        start = 0
        cycles = taken = None
        if self.keep_timing:
            cycles = ev_rows[:, _CYCLE:_CYCLE + 8].copy().view("<u8").ravel()
            taken = ev_rows[:, _TAKEN:_TAKEN + 8].copy().view("<u8").ravel()
        for k, end in enumerate(finals):
            first = events[start]
            if first.kind is EventKind.Rejected and first.reason == RejectReason.Full:
                self._full(orders[k], int(frees[start]), first_action + k)
            if cycles is not None:
                self.timing.append(ActionTiming(int(taken[start]), int(cycles[start]),
                                                int(cycles[end]), end - start + 1))
            start = end + 1
        return events

    def _full(self, order: Order, free: int, index: int) -> None:
        """A reject ``f``: the model's too only for an enter finding every slot taken under
        the ``--capacity`` the gateware was built with."""
        if order.action is Action.Enter and free == 0:
            if self._capacity is not None:
                return
            raise SimEngineLimit(f"the simulated gateware holds {self.config['capacity']} "
                                 "resting orders (give --capacity to limit the model alike)",
                                 index)
        raise SimEngineLimit(f"the simulated gateware holds {self.config['levels']} price "
                             "levels per side of a stock; this order needs another", index)

    def _take_itch(self, rows: np.ndarray) -> None:
        if not len(rows):
            return
        fields = self._itch_fields
        width = fields["data"][1] // 8
        tail = rows[:, _ITCH:]
        lanes = tail[:, :width]
        flag_bits = {name: (off, w) for name, (off, w) in fields.items() if name != "data"}

        def column(name):
            off, w = flag_bits[name]
            value = np.zeros(len(tail), dtype=np.int64)
            for b in range(off // 8, (off + w + 7) // 8):
                value |= tail[:, b].astype(np.int64) << (8 * (b - off // 8))
            return (value >> off % 8) & ((1 << w) - 1)

        last = column("last")
        nbytes = column("nbytes") if "nbytes" in fields else np.ones(len(tail), dtype=np.int64)
        mask = np.arange(width)[None, :] < nbytes[:, None]
        self._itch += lanes[mask].tobytes()
        ends = np.cumsum(nbytes)[last != 0]
        base = len(self._itch) - int(nbytes.sum())
        self._itch_ends.extend(int(base + e) for e in ends)

    async def submit(self, order: Order) -> None:
        self._pending.extend(self.run([order]))

    async def recv(self) -> Event:
        if not self._pending:
            raise EngineError("recv with no action outstanding")
        return self._pending.popleft()

    # --- output ----------------------------------------------------------------------------
    def itch_bytes(self) -> bytes:
        """The gateware's ITCH output so far, as it left ``itch_stream``."""
        return bytes(self._itch)

    def itch_messages(self) -> list[itch.ItchMessage]:
        start = self._itch_ends[self._decoded - 1] if self._decoded else 0
        for end in self._itch_ends[self._decoded:]:
            self._messages.append(itch.decode(bytes(self._itch[start:end]), length=end - start))
            start = end
        self._decoded = len(self._itch_ends)
        return list(self._messages)

    def _locates(self) -> dict[int, tuple[int, str]]:
        """symbol id -> (stock locate, stock) from the gateware's ``R`` messages."""
        out = {}
        names = {v: k for k, v in self._stocks.items()}
        for msg in self.itch_messages():
            if msg.type == "R":
                symbol = names.get(msg.stock, len(out))
                out[symbol] = (msg.stock_locate, msg.stock)
        return out

    def read_book(self) -> dict[tuple[int, int], list[tuple[int, list[tuple[int, int, int]]]]]:
        """``(symbol, side) -> [(price, [(token, open shares, ITCH reference), ...]), ...]``,
        best price first, read back through the ``peek`` port while the engine is idle."""
        h = self._harness()
        if h.get("busy"):
            raise SimEngineError("read_book while an action is in progress")
        levels, capacity = self.config["levels"], self.config["capacity"]
        slot_layout = data.Layout.cast(self._peek_shapes["peek_slot"])
        level_layout = data.Layout.cast(self._peek_shapes["peek_level"])

        def field(layout, bits, name):
            f = layout[name]
            return bits >> f.offset & ((1 << f.width) - 1)

        book = {}
        for symbol in range(self.config["symbols"]):
            for side in (0, 1):
                entries = []
                for i in range(levels):
                    h.set("peek_addr", (symbol * 2 + side) * levels + i)
                    h.step()                # the level rows are block RAM: valid a cycle after
                    lv = h.get("peek_level")
                    if not field(level_layout, lv, "valid"):
                        continue
                    price = field(level_layout, lv, "price")
                    slot, tail = field(level_layout, lv, "head"), field(level_layout, lv, "tail")
                    queue = []
                    for _ in range(capacity + 1):
                        h.set("peek_addr", slot)
                        h.step()
                        row = h.get("peek_slot")
                        if field(slot_layout, row, "price") != price \
                                or field(slot_layout, row, "side") != side:
                            raise SimEngineError(f"slot {slot} is not in level {price}")
                        queue.append((field(slot_layout, row, "token"), h.get("peek_open"),
                                      field(slot_layout, row, "ref")))
                        if slot == tail:
                            break
                        slot = h.get("peek_qnext")
                    else:
                        raise SimEngineError(f"the queue of level {price} does not end")
                    entries.append((price, queue))
                entries.sort(key=lambda e: -e[0] if side == 0 else e[0])
                ours = int(self._from_hw[symbol]) if symbol < len(self._from_hw) else symbol
                book[(ours, side)] = entries
        h.set("peek_addr", 0)
        return book

    def snapshot(self) -> dict[int, dict[str, tuple]]:
        book, locates = self.read_book(), self._locates()
        out: dict[int, dict[str, tuple]] = {}
        for symbol, (locate, _) in sorted(locates.items(), key=lambda x: x[1][0]):
            bids, asks = book.get((symbol, 0), []), book.get((symbol, 1), [])
            if not bids and not asks:
                continue
            out[locate] = {key: tuple((p, tuple((ref, o) for _, o, ref in q)) for p, q in side)
                           for key, side in (("bids", bids), ("asks", asks))}
        return out

    def book_lines(self, depth: int | None = None) -> Iterable[dict[str, Any]]:
        book, locates = self.read_book(), self._locates()
        for symbol, (locate, stock) in sorted(locates.items(), key=lambda x: x[1][0]):
            bids, asks = book.get((symbol, 0), []), book.get((symbol, 1), [])
            if not bids and not asks:
                continue
            yield {"stock": stock, "stock_locate": locate,
                   "bids": [[p, sum(o for _, o, _ in q), len(q)] for p, q in bids[:depth]],
                   "asks": [[p, sum(o for _, o, _ in q), len(q)] for p, q in asks[:depth]]}
