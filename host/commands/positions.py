"""``tickpath positions --journal DIR [--json]``: positions and PnL per account and symbol,
rebuilt from the audit journal alone (the same as ``tickpath audit replay``); a table by
default, one JSON line per account and symbol with ``--json``. Reading works while a gateway
is writing the journal (a record being written is not shown yet)."""

from __future__ import annotations

from pathlib import Path

import click

from tickpath.host.cli import UserError


@click.command()
@click.option("--journal", required=True, type=click.Path(path_type=Path),
              help="The journal directory.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per account and symbol.")
def command(journal: Path, as_json: bool) -> None:
    """Positions and PnL per account and symbol, from the audit journal."""
    from tickpath.host.audit import JournalError
    from tickpath.host.audit import replay as replay_journal
    from tickpath.host.commands.audit import print_positions
    try:
        positions = replay_journal(journal)
    except (JournalError, OSError) as exc:
        raise UserError(f"{journal}: {exc}") from None
    print_positions(positions, as_json)
