"""`tickpath demo`: the sample feed through the golden model and the simulated gateware."""

import pytest
from click.testing import CliRunner

from tickpath.host.cli import main

pytestmark = pytest.mark.sim


def test_demo_on_real_sample_agrees(shared_data):
    result = CliRunner().invoke(main, ["demo", "--simulator", "icarus", "--limit", "400"])
    assert result.exit_code == 0, result.output
    assert "400 ITCH messages" in result.output
    assert "decode vs golden model: identical (400/400 events agree)" in result.output
    assert "book from gateware events vs golden book: identical" in result.output


def test_demo_on_synthetic_feed_agrees():
    result = CliRunner().invoke(main, ["demo", "--simulator", "icarus", "--synthetic", "300"])
    assert result.exit_code == 0, result.output
    assert "synthetic feed (300 messages" in result.output
    assert "decode vs golden model: identical (300/300 events agree)" in result.output
    assert "book from gateware events vs golden book: identical" in result.output


def test_demo_missing_feed_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--feed", str(tmp_path / "nope.itch")])
    assert result.exit_code == 1
    assert "No such file" in result.output
    assert "Traceback" not in result.output


def test_book_from_events_matches_model(bx_sample):
    from tickpath.host.commands.demo import book_from_events
    from tickpath.model.book import BookBuilder
    from tickpath.protocol import itch
    from tickpath.protocol.feed import expected_event

    raws = [raw for _, raw in itch.iter_binaryfile_raw(bx_sample)]
    model = BookBuilder()
    for raw in raws:
        model.apply(itch.decode(raw))
    book = book_from_events(expected_event(raw) for raw in raws)
    assert book.snapshot() == model.snapshot()
    assert book.anomalies == model.anomalies
    assert model.anomalies["unknown_reference"] == 117
