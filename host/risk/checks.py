"""Pre-trade risk checks, account exposure state, order-rate limits and the kill switch.

Everything is an integer: prices in ticks, quantities in shares, notional in ticks x shares,
collars in basis points, time in ns (passed in, never read here, so tests control it).

Checks on an enter or a replace, first failing wins, each with its :class:`Reason`:

==================  ===========================================================================
``killed_global``,  the kill switch is on for everything, the account or the session
``killed_account``,
``killed_session``
``halted``          the symbol is halted (configuration, :meth:`RiskChecker.halt`, or the feed's
                    ``H`` trading action through the reference provider)
``restricted``      the symbol is restricted (globally or for the account)
``duplicate_id``    the client order id (token; a replace's new token) already reached this check
                    today for this account, whatever became of that order
``price_invalid``   a limit price that is not whole cents from $1.00 to $199,999.99
``max_qty``         shares > ``max_order_shares``
``no_reference``    the collar or a market order's notional needs a reference price and there
                    is none, and ``no_reference = "reject"``
``max_notional``    shares x price > ``max_order_notional`` (market orders: x the reference)
``collar``          buy: price x 10000 > reference x (10000 + bp), reference = best ask, else
                    last trade; sell: price x 10000 < reference x (10000 - bp), reference = best
                    bid, else last trade. Limit orders only.
``max_position``    the position the account could reach in the symbol if every open order on
                    the order's side filled, this order included, exceeds ``max_position`` in
                    absolute value (buy: pos + open buys + shares; sell: open sells + shares -
                    pos); a replace counts its new size in place of the old order's open size
``max_gross_exposure``  sum over symbols of |pos| x mark, plus open orders' notional, plus this
                    order's notional, above ``max_gross_exposure``
``daily_loss``      the account's loss today (realized + unrealized: cash + sum pos x mark, with
                    the mark the BBO midpoint, else the last trade, else the account's last fill)
                    already above ``max_daily_loss``
``rate_session``,   the session's or the account's token bucket is empty; only orders that
``rate_account``    passed every other check take a token
==================  ===========================================================================

Cancels are never checked (they only reduce risk). Midpoints are kept doubled (bid + ask) so the
exposure and loss comparisons stay exact.
"""

from __future__ import annotations

import enum
from typing import Any

from tickpath.host.risk.config import RiskConfig
from tickpath.model.matching import valid_price
from tickpath.protocol.records import Side

__all__ = ["Reason", "TokenBucket", "ReferencePrices", "BookReference", "RiskChecker"]

BUY, SELL = Side.Buy, Side.Sell
BP = 10_000


