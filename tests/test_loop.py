"""Closing the loop: the matching engine's own ITCH 5.0 output, fed through the feed-path
gateware (ItchDecoder -> OrderTable -> Book on the Verilator harness), rebuilds exactly the
engine's book: every level's price, shares and order count, on every symbol."""

from __future__ import annotations

import random
import shutil

import pytest

from tickpath.protocol import itch
from tickpath.sim.common.runner import toolchain_environment
from tickpath.sim.harness.feed_book import run as run_feed
from tickpath.sim.matching.stimulus import new_model, random_actions


def _have_verilator():
    with toolchain_environment():
        return shutil.which("verilator") is not None


pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(not _have_verilator(), reason="verilator is not installed")]


def test_engine_itch_rebuilds_its_book_through_the_feed_gateware():
    symbols, capacity = 6, 400
    orders = random_actions(random.Random(77), 20_000, symbols=symbols, capacity=capacity,
                            token_bits=12, prices=16)
    model = new_model(symbols, capacity)
    model.process_all(orders)
    raw = [itch.encode(m) for m in model.itch]
    assert {chr(r[0]) for r in raw} >= {"S", "R", "A", "E", "X", "D", "U"}
    sim = run_feed(raw)
    assert sim.flagged == {}
    assert sim.counters["malformed"] == 0 and sim.counters["unknown_reference"] == 0
    want = list(model.book_lines(8))
    assert len(want) == symbols
    assert list(sim.book_lines()) == want
