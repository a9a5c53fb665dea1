"""The golden matching engine: every pinned rule by hand, then seeded random streams against a
deliberately naive second implementation, invariants, and the engine's own ITCH output fed
through the golden book builder."""

import asyncio
import random

import pytest

from tickpath.engine import Engine, EngineError, ModelEngine
from tickpath.model.book import BookBuilder
from tickpath.model.matching import MAX_PRICE, MatchingModel
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

B, S = Side.Buy, Side.Sell
DAY, IOC, FOK = TimeInForce.Day, TimeInForce.Ioc, TimeInForce.Fok


def enter(token, side=B, shares=100, price=100_000, *, firm=1, symbol=0, tif=DAY,
          market=False, min_qty=0):
    return Order(action=Action.Enter, side=side, tif=tif,
                 ord_type=OrderType.Market if market else OrderType.Limit, order_id=token,
                 firm=firm, symbol=symbol, shares=shares, price=price, min_qty=min_qty)


def cancel(token, shares=0):
    return Order(action=Action.Cancel, order_id=token, shares=shares)


def replace(token, new_token, shares, price):
    return Order(action=Action.Replace, order_id=token, new_order_id=new_token, shares=shares,
                 price=price)


END = Order(action=Action.EndOfDay)


def brief(e: Event) -> tuple:
    """Short readable form of an event for exact expected lists."""
    k = e.kind
    if k is EventKind.Accepted:
        return ("acc", e.order_id, e.shares, e.price)
    if k is EventKind.Executed:
        return ("exe", e.order_id, e.contra_id, e.shares, e.price, e.match_number)
    if k is EventKind.Canceled:
        return ("can", e.order_id, e.shares, chr(e.reason))
    if k is EventKind.Replaced:
        return ("rep", e.order_id, e.contra_id, e.shares, e.price)
    if k is EventKind.Rejected:
        return ("rej", e.order_id, chr(e.reason))
    return ("closed",)


class Book:
    """A model with symbols 0 (AAA) and 1 (BBB), acting one order at a time."""

    def __init__(self, **kw):
        self.m = MatchingModel(**kw)
        self.m.set_symbol(0, "AAA")
        self.m.set_symbol(1, "BBB")
        self.itch_seen = len(self.m.itch)

    def act(self, order):
        events = self.m.process(order)
        assert events and [e.last for e in events] == [0] * (len(events) - 1) + [1]
        return [brief(e) for e in events]

    def new_itch(self):
        out = [tuple(m.to_dict().values()) for m in self.m.itch[self.itch_seen:]]
        self.itch_seen = len(self.m.itch)
        return out

    def bids(self, symbol=0):
        return self.m.levels(self.m.stock_locate(symbol), "B")

    def asks(self, symbol=0):
        return self.m.levels(self.m.stock_locate(symbol), "S")


# --- hand-written scenarios -------------------------------------------------------------------

def test_rest_then_cross_at_resting_price():
    b = Book()
    assert b.act(enter(1, S, 100, 100_000)) == [("acc", 1, 100, 100_000)]
    assert b.act(enter(2, B, 60, 101_000, firm=2)) == [
        ("acc", 2, 60, 101_000),
        ("exe", 2, 1, 60, 100_000, 1),              # aggressor first, resting price
        ("exe", 1, 2, 60, 100_000, 1)]
    assert b.asks() == [(100_000, 40, 1)] and b.bids() == []
    events = b.m.process(enter(3, B, 10, 100_000, firm=3))
    assert [(e.side, e.symbol) for e in events[1:]] == [(B, 0), (S, 0)]
    assert events[1].match_number == events[2].match_number == 2


