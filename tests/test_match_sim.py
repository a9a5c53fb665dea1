"""``tickpath match ORDERS --engine sim``: the gateware matching engine (hdl/matching) simulated by
Verilator on the fast harness prints exactly what ``--engine model`` prints: every event, the
final book (read back through the engine's peek port), the end-of-day expiries and the ITCH 5.0
bytes, on long seeded random streams with heavy crossing, partial fills, self-match, IOC, FOK,
market and min-qty orders, cancels, replaces and bad fields. Where the gateware's tables are
full and the model would go on, the sim engine stops with one clear line; bad input gives the
same one-line error in both engines.

The first run builds two simulators (default sizes, and ``--capacity 32``), a few minutes each;
they are cached in build/harness/.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter

import pytest
from click.testing import CliRunner

from tickpath.host.cli import main
from tickpath.protocol import itch
from tickpath.protocol.records import Action, Order, OrderType, Side, TimeInForce
from tickpath.sim.common.runner import toolchain_environment
from tickpath.sim.matching.stimulus import random_actions, stock_name


def _have_verilator():
    with toolchain_environment():
        return shutil.which("verilator") is not None


pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(not _have_verilator(), reason="verilator is not installed")]

#: The stocks of every file here (one simulator build per set of stocks): the random streams'
#: four symbols and the two that stimulus.py's faults name.
STOCKS = [stock_name(s) for s in range(6)]
_TIF = {TimeInForce.Day: "day", TimeInForce.Ioc: "ioc", TimeInForce.Fok: "fok"}


def order_line(o: Order) -> dict:
    """The ``tickpath match`` JSON line of a random action (tokens ``T<id>``, firms ``F<id>``)."""
    if o.action is Action.Cancel:
        return {"action": "cancel", "token": f"T{o.order_id}", "shares": o.shares}
    if o.action is Action.Replace:
        return {"action": "replace", "token": f"T{o.order_id}",
                "new_token": f"T{o.new_order_id}", "shares": o.shares, "price": o.price}
    return {"action": "enter", "token": f"T{o.order_id}", "firm": f"F{o.firm}",
            "side": "B" if o.side is Side.Buy else "S", "shares": o.shares,
            "stock": stock_name(o.symbol), "price": o.price, "tif": _TIF[o.tif],
            "type": "market" if o.ord_type is OrderType.Market else "limit",
            "min_qty": o.min_qty}


def enter(token, side, shares, price, stock="SYM0", firm="ACME", **kw):
    return {"action": "enter", "token": token, "firm": firm, "side": side, "shares": shares,
            "stock": stock, "price": price, **kw}


#: One IOC order per stock that finds nothing to trade: names every stock of STOCKS.
PREFIX = [enter(f"P{i}", "B", 1, 1_000_000, stock=s, tif="ioc") for i, s in enumerate(STOCKS)]


def write(tmp_path, lines, name="orders.jsonl"):
    path = tmp_path / name
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def match(path, engine, *args):
    return CliRunner().invoke(main, ["match", str(path), "--engine", engine, *args])


def both(tmp_path, path, *args):
    """stdout and ITCH bytes of both engines (both must succeed)."""
    out = {}
    for engine in ("model", "sim"):
        itch_path = tmp_path / f"{engine}.itch"
        result = match(path, engine, "--itch", str(itch_path), *args)
        assert result.exit_code == 0, f"{engine}: {result.output}{result.exception!r}"
        out[engine] = (result.stdout, itch_path.read_bytes())
    return out


def kinds(stdout: str) -> Counter:
    c = Counter()
    for line in stdout.splitlines():
        obj = json.loads(line)
        if "event" in obj:
            c[obj["event"] + ("/" + obj["reason"] if "reason" in obj else "")] += 1
    return c


@pytest.mark.parametrize(("seed", "count", "options"), [
    (1, 20_000, ("--end-of-day",)),
    (2, 8_000, ("--capacity", "32")),
])
def test_random_stream_equals_model(tmp_path, seed, count, options):
    actions = random_actions(random.Random(seed), count, symbols=4, token_bits=10, prices=12)
    path = write(tmp_path, PREFIX + [order_line(o) for o in actions])
    out = both(tmp_path, path, *options)
    (model_out, model_itch), (sim_out, sim_itch) = out["model"], out["sim"]
    assert sim_out.splitlines() == model_out.splitlines()
    assert sim_itch == model_itch
    seen = kinds(model_out)
    want = {"accepted", "executed", "replaced", "canceled/I", "canceled/Q", "canceled/U",
            "rejected/d", "rejected/u", "rejected/X", "rejected/Z", "rejected/N"}
    if "--end-of-day" in options:
        want |= {"canceled/E", "closed"}
        assert sum(1 for _, m in itch.iter_binaryfile(model_itch) if m.type == "S") == 2
    if "--capacity" in options:
        want.add("rejected/f")
    assert want <= set(seen), want - set(seen)
    assert {m.type for _, m in itch.iter_binaryfile(model_itch)} >= {"S", "R", "A", "E", "X",
                                                                     "D", "U"}
    assert json.loads(model_out.splitlines()[-1]).get("stock_locate") or "--end-of-day" in options


def test_full_order_store(tmp_path):
    """4,097 resting orders: with ``--capacity 4096`` both engines reject the last ``f``;
    without it the model takes it and the gateware (4,096 slots) stops with one line."""
    lines = PREFIX + [enter(f"B{i}", "B", 100, 1_000_000 + 100 * (i % 16)) for i in range(4097)]
    lines += [{"action": "cancel", "token": "B5", "shares": 0},
              enter("LAST", "S", 250, 1_000_000, firm="BETA")]
    path = write(tmp_path, lines)
    out = both(tmp_path, path, "--capacity", "4096")
    assert out["sim"] == out["model"]
    assert '"reason": "f"' in out["model"][0]
    result = match(path, "sim")
    assert result.exit_code == 1
    assert result.output == (f"Error: line {len(PREFIX) + 4097}: the simulated gateware holds "
                             "4096 resting orders (give --capacity to limit the model alike)\n")
    assert match(path, "model").exit_code == 0


def test_price_levels_per_side(tmp_path):
    """The gateware holds 16 price levels a book side: the 17th is an error naming its line,
    for an enter and for a replace that moves an order to a new price."""
    lines = PREFIX + [enter(f"B{i}", "B", 100, 1_000_000 + 100 * i) for i in range(16)]
    lines.append(enter("B3x", "B", 100, 1_000_300))       # B3's level outlives B3's replace
    path = write(tmp_path, lines + [enter("S1", "S", 10, 2_000_000)])
    out = both(tmp_path, path)
    assert out["sim"] == out["model"]
    for extra in (enter("B99", "B", 100, 900_000),
                  {"action": "replace", "token": "B3", "new_token": "B3b", "shares": 100,
                   "price": 900_000}):
        path = write(tmp_path, lines + [extra])
        result = match(path, "sim")
        assert result.output == (f"Error: line {len(lines) + 1}: the simulated gateware holds "
                                 "16 price levels per side of a stock; this order needs "
                                 "another\n")
        assert match(path, "model").exit_code == 0


@pytest.mark.parametrize(("lines", "message"), [
    (['{"action": "enter",'], "Error: line 1: bad JSON"),
    ([enter("T", "B", 1, 1_000_000), "[1]"], "Error: line 2: expected a JSON object"),
    ([enter("T", "X", 1, 1_000_000)], "Error: line 1: bad value for 'side'"),
    ([enter("T", "B", 1, None)], "Error: line 1: missing field 'price' for a limit order"),
    ([{"action": "cancel", "token": "T", "shares": -1}], "Error: line 1: bad value for 'shares'"),
])
def test_bad_input_same_error(tmp_path, lines, message):
    path = write(tmp_path, lines)
    results = [match(path, engine) for engine in ("model", "sim")]
    assert results[0].output == results[1].output
    assert results[0].exit_code == results[1].exit_code == 1
    assert results[0].output.startswith(message) and results[0].output.count("\n") == 1


def test_more_stocks_or_tokens_than_the_gateware_holds(tmp_path):
    path = write(tmp_path, [enter(f"T{i}", "B", 1, 1_000_000, stock=f"S{i}") for i in range(65)])
    result = match(path, "sim")
    assert result.output == ("Error: line 65: more than 64 stocks (the simulated gateware's "
                             "limit)\n")
    assert match(path, "model").exit_code == 0
    path = write(tmp_path, [{"action": "cancel", "token": f"T{i}", "shares": 0}
                            for i in range(1 << 16)])
    result = match(path, "sim")
    assert result.output == ("Error: line 65536: more than 65535 tokens (the simulated "
                             "gateware's limit)\n")
