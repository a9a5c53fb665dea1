"""Golden ITCH book builder (tickpath.model.book) and the ``tickpath book`` command."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from tickpath.host.cli import main
from tickpath.model.book import BookBuilder
from tickpath.protocol import itch

# --- message builders ---------------------------------------------------------------------


def msg(t: str, locate: int = 1, **fields) -> itch.ItchMessage:
    """A typed record of type ``t``: unspecified fields are zero / blank."""
    spec = itch.SPECS[t]
    values = {f.name: ("" if f.is_text else 0) for f in spec.fields[1:]}
    values.update(stock_locate=locate, **fields)
    return itch.RECORDS[t](**values)


def add(ref, side, shares, price, locate=1, stock="ZVZZT", t="A"):
    return msg(t, locate, order_reference_number=ref, buy_sell_indicator=side, shares=shares,
               price=price, stock=stock)


def execute(ref, shares, locate=1):
    return msg("E", locate, order_reference_number=ref, executed_shares=shares)


def execute_at(ref, shares, price, locate=1):
    return msg("C", locate, order_reference_number=ref, executed_shares=shares,
               execution_price=price, printable="Y")


def cancel(ref, shares, locate=1):
    return msg("X", locate, order_reference_number=ref, canceled_shares=shares)


def delete(ref, locate=1):
    return msg("D", locate, order_reference_number=ref)


def replace(old, new, shares, price, locate=1):
    return msg("U", locate, original_order_reference_number=old, new_order_reference_number=new,
               shares=shares, price=price)


def book_of(*messages) -> BookBuilder:
    return BookBuilder().apply_all(messages)


# --- a naive reference: one list of orders in arrival order, re-aggregated on every query ----

class NaiveBook:
    def __init__(self):
        self.orders: list[list] = []            # [ref, locate, side, price, shares]
        self.anomalies: Counter[str] = Counter()

    def _find(self, ref):
        for i, order in enumerate(self.orders):
            if order[0] == ref:
                return i
        return None

    def add(self, ref, locate, side, shares, price):
        if self._find(ref) is not None:
            self.anomalies["duplicate_add"] += 1
        elif shares == 0:
            self.anomalies["zero_shares"] += 1
        else:
            self.orders.append([ref, locate, side, price, shares])

    def reduce(self, ref, shares):
        i = self._find(ref)
        if i is None:
            self.anomalies["unknown_reference"] += 1
            return
        self.orders[i][4] -= shares
        if self.orders[i][4] < 0:
            self.anomalies["overfill"] += 1
        if self.orders[i][4] <= 0:
            del self.orders[i]

    def delete(self, ref):
        i = self._find(ref)
        if i is None:
            self.anomalies["unknown_reference"] += 1
        else:
            del self.orders[i]

    def replace(self, old, new, shares, price):
        i = self._find(old)
        if i is None:
            self.anomalies["unknown_reference"] += 1
            return
        _, locate, side, _, _ = self.orders.pop(i)
        self.add(new, locate, side, shares, price)

    def apply(self, m):
        if m.type in "AF":
            self.add(m.order_reference_number, m.stock_locate, m.buy_sell_indicator, m.shares,
                     m.price)
        elif m.type in "EC":
            self.reduce(m.order_reference_number, m.executed_shares)
        elif m.type == "X":
            self.reduce(m.order_reference_number, m.canceled_shares)
        elif m.type == "D":
            self.delete(m.order_reference_number)
        elif m.type == "U":
            self.replace(m.original_order_reference_number, m.new_order_reference_number,
                         m.shares, m.price)

    def snapshot(self):
        out = {}
        for locate in sorted({o[1] for o in self.orders}):
            entry = {}
            for key, side in (("bids", "B"), ("asks", "S")):
                prices = sorted({o[3] for o in self.orders if o[1] == locate and o[2] == side},
                                reverse=side == "B")
                entry[key] = tuple(
                    (p, tuple((o[0], o[4]) for o in self.orders
                              if o[1] == locate and o[2] == side and o[3] == p))
                    for p in prices)
            out[locate] = entry
        return out


# --- hand-built scenarios -----------------------------------------------------------------

def test_adds_build_levels_best_first_with_queues_in_time_priority():
    book = book_of(add(1, "B", 100, 100_0000), add(2, "B", 200, 101_0000),
                   add(3, "B", 50, 100_0000, t="F"), add(4, "S", 10, 102_0000),
                   add(5, "S", 20, 103_0000), add(6, "S", 30, 102_0000, t="F"))
    assert book.levels(1, "B") == [(101_0000, 200, 1), (100_0000, 150, 2)]
    assert book.levels(1, "S") == [(102_0000, 40, 2), (103_0000, 20, 1)]
    assert book.queue(1, "B", 100_0000) == [(1, 100), (3, 50)]
    assert book.queue(1, "S", 102_0000) == [(4, 10), (6, 30)]
    assert book.bbo(1) == ((101_0000, 200), (102_0000, 40))
    assert book.order(3) == (1, "B", 100_0000, 50)
    assert len(book) == 6 and 6 in book and 7 not in book
    assert book.messages == Counter({"A": 4, "F": 2})
    assert not book.anomalies


def test_execute_reduces_at_resting_price_and_removes_filled_orders():
    book = book_of(add(1, "B", 100, 500), add(2, "B", 70, 500), add(3, "B", 5, 400),
                   execute(1, 30), execute(3, 5))
    assert book.queue(1, "B", 500) == [(1, 70), (2, 70)]     # a partial fill keeps priority
    assert book.levels(1, "B") == [(500, 140, 2)]
    assert book.order(3) is None
    assert not book.anomalies


def test_execute_with_price_reduces_the_resting_order_not_the_print_price():
    book = book_of(add(1, "S", 100, 500), execute_at(1, 40, 123), add(2, "S", 10, 600),
                   execute_at(2, 10, 999))
    assert book.levels(1, "S") == [(500, 60, 1)]
    assert book.levels(1, "B") == []
    assert book.messages["C"] == 2 and not book.anomalies


def test_cancel_reduces_and_delete_removes_from_the_middle_of_a_queue():
    book = book_of(add(1, "S", 100, 500), add(2, "S", 100, 500), add(3, "S", 100, 500),
                   cancel(1, 99), delete(2))
    assert book.queue(1, "S", 500) == [(1, 1), (3, 100)]
    book.apply(cancel(1, 1))
    assert book.queue(1, "S", 500) == [(3, 100)]
    book.apply(delete(3))
    assert book.levels(1, "S") == [] and book.snapshot() == {} and len(book) == 0
    assert not book.anomalies


def test_replace_moves_to_the_back_of_its_new_level_with_same_side_and_locate():
    book = book_of(add(1, "B", 100, 500, locate=7), add(2, "B", 100, 600, locate=7),
                   replace(1, 10, 300, 600, locate=999))       # U's own locate is not used
    assert book.levels(7, "B") == [(600, 400, 2)]
    assert book.queue(7, "B", 600) == [(2, 100), (10, 300)]
    assert book.order(10) == (7, "B", 600, 300)
    assert book.order(1) is None and book.locates() == [7]


def test_replace_at_the_same_price_loses_time_priority():
    book = book_of(add(1, "S", 100, 500), add(2, "S", 100, 500), replace(1, 3, 100, 500),
                   replace(2, 2, 50, 500))                    # a U may reuse its own reference
    assert book.queue(1, "S", 500) == [(3, 100), (2, 50)]
    assert not book.anomalies


@pytest.mark.parametrize("unknown", [execute(9, 1), execute_at(9, 1, 5), cancel(9, 1), delete(9),
                                     replace(9, 10, 1, 5)], ids=lambda m: m.type)
def test_unknown_reference_is_counted_and_changes_nothing(unknown):
    book = book_of(add(1, "B", 100, 500))
    before = book.snapshot()
    book.apply(unknown)
    assert book.anomalies == Counter({"unknown_reference": 1})
    assert book.snapshot() == before and 10 not in book


@pytest.mark.parametrize("over", [execute(1, 101), execute_at(1, 101, 7), cancel(1, 500)],
                         ids=lambda m: m.type)
def test_overfill_removes_the_order(over):
    book = book_of(add(1, "B", 100, 500), add(2, "B", 10, 500), over)
    assert book.anomalies == Counter({"overfill": 1})
    assert book.queue(1, "B", 500) == [(2, 10)]


def test_duplicate_add_is_ignored_and_keeps_the_live_order():
    book = book_of(add(1, "B", 100, 500), add(1, "S", 7, 900, t="F"))
    assert book.anomalies == Counter({"duplicate_add": 1})
    assert book.order(1) == (1, "B", 500, 100)
    assert book.levels(1, "S") == []


def test_replace_onto_a_live_reference_deletes_the_old_and_keeps_the_live_one():
    book = book_of(add(1, "B", 100, 500), add(2, "B", 20, 400), replace(1, 2, 300, 600))
    assert book.anomalies == Counter({"duplicate_add": 1})
    assert book.order(1) is None
    assert book.order(2) == (1, "B", 400, 20)
    assert book.levels(1, "B") == [(400, 20, 1)]


def test_zero_share_add_and_invalid_side_are_counted_and_not_added():
    book = book_of(add(1, "B", 0, 500), add(2, "X", 10, 500), add(3, "S", 5, 500),
                   replace(3, 4, 0, 500))
    assert book.anomalies == Counter({"zero_shares": 2, "invalid_side": 1})
    assert len(book) == 0 and book.snapshot() == {}


def test_primitives_report_clean_or_anomalous():
    book = BookBuilder()
    assert book.add(1, 3, "S", 10, 700, "ABC") is True
    assert book.add(1, 3, "S", 10, 700) is False
    assert book.execute(1, 4) is True and book.cancel(1, 1) is True
    assert book.replace(1, 2, 8, 710) is True
    assert book.execute(2, 9) is False                       # overfill
    assert book.delete(2) is False and book.cancel(5, 1) is False
    assert book.anomalies == Counter({"duplicate_add": 1, "overfill": 1, "unknown_reference": 2})
    assert book.messages == Counter()                        # primitives are not messages
    assert book.stock(3) == "ABC"


def test_stock_names_from_r_then_from_adds_and_mismatch_is_counted():
    book = book_of(msg("R", 1, stock="AAA"), add(1, "B", 1, 5, locate=1, stock="AAA"),
                   add(2, "B", 1, 5, locate=2, stock="BBB"),
                   add(3, "B", 1, 5, locate=1, stock="ZZZ"))
    assert book.stock(1) == "AAA" and book.stock(2) == "BBB" and book.stock(9) is None
    assert book.anomalies == Counter({"stock_mismatch": 1})
    assert len(book) == 3


def test_trading_state_follows_h_messages():
    book = book_of(msg("H", 4, stock="QQQ", trading_state="H"))
    assert book.trading_state(4) == "H" and book.stock(4) == "QQQ"
    book.apply(msg("H", 4, stock="QQQ", trading_state="T"))
    assert book.trading_state(4) == "T" and book.trading_state(5) is None


def test_every_message_type_is_accepted_and_only_book_types_touch_the_book():
    book = book_of(add(1, "B", 100, 500), add(2, "S", 100, 600))
    before = book.snapshot()
    for t in sorted(set(itch.SPECS) - itch.BOOK_TYPES):
        book.apply(msg(t, 1))
    assert book.snapshot() == before
    assert set(book.messages) == set(itch.SPECS) - itch.BOOK_TYPES | {"A"}
    assert sum(book.messages.values()) == 2 + len(itch.SPECS) - len(itch.BOOK_TYPES)
    assert not book.anomalies


def test_bbo_with_one_side_empty_and_unknown_locate():
    book = book_of(add(1, "S", 30, 700), add(2, "S", 20, 700), add(3, "S", 5, 710))
    assert book.bbo(1) == (None, (700, 50))
    assert book.bbo(2) == (None, None)
    assert book.levels(1, "S", depth=1) == [(700, 50, 2)]


def test_snapshot_equality_means_identical_queues():
    a = book_of(add(1, "B", 10, 500), add(2, "B", 10, 500))
    b = book_of(add(2, "B", 10, 500), add(1, "B", 10, 500))
    c = book_of(add(1, "B", 15, 500), add(2, "B", 10, 500), add(9, "S", 1, 600), execute(1, 5),
                delete(9))
    assert a.levels(1, "B") == b.levels(1, "B")
    assert a.snapshot() != b.snapshot()
    assert a.snapshot() == c.snapshot() == {1: {"bids": ((500, ((1, 10), (2, 10))),),
                                                "asks": ()}}


def test_book_lines_format_and_depth():
    book = book_of(msg("R", 2, stock="BBB"), add(1, "B", 10, 500, locate=2, stock="BBB"),
                   add(2, "B", 10, 490, locate=2, stock="BBB"),
                   add(3, "S", 10, 510, locate=2, stock="BBB"),
                   add(4, "S", 5, 600, locate=1, stock="AAA"))
    assert list(book.book_lines()) == [
        {"stock": "AAA", "stock_locate": 1, "bids": [], "asks": [[600, 5, 1]]},
        {"stock": "BBB", "stock_locate": 2, "bids": [[500, 10, 1], [490, 10, 1]],
         "asks": [[510, 10, 1]]},
    ]
    assert [line["bids"] for line in book.book_lines(depth=1)] == [[], [[500, 10, 1]]]


# --- seeded random stream against the naive reference, after every message ----------------

def random_stream(rng: random.Random, count: int):
    """A/F/E/C/X/D/U on three locates and few prices (so queues form), with every anomaly."""
    naive = NaiveBook()
    next_ref = 1
    for _ in range(count):
        live = naive.orders
        roll = rng.random()
        locate = rng.choice((1, 2, 3))
        if roll < 0.35 or not live:
            if live and rng.random() < 0.05:
                ref = rng.choice(live)[0]                     # duplicate add
            else:
                ref, next_ref = next_ref, next_ref + 1
            shares = 0 if rng.random() < 0.02 else rng.randint(1, 100)
            m = add(ref, rng.choice("BS"), shares, rng.randint(95, 105) * 100, locate,
                    t=rng.choice("AF"))
        else:
            known = rng.random() > 0.08
            order = rng.choice(live)
            ref = order[0] if known else next_ref + 10_000 + rng.randint(0, 9)
            held = order[4] if known else 50
            shares = rng.choice((1, held // 2 or 1, held, held, held + rng.randint(1, 9)))
            t = rng.choice("ECXDUU")
            if t == "E":
                m = execute(ref, shares, locate)
            elif t == "C":
                m = execute_at(ref, shares, rng.randint(1, 10**6), locate)
            elif t == "X":
                m = cancel(ref, shares, locate)
            elif t == "D":
                m = delete(ref, locate)
            else:
                if rng.random() < 0.05:
                    new = rng.choice(live)[0]                 # onto a live reference
                else:
                    new, next_ref = next_ref, next_ref + 1
                m = replace(ref, new, rng.randint(0, 100), rng.randint(95, 105) * 100, locate)
        naive.apply(m)
        yield m, naive


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stream_matches_naive_reference_after_every_message(seed):
    book = BookBuilder()
    kinds_seen: Counter[str] = Counter()
    for m, naive in random_stream(random.Random(seed), 2500):
        book.apply(m)
        kinds_seen[m.type] += 1
        assert book.snapshot() == naive.snapshot(), m
        assert book.anomalies == naive.anomalies, m
    assert set(kinds_seen) == set("AFECXDU")
    assert {"unknown_reference", "overfill", "duplicate_add", "zero_shares"} <= set(book.anomalies)
    for locate in book.locates():                            # the aggregate views agree too
        for side, key in (("B", "bids"), ("S", "asks")):
            expected = [(p, sum(s for _, s in q), len(q)) for p, q in naive.snapshot()[locate][key]]
            assert book.levels(locate, side) == expected
            best = book.bbo(locate)[0 if side == "B" else 1]
            assert best == (expected[0][:2] if expected else None)


op_strategy = st.one_of(
    st.tuples(st.just("add"), st.integers(1, 8), st.integers(1, 2), st.sampled_from("BS"),
              st.integers(0, 20), st.integers(1, 4)),
    st.tuples(st.just("execute"), st.integers(1, 8), st.integers(0, 25)),
    st.tuples(st.just("cancel"), st.integers(1, 8), st.integers(0, 25)),
    st.tuples(st.just("delete"), st.integers(1, 8)),
    st.tuples(st.just("replace"), st.integers(1, 8), st.integers(1, 8), st.integers(0, 20),
              st.integers(1, 4)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op_strategy, max_size=40))
def test_primitives_match_naive_reference(ops):
    book, naive = BookBuilder(), NaiveBook()
    for op, *args in ops:
        if op == "add":
            ref, locate, side, shares, price = args
            book.add(ref, locate, side, shares, price)
            naive.add(ref, locate, side, shares, price)
        elif op in ("execute", "cancel"):
            getattr(book, op)(*args)
            naive.reduce(*args)
        else:
            getattr(book, op)(*args)
            getattr(naive, op)(*args)
        assert book.snapshot() == naive.snapshot()
    assert book.anomalies == naive.anomalies


# --- the real BX sample ---------------------------------------------------------------------

def independent_replay(data: bytes):
    """A second, simple method: live refs in a dict, unknown references counted."""
    live: dict[int, list] = {}
    unknown = 0
    for _, m in itch.iter_binaryfile(data):
        t = m.type
        if t in "AF":
            live[m.order_reference_number] = [m.stock_locate, m.buy_sell_indicator, m.price,
                                              m.shares]
            continue
        if t not in "ECXDU":
            continue
        ref = m.original_order_reference_number if t == "U" else m.order_reference_number
        if ref not in live:
            unknown += 1
            continue
        if t in "EC":
            live[ref][3] -= m.executed_shares
        elif t == "X":
            live[ref][3] -= m.canceled_shares
        else:
            old = live.pop(ref)
            if t == "U":
                live[m.new_order_reference_number] = [old[0], old[1], m.price, m.shares]
        if ref in live and live[ref][3] <= 0:
            del live[ref]
    return live, unknown


def test_bx_sample_replays_and_counts_unknown_references(bx_sample):
    book = BookBuilder().apply_all(m for _, m in itch.iter_binaryfile(bx_sample))
    live, unknown = independent_replay(bx_sample)
    assert unknown == 117                                     # what data/README.md states
    assert book.anomalies == Counter({"unknown_reference": unknown})
    assert book.messages == Counter(P=5000, A=4997, D=1745, E=198, X=45, U=12, S=6, R=3, H=3,
                                    F=3)
    assert len(book) == len(live)
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for locate, side, price, shares in live.values():
        totals[locate, side, price][0] += shares
        totals[locate, side, price][1] += 1
    got = {(locate, side, p): [s, n] for locate in book.locates() for side in "BS"
           for p, s, n in book.levels(locate, side)}
    assert got == dict(totals)
    assert all(book.stock(locate) for locate in book.locates())
    assert all(book.trading_state(locate) == "T" for locate in book.locates())


# --- the command line ------------------------------------------------------------------------

def run_cli(*args):
    return CliRunner().invoke(main, ["book", *map(str, args)])


def test_cli_prints_the_final_book_and_a_summary(tmp_path, bx_sample):
    boundary = next(off for off, _ in itch.iter_binaryfile(bx_sample) if off >= 20000)
    path = tmp_path / "bx.itch"
    path.write_bytes(bx_sample[:boundary])                   # the first few hundred messages
    expected = BookBuilder().apply_all(m for _, m in itch.iter_binaryfile(bx_sample[:boundary]))
    result = run_cli(path)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == list(expected.book_lines())
    assert [line["stock_locate"] for line in lines] == sorted(expected.locates())
    assert set(lines[0]) == {"stock", "stock_locate", "bids", "asks"}
    summary = result.stderr.strip().splitlines()
    assert len(summary) == 1
    assert f"messages {sum(expected.messages.values())} " in summary[0]
    assert f"unknown_reference {expected.anomalies['unknown_reference']}" in summary[0]
    assert "overfill 0" in summary[0] and "duplicate_add 0" in summary[0]


def test_cli_depth_limits_levels(tmp_path):
    path = tmp_path / "feed.itch"
    path.write_bytes(itch.encode_binaryfile(
        [msg("R", 5, stock="ZVZZT")] + [add(i, "SB"[i % 2], 10, 1000 + i, locate=5)
                                        for i in range(1, 9)]))
    full = [json.loads(x) for x in run_cli(path).stdout.splitlines()]
    assert full == [{"stock": "ZVZZT", "stock_locate": 5,
                     "bids": [[1007, 10, 1], [1005, 10, 1], [1003, 10, 1], [1001, 10, 1]],
                     "asks": [[1002, 10, 1], [1004, 10, 1], [1006, 10, 1], [1008, 10, 1]]}]
    top2 = [json.loads(x) for x in run_cli(path, "--depth", 2, "--engine", "model")
            .stdout.splitlines()]
    assert top2[0]["bids"] == full[0]["bids"][:2] and top2[0]["asks"] == full[0]["asks"][:2]
    assert run_cli(path, "--depth", 0).exit_code != 0
    assert run_cli(path, "--engine", "fpga").exit_code != 0     # not an engine


def test_cli_random_stream_file_matches_the_model(tmp_path):
    messages = [m for m, _ in random_stream(random.Random(7), 1500)]
    path = tmp_path / "random.itch"
    path.write_bytes(itch.encode_binaryfile(messages))
    result = run_cli(path)
    assert result.exit_code == 0
    expected = BookBuilder().apply_all(messages)
    assert [json.loads(x) for x in result.stdout.splitlines()] == list(expected.book_lines())
    assert f"overfill {expected.anomalies['overfill']} " in result.stderr


def test_cli_missing_file_is_one_line(tmp_path):
    result = run_cli(tmp_path / "nope.itch")
    assert result.exit_code == 1
    assert "nope.itch: no such file" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_malformed_input_names_the_offset(tmp_path, bx_sample):
    path = tmp_path / "cut.itch"
    path.write_bytes(bx_sample[:1000])                         # cut inside a message
    result = run_cli(path)
    assert result.exit_code == 1 and result.exception is not None
    assert "at offset 980: truncated BinaryFILE message" in result.output
    assert len(result.output.strip().splitlines()) == 1
    path.write_bytes(b"\x00\x05Zabcd")
    assert "at offset 2: unknown ITCH message type 0x5a" in run_cli(path).output


def test_cli_empty_file_prints_nothing_but_the_summary(tmp_path):
    path = tmp_path / "empty.itch"
    path.write_bytes(b"")
    result = run_cli(path)
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.startswith("messages 0;")


def test_cli_books_a_real_pcap(shared_data):
    path = shared_data / "pcap/bx-itch50/AddOrderNoMpidAttributionMessage.pcap"
    data = path.read_bytes()
    adds, start = [], data.find(b"\x00\x24A")                  # MoldUDP64 block: length 36, 'A'
    while start >= 0:
        adds.append(itch.decode(data, start + 2, 36))
        start = data.find(b"\x00\x24A", start + 1)
    assert len(adds) == 5
    result = run_cli(path)
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert lines == [{"stock": a.stock, "stock_locate": a.stock_locate,
                      "bids": [[a.price, a.shares, 1]] if a.buy_sell_indicator == "B" else [],
                      "asks": [[a.price, a.shares, 1]] if a.buy_sell_indicator == "S" else []}
                     for a in sorted(adds, key=lambda a: a.stock_locate)]


def test_cli_truncated_pcap_is_one_line(shared_data, tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes((shared_data / "pcap/bx-itch50/OrderDeleteMessage.pcap").read_bytes()[:100])
    result = run_cli(path)
    assert result.exit_code == 1
    assert "cut.pcap: at offset" in result.output and "Traceback" not in result.output
