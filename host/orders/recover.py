"""What the audit journal says about orders: the open orders (``tickpath orders list``), the
highest internal order id used, and the fills (a restarted gateway's starting state).

Open orders are rebuilt from the engine's answers alone, in journal order:

- ``ACCEPTED`` opens an order (open = quantity, at price), with the session its ``ORDER``
  record named;
- ``EXECUTED`` and ``CANCELED`` take their quantity off it;
- ``REPLACED`` closes it and opens ``detail.new_order_id`` (open = quantity, at price, with
  ``detail.new_client_id``).

An order whose open size reaches zero is gone. ``orders_run`` or a gateway that ends normally
leaves the orders the engine still holds open here; a gateway that restarts finds them and,
because a fresh engine holds nothing, journals them canceled (:func:`restart_cancels`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

from tickpath.host.audit.format import Kind, Record

__all__ = ["JournalOrder", "JournalState", "read_state", "state_of", "restart_cancels"]


@dataclasses.dataclass(slots=True)
class JournalOrder:
    order_id: int
    client_id: str
    account: str
    session: str
    symbol: str
    side: str          # "B" or "S"
    price: int
    open: int
    filled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "client_id": self.client_id,
                "account": self.account, "session": self.session, "stock": self.symbol,
                "side": self.side, "price": self.price, "open": self.open,
                "filled": self.filled}


@dataclasses.dataclass
class JournalState:
    open: dict[int, JournalOrder] = dataclasses.field(default_factory=dict)
    max_order_id: int = 0
    records: int = 0
    fills: list[tuple[str, str, str, int, int]] = dataclasses.field(default_factory=list)

    def apply(self, r: Record) -> None:
        self.records += 1
        kind = r.kind
        if r.order_id > self.max_order_id:
            self.max_order_id = r.order_id
        detail = r.detail if isinstance(r.detail, dict) else {}
        new_id = detail.get("new_order_id")
        if isinstance(new_id, int) and new_id > self.max_order_id:
            self.max_order_id = new_id
        if kind == Kind.ORDER:
            self._sessions[r.order_id] = str(detail.get("session", ""))
        elif kind == Kind.ACCEPTED:
            self.open[r.order_id] = JournalOrder(
                r.order_id, r.client_id, r.account, self._sessions.pop(r.order_id, ""),
                r.symbol, r.side, r.price, r.quantity)
        elif kind in (Kind.EXECUTED, Kind.CANCELED):
            if kind == Kind.EXECUTED:
                self.fills.append((r.account, r.symbol, r.side, r.quantity, r.price))
            o = self.open.get(r.order_id)
            if o is not None:
                o.open -= r.quantity
                if kind == Kind.EXECUTED:
                    o.filled += r.quantity
                if o.open <= 0:
                    del self.open[r.order_id]
        elif kind == Kind.REPLACED:
            o = self.open.pop(r.order_id, None)
            if isinstance(new_id, int) and r.quantity > 0:
                self.open[new_id] = JournalOrder(
                    new_id, str(detail.get("new_client_id", "")),
                    o.account if o else r.account, o.session if o else "",
                    o.symbol if o else r.symbol, r.side, r.price, r.quantity)

    def __post_init__(self) -> None:
        self._sessions: dict[int, str] = {}


def state_of(records: Iterable[Record]) -> JournalState:
    state = JournalState()
    for r in records:
        state.apply(r)
    return state


def read_state(directory: str | os.PathLike) -> JournalState:
    """The state of the journal in ``directory`` (a torn tail is ignored)."""
    from tickpath.host.audit import iter_records
    return state_of(iter_records(directory))


def restart_cancels(journal: Any, state: JournalState, *, venue: str, reason: str = "S"
                    ) -> int:
    """Journal every order ``state`` holds open as canceled (the engine restarted empty: those
    orders no longer rest anywhere); returns how many. ``reason`` ``S``: supervisory."""
    for o in sorted(state.open.values(), key=lambda o: o.order_id):
        journal.append(Kind.CANCELED, order_id=o.order_id, client_id=o.client_id,
                       account=o.account, symbol=o.symbol, side=o.side or None, price=o.price,
                       quantity=o.open, venue=venue, reason=reason,
                       detail={"restart": True, "session": o.session})
    n = len(state.open)
    state.open.clear()
    return n