def test_price_then_time_priority():
    b = Book()
    b.act(enter(1, S, 100, 100_100, firm=2))
    b.act(enter(2, S, 100, 100_000, firm=2))
    b.act(enter(3, S, 100, 100_000, firm=3))
    assert b.m.tokens(1, "S", 100_000) == [2, 3]
    assert b.act(enter(4, B, 250, 100_100)) == [
        ("acc", 4, 250, 100_100),
        ("exe", 4, 2, 100, 100_000, 1), ("exe", 2, 4, 100, 100_000, 1),
        ("exe", 4, 3, 100, 100_000, 2), ("exe", 3, 4, 100, 100_000, 2),
        ("exe", 4, 1, 50, 100_100, 3), ("exe", 1, 4, 50, 100_100, 3)]
    assert b.asks() == [(100_100, 50, 1)]
    # bids: higher price first, then arrival
    b.act(enter(5, B, 10, 99_000))
    b.act(enter(6, B, 20, 99_900))
    b.act(enter(7, B, 30, 99_900))
    assert b.bids() == [(99_900, 50, 2), (99_000, 10, 1)]
    assert b.act(enter(8, S, 25, 99_000, firm=2)) == [
        ("acc", 8, 25, 99_000),
        ("exe", 8, 6, 20, 99_900, 4), ("exe", 6, 8, 20, 99_900, 4),
        ("exe", 8, 7, 5, 99_900, 5), ("exe", 7, 8, 5, 99_900, 5)]


def test_ioc_remainder_is_canceled_and_never_rests():
    b = Book()
    b.act(enter(1, S, 30, 100_000, firm=2))
    assert b.act(enter(2, B, 100, 100_000, tif=IOC)) == [
        ("acc", 2, 100, 100_000),
        ("exe", 2, 1, 30, 100_000, 1), ("exe", 1, 2, 30, 100_000, 1),
        ("can", 2, 70, "I")]
    assert b.act(enter(3, B, 100, 100_000, tif=IOC)) == [
        ("acc", 3, 100, 100_000), ("can", 3, 100, "I")]
    assert b.m.locates() == [] and len(b.m) == 0
    assert b.act(cancel(2)) == [("rej", 2, "u")]        # finished


def test_market_order_sweeps_and_never_rests():
    b = Book()
    b.act(enter(1, S, 10, 100_000, firm=2))
    b.act(enter(2, S, 10, 150_000, firm=2))
    assert b.act(enter(3, B, 50, 0, market=True)) == [
        ("acc", 3, 50, 0),
        ("exe", 3, 1, 10, 100_000, 1), ("exe", 1, 3, 10, 100_000, 1),
        ("exe", 3, 2, 10, 150_000, 2), ("exe", 2, 3, 10, 150_000, 2),
        ("can", 3, 30, "I")]
    # any price field is ignored, time in force day too: a market order never rests
    assert b.act(enter(4, S, 5, 12_345, market=True, tif=DAY)) == [
        ("acc", 4, 5, 0), ("can", 4, 5, "I")]
    assert len(b.m) == 0


def test_fok_all_or_nothing_counting_other_firms_only():
    b = Book()
    b.act(enter(1, S, 50, 100_000, firm=1))             # own firm: does not count
    b.act(enter(2, S, 40, 100_000, firm=2))
    b.act(enter(3, S, 40, 100_100, firm=3))             # beyond the limit
    b.new_itch()
    assert b.act(enter(4, B, 50, 100_000, firm=1, tif=FOK)) == [
        ("acc", 4, 50, 100_000), ("can", 4, 50, "I")]
    assert b.new_itch() == []                            # book untouched, no self-match cancel
    assert b.asks() == [(100_000, 90, 2), (100_100, 40, 1)]
    assert b.act(enter(5, B, 80, 100_100, firm=1, tif=FOK)) == [
        ("acc", 5, 80, 100_100),
        ("can", 1, 50, "Q"),
        ("exe", 5, 2, 40, 100_000, 1), ("exe", 2, 5, 40, 100_000, 1),
        ("exe", 5, 3, 40, 100_100, 2), ("exe", 3, 5, 40, 100_100, 2)]
    assert len(b.m) == 0
    b.act(enter(6, S, 10, 100_000, firm=2))
    assert b.act(enter(7, B, 20, 0, market=True, tif=FOK)) == [
        ("acc", 7, 20, 0), ("can", 7, 20, "I")]


def test_self_match_cancels_resting_and_continues():
    b = Book()
    b.act(enter(1, S, 100, 100_000, firm=7))
    b.act(enter(2, S, 100, 100_000, firm=2))
    b.new_itch()
    assert b.act(enter(3, B, 150, 100_000, firm=7)) == [
        ("acc", 3, 150, 100_000),
        ("can", 1, 100, "Q"),
        ("exe", 3, 2, 100, 100_000, 1), ("exe", 2, 3, 100, 100_000, 1)]
    assert b.new_itch() == [("D", 1, 0, 3, 1), ("E", 1, 0, 3, 2, 100, 1),
                            ("A", 1, 0, 3, 3, "B", 50, "AAA", 100_000)]
    assert b.bids() == [(100_000, 50, 1)] and b.asks() == []