class Reason(enum.StrEnum):
    KILLED_GLOBAL = "killed_global"
    KILLED_ACCOUNT = "killed_account"
    KILLED_SESSION = "killed_session"
    HALTED = "halted"
    RESTRICTED = "restricted"
    DUPLICATE_ID = "duplicate_id"
    PRICE_INVALID = "price_invalid"
    MAX_QTY = "max_qty"
    NO_REFERENCE = "no_reference"
    MAX_NOTIONAL = "max_notional"
    COLLAR = "collar"
    MAX_POSITION = "max_position"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    DAILY_LOSS = "daily_loss"
    RATE_SESSION = "rate_session"
    RATE_ACCOUNT = "rate_account"


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` held, starting full. Tokens are counted in
    units of 1e-9 so refills are exact integers: ``elapsed_ns x rate`` units."""

    __slots__ = ("rate", "burst", "capacity", "level", "stamp")
    UNIT = 1_000_000_000

    def __init__(self, rate: int, burst: int, now_ns: int):
        if rate < 1 or burst < 1:
            raise ValueError(f"rate and burst must be >= 1, not {rate}, {burst}")
        self.rate, self.burst = rate, burst
        self.capacity = burst * self.UNIT
        self.level = self.capacity
        self.stamp = now_ns

    def take(self, now_ns: int) -> bool:
        """Take one token at time ``now_ns``; False if there is none (time going backwards
        refills nothing)."""
        elapsed = now_ns - self.stamp
        if elapsed > 0:
            level = self.level + elapsed * self.rate
            self.level = level if level < self.capacity else self.capacity
            self.stamp = now_ns
        if self.level >= self.UNIT:
            self.level -= self.UNIT
            return True
        return False

    def give_back(self) -> None:
        """Return a token taken for an order that was then refused elsewhere."""
        level = self.level + self.UNIT
        self.level = level if level < self.capacity else self.capacity


class ReferencePrices:
    """Reference prices per symbol, set by whoever watches the market (a book builder, a test).

    Members
    -------
    halted : set of str
        Symbols the market has halted.
    """

    def __init__(self) -> None:
        self._bid: dict[str, int] = {}
        self._ask: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self.marks2: dict[str, int] = {}        # symbol -> twice the mark, kept up to date
        self.halted: set[str] = set()

    def set_bbo(self, symbol: str, bid: int | None, ask: int | None) -> None:
        for table, value in ((self._bid, bid), (self._ask, ask)):
            if value is None:
                table.pop(symbol, None)
            else:
                table[symbol] = value
        self._remark(symbol)

    def trade(self, symbol: str, price: int) -> None:
        self._last[symbol] = price
        self._remark(symbol)

    def _remark(self, symbol: str) -> None:
        bid, ask = self.best(symbol, BUY), self.best(symbol, SELL)
        if bid is not None and ask is not None:
            self.marks2[symbol] = bid + ask
            return
        last = self._last.get(symbol)
        if last is None:
            self.marks2.pop(symbol, None)
        else:
            self.marks2[symbol] = 2 * last

    def best(self, symbol: str, side: Side) -> int | None:
        """Best bid (``side`` Buy) or best ask (Sell)."""
        return (self._bid if side is BUY else self._ask).get(symbol)

    def last(self, symbol: str) -> int | None:
        return self._last.get(symbol)

    def collar_reference(self, symbol: str, side: Side) -> int | None:
        """What a ``side`` order is collared (and a market order priced) against: a buy against
        the best ask, a sell against the best bid, else the last trade."""
        ref = self.best(symbol, SELL if side is BUY else BUY)
        return self._last.get(symbol) if ref is None else ref

    def mark2(self, symbol: str) -> int | None:
        """Twice the mark: bid + ask when both exist, else twice the last trade."""
        return self.marks2.get(symbol)


_BOOK_TYPES = frozenset("AFECXDUP")


class BookReference(ReferencePrices):
    """Reference prices fed by a :class:`tickpath.model.book.BookBuilder`: give every ITCH
    message to :meth:`apply`; the BBO is read from the book, the last trade from ``E`` (at the
    resting order's price), ``C`` and ``P``, halts from ``H``."""

    def __init__(self, book=None) -> None:
        super().__init__()
        if book is None:
            from tickpath.model.book import BookBuilder
            book = BookBuilder()
        self.book = book
        self._locates: dict[str, int] = {}

    def apply(self, msg: Any) -> None:
        t = msg.type
        book = self.book
        if t == "E":
            order = book.order(msg.order_reference_number)
            if order is not None:
                self._trade_at(order[0], order[2])
        elif t == "C":
            order = book.order(msg.order_reference_number)
            if order is not None:
                self._trade_at(order[0], msg.execution_price)
        elif t == "P":
            self._last[msg.stock] = msg.price
        elif t in ("R", "A", "F"):
            self._locates[msg.stock] = msg.stock_locate
        elif t == "H":
            self._locates.setdefault(msg.stock, msg.stock_locate)
            if msg.trading_state in ("H", "P"):
                self.halted.add(msg.stock)
            else:
                self.halted.discard(msg.stock)
        book.apply(msg)
        if t in _BOOK_TYPES:
            stock = book.stock(msg.stock_locate)
            if stock is not None:
                self._remark(stock)

    def _trade_at(self, locate: int, price: int) -> None:
        stock = self.book.stock(locate)
        if stock is not None:
            self._last[stock] = price

    def best(self, symbol: str, side: Side) -> int | None:
        locate = self._locates.get(symbol)
        if locate is None:
            return None
        best = self.book._best(locate, "B" if side is BUY else "S")
        return None if best is None else best[0]


class _Position:
    __slots__ = ("position", "open_buy", "open_sell", "last_price")

    def __init__(self) -> None:
        self.position = 0
        self.open_buy = 0
        self.open_sell = 0
        self.last_price = 0


class _Account:
    __slots__ = ("cash", "open_notional", "symbols", "held", "tokens", "bucket", "limits")

    def __init__(self) -> None:
        self.cash = 0                    # sells x price - buys x price
        self.open_notional = 0           # open shares x limit price over all open orders
        self.symbols: dict[str, _Position] = {}
        self.held: dict[str, _Position] = {}     # the symbols with a nonzero position
        self.tokens: set[str] = set()    # client order ids seen today
        self.bucket: TokenBucket | None = None
        self.limits: tuple | None = None


def _least(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class RiskChecker:
    """Pre-trade checks against a :class:`RiskConfig`, with the account state they need.

    The order path tells it about open orders (:meth:`on_open`, :meth:`on_reduce`) and fills
    (:meth:`on_fill`); it answers :meth:`check_enter` and :meth:`check_replace` with ``None``
    (pass) or a :class:`Reason`.

    Parameters
    ----------
    config : RiskConfig or None
        ``None``: every check off.
    reference : ReferencePrices or None
        Live reference prices; ``None``: an empty :class:`ReferencePrices`.
    """

    def __init__(self, config: RiskConfig | None = None,
                 reference: ReferencePrices | None = None):
        self.reference = ReferencePrices() if reference is None else reference
        self.accounts: dict[str, _Account] = {}
        self.buckets: dict[str, TokenBucket] = {}           # per session
        self.killed_global = False
        self.killed_accounts: set[str] = set()
        self.killed_sessions: set[str] = set()
        self.halted: set[str] = set()
        self.checks = 0
        self.set_config(RiskConfig.off() if config is None else config)

    # --- configuration ---------------------------------------------------------------------

    @property
    def config(self) -> RiskConfig:
        return self._config

    def set_config(self, config: RiskConfig) -> None:
        """Put ``config`` in force (a reload): derived limits are recomputed; rate buckets
        whose rate or burst changed start again full, the others keep their level."""
        self._config = config
        self._limits: dict[tuple[str, str], tuple] = {}
        for name, account in self.accounts.items():
            account.limits = self.account_limits(name)
            bucket = account.bucket
            if bucket is not None and (bucket.rate, bucket.burst) != account.limits[2:]:
                account.bucket = None
        for name, bucket in list(self.buckets.items()):
            if (bucket.rate, bucket.burst) != (config.session_rate, config.session_burst):
                del self.buckets[name]

    def limits(self, account: str, symbol: str) -> tuple:
        """``(max_order_shares, max_order_notional, max_position, collar_bp, restricted)``
        in force for one account and symbol (None: off)."""
        key = (account, symbol)
        found = self._limits.get(key)
        if found is None:
            c = self._config
            g = c.glob
            a = c.accounts.get(account)
            s = c.symbols.get(symbol)
            a_s = None if a is None else a.symbols.get(symbol)
            tables = [t for t in (g, a, s, a_s) if t is not None]
            collar = None
            if c.collar:
                collar = c.collar_bp
                for t in (a, s, a_s):
                    if t is not None and t.collar_bp is not None:
                        collar = t.collar_bp
            restricted = symbol in g.restricted or (a is not None and symbol in a.restricted)
            found = self._limits[key] = (
                _least(*(t.max_order_shares for t in tables)),
                _least(*(t.max_order_notional for t in tables)),
                _least(*(t.max_position for t in tables)),
                collar, restricted)
        return found

    def account_limits(self, account: str) -> tuple:
        """``(max_gross_exposure, max_daily_loss, orders_per_second, burst)`` of an account."""
        c = self._config
        g, a = c.glob, c.accounts.get(account)
        if a is None:
            return (g.max_gross_exposure, g.max_daily_loss, g.orders_per_second, g.burst)
        rate = _least(g.orders_per_second, a.orders_per_second)
        burst = _least(g.burst, a.burst)
        return (_least(g.max_gross_exposure, a.max_gross_exposure),
                _least(g.max_daily_loss, a.max_daily_loss), rate, burst)

    # --- kill switch and halts ------------------------------------------------------------

    def kill(self, account: str | None = None, session: str | None = None) -> None:
        """Block new orders: of ``account``, of ``session``, or (neither given) everyone."""
        if account is not None:
            self.killed_accounts.add(account)
        if session is not None:
            self.killed_sessions.add(session)
        if account is None and session is None:
            self.killed_global = True

    def unkill(self, account: str | None = None, session: str | None = None) -> None:
        """Lift one kill (the same scope as given to :meth:`kill`)."""
        if account is not None:
            self.killed_accounts.discard(account)
        if session is not None:
            self.killed_sessions.discard(session)
        if account is None and session is None:
            self.killed_global = False

    def halt(self, symbol: str) -> None:
        self.halted.add(symbol)

    def resume(self, symbol: str) -> None:
        self.halted.discard(symbol)

    # --- state the order path reports ---------------------------------------------------------

    def _account(self, name: str) -> _Account:
        account = self.accounts.get(name)
        if account is None:
            account = self.accounts[name] = _Account()
        return account

    def _position(self, account: _Account, symbol: str) -> _Position:
        pos = account.symbols.get(symbol)
        if pos is None:
            pos = account.symbols[symbol] = _Position()
        return pos

    def on_open(self, account: str, symbol: str, side: Side, shares: int, price: int) -> None:
        """An order of ``shares`` at ``price`` is now open (accepted, or a replace's new size)."""
        a = self._account(account)
        pos = self._position(a, symbol)
        if side is BUY:
            pos.open_buy += shares
        else:
            pos.open_sell += shares
        a.open_notional += shares * price

    def on_reduce(self, account: str, symbol: str, side: Side, shares: int, price: int) -> None:
        """``shares`` of an open order at limit ``price`` are no longer open (filled, canceled,
        replaced away)."""
        a = self._account(account)
        pos = self._position(a, symbol)
        if side is BUY:
            pos.open_buy -= shares
        else:
            pos.open_sell -= shares
        a.open_notional -= shares * price

    def on_fill(self, account: str, symbol: str, side: Side, shares: int, price: int) -> None:
        """A fill of the account's order: position and cash (the open size is reduced
        separately, with :meth:`on_reduce`)."""
        a = self._account(account)
        pos = self._position(a, symbol)
        if side is BUY:
            pos.position += shares
            a.cash -= shares * price
        else:
            pos.position -= shares
            a.cash += shares * price
        pos.last_price = price
        if pos.position:
            a.held[symbol] = pos
        else:
            a.held.pop(symbol, None)

    def position(self, account: str, symbol: str) -> tuple[int, int, int]:
        """``(position, open buy shares, open sell shares)``."""
        a = self.accounts.get(account)
        pos = None if a is None else a.symbols.get(symbol)
        return (0, 0, 0) if pos is None else (pos.position, pos.open_buy, pos.open_sell)

    def exposure2(self, account: str) -> tuple[int, int]:
        """Twice ``(gross exposure, PnL)`` of an account: exposure sum |pos| x mark plus open
        notional; PnL cash + sum pos x mark."""
        a = self.accounts.get(account)
        if a is None:
            return 0, 0
        marks2 = self.reference.marks2
        gross2 = 2 * a.open_notional
        pnl2 = 2 * a.cash
        for symbol, pos in a.held.items():
            p = pos.position
            m2 = marks2.get(symbol)
            if m2 is None:
                m2 = 2 * pos.last_price
            gross2 += (p if p > 0 else -p) * m2
            pnl2 += p * m2
        return gross2, pnl2

    # --- checks ----------------------------------------------------------------------------

    def check_enter(self, account: str, session: str, token: str, symbol: str, side: Side,
                    shares: int, price: int, market: bool, now_ns: int) -> Reason | None:
        """None if a new order may go to the engine, else why not."""
        return self._check(account, session, token, symbol, side, shares, price, market,
                           0, 0, now_ns)

    def check_replace(self, account: str, session: str, new_token: str, symbol: str,
                      side: Side, old_open: int, old_price: int, shares: int, price: int,
                      now_ns: int) -> Reason | None:
        """None if replacing an open order (``old_open`` shares at ``old_price``) by
        ``shares`` at ``price`` under ``new_token`` may go to the engine, else why not."""
        return self._check(account, session, new_token, symbol, side, shares, price, False,
                           old_open, old_price, now_ns)

    def _check(self, account: str, session: str, token: str, symbol: str, side: Side,
               shares: int, price: int, market: bool, old_open: int, old_price: int,
               now_ns: int) -> Reason | None:
        self.checks += 1
        if self.killed_global:
            return Reason.KILLED_GLOBAL
        if account in self.killed_accounts:
            return Reason.KILLED_ACCOUNT
        if session in self.killed_sessions:
            return Reason.KILLED_SESSION
        c = self._config
        if not c.enabled:
            return None
        if symbol in self.halted or symbol in c.halted or symbol in self.reference.halted:
            return Reason.HALTED
        max_shares, max_notional, max_pos, collar_bp, restricted = (
            self._limits.get((account, symbol)) or self.limits(account, symbol))
        if restricted:
            return Reason.RESTRICTED
        a = self.accounts.get(account)
        if a is None:
            a = self._account(account)
        if c.check_duplicate_id:
            tokens = a.tokens
            if token in tokens:
                return Reason.DUPLICATE_ID
            tokens.add(token)
        if not market and c.check_price and not valid_price(price):
            return Reason.PRICE_INVALID
        if max_shares is not None and shares > max_shares:
            return Reason.MAX_QTY
        ref = None
        if market or collar_bp is not None:
            ref = self.reference.collar_reference(symbol, side)
            if ref is None and c.no_reference_reject:
                return Reason.NO_REFERENCE
        notional = shares * ((ref or 0) if market else price)
        if max_notional is not None and notional > max_notional:
            return Reason.MAX_NOTIONAL
        if collar_bp is not None and ref is not None and not market:
            if side is BUY:
                if price * BP > ref * (BP + collar_bp):
                    return Reason.COLLAR
            elif price * BP < ref * (BP - collar_bp):
                return Reason.COLLAR
        if max_pos is not None:
            pos = a.symbols.get(symbol)
            if pos is None:
                reach = shares - old_open
            elif side is BUY:
                reach = pos.position + pos.open_buy + shares - old_open
            else:
                reach = pos.open_sell + shares - old_open - pos.position
            if reach > max_pos:
                return Reason.MAX_POSITION
        limits = a.limits
        if limits is None:
            limits = a.limits = self.account_limits(account)
        max_gross, max_loss, rate, burst = limits
        if max_gross is not None or max_loss is not None:
            gross2, pnl2 = self.exposure2(account)
            if max_gross is not None and \
                    gross2 + 2 * (notional - old_open * old_price) > 2 * max_gross:
                return Reason.MAX_GROSS_EXPOSURE
            if max_loss is not None and -pnl2 > 2 * max_loss:
                return Reason.DAILY_LOSS
        if c.session_rate is not None:
            bucket = self.buckets.get(session)
            if bucket is None:
                bucket = self.buckets[session] = TokenBucket(c.session_rate, c.session_burst,
                                                             now_ns)
            if not bucket.take(now_ns):
                return Reason.RATE_SESSION
        if rate is not None:
            account_bucket = a.bucket
            if account_bucket is None:
                account_bucket = a.bucket = TokenBucket(rate, burst, now_ns)
            if not account_bucket.take(now_ns):
                if c.session_rate is not None:
                    bucket.give_back()
                return Reason.RATE_ACCOUNT
        return None
