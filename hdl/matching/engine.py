"""Price-time matching engine: :class:`OrderRecord` actions in, :class:`EventRecord` events out.

Ref: the pinned semantics are the docstring of :mod:`tickpath.model.matching` (the golden
:class:`~tickpath.model.matching.MatchingModel`); records in :mod:`tickpath.protocol.records`.

Structure
---------
* **Order store** (memories, one row per slot): the static fields (:func:`slot_layout`), the
  open shares, the level queue links ``qnext``/``qprev`` and the age links ``anext``/``aprev``.
  The age list holds every resting order in ITCH reference order (end of day walks it). A list
  end is recognised by comparing with the level's (or the age list's) head and tail, so no
  link ever needs a null value and resting an order is one cycle of writes.
* **Free list**: a stack of free slot numbers in a memory (``fstack``), ``free`` entries.
* **Token table**: direct-mapped, ``2**token_bits`` rows of (slot, symbol, valid). The host assigns
  internal tokens below ``2**token_bits`` (a token may be reused once its order is finished,
  as in the model); an enter or a replace's new token at or above the bound is rejected ``O``.
* **Price levels**: per symbol and side ``levels`` unsorted entries (valid, price, head,
  tail); an order keeps its entry while it rests. They live in block RAM, one row per symbol
  in each of two memories (buy, sell), a row holding the side's ``levels`` entries. An action
  works on a **working copy** of its symbol's two rows in registers: the rows are read as the
  action is taken (an enter: its symbol; a cancel or replace: the symbol in the token table
  row, read as the token is checked) and seen straight off the read ports in the cycle after,
  so no action waits for them; the copy is written back (both rows) in ``DONE`` when it
  changed. The best contra level is found over the working registers' entries of one side
  from every pair of prices compared at once (one comparator level, no chain), and whether the
  aggressor crosses from each entry compared with the limit. A mass cancel moving to an order
  of another symbol writes the copy back and reads that symbol's rows (2 cycles). End of day
  marks every row empty (a bit per symbol, ``row_live``, which a row read is masked with), so
  the memories need no clearing.

Deviations from the model (none reachable while the host honours the bounds)
* a day order (enter, or a replace that loses priority) whose price would need a new level
  on a side that has ``levels`` of them already is rejected ``f`` before it is accepted;
* a token at or above ``2**token_bits`` is rejected ``O`` (enter, replace's new token);
* a ``tif`` value of 3 (not in :class:`TimeInForce`) on an enter is rejected ``O``;
* memories are not cleared by reset: end of day empties the order store, the token table
  and the levels (reset also empties the levels: ``row_live`` is reset), so a reset after it
  starts a clean day (a reset mid-day does not).

ITCH output (``itch=True``, the default): the FSM writes one ITCH record (:mod:`.itch_out`) in
the same cycle as the event it goes with, into a queue of ``itch_depth`` records;
:class:`~.itch_out.ItchSerializer` turns them into messages (``itch_stream``, ``itch_width``
bytes a beat, ``first``/``last`` on each message's first and last beat, each beat stamped with
the cycle its action was taken in), exactly ``MatchingModel.itch`` encoded: ``S`` ``O`` first
after reset (timestamp 0), ``R`` at a symbol's first accepted enter (locates 1, 2, 3... kept in
registers), ``A``/``U`` when an order rests, ``E`` per fill, ``X`` for a partial cancel or a
priority-keeping replace that reduces, ``D`` for a full cancel, a self-match cancel, a
priority-losing replace whose price reaches the contra best, and end of day; ``S`` ``C`` with
``closed``. Timestamps count actions taken. The ITCH path costs no cycle while the queue has
room (an ITCH message's first beat leaves in the cycle of its event, or the one after); a full
queue holds the engine back, so sustained throughput is bounded by the ITCH beats (A 36 bytes, E
31, D 19...: 5, 4, 3 beats at ``itch_width`` 8, below a resting enter's 7 cycles).
:class:`~.market_data.MarketData` frames the stream into MoldUDP64 packets.

Cycles from an action taken to its first event out, = cycles per action (``o_stream`` ready):
reject 3; resting enter 7; cancel 4; priority-keeping replace 6. Crossing: accepted out at 4,
then each fill or self-match cancel 3 cycles; FOK/min-qty pre-scan 1 per contra level entry
plus 1 per order scanned; end of day 5 + 1 per resting order in all; mass cancel (an end-of-day
record with ``min_qty`` ``MASS_CANCEL_FIRM``/``MASS_CANCEL_ALL``) 3 + 1 per resting order kept +
2 per order canceled + 2 each time the order canceled is of another symbol than the last one
(the first: than the record's ``symbol``), no event at all if nothing is canceled. One action
at a time.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.data import ArrayLayout
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tickpath.model.matching import (
    MASS_CANCEL_ALL,
    MASS_CANCEL_FIRM,
    MAX_PRICE,
    MAX_SHARES,
    MIN_PRICE,
)
from tickpath.protocol.records import (
    Action,
    CancelReason,
    EventKind,
    EventRecord,
    OrderRecord,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)

from .itch_out import (
    ITCH_TYPES,
    ItchSerializer,
    _select,
    default_stocks,
    itch_beat_layout,
    itch_record_layout,
)
from .layouts import SHARES_WIDTH, level_layout, slot_layout, token_entry_layout

__all__ = ["MatchingEngine"]


def _hundredth(price):
    """``price % 100 == 0`` for a 32-bit ``price`` without a divider: divisible by 4 (the low two
    bits) and by 25, found by folding: ``2**20 == 1`` and ``2**10 == -1`` (mod 25) reduce the price
    to a 12-bit number ``t`` of the same residue (1025 = 41 * 25 keeps it positive), which is a
    multiple of 25 from a table."""
    s = price[:20] + price[20:32]                           # 21 bits
    t = s[:10] + s[20] + 1025 - s[10:20]                    # 2..2049
    return (price[:2] == 0) & _multiple_of_25(t[:12])


def _multiple_of_25(t):
    return t.matches(*(format(k, f"0{len(t)}b") for k in range(0, 1 << len(t), 25)))


class MatchingEngine(wiring.Component):
    """Matching engine for ``symbols`` symbols (internal symbol ids ``0..symbols-1``).

    Parameters
    ----------
    symbols : int
        Symbols traded; a symbol id at or above it is rejected ``S``.
    capacity : int
        Order store slots: most resting orders at once (the model's ``capacity``).
    levels : int
        Price level entries per symbol and side (a power of two).
    token_bits : int
        Host tokens are below ``2**token_bits`` (the token table's depth).
    itch : bool
        Produce the ITCH 5.0 market data (``itch_stream``); off, ``itch_stream`` never valid.
    stocks : sequence of str
        ITCH stock name of each symbol id (default ``SYM0``, ``SYM1``...).
    itch_depth : int
        ITCH records queued before the serializer; a full queue holds the engine back.
    itch_width : int
        ITCH bytes per ``itch_stream`` beat (8: a 64-bit stream; 1: bytes, as a ``ByteBeat``).

    Members
    -------
    i_stream : ``In(stream.Signature(OrderRecord))``
        Actions, one at a time (ready while the engine is idle).
    o_stream : ``Out(stream.Signature(EventRecord))``
        Events in order; ``last`` on the final event of each action.
    itch_stream : ``Out(stream.Signature(itch_beat_layout(itch_width)))``
        The engine's ITCH 5.0 messages, one per packet, ``itch_width`` bytes a beat:
        exactly ``MatchingModel.itch`` encoded (S, R, A, E, X, D, U, as its docstring pins).
        ``ingress`` on every beat: the cycle (since reset) its action was taken in (``S O``:
        the cycle its record was written).
    busy : ``Out(1)``
        An action is in progress.
    free : ``Out(range(capacity + 1))``
        Free order store slots.
    actions, events, rejects, fills : ``Out(32)``
        Counters (wrap).
    peek_addr : ``In(16)``
        Test and debug read-back while idle (``i_stream`` not valid): a slot number
        (``peek_slot``, ``peek_open``, ``peek_qnext``) and a level index
        ``(symbol*2+side)*levels+i`` (``peek_level``), all valid the cycle after.
    """

    def __init__(self, *, symbols=4, capacity=64, levels=8, token_bits=10, itch=True,
                 stocks=None, itch_depth=16, itch_width=8):
        if symbols not in range(1, 1 << 16):
            raise ValueError(f"symbols must be in 1..65535, not {symbols}")
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, not {capacity}")
        if levels < 1 or levels & (levels - 1):
            raise ValueError(f"levels must be a power of two, not {levels}")
        if token_bits not in range(1, 33):
            raise ValueError(f"token_bits must be in 1..32, not {token_bits}")
        self._symbols = symbols
        self._capacity = capacity
        self._levels = levels
        self._token_bits = token_bits
        self._itch = bool(itch)
        self._stocks = default_stocks(symbols) if stocks is None else tuple(stocks)
        if len(self._stocks) != symbols:
            raise ValueError(f"{len(self._stocks)} stock names for {symbols} symbols")
        if itch_depth < 2:
            raise ValueError(f"itch_depth must be at least 2, not {itch_depth}")
        self._itch_depth = itch_depth
        if itch_width not in range(1, 65):
            raise ValueError(f"itch_width must be in 1..64 bytes, not {itch_width}")
        self._itch_width = itch_width
        self.slot_width = ceil_log2(capacity)
        self.symbol_width = max(ceil_log2(symbols), 1)
        self.level_width = max(ceil_log2(levels), 1)
        self.slot_shape = slot_layout(slot_width=self.slot_width, symbol_width=self.symbol_width,
                                      level_width=self.level_width)
        self.level_shape = level_layout(slot_width=self.slot_width)
        super().__init__({
            "i_stream":   In(stream.Signature(OrderRecord)),
            "o_stream":   Out(stream.Signature(EventRecord)),
            "itch_stream": Out(stream.Signature(itch_beat_layout(itch_width))),
            "busy":       Out(1),
            "free":       Out(range(capacity + 1)),
            "actions":    Out(32),
            "events":     Out(32),
            "rejects":    Out(32),
            "fills":      Out(32),
            "peek_addr":  In(16),
            "peek_slot":  Out(self.slot_shape),
            "peek_open":  Out(SHARES_WIDTH),
            "peek_qnext": Out(self.slot_width),
            "peek_level": Out(self.level_shape),
        })

    symbols = property(lambda self: self._symbols)
    capacity = property(lambda self: self._capacity)
    levels = property(lambda self: self._levels)
    token_bits = property(lambda self: self._token_bits)
    itch = property(lambda self: self._itch)
    stocks = property(lambda self: self._stocks)
    itch_width = property(lambda self: self._itch_width)

    def elaborate(self, platform):
        m = Module()
        S, N, L = self._symbols, self._capacity, self._levels
        SW, LW, YW = self.slot_width, self.level_width, self.symbol_width

        # --- order store memories ---------------------------------------------------------
        m.submodules.slots = slots = Memory(shape=self.slot_shape, depth=N, init=[])
        m.submodules.opens = opens = Memory(shape=SHARES_WIDTH, depth=N, init=[])
        m.submodules.qnext = qnext = Memory(shape=SW, depth=N, init=[])
        m.submodules.qprev = qprev = Memory(shape=SW, depth=N, init=[])
        m.submodules.anext = anext = Memory(shape=SW, depth=N, init=[])
        m.submodules.aprev = aprev = Memory(shape=SW, depth=N, init=[])
        m.submodules.fstack = fstack = Memory(shape=SW, depth=N, init=list(range(N)))
        m.submodules.tokens = tokens = Memory(
            shape=token_entry_layout(slot_width=SW, symbol_width=YW), depth=1 << self._token_bits,
            init=[])

        rd_slot, wr_slot = slots.read_port(), slots.write_port()
        rd_open, wr_open = opens.read_port(), opens.write_port()
        rd_qn, wr_qn = qnext.read_port(), qnext.write_port()
        rd_qp, wr_qp = qprev.read_port(), qprev.write_port()
        rd_an, wr_an = anext.read_port(), anext.write_port()
        rd_ap, wr_ap = aprev.read_port(), aprev.write_port()
        rd_fs, wr_fs = fstack.read_port(), fstack.write_port()
        rd_tk, wr_tk = tokens.read_port(), tokens.write_port()

        ra = Signal(SW)                 # slot read address (all slot memories)
        ta = Signal(32)                 # token table read address
        for port in (rd_slot, rd_open, rd_qn, rd_qp, rd_an, rd_ap):
            m.d.comb += port.addr.eq(ra)
        m.d.comb += rd_tk.addr.eq(ta)

        # --- price levels: one block RAM row per symbol and side (its L entries), and a
        # working copy of one symbol's two rows in registers (entry index Cat(entry, side)) ---
        EW = ceil_log2(L)                           # entry index bits (0 when L == 1)
        row_shape = ArrayLayout(self.level_shape, L)
        m.submodules.levels_buy = lv_buy = Memory(shape=row_shape, depth=S, init=[])
        m.submodules.levels_sell = lv_sell = Memory(shape=row_shape, depth=S, init=[])
        rd_lv = [lv_buy.read_port(), lv_sell.read_port()]
        wr_lv = [lv_buy.write_port(), lv_sell.write_port()]
        la = Signal(YW)                             # level row read address (a symbol)
        ld = Signal()                               # the rows of `wk_sym` are on the read ports
        wk_sym = Signal(YW)                         # the symbol the working copy holds
        dirty = Signal()                            # the working copy differs from its rows
        wb = Signal()                               # write the working copy back (comb)
        row_live = Signal(S)                        # a row was written since end of day
        rd_live = Signal()                          # ... the row on the read ports was
        for port in rd_lv:
            m.d.comb += port.addr.eq(la)
        m.d.sync += [rd_live.eq(row_live.bit_select(la, 1)), ld.eq(0)]
        wk_valid = [Signal(name=f"wk_valid_{k}") for k in range(2 * L)]
        wk_price = [Signal(32, name=f"wk_price_{k}") for k in range(2 * L)]
        wk_head = [Signal(SW, name=f"wk_head_{k}") for k in range(2 * L)]
        wk_tail = [Signal(SW, name=f"wk_tail_{k}") for k in range(2 * L)]
        # the working view: the rows just read (`ld`), else the working registers
        vw_valid = [Signal(name=f"lv_valid_{k}") for k in range(2 * L)]
        vw_price = [Signal(32, name=f"lv_price_{k}") for k in range(2 * L)]
        vw_head = [Signal(SW, name=f"lv_head_{k}") for k in range(2 * L)]
        vw_tail = [Signal(SW, name=f"lv_tail_{k}") for k in range(2 * L)]
        for k in range(2 * L):
            row = rd_lv[k // L].data[k % L]
            m.d.comb += [vw_valid[k].eq(Mux(ld, row.valid & rd_live, wk_valid[k])),
                         vw_price[k].eq(Mux(ld, row.price, wk_price[k])),
                         vw_head[k].eq(Mux(ld, row.head, wk_head[k])),
                         vw_tail[k].eq(Mux(ld, row.tail, wk_tail[k]))]
            m.d.comb += [wr_lv[k // L].data[k % L].valid.eq(wk_valid[k]),
                         wr_lv[k // L].data[k % L].price.eq(wk_price[k]),
                         wr_lv[k // L].data[k % L].head.eq(wk_head[k]),
                         wr_lv[k // L].data[k % L].tail.eq(wk_tail[k])]
        lv_head, lv_tail = Array(vw_head), Array(vw_tail)      # indexed Cat(entry, side)
        for port in wr_lv:
            m.d.comb += [port.addr.eq(wk_sym), port.en.eq(wb)]
        with m.If(wb):
            m.d.sync += [dirty.eq(0), row_live.eq(row_live | (Const(1, S) << wk_sym))]

        def load(symbol):
            """Read ``symbol``'s two rows: the working view has them next cycle (the working
            copy must have been written back)."""
            m.d.comb += la.eq(symbol)
            m.d.sync += [ld.eq(1), wk_sym.eq(symbol)]

        # one level write per cycle, decoded once (keeps each register's logic small)
        lw_index = Signal(range(2 * L))
        lw_valid_en, lw_valid = Signal(), Signal()
        lw_price_en, lw_head_en, lw_tail_en = Signal(), Signal(), Signal()
        lw_price, lw_head, lw_tail = Signal(32), Signal(SW), Signal(SW)
        lw_clear = Signal()                         # end of day: every entry invalid
        for k in range(2 * L):
            hit = lw_index == k
            m.d.sync += [wk_valid[k].eq(vw_valid[k]), wk_price[k].eq(vw_price[k]),
                         wk_head[k].eq(vw_head[k]), wk_tail[k].eq(vw_tail[k])]
            with m.If(lw_valid_en & hit):
                m.d.sync += wk_valid[k].eq(lw_valid)
            with m.If(lw_price_en & hit):
                m.d.sync += wk_price[k].eq(lw_price)
            with m.If(lw_head_en & hit):
                m.d.sync += wk_head[k].eq(lw_head)
            with m.If(lw_tail_en & hit):
                m.d.sync += wk_tail[k].eq(lw_tail)
            with m.If(lw_clear):
                m.d.sync += wk_valid[k].eq(0)
        with m.If(lw_valid_en | lw_price_en | lw_head_en | lw_tail_en):
            m.d.sync += dirty.eq(1)
        with m.If(lw_clear):
            m.d.sync += [dirty.eq(0), row_live.eq(0)]

        # --- action registers -------------------------------------------------------------
        a = Signal(OrderRecord)                     # the action as received
        cur_sym = Signal(YW)                        # symbol / side of the book being worked
        cur_side = Signal(1)
        agg_tok = Signal(32)                        # aggressor token (new token on replace)
        agg_firm = Signal(16)
        left = Signal(SHARES_WIDTH)                 # aggressor shares left
        limit = Signal(32)
        market = Signal()
        rests = Signal()                            # remainder rests (day limit)
        need = Signal(SHARES_WIDTH)                 # FOK / min-qty liquidity needed
        closed = Signal()

        r_slot = Signal(SW)                         # the resting order being worked on
        r = Signal(self.slot_shape)
        r_open = Signal(SHARES_WIDTH)
        r_qn, r_qp, r_an, r_ap = (Signal(SW, name=n) for n in ("r_qn", "r_qp", "r_an", "r_ap"))
        fill = Signal(SHARES_WIDTH)
        ps_l = Signal(range(L + 1))
        ps_total = Signal(SHARES_WIDTH + SW + 1)
        ps_cur = Signal(SW)
        e_cur = Signal(SW)

        age_any = Signal()
        age_head = Signal(SW)
        age_tail = Signal(SW)
        sp = Signal(range(N + 1), init=N)           # free slots; fstack[0:sp] are free
        next_ref = Signal(32, init=1)
        match_no = Signal(64)
        m.d.comb += [rd_fs.addr.eq(sp - 1), self.free.eq(sp)]

        # --- event output: hold register -> output register ---------------------------------
        hold = Signal(EventRecord)
        hold_valid = Signal()
        o_valid = Signal()
        o_payload = Signal(EventRecord)
        emit = Signal()
        ev = Signal(EventRecord)
        finish = Signal()
        o_free = ~o_valid | self.o_stream.ready
        it_room = Signal()                          # the ITCH queue takes a record
        can_emit = (~hold_valid | o_free) & it_room
        m.d.comb += [self.o_stream.valid.eq(o_valid), self.o_stream.payload.eq(o_payload)]
        with m.If(self.o_stream.ready):
            m.d.sync += o_valid.eq(0)
        with m.If(emit):
            m.d.sync += [hold.eq(ev), hold_valid.eq(1), self.events.eq(self.events + 1)]
            with m.If(hold_valid):
                m.d.sync += [o_payload.eq(hold), o_valid.eq(1)]
        with m.If(finish):
            m.d.sync += [o_payload.eq(hold), o_payload.last.eq(1), o_valid.eq(1),
                         hold_valid.eq(0)]

        def event(kind, *, side, order_id, symbol, shares=0, price=0, reason=0, contra=0,
                  match=0):
            m.d.comb += [
                emit.eq(1), ev.eq(0), ev.kind.eq(kind), ev.side.eq(side), ev.reason.eq(reason),
                ev.order_id.eq(order_id), ev.contra_id.eq(contra), ev.symbol.eq(symbol),
                ev.shares.eq(shares), ev.price.eq(price), ev.match_number.eq(match),
            ]

        # --- ITCH output: at most one record a cycle, written with the event it goes with --
        it = Signal(itch_record_layout(symbol_width=YW))
        it_we = Signal()
        clock = Signal(48)                          # ITCH timestamp: actions taken so far
        so_pending = Signal(init=1)                 # S 'O' at timestamp 0, first after reset
        loc_valid = Array(Signal(name=f"loc_valid_{i}") for i in range(S))
        loc = Array(Signal(16, name=f"loc_{i}") for i in range(S))
        next_loc = Signal(16, init=1)
        # reads of `loc_valid`/`loc` as AND-OR of Muxes, not Array reads: Icarus never
        # evaluates an `always @*` whose inputs do not change after time 0, and an Array read
        # of registers still at their reset value (symbol 0 before its first enter) stayed X
        loc_seen = Signal()                         # cur_sym has its locate
        m.d.comb += loc_seen.eq(_select(cur_sym, list(loc_valid)))
        u_pending = Signal()                        # a priority-losing replace that rests as U
        u_ref = Signal(32)
        cycle = Signal.like(it.ingress)             # cycles since reset
        taken_at = Signal.like(it.ingress)          # the cycle the current action was taken
        m.d.sync += cycle.eq(cycle + 1)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += taken_at.eq(cycle)
        if self._itch:
            m.submodules.itch = ser = ItchSerializer(stocks=self._stocks, symbol_width=YW,
                                                     depth=self._itch_depth,
                                                     width=self._itch_width)
            wiring.connect(m, wiring.flipped(self.itch_stream), ser.o_stream)
            m.d.comb += [ser.i_stream.valid.eq(it_we), ser.i_stream.payload.eq(it),
                         it_room.eq(ser.i_stream.ready)]
            with m.If(so_pending):
                m.d.comb += [it_we.eq(1), it.eq(0), it.type.eq(ITCH_TYPES.index("S")),
                             it.ingress.eq(cycle)]
                with m.If(it_room):
                    m.d.sync += so_pending.eq(0)
        else:
            m.d.comb += [it_room.eq(1), self.itch_stream.valid.eq(0)]
            m.d.sync += so_pending.eq(0)

        def itch_msg(t, *, symbol=0, locate=None, ref=0, ref2=0, shares=0, price=0, match=0,
                     side=0, close=0):
            m.d.comb += [
                it_we.eq(1), it.eq(0), it.type.eq(ITCH_TYPES.index(t)), it.symbol.eq(symbol),
                it.locate.eq(_select(symbol, list(loc)) if locate is None else locate),
                it.timestamp.eq(clock), it.ref.eq(ref), it.ref2.eq(ref2), it.shares.eq(shares),
                it.price.eq(price), it.match.eq(match), it.side.eq(side), it.close.eq(close),
                it.ingress.eq(taken_at),
            ]

        # --- combinational searches over the levels of the book being worked -------------
        def side_entries(side, name):
            out = []
            for i in range(L):
                entry = (Signal(name=f"{name}_valid_{i}"), Signal(32, name=f"{name}_price_{i}"),
                         Signal(SW, name=f"{name}_head_{i}"), Signal(SW, name=f"{name}_tail_{i}"))
                m.d.comb += [
                    entry[0].eq(Mux(side, vw_valid[L + i], vw_valid[i])),
                    entry[1].eq(Mux(side, vw_price[L + i], vw_price[i])),
                    entry[2].eq(Mux(side, vw_head[L + i], vw_head[i])),
                    entry[3].eq(Mux(side, vw_tail[L + i], vw_tail[i])),
                ]
                out.append(entry)
            return out

        own = side_entries(cur_side, "own")
        contra = side_entries(~cur_side, "contra")

        # The contra searches read the working registers, not the view: they are used in
        # MATCH_FIND, REPLACE and PS_LEVEL, never in a cycle a row is being read (`ld`).
        # Per entry, whether it trades with the aggressor (each side against `limit`):
        # a sell entry for a buyer at or below the limit, a buy entry for a seller at or above.
        trades = []
        for k in range(2 * L):
            ok = Signal(name=f"trades_{k}")
            reach = wk_price[k] <= limit if k >= L else wk_price[k] >= limit
            m.d.comb += ok.eq(wk_valid[k] & (market | reach))
            trades.append(ok)
        # the aggressor crosses: some contra entry trades (then the best one does)
        cross = Signal()
        m.d.comb += cross.eq(Mux(cur_side == Side.Buy, Cat(*trades[L:]).any(),
                                 Cat(*trades[:L]).any()))
        # best entry of each side, one-hot, from every pair compared at once (no chain): the
        # valid prices of a side are distinct, so entry i is best when every other valid entry
        # j is worse (a buy side's highest price, a sell side's lowest)
        best_head = Signal(SW)
        side_best = []
        for side in (0, 1):
            base = side * L
            below = {}                              # (i, j), i < j: price i < price j
            for i in range(L):
                for j in range(i + 1, L):
                    lt = Signal(name=f"best_lt_{side}_{i}_{j}")
                    m.d.comb += lt.eq(wk_price[base + i] < wk_price[base + j])
                    below[i, j] = lt
            head = 0
            for i in range(L):
                beats = []
                for j in range(L):
                    if j == i:
                        continue
                    lower = below[i, j] if i < j else ~below[j, i]
                    better = lower if side == 1 else ~lower     # 1: Side.Sell
                    beats.append(~wk_valid[base + j] | better)
                win = Signal(name=f"best_win_{side}_{i}")
                m.d.comb += win.eq(wk_valid[base + i] & Cat(*beats).all() if beats
                                   else wk_valid[base + i])
                head = head | Mux(win, wk_head[base + i], 0)
            side_best.append(head)
        m.d.comb += best_head.eq(Mux(cur_side == Side.Buy, side_best[1], side_best[0]))

        own_hit = Signal()
        own_hit_entry = Signal(LW)
        own_free = Signal()
        own_free_entry = Signal(LW)
        # plain expressions, not an `If` process: Icarus never evaluates an `always @*` whose
        # inputs keep their time-0 values (a side with no level yet), which left these X
        hit, hit_entry, free, free_entry = Const(0), Const(0, LW), Const(0), Const(0, LW)
        for i, (valid, price, _, _) in reversed(list(enumerate(own))):
            here = valid & (price == limit)
            hit, hit_entry = hit | here, Mux(here, i, hit_entry)
            free, free_entry = free | ~valid, Mux(~valid, i, free_entry)
        m.d.comb += [own_hit.eq(hit), own_hit_entry.eq(hit_entry),
                     own_free.eq(free), own_free_entry.eq(free_entry)]
        # ... registered, for REST: the levels, side and limit do not change from REST_PREP on
        own_hit_q, own_entry_q = Signal(), Signal(LW)
        m.d.sync += [own_hit_q.eq(hit), own_entry_q.eq(Mux(hit, hit_entry, free_entry))]

        ps_index = ps_l[:LW] if L > 1 else 0
        ps_head, ps_tail = Signal(SW), Signal(SW)
        ps_ok = Signal()                            # contra entry `ps_l` trades
        m.d.comb += [ps_ok.eq(Mux(cur_side == Side.Buy, Array(trades[L:])[ps_index],
                                  Array(trades[:L])[ps_index])),
                     ps_head.eq(Array(e[2] for e in contra)[ps_index]),
                     ps_tail.eq(Array(e[3] for e in contra)[ps_index])]

        # --- helpers ------------------------------------------------------------------------
        def bad_shares(shares):
            return (shares == 0) | (shares > MAX_SHARES)

        def bad_price(price):
            return (price < MIN_PRICE) | (price > MAX_PRICE) | ~_hundredth(price)

        px_bad = Signal()                           # bad_price(a.price), registered with `a`

        def latch():
            """Copy the slot memories' read data (of ``ra`` last cycle) into ``r_*``."""
            m.d.sync += [r.eq(rd_slot.data), r_open.eq(rd_open.data), r_qn.eq(rd_qn.data),
                         r_qp.eq(rd_qp.data), r_an.eq(rd_an.data), r_ap.eq(rd_ap.data)]

        def unlink(slot, rec, qn, qp, an, ap):
            """Remove a resting order: level queue, age list, token table, free stack."""
            index = Cat(rec.level[:LW] if L > 1 else Const(0, 0), rec.side)
            is_head = lv_head[index] == slot
            is_tail = lv_tail[index] == slot
            m.d.comb += lw_index.eq(index)
            with m.If(is_head & is_tail):
                m.d.comb += [lw_valid_en.eq(1), lw_valid.eq(0)]
            with m.Elif(is_head):
                m.d.comb += [lw_head_en.eq(1), lw_head.eq(qn)]
            with m.Elif(is_tail):
                m.d.comb += [lw_tail_en.eq(1), lw_tail.eq(qp)]
            with m.Else():
                m.d.comb += [wr_qn.addr.eq(qp), wr_qn.data.eq(qn), wr_qn.en.eq(1),
                             wr_qp.addr.eq(qn), wr_qp.data.eq(qp), wr_qp.en.eq(1)]
            a_head = age_head == slot
            a_tail = age_tail == slot
            with m.If(a_head & a_tail):
                m.d.sync += age_any.eq(0)
            with m.Elif(a_head):
                m.d.sync += age_head.eq(an)
            with m.Elif(a_tail):
                m.d.sync += age_tail.eq(ap)
            with m.Else():
                m.d.comb += [wr_an.addr.eq(ap), wr_an.data.eq(an), wr_an.en.eq(1),
                             wr_ap.addr.eq(an), wr_ap.data.eq(ap), wr_ap.en.eq(1)]
            m.d.comb += [wr_tk.addr.eq(rec.token), wr_tk.data.eq(0), wr_tk.en.eq(1),
                         wr_fs.addr.eq(sp), wr_fs.data.eq(slot), wr_fs.en.eq(1)]
            m.d.sync += sp.eq(sp + 1)

        tok_ok = (a.order_id >> self._token_bits) == 0 if self._token_bits < 32 else Const(1)
        new_ok = (a.new_order_id >> self._token_bits) == 0 if self._token_bits < 32 \
            else Const(1)
        rd_tok = rd_tk.data

        def reject(reason):
            m.d.sync += self.rejects.eq(self.rejects + 1)
            event(EventKind.Rejected, side=a.side, order_id=a.order_id, symbol=a.symbol,
                  shares=a.shares, price=a.price, reason=reason)

        m.d.comb += ra.eq(self.peek_addr[:SW])
        m.d.comb += [self.peek_slot.eq(rd_slot.data), self.peek_open.eq(rd_open.data),
                     self.peek_qnext.eq(rd_qn.data)]
        peek_entry = Signal(range(2 * L))           # Cat(entry, side) of the row read
        m.d.sync += peek_entry.eq(self.peek_addr[:EW + 1])
        rows = [rd_lv[k // L].data[k % L] for k in range(2 * L)]
        m.d.comb += [self.peek_level.valid.eq(Array(e.valid for e in rows)[peek_entry] & rd_live),
                     self.peek_level.price.eq(Array(e.price for e in rows)[peek_entry]),
                     self.peek_level.head.eq(Array(e.head for e in rows)[peek_entry]),
                     self.peek_level.tail.eq(Array(e.tail for e in rows)[peek_entry])]

        # --- the action FSM -----------------------------------------------------------------
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += [ta.eq(self.i_stream.payload.order_id),
                             la.eq(Mux(self.i_stream.valid, self.i_stream.payload.symbol[:YW],
                                       self.peek_addr[EW + 1:EW + 1 + YW]))]
                with m.If(self.i_stream.valid & ~so_pending):
                    p = self.i_stream.payload
                    m.d.sync += [clock.eq(clock + 1), u_pending.eq(0)]
                    m.d.sync += [ld.eq(1), wk_sym.eq(p.symbol[:YW])]    # the symbol's rows
                    m.d.sync += px_bad.eq(bad_price(p.price))
                    m.d.sync += [
                        a.eq(p), cur_sym.eq(p.symbol[:YW]), cur_side.eq(p.side),
                        agg_tok.eq(p.order_id), agg_firm.eq(p.firm), left.eq(p.shares),
                        limit.eq(p.price), market.eq(p.ord_type == OrderType.Market),
                        rests.eq((p.ord_type == OrderType.Limit) & (p.tif == TimeInForce.Day)),
                        need.eq(Mux(p.tif == TimeInForce.Fok, p.shares, p.min_qty)),
                        self.actions.eq(self.actions + 1),
                    ]
                    m.next = "CHECK"

            with m.State("CHECK"):
                tok_live = tok_ok & rd_tok.valid
                m.d.comb += [ra.eq(rd_tok.slot), ta.eq(a.order_id)]
                with m.If(can_emit):
                    with m.If(closed):
                        reject(RejectReason.Closed)
                        m.next = "DONE"
                    with m.Elif(a.action == Action.Enter):
                        m.next = "DONE"
                        with m.If(~tok_ok | (a.tif.as_value() == 3)):
                            reject(RejectReason.Other)
                        with m.Elif(tok_live):
                            reject(RejectReason.DuplicateToken)
                        with m.Elif(a.symbol >= S):
                            reject(RejectReason.UnknownSymbol)
                        with m.Elif(bad_shares(a.shares)):
                            reject(RejectReason.InvalidShares)
                        with m.Elif(~market & px_bad):
                            reject(RejectReason.InvalidPrice)
                        with m.Elif((a.min_qty != 0) & ((a.tif != TimeInForce.Ioc) |
                                                        (a.min_qty > a.shares))):
                            reject(RejectReason.InvalidMinQty)
                        with m.Elif(rests & ((sp == 0) | (~own_hit & ~own_free))):
                            reject(RejectReason.Full)
                        with m.Else():
                            price = Mux(market, 0, a.price)
                            event(EventKind.Accepted, side=a.side, order_id=a.order_id,
                                  symbol=a.symbol, shares=a.shares, price=price)
                            with m.If(~loc_seen):               # the symbol's first enter
                                itch_msg("R", symbol=cur_sym, locate=next_loc)
                                m.d.sync += [loc_valid[cur_sym].eq(1),
                                             loc[cur_sym].eq(next_loc),
                                             next_loc.eq(next_loc + 1)]
                            m.d.sync += [limit.eq(price), ps_l.eq(0), ps_total.eq(0)]
                            with m.If(need != 0):
                                m.next = "PS_LEVEL"
                            with m.Else():
                                m.next = "MATCH_FIND"
                    with m.Elif(a.action == Action.Cancel):
                        with m.If(~tok_live):
                            reject(RejectReason.UnknownToken)
                            m.next = "DONE"
                        with m.Else():
                            load(rd_tok.symbol)
                            m.d.sync += r_slot.eq(rd_tok.slot)
                            m.next = "CANCEL"
                    with m.Elif(a.action == Action.Replace):
                        with m.If(~tok_live):
                            reject(RejectReason.UnknownToken)
                            m.next = "DONE"
                        with m.Else():
                            load(rd_tok.symbol)
                            m.d.comb += ta.eq(a.new_order_id)
                            m.d.sync += r_slot.eq(rd_tok.slot)
                            m.next = "REPLACE_CHECK"
                    with m.Elif(a.min_qty == 0):
                        m.next = "EOD_START"
                    with m.Elif((a.min_qty == MASS_CANCEL_FIRM) |
                                (a.min_qty == MASS_CANCEL_ALL)):
                        m.next = "MC_START"
                    with m.Else():
                        reject(RejectReason.Other)
                        m.next = "DONE"

            # --- FOK / minimum quantity pre-scan of other firms' acceptable liquidity ----
            with m.State("PS_LEVEL"):
                with m.If(ps_l == L):
                    with m.If(can_emit):
                        event(EventKind.Canceled, side=cur_side, order_id=agg_tok,
                              symbol=cur_sym, shares=left, price=limit,
                              reason=CancelReason.ImmediateOrCancel)
                        m.next = "DONE"
                with m.Elif(ps_ok):
                    m.d.comb += ra.eq(ps_head)
                    m.d.sync += ps_cur.eq(ps_head)
                    m.next = "PS_WALK"
                with m.Else():
                    m.d.sync += ps_l.eq(ps_l + 1)

            with m.State("PS_WALK"):
                total = ps_total + Mux(rd_slot.data.firm != agg_firm, rd_open.data, 0)
                m.d.sync += ps_total.eq(total)
                with m.If(total >= need):
                    m.next = "MATCH_FIND"
                with m.Elif(ps_cur == ps_tail):
                    m.d.sync += ps_l.eq(ps_l + 1)
                    m.next = "PS_LEVEL"
                with m.Else():
                    m.d.comb += ra.eq(rd_qn.data)
                    m.d.sync += ps_cur.eq(rd_qn.data)

            # --- matching loop --------------------------------------------------------------
            with m.State("MATCH_FIND"):
                with m.If((left != 0) & cross):
                    m.d.comb += ra.eq(best_head)
                    m.d.sync += r_slot.eq(best_head)
                    m.next = "MATCH_READ"
                with m.Else():
                    m.next = "MATCH_END"

            with m.State("MATCH_READ"):
                latch()
                data = rd_slot.data
                with m.If(data.firm == agg_firm):
                    m.next = "SELF_MATCH"
                with m.Elif(can_emit):
                    amount = Mux(left < rd_open.data, left, rd_open.data)
                    m.d.sync += fill.eq(amount)
                    event(EventKind.Executed, side=cur_side, order_id=agg_tok,
                          contra=data.token, symbol=cur_sym, shares=amount, price=data.price,
                          match=match_no + 1)
                    m.next = "FILL"
                with m.Else():
                    m.d.comb += ra.eq(r_slot)        # read again next cycle

            with m.State("SELF_MATCH"):
                with m.If(can_emit):
                    event(EventKind.Canceled, side=r.side, order_id=r.token, symbol=cur_sym,
                          shares=r_open, price=r.price, reason=CancelReason.SelfMatch)
                    itch_msg("D", symbol=cur_sym, ref=r.ref)
                    unlink(r_slot, r, r_qn, r_qp, r_an, r_ap)
                    m.next = "MATCH_FIND"

            with m.State("FILL"):
                with m.If(can_emit):
                    event(EventKind.Executed, side=r.side, order_id=r.token, contra=agg_tok,
                          symbol=cur_sym, shares=fill, price=r.price, match=match_no + 1)
                    itch_msg("E", symbol=cur_sym, ref=r.ref, shares=fill, match=match_no + 1)
                    m.d.sync += [match_no.eq(match_no + 1), left.eq(left - fill),
                                 self.fills.eq(self.fills + 1)]
                    with m.If(fill == r_open):
                        unlink(r_slot, r, r_qn, r_qp, r_an, r_ap)
                    with m.Else():
                        m.d.comb += [wr_open.addr.eq(r_slot), wr_open.data.eq(r_open - fill),
                                     wr_open.en.eq(1)]
                    m.next = "MATCH_FIND"

            with m.State("MATCH_END"):
                with m.If(left == 0):
                    m.next = "DONE"
                with m.Elif(rests):
                    m.next = "REST_PREP"
                with m.Elif(can_emit):
                    event(EventKind.Canceled, side=cur_side, order_id=agg_tok, symbol=cur_sym,
                          shares=left, price=limit, reason=CancelReason.ImmediateOrCancel)
                    m.next = "DONE"

            # --- rest the remainder: one cycle of writes --------------------------------------
            with m.State("REST_PREP"):              # fstack[sp-1] read settles
                with m.If(it_room):                 # REST writes A or U unconditionally
                    m.next = "REST"

            with m.State("REST"):
                slot = rd_fs.data
                entry = own_entry_q
                index = Cat(entry[:LW] if L > 1 else Const(0, 0), cur_side)
                m.d.comb += [
                    wr_slot.addr.eq(slot), wr_slot.en.eq(1),
                    wr_slot.data.token.eq(agg_tok), wr_slot.data.firm.eq(agg_firm),
                    wr_slot.data.price.eq(limit), wr_slot.data.ref.eq(next_ref),
                    wr_slot.data.side.eq(cur_side), wr_slot.data.symbol.eq(cur_sym),
                    wr_slot.data.level.eq(entry),
                    wr_open.addr.eq(slot), wr_open.data.eq(left), wr_open.en.eq(1),
                    wr_tk.addr.eq(agg_tok), wr_tk.data.slot.eq(slot), wr_tk.data.valid.eq(1),
                    wr_tk.data.symbol.eq(cur_sym), wr_tk.en.eq(1),
                ]
                with m.If(u_pending):
                    itch_msg("U", symbol=cur_sym, ref=u_ref, ref2=next_ref, shares=left,
                             price=limit)
                with m.Else():
                    itch_msg("A", symbol=cur_sym, ref=next_ref, shares=left, price=limit,
                             side=cur_side)
                with m.If(own_hit_q):
                    m.d.comb += [wr_qp.addr.eq(slot), wr_qp.data.eq(lv_tail[index]),
                                 wr_qp.en.eq(1),
                                 wr_qn.addr.eq(lv_tail[index]), wr_qn.data.eq(slot),
                                 wr_qn.en.eq(1)]
                    m.d.comb += [lw_index.eq(index), lw_tail_en.eq(1), lw_tail.eq(slot)]
                with m.Else():
                    m.d.comb += [lw_index.eq(index), lw_valid_en.eq(1), lw_valid.eq(1),
                                 lw_price_en.eq(1), lw_price.eq(limit),
                                 lw_head_en.eq(1), lw_head.eq(slot),
                                 lw_tail_en.eq(1), lw_tail.eq(slot)]
                with m.If(age_any):
                    m.d.comb += [wr_ap.addr.eq(slot), wr_ap.data.eq(age_tail), wr_ap.en.eq(1),
                                 wr_an.addr.eq(age_tail), wr_an.data.eq(slot), wr_an.en.eq(1)]
                with m.Else():
                    m.d.sync += [age_head.eq(slot), age_any.eq(1)]
                m.d.sync += [age_tail.eq(slot), sp.eq(sp - 1), next_ref.eq(next_ref + 1)]
                m.next = "DONE"

            # --- cancel ---------------------------------------------------------------------
            with m.State("CANCEL"):
                m.d.comb += ra.eq(r_slot)
                data, open_ = rd_slot.data, rd_open.data
                with m.If(can_emit):
                    decrement = Mux(open_ > a.shares, open_ - a.shares, 0)
                    event(EventKind.Canceled, side=data.side, order_id=data.token,
                          symbol=data.symbol, shares=decrement, price=data.price,
                          reason=CancelReason.User)
                    with m.If(open_ > a.shares):
                        with m.If(a.shares == 0):
                            unlink(r_slot, data, rd_qn.data, rd_qp.data, rd_an.data,
                                   rd_ap.data)
                            itch_msg("D", symbol=data.symbol, ref=data.ref)
                        with m.Else():
                            itch_msg("X", symbol=data.symbol, ref=data.ref,
                                     shares=open_ - a.shares)
                            m.d.comb += [wr_open.addr.eq(r_slot), wr_open.data.eq(a.shares),
                                         wr_open.en.eq(1)]
                    m.next = "DONE"

            # --- replace --------------------------------------------------------------------
            with m.State("REPLACE_CHECK"):
                latch()
                data = rd_slot.data
                m.d.sync += [cur_sym.eq(data.symbol), cur_side.eq(data.side),
                             agg_firm.eq(data.firm), agg_tok.eq(a.new_order_id),
                             left.eq(a.shares), limit.eq(a.price), market.eq(0), rests.eq(1)]
                with m.If(can_emit):
                    m.next = "REPLACE"
                    with m.If(new_ok & rd_tok.valid):
                        reject(RejectReason.DuplicateToken)
                        m.next = "DONE"
                    with m.Elif(~new_ok):
                        reject(RejectReason.Other)
                        m.next = "DONE"
                    with m.Elif(bad_shares(a.shares)):
                        reject(RejectReason.InvalidShares)
                        m.next = "DONE"
                    with m.Elif(px_bad):
                        reject(RejectReason.InvalidPrice)
                        m.next = "DONE"
                with m.Else():
                    m.d.comb += [ra.eq(r_slot), ta.eq(a.new_order_id)]
                    m.next = "REPLACE_CHECK"

            with m.State("REPLACE"):
                keep = (a.price == r.price) & (a.shares <= r_open)
                r_index = Cat(r.level[:LW] if L > 1 else Const(0, 0), r.side)
                alone = lv_head[r_index] == lv_tail[r_index]
                with m.If(can_emit):
                    with m.If(~keep & ~own_hit & ~own_free & ~alone):
                        reject(RejectReason.Full)
                        m.next = "DONE"
                    with m.Else():
                        event(EventKind.Replaced, side=r.side, order_id=r.token,
                              contra=a.new_order_id, symbol=r.symbol, shares=a.shares,
                              price=a.price)
                        with m.If(keep):
                            m.d.comb += [wr_tk.addr.eq(r.token), wr_tk.data.eq(0),
                                         wr_tk.en.eq(1)]
                            with m.If(a.shares < r_open):
                                itch_msg("X", symbol=r.symbol, ref=r.ref,
                                         shares=r_open - a.shares)
                            m.next = "REPLACE_KEEP"
                        with m.Else():
                            unlink(r_slot, r, r_qn, r_qp, r_an, r_ap)
                            # ITCH: U when the new price does not reach the contra best,
                            # else D now, the fills' E, then A for a remainder
                            with m.If(cross):
                                itch_msg("D", symbol=r.symbol, ref=r.ref)
                            with m.Else():
                                m.d.sync += [u_pending.eq(1), u_ref.eq(r.ref)]
                            m.next = "MATCH_FIND"

            with m.State("REPLACE_KEEP"):
                m.d.comb += [
                    wr_tk.addr.eq(a.new_order_id), wr_tk.data.slot.eq(r_slot),
                    wr_tk.data.valid.eq(1), wr_tk.data.symbol.eq(r.symbol), wr_tk.en.eq(1),
                    wr_slot.addr.eq(r_slot), wr_slot.data.eq(r),
                    wr_slot.data.token.eq(a.new_order_id), wr_slot.en.eq(1),
                    wr_open.addr.eq(r_slot), wr_open.data.eq(a.shares), wr_open.en.eq(1),
                ]
                m.next = "DONE"

            # --- end of day: every resting order in age (ITCH reference) order ---------------
            with m.State("EOD_START"):
                m.d.comb += ra.eq(age_head)
                m.d.sync += e_cur.eq(age_head)
                with m.If(age_any):
                    m.next = "EOD_WALK"
                with m.Else():
                    m.next = "EOD_CLOSE"

            with m.State("EOD_WALK"):
                data = rd_slot.data
                m.d.comb += ra.eq(e_cur)
                with m.If(can_emit):
                    event(EventKind.Canceled, side=data.side, order_id=data.token,
                          symbol=data.symbol, shares=rd_open.data, price=data.price,
                          reason=CancelReason.EndOfDay)
                    itch_msg("D", symbol=data.symbol, ref=data.ref)
                    m.d.comb += [wr_tk.addr.eq(data.token), wr_tk.data.eq(0), wr_tk.en.eq(1),
                                 wr_fs.addr.eq(sp), wr_fs.data.eq(e_cur), wr_fs.en.eq(1)]
                    m.d.sync += sp.eq(sp + 1)
                    with m.If(e_cur == age_tail):
                        m.next = "EOD_CLOSE"
                    with m.Else():
                        m.d.comb += ra.eq(rd_an.data)
                        m.d.sync += e_cur.eq(rd_an.data)

            with m.State("EOD_CLOSE"):
                with m.If(can_emit):
                    event(EventKind.Closed, side=Side.Buy, order_id=0, symbol=0)
                    itch_msg("S", locate=0, close=1)
                    m.d.sync += [closed.eq(1), age_any.eq(0)]
                    m.d.comb += lw_clear.eq(1)
                    m.next = "DONE"

            # --- mass cancel: one firm's (or every) resting order, age order, reason S ------
            with m.State("MC_START"):
                m.d.comb += ra.eq(age_head)
                m.d.sync += e_cur.eq(age_head)
                with m.If(age_any):
                    m.next = "MC_WALK"
                with m.Else():
                    m.next = "DONE"

            with m.State("MC_WALK"):
                data = rd_slot.data
                m.d.comb += ra.eq(e_cur)
                with m.If((a.min_qty == MASS_CANCEL_ALL) | (data.firm == a.firm)):
                    with m.If(wk_sym != data.symbol[:YW]):      # another symbol's rows
                        m.d.comb += wb.eq(dirty)
                        load(data.symbol[:YW])
                        m.next = "MC_READ"
                    with m.Elif(can_emit):
                        event(EventKind.Canceled, side=data.side, order_id=data.token,
                              symbol=data.symbol, shares=rd_open.data, price=data.price,
                              reason=CancelReason.Supervisory)
                        itch_msg("D", symbol=data.symbol, ref=data.ref)
                        unlink(e_cur, data, rd_qn.data, rd_qp.data, rd_an.data, rd_ap.data)
                        with m.If(e_cur == age_tail):
                            m.next = "DONE"
                        with m.Else():
                            m.d.sync += e_cur.eq(rd_an.data)
                            m.next = "MC_READ"
                with m.Elif(e_cur == age_tail):
                    m.next = "DONE"
                with m.Else():
                    m.d.comb += ra.eq(rd_an.data)
                    m.d.sync += e_cur.eq(rd_an.data)

            with m.State("MC_READ"):     # the unlink's memory writes settle, or rows load
                m.d.comb += ra.eq(e_cur)
                m.next = "MC_WALK"

            with m.State("DONE"):
                m.d.comb += wb.eq(dirty)                # the working copy back to its rows
                with m.If(o_free):
                    m.d.comb += finish.eq(hold_valid)      # a mass cancel may have no event
                    m.next = "IDLE"

        # outside the FSM so that they are continuous assignments (Icarus evaluates an
        # `always @*` only on an input change: an FSM-driven ready is X until the first one)
        m.d.comb += [self.i_stream.ready.eq(fsm.ongoing("IDLE") & ~so_pending),
                     self.busy.eq(~fsm.ongoing("IDLE"))]
        return m
