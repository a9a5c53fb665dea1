"""``tickpath orders run ORDERS --risk risk.toml --journal DIR``: push an order file through the
host order path (risk checks, audit journal, engine, positions) without a network.

ORDERS is the JSON-lines format of ``tickpath match`` (:mod:`tickpath.host.commands.match`,
whose translator is reused as is), with optional fields on each line:

``account``
    the account of an enter (default: its firm); risk limits are per account.
``session``
    the session that sent the action (default ``"default"``); rate limits and kills per session.
``ts_ns``
    the action's time in ns, as the rate limiters see it (default: the host's monotonic clock).

and operator lines:

``{"action": "kill"}``, ``{"action": "kill", "account": "A"}``, ``{"action": "kill", "session":
"S"}`` engage the kill switch (block new orders, cancel every resting order in scope: those
cancels are printed as events with reason ``S``, then one ``{"event": "kill", ...}`` line with
the count and the time from command to last cancel); ``{"action": "unkill", ...}`` releases the
same scope; ``{"action": "reload"}`` re-reads the ``--risk`` file (a bad file keeps the old
limits and says why).

stdout: the engine's events exactly as ``tickpath match`` prints them, plus one ``{"event":
"risk_reject", "token": ..., "reason": ...}`` line (and ``"new_token"`` for a replace) for each
action the risk checks stop, then the final book. Nothing is printed before the journal has made
it durable.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import click

from tickpath.engine import ModelEngine
from tickpath.host.cli import UserError
from tickpath.protocol.records import Action

_NAMES = ("account", "session")
_OPERATOR = {"kill", "unkill", "reload"}
_BATCH = 4096          # actions between durability waits (and prints)


def _name(obj: dict, key: str, line: int) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not 1 <= len(v) <= 16 or not v.isascii() or v != v.strip() \
            or not v.isprintable():
        raise UserError(f"line {line}: bad value for {key!r}: {v!r} (expected 1 to 16 ASCII "
                        "characters, no surrounding spaces)")
    return v


class _Runner:
    def __init__(self, path, translator, holder, kill_file, engine):
        self.path, self.translator, self.holder = path, translator, holder
        self.kill_file, self.engine = kill_file, engine
        self.reference = path.risk.reference
        self.itch_seen = 0
        self.out: list[str] = []
        self.kill_state = None

    def _feed_reference(self) -> None:
        messages = self.engine.itch_messages()
        apply = self.reference.apply
        for i in range(self.itch_seen, len(messages)):
            apply(messages[i])
        self.itch_seen = len(messages)

    def _emit_events(self, events) -> None:
        event, out = self.translator.event, self.out
        for e in events:
            out.append(json.dumps(event(e)))

    def _flush(self) -> None:
        self.path.flush()                 # durable before anyone sees it
        for line in self.out:
            click.echo(line)
        self.out.clear()

    async def _kill(self, kill: bool, account: str | None, session: str | None) -> None:
        scope = {"scope": "account" if account is not None else
                 "session" if session is not None else "global"}
        if account is not None:
            scope["account"] = account
        if session is not None:
            scope["session"] = session
        if not kill:
            self.path.unkill(account=account, session=session)
            self.out.append(json.dumps({"event": "unkill", **scope}))
            return
        report = await self.path.kill(account=account, session=session, durable=False)
        self._emit_events(report.events)
        self._feed_reference()
        self.out.append(json.dumps({"event": "kill", **scope,
                                    "orders_canceled": report.orders_canceled,
                                    "time_to_last_cancel_ns": report.time_to_last_cancel_ns}))

    async def _poll_control(self) -> None:
        from tickpath.host.orders.control import KillState, diff
        try:
            state = self.kill_file.poll()
        except ValueError as e:
            raise UserError(str(e)) from None
        if state is None:
            return
        old = self.kill_state or KillState()
        self.kill_state = state
        for kill, account, session in diff(old, state):
            await self._kill(kill, account, session)

    async def run(self, lines: list[tuple[int, Any]], end_of_day: bool) -> None:
        from tickpath.host.orders.path import Submission
        path, translator = self.path, self.translator
        for count, (number, obj) in enumerate(lines, 1):
            if self.kill_file is not None:
                await self._poll_control()
            if not isinstance(obj, dict):
                raise UserError(f"line {number}: expected a JSON object, "
                                f"got {type(obj).__name__}")
            action = obj.get("action")
            if action in _OPERATOR:
                await self._operator(action, obj, number)
            else:
                obj = dict(obj)
                account = _name(obj, "account", number)
                session = _name(obj, "session", number) or "default"
                ts = obj.pop("ts_ns", None)
                if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)
                                       or ts < 0):
                    raise UserError(f"line {number}: bad value for 'ts_ns': {ts!r} "
                                    "(expected a non-negative integer)")
                for key in _NAMES:
                    obj.pop(key, None)
                order = translator.order(obj, number)
                if order.action is Action.Enter:
                    client_id = obj["token"]
                    account = account or obj["firm"]
                elif order.action is Action.Replace:
                    client_id = obj["new_token"]
                else:
                    client_id = obj["token"]
                events = await path.submit(order, Submission(session, account or "", client_id),
                                           now_ns=ts, durable=False)
                reason = path.last_risk_reason
                if reason is not None:
                    line = {"event": "risk_reject", "token": obj["token"], "reason": str(reason)}
                    if order.action is Action.Replace:
                        line["new_token"] = obj["new_token"]
                    self.out.append(json.dumps(line))
                else:
                    self._emit_events(events)
                    self._feed_reference()
            if count % _BATCH == 0:
                self._flush()
        if end_of_day:
            self._emit_events(await path.end_of_day(durable=False))
        for line in self.engine.book_lines():
            self.out.append(json.dumps(line))
        self._flush()

    async def _operator(self, action: str, obj: dict, number: int) -> None:
        allowed = {"action"} if action == "reload" else {"action", "account", "session"}
        for key in obj:
            if key not in allowed:
                raise UserError(f"line {number}: unknown field {key!r} for {action}")
        if action == "reload":
            if self.holder.path is None:
                raise UserError(f"line {number}: reload needs --risk FILE")
            ok, errors = self.path.reload(self.holder)
            self.out.append(json.dumps({"event": "reload", "ok": ok, "errors": errors}))
            return
        await self._kill(action == "kill", _name(obj, "account", number),
                         _name(obj, "session", number))


@click.group()
def command() -> None:
    """The host order path: risk, audit journal, engine, positions."""


@command.command("run")
@click.argument("orders", type=click.Path(path_type=pathlib.Path))
@click.option("--risk", "risk_file", type=click.Path(path_type=pathlib.Path),
              help="Risk limits (TOML); without it every check is off.")
@click.option("--journal", "journal_dir", required=True,
              type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Audit journal directory (created if missing, appended to if not).")
@click.option("--engine", "engine_name", type=click.Choice(["model"]), default="model",
              show_default=True, help="What matches: the golden model.")
@click.option("--capacity", type=click.IntRange(min=0), default=None,
              help="Most resting orders the engine holds (default unlimited).")
@click.option("--end-of-day", is_flag=True, help="Expire day orders after the last action.")
@click.option("--control", "control_dir", type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Watch DIR/kill.json for `tickpath kill --control DIR` while running.")
def run(orders: pathlib.Path, risk_file: pathlib.Path | None, journal_dir: pathlib.Path,
        engine_name: str, capacity: int | None, end_of_day: bool,
        control_dir: pathlib.Path | None) -> None:
    """Run ORDERS (JSON lines, `tickpath match` format plus optional account, session, ts_ns,
    and kill/unkill/reload lines) through risk, journal, engine and positions; print the events,
    a risk_reject line per refused action, then the book."""
    from tickpath.host.audit import Journal, JournalError
    from tickpath.host.commands.match import Translator, read_json_lines
    from tickpath.host.orders.control import KillFile
    from tickpath.host.orders.path import OrderPath
    from tickpath.host.risk import BookReference, ConfigError, ConfigHolder, RiskChecker

    try:
        holder = ConfigHolder(risk_file)
    except ConfigError as e:
        raise UserError(str(e)) from None
    lines = read_json_lines(orders)
    engine = ModelEngine(capacity=capacity)
    risk = RiskChecker(holder.config, BookReference())
    try:
        journal = Journal.open(journal_dir)
    except (JournalError, OSError) as e:
        raise UserError(f"--journal {journal_dir}: {e}") from None
    try:
        path = OrderPath(engine, risk, journal, venue=engine_name)
        path.journal_config(holder)
        translator = Translator(path)       # its set_symbol reaches the engine through the path
        kill_file = None if control_dir is None else KillFile(control_dir)
        runner = _Runner(path, translator, holder, kill_file, engine)
        asyncio.run(runner.run(lines, end_of_day))
    finally:
        journal.close()


@command.command("list")
@click.option("--journal", "journal_dir", required=True,
              type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Audit journal directory.")
@click.option("--account", help="Only this account.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per open order.")
def list_orders(journal_dir: pathlib.Path, account: str | None, as_json: bool) -> None:
    """Open orders, rebuilt from the audit journal (accepted, less fills and cancels, through
    replaces), by internal order id."""
    from tickpath.host.audit import JournalError
    from tickpath.host.commands.audit import print_table
    from tickpath.host.orders.recover import read_state
    try:
        state = read_state(journal_dir)
    except (JournalError, OSError) as e:
        raise UserError(f"{journal_dir}: {e}") from None
    rows = [o.as_dict() for o in sorted(state.open.values(), key=lambda o: o.order_id)
            if account is None or o.account == account]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    head = ("order_id", "client_id", "account", "session", "stock", "side", "price", "open",
            "filled")
    print_table(head, [(r["order_id"], r["client_id"], r["account"], r["session"], r["stock"],
                        r["side"], _price(r["price"]), r["open"], r["filled"]) for r in rows],
                left=6)
    click.echo(f"{len(rows)} open order{'s' if len(rows) != 1 else ''}")


def _price(ticks: int) -> str:
    return f"{ticks // 10_000}.{ticks % 10_000:04d}"
