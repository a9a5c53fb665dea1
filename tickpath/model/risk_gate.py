"""Golden pre-trade risk gate in front of the matching engine, and the gated path's model.

Ref: the host's checks (:mod:`tickpath.host.risk.checks`) and their TOML
(:mod:`tickpath.host.risk.config`, ``docs/risk.example.toml``); reason codes in
:class:`tickpath.protocol.records.RejectReason`; the engine's semantics in
:mod:`tickpath.model.matching`. The gateware is ``hdl/matching/risk_gate.py`` (the gate) and
``hdl/matching/gated.py`` (gate + engine); this module pins what they must do, event for event.

Everything is an integer in gateware units: shares, ticks, ticks x shares, basis points, clock
cycles. The gateware sees ids, so limits are kept per firm id ``0..firms-1`` and symbol id
``0..symbols-1`` (:class:`GateLimits`); firm ids at or above ``firms`` have no per-firm limits
(only the global kill switch, the dead-man switch and halts apply to them).

Checks
------
Only ``Enter`` and ``Replace`` are checked (cancels only reduce risk; end-of-day and mass-cancel
records pass). A replace is checked with the firm, symbol and side of the order it replaces, as
the gate's token table knows them (below); a replace whose token the table does not hold live
passes unchecked (the engine rejects it ``u``). First failing check wins:

``k``  the global kill switch, or the firm's
``m``  the dead-man switch has tripped (no host heartbeat for the configured time)
``H``  the symbol is halted
``q``  shares > ``max_shares``
``r``  a reference price is needed and there is none and ``no_reference_reject``: a limit order
       with the collar on, or a market order with a notional limit
``n``  shares x price > ``max_notional`` (a market order: x the reference; none: not checked)
``c``  limit orders with a reference: buy ``price * 10000 > ref * (10000 + bp)``, sell
       ``price * 10000 < ref * (10000 - bp)`` (the host's formula)
``p``  the position the firm could reach in the symbol exceeds ``max_position``: buy
       ``pos + open_buys + shares``, sell ``open_sells + shares - pos``; a replace counts its
       new size in place of the replaced order's open size
``t``  the firm's token bucket is empty; only an order that passed every other check takes a
       token

Reference price (per symbol): buy orders use the ask reference, sell orders the bid reference,
when the host has written one (the feed path's BBO; 0 = none); else the symbol's last trade
price in the engine (any execution); else none.

State kept from the engine's own events (exactly what the gateware tracks)
--------------------------------------------------------------------------
A token table (token -> firm, symbol, side, open shares; live while open > 0; tokens at or above
``2**token_bits`` never live): ``accepted`` sets an entry (the action's firm), ``executed`` and
``canceled`` subtract their shares, ``replaced`` moves the entry to the new token with the new
shares. Per firm and symbol: the executed position (signed) and open shares per side (the
same deltas); per symbol: the last trade price.

Token bucket (per firm, ``rate`` = (period, burst), period 0 = off): tokens start at ``burst``
when the rate is set at cycle ``w``, one token is added (up to ``burst``) at cycles ``w + k *
period`` (k >= 1); an order checked at cycle ``c`` sees the tokens added at cycles before ``c``.

Kill and dead-man switches
--------------------------
Setting a firm's kill bit, the global kill bit, or the dead-man switch tripping, cancels the
resting orders concerned: the gate sends the engine a mass cancel (an end-of-day record with
``min_qty`` :data:`~tickpath.model.matching.MASS_CANCEL_FIRM` /
:data:`~tickpath.model.matching.MASS_CANCEL_ALL`), whose events are ``canceled`` reason ``S``.
Several at once: global (or dead-man) first, then firms ascending. New orders are rejected while
the switch is on; a heartbeat re-arms the dead-man switch.

Which configuration keys the hardware enforces (:meth:`GateLimits.from_config`)
-------------------------------------------------------------------------------
Enforced: ``max_order_shares``, ``max_order_notional``, ``max_position``, ``collar`` /
``collar_bp`` (most specific wins), ``no_reference``, ``halted``, ``restricted`` (as
``max_shares`` 0 for that firm and symbol: rejected ``q``), the account's ``orders_per_second``
and ``burst`` (token bucket, period = clock / rate cycles). In the registers a limit of all
ones is no limit (``max_position`` 4294967295 included). Host-only: ``max_gross_exposure``,
``max_daily_loss``, ``check_price`` (the engine checks prices itself), ``check_duplicate_id``
(client ids are host strings), the ``[session]`` rate limit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tickpath.model.matching import MASS_CANCEL_ALL, MASS_CANCEL_FIRM, MatchingModel
from tickpath.protocol.records import (
    Action,
    Event,
    EventKind,
    Order,
    OrderType,
    RejectReason,
    Side,
)
from tickpath.protocol.regmap import RegisterMap

__all__ = ["GateLimits", "PairLimits", "RiskGateModel", "GatedMatchingModel", "gate_regmap",
           "GATE_REASONS", "U32", "U64", "BP", "DEFAULT_CLOCK_HZ"]

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
BP = 10_000
DEFAULT_CLOCK_HZ = 100_000_000

#: The gate's reject reasons in check order (one counter each).
GATE_REASONS = (RejectReason.Killed, RejectReason.DeadMan, RejectReason.Halted,
                RejectReason.MaxShares, RejectReason.NoReference, RejectReason.MaxNotional,
                RejectReason.Collar, RejectReason.Position, RejectReason.Rate)


@dataclass(frozen=True)
class PairLimits:
    """Per-order limits and the position limit of one firm in one symbol (None: off)."""
    max_shares: int | None = None
    max_notional: int | None = None
    collar_bp: int | None = None
    max_position: int | None = None


@dataclass
class GateLimits:
    """The gate's limits by id. ``pairs`` maps ``(firm, symbol)``; ``rates`` maps firm to
    ``(period_cycles, burst)``; absent entries are off. :meth:`off` is every check off."""
    firms: int = 4
    symbols: int = 4
    pairs: dict[tuple[int, int], PairLimits] = field(default_factory=dict)
    rates: dict[int, tuple[int, int]] = field(default_factory=dict)
    halted: frozenset[int] = frozenset()
    no_reference_reject: bool = False
    deadman_cycles: int = 0                 # 0 = off

    @classmethod
    def off(cls, firms: int = 4, symbols: int = 4) -> GateLimits:
        return cls(firms=firms, symbols=symbols)

    def pair(self, firm: int, symbol: int) -> PairLimits:
        return self.pairs.get((firm, symbol), _OFF)

    @classmethod
    def from_config(cls, config: Any, firms: dict[str, int], symbols: dict[str, int], *,
                    clock_hz: int = DEFAULT_CLOCK_HZ, n_firms: int | None = None,
                    n_symbols: int | None = None, deadman_cycles: int = 0) -> GateLimits:
        """The hardware's share of a :class:`tickpath.host.risk.config.RiskConfig`: ``firms``
        maps account names to firm ids, ``symbols`` stock names to symbol ids. The limits are
        derived by the host's own :class:`~tickpath.host.risk.checks.RiskChecker` (the same
        most-specific and least-of rules)."""
        from tickpath.host.risk.checks import RiskChecker

        n_firms = max(firms.values(), default=-1) + 1 if n_firms is None else n_firms
        n_symbols = max(symbols.values(), default=-1) + 1 if n_symbols is None else n_symbols
        out = cls(firms=n_firms, symbols=n_symbols, deadman_cycles=deadman_cycles)
        if not config.enabled:
            return out
        checker = RiskChecker(config)
        for account, f in firms.items():
            if not 0 <= f < n_firms:
                raise ValueError(f"firm {account!r} id {f} is not below {n_firms}")
            for stock, s in symbols.items():
                if not 0 <= s < n_symbols:
                    raise ValueError(f"symbol {stock!r} id {s} is not below {n_symbols}")
                shares, notional, position, collar, restricted = checker.limits(account, stock)
                pair = PairLimits(0 if restricted else shares, notional, collar, position)
                if pair != _OFF:
                    out.pairs[(f, s)] = pair
            _, _, rate, burst = checker.account_limits(account)
            if rate is not None:
                out.rates[f] = (max(clock_hz // rate, 1), rate if burst is None else burst)
        out.halted = frozenset(symbols[s] for s in config.halted if s in symbols)
        out.no_reference_reject = config.no_reference_reject
        return out

    def register_values(self) -> dict[str, int]:
        """Every limit register of :func:`gate_regmap` by name, the per-pair limits aside
        (:meth:`pair_rows`): off is the reset value (all ones, period 0)."""
        out: dict[str, int] = {}
        for f in range(self.firms):
            period, burst = self.rates.get(f, (0, 0))
            out[f"rate_period_{f}"] = period
            out[f"rate_burst_{f}"] = burst
        out["halted"] = sum(1 << s for s in self.halted if s < self.symbols)
        out["control"] = int(self.no_reference_reject)
        out["deadman_cycles"] = self.deadman_cycles
        return out

    def pair_rows(self) -> dict[tuple[int, int], dict[str, int]]:
        """Every (firm, symbol) pair's row of the limit memory, as the ``limit_*`` window
        registers hold it (off = all ones)."""
        out = {}
        for f in range(self.firms):
            for s in range(self.symbols):
                p = self.pair(f, s)
                out[(f, s)] = {
                    "limit_max_shares": U32 if p.max_shares is None else p.max_shares,
                    "limit_max_notional": U64 if p.max_notional is None else p.max_notional,
                    "limit_collar_bp": U32 if p.collar_bp is None else p.collar_bp,
                    "limit_max_position": U32 if p.max_position is None else p.max_position,
                }
        return out

    def register_writes(self, *, all_pairs: bool = True) -> list[tuple[str, int]]:
        """The register writes that set a gate to these limits, in order: the scalar
        registers, each pair's row through the limit window (every pair, so a reload clears
        what the last configuration set; ``all_pairs=False``: only pairs with a limit, for a
        gate just out of reset), then the rates (a firm's ``rate_burst`` before its
        ``rate_period``, whose write restarts the bucket full)."""
        values = self.register_values()
        writes = [(k, v) for k, v in values.items() if not k.startswith("rate_")]
        for (f, s), row in self.pair_rows().items():
            if not all_pairs and (f, s) not in self.pairs:
                continue
            writes += [("limit_firm", f), ("limit_symbol", s), *row.items(),
                       ("limit_write", 1)]
        for f in range(self.firms):
            writes += [(f"rate_burst_{f}", values[f"rate_burst_{f}"]),
                       (f"rate_period_{f}", values[f"rate_period_{f}"])]
        return writes

    def load(self, client: Any) -> None:
        """Write every limit through a :class:`~tickpath.protocol.regmap.RegisterClient` on
        :func:`gate_regmap` (the host's loader), in :meth:`register_writes` order."""
        for name, value in self.register_writes():
            client.write(name, value)


_OFF = PairLimits()


def gate_regmap(firms: int, symbols: int) -> RegisterMap:
    """The risk gate's registers (the gateware's bank and the host's loader use this map).

    Off: all ones for ``max_*`` and ``collar_bp``; 0 for ``rate_period`` and
    ``deadman_cycles``. ``kill``: bit ``f`` kills firm ``f``, bit ``firms`` is global.
    """
    fields: list[tuple] = [
        ("kill", firms + 1, "rw", "kill switch: bit f firm f, top bit global"),
        ("heartbeat", 1, "w", "host heartbeat (any write re-arms the dead-man switch)"),
        ("deadman_cycles", 32, "rw", "dead-man timeout in cycles (0 off)"),
        ("halted", symbols, "rw", "bit s: symbol s halted"),
        ("control", 1, "rw", "bit 0: reject orders that need a reference and have none"),
        ("now", 32, "r", "cycles since reset"),
        ("deadman_tripped", 1, "r", "the dead-man switch has tripped"),
    ]
    fields += [(f"rejects_{chr(r)}", 32, "r", f"gate rejects {chr(r)!r}") for r in GATE_REASONS]
    for s in range(symbols):
        fields += [(f"ref_bid_{s}", 32, "rw", f"symbol {s} bid reference (0 none)"),
                   (f"ref_ask_{s}", 32, "rw", f"symbol {s} ask reference (0 none)")]
    for f in range(firms):
        fields += [(f"rate_period_{f}", 32, "rw", f"firm {f}: cycles per token (0 off)"),
                   (f"rate_burst_{f}", 32, "rw", f"firm {f}: bucket size")]
    # per (firm, symbol) limits live in block RAM, written a row at a time through a window
    fields += [
        ("limit_firm", 16, "rw", "limit window: firm of the row to write or read"),
        ("limit_symbol", 16, "rw", "limit window: symbol of the row to write or read"),
        ("limit_max_shares", 32, "rw", "limit window: max shares per order", U32),
        ("limit_max_notional", 64, "rw", "limit window: max shares x price per order", U64),
        ("limit_collar_bp", 32, "rw", "limit window: price collar in basis points", U32),
        ("limit_max_position", 32, "rw", "limit window: max reachable position", U32),
        ("limit_write", 1, "w", "write the window's limits into (limit_firm, limit_symbol)"),
        ("limit_read", 1, "w", "read (limit_firm, limit_symbol)'s row into limit_row_*"),
        ("limit_row_max_shares", 32, "r", "the row read by limit_read (a pair out of range "
         "reads off)"),
        ("limit_row_max_notional", 64, "r", ""),
        ("limit_row_collar_bp", 32, "r", ""),
        ("limit_row_max_position", 32, "r", ""),
    ]
    return RegisterMap("risk_gate", fields)


class _Bucket:
    __slots__ = ("period", "burst", "tokens", "next_tick")

    def __init__(self, period: int, burst: int, cycle: int):
        self.period, self.burst, self.tokens = period, burst, burst
        self.next_tick = cycle + period

    def take(self, cycle: int) -> bool:
        if self.next_tick < cycle:
            n = (cycle - self.next_tick + self.period - 1) // self.period
            self.tokens = min(self.burst, self.tokens + n)
            self.next_tick += n * self.period
        if self.tokens:
            self.tokens -= 1
            return True
        return False


class RiskGateModel:
    """The gate's decisions and the state they need (see the module docstring).

    Parameters
    ----------
    limits : GateLimits or None
        ``None``: every check off.
    token_bits : int
        The engine's token table size (tokens at or above ``2**token_bits`` are never live).
    """

    def __init__(self, limits: GateLimits | None = None, *, token_bits: int = 10,
                 cycle: int = 0):
        self.limits = GateLimits.off() if limits is None else limits
        self.token_bits = token_bits
        self.kill = 0                               # bit f firm, bit firms global
        self.deadman_tripped = False
        self.halted = set(self.limits.halted)
        self.no_reference_reject = self.limits.no_reference_reject
        self.ref_bid: dict[int, int] = {}
        self.ref_ask: dict[int, int] = {}
        self.last_trade: dict[int, int] = {}
        self.tokens: dict[int, list] = {}           # token -> [firm, symbol, side, open]
        self.position: Counter[tuple[int, int]] = Counter()
        self.open: Counter[tuple[int, int, Side]] = Counter()
        self.buckets: dict[int, _Bucket] = {}
        self.counters: Counter[RejectReason] = Counter()
        for f, (period, burst) in self.limits.rates.items():
            self.set_rate(f, period, burst, cycle)

    # --- host writes ----------------------------------------------------------------------

    def set_rate(self, firm: int, period: int, burst: int, cycle: int) -> None:
        """The firm's bucket as reloaded by the gate in cycle ``cycle``."""
        if period:
            self.buckets[firm] = _Bucket(period, burst, cycle)
        else:
            self.buckets.pop(firm, None)

    def set_reference(self, symbol: int, bid: int = 0, ask: int = 0) -> None:
        self.ref_bid[symbol], self.ref_ask[symbol] = bid, ask

    def reference(self, symbol: int, side: Side) -> int | None:
        ref = (self.ref_ask if side is Side.Buy else self.ref_bid).get(symbol, 0)
        return ref or self.last_trade.get(symbol)

    # --- the decision ---------------------------------------------------------------------

    def live(self, token: int) -> list | None:
        entry = self.tokens.get(token)
        return entry if entry is not None and entry[3] > 0 else None

    def check(self, order: Order, cycle: int = 0) -> RejectReason | None:
        """``None`` (pass to the engine) or the reject reason of one action, checked at
        ``cycle``; counts the reject and takes a rate token on a pass."""
        reason = self._check(order, cycle)
        if reason is not None:
            self.counters[reason] += 1
        return reason

    def _check(self, order: Order, cycle: int) -> RejectReason | None:
        action = order.action
        if action is Action.Enter:
            firm, symbol, side = order.firm, order.symbol, order.side
            old_open = 0
            market = order.ord_type is OrderType.Market
        elif action is Action.Replace:
            entry = self.live(order.order_id) if order.order_id >> self.token_bits == 0 else None
            if entry is None:
                return None
            firm, symbol, side, old_open = entry
            market = False
        else:
            return None
        lim = self.limits
        shares, price = order.shares, order.price
        firm_known = firm < lim.firms
        if self.kill >> lim.firms & 1 or (firm_known and self.kill >> firm & 1):
            return RejectReason.Killed
        if self.deadman_tripped:
            return RejectReason.DeadMan
        if symbol in self.halted and symbol < lim.symbols:
            return RejectReason.Halted
        if not firm_known or symbol >= lim.symbols:
            return None
        p = lim.pair(firm, symbol)
        if p.max_shares is not None and shares > p.max_shares:
            return RejectReason.MaxShares
        ref = self.reference(symbol, side)
        if ref is None and self.no_reference_reject and (
                (not market and p.collar_bp is not None)
                or (market and p.max_notional is not None)):
            return RejectReason.NoReference
        basis = ref if market else price
        if p.max_notional is not None and basis is not None and shares * basis > p.max_notional:
            return RejectReason.MaxNotional
        if not market and ref is not None and p.collar_bp is not None:
            if side is Side.Buy:
                if price * BP > ref * (BP + p.collar_bp):
                    return RejectReason.Collar
            elif price * BP < ref * max(BP - p.collar_bp, 0):
                return RejectReason.Collar
        if p.max_position is not None and p.max_position != U32:
            pos = self.position[(firm, symbol)]
            if side is Side.Buy:
                reach = pos + self.open[(firm, symbol, Side.Buy)] - old_open + shares
            else:
                reach = self.open[(firm, symbol, Side.Sell)] - old_open + shares - pos
            if reach > p.max_position:
                return RejectReason.Position
        bucket = self.buckets.get(firm)
        if bucket is not None and not bucket.take(cycle):
            return RejectReason.Rate
        return None

    # --- tracking from the engine's events ------------------------------------------------

    def track(self, order: Order, events: list[Event]) -> None:
        """Update the token table, positions, open shares and last trades from the events
        of ``order`` (an action that passed the gate)."""
        firms, symbols = self.limits.firms, self.limits.symbols
        for e in events:
            kind = e.kind
            if kind is EventKind.Accepted:
                self.tokens[e.order_id] = [order.firm, e.symbol, e.side, e.shares]
                delta = e.shares
            elif kind is EventKind.Executed or kind is EventKind.Canceled:
                entry = self.tokens[e.order_id]
                entry[3] -= e.shares
                delta = -e.shares
                if kind is EventKind.Executed:
                    self.last_trade[e.symbol] = e.price
                    if entry[0] < firms and e.symbol < symbols:
                        self.position[(entry[0], e.symbol)] += \
                            e.shares if e.side is Side.Buy else -e.shares
            elif kind is EventKind.Replaced:
                entry = self.tokens[e.order_id]
                delta = e.shares - entry[3]
                entry[3] = 0
                self.tokens[e.contra_id] = [entry[0], entry[1], entry[2], e.shares]
            else:
                continue
            firm = self.tokens[e.contra_id if kind is EventKind.Replaced else e.order_id][0]
            if firm < firms and e.symbol < symbols:
                self.open[(firm, e.symbol, e.side)] += delta


class GatedMatchingModel:
    """The whole gated path: :class:`RiskGateModel` in front of a :class:`MatchingModel`.

    :meth:`process` gives an action's events: the gate's ``rejected`` event (the engine's
    form: the action's token, side, symbol, shares, price, ``last`` set) or the engine's own.
    The host writes (:meth:`set_kill`, :meth:`deadman_trip`, :meth:`heartbeat`,
    :meth:`set_halted`, :meth:`set_reference`) return the events of the mass cancels they
    cause.
    """

    def __init__(self, engine: MatchingModel, limits: GateLimits | None = None, *,
                 token_bits: int = 10, cycle: int = 0):
        self.engine = engine
        self.gate = RiskGateModel(limits, token_bits=token_bits, cycle=cycle)

    @property
    def counters(self) -> Counter[RejectReason]:
        return self.gate.counters

    def process(self, order: Order, cycle: int = 0) -> list[Event]:
        reason = self.gate.check(order, cycle)
        if reason is not None:
            return [Event(EventKind.Rejected, 1, order.side, reason, order.order_id, 0,
                          order.symbol, order.shares, order.price, 0)]
        events = self.engine.process(order)
        self.gate.track(order, events)
        return events

    def process_all(self, orders, cycle: int = 0) -> list[Event]:
        out: list[Event] = []
        for order in orders:
            out += self.process(order, cycle)
        return out

    def _mass_cancel(self, firm: int | None) -> list[Event]:
        mode = MASS_CANCEL_ALL if firm is None else MASS_CANCEL_FIRM
        order = Order(action=Action.EndOfDay, firm=firm or 0, min_qty=mode)
        events = self.engine.process(order)
        self.gate.track(order, events)
        return events

    def set_kill(self, mask: int) -> list[Event]:
        """Write the kill register: bit ``f`` firm ``f``, bit ``firms`` global. Bits newly
        set cancel their resting orders: global first, then firms ascending."""
        firms = self.gate.limits.firms
        rising = mask & ~self.gate.kill
        self.gate.kill = mask
        events: list[Event] = []
        if rising >> firms & 1:
            events += self._mass_cancel(None)
        for f in range(firms):
            if rising >> f & 1:
                events += self._mass_cancel(f)
        return events

    def deadman_trip(self) -> list[Event]:
        """The dead-man switch trips (no heartbeat for ``deadman_cycles``)."""
        if self.gate.deadman_tripped:
            return []
        self.gate.deadman_tripped = True
        return self._mass_cancel(None)

    def heartbeat(self) -> None:
        self.gate.deadman_tripped = False

    def set_halted(self, symbol: int, halted: bool = True) -> None:
        (self.gate.halted.add if halted else self.gate.halted.discard)(symbol)

    def set_reference(self, symbol: int, bid: int = 0, ask: int = 0) -> None:
        self.gate.set_reference(symbol, bid, ask)
