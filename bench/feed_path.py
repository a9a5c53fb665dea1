"""Feed-path latency in cycles, exact from simulation (Verilator harness), and in ns at 125 MHz.

* FeedBook (ITCH bytes -> decoder -> order table -> book): per event kind, the cycle a message's
  last byte is taken -> the cycle its book update is first valid (the updates carry both).
* FeedPath (Ethernet frames -> NetRx -> MoldSequencer -> FeedBook): the cycle a frame's last
  byte arrives -> each of its messages' updates. NetRx holds a frame until its FCS is known, so
  this adds the frame's own serialisation: the first message of a frame is the floor.

One synthetic stream (``TICKPATH_BENCH_FEED_MESSAGES``, default 20,000; 50 symbols, seed 5).
Published anchors beside them: a 24.8 ns ITCH parser at 322 MHz; FPGA order books 100-290 ns.
"""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
from amaranth.lib import data

from bench.report import Row
from tickpath.generator import GeneratorConfig, iter_messages
from tickpath.protocol.bookfeed import book_update_layout
from tickpath.protocol.feed import EventKind
from tickpath.sim.harness.feed_book import _beats, feed_book_harness
from tickpath.sim.harness.feed_path import run as run_path
from tickpath.sim.net_rx.stimulus import FILTERS, mold_frames

MESSAGES = int(os.environ.get("TICKPATH_BENCH_FEED_MESSAGES", "20000"))
CLOCK_MHZ = 125          # the feed path's must-meet clock (Gigabit, 8 bits a cycle)


def _ns(cycles: float) -> float:
    return cycles * 1000 / CLOCK_MHZ


def run() -> list[Row]:
    messages = list(iter_messages(GeneratorConfig(messages=MESSAGES, symbols=50, seed=5)))
    h, config = feed_book_harness()
    layout = data.Layout.cast(book_update_layout(config["depth"]))
    fields = {n: (f.offset, f.width) for n, f in layout}

    def field(p, name):
        off, width = fields[name]
        return p >> off & ((1 << width) - 1)

    with h:
        h.reset()
        r = h.stream("i_stream", _beats(messages), "o_stream", drain=256)
    by_kind = defaultdict(list)
    for p in r.payloads():
        by_kind[EventKind(field(p, "kind")).name].append(field(p, "egress") - field(p, "ingress"))
    rows = []
    for kind, lat in sorted(by_kind.items()):
        a = np.array(lat)
        rows.append(Row(f"FeedBook {kind}: last byte -> book update", float(a.mean()), "cycles",
                        note=f"min {a.min()} max {a.max()} n {len(a)}; "
                             f"{_ns(a.mean()):.0f} ns at {CLOCK_MHZ} MHz"))
    frames = [(f.data, f.fcs_bad) for f in mold_frames(messages)]
    path = run_path(frames, messages, FILTERS[:1])
    lat = path.latency
    rows += [
        Row("FeedPath: frame's last byte -> update, first message of a frame", lat["min"],
            "cycles", note=f"{_ns(lat['min']):.0f} ns at {CLOCK_MHZ} MHz (store and forward)"),
        Row("FeedPath: frame's last byte -> update, mean", lat["mean_milli"] / 1000, "cycles",
            note=f"max {lat['max']}; {len(frames)} frames of up to 1472 payload bytes"),
        Row("anchor: ITCH parser, 322 MHz (published)", 24.8, "ns", note="for comparison"),
        Row("anchor: FPGA order books (published)", 100, "ns", note="100-290 ns"),
    ]
    return rows
