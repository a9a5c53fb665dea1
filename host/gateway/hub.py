"""The gateways' side of the order path: client ids to internal ids, one action at a time into
an :class:`OrderSink`, every event routed back to the session that owns the order.

The seam to the host order path (risk, journal, engine, positions) is :class:`OrderSink`:

``set_symbol(symbol, stock)``
    Tell what internal symbol id ``symbol`` means (called once per new stock, before the first
    action that uses it).
``async submit(order, ctx) -> list[Event]``
    Run one action (an internal :class:`~tickpath.protocol.records.Order`) and return all its
    events, the final one with ``last`` set, exactly as the engine interface answers it.
    ``ctx`` (:class:`Submission`) says who sent it: session, account, client order id.
    A risk reject is answered like an engine reject: one ``Rejected`` event (``last`` set)
    with the action's token and a one-byte ASCII reason; reasons the gateways do not know are
    passed on as OUCH ``O`` (other) and as FIX text.

:class:`EngineSink` is that seam over any :class:`~tickpath.engine.Engine` (the golden model
today). The hub serialises actions (one at a time, with a lock), so a sink need not; actions a
sink makes itself (the order path's kill switch) run under :meth:`OrderHub.exclusive` and come
back through :meth:`OrderHub.unsolicited`, routed like any other events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

from tickpath.engine import Engine
from tickpath.protocol.records import Action, Event, EventKind, Order, Side

__all__ = [
    "OrderSink", "Submission", "EngineSink", "OrderHub", "OrderState", "Listener", "HubError",
]


class HubError(RuntimeError):
    """A gateway asked for something the hub cannot give (id space exhausted)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Submission:
    """Who sent an action: the gateway session key (``"fix:SENDER"``, ``"ouch:USER"``),
    the account, and the client's own id of the order (FIX ClOrdID, OUCH token)."""

    session: str
    account: str
    client_id: str


class OrderSink(Protocol):
    def set_symbol(self, symbol: int, stock: str) -> None: ...

    async def submit(self, order: Order, ctx: Submission) -> list[Event]: ...