def test_cancel_reduce_full_and_no_change():
    b = Book()
    for t in (1, 2):
        b.act(enter(t, B, 100, 100_000))
    b.new_itch()
    assert b.act(cancel(1, 30)) == [("can", 1, 70, "U")]
    assert b.m.tokens(1, "B", 100_000) == [1, 2]                # keeps priority
    assert b.act(cancel(1, 30)) == [("can", 1, 0, "U")]         # at the open size: no change
    assert b.act(cancel(1, 500)) == [("can", 1, 0, "U")]        # above: no change
    assert b.act(cancel(2, 0)) == [("can", 2, 100, "U")]
    assert b.new_itch() == [("X", 1, 0, 3, 1, 70), ("D", 1, 0, 6, 2)]
    assert b.bids() == [(100_000, 30, 1)]
    assert b.act(cancel(2, 0)) == [("rej", 2, "u")]             # finished
    assert b.act(cancel(99, 0)) == [("rej", 99, "u")]           # never seen
    assert b.m.rejects == {RejectReason.UnknownToken: 2}


def test_replace_keeping_priority():
    b = Book()
    b.act(enter(1, B, 100, 100_000))
    b.act(enter(2, B, 100, 100_000))
    b.new_itch()
    assert b.act(replace(1, 11, 60, 100_000)) == [("rep", 1, 11, 60, 100_000)]
    assert b.act(replace(11, 12, 60, 100_000)) == [("rep", 11, 12, 60, 100_000)]
    assert b.new_itch() == [("X", 1, 0, 3, 1, 40)]              # same size: no ITCH at all
    assert b.m.tokens(1, "B", 100_000) == [12, 2]
    assert b.act(cancel(1)) == [("rej", 1, "u")]
    assert b.m.order(12) == (0, B, 100_000, 60)


def test_replace_losing_priority():
    b = Book()
    b.act(enter(1, B, 100, 100_000))
    b.act(enter(2, B, 100, 100_000))
    b.new_itch()
    assert b.act(replace(1, 11, 150, 100_000)) == [("rep", 1, 11, 150, 100_000)]
    assert b.m.tokens(1, "B", 100_000) == [2, 11]              # larger: back of the queue
    assert b.act(replace(2, 12, 50, 99_000)) == [("rep", 2, 12, 50, 99_000)]
    assert b.new_itch() == [("U", 1, 0, 3, 1, 3, 150, 100_000),
                            ("U", 1, 0, 4, 2, 4, 50, 99_000)]
    assert b.bids() == [(100_000, 150, 1), (99_000, 50, 1)]
    assert b.m.queue(1, "B", 100_000) == [(3, 150)]


def test_replace_that_crosses_executes_under_new_token():
    b = Book()
    b.act(enter(1, S, 30, 101_000, firm=2))
    b.act(enter(2, B, 100, 100_000))
    b.new_itch()
    assert b.act(replace(2, 3, 80, 101_000)) == [
        ("rep", 2, 3, 80, 101_000),
        ("exe", 3, 1, 30, 101_000, 1), ("exe", 1, 3, 30, 101_000, 1)]
    assert b.new_itch() == [("D", 1, 0, 3, 2), ("E", 1, 0, 3, 1, 30, 1),
                            ("A", 1, 0, 3, 3, "B", 50, "AAA", 101_000)]
    assert b.bids() == [(101_000, 50, 1)] and b.asks() == []
    # crossing only an own-firm order: D old, D own (self-match), A new
    b.act(enter(4, S, 10, 102_000, firm=1))
    b.new_itch()
    assert b.act(replace(3, 5, 50, 102_000)) == [("rep", 3, 5, 50, 102_000),
                                                 ("can", 4, 10, "Q")]
    assert b.new_itch() == [("D", 1, 0, 5, 3), ("D", 1, 0, 5, 4),
                            ("A", 1, 0, 5, 5, "B", 50, "AAA", 102_000)]


