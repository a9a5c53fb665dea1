"""Pre-trade risk gate: order records in, checked order records (and mass cancels) out.

Ref: the pinned semantics are the docstring of :mod:`tickpath.model.risk_gate` (the golden
:class:`~tickpath.model.risk_gate.GatedMatchingModel`); registers
:func:`~tickpath.model.risk_gate.gate_regmap` on a :class:`tickpath.hdl.regs.RegisterBank`.

The gate sits in front of :class:`~.engine.MatchingEngine` inside :class:`~.gated.GatedEngine`,
which tells it when the engine has finished the previous action (``settled``) and shows it every
event the engine hands on (``track``), from which it keeps the token table (firm, symbol, side,
open shares per token), the positions and open shares per firm and symbol, and the last trade
per symbol.

Pipeline: ``i_stream`` is ready when the engine has settled, the tracker is empty and no mass
cancel is due; every check is evaluated combinationally from the record and the state in the
cycle it is taken (``checked`` high), and the verdict is registered: the order goes to the
engine on ``o_stream`` (the next cycle; the engine, idle, takes it at once), or a ``rejected``
event is out on ``r_stream`` the next cycle. So the gate costs 1 cycle on an accept. A
replace needs its token table row (firm, symbol, side, open shares), read (synchronously, so
the table can be block RAM) from the record's token while the record waits: a replace is
taken only after it has waited a cycle (the read port is transparent to the tracker's writes,
and nothing is written in the check's cycle, so the row is current).

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

__all__ = ["RiskGate", "token_row_layout", "counter_name"]


def token_row_layout() -> data.StructLayout:
    """The gate's token table row: whose order a token is, and its open shares."""
    return data.StructLayout({
        "firm":   unsigned(16),
        "symbol": unsigned(16),
        "side":   unsigned(1),
        "open":   unsigned(SHARES_WIDTH),
    })


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

        def pair_array(name):
            return Array(reg(f"{name}_{f}_{s}") for f in range(F) for s in range(S))

        max_shares_a = pair_array("max_shares")
        max_notional_a = pair_array("max_notional")
        collar_bp_a = pair_array("collar_bp")
        max_position_a = pair_array("max_position")
        ref_bid_a = Array(reg(f"ref_bid_{s}") for s in range(S))
        ref_ask_a = Array(reg(f"ref_ask_{s}") for s in range(S))
        period_a = Array(reg(f"rate_period_{f}") for f in range(F))

        # --- tracked state --------------------------------------------------------------------
        pos = Array(Signal(signed(40), name=f"pos_{i}") for i in range(F * S))
        open_buy = Array(Signal(40, name=f"open_buy_{i}") for i in range(F * S))
        open_sell = Array(Signal(40, name=f"open_sell_{i}") for i in range(F * S))
        last_trade = Array(Signal(32, name=f"last_trade_{s}") for s in range(S))
        last_valid = Array(Signal(name=f"last_valid_{s}") for s in range(S))
        tokens = Array(Signal(32, name=f"tokens_{f}") for f in range(F))

        m.submodules.table = table = Memory(shape=token_row_layout(), depth=1 << TB, init=[])
        wr_a = table.write_port()                 # one write port: block RAM (a copy per read)
        rd_t = table.read_port(transparent_for=(wr_a,))           # the tracker's
        rd_c = table.read_port(transparent_for=(wr_a,))           # the check's (replace)

        # --- tracker: stage 1 reads the token's row, stage 2 updates --------------------------
        cur_firm = Signal(16)                       # firm of the action the engine works on
        t2_valid = Signal()
        t2 = Signal(EventRecord)
        m.d.comb += rd_t.addr.eq(self.track.order_id[:TB])
        m.d.sync += [t2_valid.eq(self.track_valid), t2.eq(self.track)]
        row = rd_t.data
        e_firm = Signal(16)
        delta = Signal(signed(SHARES_WIDTH + 2))
        count = Signal()                            # stage 2 writes the table
        # a replace's old token is closed (open 0) in the first cycle stage 2 does not write;
        # one action has at most one replaced event, and no check runs before it is written
        kq_valid = Signal()
        kq_token = Signal(TB)
        kq_row = Signal(token_row_layout())
        with m.If(kq_valid & ~count):
            m.d.comb += [wr_a.addr.eq(kq_token), wr_a.en.eq(1), wr_a.data.eq(kq_row),
                         wr_a.data.open.eq(0)]
            m.d.sync += kq_valid.eq(0)
        with m.If(t2_valid):
            with m.Switch(t2.kind):
                with m.Case(EventKind.Accepted):
                    m.d.comb += [wr_a.addr.eq(t2.order_id[:TB]), wr_a.en.eq(1),
                                 wr_a.data.firm.eq(cur_firm), wr_a.data.symbol.eq(t2.symbol),
                                 wr_a.data.side.eq(t2.side), wr_a.data.open.eq(t2.shares),
                                 e_firm.eq(cur_firm), delta.eq(t2.shares), count.eq(1)]
                with m.Case(EventKind.Executed, EventKind.Canceled):
                    m.d.comb += [wr_a.addr.eq(t2.order_id[:TB]), wr_a.en.eq(1),
                                 wr_a.data.eq(row), wr_a.data.open.eq(row.open - t2.shares),
                                 e_firm.eq(row.firm), delta.eq(-t2.shares), count.eq(1)]
                with m.Case(EventKind.Replaced):
                    m.d.comb += [wr_a.addr.eq(t2.contra_id[:TB]), wr_a.en.eq(1),
                                 wr_a.data.eq(row), wr_a.data.open.eq(t2.shares),
                                 e_firm.eq(row.firm), delta.eq(t2.shares - row.open),
                                 count.eq(1)]
                    m.d.sync += [kq_valid.eq(1), kq_token.eq(t2.order_id[:TB]),
                                 kq_row.eq(row)]
            t_index = e_firm[:FW] * S + t2.symbol[:SW]
            t_known = (e_firm < F) & (t2.symbol < S)
            with m.If(count & t_known):
                with m.If(t2.side == Side.Buy):
                    m.d.sync += open_buy[t_index].eq(open_buy[t_index] + delta)
                with m.Else():
                    m.d.sync += open_sell[t_index].eq(open_sell[t_index] + delta)
            with m.If(t2.kind == EventKind.Executed):
                with m.If(t2.symbol < S):
                    m.d.sync += [last_trade[t2.symbol[:SW]].eq(t2.price),
                                 last_valid[t2.symbol[:SW]].eq(1)]
                with m.If(t_known):
                    m.d.sync += pos[t_index].eq(
                        pos[t_index] + Mux(t2.side == Side.Buy, t2.shares, -t2.shares))

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
                level = tokens[f] - take[f] + tick
                m.d.sync += tokens[f].eq(Mux(level > burst, burst, level))

        # --- the order on i_stream, the verdict registers ---------------------------------
        s1 = self.i_stream.payload
        out_valid = Signal()
        out = Signal(OrderRecord)
        rej_valid = Signal()
        rej = Signal(EventRecord)
        m.d.comb += [self.o_stream.valid.eq(out_valid), self.o_stream.payload.eq(out),
                     self.r_stream.valid.eq(rej_valid), self.r_stream.payload.eq(rej)]
        # a replace's token row: read from the record while it waits (its payload is stable)
        m.d.comb += rd_c.addr.eq(s1.order_id[:TB])
        waited = Signal()
        m.d.sync += waited.eq(self.i_stream.valid & ~self.i_stream.ready)
        with m.If(self.o_stream.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(self.r_stream.ready):
            m.d.sync += rej_valid.eq(0)

        # a kill write or a dead-man trip being turned into a pending mass cancel goes first
        free = (self.settled & ~t2_valid & ~kq_valid & ~self.track_valid & ~out_valid
                & ~rej_valid & (kill == kill_prev) & ~trip)
        m.d.comb += self.busy.eq(out_valid | rej_valid | t2_valid | kq_valid | self.track_valid
                                 | (pending != 0) | trip | (kill != kill_prev))

        # --- the checks (combinational from the record and the state) ----------------------
        entry = rd_c.data
        is_enter = s1.action == Action.Enter
        is_replace = s1.action == Action.Replace
        tok_small = (s1.order_id >> TB) == 0
        checked_kind = is_enter | (is_replace & tok_small & (entry.open != 0))
        firm = Mux(is_replace, entry.firm, s1.firm)
        sym = Mux(is_replace, entry.symbol, s1.symbol)
        side = Mux(is_replace, entry.side, s1.side)
        old_open = Mux(is_replace, entry.open, 0)
        market = is_enter & (s1.ord_type == OrderType.Market)
        fi, si = firm[:FW], sym[:SW]
        firm_known, sym_known = firm < F, sym < S
        pair_known = firm_known & sym_known
        pi = Signal(range(F * S))
        m.d.comb += pi.eq(fi * S + si)

        killed = kill[F] | (firm_known & kill.bit_select(fi, 1))
        halted = sym_known & reg("halted").bit_select(si, 1)
        max_shares, max_notional = max_shares_a[pi], max_notional_a[pi]
        bp, max_position = collar_bp_a[pi], max_position_a[pi]
        ref_reg = Signal(32)
        m.d.comb += ref_reg.eq(Mux(side == Side.Buy, ref_ask_a[si], ref_bid_a[si]))
        has_ref = (ref_reg != 0) | last_valid[si]
        ref = Signal(32)
        m.d.comb += ref.eq(Mux(ref_reg != 0, ref_reg, last_trade[si]))
        collar_on = bp != U32
        notional_on = max_notional != U64
        no_ref = ~has_ref & reg("control")[0] & Mux(market, notional_on, collar_on)
        basis = Mux(market, ref, s1.price)
        notional = Signal(64)
        m.d.comb += notional.eq(s1.shares * basis)
        bad_notional = notional_on & (~market | has_ref) & (notional > max_notional)
        scaled = Signal(48)
        m.d.comb += scaled.eq(s1.price * BP)
        high = Signal(66)
        low = Signal(66)
        m.d.comb += [high.eq(ref * (BP + bp)),
                     low.eq(ref * Mux(bp >= BP, 0, BP - bp))]
        bad_collar = ~market & has_ref & collar_on & Mux(side == Side.Buy, scaled > high,
                                                         scaled < low)
        reach = Signal(signed(44))
        m.d.comb += reach.eq(Mux(side == Side.Buy,
                                 pos[pi] + open_buy[pi] - old_open + s1.shares,
                                 open_sell[pi] - old_open + s1.shares - pos[pi]))
        bad_position = (max_position != U32) & (reach > max_position)
        rate_on = firm_known & (period_a[fi] != 0)
        no_token = rate_on & (tokens[fi] == 0)

        reason = Signal(8)
        with m.If(~checked_kind):
            pass
        with m.Elif(killed):
            m.d.comb += reason.eq(RejectReason.Killed)
        with m.Elif(self.deadman_tripped):
            m.d.comb += reason.eq(RejectReason.DeadMan)
        with m.Elif(halted):
            m.d.comb += reason.eq(RejectReason.Halted)
        with m.Elif(~pair_known):
            pass
        with m.Elif(s1.shares > max_shares):
            m.d.comb += reason.eq(RejectReason.MaxShares)
        with m.Elif(no_ref):
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
        with m.Elif(free & (~is_replace | waited)):
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
                with m.If(checked_kind & pair_known & rate_on):
                    m.d.comb += take.eq(Const(1, F) << fi)
        return m
