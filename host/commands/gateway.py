"""``tickpath gateway run``: serve FIX 4.2 and/or OUCH 4.2 (SoupBinTCP) order entry into the
golden matching engine (the host order path replaces :class:`EngineSink` when it lands)::

    tickpath gateway run --fix 127.0.0.1:9878 --fix-session CLIENT1:ACC1:F1 \\
        --ouch 127.0.0.1:9879 --ouch-user U1:secret:F1:ACC1 --store /var/lib/tickpath/gw
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import signal

import click

from tickpath.engine import ModelEngine
from tickpath.host.cli import UserError
from tickpath.host.gateway.fix import FixAcceptor, FixSessionConfig
from tickpath.host.gateway.hub import EngineSink, OrderHub
from tickpath.host.gateway.ouch import OuchServer, OuchUser


def _addr(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise UserError(f"{option}: expected HOST:PORT, got {value!r}")
    return host, int(port)


def _fix_session(value: str, cod: bool) -> FixSessionConfig:
    parts = value.split(":")
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise UserError(f"--fix-session: expected SENDER[:ACCOUNT[:FIRM]], got {value!r}")
    sender, account, firm = (parts + ["", ""])[:3]
    return FixSessionConfig(sender, account or sender, firm or account or sender, cod)


def _ouch_user(value: str, cod: bool) -> OuchUser:
    parts = value.split(":")
    if not 3 <= len(parts) <= 4 or len(parts[0]) > 6 or len(parts[1]) > 10 \
            or not 1 <= len(parts[2]) <= 4:
        raise UserError(f"--ouch-user: expected USER(<=6):PASSWORD(<=10):FIRM(<=4)[:ACCOUNT], "
                        f"got {value!r}")
    account = parts[3] if len(parts) == 4 else parts[2]
    return OuchUser(parts[0], parts[1], parts[2], account, cod)


@click.group()
def command() -> None:
    """Order gateways: FIX 4.2 acceptor and OUCH 4.2 over SoupBinTCP."""


@command.command("run")
@click.option("--fix", "fix_addr", help="FIX 4.2 acceptor address HOST:PORT.")
@click.option("--fix-comp-id", default="TICKPATH", show_default=True,
              help="Our CompID (the clients' TargetCompID).")
@click.option("--fix-session", "fix_sessions", multiple=True,
              help="A FIX client: SENDER[:ACCOUNT[:FIRM]] (repeatable).")
@click.option("--ouch", "ouch_addr", help="OUCH 4.2 / SoupBinTCP address HOST:PORT.")
@click.option("--ouch-user", "ouch_users", multiple=True,
              help="An OUCH login: USER:PASSWORD:FIRM[:ACCOUNT] (repeatable).")
@click.option("--ouch-session", default="TICKPATH", show_default=True,
              help="SoupBinTCP session name (<= 10 characters).")
@click.option("--store", type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Directory for FIX sequence numbers and both gateways' resend stores.")
@click.option("--cancel-on-disconnect/--no-cancel-on-disconnect", default=True,
              show_default=True, help="Cancel a session's orders when it disconnects.")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
def run(fix_addr, fix_comp_id, fix_sessions, ouch_addr, ouch_users, ouch_session, store,
        cancel_on_disconnect, duration) -> None:
    """Serve order entry; print one JSON line when listening and one with counters at exit."""
    if not fix_addr and not ouch_addr:
        raise UserError("nothing to serve: give --fix and/or --ouch")
    if fix_addr and not fix_sessions:
        raise UserError("--fix needs at least one --fix-session")
    if ouch_addr and not ouch_users:
        raise UserError("--ouch needs at least one --ouch-user")
    if len(ouch_session) > 10:
        raise UserError("--ouch-session: at most 10 characters")
    fix_cfg = [_fix_session(v, cancel_on_disconnect) for v in fix_sessions]
    ouch_cfg = [_ouch_user(v, cancel_on_disconnect) for v in ouch_users]
    fix_at = _addr(fix_addr, "--fix") if fix_addr else None
    ouch_at = _addr(ouch_addr, "--ouch") if ouch_addr else None

    async def main() -> None:
        hub = OrderHub(EngineSink(ModelEngine()))
        fix = ouch = None
        ready: dict[str, int] = {}
        try:
            if fix_at:
                fix = FixAcceptor(hub, fix_comp_id, fix_cfg,
                                  store_dir=store / "fix" if store else None)
                ready["fix_port"] = await fix.start(*fix_at)
            if ouch_at:
                ouch = OuchServer(hub, ouch_cfg, session=ouch_session,
                                  store_dir=store / "ouch" if store else None)
                ready["ouch_port"] = await ouch.start(*ouch_at)
        except OSError as e:
            raise UserError(f"cannot listen: {e.strerror}") from None
        click.echo(json.dumps({"event": "listening", **ready}), nl=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
        if fix is not None:
            await fix.close()
        if ouch is not None:
            await ouch.close()
        click.echo(json.dumps({"event": "stopped", "hub": dict(hub.counters),
                               "fix": dict(fix.counters) if fix else {},
                               "ouch": dict(ouch.counters) if ouch else {}}))

    asyncio.run(main())


if __name__ == "__main__":
    command()
