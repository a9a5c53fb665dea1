"""Seeded random action streams for the matching engine benches: heavy crossing on a few
symbols, partial fills, self-match, IOC/FOK/market/min-qty, cancels, replaces, bad fields.

Prices sit on ``prices`` whole-cent steps around a per-symbol mid on both sides, so every book
side needs at most ``prices`` levels (keep it at or below the engine's ``levels``), and tokens
are drawn from ``1 .. 2**token_bits - 1`` (finished tokens are reused, as the host does).
"""

import random

from tickpath.hdl.matching.itch_out import default_stocks
from tickpath.model.matching import MatchingModel
from tickpath.protocol.records import Action, Order, OrderType, Side, TimeInForce

__all__ = ["random_actions", "stock_name", "new_model"]


def stock_name(symbol: int) -> str:
    """The engine's default ITCH stock name of ``symbol``."""
    return default_stocks(symbol + 1)[symbol]


def new_model(symbols: int, capacity: int) -> MatchingModel:
    """A golden model with symbols ``0..symbols-1`` registered (as the engine has them)."""
    model = MatchingModel(capacity=capacity)
    for s in range(symbols):
        model.set_symbol(s, stock_name(s))
    return model


def random_actions(rng: random.Random, count: int, *, symbols: int = 4, capacity: int = 64,
                   token_bits: int = 10, prices: int = 8, firms: int = 3,
                   faults: bool = True) -> list[Order]:
    """``count`` actions (no end of day). A private model tracks which tokens are live."""
    model = new_model(symbols, capacity)
    mids = [1_000_000 + 250_000 * s for s in range(symbols)]
    token_space = 1 << token_bits
    recent: list[int] = []
    out: list[Order] = []

    def fresh_token() -> int:
        while True:
            t = rng.randrange(1, token_space)
            if model.order(t) is None:
                return t

    def live_token() -> int | None:
        while recent:
            i = rng.randrange(len(recent))
            t = recent[i]
            if model.order(t) is not None:
                return t
            recent[i] = recent[-1]
            recent.pop()
        return None

    def price(symbol: int) -> int:
        return mids[symbol] + 100 * (rng.randrange(prices) - prices // 2)

    def shares() -> int:
        r = rng.random()
        if r < 0.6:
            return rng.randrange(1, 400)
        if r < 0.95:
            return 100 * rng.randrange(1, 10)
        return rng.choice([999_999, 2_000])

    for _ in range(count):
        kind = rng.random()
        live = live_token()
        if kind < 0.55 or live is None:
            symbol = rng.randrange(symbols)
            side = rng.choice((Side.Buy, Side.Sell))
            tif, ord_type, min_qty = TimeInForce.Day, OrderType.Limit, 0
            r = rng.random()
            if r < 0.12:
                tif = TimeInForce.Ioc
                if rng.random() < 0.4:
                    min_qty = rng.randrange(1, 300)
            elif r < 0.20:
                tif = TimeInForce.Fok
            elif r < 0.27:
                ord_type = OrderType.Market
                tif = rng.choice((TimeInForce.Day, TimeInForce.Ioc, TimeInForce.Fok))
            n, p = shares(), price(symbol)
            if min_qty:
                n = max(n, min_qty - rng.randrange(0, 3))
            token = fresh_token()
            if faults:
                f = rng.random()
                if f < 0.01:
                    symbol = symbols + rng.randrange(2)
                elif f < 0.02:
                    n = rng.choice((0, 1_000_000))
                elif f < 0.03:
                    p = rng.choice((p + 50, 0, 9_900, 2_000_000_000))
                elif f < 0.04:
                    min_qty = rng.randrange(1, 10)
                elif f < 0.06 and live is not None:
                    token = live
            order = Order(Action.Enter, side, tif, ord_type, token, 0, rng.randrange(1, firms + 1),
                          symbol, n, p, min_qty)
        elif kind < 0.77:
            token = live if rng.random() < 0.9 else rng.randrange(1, token_space)
            held = model.order(token)
            r = rng.random()
            if held is None or r < 0.4:
                n = 0
            elif r < 0.7:
                n = rng.randrange(held[3])
            else:
                n = held[3] + rng.randrange(3)
            order = Order(Action.Cancel, rng.choice((Side.Buy, Side.Sell)), TimeInForce.Day,
                          OrderType.Limit, token, 0, 0, rng.randrange(symbols), n, 0, 0)
        else:
            token = live if rng.random() < 0.95 else rng.randrange(1, token_space)
            held = model.order(token)
            symbol, _, held_price, held_open = held if held else (0, Side.Buy, mids[0], 100)
            r = rng.random()
            new = fresh_token()
            if faults and r < 0.03:
                new = token
            elif faults and r < 0.06:
                new = live_token() or new
            r = rng.random()
            if r < 0.4:
                p = held_price
                n = rng.randrange(1, held_open + 1) if rng.random() < 0.6 else held_open + 50
            else:
                p, n = price(symbol), shares()
            if faults and rng.random() < 0.03:
                p = rng.choice((p + 1, 0))
            if faults and rng.random() < 0.02:
                n = 0
            order = Order(Action.Replace, Side.Buy, TimeInForce.Day, OrderType.Limit, token, new,
                          0, 0, n, p, 0)
        model.process(order)
        if model.order(order.order_id) is not None:
            recent.append(order.order_id)
        if order.action is Action.Replace and model.order(order.new_order_id) is not None:
            recent.append(order.new_order_id)
        out.append(order)
    return out
