"""FeedBook (ITCH bytes -> decoder -> order table -> book) on the fast harness: the ``sim`` engine
of ``tickpath book``.

Default configuration (:data:`DEFAULT_CONFIG`), the ECP5-85F board's feed path: 256 subscribed
symbols (stock locates 1..256 -> slots 0..255), 8192 orders in 8-way buckets (the board
config's capacity), top 8 levels per update, and 32 levels held per side. Why 32: on the 85F
(208 EBR of 18 Kbit) the order table takes 69 EBR (1024 buckets x 1232 bits), the subscription
table 8, the best-price table 2, and a book row of ``80 x levels + 32`` bits x 512 rows takes
``ceil(row / 36)`` EBR in 512x36 mode: 72 EBR at 32 levels (151 in all), leaving about 57 EBR for
the 4k-order matching engine that DESIGN.md puts beside the feed path; 48 levels would take 187
of 208. A side deeper than 32 levels flags its symbol (``level_overflow``), as a full bucket
(``table_full``) or an unknown reference does: the book is then reported, never printed.

:func:`run` streams every message through the harness (8-bit ``ByteBeat`` stream, the
handshakes in C++, the book's updates counted and dropped), waits for the pipeline to drain,
then reads every subscribed side back through the ``query`` port. Which anomaly flagged a
symbol is read from the watched counters: the one that moved last at or before the cycle its
``invalid`` bit rose (the book's own counters move on the same edge; the order table's a few
cycles before, and byte-serial input leaves at least 12 cycles between two messages).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from amaranth.lib import data

from tickpath.protocol.bookfeed import book_update_layout, level_fields

__all__ = ["DEFAULT_CONFIG", "SimBook", "SimBookError", "feed_book_harness", "run"]

DEFAULT_CONFIG: dict[str, Any] = {
    "source": "itch", "capacity": 8192, "ways": 8, "slots": 256, "locate_bits": 14,
    "levels": 32, "depth": 8,
}

#: Watched counters -> the reason a symbol is flagged, and the book's (same-edge) ones.
REASONS = {"unknown_reference": "unknown_reference", "table_full": "table_full",
           "book_level_overflow": "level_overflow", "book_level_missing": "level_missing"}
BOOK_REASONS = ("book_level_overflow", "book_level_missing")
#: Gateware counters reported as anomalies in the summary line.
ANOMALY_COUNTERS = {"unknown_reference": "unknown_reference", "overfill": "overfill",
                    "duplicate_add": "duplicate_add", "zero_shares": "zero_shares",
                    "table_full": "table_full", "book_level_overflow": "level_overflow",
                    "book_level_missing": "level_missing", "malformed": "malformed"}
STOCK_OFFSET = {ord("R"): 11, ord("H"): 11, ord("A"): 24, ord("F"): 24}
CHUNK_MESSAGES = 100_000


class SimBookError(RuntimeError):
    """The simulated gateware did not do what it must (stalled, lost a message)."""


def feed_book_harness(**overrides):
    """The built (cached) harness of FeedBook in the default configuration plus ``overrides``."""
    from tickpath.hdl.feed_book import FeedBook
    from tickpath.sim.harness.build import build, source_key
    config = {**DEFAULT_CONFIG, **overrides}
    key = f"{sorted(config.items())}\0{source_key('tickpath.hdl', 'tickpath.protocol')}"
    # one module name; the build folder's hash tells the configurations apart
    return build(lambda: FeedBook(**config), f"feed_book_{config['source']}", key=key), config


@dataclasses.dataclass
class SimBook:
    """The final book as the gateware holds it (what ``book_lines`` prints), and how it got there.

    ``sides[locate] = (bids, asks)``: the top ``depth`` levels read back, ``[price, shares,
    orders]`` best first, for every subscribed locate (flagged ones too); ``held[locate]`` the
    levels each side holds; ``flagged[locate]`` the reason the gateware flagged it invalid.
    """
    depth: int
    config: dict[str, Any]
    messages: Counter = dataclasses.field(default_factory=Counter)
    anomalies: Counter = dataclasses.field(default_factory=Counter)
    counters: dict[str, int] = dataclasses.field(default_factory=dict)
    stocks: dict[int, str] = dataclasses.field(default_factory=dict)
    sides: dict[int, tuple[list[list[int]], list[list[int]]]] = dataclasses.field(
        default_factory=dict)
    held: dict[int, tuple[int, int]] = dataclasses.field(default_factory=dict)
    flagged: dict[int, str] = dataclasses.field(default_factory=dict)
    cycles: int = 0
    beats: int = 0
    seconds: float = 0.0

    def locates(self) -> list[int]:
        """Subscribed locates with at least one level (a live order), ascending."""
        return sorted(loc for loc, (b, a) in self.held.items() if b or a)

    def book_lines(self, depth: int | None = None) -> Iterator[dict[str, Any]]:
        """As :meth:`tickpath.model.book.BookBuilder.book_lines`, up to the gateware's depth,
        for the symbols it did not flag."""
        depth = self.depth if depth is None else min(depth, self.depth)
        for locate in self.locates():
            if locate in self.flagged:
                continue
            bids, asks = self.sides[locate]
            yield {"stock": self.stocks.get(locate), "stock_locate": locate,
                   "bids": bids[:depth], "asks": asks[:depth]}


def _beats(chunk: list[bytes]) -> np.ndarray:
    """ByteBeat payloads (``data | last << 8``) of whole messages."""
    joined = np.frombuffer(b"".join(chunk), dtype=np.uint8).astype(np.uint16)
    ends = np.cumsum(np.fromiter((len(r) for r in chunk), dtype=np.int64, count=len(chunk)))
    joined[ends - 1] |= 0x100
    return joined


def _chunks(raw_messages: Iterable[bytes], book: SimBook) -> Iterator[list[bytes]]:
    """Messages in chunks, counting types and tracking stock names as BookBuilder does (an
    ``R`` names a locate; otherwise the first ``A``/``F``/``H`` that carries one)."""
    counts = Counter()
    stocks = book.stocks
    chunk: list[bytes] = []
    for raw in raw_messages:
        t = raw[0]
        counts[t] += 1
        off = STOCK_OFFSET.get(t)
        if off is not None:
            locate = int.from_bytes(raw[1:3], "big")
            if t == 82 or locate not in stocks:        # 'R' is authoritative
                stocks[locate] = raw[off:off + 8].decode("latin-1").rstrip(" \x00")
        chunk.append(raw)
        if len(chunk) == CHUNK_MESSAGES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
    book.messages.update({chr(t): n for t, n in counts.items()})


def run(raw_messages: Iterable[bytes], depth: int | None = None, **overrides) -> SimBook:
    """Replay ``raw_messages`` through FeedBook on the harness; the book it ends with.

    ``depth`` above the default's 8 builds the gateware with that many levels per update.
    """
    want = DEFAULT_CONFIG["depth"] if depth is None else max(depth, DEFAULT_CONFIG["depth"])
    levels = overrides.get("levels", DEFAULT_CONFIG["levels"])
    if want > levels:
        raise ValueError(f"the gateware holds {levels} levels a side: --depth {depth} is "
                         "deeper than it can show")
    if want != DEFAULT_CONFIG["depth"]:
        overrides["depth"] = want
    h, config = feed_book_harness(**overrides)
    book = SimBook(depth=config["depth"], config=config)
    started = time.perf_counter()
    with h:
        h.reset()
        h.watch(["invalid", *REASONS])
        last_reason: dict[str, int] = {}       # counter -> cycle it last moved
        invalid = 0
        sent = 0

        def take_records():
            nonlocal invalid
            for rec in h.records():
                if rec.port != "invalid":
                    last_reason[rec.port] = rec.cycle
                    continue
                risen, invalid = rec.value & ~invalid, rec.value
                same = [n for n in BOOK_REASONS if last_reason.get(n) == rec.cycle]
                older = sorted((c, n) for n, c in last_reason.items() if c <= rec.cycle)
                reason = REASONS[same[0]] if same else (
                    REASONS[older[-1][1]] if older else "unknown")
                for slot in range(config["slots"]):
                    if risen >> slot & 1:
                        book.flagged.setdefault(slot + 1, reason)

        for chunk in _chunks(raw_messages, book):
            beats = _beats(chunk)
            r = h.stream("i_stream", beats, "o_stream", collect=0, drain=0,
                         max_cycles=200 * len(beats) + 10_000)
            if r.timed_out or r.sent != len(beats):
                raise SimBookError(f"the gateware stalled: {r.sent} of {len(beats)} bytes "
                                   f"taken in {r.cycles} cycles")
            book.beats += len(beats)
            sent += len(chunk)
            take_records()
        r = h.stream(None, sink="o_stream", collect=0, drain=256)     # let the pipeline drain
        take_records()
        book.counters = {name: h.get(name) for name in h.ports
                         if h.ports[name].width == 32 and not h.ports[name].input
                         and name != "cycle"}
        c = book.counters
        if c["messages"] != sent or c["events"] != sent or c["book_ops"] != c["ops"]:
            raise SimBookError(f"{sent} messages sent, but the decoder counted "
                               f"{c['messages']}, the table {c['events']} events "
                               f"({c['ops']} ops, the book took {c['book_ops']})")
        _query(h, book, config)
        take_records()
        book.cycles = h.cycle
    book.seconds = time.perf_counter() - started
    for name, kind in ANOMALY_COUNTERS.items():
        book.anomalies[kind] = book.counters.get(name, 0)
    book.anomalies["unsubscribed_events"] = book.counters.get("unsubscribed", 0)
    book.anomalies["flagged_symbols"] = len(book.flagged)
    return book


def _query(h, book: SimBook, config: dict[str, Any]) -> None:
    slots = config["slots"]
    queries = np.array([slot | side << 8 for slot in range(slots) for side in (0, 1)],
                       dtype=np.uint16)
    r = h.stream("query", queries, "o_stream", drain=64)
    if r.timed_out or r.collected != len(queries) or r.taken != len(queries):
        raise SimBookError(f"{len(queries)} queries, {r.taken} answers")
    fields = {name: (f.offset, f.width) for name, f in
              data.Layout.cast(book_update_layout(config["depth"]))}

    def field(bits, name):
        off, width = fields[name]
        return bits >> off & ((1 << width) - 1)

    names = level_fields(config["depth"])
    for n, bits in enumerate(r.payloads()):
        slot, side = divmod(n, 2)
        if field(bits, "slot") != slot or field(bits, "side") != side:
            raise SimBookError(f"query {slot}/{side} answered for {field(bits, 'slot')}/"
                               f"{field(bits, 'side')}")
        held = field(bits, "levels")
        levels = [[field(bits, p), field(bits, s), field(bits, o)]
                  for p, s, o in names[:held]]
        locate = slot + 1
        bids, asks = book.sides.get(locate, ([], []))
        book.sides[locate] = (levels, asks) if side == 0 else (bids, levels)
        held_b, held_a = book.held.get(locate, (0, 0))
        book.held[locate] = (held, held_a) if side == 0 else (held_b, held)
        if field(bits, "invalid") and locate not in book.flagged:
            book.flagged[locate] = "unknown"
