"""``tickpath match``: JSON-lines actions in, events and the final book out, clear errors."""

import json

import pytest
from click.testing import CliRunner

from tickpath.host.cli import main
from tickpath.model.book import BookBuilder
from tickpath.protocol import itch


def run(tmp_path, lines, *args):
    path = tmp_path / "orders.jsonl"
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n"
                            for ln in lines))
    result = CliRunner().invoke(main, ["match", str(path), *args])
    return result


def outputs(result):
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def enter(token, side, shares, price, firm="ACME", stock="AAPL", **kw):
    return {"action": "enter", "token": token, "firm": firm, "side": side, "shares": shares,
            "stock": stock, "price": price, **kw}


def test_events_then_book(tmp_path):
    out = outputs(run(tmp_path, [
        enter("T1", "S", 100, 1234500),
        enter("T2", "B", 60, 1234600, firm="BETA", tif="day", type="limit"),
        {"action": "cancel", "token": "T1", "shares": 10},
        {"action": "replace", "token": "T1", "new_token": "T3", "shares": 5, "price": 1234500},
        enter("T4", "B", 7, 500000, stock="MSFT"),
        enter("T5", "B", 5, None, type="market", tif="ioc", firm="BETA"),
        {"action": "cancel", "token": "NOPE", "shares": 0},
    ]))
    assert out == [
        {"event": "accepted", "token": "T1", "stock": "AAPL", "side": "S", "shares": 100,
         "price": 1234500},
        {"event": "accepted", "token": "T2", "stock": "AAPL", "side": "B", "shares": 60,
         "price": 1234600},
        {"event": "executed", "token": "T2", "stock": "AAPL", "side": "B", "shares": 60,
         "price": 1234500, "match_number": 1, "contra_token": "T1"},
        {"event": "executed", "token": "T1", "stock": "AAPL", "side": "S", "shares": 60,
         "price": 1234500, "match_number": 1, "contra_token": "T2"},
        {"event": "canceled", "token": "T1", "stock": "AAPL", "side": "S", "shares": 30,
         "price": 1234500, "reason": "U"},
        {"event": "replaced", "token": "T1", "stock": "AAPL", "side": "S", "new_token": "T3",
         "shares": 5, "price": 1234500},
        {"event": "accepted", "token": "T4", "stock": "MSFT", "side": "B", "shares": 7,
         "price": 500000},
        {"event": "accepted", "token": "T5", "stock": "AAPL", "side": "B", "shares": 5,
         "price": 0},
        {"event": "executed", "token": "T5", "stock": "AAPL", "side": "B", "shares": 5,
         "price": 1234500, "match_number": 2, "contra_token": "T3"},
        {"event": "executed", "token": "T3", "stock": "AAPL", "side": "S", "shares": 5,
         "price": 1234500, "match_number": 2, "contra_token": "T5"},
        {"event": "rejected", "token": "NOPE", "shares": 0, "price": 0, "reason": "u"},
        {"stock": "MSFT", "stock_locate": 2, "bids": [[500000, 7, 1]], "asks": []},
    ]


def test_finished_token_reenters_and_rejects_carry_reasons(tmp_path):
    out = outputs(run(tmp_path, [
        enter("A", "B", 10, 1000000, tif="ioc"),
        enter("A", "B", 10, 1000000),
        enter("A", "B", 10, 1000000),
        enter("B", "S", 10, 1000050),
        enter("C", "S", 0, 1000000),
        enter("D", "B", 10, 1000000, tif="day", min_qty=5),
    ]))
    assert [(o["event"], o["token"], o.get("reason")) for o in out[:-1]] == [
        ("accepted", "A", None), ("canceled", "A", "I"),
        ("accepted", "A", None),
        ("rejected", "A", "d"),
        ("rejected", "B", "X"), ("rejected", "C", "Z"), ("rejected", "D", "N")]
    assert out[-1] == {"stock": "AAPL", "stock_locate": 1, "bids": [[1000000, 10, 1]],
                       "asks": []}


def test_end_of_day_and_itch_output(tmp_path):
    itch_path = tmp_path / "out.itch"
    result = run(tmp_path, [enter("T1", "B", 10, 1000000), enter("T2", "S", 4, 1000000, "X")],
                 "--itch", str(itch_path))
    out = outputs(result)
    assert out[-1]["bids"] == [[1000000, 6, 1]]
    messages = [m for _, m in itch.iter_binaryfile(itch_path.read_bytes())]
    assert [m.type for m in messages] == ["S", "R", "A", "E"]
    book = BookBuilder().apply_all(messages)
    assert list(book.book_lines()) == [out[-1]]
    out = outputs(run(tmp_path, [enter("T1", "B", 10, 1000000)], "--end-of-day"))
    assert out == [
        {"event": "accepted", "token": "T1", "stock": "AAPL", "side": "B", "shares": 10,
         "price": 1000000},
        {"event": "canceled", "token": "T1", "stock": "AAPL", "side": "B", "shares": 10,
         "price": 1000000, "reason": "E"},
        {"event": "closed"}]


def test_capacity_option(tmp_path):
    out = outputs(run(tmp_path, [enter("T1", "B", 10, 1000000), enter("T2", "B", 10, 1000000)],
                      "--capacity", "1"))
    assert out[1] == {"event": "rejected", "token": "T2", "shares": 10, "price": 1000000,
                      "reason": "f"}


@pytest.mark.parametrize(("lines", "message"), [
    (['{"action": "enter",'], "line 1: bad JSON"),
    (["", "[1, 2]"], "line 2: expected a JSON object"),
    ([{"token": "T"}], "line 1: missing field 'action'"),
    ([{"action": "modify"}], "line 1: bad value for 'action'"),
    ([{"action": "cancel", "token": "T", "shares": 0, "colour": 1}], "unknown field 'colour'"),
    ([{"action": "cancel", "token": "T"}], "line 1: missing field 'shares' for cancel"),
    ([{"action": "cancel", "token": "T", "shares": -1}], "bad value for 'shares'"),
    ([{"action": "cancel", "token": "T", "shares": 1.5}], "bad value for 'shares'"),
    ([{"action": "cancel", "token": "T", "shares": True}], "bad value for 'shares'"),
    ([{"action": "cancel", "token": "", "shares": 0}], "bad value for 'token'"),
    ([{"action": "cancel", "token": "T" * 15, "shares": 0}], "bad value for 'token'"),
    ([enter("T", "X", 1, 1000000)], "line 1: bad value for 'side'"),
    ([enter("T", "B", 1, 1000000, tif="gtc")], "bad value for 'tif'"),
    ([enter("T", "B", 1, 1000000, type="stop")], "bad value for 'type'"),
    ([enter("T", "B", 1, 1000000, stock="TOOLONGSTOCK")], "bad value for 'stock'"),
    ([enter("T", "B", 1, 1000000, firm="FIVE5")], "bad value for 'firm'"),
    ([enter("T", "B", 1, None)], "missing field 'price' for a limit order"),
    ([enter("T", "B", 1, 1000000), enter("U", "B", 1, 2**32)], "line 2: bad value for 'price'"),
])
def test_bad_input_is_one_clear_line(tmp_path, lines, message):
    result = run(tmp_path, lines)
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: ")


def test_missing_file(tmp_path):
    result = CliRunner().invoke(main, ["match", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 1 and "no such file" in result.output
    result = CliRunner().invoke(main, ["match", str(tmp_path)])
    assert result.exit_code == 1 and "is a directory" in result.output