def test_replace_rejects():
    b = Book()
    b.act(enter(1, B, 100, 100_000))
    b.act(enter(2, B, 100, 100_000))
    assert b.act(replace(9, 10, 50, 100_000)) == [("rej", 9, "u")]
    assert b.act(replace(1, 2, 50, 100_000)) == [("rej", 1, "d")]
    assert b.act(replace(1, 1, 50, 100_000)) == [("rej", 1, "d")]
    assert b.act(replace(1, 3, 0, 100_000)) == [("rej", 1, "Z")]
    assert b.act(replace(1, 3, 50, 100_050)) == [("rej", 1, "X")]
    assert b.bids() == [(100_000, 200, 2)]


@pytest.mark.parametrize(("order", "reason"), [
    (enter(1, B, 0), "Z"),
    (enter(1, B, 1_000_000), "Z"),
    (enter(1, B, 100, 100_050), "X"),                # not whole cents
    (enter(1, B, 100, 9_900), "X"),                  # below $1.00
    (enter(1, B, 100, MAX_PRICE + 100), "X"),
    (enter(1, B, 100, 0), "X"),
    (enter(1, B, 100, symbol=5), "S"),
    (enter(1, B, 100, min_qty=10), "N"),             # min_qty only on IOC
    (enter(1, B, 100, min_qty=10, tif=FOK), "N"),
    (enter(1, B, 100, min_qty=101, tif=IOC), "N"),   # above the size
])
def test_enter_rejects(order, reason):
    b = Book()
    assert b.act(order) == [("rej", 1, reason)]
    assert b.m.rejects == {RejectReason(ord(reason)): 1}
    assert b.m.itch[1:] == []                        # nothing but the start S


def test_enter_validation_order_and_limits():
    b = Book()
    assert b.act(enter(1, B, 999_999, MAX_PRICE)) == [("acc", 1, 999_999, MAX_PRICE)]
    assert b.act(enter(2, B, 1, 10_000)) == [("acc", 2, 1, 10_000)]
    assert b.act(enter(1, B, 0, 5)) == [("rej", 1, "d")]       # live token first
    b.act(cancel(2))
    assert b.act(enter(2, B, 5, 200_000)) == [("acc", 2, 5, 200_000)]   # finished: reusable


def test_min_qty_ioc():
    b = Book()
    b.act(enter(1, S, 30, 100_000, firm=2))
    b.act(enter(2, S, 30, 100_000, firm=1))            # own firm: not counted
    assert b.act(enter(3, B, 100, 100_000, tif=IOC, min_qty=40)) == [
        ("acc", 3, 100, 100_000), ("can", 3, 100, "I")]
    assert b.asks() == [(100_000, 60, 2)]
    b.act(enter(4, S, 20, 100_000, firm=3))
    assert b.act(enter(5, B, 100, 100_000, tif=IOC, min_qty=40)) == [
        ("acc", 5, 100, 100_000),
        ("exe", 5, 1, 30, 100_000, 1), ("exe", 1, 5, 30, 100_000, 1),
        ("can", 2, 30, "Q"),
        ("exe", 5, 4, 20, 100_000, 2), ("exe", 4, 5, 20, 100_000, 2),
        ("can", 5, 50, "I")]


def test_capacity_rejects_new_resting_orders_only():
    b = Book(capacity=2)
    b.act(enter(1, B, 10, 100_000))
    b.act(enter(2, S, 10, 101_000, firm=2))
    b.new_itch()
    assert b.act(enter(3, B, 10, 99_000)) == [("rej", 3, "f")]
    assert b.act(enter(4, B, 10, 101_000, firm=3)) == [("rej", 4, "f")]   # day: refused
    assert b.act(enter(5, B, 5, 101_000, firm=3, tif=IOC)) == [
        ("acc", 5, 5, 101_000),
        ("exe", 5, 2, 5, 101_000, 1), ("exe", 2, 5, 5, 101_000, 1)]
    assert b.act(replace(1, 6, 10, 99_000)) == [("rep", 1, 6, 10, 99_000)]
    b.act(cancel(6))
    assert b.act(enter(3, B, 10, 99_000)) == [("acc", 3, 10, 99_000)]
    assert b.m.rejects[RejectReason.Full] == 2
    assert len(b.m) == 2


