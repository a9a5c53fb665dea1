"""Golden ITCH 5.0 book builder: order table plus full-depth price levels per stock locate.

Ref: NASDAQ TotalView-ITCH 5.0 specification, sections 1.3 (Add Order), 1.4 (Modify Order:
Executed, Executed With Price, Cancel, Delete, Replace); ``docs/PROTOCOLS.md`` notes.

This is the reference the feed-path gateware is checked against, so every decision on odd input is
written down here and must be made the same way by any other implementation:

* ``E`` and ``C`` reduce the resting order (``C`` prints at another price, but the resting
  order still loses the shares); ``X`` reduces; ``D`` removes; an order at zero shares is removed.
* ``U`` is ``D(old)`` then ``A(new)`` with the old order's side and stock locate, the new price and
  shares, at the back of its level's queue (it loses time priority even at an unchanged price).
* Anomalies are counted in :attr:`BookBuilder.anomalies`, never raised:

  ``unknown_reference``
      ``E``/``C``/``X``/``D``/``U`` for a reference that is not live: nothing changes.
  ``overfill``
      an execution or cancel of more shares than the order has left: the order is removed.
  ``duplicate_add``
      an add for a reference already live: the add is ignored, the live order is untouched.
      A ``U`` whose new reference is live (and is not its own old reference) still deletes the
      old order and counts ``duplicate_add`` for the ignored new half.
  ``zero_shares``
      an add (or the new half of a ``U``) with 0 shares: nothing is added.
  ``invalid_side``
      an add whose side is neither ``B`` nor ``S``: nothing is added.
  ``stock_mismatch``
      an add whose stock differs from the name already known for its locate: the order is
      still added; the known name is kept.

The primitives (:meth:`~BookBuilder.add`, :meth:`~BookBuilder.execute`, ...) return ``True``
when applied cleanly and ``False`` when an anomaly was counted, so other front ends (events
decoded by the gateware) drive the same book; :meth:`~BookBuilder.apply` maps ITCH records on them.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from tickpath.protocol import itch

__all__ = ["BookBuilder", "BUY", "SELL"]

BUY, SELL = "B", "S"

Level = tuple[int, int, int]            # (price, total shares, number of orders)


class _Side:
    """One side of one symbol: price -> queue of ``ref -> shares`` in time priority, and the
    prices kept sorted ascending (bids read from the end, asks from the start)."""

    __slots__ = ("levels", "prices", "is_bid")

    def __init__(self, is_bid: bool):
        self.levels: dict[int, dict[int, int]] = {}
        self.prices: list[int] = []
        self.is_bid = is_bid

    def best_first(self) -> list[int]:
        return self.prices[::-1] if self.is_bid else list(self.prices)


class BookBuilder:
    """Full-depth limit order book of every symbol, built from ITCH 5.0 messages.

    Members
    -------
    anomalies : ``collections.Counter``
        Odd input by kind (see the module documentation); never raised.
    messages : ``collections.Counter``
        Messages given to :meth:`apply`, by ITCH type.
    """

    def __init__(self) -> None:
        # ref -> (locate, side, price, queue, _Side); the shares live only in the queue.
        self._orders: dict[int, tuple[int, str, int, dict[int, int], _Side]] = {}
        self._sides: dict[tuple[int, str], _Side] = {}
        self._stocks: dict[int, str] = {}
        self._trading_states: dict[int, str] = {}
        self.anomalies: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self._dispatch = {t: self._apply_other for t in itch.SPECS}
        self._dispatch.update({
            "A": self._apply_add, "F": self._apply_add,
            "E": self._apply_execute, "C": self._apply_execute,
            "X": self._apply_cancel, "D": self._apply_delete, "U": self._apply_replace,
            "R": self._apply_directory, "H": self._apply_trading_action,
        })

    # --- primitives ---------------------------------------------------------------------

    def add(self, ref: int, locate: int, side: str, shares: int, price: int,
            stock: str | None = None) -> bool:
        """Add a resting order at the back of its level's queue."""
        if stock is not None:
            known = self._stocks.get(locate)
            if known is None:
                self._stocks[locate] = stock
            elif known != stock:
                self.anomalies["stock_mismatch"] += 1
        if ref in self._orders:
            self.anomalies["duplicate_add"] += 1
            return False
        if shares <= 0:
            self.anomalies["zero_shares"] += 1
            return False
        book_side = self._sides.get((locate, side))
        if book_side is None:
            if side != BUY and side != SELL:
                self.anomalies["invalid_side"] += 1
                return False
            book_side = self._sides[(locate, side)] = _Side(side == BUY)
        queue = book_side.levels.get(price)
        if queue is None:
            queue = book_side.levels[price] = {}
            insort(book_side.prices, price)
        queue[ref] = shares
        self._orders[ref] = (locate, side, price, queue, book_side)
        return True

    def execute(self, ref: int, shares: int) -> bool:
        """Executed shares (``E``, and ``C`` whatever its print price) leave the resting order."""
        return self._reduce(ref, shares)

    def cancel(self, ref: int, shares: int) -> bool:
        """Canceled shares (``X``) leave the resting order."""
        return self._reduce(ref, shares)

    def delete(self, ref: int) -> bool:
        order = self._orders.pop(ref, None)
        if order is None:
            self.anomalies["unknown_reference"] += 1
            return False
        self._unlink(ref, order)
        return True

    def replace(self, old_ref: int, new_ref: int, shares: int, price: int) -> bool:
        """``U``: delete ``old_ref``, add ``new_ref`` with its side and locate, losing priority."""
        order = self._orders.pop(old_ref, None)
        if order is None:
            self.anomalies["unknown_reference"] += 1
            return False
        self._unlink(old_ref, order)
        return self.add(new_ref, order[0], order[1], shares, price)

    def _reduce(self, ref: int, shares: int) -> bool:
        order = self._orders.get(ref)
        if order is None:
            self.anomalies["unknown_reference"] += 1
            return False
        queue = order[3]
        left = queue[ref] - shares
        if left > 0:
            queue[ref] = left
            return True
        del self._orders[ref]
        self._unlink(ref, order)
        if left < 0:
            self.anomalies["overfill"] += 1
            return False
        return True

    def _unlink(self, ref: int, order: tuple[int, str, int, dict[int, int], _Side]) -> None:
        _, _, price, queue, book_side = order
        del queue[ref]
        if not queue:
            del book_side.levels[price]
            prices = book_side.prices
            del prices[bisect_left(prices, price)]

    # --- normalised feed events (what the gateware's ITCH decoder emits) ---------------

    def apply_event(self, ev: dict[str, Any]) -> None:
        """Apply one :class:`tickpath.protocol.feed.FeedEvent` (as a dict) through the
        primitives; kinds that do not touch the book are ignored."""
        from tickpath.protocol.feed import EventKind  # the layouts need amaranth: load late

        kind = ev["kind"]
        if kind is EventKind.Add:
            self.add(ev["order_ref"], ev["stock_locate"], SELL if ev["side"] else BUY,
                     ev["shares"], ev["price"])
        elif kind is EventKind.Execute or kind is EventKind.ExecuteWithPrice:
            self.execute(ev["order_ref"], ev["shares"])
        elif kind is EventKind.Cancel:
            self.cancel(ev["order_ref"], ev["shares"])
        elif kind is EventKind.Delete:
            self.delete(ev["order_ref"])
        elif kind is EventKind.Replace:
            self.replace(ev["order_ref"], ev["new_order_ref"], ev["shares"], ev["price"])

    # --- ITCH front end -----------------------------------------------------------------

    def apply(self, msg: itch.ItchMessage) -> None:
        """Apply one typed ITCH record; every one of the 23 types is accepted and counted."""
        t = msg.type
        self.messages[t] += 1
        self._dispatch[t](msg)

    def apply_all(self, messages: Iterable[itch.ItchMessage]) -> BookBuilder:
        apply = self.apply
        for msg in messages:
            apply(msg)
        return self

    def _apply_add(self, m: Any) -> None:
        self.add(m.order_reference_number, m.stock_locate, m.buy_sell_indicator, m.shares,
                 m.price, m.stock)

    def _apply_execute(self, m: Any) -> None:
        self._reduce(m.order_reference_number, m.executed_shares)

    def _apply_cancel(self, m: Any) -> None:
        self._reduce(m.order_reference_number, m.canceled_shares)

    def _apply_delete(self, m: Any) -> None:
        self.delete(m.order_reference_number)

    def _apply_replace(self, m: Any) -> None:
        self.replace(m.original_order_reference_number, m.new_order_reference_number,
                     m.shares, m.price)

    def _apply_directory(self, m: Any) -> None:
        self._stocks[m.stock_locate] = m.stock          # R is authoritative for the day

    def _apply_trading_action(self, m: Any) -> None:
        self._stocks.setdefault(m.stock_locate, m.stock)
        self._trading_states[m.stock_locate] = m.trading_state

    def _apply_other(self, m: Any) -> None:
        pass

    # --- queries --------------------------------------------------------------------------

    def stock(self, locate: int) -> str | None:
        return self._stocks.get(locate)

    def trading_state(self, locate: int) -> str | None:
        """Last ``H`` trading state (``H`` halted, ``P`` paused, ``Q`` quotation only, ``T``
        trading) of ``locate``, or ``None`` when no ``H`` was seen."""
        return self._trading_states.get(locate)

    def order(self, ref: int) -> tuple[int, str, int, int] | None:
        """``(locate, side, price, shares)`` of a live order, or ``None``."""
        order = self._orders.get(ref)
        if order is None:
            return None
        locate, side, price, queue, _ = order
        return locate, side, price, queue[ref]

    def __len__(self) -> int:
        """Number of live orders."""
        return len(self._orders)

    def __contains__(self, ref: int) -> bool:
        return ref in self._orders

    def locates(self) -> list[int]:
        """Stock locates with at least one live order, ascending."""
        return sorted({locate for (locate, _), s in self._sides.items() if s.prices})

    def levels(self, locate: int, side: str, depth: int | None = None) -> list[Level]:
        """``(price, shares, orders)`` per level, best first."""
        book_side = self._sides.get((locate, side))
        if book_side is None:
            return []
        prices = book_side.best_first()
        if depth is not None:
            prices = prices[:depth]
        levels = book_side.levels
        return [(p, sum(levels[p].values()), len(levels[p])) for p in prices]

    def queue(self, locate: int, side: str, price: int) -> list[tuple[int, int]]:
        """``(ref, shares)`` resting at one level, in time priority."""
        book_side = self._sides.get((locate, side))
        if book_side is None:
            return []
        return list(book_side.levels.get(price, {}).items())

    def bbo(self, locate: int) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """``((bid_price, bid_shares) | None, (ask_price, ask_shares) | None)``."""
        return self._best(locate, BUY), self._best(locate, SELL)

    def _best(self, locate: int, side: str) -> tuple[int, int] | None:
        book_side = self._sides.get((locate, side))
        if book_side is None or not book_side.prices:
            return None
        price = book_side.prices[-1 if book_side.is_bid else 0]
        return price, sum(book_side.levels[price].values())

    def snapshot(self) -> dict[int, dict[str, tuple]]:
        """The whole book as plain values: equal snapshots mean identical books, queue order
        included. ``{locate: {"bids": ((price, ((ref, shares), ...)), ...), "asks": ...}}``
        for every locate with a live order, levels best first."""
        out: dict[int, dict[str, tuple]] = {}
        for locate in self.locates():
            entry = {}
            for key, side in (("bids", BUY), ("asks", SELL)):
                book_side = self._sides.get((locate, side))
                if book_side is None:
                    entry[key] = ()
                    continue
                levels = book_side.levels
                entry[key] = tuple((p, tuple(levels[p].items())) for p in book_side.best_first())
            out[locate] = entry
        return out

    def book_lines(self, depth: int | None = None) -> Iterator[dict[str, Any]]:
        """One JSON-ready object per locate with a live order, in locate order."""
        for locate in self.locates():
            yield {
                "stock": self._stocks.get(locate),
                "stock_locate": locate,
                "bids": [list(level) for level in self.levels(locate, BUY, depth)],
                "asks": [list(level) for level in self.levels(locate, SELL, depth)],
            }
