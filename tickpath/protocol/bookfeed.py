"""Layouts of the feed path behind the ITCH decoder: order table, its memory port, the book.

Defined once here; the gateware (``hdl/order_table.py``, ``hdl/book.py``, ``hdl/feed_book.py``),
the benches and the models derive from them.

* :data:`TimedFeedEvent`: a :class:`~tickpath.protocol.feed.FeedEvent` with its ingress cycle
  appended (same field offsets, so a FeedEvent value is its low bits).
* :class:`OrderEntry`: one live order in the order table; a memory word is a bucket of
  ``ways`` of them (:func:`order_memory_signature`).
* :class:`BookOp`: what the order table tells the book for one event (at most one per event).
* :func:`book_update_layout`: the top-N / BBO update the book emits.
* :func:`bucket_of` / :func:`hash_masks`: the order-reference hash (an H3 family: every bucket
  bit is the parity of the reference under a fixed 64-bit mask), the same in Python and HDL.
"""

import random
from typing import Any

from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.protocol.feed import EventKind, FeedEvent

__all__ = [
    "TimedFeedEvent", "OrderEntry", "Subscription", "SubscriptionEntry", "BookOp", "BookQuery",
    "BOOK_KINDS", "CYCLE_WIDTH", "SLOT_WIDTH", "ORDERS_WIDTH",
    "bucket_layout", "order_memory_signature", "book_update_layout", "hash_masks", "bucket_of",
    "level_fields",
]

CYCLE_WIDTH = 32        # ingress/egress cycle stamps (wrap)
SLOT_WIDTH = 8          # up to 256 subscribed symbols
ORDERS_WIDTH = 16       # orders resting at one price level

#: Event kinds that touch the order table and the book.
BOOK_KINDS = (EventKind.Add, EventKind.Execute, EventKind.ExecuteWithPrice, EventKind.Cancel,
              EventKind.Delete, EventKind.Replace)

TimedFeedEvent = data.StructLayout({
    **{name: field.shape for name, field in data.Layout.cast(FeedEvent)},
    "ingress": CYCLE_WIDTH,
})
for _name, _field in data.Layout.cast(FeedEvent):
    assert TimedFeedEvent[_name].offset == _field.offset


class OrderEntry(data.Struct):
    """One live order. ``valid`` 0 marks a free way."""
    valid:        1
    side:         1     # B=0, S=1 (as FeedEvent.side)
    slot:         SLOT_WIDTH
    stock_locate: 16
    order_ref:    64
    price:        32
    shares:       32


class SubscriptionEntry(data.Struct):
    """Subscription table word, indexed by stock locate."""
    enable: 1
    slot:   SLOT_WIDTH


class Subscription(data.Struct):
    """Subscription table write: ``stock_locate`` -> ``slot`` (``enable`` 0 unsubscribes)."""
    stock_locate: 16
    slot:         SLOT_WIDTH
    enable:       1


class BookOp(data.Struct):
    """The book change one event makes, on one symbol side (``slot``, ``side``).

    Applied in this order: ``reduce`` takes ``reduce_shares`` from the level at
    ``reduce_price`` and, with ``remove``, one order (the level goes when no order is left);
    ``add`` adds one order of ``add_shares`` at ``add_price``; ``invalidate`` flags the
    symbol's book invalid (an unknown reference or a full table: the true book is unknowable).
    """
    kind:          EventKind
    slot:          SLOT_WIDTH
    stock_locate:  16
    side:          1
    reduce:        1
    remove:        1
    add:           1
    invalidate:    1
    reduce_price:  32
    reduce_shares: 32
    add_price:     32
    add_shares:    32
    ingress:       CYCLE_WIDTH


class BookQuery(data.Struct):
    """Ask the book for one update of (``slot``, ``side``) as it stands (kind ``Other``)."""
    slot: SLOT_WIDTH
    side: 1


def bucket_layout(ways: int) -> data.ArrayLayout:
    return data.ArrayLayout(OrderEntry, ways)


def order_memory_signature(addr_width: int, ways: int) -> wiring.Signature:
    """The order table's memory port, from the table's side (the requester).

    ``req``: ``{write, addr, data}``, one bucket per address; a read (``write`` 0) is answered
    by exactly one ``resp`` ``{data}``, in request order, any number of cycles later; a write
    has no answer and is seen by every later read. The requester takes every response the cycle
    it is valid (``resp`` is always ready), so it only issues reads it can absorb. Block RAM
    answers the next cycle; an SDRAM controller fits behind the same port.
    """
    bucket = bucket_layout(ways)
    return wiring.Signature({
        "req":  Out(stream.Signature(data.StructLayout({
            "write": 1, "addr": addr_width, "data": bucket}))),
        "resp": In(stream.Signature(data.StructLayout({"data": bucket}), always_ready=True)),
    })


def level_fields(depth: int) -> list[tuple[str, str, str]]:
    """(price, shares, orders) field names of each of the ``depth`` levels, best first."""
    return [(f"l{i}_price", f"l{i}_shares", f"l{i}_orders") for i in range(depth)]


def book_update_layout(depth: int) -> data.StructLayout:
    """One book update: the top ``depth`` levels of one side of one symbol and its BBO.

    Flat (no nested layouts) so benches and hosts unpack it field by field. Levels past the
    side's last are zero; an empty BBO side is price 0, shares 0. ``levels`` is the number of
    levels the book holds on that side; ``invalid`` the symbol's flag after this event.
    ``ingress`` is the cycle the input event arrived, ``egress`` the cycle the update left.
    """
    fields: dict[str, Any] = {
        "kind": EventKind, "slot": SLOT_WIDTH, "stock_locate": 16, "side": 1, "invalid": 1,
        "levels": 16,
    }
    for price, shares, orders in level_fields(depth):
        fields.update({price: 32, shares: 32, orders: ORDERS_WIDTH})
    fields.update({"bid_price": 32, "bid_shares": 32, "ask_price": 32, "ask_shares": 32,
                   "ingress": CYCLE_WIDTH, "egress": CYCLE_WIDTH})
    return data.StructLayout(fields)


def hash_masks(bits: int) -> tuple[int, ...]:
    """The fixed 64-bit masks of the reference hash, one per bucket-index bit."""
    rng = random.Random(0x7C1C9A7)
    masks = [rng.getrandbits(64) for _ in range(32)]
    return tuple(masks[:bits])


def bucket_of(order_ref: int, bits: int) -> int:
    """Bucket index of ``order_ref`` in a table of ``2**bits`` buckets."""
    out = 0
    for i, mask in enumerate(hash_masks(bits)):
        out |= (bin(order_ref & mask).count("1") & 1) << i
    return out