def test_end_of_day_expires_in_reference_order_then_closes():
    b = Book()
    b.act(enter(1, B, 10, 100_000, symbol=1))
    b.act(enter(2, S, 10, 101_000))
    b.act(enter(3, B, 10, 100_000))
    b.act(replace(1, 4, 10, 99_000))            # loses priority: newest reference
    b.new_itch()
    assert b.act(END) == [("can", 2, 10, "E"), ("can", 3, 10, "E"), ("can", 4, 10, "E"),
                          ("closed",)]
    assert b.new_itch() == [("D", 2, 0, 5, 2), ("D", 2, 0, 5, 3), ("D", 1, 0, 5, 4),
                            ("S", 0, 0, 5, "C")]
    assert b.m.closed and b.m.locates() == []
    assert b.act(enter(9, B)) == [("rej", 9, "C")]
    assert b.act(END) == [("rej", 0, "C")]


def test_itch_output_pinned():
    m = MatchingModel()
    m.set_symbol(7, "ZZZ")
    m.set_symbol(3, "YYY")
    m.process(enter(1, B, 10, 100_000, symbol=3))
    m.process(enter(2, B, 0, 100_000, symbol=7))             # rejected: no R yet
    m.process(enter(3, S, 10, 100_000, symbol=7))
    assert [msg.to_dict() for msg in m.itch] == [
        {"type": "S", "stock_locate": 0, "tracking_number": 0, "timestamp": 0, "event_code": "O"},
        {"type": "R", "stock_locate": 1, "tracking_number": 0, "timestamp": 1, "stock": "YYY",
         "market_category": "Q", "financial_status_indicator": "N", "round_lot_size": 100,
         "round_lots_only": "N", "issue_classification": "C", "issue_sub_type": "Z",
         "authenticity": "P", "short_sale_threshold_indicator": "N", "ipo_flag": "N",
         "luld_reference_price_tier": "1", "etp_flag": "N", "etp_leverage_factor": 0,
         "inverse_indicator": "N"},
        {"type": "A", "stock_locate": 1, "tracking_number": 0, "timestamp": 1,
         "order_reference_number": 1, "buy_sell_indicator": "B", "shares": 10, "stock": "YYY",
         "price": 100_000},
        {**m.itch[1].to_dict(), "stock_locate": 2, "timestamp": 3, "stock": "ZZZ"},
        {"type": "A", "stock_locate": 2, "tracking_number": 0, "timestamp": 3,
         "order_reference_number": 2, "buy_sell_indicator": "S", "shares": 10, "stock": "ZZZ",
         "price": 100_000},
    ]
    assert m.stock_locate(7) == 2 and m.stock(2) == "ZZZ"


def test_set_symbol_checks():
    m = MatchingModel()
    m.set_symbol(1, "AAA")
    m.set_symbol(1, "AAA")
    with pytest.raises(ValueError, match="already 'AAA'"):
        m.set_symbol(1, "BBB")
    with pytest.raises(ValueError, match="1 to 8 ASCII"):
        m.set_symbol(2, "TOOLONGNAME")


# --- a deliberately naive second implementation ----------------------------------------------

