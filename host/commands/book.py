"""``tickpath book FILE``: replay an ITCH 5.0 feed (pcap or BinaryFILE) and print the final book.

stdout: one JSON object per stock locate with a live order, in locate order, levels best first as
``[price, shares, orders]``; stderr: one summary line (messages by type, anomalies by kind).
"""

from __future__ import annotations

import json
import mmap
import pathlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import click

from tickpath.host.cli import UserError
from tickpath.model.book import BookBuilder
from tickpath.protocol import itch, pcap

# Always shown in the summary, even at zero, so a clean run says so.
REPORTED_ANOMALIES = ("unknown_reference", "overfill", "duplicate_add")


def run_model(raw_messages: Iterable[bytes], depth: int | None = None) -> BookBuilder:
    book = BookBuilder()
    apply, decode = book.apply, itch.decode
    for raw in raw_messages:
        apply(decode(raw))
    return book


def run_sim(raw_messages: Iterable[bytes], depth: int | None = None):
    """The feed-path gateware (ItchDecoder -> OrderTable -> Book) simulated by Verilator through
    the C++ harness, in its default configuration (tickpath.sim.harness.feed_book)."""
    from tickpath.sim.harness.feed_book import run
    try:
        return run(raw_messages, depth)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


# An engine takes the feed's raw ITCH messages in order and the depth asked for, and returns the
# final book (anything with ``book_lines(depth)``, ``messages`` and ``anomalies``; a ``flagged``
# dict locate -> reason names the symbols it cannot show). Another engine is one more entry here.
ENGINES: dict[str, Callable[[Iterable[bytes], int | None], Any]] = {
    "model": run_model,
    "sim": run_sim,
}


def _iter_pcap(path: pathlib.Path) -> Iterator[bytes]:
    for number, (_, _, packet) in enumerate(pcap.iter_mold_messages(path), 1):
        for index, raw in enumerate(packet.messages):
            spec = itch.SPECS.get(chr(raw[0])) if raw else None
            if spec is None or len(raw) != spec.length:
                what = "empty message" if not raw else (
                    f"unknown ITCH message type 0x{raw[0]:02x}" if spec is None else
                    f"ITCH {spec.type!r} message is {spec.length} bytes, block has {len(raw)}")
                raise itch.ItchError(f"MoldUDP64 packet {number} message {index}: {what}")
            yield raw


def _iter_binaryfile(path: pathlib.Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        if path.stat().st_size == 0:
            return
        # Not closed explicitly: an error's traceback may still hold a view of it.
        image = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    for _, raw in itch.iter_binaryfile_raw(image):
        yield raw


def iter_raw_messages(path: pathlib.Path) -> Iterator[bytes]:
    """The ITCH messages of a pcap (MoldUDP64 over UDP) or BinaryFILE, told apart by content."""
    with path.open("rb") as f:
        kind = pcap.file_kind(f.read(4))
    if kind == "pcap":
        return _iter_pcap(path)
    if kind == "pcapng":
        raise UserError(f"{path}: pcapng is not supported; convert it with "
                        "`editcap -F pcap IN OUT`")
    return _iter_binaryfile(path)


def summary_line(book: BookBuilder) -> str:
    total = sum(book.messages.values())
    by_type = " ".join(f"{t} {n}" for t, n in sorted(book.messages.items()))
    kinds = list(REPORTED_ANOMALIES) + sorted(set(book.anomalies) - set(REPORTED_ANOMALIES))
    anomalies = " ".join(f"{k} {book.anomalies[k]}" for k in kinds)
    by_type = f" ({by_type})" if by_type else ""
    return f"messages {total}{by_type}; anomalies: {anomalies}"


@click.command("book")
@click.argument("file", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Levels per side to print (default: all; with --engine sim, the "
                   "gateware's top-N, 8).")
@click.option("--engine", type=click.Choice(sorted(ENGINES)), default="model", show_default=True,
              help="What builds the book: the golden model, or the gateware in simulation "
                   "(sim: 256 symbols, locates 1..256; flagged symbols go to stderr).")
def command(file: pathlib.Path, depth: int | None, engine: str) -> None:
    """Replay the ITCH feed in FILE (pcap or BinaryFILE) and print the final book."""
    if not file.is_file():
        raise UserError(f"{file}: no such file")
    try:
        book = ENGINES[engine](iter_raw_messages(file), depth)
    except itch.ItchError as exc:
        raise UserError(f"{file}: {exc}") from exc
    except (OSError, ValueError) as exc:        # the pcap reader's malformed-capture errors
        raise UserError(f"{file}: {exc}") from exc
    for line in book.book_lines(depth):
        click.echo(json.dumps(line))
    for locate, reason in sorted(getattr(book, "flagged", {}).items()):
        stock = book.stocks.get(locate)
        click.echo(f"stock_locate {locate}{f' ({stock})' if stock else ''}: flagged invalid by "
                   f"the gateware ({reason}); its book is not printed", err=True)
    click.echo(summary_line(book), err=True)
