"""Pre-trade risk gate: order records in, checked order records (and mass cancels) out.

Ref: the pinned semantics are the docstring of :mod:`tickpath.model.risk_gate` (the golden
:class:`~tickpath.model.risk_gate.GatedMatchingModel`); registers
:func:`~tickpath.model.risk_gate.gate_regmap` on a :class:`tickpath.hdl.regs.RegisterBank`.

The gate sits in front of :class:`~.engine.MatchingEngine` inside :class:`~.gated.GatedEngine`,
which tells it when the engine has finished the previous action (``settled``) and shows it every
event the engine hands on (``track``), from which it keeps the token table (firm, symbol, side,
open shares per token), the positions and open shares per firm and symbol, and the last trade
per symbol.

Storage: the per (firm, symbol) limits are a block RAM row each, written (and read back) by the
host through the ``limit_*`` window registers, so the register map does not grow with firms x
symbols; as a row is written the gate adds what the check would otherwise derive after reading
it (the collar's multipliers ``10000 +- collar_bp`` and which limits are on). The per-pair
executed position and open shares per side are a block RAM row each too, updated by the tracker
read-modify-write (the row read into a register, the write of that cycle forwarded next to it,
so events on one pair back to back chain). A reset clears neither: the host loader writes every
pair.

Timing: every block RAM read goes straight into a register, and no stage has more than one
multiplier, or one sum of partial products, between registers (the wide products are split in
16-bit halves over two stages).

Pipeline: a record waiting on ``i_stream`` (its payload stable) is checked in ``CHECK_CYCLES``
stages while the gate is free (the engine settled, no tracked event, mass cancel or limit write
in between; anything else starts it over): a replace's token row is read, then registered; the
pair (the replace's row, else the record's firm and symbol) addresses the limit and state rows
and gives the per-symbol selections (reference, last trade); the rows are registered and the
notional's partial products taken; then the collar's partial products (and the notional's
sum, the share compare, the reachable position); their sums (and the notional and position
compares); then the collar compares give the verdict, the record is taken (``checked`` high)
and the verdict is registered: the order goes to the engine on ``o_stream`` the next cycle, or
a ``rejected`` event is out on ``r_stream``. So the gate costs ``CHECK_CYCLES + 1`` cycles on
an accept.

Mass cancels (kill switch bits rising, the dead-man switch tripping) are sent to the engine
as end-of-day records with ``min_qty`` ``MASS_CANCEL_ALL``/``MASS_CANCEL_FIRM`` when it has
settled, before any waiting order: global kill, dead-man, then firms ascending.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tickpath.model.matching import MASS_CANCEL_ALL, MASS_CANCEL_FIRM
from tickpath.model.risk_gate import BP, GATE_REASONS, U32, U64, gate_regmap
from tickpath.protocol.records import (
    Action,
    EventKind,
    EventRecord,
    OrderRecord,
    OrderType,
    RejectReason,
    Side,
)

from ..regs import RegisterBank, bus_signature
from .layouts import SHARES_WIDTH

__all__ = ["RiskGate", "token_row_layout", "limit_row_layout", "state_row_layout",
           "counter_name", "CHECK_CYCLES"]


def token_row_layout() -> data.StructLayout:
    """The gate's token table row: whose order a token is, and its open shares."""
    return data.StructLayout({
        "firm":   unsigned(16),
        "symbol": unsigned(16),
        "side":   unsigned(1),
        "open":   unsigned(SHARES_WIDTH),
    })


def limit_row_layout() -> data.StructLayout:
    """A (firm, symbol) pair's limits, as the limit window writes them (all ones: off), and
    what the gate derives from them as they are written: the collar's multipliers of the
    reference (``10000 + collar_bp``; ``10000 - collar_bp``, 0 from 10000 on) and which limits
    are on."""
    return data.StructLayout({
        "max_shares":   unsigned(32),
        "max_notional": unsigned(64),
        "collar_bp":    unsigned(32),
        "max_position": unsigned(32),
        "collar_high":  unsigned(33),
        "collar_low":   unsigned(BP.bit_length()),
        "notional_on":  unsigned(1),
        "collar_on":    unsigned(1),
        "position_on":  unsigned(1),
    })