class NaiveModel:
    """Flat list of resting orders, rescanned for every fill: slow and obviously right."""

    def __init__(self, symbols, capacity=None):
        self.symbols = set(symbols)
        self.capacity = capacity
        self.resting = []               # dicts; priority = (price, seq)
        self.seq = 0
        self.match = 0
        self.closed = False

    def live(self, token):
        return next((o for o in self.resting if o["token"] == token), None)

    def reject(self, o, reason):
        return [Event(EventKind.Rejected, 0, o.side, reason, o.order_id, 0, o.symbol, o.shares,
                      o.price, 0)]

    def crossing(self, side, symbol, limit, firm=None):
        other = S if side is B else B
        found = [o for o in self.resting if o["side"] is other and o["symbol"] == symbol
                 and (limit is None or (o["price"] <= limit if side is B else o["price"] >= limit))
                 and (firm is None or o["firm"] != firm)]
        return sorted(found, key=lambda o: (o["price"] if side is B else -o["price"], o["seq"]))

    def rest(self, token, firm, side, symbol, price, shares):
        self.seq += 1
        self.resting.append(dict(token=token, firm=firm, side=side, symbol=symbol, price=price,
                                 open=shares, seq=self.seq))

    def trade(self, events, token, firm, side, symbol, limit, shares):
        while shares:
            found = self.crossing(side, symbol, limit)
            if not found:
                break
            o = found[0]
            if o["firm"] == firm:
                events.append(Event(EventKind.Canceled, 0, o["side"], CancelReason.SelfMatch,
                                    o["token"], 0, symbol, o["open"], o["price"], 0))
                self.resting.remove(o)
                continue
            fill = min(shares, o["open"])
            self.match += 1
            events.append(Event(EventKind.Executed, 0, side, 0, token, o["token"], symbol, fill,
                                o["price"], self.match))
            events.append(Event(EventKind.Executed, 0, o["side"], 0, o["token"], token, symbol,
                                fill, o["price"], self.match))
            shares -= fill
            o["open"] -= fill
            if not o["open"]:
                self.resting.remove(o)
        return shares

    @staticmethod
    def good_price(p):
        return 10_000 <= p <= 1_999_999_900 and p % 100 == 0

    def process(self, o):
        if self.closed:
            events = self.reject(o, RejectReason.Closed)
        else:
            events = getattr(self, o.action.name.lower())(o)
        last = events[-1]
        events[-1] = last._replace(last=1)
        return events

    def enter(self, o):
        market = o.ord_type is OrderType.Market
        if self.live(o.order_id):
            return self.reject(o, RejectReason.DuplicateToken)
        if o.symbol not in self.symbols:
            return self.reject(o, RejectReason.UnknownSymbol)
        if not 1 <= o.shares <= 999_999:
            return self.reject(o, RejectReason.InvalidShares)
        if not market and not self.good_price(o.price):
            return self.reject(o, RejectReason.InvalidPrice)
        if o.min_qty and (o.tif is not IOC or o.min_qty > o.shares):
            return self.reject(o, RejectReason.InvalidMinQty)
        day_limit = not market and o.tif is DAY
        if day_limit and self.capacity is not None and len(self.resting) >= self.capacity:
            return self.reject(o, RejectReason.Full)
        price = 0 if market else o.price
        limit = None if market else price
        events = [Event(EventKind.Accepted, 0, o.side, 0, o.order_id, 0, o.symbol, o.shares,
                        price, 0)]
        need = o.shares if o.tif is FOK else o.min_qty
        if need and sum(r["open"] for r in self.crossing(o.side, o.symbol, limit, o.firm)) < need:
            events.append(Event(EventKind.Canceled, 0, o.side, CancelReason.ImmediateOrCancel,
                                o.order_id, 0, o.symbol, o.shares, price, 0))
            return events
        left = self.trade(events, o.order_id, o.firm, o.side, o.symbol, limit, o.shares)
        if left and day_limit:
            self.rest(o.order_id, o.firm, o.side, o.symbol, price, left)
        elif left:
            events.append(Event(EventKind.Canceled, 0, o.side, CancelReason.ImmediateOrCancel,
                                o.order_id, 0, o.symbol, left, price, 0))
        return events

    def cancel(self, o):
        r = self.live(o.order_id)
        if r is None:
            return self.reject(o, RejectReason.UnknownToken)
        dec = max(0, r["open"] - o.shares)
        r["open"] -= dec
        if not r["open"]:
            self.resting.remove(r)
        return [Event(EventKind.Canceled, 0, r["side"], CancelReason.User, r["token"], 0,
                      r["symbol"], dec, r["price"], 0)]

    def replace(self, o):
        r = self.live(o.order_id)
        if r is None:
            return self.reject(o, RejectReason.UnknownToken)
        if self.live(o.new_order_id):
            return self.reject(o, RejectReason.DuplicateToken)
        if not 1 <= o.shares <= 999_999:
            return self.reject(o, RejectReason.InvalidShares)
        if not self.good_price(o.price):
            return self.reject(o, RejectReason.InvalidPrice)
        events = [Event(EventKind.Replaced, 0, r["side"], 0, r["token"], o.new_order_id,
                        r["symbol"], o.shares, o.price, 0)]
        if o.price == r["price"] and o.shares <= r["open"]:
            r["token"], r["open"] = o.new_order_id, o.shares
            return events
        self.resting.remove(r)
        left = self.trade(events, o.new_order_id, r["firm"], r["side"], r["symbol"], o.price,
                          o.shares)
        if left:
            self.rest(o.new_order_id, r["firm"], r["side"], r["symbol"], o.price, left)
        return events

    def endofday(self, o):
        events = [Event(EventKind.Canceled, 0, r["side"], CancelReason.EndOfDay, r["token"], 0,
                        r["symbol"], r["open"], r["price"], 0)
                  for r in sorted(self.resting, key=lambda r: r["seq"])]
        self.resting.clear()
        self.closed = True
        return events + [Event(EventKind.Closed)]

    def levels(self, symbol, side):
        out = {}
        for r in self.resting:
            if r["symbol"] == symbol and r["side"] is side:
                shares, count = out.get(r["price"], (0, 0))
                out[r["price"]] = (shares + r["open"], count + 1)
        return [(p, *out[p]) for p in sorted(out, reverse=side is B)]


