"""Throughput of the golden models and codecs on one synthetic feed and one order stream.

Peers in the same run: a bare ``struct`` walk of the BinaryFILE framing (the floor any Python
decoder pays) for the ITCH codec, and the codec itself for the book builder."""

from __future__ import annotations

import random
import struct

from bench.report import Row, rate
from tickpath import generator
from tickpath.model.book import BookBuilder
from tickpath.model.matching import MatchingModel
from tickpath.protocol import itch
from tickpath.protocol.records import Action, Order, OrderType, Side, TimeInForce

FEED_MESSAGES = 300_000
ORDERS = 100_000


def _feed() -> bytes:
    return generator.generate_binaryfile(generator.GeneratorConfig(
        messages=FEED_MESSAGES, symbols=50, seed=1))


def _framing_walk(image: bytes) -> int:
    unpack = struct.Struct(">H").unpack_from
    pos, n, end = 0, 0, len(image)
    while pos < end:
        (length,) = unpack(image, pos)
        pos += 2 + length
        n += 1
    return n


def _orders(n: int, seed: int = 7) -> list[Order]:
    rng = random.Random(seed)
    out, live, next_id = [], [], 1
    for _ in range(n):
        r = rng.random()
        if r < 0.15 and live:
            oid = live.pop(rng.randrange(len(live)))
            out.append(Order(action=Action.Cancel, side=Side.Buy, tif=TimeInForce.Day,
                             ord_type=OrderType.Limit, order_id=oid, new_order_id=0, firm=0,
                             symbol=0, shares=0, price=0, min_qty=0))
            continue
        side = Side.Buy if rng.random() < 0.5 else Side.Sell
        price = (1_000_000 + rng.randint(-20, 20) * 100)
        tif = TimeInForce.Ioc if rng.random() < 0.2 else TimeInForce.Day
        out.append(Order(action=Action.Enter, side=side, tif=tif, ord_type=OrderType.Limit,
                         order_id=next_id, new_order_id=0, firm=rng.randrange(8),
                         symbol=rng.randrange(16), shares=rng.randint(1, 10) * 100,
                         price=price, min_qty=0))
        live.append(next_id)
        next_id += 1
    return out


def run() -> list[Row]:
    image = _feed()
    messages = [m for _, m in itch.iter_binaryfile(image)]
    orders = _orders(ORDERS)

    def decode() -> int:
        return sum(1 for _ in itch.iter_binaryfile(image))

    def book() -> int:
        b = BookBuilder()
        for m in messages:
            b.apply(m)
        return len(messages)

    def match() -> int:
        model = MatchingModel()
        for s in range(16):
            model.set_symbol(s, f"SYM{s}")
        for o in orders:
            model.process(o)
        return len(orders)

    def generate() -> int:
        _feed()
        return FEED_MESSAGES

    return [
        Row("framing walk (floor)", rate(lambda: _framing_walk(image)), "msg/s"),
        Row("itch decode", rate(decode), "msg/s", baseline="framing walk (floor)"),
        Row("book builder apply", rate(book), "msg/s", baseline="itch decode"),
        Row("matching model", rate(match), "actions/s"),
        Row("generator (BinaryFILE)", rate(generate, repeat=1), "msg/s"),
    ]
