"""``tickpath book FILE --engine sim``: the feed-path gateware (ItchDecoder -> OrderTable -> Book,
default configuration) on the fast Verilator harness prints what ``--engine model --depth 8``
prints, for every symbol it does not flag; the flagged ones are exactly those the exact model
of the gateware (sim/feed_book/model.py) predicts, and they are reported on stderr."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from tickpath.generator import GeneratorConfig, iter_messages, write_binaryfile
from tickpath.host.cli import main
from tickpath.protocol import itch
from tickpath.protocol.feed import expected_event
from tickpath.sim.common.runner import toolchain_environment
from tickpath.sim.feed_book.model import FeedBookModel
from tickpath.sim.harness.feed_book import DEFAULT_CONFIG


def _have_verilator():
    with toolchain_environment():
        return shutil.which("verilator") is not None


pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(not _have_verilator(), reason="verilator is not installed")]

FLAG_LINE = re.compile(r"^stock_locate (\d+)(?: \(\S+\))?: flagged invalid by the gateware "
                       r"\((\w+)\)")


def book(path, engine, depth=8):
    result = CliRunner().invoke(main, ["book", str(path), "--engine", engine,
                                       "--depth", str(depth)])
    assert result.exit_code == 0, result.output + str(result.exception)
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    flagged = {}
    for line in result.stderr.splitlines():
        m = FLAG_LINE.match(line)
        if m:
            flagged[int(m.group(1))] = m.group(2)
    return lines, flagged, result.stderr.splitlines()[-1]


def predicted_flags(messages: list[bytes]) -> tuple[set[int], FeedBookModel]:
    """The locates the gateware must flag, by the exact model in its default configuration."""
    params = {k: v for k, v in DEFAULT_CONFIG.items() if k != "source"}
    model = FeedBookModel(**params)
    for raw in messages:
        model.event(expected_event(raw))
    slot_to_locate = {slot: loc for loc, slot in model.subscriptions.items()}
    return {slot_to_locate[s] for s in model.flagged_ever}, model


def check(path, messages):
    want, _, model_summary = book(path, "model")
    got, flagged, summary = book(path, "sim")
    predicted, exact = predicted_flags(messages)
    assert set(flagged) == predicted
    subscribed = {loc for loc in range(1, DEFAULT_CONFIG["slots"] + 1)}
    assert got == [w for w in want
                   if w["stock_locate"] in subscribed and w["stock_locate"] not in predicted]
    assert f"flagged_symbols {len(predicted)}" in summary
    assert model_summary.split(";")[0] == summary.split(";")[0]       # messages by type
    return want, got, flagged, exact


def test_synthetic_stream_equals_model(tmp_path):
    config = GeneratorConfig(messages=20_000, symbols=50, seed=11)
    path = tmp_path / "synthetic.itch"
    write_binaryfile(config, path)
    want, got, flagged, exact = check(path, list(iter_messages(config)))
    assert exact.golden.anomalies == {}                   # the stream itself is clean
    assert len(got) >= 45 and len(want) == 50            # at most a few flagged (deep sides)
    assert set(flagged.values()) <= {"level_overflow", "table_full"}


@pytest.mark.long
def test_synthetic_50k_equals_model(tmp_path):
    config = GeneratorConfig(messages=50_000, symbols=50, seed=1)
    path = tmp_path / "synthetic.itch"
    write_binaryfile(config, path)
    _, got, flagged, _ = check(path, list(iter_messages(config)))
    assert len(got) + len(flagged) == 50


def test_bx_sample_flags_exactly_the_unknowable_symbols(shared_data):
    path = shared_data / "itch" / "bx_20191230_sample.itch"
    messages = [raw for _, raw in itch.iter_binaryfile_raw(path.read_bytes())]
    want, got, flagged, exact = check(path, messages)
    # the sample starts mid-day: references to orders never added make every one of its
    # symbols unknowable, and the gateware says so rather than print a wrong book
    assert exact.golden.anomalies["unknown_reference"] == 117
    assert flagged == {1: "unknown_reference", 2: "unknown_reference", 3: "unknown_reference"}
    assert len(want) == 3 and got == []


def test_bx_sample_rows_match_the_exact_model(shared_data):
    """Flagged or not, what the gateware holds is what its exact model says it holds."""
    from tickpath.host.commands.book import iter_raw_messages
    from tickpath.sim.harness.feed_book import run
    path = shared_data / "itch" / "bx_20191230_sample.itch"
    sim = run(iter_raw_messages(path))
    _, exact = predicted_flags(list(iter_raw_messages(path)))
    for locate, (bids, asks) in sim.sides.items():
        slot = exact.subscriptions[locate]
        for side, levels in ((0, bids), (1, asks)):
            row = exact.rows.get((slot, side), [])
            assert levels == [list(x) for x in row[:DEFAULT_CONFIG["depth"]]], (locate, side)
            assert sim.held[locate][side] == len(row)
    want = {k: exact.counters[k] for k in ("unknown_reference", "table_full",
                                           "book_level_overflow", "book_level_missing")}
    assert {k: sim.counters[k] for k in want} == want
