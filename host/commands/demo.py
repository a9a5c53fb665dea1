"""``tickpath demo``: the appliance's main job on its embedded default.

Until the end-to-end appliance exists, the demo takes the real NASDAQ BX sample (or, when
``../shared/data`` is absent, a synthetic feed from the generator), then:

1. decodes and books it through the golden models (ITCH codec, :class:`BookBuilder`);
2. decodes it through the ITCH decoder gateware in a simulator (Verilator by default) and
   checks every decoded event against the model's;
3. books the gateware's events through the book builder's primitives and checks the result
   against the golden book, level by level and order by order;
4. prints a summary: message counts, anomalies, decode agreement, cycles per message and
   decode latency in cycles, and the top of each book.
"""

from __future__ import annotations

import collections
import pathlib
import sys
import time

import click

from tickpath.host.cli import UserError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_FEED = REPO_ROOT.parent / "shared" / "data" / "itch" / "bx_20191230_sample.itch"


def _load_feed(path: pathlib.Path | None, synthetic: int | None) -> tuple[str, list[bytes]]:
    from tickpath import generator
    from tickpath.protocol import itch

    if path is None and synthetic is None and DEFAULT_FEED.is_file():
        path = DEFAULT_FEED
    if path is None:
        n = synthetic or 20_000
        config = generator.GeneratorConfig(messages=n, symbols=8, seed=1)
        image = generator.generate_binaryfile(config)
        label = f"synthetic feed ({n} messages, 8 symbols, seed 1)"
    else:
        try:
            image = path.read_bytes()
        except OSError as e:
            raise UserError(f"{path}: {e.strerror}") from e
        label = str(path)
    try:
        return label, [raw for _, raw in itch.iter_binaryfile_raw(image)]
    except itch.ItchError as e:
        raise UserError(f"{label}: {e}") from e


def book_from_events(events) -> object:
    """Drive the golden book builder from decoded feed events."""
    from tickpath.model.book import BookBuilder

    book = BookBuilder()
    for ev in events:
        book.apply_event(ev)
    return book


def _price(ticks: int) -> str:
    return f"{ticks // 10_000}.{ticks % 10_000:04d}"


@click.command("demo")
@click.option("--feed", "feed", type=click.Path(path_type=pathlib.Path),
              help="A BinaryFILE to use instead of the BX sample.")
@click.option("--synthetic", type=click.IntRange(min=20), default=None,
              help="Use a synthetic feed of N messages instead of the BX sample.")
@click.option("--simulator", type=click.Choice(["verilator", "icarus"]), default="verilator",
              show_default=True, help="The HDL simulator that runs the gateware.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the first N messages (Icarus is about 3x slower than Verilator).")
@click.option("--depth", type=click.IntRange(min=1), default=3, show_default=True,
              help="Book levels shown per side.")
def command(feed, synthetic, simulator, limit, depth):
    """Decode and book a real feed through the golden model and the simulated gateware."""
    from tickpath.model.book import BookBuilder
    from tickpath.protocol import itch
    from tickpath.protocol.feed import expected_event
    from tickpath.sim.common.runner import BenchError
    from tickpath.sim.itch_decoder import run_decoder

    label, raws = _load_feed(feed, synthetic)
    if limit:
        raws = raws[:limit]
    out = click.echo
    out(f"feed: {label}: {len(raws)} ITCH messages")

    # 1. The golden model.
    t0 = time.perf_counter_ns()
    model = BookBuilder()
    for raw in raws:
        model.apply(itch.decode(raw))
    model_ms = (time.perf_counter_ns() - t0) // 1_000_000
    counts = " ".join(f"{t} {n}" for t, n in model.messages.most_common())
    anomalies = " ".join(f"{k} {n}" for k, n in sorted(model.anomalies.items()) if n) or "none"
    out(f"golden model: {counts}; anomalies: {anomalies}; {model_ms} ms")

    # 2. The gateware, in a simulator.
    out(f"gateware: ITCH decoder on {simulator} (the first build takes a minute)...")
    try:
        hw = run_decoder(raws, simulator)
    except BenchError as e:
        raise UserError(f"the {simulator} run failed: {e}") from e
    events = hw["events"]
    mismatched = [i for i, (raw, ev) in enumerate(zip(raws, events, strict=False))
                  if expected_event(raw) != ev]
    if len(events) != len(raws):
        mismatched.append(min(len(events), len(raws)))
    stats = hw["stats"]
    kinds = collections.Counter(ev["kind"].name for ev in events)
    out(f"gateware: {len(events)} events ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})"
        f" in {stats['cycles']} cycles, {stats['cycles_per_message']:.1f} cycles/message, "
        f"decode latency {stats['latency_cycles_min']}-{stats['latency_cycles_max']} cycles "
        f"(last byte in -> event out); build {hw['build_seconds']:.0f} s, "
        f"run {hw['test_seconds']:.0f} s")
    decode_ok = not mismatched
    out(f"decode vs golden model: {'identical' if decode_ok else 'DIFFERENT'} "
        f"({len(raws) - len(mismatched)}/{len(raws)} events agree)")

    # 3. Book the gateware's events and compare with the golden book.
    hw_book = book_from_events(events)
    book_ok = hw_book.snapshot() == model.snapshot() and hw_book.anomalies == model.anomalies
    out(f"book from gateware events vs golden book: {'identical' if book_ok else 'DIFFERENT'} "
        f"({len(model)} live orders, {len(model.snapshot())} symbols with orders)")

    # 4. The books.
    for locate in sorted(model.snapshot()):
        bid, ask = model.bbo(locate)
        stock = model.stock(locate) or f"#{locate}"
        bbo = (f"{bid[1]} @ {_price(bid[0])}" if bid else "-") + " x " + \
              (f"{ask[1]} @ {_price(ask[0])}" if ask else "-")
        crossed = " (crossed: the sample leaves out messages)" if bid and ask and \
            bid[0] >= ask[0] else ""
        out(f"  {stock:<8} (locate {locate}) BBO {bbo}{crossed}")
        for side, name in (("B", "bids"), ("S", "asks")):
            levels = model.levels(locate, side, depth)
            shown = ", ".join(f"{_price(p)} x {s} ({n})" for p, s, n in levels) or "-"
            out(f"      {name}: {shown}")
    if not (decode_ok and book_ok):
        if mismatched:
            i = mismatched[0]
            print(f"first difference at message {i}: expected {expected_event(raws[i])}, "
                  f"gateware {events[i] if i < len(events) else 'nothing'}", file=sys.stderr)
        raise UserError("the gateware disagrees with the golden model")