class EngineSink:
    """:class:`OrderSink` straight over an engine (no risk, no journal)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def set_symbol(self, symbol: int, stock: str) -> None:
        self.engine.set_symbol(symbol, stock)

    async def submit(self, order: Order, ctx: Submission) -> list[Event]:
        await self.engine.submit(order)
        events = []
        for _ in range(1 << 20):                 # bounded: an action never has this many
            event = await self.engine.recv()
            events.append(event)
            if event.last:
                return events
        raise HubError("engine sent more than 2**20 events for one action")


@dataclasses.dataclass(slots=True)
class OrderState:
    """What the hub knows of one internal order id (one link of a FIX replace chain, or one
    OUCH token)."""

    order_id: int
    owner: Listener
    client_id: str
    account: str
    side: Side
    symbol: int
    price: int
    shares: int = 0          # size as entered / replaced
    open: int = 0            # open shares now
    live: bool = False       # resting (or being processed) in the engine
    extra: Any = None        # the gateway's own data (FIX chain, OUCH enter fields)


class Listener(Protocol):
    """A gateway session; the hub calls ``on_event`` for every event about its orders, in
    engine order. ``aggressor`` is true for the first of an execution pair."""

    key: str

    def on_event(self, event: Event, state: OrderState, aggressor: bool) -> None: ...


class OrderHub:
    """Internal ids, routing and bulk cancels for all gateway sessions of one process.

    Parameters
    ----------
    sink : OrderSink
        Where actions go.
    first_order_id : int
        The first internal order id handed out (a restarted gateway continues above the ids
        its journal already holds, so ids, FIX OrderIDs and OUCH order reference numbers
        never repeat).

    Members
    -------
    observers : list of callables
        Each is called, under the lock and after the events were routed (written to the
        clients), as ``observer(order, ctx, events, elapsed_ns)``; ``elapsed_ns`` runs from
        the call of :meth:`submit` (metrics: order in to acknowledgement out).
    """

    def __init__(self, sink: OrderSink, *, first_order_id: int = 1):
        if not 1 <= first_order_id < 1 << 32:
            raise HubError(f"first order id {first_order_id} out of range")
        self._sink = sink
        self._lock = asyncio.Lock()
        self._next_id = first_order_id
        self.observers: list[Callable[[Order, Submission, list[Event], int], None]] = []
        self._orders: dict[int, OrderState] = {}          # internal id -> state
        self._symbols: dict[str, int] = {}
        self._firms: dict[str, int] = {}
        self.counters: Counter[str] = Counter()
        self._broadcast: list[Listener] = []
        #: while an enter or replace is dispatched: the order it makes (the aggressor), whose
        #: ``open`` follows its executions (OUCH's AIQ cancel reports what SMP prevented)
        self.aggressor: OrderState | None = None

    @property
    def sink(self) -> OrderSink:
        return self._sink

    # --- ids -------------------------------------------------------------------------------

    def symbol_id(self, stock: str) -> int:
        found = self._symbols.get(stock)
        if found is None:
            if len(self._symbols) >= 1 << 16:
                raise HubError("more than 65536 stocks")
            found = self._symbols[stock] = len(self._symbols)
            self._sink.set_symbol(found, stock)
        return found

    def stock(self, symbol: int) -> str:
        for name, i in self._symbols.items():
            if i == symbol:
                return name
        return "?"

    def firm_id(self, firm: str) -> int:
        found = self._firms.get(firm)
        if found is None:
            if len(self._firms) >= (1 << 16) - 1:
                raise HubError("more than 65535 firms")
            found = self._firms[firm] = len(self._firms) + 1
        return found

    def new_order_id(self) -> int:
        if self._next_id >= 1 << 32:
            raise HubError("internal order ids exhausted")
        self._next_id += 1
        return self._next_id - 1

    def order(self, order_id: int) -> OrderState | None:
        return self._orders.get(order_id)

    def live_orders(self, *, session: str | None = None,
                    account: str | None = None) -> list[OrderState]:
        return [s for s in self._orders.values() if s.live
                and (session is None or s.owner.key == session)
                and (account is None or s.account == account)]

    def add_broadcast(self, listener: Listener) -> None:
        """``listener`` also hears ``Closed`` (end of day)."""
        self._broadcast.append(listener)

    def remove_broadcast(self, listener: Listener) -> None:
        if listener in self._broadcast:
            self._broadcast.remove(listener)

    # --- actions ---------------------------------------------------------------------------

    async def submit(self, order: Order, ctx: Submission, sender: Listener, *,
                     new_state: OrderState | None = None) -> list[Event]:
        """Send one action for ``sender``; ``new_state`` describes the order an enter or
        replace creates (its ``order_id`` is ``order.order_id`` for enter,
        ``order.new_order_id`` for replace). Every event is routed before this returns the
        events: a ``Rejected`` one to ``sender`` (with ``new_state``, or the state of the order
        acted on, or ``None``), the others to the owner of the order they are about."""
        start = time.perf_counter_ns()
        async with self._lock:
            if new_state is not None:
                self._orders[new_state.order_id] = new_state
            self.counters[order.action.name.lower()] += 1
            try:
                events = await self._sink.submit(order, ctx)
            except BaseException:
                if new_state is not None:
                    self._orders.pop(new_state.order_id, None)
                raise
            self.aggressor = new_state
            try:
                self._dispatch(events, sender, new_state)
            finally:
                self.aggressor = None
            if self.observers:
                elapsed = time.perf_counter_ns() - start
                for observer in self.observers:
                    observer(order, ctx, events, elapsed)
            return events

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the hub's lock: no client action runs meanwhile (the kill switch, a reload)."""
        async with self._lock:
            yield

    def unsolicited(self, events: list[Event]) -> None:
        """Route events of actions the sink made itself (kill-switch cancels) to the owners of
        their orders; call it with the lock held (inside :meth:`exclusive`)."""
        self.counters["unsolicited"] += len(events)
        self._dispatch(events, _NullListener(), None)

    def _dispatch(self, events: Iterable[Event], sender: Listener,
                  new_state: OrderState | None) -> None:
        seen_matches: set[int] = set()
        orders = self._orders
        for e in events:
            kind = e.kind
            if kind is EventKind.Closed:
                self.counters["closed"] += 1
                for listener in list(self._broadcast):
                    listener.on_event(e, None, False)          # type: ignore[arg-type]
                continue
            if kind is EventKind.Rejected:
                self.counters["rejected"] += 1
                state = orders.get(e.order_id)
                if new_state is not None:
                    # the enter or replace did not happen: forget the order it would make
                    orders.pop(new_state.order_id, None)
                    state = new_state
                sender.on_event(e, state, False)               # type: ignore[arg-type]
                continue
            state = orders.get(e.order_id)
            if state is None:
                self.counters["unrouted"] += 1
                continue
            aggressor = False
            if kind is EventKind.Accepted:
                state.live, state.shares, state.open = True, e.shares, e.shares
            elif kind is EventKind.Executed:
                aggressor = e.match_number not in seen_matches
                seen_matches.add(e.match_number)
                state.open -= e.shares
            elif kind is EventKind.Canceled:
                state.open -= e.shares
            elif kind is EventKind.Replaced:
                state.open = 0
                nxt = orders.get(e.contra_id)
                if nxt is not None:
                    nxt.live, nxt.shares, nxt.open, nxt.price = True, e.shares, e.shares, e.price
            if state.open <= 0:
                state.live = False
                del orders[state.order_id]
            state.owner.on_event(e, state, aggressor)

    async def cancel_orders(self, states: Iterable[OrderState], ctx_session: str) -> int:
        """Cancel each still-live order fully; returns how many were canceled."""
        n = 0
        for state in list(states):
            if not state.live:
                continue
            events = await self.submit(
                Order(action=Action.Cancel, order_id=state.order_id, shares=0),
                Submission(ctx_session, state.account, state.client_id), state.owner)
            n += any(e.kind is EventKind.Canceled and e.shares for e in events)
        return n

    async def cancel_session(self, session: str) -> int:
        """Cancel-on-disconnect: every live order of one session."""
        n = await self.cancel_orders(self.live_orders(session=session), session)
        self.counters["cancel_on_disconnect"] += n
        return n

    async def mass_cancel(self, account: str, *, session: str = "admin") -> int:
        """Cancel every live order of ``account``, whichever session entered it."""
        n = await self.cancel_orders(self.live_orders(account=account), session)
        self.counters["mass_cancel"] += n
        return n

    async def end_of_day(self) -> list[Event]:
        return await self.submit(Order(action=Action.EndOfDay), Submission("admin", "", ""),
                                 _NullListener())


class _NullListener:
    key = "admin"

    def on_event(self, event: Event, state: OrderState | None, aggressor: bool) -> None:
        pass
