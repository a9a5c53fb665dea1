"""The gateway process: FIX and OUCH sessions on the real host order path.

::

    OrderHub(OrderPath(engine, RiskChecker(config, reference), Journal.open(dir), positions))

Start
    The journal is opened (a torn tail is trimmed) and read: fills rebuild positions and the
    risk checker's account state, internal order ids continue above the highest one used,
    and the orders the journal still holds open are journaled canceled (reason ``S``, detail
    ``restart``): the engine starts empty, so they rest nowhere. The risk configuration in
    force is journaled.
Acknowledgements
    :meth:`OrderPath.submit` returns only once the journal made the action's records durable
    (group commit); the hub routes the events (writes the acknowledgements) after that.
Control directory (``--control DIR``)
    ``DIR/kill.json`` (written by ``tickpath kill|unkill --control DIR``) is polled every
    ``control_poll`` seconds; a change is applied under the hub's lock (no client action in
    between): kill or unkill, journaled, the kill's cancels routed to the sessions that own
    the orders (FIX ExecutionReport canceled, OUCH Canceled reason ``S``).
    ``DIR/reload.request`` (written by ``tickpath risk reload --control DIR``) asks for the
    risk file to be re-read; the answer goes to ``DIR/reload.result.json``. SIGHUP reloads too.
    A bad file keeps the old limits; either way the attempt is journaled.
Stop
    SIGINT/SIGTERM or ``duration``: the gateways close (cancel-on-disconnect runs through the
    order path), the journal commits and closes. A journal failure stops the process (exit 3):
    nothing more can be acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import time
from collections.abc import Callable
from typing import Any

from tickpath.engine import ModelEngine
from tickpath.host.audit import Journal, JournalError
from tickpath.host.gateway.fix import FixAcceptor, FixSessionConfig
from tickpath.host.gateway.hub import OrderHub
from tickpath.host.gateway.ouch import OuchServer, OuchUser
from tickpath.host.orders.control import KillFile, KillState, diff
from tickpath.host.orders.path import OrderPath
from tickpath.host.orders.recover import read_state, restart_cancels
from tickpath.host.positions import Positions
from tickpath.host.risk import BookReference, ConfigHolder, RiskChecker
from tickpath.protocol.records import Side

__all__ = ["GatewayOptions", "Gateway", "RELOAD_REQUEST", "RELOAD_RESULT", "write_atomic"]

RELOAD_REQUEST = "reload.request"
RELOAD_RESULT = "reload.result.json"
_SIDES = {"B": Side.Buy, "S": Side.Sell}


def write_atomic(path: pathlib.Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclasses.dataclass
class GatewayOptions:
    journal_dir: pathlib.Path
    fix_at: tuple[str, int] | None = None
    fix_comp_id: str = "TICKPATH"
    fix_sessions: list[FixSessionConfig] = dataclasses.field(default_factory=list)
    ouch_at: tuple[str, int] | None = None
    ouch_users: list[OuchUser] = dataclasses.field(default_factory=list)
    ouch_session: str = "TICKPATH"
    store: pathlib.Path | None = None
    risk_file: pathlib.Path | None = None
    control_dir: pathlib.Path | None = None
    control_poll: float = 0.005
    metrics_at: tuple[str, int] | None = None
    venue: str = "model"
    commit_interval: float = 0.001      # the journal's group commit (at most 1 ms of batching)


class _GuardedPath:
    """The order path as the hub's sink; a journal failure stops the process."""

    def __init__(self, path: OrderPath, on_fatal: Callable[[BaseException], None]):
        self.path = path
        self._on_fatal = on_fatal

    def set_symbol(self, symbol: int, stock: str) -> None:
        self.path.set_symbol(symbol, stock)

    async def submit(self, order, ctx):
        try:
            return await self.path.submit(order, ctx)
        except JournalError as e:
            self._on_fatal(e)
            raise


