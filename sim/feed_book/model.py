"""Cycle-free model of the order table + book gateware, checked against the golden BookBuilder.

:class:`FeedBookModel` predicts, event by event, the :class:`~tickpath.protocol.bookfeed.BookOp`
the order table emits, the update the book emits, every counter and every invalid flag, by the
same rules the gateware documents (bucketed hash table with the shared
:func:`~tickpath.protocol.bookfeed.bucket_of`, sorted level rows of bounded length). Beside it
it drives :class:`tickpath.model.book.BookBuilder` through its primitives with the same events,
and every update of a symbol that is not flagged must equal the BookBuilder's top-N and BBO
(``golden_mismatches`` lists any that do not): a book is either right or flagged.
"""

from collections import Counter
from typing import Any

from tickpath.model.book import BUY, SELL, BookBuilder
from tickpath.protocol.bookfeed import BOOK_KINDS, bucket_of, level_fields
from tickpath.protocol.feed import EventKind

__all__ = ["FeedBookModel"]

M32, M16 = (1 << 32) - 1, (1 << 16) - 1


class FeedBookModel:
    def __init__(self, *, capacity=8192, ways=8, slots=256, locate_bits=14, subscriptions=None,
                 levels=16, depth=8):
        self.ways = ways
        self.bucket_bits = (capacity // ways).bit_length() - 1
        self.slots = slots
        self.locate_bits = locate_bits
        if subscriptions is None:
            subscriptions = {loc: loc - 1 for loc in range(1, slots + 1) if loc < 1 << locate_bits}
        self.subscriptions: dict[int, int] = dict(subscriptions)
        self.levels = levels
        self.depth = depth
        # bucket -> ref -> [slot, locate, side, price, shares]
        self.buckets: dict[int, dict[int, list[int]]] = {}
        self.rows: dict[tuple[int, int], list[list[int]]] = {}
        self.row_locate: dict[tuple[int, int], int] = {}
        self.invalid: set[int] = set()
        self.flagged_ever: set[int] = set()     # a cleared flag does not make a book right
        self.counters: Counter[str] = Counter()
        self.golden = BookBuilder()
        self.golden_checked = 0
        self.golden_mismatches: list[str] = []

    # --- host side ----------------------------------------------------------------------------
    def subscribe(self, locate: int, slot: int, enable: bool = True) -> None:
        if locate >> self.locate_bits:
            return
        if enable:
            self.subscriptions[locate] = slot
        else:
            self.subscriptions.pop(locate, None)

    def clear(self, slot: int) -> None:
        self.invalid.discard(slot)

    def occupancy(self) -> int:
        return sum(len(b) for b in self.buckets.values())

    # --- order table ----------------------------------------------------------------------------
    def _bucket(self, ref: int) -> dict[int, list[int]]:
        return self.buckets.setdefault(bucket_of(ref, self.bucket_bits), {})

    def _golden(self, ev: dict[str, Any]) -> None:
        self.golden.apply_event(ev)

    def table_op(self, ev: dict[str, Any]) -> dict[str, Any] | None:
        """The order table's op for one event (None: no op), updating the table."""
        c = self.counters
        c["events"] += 1
        kind = ev["kind"]
        if kind not in BOOK_KINDS:
            c["ignored"] += 1
            return None
        locate = ev["stock_locate"]
        slot = self.subscriptions.get(locate) if not locate >> self.locate_bits else None
        if slot is None:
            c["unsubscribed"] += 1
            return None
        self._golden(ev)
        op = {"kind": kind, "slot": slot, "stock_locate": locate, "side": ev["side"],
              "reduce": 0, "remove": 0, "add": 0, "invalidate": 0,
              "reduce_price": 0, "reduce_shares": 0, "add_price": 0, "add_shares": 0}

        def insert(ref, slot, locate, side):
            bucket = self._bucket(ref)
            if ref in bucket:
                c["duplicate_add"] += 1
            elif ev["shares"] == 0:
                c["zero_shares"] += 1
            elif len(bucket) >= self.ways:
                c["table_full"] += 1
                op["invalidate"] = 1
            else:
                bucket[ref] = [slot, locate, side, ev["price"], ev["shares"]]
                op.update(add=1, add_price=ev["price"], add_shares=ev["shares"])

        if kind is EventKind.Add:
            insert(ev["order_ref"], slot, locate, ev["side"])
        else:
            bucket = self._bucket(ev["order_ref"])
            entry = bucket.get(ev["order_ref"])
            if entry is None:
                c["unknown_reference"] += 1
                op.update(invalidate=1, side=0)
            else:
                e_slot, e_locate, e_side, e_price, e_shares = entry
                op.update(reduce=1, reduce_price=e_price, slot=e_slot, stock_locate=e_locate,
                          side=e_side)
                shares = ev["shares"]
                partial = kind not in (EventKind.Delete, EventKind.Replace) and shares < e_shares
                if partial:
                    entry[4] = e_shares - shares
                    op["reduce_shares"] = shares
                else:
                    del bucket[ev["order_ref"]]
                    op.update(reduce_shares=e_shares, remove=1)
                    if kind not in (EventKind.Delete, EventKind.Replace) and shares > e_shares:
                        c["overfill"] += 1
                if kind is EventKind.Replace:
                    insert(ev["new_order_ref"], e_slot, e_locate, e_side)
        if not (op["reduce"] or op["add"] or op["invalidate"]):
            return None
        c["ops"] += 1
        return op

    # --- book -----------------------------------------------------------------------------------
    def _pass(self, row, side, add, price, shares, remove) -> str | None:
        bid = side == 0
        pos = 0
        while pos < len(row) and (row[pos][0] > price if bid else row[pos][0] < price):
            pos += 1
        found = pos < len(row) and row[pos][0] == price
        if add:
            if found:
                row[pos][1] = (row[pos][1] + shares) & M32
                row[pos][2] = (row[pos][2] + 1) & M16
                return None
            full = len(row) == self.levels
            if not full or pos < self.levels:
                row.insert(pos, [price, shares, 1])
                del row[self.levels:]
            return "level_overflow" if full else None
        if not found:
            return "level_missing"
        if row[pos][2] == remove:
            del row[pos]
        else:
            row[pos][1] = (row[pos][1] - shares) & M32
            row[pos][2] = (row[pos][2] - remove) & M16
        return None

    def _update(self, kind, slot, side, invalid) -> dict[str, Any]:
        row = self.rows.get((slot, side), [])
        other = self.rows.get((slot, 1 - side), [])
        best = tuple(row[0][:2]) if row else (0, 0)
        obest = tuple(other[0][:2]) if other else (0, 0)
        bid, ask = (obest, best) if side else (best, obest)
        up = {"kind": kind, "slot": slot, "stock_locate": self.row_locate.get((slot, side), 0),
              "side": side, "invalid": int(invalid), "levels": len(row),
              "bid_price": bid[0], "bid_shares": bid[1], "ask_price": ask[0], "ask_shares": ask[1]}
        for k, (p, s, o) in enumerate(level_fields(self.depth)):
            lv = row[k] if k < len(row) else (0, 0, 0)
            up[p], up[s], up[o] = lv
        return up

    def book_update(self, op: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one op to the book; the update it sends, or None."""
        c = self.counters
        c["book_ops"] += 1
        key = (op["slot"], op["side"])
        row = self.rows.setdefault(key, [])
        before = [list(x) for x in row[:self.depth]]
        problems = set()
        if op["reduce"]:
            problems.add(self._pass(row, op["side"], False, op["reduce_price"],
                                    op["reduce_shares"], op["remove"]))
        if op["add"]:
            problems.add(self._pass(row, op["side"], True, op["add_price"], op["add_shares"], 0))
        problems.discard(None)
        for p in problems:
            c[f"book_{p}"] += 1
        self.row_locate[key] = op["stock_locate"]
        was = op["slot"] in self.invalid
        now = was or bool(op["invalidate"]) or bool(problems)
        if now:
            self.invalid.add(op["slot"])
            self.flagged_ever.add(op["slot"])
        if row[:self.depth] == before and not (now and not was):
            return None
        c["book_updates"] += 1
        up = self._update(op["kind"], op["slot"], op["side"], now)
        if op["slot"] not in self.flagged_ever:
            self._check_golden(up)
        return up

    def query(self, slot: int, side: int) -> dict[str, Any]:
        self.counters["book_updates"] += 1
        return self._update(EventKind.Other, slot, side, slot in self.invalid)

    def event(self, ev: dict[str, Any]) -> tuple[dict | None, dict | None]:
        op = self.table_op(ev)
        return op, (self.book_update(op) if op is not None else None)

    # --- golden comparison -------------------------------------------------------------------
    def golden_update(self, locate: int, side: int) -> dict[str, Any]:
        g = self.golden
        levels = g.levels(locate, SELL if side else BUY)
        bid, ask = g.bbo(locate)
        out = {"levels": len(levels), "bid_price": bid[0] if bid else 0,
               "bid_shares": bid[1] if bid else 0,
               "ask_price": ask[0] if ask else 0, "ask_shares": ask[1] if ask else 0}
        for k, (p, s, o) in enumerate(level_fields(self.depth)):
            lv = levels[k] if k < len(levels) else (0, 0, 0)
            out[p], out[s], out[o] = lv
        return out

    def _check_golden(self, up: dict[str, Any]) -> None:
        self.golden_checked += 1
        want = self.golden_update(up["stock_locate"], up["side"])
        got = {k: up[k] for k in want}
        if got != want and len(self.golden_mismatches) < 10:
            self.golden_mismatches.append(f"locate {up['stock_locate']} side {up['side']}: "
                                          f"golden {want}, model {got}")

    def check_final(self) -> list[str]:
        """Every unflagged subscribed symbol's full levels against the golden book."""
        problems = []
        for locate, slot in sorted(self.subscriptions.items()):
            if slot in self.flagged_ever:
                continue
            for side in (0, 1):
                want = [tuple(x) for x in self.golden.levels(locate, SELL if side else BUY)]
                got = [tuple(x) for x in self.rows.get((slot, side), [])]
                if want != got:
                    problems.append(f"locate {locate} side {side}: golden {want[:4]}..., "
                                    f"model {got[:4]}...")
        return problems
