"""Golden price-time matching engine, with its own ITCH 5.0 market-data output.

Ref: ``docs/PROTOCOLS.md`` (OUCH 4.2 order semantics and price rules, ITCH 5.0 messages);
records in :mod:`tickpath.protocol.records`.

Every implementation (this model, the gateware, a simulated FPGA) must agree with these rules
event for event and ITCH byte for byte:

Orders and validation
    Many symbols (registered with :meth:`MatchingModel.set_symbol`), price-time priority, limit
    and market orders, time in force day, IOC and FOK. Only day limit orders rest; a market order
    never rests (its remainder is canceled as IOC, whatever its time in force).
    An enter is rejected, first failing check wins: after end of day ``C``; token already live
    ``d``; unregistered symbol ``S``; shares not in 1..999,999 ``Z``; a limit price that is not
    whole cents from $1.00 to $199,999.99 (``price % 100 == 0``, 10,000..1,999,999,900 ticks)
    ``X`` (market orders ignore the price); ``min_qty`` nonzero on anything but an IOC order, or
    above ``shares``, ``N``; a day limit order while the order store holds ``capacity`` resting
    orders ``f`` (IOC, FOK and market orders never need a slot, so are never refused for it).
Enter
    ``accepted`` first (shares and price as entered; price 0 for market orders), then the
    executions in match order, then ``canceled`` reason ``I`` for any IOC/FOK/market remainder.
    FOK needs its full size, an IOC with ``min_qty`` at least ``min_qty``, from other firms'
    resting orders at acceptable prices right now; if not there, the whole order is canceled
    ``I`` and the book is untouched (no self-match cancels either).
Fills
    The aggressor trades with the best contra level, oldest first, at the resting order's price.
    Each fill emits two ``executed`` events, aggressor first, then the resting order, with the
    same ``match_number`` (1, 2, 3... for the model's life), the fill's shares and price, and
    each other's token as ``contra_id``.
Self-match prevention (firm)
    When the aggressor meets a resting order of its own firm, that resting order is canceled
    (``canceled`` reason ``Q``, all its open shares) at that point of the event list, and
    matching continues.
Cancel
    ``shares`` is the new intended open size. 0 cancels all; less than the open size reduces;
    the order keeps its priority. ``canceled`` carries the decrement, reason ``U``. A size at or
    above the open size changes nothing and emits ``canceled`` with 0 shares (reason ``U``), so
    every action has an event to carry ``last``. Unknown or finished token: rejected ``u``.
Replace
    Rejected: after end of day ``C``; old token not live ``u``; new token live (the old one
    included) ``d``; shares not in 1..999,999 ``Z``; bad price ``X``. Side, firm, symbol, time in
    force and type stay the original's; ``min_qty`` is ignored. ``replaced`` carries the new
    token as ``contra_id`` and the new shares and price. The same price with the same or fewer
    shares keeps time priority; otherwise the order loses priority, and as a new aggressor may
    execute (events under the new token) before its remainder rests.
End of day (``Action.EndOfDay`` with ``min_qty`` 0)
    Every resting order, oldest ITCH reference first, is canceled reason ``E``; then ``closed``.
    Every later action is rejected ``C``.
Mass cancel (``Action.EndOfDay`` with ``min_qty`` :data:`MASS_CANCEL_FIRM` or
:data:`MASS_CANCEL_ALL`: the risk gate's kill and dead-man switches)
    Every resting order of firm ``firm`` (``MASS_CANCEL_FIRM``) or of every firm
    (``MASS_CANCEL_ALL``), oldest ITCH reference first, is canceled reason ``S`` (all its open
    shares; ITCH ``D``). Nothing else happens, and no event at all if nothing rests (the only
    action that may have none; ``last`` is on its final cancel). Any other nonzero ``min_qty``
    on an end-of-day record is rejected ``O``.
Events
    Every action but a mass cancel produces at least one event; ``last`` is set on its final
    event only. A
    ``rejected`` event copies the action's token, side, symbol, shares and price. ``canceled``,
    ``executed`` and ``replaced`` carry the order's side, symbol and (resting or limit) price.

ITCH output (:attr:`MatchingModel.itch`, typed :mod:`tickpath.protocol.itch` records)
    ``tracking_number`` 0; ``timestamp`` the action's number (1, 2, 3..., counting every action
    given, rejected ones too); ``S`` event ``O`` at timestamp 0 when the model is made, ``S``
    ``C`` after end of day's deletes. ``R`` when a symbol's first enter is accepted, before that
    action's other messages: stock locates 1, 2, 3... in that order; fields stock, market
    category ``Q``, financial status ``N``, round lot 100, round lots only ``N``, issue
    classification ``C``, sub type ``Z``, authenticity ``P``, short sale threshold ``N``, IPO
    flag ``N``, LULD tier ``1``, ETP flag ``N``, leverage 0, inverse ``N``. ``A`` for every order
    that comes to rest, references 1, 2, 3... in resting order. ``E`` on the resting order's
    reference for every fill (the aggressor is not shown). ``X`` for a partial cancel and for a
    priority-keeping replace that reduces shares (none when the size is unchanged). ``D`` for a
    full cancel, a self-match cancel, an end-of-day expiry. A priority-losing replace is ``U``
    (old reference to a new one) when its new price does not reach the opposite side's best
    price; when it does, ``D`` of the old reference, then the fills' messages, then ``A`` with a
    new reference for any remainder. No ``P``, ``C``, ``F``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Any

from tickpath.protocol import itch
from tickpath.protocol.records import (
    Action,
    CancelReason,
    Event,
    EventKind,
    Order,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)

__all__ = ["MatchingModel", "MIN_PRICE", "MAX_PRICE", "MAX_SHARES", "valid_price",
           "MASS_CANCEL_FIRM", "MASS_CANCEL_ALL"]

MIN_PRICE = 10_000               # $1.00
MAX_PRICE = 1_999_999_900        # $199,999.9900
MAX_SHARES = 999_999
MASS_CANCEL_FIRM = 1             # ``min_qty`` of an end-of-day record: cancel one firm's orders
MASS_CANCEL_ALL = 2              # ... every firm's

_SIDE_CHAR = {Side.Buy: "B", Side.Sell: "S"}

_ACCEPTED, _EXECUTED, _CANCELED = EventKind.Accepted, EventKind.Executed, EventKind.Canceled
_REPLACED, _REJECTED, _CLOSED = EventKind.Replaced, EventKind.Rejected, EventKind.Closed
_USER, _IOC = CancelReason.User, CancelReason.ImmediateOrCancel
_SELF_MATCH, _EXPIRED = CancelReason.SelfMatch, CancelReason.EndOfDay
_SUPERVISORY = CancelReason.Supervisory

_tuple_new = tuple.__new__

_S = itch.RECORDS["S"]
_R = itch.RECORDS["R"]
_A = itch.RECORDS["A"]
_E = itch.RECORDS["E"]
_X = itch.RECORDS["X"]
_D = itch.RECORDS["D"]
_U = itch.RECORDS["U"]


def valid_price(price: int) -> bool:
    return MIN_PRICE <= price <= MAX_PRICE and price % 100 == 0


class _Resting:
    __slots__ = ("token", "firm", "side", "symbol", "locate", "price", "open", "ref", "live",
                 "level")

    def __init__(self, token, firm, side, symbol, locate, price, shares, ref, level):
        self.token = token
        self.firm = firm
        self.side = side
        self.symbol = symbol
        self.locate = locate
        self.price = price
        self.open = shares
        self.ref = ref
        self.live = True
        self.level = level


class _Level:
    """One price: orders in time priority. Removed orders stay in the deque marked not live
    until they reach its front (O(1) cancels); ``shares`` and ``count`` cover live ones."""

    __slots__ = ("price", "queue", "shares", "count")

    def __init__(self, price: int):
        self.price = price
        self.queue: deque[_Resting] = deque()
        self.shares = 0
        self.count = 0


class _BookSide:
    __slots__ = ("levels", "prices", "is_bid")

    def __init__(self, is_bid: bool):
        self.levels: dict[int, _Level] = {}
        self.prices: list[int] = []             # ascending: best bid last, best ask first
        self.is_bid = is_bid

    def best(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def best_first(self) -> list[int]:
        return self.prices[::-1] if self.is_bid else list(self.prices)


class MatchingModel:
    """The golden matching engine: :meth:`process` one :class:`Order` record, get its events.

    Parameters
    ----------
    capacity : int or None
        Most resting orders held at once (all symbols); ``None`` is unlimited.

    Members
    -------
    itch : list of ITCH records
        The engine's market-data output so far.
    rejects : ``collections.Counter``
        Rejected actions by :class:`RejectReason`.
    """

    def __init__(self, *, capacity: int | None = None):
        if capacity is not None and capacity < 0:
            raise ValueError(f"capacity must be >= 0 or None, not {capacity}")
        self._capacity = capacity
        self._stocks: dict[int, str] = {}            # symbol id -> stock
        self._locates: dict[int, int] = {}           # symbol id -> stock locate
        self._locate_symbols: dict[int, int] = {}    # stock locate -> symbol id
        self._books: dict[int, tuple[_BookSide, _BookSide]] = {}   # locate -> (bids, asks)
        self._live: dict[int, _Resting] = {}         # token -> resting order
        self._clock = 0
        self._next_ref = 1
        self._match_number = 0
        self._closed = False
        self.rejects: Counter[RejectReason] = Counter()
        self.itch: list[itch.ItchMessage] = [_S(0, 0, 0, "O")]

    @property
    def capacity(self) -> int | None:
        return self._capacity

    def set_symbol(self, symbol: int, stock: str) -> None:
        """Register internal symbol id ``symbol`` under ITCH stock name ``stock``."""
        if not 0 <= symbol < 1 << 16:
            raise ValueError(f"symbol id {symbol} does not fit 16 bits")
        if not stock or len(stock) > 8 or not stock.isascii() or stock != stock.strip():
            raise ValueError(f"stock {stock!r} is not 1 to 8 ASCII characters without spaces")
        known = self._stocks.get(symbol)
        if known is not None and known != stock:
            raise ValueError(f"symbol {symbol} is already {known!r}")
        self._stocks[symbol] = stock

    # --- actions --------------------------------------------------------------------------

    def process(self, order: Order) -> list[Event]:
        """Apply one action; return its events, the final one with ``last`` set."""
        self._clock += 1
        action = order.action
        if self._closed:
            events = [self._reject(order, RejectReason.Closed)]
        elif action is Action.Enter:
            events = self._enter(order)
        elif action is Action.Cancel:
            events = self._cancel(order)
        elif action is Action.Replace:
            events = self._replace(order)
        elif action is Action.EndOfDay:
            mode = order.min_qty
            if mode == 0:
                events = self._end_of_day()
            elif mode in (MASS_CANCEL_FIRM, MASS_CANCEL_ALL):
                events = self._mass_cancel(None if mode == MASS_CANCEL_ALL else order.firm)
                if not events:
                    return events
            else:
                events = [self._reject(order, RejectReason.Other)]
        else:
            events = [self._reject(order, RejectReason.Other)]
        final = events[-1]
        events[-1] = _tuple_new(Event, (final[0], 1, *final[2:]))     # last=1, fast
        return events

    def process_all(self, orders: Iterable[Order]) -> list[Event]:
        out: list[Event] = []
        for order in orders:
            out += self.process(order)
        return out

    def _reject(self, order: Order, reason: RejectReason) -> Event:
        self.rejects[reason] += 1
        return Event(_REJECTED, 0, order.side, reason, order.order_id, 0, order.symbol,
                     order.shares, order.price, 0)

    def _enter(self, order: Order) -> list[Event]:
        token, symbol, shares = order.order_id, order.symbol, order.shares
        market = order.ord_type is OrderType.Market
        tif = order.tif
        if token in self._live:
            return [self._reject(order, RejectReason.DuplicateToken)]
        if symbol not in self._stocks:
            return [self._reject(order, RejectReason.UnknownSymbol)]
        if not 0 < shares <= MAX_SHARES:
            return [self._reject(order, RejectReason.InvalidShares)]
        if not market and not valid_price(order.price):
            return [self._reject(order, RejectReason.InvalidPrice)]
        min_qty = order.min_qty
        if min_qty and (tif is not TimeInForce.Ioc or min_qty > shares):
            return [self._reject(order, RejectReason.InvalidMinQty)]
        rests = not market and tif is TimeInForce.Day
        if rests and self._capacity is not None and len(self._live) >= self._capacity:
            return [self._reject(order, RejectReason.Full)]

        side = order.side
        price = 0 if market else order.price
        locate = self._locates.get(symbol)
        if locate is None:
            locate = self._add_locate(symbol)
        events = [Event(_ACCEPTED, 0, side, 0, token, 0, symbol, shares, price, 0)]
        need = shares if tif is TimeInForce.Fok else min_qty
        if need and self._available(locate, side, order.firm, None if market else price,
                                    need) < need:
            events.append(Event(_CANCELED, 0, side, _IOC, token, 0, symbol, shares, price, 0))
            return events
        left = self._match(events, token, order.firm, side, symbol, locate,
                           None if market else price, shares)
        if left:
            if rests:
                self._rest(token, order.firm, side, symbol, locate, price, left)
            else:
                events.append(Event(_CANCELED, 0, side, _IOC, token, 0, symbol, left, price, 0))
        return events

    def _cancel(self, order: Order) -> list[Event]:
        r = self._live.get(order.order_id)
        if r is None:
            return [self._reject(order, RejectReason.UnknownToken)]
        decrement = r.open - order.shares
        if decrement <= 0:
            decrement = 0
        elif order.shares == 0:
            self._remove(r)
            self.itch.append(_D(r.locate, 0, self._clock, r.ref))
        else:
            self._reduce(r, decrement)
        return [Event(_CANCELED, 0, r.side, _USER, r.token, 0, r.symbol, decrement, r.price, 0)]

    def _replace(self, order: Order) -> list[Event]:
        r = self._live.get(order.order_id)
        if r is None:
            return [self._reject(order, RejectReason.UnknownToken)]
        new_token, shares, price = order.new_order_id, order.shares, order.price
        if new_token in self._live:
            return [self._reject(order, RejectReason.DuplicateToken)]
        if not 0 < shares <= MAX_SHARES:
            return [self._reject(order, RejectReason.InvalidShares)]
        if not valid_price(price):
            return [self._reject(order, RejectReason.InvalidPrice)]
        events = [Event(_REPLACED, 0, r.side, 0, r.token, new_token, r.symbol, shares, price, 0)]
        if price == r.price and shares <= r.open:
            del self._live[r.token]
            r.token = new_token
            self._live[new_token] = r
            if shares < r.open:
                self._reduce(r, r.open - shares)
            return events
        self._remove(r)
        best = self._books[r.locate][1 if r.side is Side.Buy else 0].best()
        crosses = best is not None and (price >= best if r.side is Side.Buy else price <= best)
        if not crosses:
            ref = self._rest(new_token, r.firm, r.side, r.symbol, r.locate, price, shares,
                             announce=False)
            self.itch.append(_U(r.locate, 0, self._clock, r.ref, ref, shares, price))
            return events
        self.itch.append(_D(r.locate, 0, self._clock, r.ref))
        left = self._match(events, new_token, r.firm, r.side, r.symbol, r.locate, price, shares)
        if left:
            self._rest(new_token, r.firm, r.side, r.symbol, r.locate, price, left)
        return events

    def _end_of_day(self) -> list[Event]:
        events = []
        clock = self._clock
        for r in sorted(self._live.values(), key=lambda r: r.ref):
            events.append(Event(_CANCELED, 0, r.side, _EXPIRED, r.token, 0, r.symbol, r.open,
                                r.price, 0))
            self._remove(r)
            self.itch.append(_D(r.locate, 0, clock, r.ref))
        self.itch.append(_S(0, 0, clock, "C"))
        self._closed = True
        events.append(Event(_CLOSED, 0, Side.Buy, 0, 0, 0, 0, 0, 0, 0))
        return events

    def _mass_cancel(self, firm: int | None) -> list[Event]:
        events = []
        clock = self._clock
        for r in sorted(self._live.values(), key=lambda r: r.ref):
            if firm is not None and r.firm != firm:
                continue
            events.append(Event(_CANCELED, 0, r.side, _SUPERVISORY, r.token, 0, r.symbol, r.open,
                                r.price, 0))
            self._remove(r)
            self.itch.append(_D(r.locate, 0, clock, r.ref))
        return events

    # --- book mechanics -------------------------------------------------------------------

    def _add_locate(self, symbol: int) -> int:
        locate = len(self._locates) + 1
        self._locates[symbol] = locate
        self._locate_symbols[locate] = symbol
        self._books[locate] = (_BookSide(True), _BookSide(False))
        self.itch.append(_R(locate, 0, self._clock, self._stocks[symbol], "Q", "N", 100, "N",
                            "C", "Z", "P", "N", "N", "1", "N", 0, "N"))
        return locate

    def _available(self, locate: int, side: Side, firm: int, limit: int | None,
                   need: int) -> int:
        """Other firms' shares the aggressor could take now, counted up to ``need``."""
        contra = self._books[locate][1 if side is Side.Buy else 0]
        total = 0
        for price in contra.best_first():
            if limit is not None and (price > limit if side is Side.Buy else price < limit):
                break
            for r in contra.levels[price].queue:
                if r.live and r.firm != firm:
                    total += r.open
                    if total >= need:
                        return total
        return total

    def _match(self, events: list[Event], token: int, firm: int, side: Side, symbol: int,
               locate: int, limit: int | None, shares: int) -> int:
        """Trade ``shares`` against the contra side; append events; return shares left."""
        contra = self._books[locate][1 if side is Side.Buy else 0]
        prices, levels = contra.prices, contra.levels
        is_buy = side is Side.Buy
        clock = self._clock
        match = self._match_number
        append, itch_append, remove = events.append, self.itch.append, self._remove
        while shares and prices:
            best = prices[0] if is_buy else prices[-1]
            if limit is not None and (best > limit if is_buy else best < limit):
                break
            level = levels[best]
            queue = level.queue
            while shares and level.count:
                r = queue[0]
                if not r.live:
                    queue.popleft()
                    continue
                if r.firm == firm:
                    append(Event(_CANCELED, 0, r.side, _SELF_MATCH, r.token, 0, symbol, r.open,
                                 best, 0))
                    remove(r)
                    itch_append(_D(locate, 0, clock, r.ref))
                    continue
                fill = shares if shares < r.open else r.open
                match += 1
                append(_tuple_new(Event, (_EXECUTED, 0, side, 0, token, r.token, symbol, fill,
                                          best, match)))
                append(_tuple_new(Event, (_EXECUTED, 0, r.side, 0, r.token, token, symbol, fill,
                                          best, match)))
                itch_append(_E(locate, 0, clock, r.ref, fill, match))
                shares -= fill
                if fill == r.open:
                    remove(r)
                else:
                    r.open -= fill
                    level.shares -= fill
        self._match_number = match
        return shares

    def _rest(self, token: int, firm: int, side: Side, symbol: int, locate: int, price: int,
              shares: int, announce: bool = True) -> int:
        book_side = self._books[locate][0 if side is Side.Buy else 1]
        level = book_side.levels.get(price)
        if level is None:
            level = book_side.levels[price] = _Level(price)
            insort(book_side.prices, price)
        ref = self._next_ref
        self._next_ref += 1
        r = _Resting(token, firm, side, symbol, locate, price, shares, ref, level)
        level.queue.append(r)
        level.shares += shares
        level.count += 1
        self._live[token] = r
        if announce:
            self.itch.append(_A(locate, 0, self._clock, ref, _SIDE_CHAR[side], shares,
                                self._stocks[symbol], price))
        return ref

    def _reduce(self, r: _Resting, decrement: int) -> None:
        r.open -= decrement
        r.level.shares -= decrement
        self.itch.append(_X(r.locate, 0, self._clock, r.ref, decrement))

    def _remove(self, r: _Resting) -> None:
        r.live = False
        del self._live[r.token]
        level = r.level
        level.shares -= r.open
        level.count -= 1
        if level.count == 0:
            book_side = self._books[r.locate][0 if r.side is Side.Buy else 1]
            del book_side.levels[r.price]
            prices = book_side.prices
            del prices[bisect_left(prices, r.price)]
        elif level.queue[0] is r:
            level.queue.popleft()

    # --- queries (the shapes of tickpath.model.book.BookBuilder) ---------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def match_number(self) -> int:
        """Match number of the last fill (0 before any)."""
        return self._match_number

    def __len__(self) -> int:
        """Number of resting orders."""
        return len(self._live)

    def stock_locate(self, symbol: int) -> int | None:
        return self._locates.get(symbol)

    def stock(self, locate: int) -> str | None:
        symbol = self._locate_symbols.get(locate)
        return None if symbol is None else self._stocks[symbol]

    def order(self, token: int) -> tuple[int, Side, int, int] | None:
        """``(symbol, side, price, open shares)`` of a resting order, or ``None``."""
        r = self._live.get(token)
        return None if r is None else (r.symbol, r.side, r.price, r.open)

    def locates(self) -> list[int]:
        """Stock locates with at least one resting order, ascending."""
        return [locate for locate, (bids, asks) in self._books.items()
                if bids.prices or asks.prices]

    def _side(self, locate: int, side: str | Side) -> _BookSide | None:
        book = self._books.get(locate)
        if book is None:
            return None
        return book[0 if side == "B" or side is Side.Buy else 1]

    def levels(self, locate: int, side: str | Side,
               depth: int | None = None) -> list[tuple[int, int, int]]:
        """``(price, shares, orders)`` per level, best first."""
        book_side = self._side(locate, side)
        if book_side is None:
            return []
        prices = book_side.best_first()[:depth]
        return [(p, book_side.levels[p].shares, book_side.levels[p].count) for p in prices]

    def queue(self, locate: int, side: str | Side, price: int) -> list[tuple[int, int]]:
        """``(ITCH reference, shares)`` resting at one level, in time priority."""
        book_side = self._side(locate, side)
        level = None if book_side is None else book_side.levels.get(price)
        if level is None:
            return []
        return [(r.ref, r.open) for r in level.queue if r.live]

    def tokens(self, locate: int, side: str | Side, price: int) -> list[int]:
        """Tokens resting at one level, in time priority."""
        book_side = self._side(locate, side)
        level = None if book_side is None else book_side.levels.get(price)
        return [] if level is None else [r.token for r in level.queue if r.live]

    def snapshot(self) -> dict[int, dict[str, tuple]]:
        """Same format as :meth:`tickpath.model.book.BookBuilder.snapshot`."""
        out: dict[int, dict[str, tuple]] = {}
        for locate in self.locates():
            entry = {}
            for key, book_side in zip(("bids", "asks"), self._books[locate], strict=True):
                entry[key] = tuple(
                    (p, tuple((r.ref, r.open) for r in book_side.levels[p].queue if r.live))
                    for p in book_side.best_first())
            out[locate] = entry
        return out

    def book_lines(self, depth: int | None = None) -> Iterator[dict[str, Any]]:
        """One JSON-ready object per locate with a resting order, in locate order (the
        ``tickpath book`` format)."""
        for locate in self.locates():
            yield {
                "stock": self.stock(locate),
                "stock_locate": locate,
                "bids": [list(level) for level in self.levels(locate, Side.Buy, depth)],
                "asks": [list(level) for level in self.levels(locate, Side.Sell, depth)],
            }
