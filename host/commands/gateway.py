"""``tickpath gateway run``: serve FIX 4.2 and/or OUCH 4.2 (SoupBinTCP) order entry through the
host order path (risk checks, audit journal, golden matching engine, positions)::

    tickpath gateway run --fix 127.0.0.1:9878 --fix-session CLIENT1:ACC1:F1 \\
        --ouch 127.0.0.1:9879 --ouch-user U1:secret:F1:ACC1 --store /var/lib/tickpath/gw \\
        --journal /var/lib/tickpath/audit --risk risk.toml --control /run/tickpath \\
        --metrics 127.0.0.1:9100

Acknowledgements leave only after the journal made the action durable. ``tickpath kill|unkill
--control DIR`` and ``tickpath risk reload --control DIR`` (or SIGHUP) act on the running
process; see :mod:`tickpath.host.gateway.daemon`.
"""

from __future__ import annotations

import asyncio
import pathlib
import sys

import click

from tickpath.host.cli import UserError
from tickpath.host.gateway.fix import FixSessionConfig
from tickpath.host.gateway.ouch import OuchUser


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
@click.option("--journal", "journal_dir", required=True,
              type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Audit journal directory (created if missing, appended to if not).")
@click.option("--risk", "risk_file", type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="Risk limits (TOML); without it every check is off.")
@click.option("--control", "control_dir", envvar="TICKPATH_CONTROL",
              type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Control directory watched for `tickpath kill|unkill` and "
                   "`tickpath risk reload` (env TICKPATH_CONTROL).")
@click.option("--metrics", "metrics_addr",
              help="Serve Prometheus metrics on HOST:PORT (/metrics).")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
def run(fix_addr, fix_comp_id, fix_sessions, ouch_addr, ouch_users, ouch_session, store,
        cancel_on_disconnect, journal_dir, risk_file, control_dir, metrics_addr,
        duration) -> None:
    """Serve order entry; print one JSON line when listening, one per kill, unkill and reload,
    and one with counters at exit."""
    from tickpath.host.audit import JournalError
    from tickpath.host.gateway.daemon import GatewayOptions, serve
    from tickpath.host.risk import ConfigError

    if not fix_addr and not ouch_addr:
        raise UserError("nothing to serve: give --fix and/or --ouch")
    if fix_addr and not fix_sessions:
        raise UserError("--fix needs at least one --fix-session")
    if ouch_addr and not ouch_users:
        raise UserError("--ouch needs at least one --ouch-user")
    if len(ouch_session) > 10:
        raise UserError("--ouch-session: at most 10 characters")
    options = GatewayOptions(
        journal_dir=journal_dir,
        fix_at=_addr(fix_addr, "--fix") if fix_addr else None, fix_comp_id=fix_comp_id,
        fix_sessions=[_fix_session(v, cancel_on_disconnect) for v in fix_sessions],
        ouch_at=_addr(ouch_addr, "--ouch") if ouch_addr else None,
        ouch_users=[_ouch_user(v, cancel_on_disconnect) for v in ouch_users],
        ouch_session=ouch_session, store=store, risk_file=risk_file, control_dir=control_dir,
        metrics_at=_addr(metrics_addr, "--metrics") if metrics_addr else None)

    def echo(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    try:
        status = asyncio.run(serve(options, duration, echo=echo))
    except ConfigError as e:
        raise UserError(str(e)) from None
    except JournalError as e:
        raise UserError(f"--journal {journal_dir}: {e}") from None
    except OSError as e:
        raise UserError(f"cannot listen: {e.strerror or e}") from None
    if status:
        sys.exit(status)


if __name__ == "__main__":
    command()