class Gateway:
    """One gateway process's worth of state; :meth:`start`, then :meth:`run` until stopped."""

    def __init__(self, options: GatewayOptions, *, echo: Callable[[str], None] = print):
        self.options = options
        self.echo = echo
        self.holder = ConfigHolder(options.risk_file)      # ConfigError: the caller's
        self.journal = Journal.open(options.journal_dir,   # JournalError: the caller's
                                    commit_interval=options.commit_interval)
        self.fatal: BaseException | None = None
        self.stop = asyncio.Event()
        try:
            self._build()
        except BaseException:
            self.journal.close()
            raise

    def _build(self) -> None:
        o = self.options
        state = read_state(o.journal_dir)
        self.engine = ModelEngine()
        self.reference = BookReference()
        self.risk = RiskChecker(self.holder.config, self.reference)
        self.positions = Positions()
        for account, symbol, side, shares, price in state.fills:
            self.positions.apply_fill(account, symbol, side, shares, price)
            self.risk.on_fill(account, symbol, _SIDES[side], shares, price)
            self.reference.trade(symbol, price)
        self.path = OrderPath(self.engine, self.risk, self.journal, self.positions,
                              venue=o.venue)
        self.path.journal_config(self.holder)
        self.restart_canceled = restart_cancels(self.journal, state, venue=o.venue)
        self.first_order_id = state.max_order_id + 1
        self.hub = OrderHub(_GuardedPath(self.path, self._fatal),
                            first_order_id=self.first_order_id)
        self.path.unsolicited.append(self.hub.unsolicited)
        self._itch_seen = 0
        self.hub.observers.append(self._feed_reference)
        self.metrics = None
        if o.metrics_at is not None:
            from tickpath.host.gateway.metrics import GatewayMetrics
            self.metrics = GatewayMetrics(self.path, self.journal)
            self.hub.observers.append(self.metrics.observe)
        self.kill_file = None if o.control_dir is None else KillFile(o.control_dir)
        self.kill_state = KillState()
        self._reload_seen: tuple[int, int, int] | None = None
        self.fix: FixAcceptor | None = None
        self.ouch: OuchServer | None = None
        self.counters: dict[str, int] = {"kills": 0, "unkills": 0, "reloads": 0}

    def _fatal(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
            self.echo(json.dumps({"event": "fatal", "error": str(exc)}))
        self.stop.set()

    def _feed_reference(self, *_: Any) -> None:
        messages = self.engine.itch_messages()
        apply = self.reference.apply
        for i in range(self._itch_seen, len(messages)):
            apply(messages[i])
        self._itch_seen = len(messages)

    # --- start / run / close -------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        o = self.options
        ready: dict[str, Any] = {"pid": os.getpid(), "first_order_id": self.first_order_id,
                                 "restart_canceled": self.restart_canceled}
        await self.journal.wait_durable_async(self.journal.last_seq)
        if self.kill_file is not None:
            o.control_dir.mkdir(parents=True, exist_ok=True)
            await self.poll_control()             # a kill in force before the start holds
        if o.fix_at:
            self.fix = FixAcceptor(self.hub, o.fix_comp_id, o.fix_sessions,
                                   store_dir=o.store / "fix" if o.store else None)
            ready["fix_port"] = await self.fix.start(*o.fix_at)
        if o.ouch_at:
            self.ouch = OuchServer(self.hub, o.ouch_users, session=o.ouch_session,
                                   store_dir=o.store / "ouch" if o.store else None)
            ready["ouch_port"] = await self.ouch.start(*o.ouch_at)
        if self.metrics is not None and o.metrics_at is not None:
            ready["metrics_port"] = self.metrics.serve(*o.metrics_at)
        return ready

    async def run(self, duration: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP,
                                    lambda: loop.create_task(self.reload("sighup")))
        poller = loop.create_task(self._control_loop()) if self.kill_file is not None else None
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), duration)
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await poller

    async def close(self) -> dict[str, Any]:
        for server in (self.fix, self.ouch):
            if server is not None:
                with contextlib.suppress(JournalError):
                    await server.close()
        if self.metrics is not None:
            self.metrics.close()
        self.journal.close()
        return {"event": "stopped", "hub": dict(self.hub.counters),
                "fix": dict(self.fix.counters) if self.fix else {},
                "ouch": dict(self.ouch.counters) if self.ouch else {},
                "gateway": self.counters, "journal_records": self.journal.last_seq}

    # --- control ---------------------------------------------------------------------------

    async def _control_loop(self) -> None:
        poll = self.options.control_poll
        while not self.stop.is_set():           # ends when stopped (or cancelled)
            await asyncio.sleep(poll)
            try:
                await self.poll_control()
            except JournalError as e:
                self._fatal(e)
                return

    async def poll_control(self) -> None:
        """Apply a changed kill file; answer a reload request."""
        assert self.kill_file is not None
        try:
            state = self.kill_file.poll()
        except ValueError as e:                 # a hand-edited bad file: keep the state
            self.echo(json.dumps({"event": "control_error", "error": str(e)}))
            state = None
        if state is not None:
            old, self.kill_state = self.kill_state, state
            for kill, account, session in diff(old, state):
                await self.kill(kill, account=account, session=session)
        request = self.kill_file.directory / RELOAD_REQUEST
        try:
            st = request.stat()
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            return
        if stamp != self._reload_seen:
            first = self._reload_seen is None
            self._reload_seen = stamp
            try:
                rid = request.read_text(encoding="utf-8").strip()
            except OSError:
                rid = ""
            result_path = self.kill_file.directory / RELOAD_RESULT
            if first and result_path.exists():
                with contextlib.suppress(OSError, ValueError):
                    if json.loads(result_path.read_text()).get("request") == rid:
                        return                  # answered before a restart
            ok, errors = await self.reload("control")
            write_atomic(result_path, {"request": rid, "ok": ok, "errors": errors,
                                       "digest": self.holder.config.digest})

    async def kill(self, kill: bool, *, account: str | None = None,
                   session: str | None = None) -> Any:
        scope = ("account" if account is not None else
                 "session" if session is not None else "global")
        line: dict[str, Any] = {"event": "kill" if kill else "unkill", "scope": scope}
        if account is not None:
            line["account"] = account
        if session is not None:
            line["session"] = session
        report = None
        async with self.hub.exclusive():
            if kill:
                report = await self.path.kill(account=account, session=session)
                self._feed_reference()
                line["orders_canceled"] = report.orders_canceled
                line["time_to_last_cancel_ns"] = report.time_to_last_cancel_ns
                self.counters["kills"] += 1
                if self.metrics is not None:
                    self.metrics.observe_kill(report)
            else:
                self.path.unkill(account=account, session=session)
                await self.journal.wait_durable_async(self.journal.last_seq)
                self.counters["unkills"] += 1
        self.echo(json.dumps(line))
        return report

    async def reload(self, source: str) -> tuple[bool, list[str]]:
        async with self.hub.exclusive():
            ok, errors = self.path.reload(self.holder)
            await self.journal.wait_durable_async(self.journal.last_seq)
        self.counters["reloads"] += 1
        self.echo(json.dumps({"event": "reload", "source": source, "ok": ok, "errors": errors,
                              "digest": self.holder.config.digest}))
        return ok, errors


async def serve(options: GatewayOptions, duration: float | None = None, *,
                echo: Callable[[str], None] = print) -> int:
    """Start, print the ``listening`` line, run until stopped, close; the exit status."""
    gateway = Gateway(options, echo=echo)
    try:
        ready = await gateway.start()
    except BaseException:
        await gateway.close()
        raise
    echo(json.dumps({"event": "listening", **ready}))
    started = time.monotonic()
    try:
        await gateway.run(duration)
    finally:
        stopped = await gateway.close()
        stopped["seconds"] = round(time.monotonic() - started, 3)
        echo(json.dumps(stopped))
    return 3 if gateway.fatal is not None else 0