def random_stream(seed, n, symbols=3, firms=3):
    """Heavy crossing, partial fills, cancels, replaces, IOC/FOK/market, self-match, bad prices,
    bad sizes, unknown and reused tokens."""
    rng = random.Random(seed)
    tokens = []
    next_token = 1
    out = []
    for _ in range(n):
        x = rng.random()
        price = rng.randrange(995, 1006) * 100
        if rng.random() < 0.02:
            price = rng.choice([price + 50, 9_900, 0, MAX_PRICE + 100])
        shares = rng.randrange(1, 300)
        if rng.random() < 0.01:
            shares = rng.choice([0, 1_000_000])
        if x < 0.55 or not tokens:
            if tokens and rng.random() < 0.05:
                token = rng.choice(tokens)                    # reuse: live or finished
            else:
                token, next_token = next_token, next_token + 1
                tokens.append(token)
            tif = rng.choices([DAY, IOC, FOK], [8, 2, 1])[0]
            min_qty = 0
            if rng.random() < 0.05:
                min_qty = rng.randrange(0, shares + 2)
                tif = rng.choice([IOC, IOC, DAY])
            out.append(enter(token, rng.choice([B, S]), shares, price, firm=rng.randrange(firms),
                             symbol=rng.randrange(symbols + (rng.random() < 0.01)), tif=tif,
                             market=rng.random() < 0.04, min_qty=min_qty))
        elif x < 0.8:
            token = rng.choice(tokens) if rng.random() < 0.95 else 10**6
            size = rng.choice([0, rng.randrange(0, 300)])
            out.append(cancel(token, size))
        else:
            token = rng.choice(tokens)
            if rng.random() < 0.05:
                new_token = rng.choice(tokens)
            else:
                new_token, next_token = next_token, next_token + 1
                tokens.append(new_token)
            if rng.random() < 0.3:
                price = rng.randrange(995, 1006) * 100        # often the same price
            out.append(replace(token, new_token, shares, price))
        if rng.random() < 0.0005:
            out.append(END)                                   # late: closes the rest
    return out


