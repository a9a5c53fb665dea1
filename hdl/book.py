"""Price-level book: per subscribed symbol, bid and ask levels (price, shares, orders), top-N out.

Storage: one memory row per (slot, side) holding the side's whole sorted level array (``levels``
entries, best first, unused ones zero) and its level count. An operation reads the row, applies
the change to all levels at once (every level compares its price with the operation's; the
better ones stay, the rest shift by one towards the back for an insert or the front for a
removal) and writes it back: the "shift" is one cycle wide, not one cycle per level. A second,
small memory holds each side's best (price, shares) so the other side's BBO needs no full row.

Cycle cost per :class:`~tickpath.protocol.bookfeed.BookOp`: accept, pass, finish = 3 cycles
(4 when it both reduces and adds, as a replace does); its update is valid 3 (4) cycles after the
op was taken. A row is ``levels x 80 + 32`` bits wide: 512 rows of 16 levels (256 symbols) is
about 0.66 Mbit.

Too many levels: inserting a new price into a full side (``levels`` held) drops the worst level
(or the new one, when it is the worst), counts ``level_overflow`` and flags the symbol invalid;
a reduce of a price the row does not hold counts ``level_missing`` and flags it too. A flagged
symbol stays flagged, and says so in every update, until the host clears it (``clear``).

Updates: after each op, one update of the op's side when its top ``depth`` levels changed or the
op flagged the symbol (an op with neither sends nothing), with the BBO; a query sends one always.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickpath.protocol.bookfeed import (
    CYCLE_WIDTH,
    ORDERS_WIDTH,
    SLOT_WIDTH,
    BookOp,
    BookQuery,
    book_update_layout,
    level_fields,
)
from tickpath.protocol.feed import EventKind

__all__ = ["Book", "Level", "row_layout", "COUNTERS"]

COUNTERS = ("ops", "updates", "level_overflow", "level_missing")

Level = data.StructLayout({"price": 32, "shares": 32, "orders": ORDERS_WIDTH})
Best = data.StructLayout({"price": 32, "shares": 32})


def row_layout(levels):
    return data.StructLayout({"count": 16, "stock_locate": 16,
                              "levels": data.ArrayLayout(Level, levels)})


class Book(wiring.Component):
    """Price-level book of ``slots`` symbols.

    Parameters
    ----------
    slots : int
        Symbols (1..256).
    levels : int
        Levels held per side.
    depth : int
        Levels per update (top N), at most ``levels``.
    counter_width : int

    Members
    -------
    i_stream : ``In(stream.Signature(BookOp))``
    o_stream : ``Out(stream.Signature(book_update_layout(depth)))``
    query : ``In(stream.Signature(BookQuery))``
        One update of a side as it stands (kind ``Other``; ingress = the cycle it was taken).
    clear : ``In(stream.Signature(SLOT_WIDTH))``
        Clear a slot's invalid flag (the host's decision; sends no update).
    invalid : ``Out(slots)``
        Invalid flag per slot.
    cycle : ``Out(CYCLE_WIDTH)``
        Free-running cycle counter (0 in the cycle after reset); egress stamps come from it.
    ops, updates, level_overflow, level_missing : ``Out(counter_width)``
    """

    def __init__(self, *, slots=256, levels=16, depth=8, counter_width=32):
        if slots not in range(1, (1 << SLOT_WIDTH) + 1):
            raise ValueError(f"slots must be in 1..{1 << SLOT_WIDTH}, not {slots}")
        if levels not in range(1, 1 << 12):
            raise ValueError(f"levels must be in 1..4095, not {levels}")
        if depth not in range(1, levels + 1):
            raise ValueError(f"depth must be in 1..levels ({levels}), not {depth}")
        self._slots = slots
        self._levels = levels
        self._depth = depth
        self._counter_width = counter_width
        members = {
            "i_stream": In(stream.Signature(BookOp)),
            "o_stream": Out(stream.Signature(book_update_layout(depth))),
            "query":    In(stream.Signature(BookQuery)),
            "clear":    In(stream.Signature(SLOT_WIDTH)),
            "invalid":  Out(slots),
            "cycle":    Out(CYCLE_WIDTH),
        }
        members.update({name: Out(counter_width) for name in COUNTERS})
        super().__init__(members)

    slots         = property(lambda self: self._slots)
    levels        = property(lambda self: self._levels)
    depth         = property(lambda self: self._depth)
    counter_width = property(lambda self: self._counter_width)

    def elaborate(self, platform):
        m = Module()
        L, N = self._levels, self._depth
        i, o = self.i_stream, self.o_stream
        Row = row_layout(L)

        m.d.sync += self.cycle.eq(self.cycle + 1)

        m.submodules.rows = rows = Memory(shape=Row, depth=2 * self._slots, init=[])
        m.submodules.bests = bests = Memory(shape=Best, depth=2 * self._slots, init=[])
        row_wp, row_rp = rows.write_port(), rows.read_port(domain="sync")
        best_wp, best_rp = bests.write_port(), bests.read_port(domain="sync")

        op       = Signal(BookOp)
        is_query = Signal()
        row      = Signal(Row)                  # the row being worked on
        original = Signal(data.ArrayLayout(Level, N))
        other    = Signal(Best)
        overflow = Signal()
        missing  = Signal()

        def count(name):
            counter = getattr(self, name)
            m.d.sync += counter.eq(counter + 1)

        # --- one pass: apply an add or a reduce to `row_in`, giving `row_out` ---------------
        row_in   = Signal(Row)
        row_out  = Signal(Row)
        do_add   = Signal()
        price    = Signal(32)
        shares   = Signal(32)
        pass_overflow = Signal()
        pass_missing  = Signal()
        present = Signal(L)
        better  = Signal(L)
        equal   = Signal(L)
        bid = ~op.side
        lv = row_in.levels
        for k in range(L):
            m.d.comb += [
                present[k].eq(k < row_in.count),
                better[k].eq(present[k] & Mux(bid, lv[k].price > price, lv[k].price < price)),
                equal[k].eq(present[k] & (lv[k].price == price)),
            ]
        at = Signal(L)                          # one-hot: the first level not better
        for k in range(L):
            m.d.comb += at[k].eq(~better[k] & (better[k - 1] if k else 1))
        found = equal.any()
        full = row_in.count == L
        m.d.comb += row_out.eq(row_in)
        new_level = Signal(Level)
        m.d.comb += [new_level.price.eq(price), new_level.shares.eq(shares),
                     new_level.orders.eq(1)]
        with m.If(do_add):
            with m.If(found):
                for k in range(L):
                    with m.If(equal[k]):
                        m.d.comb += [row_out.levels[k].shares.eq(lv[k].shares + shares),
                                     row_out.levels[k].orders.eq(lv[k].orders + 1)]
            with m.Else():
                with m.If(full):
                    m.d.comb += pass_overflow.eq(1)
                with m.Else():
                    m.d.comb += row_out.count.eq(row_in.count + 1)
                for k in range(L):
                    with m.If(at[k]):
                        m.d.comb += row_out.levels[k].eq(new_level)
                    with m.Elif(~better[k] & (k > 0)):
                        m.d.comb += row_out.levels[k].eq(lv[k - 1] if k else 0)
        with m.Else():
            with m.If(found):
                gone = Signal()
                for k in range(L):
                    with m.If(equal[k]):
                        m.d.comb += gone.eq(lv[k].orders == op.remove)
                with m.If(gone):
                    m.d.comb += row_out.count.eq(row_in.count - 1)
                    for k in range(L):
                        with m.If(~better[k]):
                            m.d.comb += row_out.levels[k].eq(lv[k + 1] if k + 1 < L else 0)
                with m.Else():
                    for k in range(L):
                        with m.If(equal[k]):
                            m.d.comb += [
                                row_out.levels[k].shares.eq(lv[k].shares - op.reduce_shares),
                                row_out.levels[k].orders.eq(lv[k].orders - op.remove),
                            ]
            with m.Else():
                m.d.comb += pass_missing.eq(1)

        # --- control ----------------------------------------------------------------------
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)

        addr = Signal(range(2 * self._slots))
        other_addr = Signal.like(addr)
        m.d.comb += [row_rp.addr.eq(addr), best_rp.addr.eq(other_addr),
                     row_wp.addr.eq(Cat(op.side, op.slot)),
                     best_wp.addr.eq(Cat(op.side, op.slot))]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [addr.eq(Cat(i.p.side, i.p.slot)),
                             other_addr.eq(Cat(~i.p.side, i.p.slot))]
                with m.If(self.clear.valid):
                    m.d.comb += self.clear.ready.eq(1)
                    m.d.sync += self.invalid.bit_select(self.clear.p, 1).eq(0)
                with m.Elif(self.query.valid):
                    m.d.comb += [self.query.ready.eq(1),
                                 addr.eq(Cat(self.query.p.side, self.query.p.slot)),
                                 other_addr.eq(Cat(~self.query.p.side, self.query.p.slot))]
                    m.d.sync += [op.eq(0), op.kind.eq(EventKind.Other),
                                 op.slot.eq(self.query.p.slot), op.side.eq(self.query.p.side),
                                 op.ingress.eq(self.cycle), is_query.eq(1)]
                    m.next = "PASS1"
                with m.Else():
                    m.d.comb += i.ready.eq(1)
                    with m.If(i.valid):
                        m.d.sync += [op.eq(i.p), is_query.eq(0)]
                        count("ops")
                        m.next = "PASS1"

            with m.State("PASS1"):
                m.d.comb += [
                    row_in.eq(row_rp.data),
                    do_add.eq(~op.reduce),
                    price.eq(Mux(op.reduce, op.reduce_price, op.add_price)),
                    shares.eq(Mux(op.reduce, op.reduce_shares, op.add_shares)),
                ]
                m.d.sync += [
                    original.eq(row_rp.data.levels.as_value()[:N * Level.size]),
                    other.eq(best_rp.data),
                    row.eq(Mux(op.reduce | op.add, row_out, row_rp.data)),
                    row.stock_locate.eq(Mux(is_query, row_rp.data.stock_locate,
                                            op.stock_locate)),
                    overflow.eq((op.reduce | op.add) & pass_overflow),
                    missing.eq((op.reduce | op.add) & pass_missing),
                ]
                with m.If(op.reduce & op.add):
                    m.next = "PASS2"
                with m.Else():
                    m.next = "FINISH"

            with m.State("PASS2"):
                m.d.comb += [row_in.eq(row), do_add.eq(1),
                             price.eq(op.add_price), shares.eq(op.add_shares)]
                m.d.sync += [row.eq(row_out), overflow.eq(overflow | pass_overflow),
                             missing.eq(missing | pass_missing)]
                m.next = "FINISH"

            with m.State("FINISH"):
                was_invalid = self.invalid.bit_select(op.slot, 1)
                now_invalid = was_invalid | op.invalidate | overflow | missing
                top = row.levels.as_value()[:N * Level.size]
                emit = is_query | (top != original.as_value()) | (now_invalid & ~was_invalid)
                with m.If(~o.valid | o.ready | ~emit):
                    m.d.comb += [row_wp.data.eq(row), row_wp.en.eq(~is_query),
                                 best_wp.data.price.eq(row.levels[0].price),
                                 best_wp.data.shares.eq(row.levels[0].shares),
                                 best_wp.en.eq(~is_query)]
                    m.d.sync += self.invalid.bit_select(op.slot, 1).eq(now_invalid)
                    with m.If(overflow):
                        count("level_overflow")
                    with m.If(missing):
                        count("level_missing")
                    with m.If(emit):
                        count("updates")
                        self._emit(m, op, row, other, now_invalid)
                    m.next = "IDLE"
        return m

    def _emit(self, m, op, row, other, invalid):
        o = self.o_stream
        p = o.p
        best = row.levels[0]
        m.d.sync += [
            o.valid.eq(1),
            p.kind.eq(op.kind), p.slot.eq(op.slot), p.stock_locate.eq(row.stock_locate),
            p.side.eq(op.side), p.invalid.eq(invalid), p.levels.eq(row.count),
            p.bid_price.eq(Mux(op.side, other.price, best.price)),
            p.bid_shares.eq(Mux(op.side, other.shares, best.shares)),
            p.ask_price.eq(Mux(op.side, best.price, other.price)),
            p.ask_shares.eq(Mux(op.side, best.shares, other.shares)),
            p.ingress.eq(op.ingress), p.egress.eq(self.cycle + 1),
        ]
        for k, (price, shares, orders) in enumerate(level_fields(self._depth)):
            m.d.sync += [p[price].eq(row.levels[k].price), p[shares].eq(row.levels[k].shares),
                         p[orders].eq(row.levels[k].orders)]
