"""Positions and PnL per account and symbol, in exact integers.

Units: prices in ticks (4 implied decimals), quantities in shares, money (cost basis, PnL) in
ticks x shares. No float anywhere.

Average-cost method, per account and symbol:

- ``position``: signed shares (long > 0, short < 0).
- ``cost_basis``: signed, the same sign as the position: what the open position cost (long) or
  brought in (short), ``sum(price x signed shares)`` of the fills that opened it, less the cost
  taken out by fills that reduced it.
- A fill that adds to the position (or opens it) adds ``price x signed shares`` to the cost basis.
- A fill that reduces it by ``c`` shares takes out ``removed = cost_basis x c / |position|``,
  rounded half-even to an integer (all of it when the position closes), and realizes
  ``sign(position) x price x c - removed``.
- A fill larger than the position closes it (as above) and opens the rest on the other side at
  the fill price: a flip through zero.
- ``avg_cost = cost_basis / position``, rounded half-even to a tick, for display (None when flat).
- ``unrealized(mark) = position x mark - cost_basis``.

Rounding the removed cost moves at most half a tick-share per reducing fill between realized and
unrealized PnL; it never changes their sum, which equals the exact cash flow plus the position
marked (``realized + unrealized == -sum(signed cash) + position x mark``), and a flat position's
realized PnL equals the exact one.

Marks: :meth:`Positions.set_mark` (the feed's BBO midpoint, :func:`midpoint`, or last trade);
without one, the last execution price of the symbol (offline).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Position", "Positions", "round_half_even", "midpoint", "side_sign"]


def round_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, ties to even (exact)."""
    if denominator == 0:
        raise ZeroDivisionError("round_half_even by zero")
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    q, r = divmod(numerator, denominator)      # floor division: 0 <= r < denominator
    twice = 2 * r
    if twice > denominator or (twice == denominator and q & 1):
        q += 1
    return q


def midpoint(bid: int, ask: int) -> int:
    """The BBO midpoint in ticks, rounded half-even."""
    return round_half_even(bid + ask, 2)


_SIGNS = {"B": 1, "BUY": 1, "S": -1, "SELL": -1}


def side_sign(side: Any) -> int:
    """+1 for a buy, -1 for a sell: a ``Side`` enum (by name), ``"B"``/``"S"``, ``"buy"``..."""
    key = getattr(side, "name", side)
    try:
        return _SIGNS[key.upper()]
    except (KeyError, AttributeError):
        raise ValueError(f"side must be buy or sell, not {side!r}") from None


@dataclass
class Position:
    account: str
    symbol: str
    position: int = 0
    cost_basis: int = 0
    realized_pnl: int = 0
    last_price: int | None = None     # last execution price in this account and symbol
    fills: int = 0

    @property
    def avg_cost(self) -> int | None:
        if self.position == 0:
            return None
        return round_half_even(self.cost_basis, self.position)

    def unrealized(self, mark: int | None) -> int:
        if self.position == 0:
            return 0
        if mark is None:
            mark = self.last_price
        return self.position * mark - self.cost_basis

    def apply(self, signed_shares: int, price: int) -> int:
        """Apply one fill of ``signed_shares`` (buy > 0) at ``price``; returns realized PnL."""
        realized = 0
        pos = self.position
        if pos == 0 or (pos > 0) == (signed_shares > 0):
            self.position = pos + signed_shares
            self.cost_basis += price * signed_shares
        else:
            size = abs(pos)
            closed = min(abs(signed_shares), size)
            if closed == size:
                removed = self.cost_basis
            else:
                removed = round_half_even(self.cost_basis * closed, size)
            direction = 1 if pos > 0 else -1
            realized = direction * price * closed - removed
            self.cost_basis -= removed
            self.position = pos - direction * closed
            rest = abs(signed_shares) - closed
            if rest:
                self.position = -direction * rest
                self.cost_basis = -direction * price * rest
            self.realized_pnl += realized
        self.last_price = price
        self.fills += 1
        return realized


class Positions:
    """Positions and PnL of every account and symbol, fed fill by fill."""

    def __init__(self):
        self._book: dict[tuple[str, str], Position] = {}
        self._marks: dict[str, int] = {}
        self._last: dict[str, int] = {}

    def apply_fill(self, account: str, symbol: str, side: Any, shares: int, price: int) -> int:
        """Apply one execution; returns the PnL it realized (ticks x shares)."""
        if not isinstance(shares, int) or not isinstance(price, int):
            raise TypeError("shares and price must be integers (shares, ticks)")
        if shares <= 0:
            raise ValueError(f"shares must be positive, not {shares}")
        if price < 0:
            raise ValueError(f"price must not be negative, not {price}")
        signed = side_sign(side) * shares
        key = (account, symbol)
        pos = self._book.get(key)
        if pos is None:
            pos = self._book[key] = Position(account, symbol)
        self._last[symbol] = price
        return pos.apply(signed, price)

    def set_mark(self, symbol: str, price: int) -> None:
        """Mark ``symbol`` at ``price`` (BBO midpoint or last trade from the feed)."""
        if not isinstance(price, int):
            raise TypeError("a mark is an integer price in ticks")
        self._marks[symbol] = price

    def mark(self, symbol: str) -> int | None:
        """The mark in use: the feed's if set, else the symbol's last execution price."""
        return self._marks.get(symbol, self._last.get(symbol))

    def get(self, account: str, symbol: str) -> Position:
        return self._book.get((account, symbol)) or Position(account, symbol)

    def __iter__(self) -> Iterator[Position]:
        return iter(self._book[key] for key in sorted(self._book))

    def __len__(self) -> int:
        return len(self._book)

    def unrealized(self, account: str, symbol: str) -> int:
        return self.get(account, symbol).unrealized(self.mark(symbol))

    def total_pnl(self, account: str) -> int:
        """Realized + unrealized PnL of ``account`` over all its symbols (for loss limits)."""
        return sum(p.realized_pnl + p.unrealized(self.mark(p.symbol))
                   for p in self._book.values() if p.account == account)

    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per account and symbol, sorted, as ``tickpath audit replay --json`` prints."""
        for p in self:
            yield {
                "account": p.account, "stock": p.symbol, "position": p.position,
                "cost_basis": p.cost_basis, "avg_cost": p.avg_cost,
                "realized_pnl": p.realized_pnl,
                "unrealized_pnl": p.unrealized(self.mark(p.symbol)),
            }
