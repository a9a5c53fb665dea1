"""The simulated feed path: ``tickpath book --engine sim`` (FeedBook on the Verilator harness)
beside ``--engine model`` on one synthetic BinaryFILE, and the harness's cycles per second.

Messages from ``TICKPATH_BENCH_SIM_MESSAGES`` (default 1,000,000; 50 symbols, seed 1). The first
run builds the harness (minutes); the figures exclude that build. ``harness, idle`` is the clock
alone (no input changes): the design's evaluation cost per cycle, the floor under streaming.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import time

from bench.report import Row
from tickpath import generator
from tickpath.host.commands.book import iter_raw_messages, run_model
from tickpath.sim.harness.feed_book import feed_book_harness
from tickpath.sim.harness.feed_book import run as run_sim

MESSAGES = int(os.environ.get("TICKPATH_BENCH_SIM_MESSAGES", "1000000"))


def run() -> list[Row]:
    harness, _ = feed_book_harness()          # build (or find) it before timing anything
    with harness:
        harness.reset()
        t0 = time.perf_counter()
        harness.step(100_000)
        idle = 100_000 / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "feed.itch"
        generator.write_binaryfile(generator.GeneratorConfig(
            messages=MESSAGES, symbols=50, seed=1), path)
        t0 = time.perf_counter()
        model = run_model(iter_raw_messages(path))
        model_rate = MESSAGES / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        sim = run_sim(iter_raw_messages(path), 8)
        sim_rate = MESSAGES / (time.perf_counter() - t0)
    assert sum(model.messages.values()) == sum(sim.messages.values()) == MESSAGES
    note = f"{MESSAGES:,} messages, {sim.beats:,} bytes, {sim.cycles:,} cycles"
    return [
        Row("book --engine model", model_rate, "msg/s", note=f"{MESSAGES:,} messages"),
        Row("book --engine sim", sim_rate, "msg/s", baseline="book --engine model",
            note=note + f", {len(sim.flagged)} of 50 symbols flagged"),
        Row("harness, FeedBook streaming", sim.cycles / sim.seconds, "cycle/s",
            note="C++ valid/ready loop, ITCH bytes in, updates counted"),
        Row("harness, FeedBook idle clock", idle, "cycle/s",
            baseline="harness, FeedBook streaming"),
    ]
