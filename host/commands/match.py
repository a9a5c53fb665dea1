"""``tickpath match ORDERS``: run JSON-lines order actions through an engine, print its events
as JSON lines, then the final book (the ``tickpath book`` format).

One action per line::

    {"action": "enter", "token": "T1", "firm": "ACME", "side": "B", "shares": 100,
     "stock": "AAPL", "price": 1234500, "tif": "day", "type": "limit", "min_qty": 0}
    {"action": "cancel", "token": "T1", "shares": 0}
    {"action": "replace", "token": "T1", "new_token": "T2", "shares": 50, "price": 1234600}

``tif`` (day/ioc/fok, default day), ``type`` (limit/market, default limit) and ``min_qty``
(default 0) are optional; ``price`` is optional for market orders and ignored there. Client
tokens, firms and stocks become internal ids here (a token string keeps its id, so a finished
token may be entered again); the engine's rules are in :mod:`tickpath.model.matching`.

``--engine model`` runs the golden model; ``--engine sim`` the gateware matching engine
(:mod:`tickpath.hdl.matching`) simulated by Verilator on the fast harness
(:mod:`tickpath.sim.harness.matching`), and prints exactly the same. Where the model would go on
but the gateware's tables are full (stocks, tokens, price levels, resting orders without
``--capacity``), it stops with a one-line error naming the line, never a different answer.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import click

from tickpath.engine import Engine, EngineError, ModelEngine
from tickpath.host.cli import UserError
from tickpath.protocol import itch
from tickpath.protocol.records import (
    Action,
    Event,
    EventKind,
    Order,
    OrderType,
    Side,
    TimeInForce,
)

_SIDES = {"B": Side.Buy, "S": Side.Sell}
_TIFS = {"day": TimeInForce.Day, "ioc": TimeInForce.Ioc, "fok": TimeInForce.Fok}
_TYPES = {"limit": OrderType.Limit, "market": OrderType.Market}
_EVENT_NAMES = {EventKind.Accepted: "accepted", EventKind.Executed: "executed",
                EventKind.Canceled: "canceled", EventKind.Replaced: "replaced",
                EventKind.Rejected: "rejected", EventKind.Closed: "closed"}

# action -> (required fields, optional fields with defaults)
_FIELDS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "enter": (("token", "firm", "side", "shares", "stock"),
              {"price": None, "tif": "day", "type": "limit", "min_qty": 0}),
    "cancel": (("token", "shares"), {}),
    "replace": (("token", "new_token", "shares", "price"), {}),
}


class _Ids:
    """Client names -> internal ids 1, 2, 3... (and back)."""

    def __init__(self, what: str, limit: int, first: int = 1, why: str = ""):
        self.what, self.limit, self.first, self.why = what, limit, first, why
        self.ids: dict[str, int] = {}
        self.names: dict[int, str] = {}
        self._next = first

    def get(self, name: str, line: int) -> int:
        found = self.ids.get(name)
        if found is None:
            if self._next >= self.limit:
                raise UserError(f"line {line}: more than {self.limit - self.first} "
                                f"{self.what}s{self.why}")
            found = self.ids[name] = self._next
            self.names[found] = name
            self._next += 1
        return found


class Translator:
    def __init__(self, engine: Engine):
        self.engine = engine
        # an engine with smaller tables says so (the simulated gateware's token table, its
        # symbols): more is an error on the line that needs it, never a different answer
        why = f" ({getattr(engine, 'limits_name', '')})" if hasattr(engine, "limits_name") \
            else ""
        self.tokens = _Ids("token", getattr(engine, "token_limit", 1 << 32), why=why)
        self.firms = _Ids("firm", 1 << 16)
        self.stocks = _Ids("stock", getattr(engine, "symbol_limit", 1 << 16), first=0, why=why)

    def order(self, obj: Any, line: int) -> Order:
        if not isinstance(obj, dict):
            raise UserError(f"line {line}: expected a JSON object, got {type(obj).__name__}")
        action = obj.get("action")
        if action not in _FIELDS:
            if "action" not in obj:
                raise UserError(f"line {line}: missing field 'action'")
            raise UserError(f"line {line}: bad value for 'action': {action!r} "
                            f"(expected one of {', '.join(_FIELDS)})")
        required, optional = _FIELDS[action]
        for key in obj:
            if key != "action" and key not in required and key not in optional:
                raise UserError(f"line {line}: unknown field {key!r} for {action}")
        for key in required:
            if key not in obj:
                raise UserError(f"line {line}: missing field {key!r} for {action}")
        f = {**optional, **obj}

        def text(key: str, longest: int) -> str:
            v = f[key]
            if not isinstance(v, str) or not v or len(v) > longest or not v.isascii() \
                    or v != v.strip():
                raise UserError(f"line {line}: bad value for {key!r}: {v!r} (expected 1 to "
                                f"{longest} ASCII characters, no surrounding spaces)")
            return v

        def number(key: str) -> int:
            v = f[key]
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 32:
                raise UserError(f"line {line}: bad value for {key!r}: {v!r} "
                                "(expected an integer from 0 to 4294967295)")
            return v

        def choice(key: str, table: dict[str, Any]) -> Any:
            v = f[key]
            if not isinstance(v, str) or v not in table:
                raise UserError(f"line {line}: bad value for {key!r}: {v!r} "
                                f"(expected one of {', '.join(table)})")
            return table[v]

        token = self.tokens.get(text("token", 14), line)
        if action == "cancel":
            return Order(action=Action.Cancel, order_id=token, shares=number("shares"))
        if action == "replace":
            return Order(action=Action.Replace, order_id=token,
                         new_order_id=self.tokens.get(text("new_token", 14), line),
                         shares=number("shares"), price=number("price"))
        ord_type = choice("type", _TYPES)
        if f["price"] is None:
            if ord_type is OrderType.Limit:
                raise UserError(f"line {line}: missing field 'price' for a limit order")
            f["price"] = 0
        stock = text("stock", 8)
        symbol = self.stocks.get(stock, line)
        try:
            self.engine.set_symbol(symbol, stock)      # idempotent for a known symbol
        except ValueError as e:
            raise UserError(f"line {line}: {e}") from None
        return Order(action=Action.Enter, side=choice("side", _SIDES), tif=choice("tif", _TIFS),
                     ord_type=ord_type, order_id=token,
                     firm=self.firms.get(text("firm", 4), line), symbol=symbol,
                     shares=number("shares"), price=number("price"),
                     min_qty=number("min_qty"))

    def event(self, e: Event) -> dict[str, Any]:
        kind = e.kind
        out: dict[str, Any] = {"event": _EVENT_NAMES[kind]}
        if kind is EventKind.Closed:
            return out
        out["token"] = self.tokens.names.get(e.order_id)
        if kind is not EventKind.Rejected:
            out["stock"] = self.stocks.names.get(e.symbol)
            out["side"] = "B" if e.side is Side.Buy else "S"
        if kind is EventKind.Replaced:
            out["new_token"] = self.tokens.names.get(e.contra_id)
        out["shares"] = e.shares
        out["price"] = e.price
        if kind is EventKind.Executed:
            out["match_number"] = e.match_number
            out["contra_token"] = self.tokens.names.get(e.contra_id)
        if kind is EventKind.Canceled or kind is EventKind.Rejected:
            out["reason"] = chr(e.reason)
        return out


def read_json_lines(path: pathlib.Path) -> list[tuple[int, Any]]:
    """``(line number, object)`` for each non-blank line of a JSON-lines file; operator errors
    (missing file, not text, bad JSON on line N) as one-line :class:`UserError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: {e.strerror}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except json.JSONDecodeError as e:
            raise UserError(f"line {number}: bad JSON: {e.msg} (column {e.colno})") from None
    return out


def _read_orders(path: pathlib.Path, translator: Translator) -> tuple[list[Order], list[int]]:
    """The actions and the line number of each."""
    lines = read_json_lines(path)
    return [translator.order(obj, number) for number, obj in lines], [n for n, _ in lines]


def _model_engine(capacity: int | None) -> Engine:
    return ModelEngine(capacity=capacity)


def _sim_engine(capacity: int | None) -> Engine:
    """The gateware matching engine simulated by Verilator (tickpath.sim.harness.matching):
    imported here, so that ``--engine model`` never loads Amaranth or the simulator."""
    from tickpath.sim.harness.matching import SimEngine, SimEngineLimit
    try:
        return SimEngine(capacity=capacity)
    except SimEngineLimit as e:
        raise UserError(str(e)) from None


ENGINES = {"model": _model_engine, "sim": _sim_engine}


def _run(engine: Engine, actions: list[Order], lines: list[int], end_of_day: bool):
    """The events of ``actions`` (then end of day) and the final book; an engine's limit
    (``ValueError``, with the action's ``index``) or failure (``EngineError``: a simulator
    that does not build) as a one-line UserError."""
    try:
        events = engine.run(actions)
        if end_of_day:
            events += engine.end_of_day()
        return events, list(engine.book_lines())
    except ValueError as e:
        index = getattr(e, "index", None)
        where = ("" if index is None else f"line {lines[index]}: " if index < len(lines)
                 else "end of day: ")
        raise UserError(f"{where}{e}") from None
    except EngineError as e:                    # e.g. the simulator did not build
        raise UserError(str(e).splitlines()[0]) from None


@click.command()
@click.argument("orders", type=click.Path(path_type=pathlib.Path))
@click.option("--engine", "engine_name", type=click.Choice(sorted(ENGINES)), default="model",
              show_default=True,
              help="What matches: the golden model, or the gateware simulated by Verilator "
                   "(sim: at most 64 stocks, 65535 tokens, 16 price levels a book side, "
                   "4096 resting orders or --capacity; the first run for a set of stocks "
                   "builds the simulator, minutes).")
@click.option("--capacity", type=click.IntRange(min=0), default=None,
              help="Most resting orders the engine holds (default unlimited).")
@click.option("--end-of-day", is_flag=True, help="Expire day orders after the last action.")
@click.option("--itch", "itch_out", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Also write the engine's ITCH 5.0 output here (BinaryFILE).")
def command(orders: pathlib.Path, engine_name: str, capacity: int | None, end_of_day: bool,
            itch_out: pathlib.Path | None) -> None:
    """Run ORDERS (JSON lines, one enter/cancel/replace each) through the matching engine;
    print one JSON line per event, then one book line per stock with resting orders."""
    engine = ENGINES[engine_name](capacity)
    translator = Translator(engine)
    actions, lines = _read_orders(orders, translator)
    events, book = _run(engine, actions, lines, end_of_day)
    for e in events:
        click.echo(json.dumps(translator.event(e)))
    for line in book:
        click.echo(json.dumps(line))
    if itch_out is not None:
        try:
            itch_out.write_bytes(itch.encode_binaryfile(engine.itch_messages()))
        except OSError as e:
            raise UserError(f"{itch_out}: {e.strerror}") from None