def not_crossed(model):
    for locate in model.locates():
        bids, asks = model.levels(locate, "B"), model.levels(locate, "S")
        if bids and asks:
            assert bids[0][0] < asks[0][0], (locate, bids[0], asks[0])


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_stream_matches_naive_model(seed):
    orders = random_stream(seed, 2500) + [END]
    capacity = 40 if seed == 4 else None
    model, naive = MatchingModel(capacity=capacity), NaiveModel(range(3), capacity=capacity)
    for s in range(3):
        model.set_symbol(s, f"S{s}")
    kinds = set()
    match_numbers = []
    for i, order in enumerate(orders):
        got = model.process(order)
        assert got == naive.process(order), (i, order)
        assert [e.last for e in got] == [0] * (len(got) - 1) + [1]
        kinds.update((e.kind, e.reason) for e in got)
        executions = [e for e in got if e.kind is EventKind.Executed]
        for aggressor, resting in zip(executions[::2], executions[1::2], strict=True):
            assert aggressor.match_number == resting.match_number
            assert (aggressor.order_id, aggressor.shares) == (resting.contra_id, resting.shares)
            assert aggressor.side is not resting.side and aggressor.price == resting.price
            match_numbers.append(aggressor.match_number)
        if i % 50 == 0:
            not_crossed(model)
            for s in range(3):
                locate = model.stock_locate(s)
                if locate is not None:
                    assert model.levels(locate, "B") == naive.levels(s, B)
                    assert model.levels(locate, "S") == naive.levels(s, S)
    assert match_numbers == list(range(1, len(match_numbers) + 1))
    # the stream exercised what it claims to
    for wanted in [(EventKind.Canceled, CancelReason.SelfMatch),
                   (EventKind.Canceled, CancelReason.ImmediateOrCancel),
                   (EventKind.Canceled, CancelReason.EndOfDay),
                   (EventKind.Rejected, RejectReason.UnknownToken),
                   (EventKind.Rejected, RejectReason.DuplicateToken),
                   (EventKind.Rejected, RejectReason.InvalidPrice),
                   (EventKind.Replaced, 0), (EventKind.Executed, 0)]:
        assert wanted in kinds, wanted
    if capacity is not None:
        assert model.rejects[RejectReason.Full] > 0
    assert len(model) == 0 and model.closed


@pytest.mark.parametrize("seed", [11, 12])
def test_itch_output_rebuilds_the_engine_book(seed):
    """The engine's ITCH fed to the golden book builder gives the engine's book exactly: every
    level and every queue in priority order, at checkpoints through long streams."""
    model = MatchingModel()
    for s in range(4):
        model.set_symbol(s, f"SYM{s}")
    builder = BookBuilder()
    fed = 0
    orders = [o for o in random_stream(seed, 20_000, symbols=4) if o.action is not Action.EndOfDay]
    for start in range(0, len(orders), 2_000):
        for order in orders[start:start + 2_000]:
            model.process(order)
        builder.apply_all(model.itch[fed:])
        fed = len(model.itch)
        assert builder.snapshot() == model.snapshot()
        for locate in model.locates():
            for side in "BS":
                assert builder.levels(locate, side) == model.levels(locate, side)
                assert builder.stock(locate) == model.stock(locate)
    assert not builder.anomalies
    assert len(builder) == len(model) > 20
    assert list(builder.book_lines()) == list(model.book_lines())
    model.process(END)
    builder.apply_all(model.itch[fed:])
    assert builder.snapshot() == model.snapshot() == {}
    # the stream survives the wire, and timestamps never go back
    image = itch.encode_binaryfile(model.itch)
    assert [m for _, m in itch.iter_binaryfile(image)] == model.itch
    stamps = [m.timestamp for m in model.itch]
    assert stamps == sorted(stamps) and model.itch[-1].event_code == "C"


def test_two_runs_give_the_same_bytes():
    images = []
    for _ in range(2):
        model = MatchingModel()
        for s in range(3):
            model.set_symbol(s, f"S{s}")
        model.process_all(random_stream(5, 1000))
        images.append(itch.encode_binaryfile(model.itch))
    assert images[0] == images[1] and len(images[0]) > 1000


# --- the engine interface -----------------------------------------------------------------------

def test_model_engine_streams_and_runs_alike():
    orders = [o for o in random_stream(21, 400) if o.action is not Action.EndOfDay]
    fast, streamed = ModelEngine(), ModelEngine()
    for engine in (fast, streamed):
        for s in range(3):
            engine.set_symbol(s, f"S{s}")
    want = fast.run(orders)
    assert Engine.run(streamed, orders) == want          # the generic submit/recv path
    assert streamed.snapshot() == fast.snapshot()
    assert list(streamed.book_lines()) == list(fast.book_lines())
    assert streamed.itch_messages() == fast.itch_messages()
    eod = fast.end_of_day()
    assert eod[-1].kind is EventKind.Closed and eod[-1].last == 1
    assert fast.snapshot() == {}


def test_model_engine_recv_without_action_fails_cleanly():
    engine = ModelEngine()
    with pytest.raises(EngineError, match="no action outstanding"):
        asyncio.run(engine.recv())

    async def two_then_run():
        engine.set_symbol(0, "AAA")
        await engine.submit(enter(1))
        return await engine.recv()

    assert asyncio.run(two_then_run()).kind is EventKind.Accepted
