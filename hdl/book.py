"""Price-level book: per subscribed symbol, bid and ask levels (price, shares, orders), top-N out.

Storage: one memory row per (slot, side) holding the side's whole sorted level array (``levels``
entries, best first, unused ones zero) and its level count. An operation reads the row, applies
the change to all levels at once (every level compares its price with the operation's; the
better ones stay, the rest shift by one towards the back for an insert or the front for a
removal) and writes it back: the "shift" is one cycle wide, not one cycle per level. A second,
small memory holds each side's best (price, shares) so the other side's BBO needs no full row.

Cycle cost per :class:`~tickpath.protocol.bookfeed.BookOp`: accept (the rows are read), read
(the rows into the block RAMs' output registers: ECP5 block RAM is too slow to come out for
anything but its own register), load (the read data into registers), compare (every level's
price against the op's, registered), order (where the price goes, whether a level holds it,
whether its last order goes, registered from those), apply (the new row from those flags,
written back, and its update sent): the update is valid 6 cycles after the op was taken, 9 when
it both reduces and adds (a replace: compare, order and apply twice). Whether the top ``depth``
levels changed is derived from the compares (the insert position, the equal level's index, and
for a replace whether the add put back what the reduce took), not from comparing the rows. A row
is ``levels x 80 + 32`` bits wide: 512 rows of 16 levels (256 symbols) is about 0.66 Mbit.

Too many levels: inserting a new price into a full side (``levels`` held) drops the worst level
(or the new one, when it is the worst), counts ``level_overflow`` and flags the symbol invalid;
a reduce of a price the row does not hold counts ``level_missing`` and flags it too. A flagged
symbol stays flagged, and says so in every update, until the host clears it (``clear``).

Updates: after each op, one update of the op's side when its top ``depth`` levels changed or the
op flagged the symbol (an op with neither sends nothing), with the BBO; a query sends one always.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.hdl.bram import ColumnMemory
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

        # both read through the block RAM's output register: the read data comes two cycles
        # after the address, out of a flip-flop (ECP5 block RAM itself takes most of a cycle)
        m.submodules.rows = rows = ColumnMemory(shape=Row, depth=2 * self._slots,
                                                registered=True)
        m.submodules.bests = bests = ColumnMemory(shape=Best, depth=2 * self._slots,
                                                  registered=True)

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
        # CMP's operands, one copy per group of levels (the pass's price fans out to a few
        # levels' comparators each, not to all): every copy loads with the pass registers. Their
        # value changes only where the pass's does, so a copy may load on any cycle: copy c also
        # loads when bit c of the cycle counter is set, so no two have the same enable (Yosys
        # merges flip-flops with the same inputs) and no state decode reaches them.
        copies = min(L, 16)
        group = -(-L // copies)
        Copy = data.StructLayout({
            "cmp":    33,                       # Cat(side, ~price): one carry chain per level
            "shares": 33,                       # Cat(reduce, shares or ~reduce_shares)
            "orders": ORDERS_WIDTH,             # +1, or -remove
            "add_shares": 32,                   # for "the level's shares == add_shares"
        })
        copy = [Signal(Copy, name=f"pass_copy{c}") for c in range(copies)]
        copy_value = Signal(Copy)
        m.d.comb += [
            copy_value.cmp.eq(Cat(op.side, ~Mux(load_add, op.add_price, op.reduce_price))),
            copy_value.shares.eq(Cat(~load_add, Mux(load_add, op.add_shares,
                                                    ~op.reduce_shares))),
            copy_value.orders.eq(Mux(load_add, 1, -op.remove)),
            copy_value.add_shares.eq(op.add_shares),
        ]
        # the levels as CMP reads them: equal to `row.levels` from LOAD on, a register of its
        # own so it can be placed by the compares, not by the row's multiplexers, block RAM and
        # payload. It loads on every cycle (the read data in LOAD, else `row_out`, which is
        # `row` outside APPLY), `row` only in LOAD and APPLY: Yosys keeps the two apart.
        lv = Signal(data.ArrayLayout(Level, L))
        in_load = Signal()                      # the FSM is in LOAD (registered in READ)
        m.d.sync += in_load.eq(0)
        present = Signal(L)
        c_better = Signal(L)
        c_equal  = Signal(L)
        # every level's shares and orders as the pass would leave them, registered with the
        # flags: APPLY only selects
        upd = Signal(data.ArrayLayout(data.StructLayout({"shares": 32, "orders": ORDERS_WIDTH}),
                                      L))
        for k in range(L):
            c = copy[k // group]
            side = c.cmp[0]
            # lv + ~price + side carries out when lv > price (bid: side 0) or lv >= price (ask)
            carry = (Cat(side, lv[k].price) + c.cmp)[33]
            m.d.comb += [
                present[k].eq(row.count > k),
                c_better[k].eq(present[k] & (carry ^ side)),
                c_equal[k].eq(present[k] & (lv[k].price == ~c.cmp[1:])),
            ]
            m.d.sync += [
                # lv + shares, or lv + ~reduce_shares + 1
                upd[k].shares.eq((Cat(c.shares[0], lv[k].shares) + c.shares)[1:33]),
                upd[k].orders.eq(lv[k].orders + c.orders),
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
                     same_at.eq(Cat(lv[k].shares == copy[k // group].add_shares
                                    for k in range(L)))]
        found   = Signal()
        full    = Signal()
        gone    = Signal()                      # the equal level's last order goes
        m.d.sync += [found.eq(equal.any()), full.eq(row.count == L),
                     # (a reduce that removes no order leaves every present level's orders)
                     gone.eq(op.remove & (equal & one).any())]
        same = Signal()                         # the equal level's shares == add_shares
        m.d.comb += same.eq((equal & same_at).any())
        # the pass changes the top N levels (exactly: adjacent levels differ in price, a
        # present level holds at least one order); registered in ORDER from CMP's flags (the
        # better levels are a prefix: the insert position is in the top N unless all N are)
        reduces = Signal()                      # the op's reduce takes shares or an order
        changed = Signal()
        # the reduce pass's flags, kept for the add pass: whether the add undoes the reduce
        changed1 = Signal()                     # the reduce pass changed the top N
        same_price  = Signal()                  # reduce_price == add_price
        same_shares = Signal()                  # reduce_shares == add_shares

        # what APPLY does, registered in ORDER: all zero in every other state, so `row_out` is
        # `row` outside APPLY and the update's payload loads from `row_out` in any state. Each
        # level has its own selects (its 80 bits' multiplexers, not the whole row's, behind one
        # flip-flop)
        ins  = Signal()                         # the add inserts a level (none holds its price)
        rem  = Signal()                         # the reduce removes the equal level
        miss = Signal()                         # the reduce finds no level
        put_new  = Signal(L)                    # the level becomes the new one
        put_prev = Signal(L)                    # the level takes the one before (an insert)
        put_next = Signal(L)                    # the level takes the one after (a removal)
        put_upd  = Signal(L)                    # the level's shares and orders change
        row_out = Signal(Row)
        pass_overflow = Signal()
        pass_missing  = Signal()
        # plain expressions: Icarus does not evaluate an `always @*` block whose inputs never
        # change, and these may not (a stream of adds to rows that never fill)
        m.d.comb += [pass_overflow.eq(ins & full), pass_missing.eq(miss)]
        m.d.comb += row_out.eq(row)
        new_level = Signal(Level)
        m.d.comb += [new_level.price.eq(price), new_level.shares.eq(shares),
                     new_level.orders.eq(1)]
        m.d.sync += lv.eq(Mux(in_load, rows.r_data.levels, row_out.levels))
        with m.If(ins & ~full):
            m.d.comb += row_out.count.eq(row.count + 1)
        with m.If(rem):
            m.d.comb += row_out.count.eq(row.count - 1)
        for k in range(L):
            with m.If(put_new[k]):
                m.d.comb += row_out.levels[k].eq(new_level)
            with m.If(put_prev[k]):
                m.d.comb += row_out.levels[k].eq(row.levels[k - 1] if k else 0)
            with m.If(put_next[k]):
                m.d.comb += row_out.levels[k].eq(row.levels[k + 1] if k + 1 < L else 0)
            with m.If(put_upd[k]):
                m.d.comb += [row_out.levels[k].shares.eq(upd[k].shares),
                             row_out.levels[k].orders.eq(upd[k].orders)]

        # the top N changed over the op: after two passes, unless the add put back what the
        # reduce took (same price, and the same shares on a level that stays or goes)
        undone = Signal()                       # registered with the reduce pass's flags
        # whether the op sends an update: its top N changed, or it flagged the symbol (`flags`:
        # registered in ORDER of each pass, or in LOAD of an op that touches no level)
        flags = Signal()
        emit = Signal()
        m.d.comb += emit.eq(Mux(second, (changed1 | changed) & ~undone, changed) | flags)

        # --- control ----------------------------------------------------------------------
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)

        addr = Signal(range(2 * self._slots))
        other_addr = Signal.like(addr)
        m.d.comb += [rows.r_addr.eq(addr), bests.r_addr.eq(other_addr),
                     rows.w_addr.eq(Cat(op.side, op.slot)),
                     bests.w_addr.eq(Cat(op.side, op.slot))]

        was_invalid = Signal()                  # the slot's flag when the op was loaded
        # a slot's flag is written the cycle after the op (or the clear) that sets it: one
        # write a cycle, so a clear after an op still wins, and an op's LOAD comes later still
        flag_en    = Signal()
        flag_slot  = Signal(SLOT_WIDTH)
        flag_value = Signal()
        m.d.sync += flag_en.eq(0)
        with m.If(flag_en):
            m.d.sync += self.invalid.bit_select(flag_slot, 1).eq(flag_value)
        # the flag the op leaves: in APPLY, FINISH and SEND alike (the pass flags are zero
        # outside APPLY, and APPLY adds them to `overflow` and `missing`)
        op_overflow = overflow | pass_overflow
        op_missing  = missing | pass_missing
        now_invalid = Signal()
        m.d.comb += now_invalid.eq(was_invalid | op.invalidate | op_overflow | op_missing)

        # the payload loads whenever the output is free, from `row_out` (`row` outside APPLY):
        # no state decode or decision reaches its enables, only `valid` waits for them
        with m.If(~o.valid | o.ready):
            self._emit(m, op, row_out, other, now_invalid)

        # the rows are written in the op's last cycle (APPLY of its last pass, or FINISH), from
        # a strobe registered the cycle before: no state decode in front of the blocks' enables
        write = Signal()
        m.d.sync += write.eq(0)
        m.d.comb += [rows.w_data.eq(row_out), rows.w_en.eq(write),
                     bests.w_data.price.eq(row_out.levels[0].price),
                     bests.w_data.shares.eq(row_out.levels[0].shares), bests.w_en.eq(write)]

        def finish():
            """Update the flag and the counters (``write`` writes the rows)."""
            m.d.sync += [flag_en.eq(1), flag_slot.eq(op.slot), flag_value.eq(now_invalid)]
            with m.If(op_overflow):
                count("level_overflow")
            with m.If(op_missing):
                count("level_missing")

        def send(emit):
            """Send the update when ``emit``; to IDLE, or to SEND while the output is held."""
            with m.If(~o.valid | o.ready):
                m.d.sync += o.valid.eq(emit)
                with m.If(emit):
                    count("updates")
                m.next = "IDLE"
            with m.Elif(~emit):
                m.next = "IDLE"
            with m.Else():
                m.next = "SEND"

        m.d.sync += [ins.eq(0), rem.eq(0), miss.eq(0),
                     put_new.eq(0), put_prev.eq(0), put_next.eq(0), put_upd.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [addr.eq(Cat(i.p.side, i.p.slot)),
                             other_addr.eq(Cat(~i.p.side, i.p.slot))]
                with m.If(self.clear.valid):
                    m.d.comb += self.clear.ready.eq(1)
                    m.d.sync += [flag_en.eq(1), flag_slot.eq(self.clear.p), flag_value.eq(0)]
                with m.Elif(self.query.valid):
                    m.d.comb += [self.query.ready.eq(1),
                                 addr.eq(Cat(self.query.p.side, self.query.p.slot)),
                                 other_addr.eq(Cat(~self.query.p.side, self.query.p.slot))]
                    m.d.sync += [op.eq(0), op.kind.eq(EventKind.Other),
                                 op.slot.eq(self.query.p.slot), op.side.eq(self.query.p.side),
                                 op.ingress.eq(self.cycle), is_query.eq(1)]
                    m.next = "READ"
                with m.Else():
                    m.d.comb += i.ready.eq(1)
                    with m.If(i.valid):
                        m.d.sync += [op.eq(i.p), is_query.eq(0),
                                     load_pass.eq(1), load_add.eq(~i.p.reduce)]
                        count("ops")
                        m.next = "READ"

            with m.State("READ"):           # the rows are read into the blocks' registers
                # (the flag of the op before, or of a clear, was written in IDLE at the latest)
                m.d.sync += [was_invalid.eq(self.invalid.bit_select(op.slot, 1)),
                             in_load.eq(1)]
                m.next = "LOAD"

            with m.State("LOAD"):           # the rows' read data, straight into registers
                m.d.sync += [
                    row.eq(rows.r_data),
                    row.stock_locate.eq(Mux(is_query, rows.r_data.stock_locate,
                                            op.stock_locate)),
                    other.eq(bests.r_data),
                    overflow.eq(0), missing.eq(0), second.eq(0),
                    reduces.eq(op.remove | (op.reduce_shares != 0)),
                    same_price.eq(op.reduce_price == op.add_price),
                    same_shares.eq(op.reduce_shares == op.add_shares),
                ]
                with m.If(~is_query & (op.reduce | op.add)):
                    m.next = "CMP"
                with m.Else():
                    m.d.sync += [write.eq(~is_query), changed.eq(0),
                                 flags.eq(is_query | (op.invalidate & ~was_invalid))]
                    m.next = "FINISH"

            with m.State("CMP"):
                m.next = "ORDER"

            with m.State("ORDER"):
                found_now = equal.any()
                gone_now = op.remove & (equal & one).any()
                top_equal = equal[:N].any()
                changed_now = Mux(do_add, Mux(found_now, top_equal, ~better[N - 1]),
                                  top_equal & (gone_now | reduces))
                ins_now = do_add & ~found_now
                flags_now = ~was_invalid & (op.invalidate | overflow | missing
                                            | (ins_now & (row.count == L))
                                            | (~do_add & ~found_now))
                m.d.sync += [changed.eq(changed_now), flags.eq(flags_now)]
                mod_now = found_now & (do_add | ~gone_now)
                rem_now = ~do_add & gone_now
                m.d.sync += [ins.eq(ins_now), rem.eq(rem_now), miss.eq(~do_add & ~found_now)]
                for k in range(L):
                    # the first level not better (better levels are a prefix)
                    at_k = ~better[k] & (better[k - 1] if k else 1)
                    m.d.sync += [put_new[k].eq(ins_now & at_k),
                                 put_prev[k].eq(ins_now & ~better[k] & ~at_k),
                                 put_next[k].eq(rem_now & ~better[k]),
                                 put_upd[k].eq(mod_now & equal[k])]
                with m.If(op.reduce & op.add & ~second):
                    m.d.sync += [load_pass.eq(1), load_add.eq(1)]     # the add pass next
                with m.Else():
                    m.d.sync += write.eq(1)                            # the last pass
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
                    finish()
                    send(emit)

            with m.State("FINISH"):         # a query, or an op that touches no level
                finish()
                send(emit)

            with m.State("SEND"):           # the update waits for the output
                with m.If(~o.valid | o.ready):
                    m.d.sync += o.valid.eq(1)
                    count("updates")
                    m.next = "IDLE"

        # the copies of CMP's operands (see above)
        for c in range(copies):
            with m.If(load_pass | self.cycle[c]):
                m.d.sync += copy[c].eq(copy_value)
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
