"""``tickpath kill [--account A | --session S]`` and ``tickpath unkill [...]``: engage or release
the kill switch of a running order path through its control file (``--control DIR``, see
:mod:`tickpath.host.orders.control`); ``tickpath orders run --control DIR`` applies it between
two actions (blocks new orders, cancels every resting order in scope, journals it). Within an
``orders run`` input the same is written ``{"action": "kill", "account": "A"}``.

One module serves both names: the CLI maps ``kill`` and ``unkill`` here and the command reads
the name it was called by.
"""

from __future__ import annotations

import json
import pathlib

import click

from tickpath.host.cli import UserError


@click.command()
@click.option("--account", help="Only this account (default: everything).")
@click.option("--session", help="Only this session.")
@click.option("--control", "control_dir", envvar="TICKPATH_CONTROL", default=".tickpath",
              show_default=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Control directory of the running order path (env TICKPATH_CONTROL).")
@click.option("--json", "as_json", is_flag=True, help="Print the new kill state as JSON.")
@click.pass_context
def command(ctx: click.Context, account: str | None, session: str | None,
            control_dir: pathlib.Path, as_json: bool) -> None:
    """Kill switch: block new orders and cancel resting ones (`unkill` releases it)."""
    from tickpath.host.orders.control import KillFile
    kill = ctx.info_name != "unkill"
    if account is not None and session is not None:
        raise UserError("give --account or --session, not both")
    for name, value in (("--account", account), ("--session", session)):
        if value is not None and (not value or len(value) > 16 or not value.isascii()
                                  or value != value.strip()):
            raise UserError(f"bad {name} {value!r} (1 to 16 ASCII characters)")
    kill_file = KillFile(control_dir)
    try:
        state = kill_file.change(kill=kill, account=account, session=session)
    except ValueError as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise UserError(f"{kill_file.path}: {e.strerror}") from None
    if as_json:
        click.echo(json.dumps(state.as_json()))
        return
    scope = (f"account {account}" if account is not None else
             f"session {session}" if session is not None else "everything")
    click.echo(f"{'killed' if kill else 'released'}: {scope} ({kill_file.path}; now killed: "
               f"global {'yes' if state.global_ else 'no'}, accounts "
               f"{', '.join(sorted(state.accounts)) or '-'}, sessions "
               f"{', '.join(sorted(state.sessions)) or '-'})")
