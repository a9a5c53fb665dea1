"""The host order path: client action -> risk -> journal -> engine -> events -> journal ->
positions, with the open-order tracking the risk checks and the kill switch need.

One action, in this order:

1. the client's intent is journaled (``ORDER``, ``CANCEL_REQUEST`` or ``REPLACE_REQUEST``);
2. an enter or replace is checked (:class:`tickpath.host.risk.RiskChecker`) and the decision,
   ``pass`` or the reject reason, is journaled (``RISK``). A refused action never reaches the
   engine; it is answered by one ``Rejected`` event carrying the reason's one-byte code
   (:data:`RISK_CODES`), as the gateways' :class:`~tickpath.host.gateway.hub.OrderSink` seam
   asks;
3. the action goes to the engine (the journal records above were appended first: written
   before the order leaves the host) and every event that comes back is journaled
   (``ACCEPTED``, ``EXECUTED``, ``CANCELED``, ``REPLACED``, ``REJECTED``), fed to the open-order
   tracking, the risk state and positions (``Positions.apply_fill`` per fill);
4. with ``durable=True`` the call returns only once the journal has made those records
   durable (group commit), so the client never sees an acknowledgement that could be lost.

The path is an ``OrderSink``: ``set_symbol(symbol, stock)`` and ``await submit(order, ctx)``.

Kill switch (:meth:`OrderPath.kill`): global, per account or per session; blocks new orders and
replaces (cancels still pass), then cancels every resting order in scope in the engine (all
submitted before the first answer is read), journals ``KILL`` records and measures the time
from the command to the last cancel's event. The engine answers those cancels with reason
``U``; the path turns them into ``S`` (supervisory), as OUCH does, and hands them to
:attr:`OrderPath.unsolicited` listeners (the gateways route them to their sessions).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from tickpath.engine import Engine, EngineError
from tickpath.host.audit.format import Kind
from tickpath.host.positions import Positions
from tickpath.host.risk.checks import Reason, RiskChecker
from tickpath.host.risk.config import ConfigHolder
from tickpath.protocol.records import (
    Action,
    CancelReason,
    Event,
    EventKind,
    Order,
    OrderType,
    Side,
)

__all__ = ["OrderPath", "Submission", "OpenOrder", "KillReport", "RISK_CODES", "MemoryJournal"]

# One ASCII byte per risk reason, for the Rejected event a refused action is answered with
# (OUCH 4.2's own code where one fits: H halted, Z shares above the safety threshold, X price,
# a "reject all" for the kill switch; lower case otherwise).
RISK_CODES: dict[Reason, int] = {
    Reason.KILLED_GLOBAL: ord("a"), Reason.KILLED_ACCOUNT: ord("a"),
    Reason.KILLED_SESSION: ord("a"), Reason.HALTED: ord("H"), Reason.RESTRICTED: ord("r"),
    Reason.DUPLICATE_ID: ord("d"), Reason.PRICE_INVALID: ord("X"), Reason.MAX_QTY: ord("Z"),
    Reason.NO_REFERENCE: ord("e"), Reason.MAX_NOTIONAL: ord("n"), Reason.COLLAR: ord("c"),
    Reason.MAX_POSITION: ord("p"), Reason.MAX_GROSS_EXPOSURE: ord("g"),
    Reason.DAILY_LOSS: ord("l"), Reason.RATE_SESSION: ord("t"), Reason.RATE_ACCOUNT: ord("t"),
}

_SIDE = {Side.Buy: "B", Side.Sell: "S"}
_MAX_EVENTS = 1 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class Submission:
    """Who sent an action (the same fields as the gateways' ``Submission``): the session, the
    account, and the client's id of the order the action creates (enter: its token; replace:
    the new token; cancel: the token)."""

    session: str
    account: str
    client_id: str


@dataclasses.dataclass(slots=True)
class OpenOrder:
    """An order of ours that the engine holds (or is answering right now)."""

    order_id: int
    client_id: str
    account: str
    session: str
    symbol: str
    side: Side
    price: int
    open: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class KillReport:
    scope: str                     # "global", "account", "session"
    name: str | None
    orders_canceled: int
    time_to_last_cancel_ns: int    # command to the last cancel's event (0 if nothing rested)
    events: list[Event]


class MemoryJournal:
    """A journal in memory with the real one's ``append``/``wait_durable`` (unit tests and
    measurements that must not touch a disk)."""

    def __init__(self) -> None:
        self.records: list[tuple[Kind, dict[str, Any]]] = []

    def append(self, kind: Kind, **fields: Any) -> int:
        self.records.append((kind, fields))
        return len(self.records)

    def wait_durable(self, seq: int, timeout: float | None = None) -> None:
        pass

    @property
    def last_seq(self) -> int:
        return len(self.records)


class OrderPath:
    """Risk, journal, engine and positions joined.

    Parameters
    ----------
    engine : Engine
    risk : RiskChecker
    journal : object with ``append(kind, **fields) -> seq`` and ``wait_durable(seq)``
        (:class:`tickpath.host.audit.Journal`, or :class:`MemoryJournal`).
    positions : Positions or None
        Fed every fill; ``None``: a new :class:`tickpath.host.positions.Positions`.
    venue : str
        Written in every journal record (which engine: ``model``, ``sim``, ``board``).
    clock : callable returning int ns
        The time the rate limits see (``time.monotonic_ns`` by default).

    Members
    -------
    live : dict of int to OpenOrder
        Our orders the engine holds, by internal id.
    unsolicited : list of callables
        Each is called with the events of actions the path made itself (kill cancels).
    """

    def __init__(self, engine: Engine, risk: RiskChecker, journal: Any,
                 positions: Positions | None = None, *, venue: str = "model",
                 clock: Callable[[], int] = time.monotonic_ns):
        self.engine = engine
        self.risk = risk
        self.journal = journal
        self.positions = Positions() if positions is None else positions
        self.venue = venue
        self.clock = clock
        self.stocks: dict[int, str] = {}
        self.live: dict[int, OpenOrder] = {}
        self.unsolicited: list[Callable[[list[Event]], None]] = []
        self.kill_reports: list[KillReport] = []
        self._last_seq = 0
        self._append = journal.append
        self._registered: OpenOrder | None = None
        self.last_risk_reason: Reason | None = None     # of the last submit (None: passed)

    # --- journal ---------------------------------------------------------------------------

    def _journal(self, kind: Kind, **fields: Any) -> int:
        seq = self._last_seq = self._append(kind, venue=self.venue, **fields)
        return seq

    def flush(self) -> None:
        """Wait until every record this path appended is durable."""
        if self._last_seq:
            self.journal.wait_durable(self._last_seq)

    async def _durable(self) -> None:
        wait_async = getattr(self.journal, "wait_durable_async", None)
        if wait_async is not None:
            await wait_async(self._last_seq)
        else:
            self.journal.wait_durable(self._last_seq)

    def journal_config(self, holder: ConfigHolder, *, ok: bool = True,
                       errors: list[str] | None = None) -> int:
        """Journal the configuration in force (at start, after a reload attempt)."""
        c = holder.config
        return self._journal(Kind.CONFIG, reason="risk config" if ok else "risk reload failed",
                             detail={"source": c.source, "digest": c.digest, "ok": ok,
                                     "errors": errors or []})

    def reload(self, holder: ConfigHolder) -> tuple[bool, list[str]]:
        """Re-read the risk file; a bad file keeps the old limits. Journaled either way."""
        ok, errors = holder.reload()
        if ok:
            self.risk.set_config(holder.config)
        self.journal_config(holder, ok=ok, errors=errors)
        return ok, errors

    # --- the OrderSink seam ---------------------------------------------------------------

    def set_symbol(self, symbol: int, stock: str) -> None:
        self.engine.set_symbol(symbol, stock)
        self.stocks[symbol] = stock

    async def submit(self, order: Order, ctx: Submission, *, now_ns: int | None = None,
                     durable: bool = True) -> list[Event]:
        """Run one action; returns its events (a risk reject: one ``Rejected`` event)."""
        action = order.action
        self._registered = None
        if action is Action.Enter:
            reason = self._enter(order, ctx, self.clock() if now_ns is None else now_ns)
        elif action is Action.Replace:
            reason = self._replace(order, ctx, self.clock() if now_ns is None else now_ns)
        else:
            reason = None
            if action is Action.Cancel:
                o = self.live.get(order.order_id)
                self._journal(Kind.CANCEL_REQUEST, order_id=order.order_id,
                              client_id=ctx.client_id, account=o.account if o else ctx.account,
                              symbol=o.symbol if o else "", quantity=order.shares,
                              detail={"session": ctx.session})
        self.last_risk_reason = reason
        if reason is not None:
            events = [Event(EventKind.Rejected, 1, order.side, RISK_CODES[reason],
                            order.order_id, 0, order.symbol, order.shares, order.price, 0)]
        else:
            events = await self._run(order, ctx.client_id if action is Action.Replace else None)
        if durable:
            await self._durable()
        return events

    # --- risk ------------------------------------------------------------------------------

    def _enter(self, order: Order, ctx: Submission, now_ns: int) -> Reason | None:
        symbol = self.stocks.get(order.symbol, "")
        side = order.side
        market = order.ord_type is OrderType.Market
        common = dict(order_id=order.order_id, client_id=ctx.client_id, account=ctx.account,
                      symbol=symbol, side=_SIDE[side], price=order.price, quantity=order.shares)
        self._journal(Kind.ORDER, **common,
                      detail={"session": ctx.session, "tif": order.tif.name.lower(),
                              "type": order.ord_type.name.lower(), "min_qty": order.min_qty})
        reason = self.risk.check_enter(ctx.account, ctx.session, ctx.client_id, symbol, side,
                                       order.shares, order.price, market, now_ns)
        self._journal(Kind.RISK, **common, reason=reason or "pass",
                      detail={"action": "enter", "session": ctx.session})
        if reason is None and order.order_id not in self.live:   # else the engine says d
            self.live[order.order_id] = self._registered = OpenOrder(
                order.order_id, ctx.client_id, ctx.account, ctx.session, symbol, side,
                order.price)
        return reason

    def _replace(self, order: Order, ctx: Submission, now_ns: int) -> Reason | None:
        o = self.live.get(order.order_id)
        account = o.account if o is not None else ctx.account
        common = dict(order_id=order.order_id, client_id=ctx.client_id, account=account,
                      symbol=o.symbol if o else "", side=_SIDE[o.side] if o else None,
                      price=order.price, quantity=order.shares)
        detail = {"session": ctx.session, "new_order_id": order.new_order_id}
        self._journal(Kind.REPLACE_REQUEST, **common, detail=detail)
        if o is None:
            # not ours or not live: the engine answers (rejected u); only a kill stops it here
            r = self.risk
            reason = (Reason.KILLED_GLOBAL if r.killed_global else
                      Reason.KILLED_ACCOUNT if account in r.killed_accounts else
                      Reason.KILLED_SESSION if ctx.session in r.killed_sessions else None)
        else:
            reason = self.risk.check_replace(account, ctx.session, ctx.client_id, o.symbol,
                                             o.side, o.open, o.price, order.shares,
                                             order.price, now_ns)
        self._journal(Kind.RISK, **common, reason=reason or "pass",
                      detail={**detail, "action": "replace"})
        return reason

    # --- engine and events -------------------------------------------------------------------

    async def _run(self, order: Order, new_client_id: str | None) -> list[Event]:
        engine = self.engine
        await engine.submit(order)
        events = []
        for _ in range(_MAX_EVENTS):
            e = await engine.recv()
            events.append(e)
            if e.last:
                break
        else:
            raise EngineError(f"engine sent more than {_MAX_EVENTS} events for one action")
        self._apply(events, new_client_id)
        return events

    def _apply(self, events: list[Event], new_client_id: str | None,
               supervisory: bool = False) -> list[Event]:
        live, risk, journal = self.live, self.risk, self._journal
        for i, e in enumerate(events):
            kind = e.kind
            o = live.get(e.order_id)
            if kind is EventKind.Accepted:
                if o is not None:
                    o.open, o.price = e.shares, e.price
                    risk.on_open(o.account, o.symbol, o.side, e.shares, e.price)
                    journal(Kind.ACCEPTED, order_id=e.order_id, client_id=o.client_id,
                            account=o.account, symbol=o.symbol, side=_SIDE[e.side],
                            price=e.price, quantity=e.shares)
                continue
            if kind is EventKind.Executed:
                if o is not None:
                    o.open -= e.shares
                    risk.on_reduce(o.account, o.symbol, o.side, e.shares, o.price)
                    risk.on_fill(o.account, o.symbol, o.side, e.shares, e.price)
                    risk.reference.trade(o.symbol, e.price)
                    self.positions.apply_fill(o.account, o.symbol, _SIDE[o.side], e.shares,
                                              e.price)
                    journal(Kind.EXECUTED, order_id=e.order_id, client_id=o.client_id,
                            account=o.account, symbol=o.symbol, side=_SIDE[e.side],
                            price=e.price, quantity=e.shares,
                            detail={"match_number": e.match_number, "contra": e.contra_id})
            elif kind is EventKind.Canceled:
                if supervisory and e.reason == CancelReason.User:
                    e = events[i] = e._replace(reason=CancelReason.Supervisory)
                if o is not None:
                    o.open -= e.shares
                    risk.on_reduce(o.account, o.symbol, o.side, e.shares, o.price)
                    journal(Kind.CANCELED, order_id=e.order_id, client_id=o.client_id,
                            account=o.account, symbol=o.symbol, side=_SIDE[e.side],
                            price=e.price, quantity=e.shares, reason=chr(e.reason))
            elif kind is EventKind.Replaced:
                if o is not None:
                    risk.on_reduce(o.account, o.symbol, o.side, o.open, o.price)
                    o.open = 0
                    new = live[e.contra_id] = OpenOrder(
                        e.contra_id, new_client_id or "", o.account, o.session, o.symbol,
                        o.side, e.price, e.shares)
                    risk.on_open(o.account, o.symbol, o.side, e.shares, e.price)
                    journal(Kind.REPLACED, order_id=e.order_id, client_id=o.client_id,
                            account=o.account, symbol=o.symbol, side=_SIDE[e.side],
                            price=e.price, quantity=e.shares,
                            detail={"new_order_id": e.contra_id,
                                    "new_client_id": new.client_id})
            elif kind is EventKind.Rejected:
                if o is not None and o is self._registered:
                    del live[e.order_id]          # the enter we registered did not happen
                    self._registered = None
                journal(Kind.REJECTED, order_id=e.order_id,
                        client_id="" if o is None else o.client_id,
                        account="" if o is None else o.account,
                        symbol=self.stocks.get(e.symbol, ""), side=_SIDE[e.side],
                        price=e.price, quantity=e.shares, reason=chr(e.reason))
                continue
            else:                                  # Closed
                continue
            if o is not None and o.open <= 0:
                del live[e.order_id]
        return events

    # --- kill switch and end of day ------------------------------------------------------

    async def kill(self, *, account: str | None = None, session: str | None = None,
                   durable: bool = True) -> KillReport:
        """Engage the kill switch (neither ``account`` nor ``session``: global) and cancel
        every resting order in scope."""
        start = time.perf_counter_ns()
        scope, name = _scope(account, session)
        self.risk.kill(account=account, session=session)
        self._journal(Kind.KILL, account=account or "", reason="kill",
                      detail={"scope": scope, "name": name, "state": "on"})
        targets = [o for o in self.live.values()
                   if (account is None and session is None) or o.account == account
                   or o.session == session]
        engine = self.engine
        for o in targets:
            await engine.submit(Order(action=Action.Cancel, order_id=o.order_id, shares=0))
        events: list[Event] = []
        for _ in targets:
            one: list[Event] = []
            for _ in range(_MAX_EVENTS):
                e = await engine.recv()
                one.append(e)
                if e.last:
                    break
            events += self._apply(one, None, supervisory=True)
        elapsed = time.perf_counter_ns() - start if targets else 0
        canceled = sum(1 for e in events if e.kind is EventKind.Canceled and e.shares)
        self._journal(Kind.KILL, account=account or "", reason="kill done",
                      detail={"scope": scope, "name": name, "state": "on",
                              "orders_canceled": canceled, "time_to_last_cancel_ns": elapsed})
        report = KillReport(scope, name, canceled, elapsed, events)
        self.kill_reports.append(report)
        if durable:
            await self._durable()
        for listener in self.unsolicited:
            listener(events)
        return report

    def unkill(self, *, account: str | None = None, session: str | None = None) -> None:
        """Release one kill (the scope given to :meth:`kill`); new orders pass again."""
        scope, name = _scope(account, session)
        self.risk.unkill(account=account, session=session)
        self._journal(Kind.KILL, account=account or "", reason="unkill",
                      detail={"scope": scope, "name": name, "state": "off"})

    async def end_of_day(self, *, durable: bool = True) -> list[Event]:
        events = await self._run(Order(action=Action.EndOfDay), None)
        if durable:
            await self._durable()
        return events


def _scope(account: str | None, session: str | None) -> tuple[str, str | None]:
    if account is not None:
        return "account", account
    if session is not None:
        return "session", session
    return "global", None
