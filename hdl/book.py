"""Price-level book: per subscribed symbol, bid and ask levels (price, shares, orders), top-N out.

Storage: one memory row per (slot, side) holding the side's whole sorted level array (``levels``
entries, best first, unused ones zero) and its level count. An operation reads the row, applies
the change to all levels at once (every level compares its price with the operation's; the
better ones stay, the rest shift by one towards the back for an insert or the front for a
removal) and writes it back: the "shift" is one cycle wide, not one cycle per level. A second,
small memory holds each side's best (price, shares) so the other side's BBO needs no full row.

Cycle cost per :class:`~tickpath.protocol.bookfeed.BookOp`: accept (the rows are read), load
(their read data into registers), compare (every level's price against the op's, registered),
order (where the price goes, whether a level holds it, whether its last order goes, registered
from those), apply (the new row from those flags, written back, and its update sent): the
update is valid 5 cycles after the op was taken, 8 when it both reduces and adds (a replace:
compare, order and apply twice). Whether the top ``depth`` levels changed is derived from the
compares (the changed level's index, and for a replace whether the add put back what the
reduce took), not from comparing the rows. A row is ``levels x 80 + 32`` bits wide: 512 rows
of 16 levels (256 symbols) is about 0.66 Mbit.

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

from tickpath.hdl.counters import late_counters
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
        other    = Signal(Best)
        overflow = Signal()
        missing  = Signal()
        second   = Signal()                     # the add pass of an op that reduces and adds

        # counters count a cycle late (one strobe each, not the counters' every enable)
        count = late_counters(m, {name: getattr(self, name) for name in COUNTERS})

        # --- one pass: an add or a reduce on `row`: CMP, ORDER, then APPLY -------------------
        # CMP and ORDER register what every level says about the pass's price; APPLY builds
        # `row_out` from those flags alone, so no stage has a compare in front of a wide select.
        # The pass's price and shares are registers, so every compare starts from a flip-flop.
        do_add = Signal()
        price  = Signal(32)
        shares = Signal(32)
        # the pass loads from a strobe registered the cycle before (the op taken: its first
        # pass; ORDER of a reduce + add: the add pass), so no state decode drives the enables
        load_pass = Signal()
        load_add  = Signal()
        m.d.sync += load_pass.eq(0)
        with m.If(load_pass):
            m.d.sync += [do_add.eq(load_add),
                         price.eq(Mux(load_add, op.add_price, op.reduce_price)),
                         shares.eq(Mux(load_add, op.add_shares, op.reduce_shares))]
        bid = ~op.side
        lv = row.levels
        present = Signal(L)
        c_better = Signal(L)
        c_equal  = Signal(L)
        for k in range(L):
            m.d.comb += [
                present[k].eq(row.count > k),
                c_better[k].eq(present[k] & Mux(bid, lv[k].price > price, lv[k].price < price)),
                c_equal[k].eq(present[k] & (lv[k].price == price)),
            ]
        # every level's shares and orders as the pass would leave them, registered with the
        # flags: APPLY only selects
        upd = Signal(data.ArrayLayout(data.StructLayout({"shares": 32, "orders": ORDERS_WIDTH}),
                                      L))
        for k in range(L):
            m.d.sync += [
                upd[k].shares.eq(Mux(do_add, lv[k].shares + shares, lv[k].shares - shares)),
                upd[k].orders.eq(Mux(do_add, lv[k].orders + 1, lv[k].orders - op.remove)),
            ]
        # CMP registers every level's compares with the pass's price (and what else each level
        # says); ORDER registers what follows from them: where the price goes, whether a level
        # holds it, whether its last order goes. Both register every cycle: `row` and the pass
        # hold still from CMP to APPLY.
        better  = Signal(L)
        equal   = Signal(L)
        one     = Signal(L)                     # the level holds one order
        same_at = Signal(L)                     # the level's shares == add_shares
        m.d.sync += [better.eq(c_better), equal.eq(c_equal),
                     one.eq(Cat(lv[k].orders == 1 for k in range(L))),
                     same_at.eq(Cat(lv[k].shares == op.add_shares for k in range(L)))]
        at      = Signal(L)                     # one-hot: the first level not better
        found   = Signal()
        full    = Signal()
        gone    = Signal()                      # the equal level's last order goes
        m.d.sync += [at.eq(Cat(~better[k] & (better[k - 1] if k else 1) for k in range(L))),
                     found.eq(equal.any()), full.eq(row.count == L),
                     # (a reduce that removes no order leaves every present level's orders)
                     gone.eq(op.remove & (equal & one).any())]
        same = Signal()                         # the equal level's shares == add_shares
        m.d.comb += same.eq((equal & same_at).any())
        # the pass changes the top N levels (exactly: adjacent levels differ in price, a
        # present level holds at least one order); from the registered flags, beside APPLY's
        # selects
        reduces = Signal()                      # the op's reduce takes shares or an order
        changed = Signal()
        top_equal, top_at = equal[:N].any(), at[:N].any()
        m.d.comb += changed.eq(Mux(do_add, Mux(found, top_equal, top_at),
                                   top_equal & (gone | reduces)))
        # the reduce pass's flags, kept for the add pass: whether the add undoes the reduce
        changed1 = Signal()                     # the reduce pass changed the top N
        same_price  = Signal()                  # reduce_price == add_price
        same_shares = Signal()                  # reduce_shares == add_shares

        row_out = Signal(Row)
        pass_overflow = Signal()
        pass_missing  = Signal()
        # plain expressions: Icarus does not evaluate an `always @*` block whose inputs never
        # change, and these may not (a stream of adds to rows that never fill)
        m.d.comb += [pass_overflow.eq(do_add & ~found & full),
                     pass_missing.eq(~do_add & ~found)]
        m.d.comb += row_out.eq(row)
        new_level = Signal(Level)
        m.d.comb += [new_level.price.eq(price), new_level.shares.eq(shares),
                     new_level.orders.eq(1)]
        with m.If(do_add):
            with m.If(found):
                for k in range(L):
                    with m.If(equal[k]):
                        m.d.comb += [row_out.levels[k].shares.eq(upd[k].shares),
                                     row_out.levels[k].orders.eq(upd[k].orders)]
            with m.Else():
                with m.If(~full):
                    m.d.comb += row_out.count.eq(row.count + 1)
                for k in range(L):
                    with m.If(at[k]):
                        m.d.comb += row_out.levels[k].eq(new_level)
                    with m.Elif(~better[k] & (k > 0)):
                        m.d.comb += row_out.levels[k].eq(lv[k - 1] if k else 0)
        with m.Else():
            with m.If(found):
                with m.If(gone):
                    m.d.comb += row_out.count.eq(row.count - 1)
                    for k in range(L):
                        with m.If(~better[k]):
                            m.d.comb += row_out.levels[k].eq(lv[k + 1] if k + 1 < L else 0)
                with m.Else():
                    for k in range(L):
                        with m.If(equal[k]):
                            m.d.comb += [row_out.levels[k].shares.eq(upd[k].shares),
                                         row_out.levels[k].orders.eq(upd[k].orders)]

        # the top N changed over the op: after two passes, unless the add put back what the
        # reduce took (same price, and the same shares on a level that stays or goes)
        undone = Signal()                       # registered with the reduce pass's flags
        changed_op = Signal()
        m.d.comb += changed_op.eq(Mux(second, (changed1 | changed) & ~undone, changed))

        # --- control ----------------------------------------------------------------------
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)

        addr = Signal(range(2 * self._slots))
        other_addr = Signal.like(addr)
        m.d.comb += [row_rp.addr.eq(addr), best_rp.addr.eq(other_addr),
                     row_wp.addr.eq(Cat(op.side, op.slot)),
                     best_wp.addr.eq(Cat(op.side, op.slot))]

        was_invalid = Signal()                  # the slot's flag when the op was loaded
        sent_invalid = Signal()                 # the flag an update waiting in SEND carries

        def finish(result, now_invalid, op_overflow, op_missing):
            """Write ``result`` back, update the flag and the counters."""
            m.d.comb += [row_wp.data.eq(result), row_wp.en.eq(~is_query),
                         best_wp.data.price.eq(result.levels[0].price),
                         best_wp.data.shares.eq(result.levels[0].shares),
                         best_wp.en.eq(~is_query)]
            m.d.sync += self.invalid.bit_select(op.slot, 1).eq(now_invalid)
            with m.If(op_overflow):
                count("level_overflow")
            with m.If(op_missing):
                count("level_missing")

        def send(result, emit, now_invalid):
            """Send ``result``'s update when ``emit``; to IDLE, or to SEND while the output is
            held. The payload loads whenever the output is free: only ``valid`` waits for
            ``emit``, so the decision does not reach the payload's enables."""
            with m.If(~o.valid | o.ready):
                self._emit(m, op, result, other, now_invalid)
                m.d.sync += o.valid.eq(emit)
                with m.If(emit):
                    count("updates")
                m.next = "IDLE"
            with m.Elif(~emit):
                m.next = "IDLE"
            with m.Else():
                m.d.sync += sent_invalid.eq(now_invalid)
                m.next = "SEND"

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
                    m.next = "LOAD"
                with m.Else():
                    m.d.comb += i.ready.eq(1)
                    with m.If(i.valid):
                        m.d.sync += [op.eq(i.p), is_query.eq(0),
                                     load_pass.eq(1), load_add.eq(~i.p.reduce)]
                        count("ops")
                        m.next = "LOAD"

            with m.State("LOAD"):           # the rows' read data, straight into registers
                m.d.sync += [
                    row.eq(row_rp.data),
                    row.stock_locate.eq(Mux(is_query, row_rp.data.stock_locate,
                                            op.stock_locate)),
                    other.eq(best_rp.data),
                    overflow.eq(0), missing.eq(0), second.eq(0),
                    reduces.eq(op.remove | (op.reduce_shares != 0)),
                    was_invalid.eq(self.invalid.bit_select(op.slot, 1)),
                    same_price.eq(op.reduce_price == op.add_price),
                    same_shares.eq(op.reduce_shares == op.add_shares),
                ]
                with m.If(~is_query & (op.reduce | op.add)):
                    m.next = "CMP"
                with m.Else():
                    m.next = "FINISH"

            with m.State("CMP"):
                m.next = "ORDER"

            with m.State("ORDER"):
                with m.If(op.reduce & op.add & ~second):
                    m.d.sync += [load_pass.eq(1), load_add.eq(1)]     # the add pass next
                m.next = "APPLY"

            with m.State("APPLY"):
                m.d.sync += [row.eq(row_out), overflow.eq(overflow | pass_overflow),
                             missing.eq(missing | pass_missing)]
                with m.If(op.reduce & op.add & ~second):
                    # the reduce pass's flags, and whether the add can put back what it took
                    m.d.sync += [second.eq(1), changed1.eq(changed),
                                 undone.eq(same_price & found & op.remove
                                           & Mux(gone, same, same_shares))]
                    m.next = "CMP"
                with m.Else():
                    op_overflow = overflow | pass_overflow
                    op_missing = missing | pass_missing
                    now_invalid = was_invalid | op.invalidate | op_overflow | op_missing
                    finish(row_out, now_invalid, op_overflow, op_missing)
                    send(row_out, changed_op | (now_invalid & ~was_invalid), now_invalid)

            with m.State("FINISH"):         # a query, or an op that touches no level
                now_invalid = was_invalid | op.invalidate
                finish(row, now_invalid, 0, 0)
                send(row, is_query | (now_invalid & ~was_invalid), now_invalid)

            with m.State("SEND"):           # the update waits for the output
                with m.If(~o.valid | o.ready):
                    self._emit(m, op, row, other, sent_invalid)
                    m.d.sync += o.valid.eq(1)
                    count("updates")
                    m.next = "IDLE"
        return m

    def _emit(self, m, op, row, other, invalid):
        o = self.o_stream
        p = o.p
        best = row.levels[0]
        m.d.sync += [
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
