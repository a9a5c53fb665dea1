"""``tickpath risk check FILE`` validates a risk configuration (every problem, one per line, each
naming the key); ``tickpath risk show FILE`` prints the effective limits (a table, or ``--json``).

``tickpath risk reload --control DIR`` asks the running gateway (``tickpath gateway run --control
DIR``) to re-read its ``--risk`` file and prints its answer (a bad file keeps the old limits and
the errors are printed; exit 1). SIGHUP to the gateway does the same. Inside ``tickpath orders
run`` input it is the line ``{"action": "reload"}``.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

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


@command.command("reload")
@click.option("--control", "control_dir", envvar="TICKPATH_CONTROL", default=".tickpath",
              show_default=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Control directory of the running gateway (env TICKPATH_CONTROL).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=600), default=5.0,
              show_default=True, help="Seconds to wait for the gateway's answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def reload(control_dir: pathlib.Path, timeout: float, as_json: bool) -> None:
    """Make the running gateway re-read its risk file; print whether it took."""
    from tickpath.host.gateway.daemon import RELOAD_REQUEST, RELOAD_RESULT
    request_id = f"{os.getpid()}-{time.time_ns()}"
    request = control_dir / RELOAD_REQUEST
    try:
        control_dir.mkdir(parents=True, exist_ok=True)
        tmp = request.with_name(RELOAD_REQUEST + ".tmp")
        tmp.write_text(request_id + "\n", encoding="utf-8")
        os.replace(tmp, request)
    except OSError as e:
        raise UserError(f"{request}: {e.strerror}") from None
    result_path = control_dir / RELOAD_RESULT
    deadline = time.monotonic() + timeout
    answer = None
    while time.monotonic() < deadline:          # bounded by --timeout
        try:
            answer = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            answer = None
        if isinstance(answer, dict) and answer.get("request") == request_id:
            break
        answer = None
        time.sleep(0.01)
    if answer is None:
        raise UserError(f"no gateway answered within {timeout} s (is one running with "
                        f"--control {control_dir}?); the request stays in {request}")
    if as_json:
        click.echo(json.dumps(answer))
    elif answer["ok"]:
        click.echo(f"reloaded (sha256 {str(answer.get('digest', ''))[:16]})")
    if not answer["ok"]:
        if not as_json:
            for error in answer["errors"]:
                click.echo(error)
        raise UserError("reload refused: the old limits stay in force")
