"""Positions and PnL (average cost, exact integers) against a naive exact-fraction reference."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickpath.host.positions import Position, Positions, midpoint, round_half_even, side_sign


class FractionReference:
    """Average cost the textbook way, in exact fractions, one account and symbol."""

    def __init__(self):
        self.position = 0
        self.avg = Fraction(0)        # exact average price of the open position
        self.realized = Fraction(0)
        self.cash = 0                 # signed cash flow: sells in, buys out
        self.reductions = 0           # partial reductions since the last flat or flip

    def fill(self, signed: int, price: int) -> None:
        self.cash -= signed * price
        pos = self.position
        if pos == 0 or (pos > 0) == (signed > 0):
            self.avg = (self.avg * abs(pos) + price * abs(signed)) / (abs(pos) + abs(signed))
            self.position = pos + signed
            return
        closed = min(abs(signed), abs(pos))
        direction = 1 if pos > 0 else -1
        self.realized += direction * (price - self.avg) * closed
        self.position = pos - direction * closed
        if self.position == 0:
            self.avg = Fraction(0)
            self.reductions = 0
        else:
            self.reductions += 1
        rest = abs(signed) - closed
        if rest:
            self.position = -direction * rest
            self.avg = Fraction(price)
            self.reductions = 0


@pytest.mark.parametrize("n, d, want", [
    (5, 2, 2), (7, 2, 4), (-5, 2, -2), (-7, 2, -4), (1, 3, 0), (2, 3, 1), (-2, 3, -1),
    (10, 4, 2), (14, 4, 4), (9, -2, -4), (-9, -2, 4), (0, 7, 0), (15, 10, 2), (25, 10, 2),
])
def test_round_half_even(n, d, want):
    assert round_half_even(n, d) == want
    assert round_half_even(n, d) == round(Fraction(n, d))      # Fraction rounds half-even too


def test_round_half_even_by_zero():
    with pytest.raises(ZeroDivisionError):
        round_half_even(1, 0)


def test_midpoint():
    assert midpoint(1_000_100, 1_000_200) == 1_000_150
    assert midpoint(100, 101) == 100      # 100.5 -> even
    assert midpoint(101, 102) == 102      # 101.5 -> even


def test_side_forms():
    class Side:                 # stands in for tickpath.protocol.records.Side
        name = "Sell"
    assert side_sign("B") == side_sign("buy") == 1
    assert side_sign("S") == side_sign(Side()) == -1
    with pytest.raises(ValueError, match="buy or sell"):
        side_sign("X")


def test_worked_example_with_flip():
    p = Positions()
    assert p.apply_fill("A", "AAPL", "B", 100, 10_000) == 0
    assert p.apply_fill("A", "AAPL", "B", 50, 10_300) == 0
    pos = p.get("A", "AAPL")
    assert (pos.position, pos.cost_basis, pos.avg_cost) == (150, 1_515_000, 10_100)
    # sell 60 at 10_500: removes 60/150 of the cost = 606_000, realizes 630_000 - 606_000
    assert p.apply_fill("A", "AAPL", "S", 60, 10_500) == 24_000
    assert (pos.position, pos.cost_basis) == (90, 909_000)
    # sell 140 at 9_900: closes 90 (realizes 891_000 - 909_000) and opens 50 short at 9_900
    assert p.apply_fill("A", "AAPL", "S", 140, 9_900) == -18_000
    assert (pos.position, pos.cost_basis, pos.avg_cost) == (-50, -495_000, 9_900)
    assert pos.realized_pnl == 6_000
    # offline mark: the last execution price; the short is flat at its own price
    assert p.unrealized("A", "AAPL") == 0
    p.set_mark("AAPL", 9_800)
    assert p.unrealized("A", "AAPL") == 5_000       # short 50, price fell by 100
    assert p.total_pnl("A") == 11_000
    # buy back 20 of the short at 9_700: realizes 20 * (9_900 - 9_700)
    assert p.apply_fill("A", "AAPL", "B", 20, 9_700) == 4_000
    row = next(p.rows())
    assert row == {"account": "A", "stock": "AAPL", "position": -30, "cost_basis": -297_000,
                   "avg_cost": 9_900, "realized_pnl": 10_000, "unrealized_pnl": 3_000}


def test_partial_close_rounds_half_even():
    pos = Position("A", "X")
    pos.apply(3, 10)          # cost 30
    pos.apply(1, 11)          # cost 41 for 4: avg 10.25
    assert pos.avg_cost == 10
    realized = pos.apply(-2, 10)      # removes 41 * 2 / 4 = 20.5 -> 20 (even)
    assert (realized, pos.cost_basis) == (0, 21)
    realized = pos.apply(-1, 10)      # removes 21 / 2 = 10.5 -> 10 (even)
    assert (realized, pos.cost_basis) == (0, 11)
    assert pos.apply(-1, 10) == -1    # closes: removes all 11
    assert (pos.position, pos.cost_basis, pos.realized_pnl, pos.avg_cost) == (0, 0, -1, None)


def test_bad_fills():
    p = Positions()
    with pytest.raises(ValueError, match="positive"):
        p.apply_fill("A", "X", "B", 0, 100)
    with pytest.raises(TypeError, match="integers"):
        p.apply_fill("A", "X", "B", 10, 100.5)
    with pytest.raises(ValueError, match="buy or sell"):
        p.apply_fill("A", "X", "?", 10, 100)
    assert len(p) == 0


fills = st.lists(st.tuples(st.sampled_from(["B", "S"]), st.integers(1, 2_000),
                           st.integers(1, 2_000_000)), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(fills)
def test_against_fraction_reference(stream):
    positions = Positions()
    ref = FractionReference()
    for side, shares, price in stream:
        realized_before = positions.get("A", "S").realized_pnl
        got = positions.apply_fill("A", "S", side, shares, price)
        ref.fill(side_sign(side) * shares, price)
        pos = positions.get("A", "S")
        assert got == pos.realized_pnl - realized_before
        assert pos.position == ref.position
        mark = price
        unrealized = positions.unrealized("A", "S")
        # the sum is exact: cash flow plus the position marked
        assert pos.realized_pnl + unrealized == ref.cash + ref.position * mark
        # realized PnL: exact when flat; otherwise off by at most half a tick-share for each
        # partial reduction since the position was last flat or flipped
        assert abs(pos.realized_pnl - ref.realized) <= Fraction(ref.reductions, 2)
        if ref.position == 0:
            assert pos.realized_pnl == ref.realized
            assert (pos.cost_basis, pos.avg_cost) == (0, None)
        else:
            exact_cost = ref.avg * ref.position
            assert abs(pos.cost_basis - exact_cost) <= Fraction(ref.reductions, 2)
            assert pos.avg_cost == round_half_even(pos.cost_basis, pos.position)
            slack = Fraction(1, 2) + Fraction(ref.reductions, 2 * abs(ref.position))
            assert abs(pos.avg_cost - ref.avg) <= slack
            assert (pos.cost_basis > 0) == (pos.position > 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A1", "A2"]), st.sampled_from(["X", "Y", "Z"]),
                          st.sampled_from(["B", "S"]), st.integers(1, 500),
                          st.integers(1, 100_000)), max_size=80))
def test_accounts_and_symbols_are_independent(stream):
    together = Positions()
    apart: dict = {}
    for account, symbol, side, shares, price in stream:
        together.apply_fill(account, symbol, side, shares, price)
        apart.setdefault((account, symbol), Positions()).apply_fill(account, symbol, side,
                                                                   shares, price)
    for key, alone in apart.items():
        mine, theirs = together.get(*key), alone.get(*key)
        assert (mine.position, mine.cost_basis, mine.realized_pnl) == (
            theirs.position, theirs.cost_basis, theirs.realized_pnl)
    assert [(r["account"], r["stock"]) for r in together.rows()] == sorted(apart)
