"""Non-crossing action streams: resting enters and cancels only, so every action costs the
engine its fixed minimum (resting enter 7 cycles, cancel 4) and the market data out is the
bottleneck if anything is."""

import random

from tickpath.protocol.records import Action, Order, OrderType, Side, TimeInForce

__all__ = ["non_crossing_actions"]


def non_crossing_actions(rng: random.Random, count: int, *, symbols: int = 4,
                         capacity: int = 24, levels: int = 8, token_bits: int = 10,
                         cancel_share: float = 0.4) -> list[Order]:
    """``count`` enters (bids below, offers above each symbol's mid, on at most ``levels``
    prices a side) and full or partial cancels of the oldest, keeping at most ``capacity``
    - 2 orders resting. ITCH: one ``A`` per enter (and an ``R`` per symbol), a ``D`` or an
    ``X`` per cancel."""
    mids = [1_000_000 + 250_000 * s for s in range(symbols)]
    resting: list[tuple[int, int]] = []          # (token, shares), oldest first
    free = list(range(1, min(1 << token_bits, 4 * capacity)))
    out = []
    for _ in range(count):
        if resting and (len(resting) >= capacity - 2 or rng.random() < cancel_share):
            token, shares = resting.pop(rng.randrange(min(3, len(resting))))
            if rng.random() < 0.3 and shares > 1:          # partial: X, the order stays
                left = rng.randrange(1, shares)
                out.append(Order(Action.Cancel, order_id=token, shares=left))
                resting.append((token, left))
            else:                                          # full: D
                out.append(Order(Action.Cancel, order_id=token, shares=0))
                free.append(token)
            continue
        symbol = rng.randrange(symbols)
        side = rng.choice((Side.Buy, Side.Sell))
        step = 100 * (1 + rng.randrange(levels))
        price = mids[symbol] - step if side is Side.Buy else mids[symbol] + step
        token = free.pop(0)
        shares = rng.randrange(1, 1000)
        out.append(Order(Action.Enter, side, TimeInForce.Day, OrderType.Limit, token, 0,
                         rng.randrange(1, 4), symbol, shares, price, 0))
        resting.append((token, shares))
    return out
