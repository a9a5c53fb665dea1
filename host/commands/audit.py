"""``tickpath audit verify|replay|tail|export``: the audit journal for operators and compliance.

- ``verify --journal DIR [--hmac-key-file F]``: exit 0 only for an intact journal; otherwise one
  line naming the first record (number and byte offset) where it stops being intact.
- ``replay --journal DIR [--json]``: positions and PnL rebuilt from the journal alone.
- ``tail --journal DIR [-n N] [--follow]``: the last records as JSON lines.
- ``export --journal DIR --csv OUT | --parquet OUT``: every record, one row each.
"""

from __future__ import annotations

import csv
import json
import mmap
import os
import sys
import time
from collections import deque
from pathlib import Path

import click

from tickpath.host.cli import UserError

EXPORT_COLUMNS = ("seq", "ts_ns", "kind", "order_id", "client_id", "account", "strategy",
                  "symbol", "side", "price", "quantity", "venue", "reason", "detail", "offset",
                  "hash")

journal_option = click.option("--journal", "journal", required=True,
                              type=click.Path(path_type=Path),
                              help="The journal directory.")


@click.group(name="audit")
def command():
    """The audit journal: verify, replay, tail, export."""


def _errors():
    from tickpath.host.audit import JournalError
    return (JournalError, OSError)


@command.command()
@journal_option
@click.option("--hmac-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check the checkpoints' HMAC signatures with the key in this file.")
def verify(journal: Path, hmac_key_file: Path | None):
    """Check every record, the hash chain and the checkpoints; exit 0 only if intact."""
    from tickpath.host.audit import verify as verify_journal
    key = hmac_key_file.read_bytes().strip() if hmac_key_file else None
    try:
        report = verify_journal(journal, hmac_key=key)
    except _errors() as exc:
        raise UserError(str(exc)) from None
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    if report.problem is not None:
        raise UserError(f"{journal}: {report.problem}")
    if report.problems:
        raise UserError(f"{journal}: {report.problems[0]}")
    click.echo(report.summary())


@command.command()
@journal_option
@click.option("--json", "as_json", is_flag=True, help="One JSON line per account and symbol.")
def replay(journal: Path, as_json: bool):
    """Rebuild positions and PnL from the journal's executions alone."""
    from tickpath.host.audit import replay as replay_journal
    try:
        positions = replay_journal(journal)
    except _errors() as exc:
        raise UserError(f"{journal}: {exc}") from None
    print_positions(positions, as_json)


def print_positions(positions, as_json: bool) -> None:
    """One JSON line per account and symbol, or a table (``audit replay``, ``positions``)."""
    rows = list(positions.rows())
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    head = ("account", "stock", "position", "cost_basis", "avg_cost", "realized_pnl",
            "unrealized_pnl")
    print_table(head, [tuple(row[k] for k in head) for row in rows], left=2)


def print_table(head: tuple[str, ...], rows: list[tuple], *, left: int) -> None:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned."""
    table = [head] + [tuple("" if v is None else str(v) for v in row) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        click.echo("  ".join(c.rjust(w) if i >= left else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())


def _follow(journal: Path, count: int, end: int, head: bytes, poll: float):
    from tickpath.host.audit.format import decode_record
    from tickpath.host.audit.reader import journal_path
    from tickpath.host.audit.scan import scan
    path = journal_path(journal)
    while True:
        size = path.stat().st_size
        if size < end:
            raise UserError(f"{journal}: the journal shrank below byte offset {end} while "
                            "following")
        if size > end:
            out: list = []
            with path.open("rb") as f, mmap.mmap(f.fileno(), size,
                                                  access=mmap.ACCESS_READ) as buf:
                result = scan(buf, head, start=end, start_count=count,
                              on_record=lambda raw, off, out=out: out.append(
                                  decode_record(raw, off)))
            for record in out:
                click.echo(json.dumps(record.as_dict()))
            sys.stdout.flush()
            if result.problem is not None and not result.problem.torn:
                raise UserError(f"{journal}: {result.problem}")
            count, end, head = result.count, result.end, result.head
        time.sleep(poll)


@command.command()
@journal_option
@click.option("-n", "lines", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the last records to print.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing records as they are appended.")
@click.option("--poll", type=click.FloatRange(min=0.001), default=0.1, hidden=True)
def tail(journal: Path, lines: int, follow: bool, poll: float):
    """Print the last records as JSON lines."""
    from tickpath.host.audit import iter_records
    from tickpath.host.audit.format import HEADER_LEN, genesis_hash
    last: deque = deque(maxlen=lines)
    count, end, head = 0, HEADER_LEN, None
    try:
        for record in iter_records(journal):
            last.append(record)
            count, end, head = record.seq, record.offset + record.length, record.hash
        if head is None:
            with (journal / "journal.tpj").open("rb") as f:
                head = genesis_hash(f.read(HEADER_LEN))
        for record in last:
            click.echo(json.dumps(record.as_dict()))
        if follow:
            sys.stdout.flush()
            _follow(journal, count, end, head, poll)
    except _errors() as exc:
        raise UserError(f"{journal}: {exc}") from None
    except KeyboardInterrupt:
        pass


@command.command()
@journal_option
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write CSV here.")
@click.option("--parquet", "parquet_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write Parquet here (needs pyarrow).")
def export(journal: Path, csv_out: Path | None, parquet_out: Path | None):
    """Export every record to CSV or Parquet, one row per record."""
    from tickpath.host.audit import iter_records
    if (csv_out is None) == (parquet_out is None):
        raise UserError("give exactly one of --csv OUT or --parquet OUT")
    if parquet_out is not None:
        try:
            import pyarrow
            import pyarrow.parquet
        except ImportError:
            raise UserError("--parquet needs pyarrow: pip install pyarrow") from None
    try:
        rows = [_row(r) for r in iter_records(journal)]
    except _errors() as exc:
        raise UserError(f"{journal}: {exc}") from None
    out = csv_out or parquet_out
    tmp = out.with_name(out.name + ".tmp")
    try:
        if csv_out is not None:
            with tmp.open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(EXPORT_COLUMNS)
                writer.writerows([row[c] for c in EXPORT_COLUMNS] for row in rows)
        else:
            ints = {"seq", "ts_ns", "order_id", "price", "quantity", "offset"}
            schema = pyarrow.schema([(c, pyarrow.uint64() if c in ("seq", "order_id") else
                                      pyarrow.int64() if c in ints else pyarrow.string())
                                     for c in EXPORT_COLUMNS])
            table = pyarrow.table({c: [row[c] for row in rows] for c in EXPORT_COLUMNS},
                                  schema=schema)
            pyarrow.parquet.write_table(table, tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"{out}: {exc.strerror or exc}") from None
    click.echo(f"{len(rows)} records written to {out}", err=True)


def _row(record) -> dict:
    row = record.as_dict()
    row["detail"] = "" if record.detail is None else json.dumps(record.detail,
                                                                separators=(",", ":"))
    return row
