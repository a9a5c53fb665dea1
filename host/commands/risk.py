"""``tickpath risk check FILE`` validates a risk configuration (every problem, one per line, each
naming the key); ``tickpath risk show FILE`` prints the effective limits (a table, or ``--json``).

``reload`` needs a running order path: inside ``tickpath orders run`` input it is the line
``{"action": "reload"}``; the daemon form comes with the gateways.
"""

from __future__ import annotations

import json
import pathlib

import click

from tickpath.host.cli import UserError


def _load(path: pathlib.Path):
    from tickpath.host.risk.config import load_config
    return load_config(path)


@click.group()
def command() -> None:
    """Pre-trade risk configuration."""


@command.command("check")
@click.argument("file", type=click.Path(path_type=pathlib.Path))
def check(file: pathlib.Path) -> None:
    """Validate FILE: print `ok` or every problem (exit 1)."""
    from tickpath.host.risk.config import ConfigError
    try:
        config = _load(file)
    except ConfigError as e:
        for error in e.errors:
            click.echo(f"{file}: {error}")
        n = len(e.errors)
        raise UserError(f"{file}: {n} problem{'s' if n != 1 else ''}") from None
    click.echo(f"{file}: ok (sha256 {config.digest[:16]})")


@command.command("show")
@click.argument("file", type=click.Path(path_type=pathlib.Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def show(file: pathlib.Path, as_json: bool) -> None:
    """Print the limits FILE puts in force (absent limits are off)."""
    from tickpath.host.risk.config import ConfigError
    try:
        config = _load(file)
    except ConfigError as e:
        raise UserError(str(e)) from None
    d = config.as_dict()
    if as_json:
        click.echo(json.dumps(d, sort_keys=True))
        return
    rows: list[tuple[str, str, str]] = []
    for key, value in d["global"].items():
        rows.append(("global", key, _text(value)))
    for key, value in d["session"].items():
        rows.append(("session", key, _text(value)))
    for name, body in d["account"].items():
        for key, value in body.items():
            if key != "symbol":
                rows.append((f"account.{name}", key, _text(value)))
        for sym, limits in body["symbol"].items():
            for key, value in limits.items():
                rows.append((f"account.{name}.symbol.{sym}", key, _text(value)))
    for name, limits in d["symbol"].items():
        for key, value in limits.items():
            rows.append((f"symbol.{name}", key, _text(value)))
    widths = [max(len(r[i]) for r in rows + [("scope", "limit", "value")]) for i in range(3)]
    click.echo(f"{'scope':<{widths[0]}}  {'limit':<{widths[1]}}  value")
    for scope, key, value in rows:
        click.echo(f"{scope:<{widths[0]}}  {key:<{widths[1]}}  {value}")


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(value) if value else "-"
    return str(value)