def limit_row(max_shares, max_notional, collar_bp, max_position) -> dict:
    """The limit row the window writes for these limits (all ones: off)."""
    return {"max_shares": max_shares, "max_notional": max_notional, "collar_bp": collar_bp,
            "max_position": max_position, "collar_high": BP + collar_bp,
            "collar_low": max(BP - collar_bp, 0), "notional_on": int(max_notional != U64),
            "collar_on": int(collar_bp != U32), "position_on": int(max_position != U32)}


def limit_row_off() -> dict:
    return limit_row(U32, U64, U32, U32)


def state_row_layout() -> data.StructLayout:
    """A (firm, symbol) pair's executed position and open shares per side."""
    return data.StructLayout({
        "pos":       signed(40),
        "open_buy":  unsigned(40),
        "open_sell": unsigned(40),
    })


#: Cycles a record waits in the check pipeline before it is taken (its verdict is out the
#: cycle after): token row read, registered; pair rows read, registered (with the notional's
#: partial products); the collar's partial products; their sums; the compares and verdict.
CHECK_CYCLES = 6


def counter_name(reason: RejectReason) -> str:
    """The member (and register) name of a reject reason's counter: ``rejects_k``..."""
    return f"rejects_{chr(reason)}"


class RiskGate(wiring.Component):
    """Pre-trade risk gate for ``firms`` firms and ``symbols`` symbols.

    Parameters
    ----------
    firms : int
        Firm ids ``0..firms-1`` have limits, kill bits, positions and rate buckets.
    symbols : int
        Symbol ids ``0..symbols-1`` (the engine's).
    token_bits : int
        The engine's token bound (the token table has ``2**token_bits`` rows).

    Members
    -------
    i_stream : ``In(stream.Signature(OrderRecord))``
        Actions from the host.
    o_stream : ``Out(stream.Signature(OrderRecord))``
        Actions that passed, and mass cancels, to the engine.
    r_stream : ``Out(stream.Signature(EventRecord))``
        The gate's ``rejected`` events (``last`` set).
    settled : ``In(1)``
        The engine is idle and has handed on every event (``track``) of its last action.
    track_valid : ``In(1)``, track : ``In(EventRecord)``
        An event the engine hands on this cycle.
    bus : ``In(bus_signature())``
        The register bus (:func:`~tickpath.model.risk_gate.gate_regmap`).
    busy : ``Out(1)``
        An order, a verdict, a mass cancel or a tracked event is in flight.
    checked : ``Out(1)``
        The checks are evaluated this cycle (the token bucket's cycle).
    now : ``Out(32)``
        Cycles since reset.
    deadman_tripped : ``Out(1)``
    rejects_k, rejects_m, rejects_H, rejects_q, rejects_r, rejects_n, rejects_c, rejects_p, \
rejects_t : ``Out(32)``
        Gate rejects per reason (wrap).
    """

    def __init__(self, *, firms=4, symbols=4, token_bits=10):
        if firms not in range(1, 257):
            raise ValueError(f"firms must be in 1..256, not {firms}")
        if symbols not in range(1, 257):
            raise ValueError(f"symbols must be in 1..256, not {symbols}")
        if token_bits not in range(1, 21):
            raise ValueError(f"token_bits must be in 1..20, not {token_bits}")
        self._firms, self._symbols, self._token_bits = firms, symbols, token_bits
        self.regmap = gate_regmap(firms, symbols)
        members = {
            "i_stream":  In(stream.Signature(OrderRecord)),
            "o_stream":  Out(stream.Signature(OrderRecord)),
            "r_stream":  Out(stream.Signature(EventRecord)),
            "settled":   In(1),
            "track_valid": In(1),
            "track":     In(EventRecord),
            "bus":       In(bus_signature()),
            "busy":      Out(1),
            "checked":   Out(1),
            "now":       Out(32),
            "deadman_tripped": Out(1),
        }
        for reason in GATE_REASONS:
            members[counter_name(reason)] = Out(32)
        super().__init__(members)

    firms = property(lambda self: self._firms)
    symbols = property(lambda self: self._symbols)
    token_bits = property(lambda self: self._token_bits)

    def elaborate(self, platform):
        m = Module()
        F, S, TB = self._firms, self._symbols, self._token_bits
        FW, SW = max(ceil_log2(F), 1), max(ceil_log2(S), 1)

        # --- registers ----------------------------------------------------------------------
        m.submodules.regs = bank = RegisterBank(self.regmap)
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        reg = lambda name: getattr(bank, name)      # noqa: E731
        m.d.sync += self.now.eq(self.now + 1)
        m.d.comb += [bank.now.eq(self.now), bank.deadman_tripped.eq(self.deadman_tripped)]
        for reason in GATE_REASONS:
            m.d.comb += reg(counter_name(reason)).eq(getattr(self, counter_name(reason)))

        def pair_index(firm, symbol):
            """Row of a (firm, symbol) pair in the pair memories: firm-major, 2**SW a firm."""
            return Cat(symbol[:SW], firm[:FW])

        ref_bid_a = Array(reg(f"ref_bid_{s}") for s in range(S))
        ref_ask_a = Array(reg(f"ref_ask_{s}") for s in range(S))
        period_a = Array(reg(f"rate_period_{f}") for f in range(F))

        # --- per pair limits: block RAM written through the limit window -------------------
        rows = F << SW
        m.submodules.limits = limits = Memory(shape=limit_row_layout(), depth=rows,
                                              init=[limit_row_off()] * rows)
        wr_l = limits.write_port()
        rd_l = limits.read_port(transparent_for=(wr_l,))          # the check's
        rd_lr = limits.read_port(transparent_for=(wr_l,))         # the host's read-back
        window_ok = (reg("limit_firm") < F) & (reg("limit_symbol") < S)
        window = pair_index(reg("limit_firm"), reg("limit_symbol"))
        bp = reg("limit_collar_bp")
        m.d.comb += [wr_l.addr.eq(window), wr_l.en.eq(reg("limit_write_stb") & window_ok),
                     wr_l.data.max_shares.eq(reg("limit_max_shares")),
                     wr_l.data.max_notional.eq(reg("limit_max_notional")),
                     wr_l.data.collar_bp.eq(bp),
                     wr_l.data.max_position.eq(reg("limit_max_position")),
                     # derived as the row is written, so the check multiplies straight away
                     wr_l.data.collar_high.eq(bp + BP),
                     wr_l.data.collar_low.eq(Mux(bp >= BP, 0, BP - bp)),
                     wr_l.data.notional_on.eq(reg("limit_max_notional") != U64),
                     wr_l.data.collar_on.eq(bp != U32),
                     wr_l.data.position_on.eq(reg("limit_max_position") != U32),
                     rd_lr.addr.eq(window), rd_lr.en.eq(reg("limit_read_stb"))]
        # the read port holds its data until the next read and is registered once more: the
        # row is readable from the second cycle after the strobe on (a pair out of range
        # reads off)
        back_ok = Signal()
        with m.If(reg("limit_read_stb")):
            m.d.sync += back_ok.eq(window_ok)
        back = Signal(limit_row_layout())
        m.d.sync += back.eq(rd_lr.data)
        row_back = limit_row_layout()(Mux(back_ok, back,
                                          limit_row_layout().const(limit_row_off())))
        m.d.comb += [reg("limit_row_max_shares").eq(row_back.max_shares),
                     reg("limit_row_max_notional").eq(row_back.max_notional),
                     reg("limit_row_collar_bp").eq(row_back.collar_bp),
                     reg("limit_row_max_position").eq(row_back.max_position)]

        # --- tracked state --------------------------------------------------------------------
        # per pair: executed position and open shares per side, block RAM, read-modify-write
        m.submodules.state = state = Memory(shape=state_row_layout(), depth=rows, init=[])
        wr_s = state.write_port()
        rd_st = state.read_port(transparent_for=(wr_s,))          # the tracker's
        rd_sc = state.read_port(transparent_for=(wr_s,))          # the check's
        last_trade = Array(Signal(32, name=f"last_trade_{s}") for s in range(S))
        last_valid = Array(Signal(name=f"last_valid_{s}") for s in range(S))
        tokens = Array(Signal(32, name=f"tokens_{f}") for f in range(F))

        m.submodules.table = table = Memory(shape=token_row_layout(), depth=1 << TB, init=[])
        wr_a = table.write_port()                 # one write port: block RAM (a copy per read)
        rd_t = table.read_port(transparent_for=(wr_a,))           # the tracker's
        rd_c = table.read_port(transparent_for=(wr_a,))           # the check's (replace)

        # --- tracker --------------------------------------------------------------------------
        # 1 reads the token's row, 2 registers it, 3 updates it, 4 reads the pair's row,
        # 5 registers it, 6 writes it. Each block RAM read goes straight into a register; the
        # read ports are transparent to the writes, and the write of the cycle a row is
        # registered in is forwarded (registered) next to it, so events on one token or one
        # pair back to back chain.
        cur_firm = Signal(16)                       # firm of the action the engine works on
        t2_valid, t3_valid = Signal(), Signal()
        t2, t3 = Signal(EventRecord), Signal(EventRecord)
        m.d.comb += rd_t.addr.eq(self.track.order_id[:TB])
        m.d.sync += [t2_valid.eq(self.track_valid), t2.eq(self.track),
                     t3_valid.eq(t2_valid), t3.eq(t2)]
        row_q, row_fwd, row_fwd_valid = \
            Signal(token_row_layout()), Signal(token_row_layout()), Signal()
        m.d.sync += [row_q.eq(rd_t.data), row_fwd.eq(wr_a.data),
                     row_fwd_valid.eq(wr_a.en & (wr_a.addr == t2.order_id[:TB]))]
        row = Signal(token_row_layout())
        m.d.comb += row.eq(Mux(row_fwd_valid, row_fwd, row_q))
        e_firm = Signal(16)
        delta = Signal(signed(SHARES_WIDTH + 2))
        count = Signal()                            # stage 3 writes the table
        # a replace's old token is closed (open 0) in the first cycle stage 3 does not write;
        # one action has at most one replaced event, and no check runs before it is written
        kq_valid = Signal()
        kq_token = Signal(TB)
        kq_row = Signal(token_row_layout())
        with m.If(kq_valid & ~count):
            m.d.comb += [wr_a.addr.eq(kq_token), wr_a.en.eq(1), wr_a.data.eq(kq_row),
                         wr_a.data.open.eq(0)]
            m.d.sync += kq_valid.eq(0)
        with m.If(t3_valid):
            with m.Switch(t3.kind):
                with m.Case(EventKind.Accepted):
                    m.d.comb += [wr_a.addr.eq(t3.order_id[:TB]), wr_a.en.eq(1),
                                 wr_a.data.firm.eq(cur_firm), wr_a.data.symbol.eq(t3.symbol),
                                 wr_a.data.side.eq(t3.side), wr_a.data.open.eq(t3.shares),
                                 e_firm.eq(cur_firm), delta.eq(t3.shares), count.eq(1)]
                with m.Case(EventKind.Executed, EventKind.Canceled):
                    m.d.comb += [wr_a.addr.eq(t3.order_id[:TB]), wr_a.en.eq(1),
                                 wr_a.data.eq(row), wr_a.data.open.eq(row.open - t3.shares),
                                 e_firm.eq(row.firm), delta.eq(-t3.shares), count.eq(1)]
                with m.Case(EventKind.Replaced):
                    m.d.comb += [wr_a.addr.eq(t3.contra_id[:TB]), wr_a.en.eq(1),
                                 wr_a.data.eq(row), wr_a.data.open.eq(t3.shares),
                                 e_firm.eq(row.firm), delta.eq(t3.shares - row.open),
                                 count.eq(1)]
                    m.d.sync += [kq_valid.eq(1), kq_token.eq(t3.order_id[:TB]),
                                 kq_row.eq(row)]
            with m.If((t3.kind == EventKind.Executed) & (t3.symbol < S)):
                m.d.sync += [last_trade[t3.symbol[:SW]].eq(t3.price),
                             last_valid[t3.symbol[:SW]].eq(1)]
        # stage 4: the pair's row is read; 5 registers it; 6 adds the deltas and writes it back
        update = data.StructLayout({"valid": 1, "pi": FW + SW, "open": signed(SHARES_WIDTH + 2),
                                    "pos": signed(SHARES_WIDTH + 1), "buy": 1})
        t4, t5, t6 = Signal(update), Signal(update), Signal(update)
        t_known = (e_firm < F) & (t3.symbol < S)
        executed = t3.kind == EventKind.Executed
        m.d.sync += [t4.valid.eq(t3_valid & count & t_known),
                     t4.pi.eq(pair_index(e_firm, t3.symbol)), t4.open.eq(delta),
                     t4.pos.eq(Mux(executed, Mux(t3.side == Side.Buy, t3.shares, -t3.shares), 0)),
                     t4.buy.eq(t3.side == Side.Buy),
                     t5.eq(t4), t6.eq(t5)]
        m.d.comb += rd_st.addr.eq(t4.pi)
        cur_q, cur_fwd, cur_fwd_valid = \
            Signal(state_row_layout()), Signal(state_row_layout()), Signal()
        m.d.sync += [cur_q.eq(rd_st.data), cur_fwd.eq(wr_s.data),
                     cur_fwd_valid.eq(wr_s.en & (wr_s.addr == t5.pi))]
        cur = Signal(state_row_layout())
        m.d.comb += cur.eq(Mux(cur_fwd_valid, cur_fwd, cur_q))
        with m.If(t6.valid):
            m.d.comb += [wr_s.addr.eq(t6.pi), wr_s.en.eq(1),
                         wr_s.data.pos.eq(cur.pos + t6.pos),
                         wr_s.data.open_buy.eq(cur.open_buy + Mux(t6.buy, t6.open, 0)),
                         wr_s.data.open_sell.eq(cur.open_sell + Mux(t6.buy, 0, t6.open))]

        # --- kill and dead-man switches -------------------------------------------------------
        kill = reg("kill")
        kill_prev = Signal(F + 1)
        m.d.sync += kill_prev.eq(kill)
        pending = Signal(F + 2)                     # firms, global kill, dead-man
        since = Signal(32)
        timeout = reg("deadman_cycles")
        trip = (timeout != 0) & (since >= timeout) & ~self.deadman_tripped
        with m.If(reg("heartbeat_stb")):
            m.d.sync += [since.eq(0), self.deadman_tripped.eq(0)]
        with m.Else():
            with m.If(since != U32):
                m.d.sync += since.eq(since + 1)
            with m.If(trip):
                m.d.sync += self.deadman_tripped.eq(1)
        new_pending = Signal(F + 2)
        issued = Signal(F + 2)
        m.d.comb += new_pending.eq((pending & ~issued) | Cat(kill & ~kill_prev, trip))
        m.d.sync += pending.eq(new_pending)

        # --- token buckets ------------------------------------------------------------------
        take = Signal(F)
        for f in range(F):
            period, burst = reg(f"rate_period_{f}"), reg(f"rate_burst_{f}")
            prev_period, prev_burst = Signal(32, name=f"prev_period_{f}"), \
                Signal(32, name=f"prev_burst_{f}")
            cnt = Signal(32, name=f"rate_cnt_{f}")
            m.d.sync += [prev_period.eq(period), prev_burst.eq(burst)]
            tick = Signal(name=f"rate_tick_{f}")
            m.d.comb += tick.eq(cnt == 0)
            with m.If((period != prev_period) | (burst != prev_burst)):
                m.d.sync += [tokens[f].eq(burst), cnt.eq(period - 1)]
            with m.Else():
                m.d.sync += cnt.eq(Mux(tick, period - 1, cnt - 1))
                # both outcomes ahead of the verdict, which only picks one (a token is taken
                # only when there is one)
                keep = tokens[f] + tick
                spend = tokens[f] + tick - 1
                m.d.sync += tokens[f].eq(Mux(take[f], Mux(spend > burst, burst, spend),
                                             Mux(keep > burst, burst, keep)))

        # --- the order on i_stream, the verdict registers ---------------------------------
        s1 = self.i_stream.payload
        out_valid = Signal()
        out = Signal(OrderRecord)
        rej_valid = Signal()
        rej = Signal(EventRecord)
        m.d.comb += [self.o_stream.valid.eq(out_valid), self.o_stream.payload.eq(out),
                     self.r_stream.valid.eq(rej_valid), self.r_stream.payload.eq(rej)]
        with m.If(self.o_stream.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(self.r_stream.ready):
            m.d.sync += rej_valid.eq(0)

        # a kill write or a dead-man trip being turned into a pending mass cancel goes first
        tracking = (self.track_valid | t2_valid | t3_valid | t4.valid | t5.valid | t6.valid |
                    kq_valid)
        switching = (pending != 0) | trip | (kill != kill_prev)
        free = (self.settled & ~tracking & ~out_valid & ~rej_valid & (kill == kill_prev) & ~trip)
        m.d.comb += self.busy.eq(out_valid | rej_valid | tracking | switching)

        # --- the checks: a pipeline over the waiting record -----------------------------------
        # The record's payload is stable while it waits; each stage recomputes from the ones
        # before every cycle, and the record is taken once it has waited CHECK_CYCLES cycles
        # with the gate free throughout (no event, limit write or mass cancel between), so
        # every stage holds the current state. Every block RAM read goes straight into a
        # register, and no stage has more than one multiplier (a partial product) or one sum
        # of them between registers.
        #   0: the token row of a replace is read (its token from the record)
        #   1: the token row is registered
        #   2: whose pair (the replace's row, or the record's firm and symbol); the pair's
        #      limit and state rows are read; the per-symbol selections (reference, basis)
        #   3: the limit and state rows are registered; the partial products of the notional
        #      (shares x basis) and of price x 10000
        #   4: their sums; the partial products of the collar's bounds (reference x the row's
        #      multipliers); the limit row's share compare and reference need; the reachable
        #      position
        #   5: the sums of the collar's bounds; the notional and position compares
        #   6: the collar compares and the first failing check -> the verdict (the record is
        #      taken)
        waited = Signal(range(CHECK_CYCLES + 1))
        quiet = free & (pending == 0) & ~reg("limit_write_stb")
        with m.If(self.i_stream.valid & quiet):
            with m.If(waited != CHECK_CYCLES):
                m.d.sync += waited.eq(waited + 1)
        with m.Else():
            m.d.sync += waited.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += waited.eq(0)

        def product(name, a, b):
            """``a * b`` (unsigned, up to 16 + 18 bits each) over two stages: the partial
            products of 16-bit halves are registered (one multiplier each); the returned
            expression sums them (to be registered a stage later)."""
            def parts(x):
                return [(x[:16], 0), (x[16:], 16)] if len(x) > 16 else [(x, 0)]
            pp = {}
            for xa, sa in parts(a):
                for xb, sb in parts(b):
                    p = Signal(len(xa) + len(xb), name=f"{name}_pp_{sa}_{sb}")
                    m.d.sync += p.eq(xa * xb)
                    pp[sa, sb] = p
            if len(pp) == 4:                # the low and high products do not overlap
                return Cat(pp[0, 0], pp[16, 16]) + ((pp[0, 16] + pp[16, 0]) << 16)
            total = 0
            for (sa, sb), p in pp.items():
                total = total + (p << (sa + sb))
            return total

        # 0 -> 1
        m.d.comb += rd_c.addr.eq(s1.order_id[:TB])
        entry = Signal(token_row_layout())
        m.d.sync += entry.eq(rd_c.data)

        # 1 -> 2
        is_enter = s1.action == Action.Enter
        is_replace = s1.action == Action.Replace
        tok_small = (s1.order_id >> TB) == 0
        firm = Mux(is_replace, entry.firm, s1.firm)
        sym = Mux(is_replace, entry.symbol, s1.symbol)
        fi, si = firm[:FW], sym[:SW]
        m.d.comb += [rd_l.addr.eq(pair_index(firm, sym)), rd_sc.addr.eq(pair_index(firm, sym))]
        b_checked_kind, b_fi, b_si, b_side, b_old_open, b_market = \
            Signal(), Signal(FW), Signal(SW), Signal(), Signal(SHARES_WIDTH), Signal()
        b_firm_known, b_sym_known, b_pair_known, b_has_ref = \
            Signal(), Signal(), Signal(), Signal()
        b_ref, b_basis = Signal(32), Signal(32)
        side = Mux(is_replace, entry.side, s1.side)
        market = is_enter & (s1.ord_type == OrderType.Market)
        ref_reg = Mux(side == Side.Buy, ref_ask_a[si], ref_bid_a[si])
        ref = Mux(ref_reg != 0, ref_reg, last_trade[si])
        m.d.sync += [
            b_checked_kind.eq(is_enter | (is_replace & tok_small & (entry.open != 0))),
            b_fi.eq(fi), b_si.eq(si), b_side.eq(side),
            b_old_open.eq(Mux(is_replace, entry.open, 0)), b_market.eq(market),
            b_firm_known.eq(firm < F), b_sym_known.eq(sym < S),
            b_pair_known.eq((firm < F) & (sym < S)),
            b_has_ref.eq((ref_reg != 0) | last_valid[si]),
            b_ref.eq(ref), b_basis.eq(Mux(market, ref, s1.price)),
        ]

        # 2 -> 3: the pair's rows out of the block RAMs, registered
        lim, st = Signal(limit_row_layout()), Signal(state_row_layout())
        m.d.sync += [lim.eq(rd_l.data), st.eq(rd_sc.data)]
        notional_sum = product("notional", s1.shares, b_basis)
        scaled_sum = product("scaled", s1.price, Const(BP, BP.bit_length()))
        c_delta = Signal(signed(34))
        m.d.sync += c_delta.eq(s1.shares - b_old_open)

        # 3 -> 4
        c_notional, c_scaled = Signal(64), Signal(32 + BP.bit_length())
        c_shares_over, c_no_ref = Signal(), Signal()
        c_reach = Signal(signed(44))
        high_sum = product("high", b_ref, lim.collar_high)
        low_sum = product("low", b_ref, lim.collar_low)
        m.d.sync += [
            c_notional.eq(notional_sum), c_scaled.eq(scaled_sum),
            c_shares_over.eq(s1.shares > lim.max_shares),
            c_no_ref.eq(~b_has_ref & reg("control")[0] &
                        Mux(b_market, lim.notional_on, lim.collar_on)),
            c_reach.eq(Mux(b_side == Side.Buy,
                           st.pos + st.open_buy + c_delta,
                           st.open_sell - st.pos + c_delta)),
        ]

        # 4 -> 5
        d_high, d_low = Signal(66), Signal(32 + BP.bit_length())
        d_notional_over, d_position_over, d_halted = Signal(), Signal(), Signal()
        m.d.sync += [
            d_high.eq(high_sum), d_low.eq(low_sum),
            d_notional_over.eq(c_notional > lim.max_notional),
            d_position_over.eq(c_reach > lim.max_position),
            d_halted.eq(b_sym_known & reg("halted").bit_select(b_si, 1)),
        ]

        # 5 -> 6: the collar compares; the first failing check wins
        killed = kill[F] | (b_firm_known & kill.bit_select(b_fi, 1))
        bad_notional = lim.notional_on & (~b_market | b_has_ref) & d_notional_over
        bad_collar = ~b_market & b_has_ref & lim.collar_on & Mux(b_side == Side.Buy,
                                                                 c_scaled > d_high,
                                                                 c_scaled < d_low)
        bad_position = lim.position_on & d_position_over
        rate_on = b_firm_known & (period_a[b_fi] != 0)
        no_token = rate_on & (tokens[b_fi] == 0)

        reason = Signal(8)
        with m.If(~b_checked_kind):
            pass
        with m.Elif(killed):
            m.d.comb += reason.eq(RejectReason.Killed)
        with m.Elif(self.deadman_tripped):
            m.d.comb += reason.eq(RejectReason.DeadMan)
        with m.Elif(d_halted):
            m.d.comb += reason.eq(RejectReason.Halted)
        with m.Elif(~b_pair_known):
            pass
        with m.Elif(c_shares_over):
            m.d.comb += reason.eq(RejectReason.MaxShares)
        with m.Elif(c_no_ref):
            m.d.comb += reason.eq(RejectReason.NoReference)
        with m.Elif(bad_notional):
            m.d.comb += reason.eq(RejectReason.MaxNotional)
        with m.Elif(bad_collar):
            m.d.comb += reason.eq(RejectReason.Collar)
        with m.Elif(bad_position):
            m.d.comb += reason.eq(RejectReason.Position)
        with m.Elif(no_token):
            m.d.comb += reason.eq(RejectReason.Rate)

        # --- issue: a mass cancel first, else the checked order ---------------------------
        with m.If(free & (pending != 0)):
            mc = Signal(OrderRecord)
            m.d.comb += [mc.eq(0), mc.action.eq(Action.EndOfDay)]
            with m.If(pending[F]):
                m.d.comb += [issued.eq(1 << F), mc.min_qty.eq(MASS_CANCEL_ALL)]
            with m.Elif(pending[F + 1]):
                m.d.comb += [issued.eq(1 << (F + 1)), mc.min_qty.eq(MASS_CANCEL_ALL)]
            with m.Else():
                for f in reversed(range(F)):
                    with m.If(pending[f]):
                        m.d.comb += [issued.eq(1 << f), mc.min_qty.eq(MASS_CANCEL_FIRM),
                                     mc.firm.eq(f)]
            m.d.sync += [out_valid.eq(1), out.eq(mc)]
        with m.Elif(quiet & (waited == CHECK_CYCLES)):
            m.d.comb += self.i_stream.ready.eq(1)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.comb += self.checked.eq(1)
            with m.If(reason != 0):
                m.d.sync += [rej_valid.eq(1), rej.eq(0), rej.kind.eq(EventKind.Rejected),
                             rej.last.eq(1), rej.side.eq(s1.side), rej.reason.eq(reason),
                             rej.order_id.eq(s1.order_id), rej.symbol.eq(s1.symbol),
                             rej.shares.eq(s1.shares), rej.price.eq(s1.price)]
                for r in GATE_REASONS:
                    counter = getattr(self, counter_name(r))
                    with m.If(reason == r):
                        m.d.sync += counter.eq(counter + 1)
            with m.Else():
                m.d.sync += [out_valid.eq(1), out.eq(s1), cur_firm.eq(s1.firm)]
                with m.If(b_checked_kind & b_pair_known & rate_on):
                    m.d.comb += take.eq(Const(1, F) << b_fi)
        return m
