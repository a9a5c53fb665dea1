"""cocotb tests for NetRxWide (run through tickpath.sim.common.runner.run_bench; the beat width
comes in as ``PARAM_WIDTH``).

``replay`` takes its stimulus from the JSON file named by ``NET_RX_WIDE_STIMULUS``:
``{"frames": [[hex, fcs_bad], ...], "filters": [[group, port], ...], "seed": int,
"valid_probability": float, "ready_probability": float, "results": path or null}``.
``random_stream`` makes its own seeded faulty stream of ``NET_RX_WIDE_RANDOM_COUNT`` ITCH
messages (default 300); ``alignment`` sends every header-length/tag/payload-length combination;
``overflow`` fills the packet buffer and the metadata queue with the output stalled.
"""

import json
import os
import pathlib
import random

import cocotb

from tickpath.hdl.net_rx_wide import FIRST_BEAT_LATENCY, PREFETCH, NetRxWide
from tickpath.sim.itch_decoder.stimulus import random_messages
from tickpath.sim.net_rx.stimulus import FILTERS, GROUP_B, PORT_B, build_frame, faulty_stream
from tickpath.sim.net_rx_wide.stimulus import alignment_frames
from tickpath.sim.net_rx_wide.tb_net_rx_wide import NetRxWideTB

STIMULUS_ENV = "NET_RX_WIDE_STIMULUS"
RANDOM_COUNT_ENV = "NET_RX_WIDE_RANDOM_COUNT"


def _width():
    return int(os.environ.get("PARAM_WIDTH", "8"))


def _check(tb, stats):
    tb.scoreboard.result()
    assert stats["not_ready_cycles"] == 0, f"input not ready in {stats['not_ready_cycles']} cycles"
    assert stats["counters"] == stats["expected_counters"], (
        f"counters {stats['counters']}, expected {stats['expected_counters']}")
    assert not stats["wrong_ingress"], f"ingress stamps wrong for payloads {stats['wrong_ingress']}"


def _check_line_rate(stats):
    # back to back: one beat a cycle; with the output always ready a payload starts
    # FIRST_BEAT_LATENCY cycles after its frame's last beat unless it waits for the one before
    assert stats["cycles"] == stats["beats"], f"{stats['beats']} beats in {stats['cycles']} cycles"
    assert stats["first_beat_latency"][0] == FIRST_BEAT_LATENCY, stats["first_beat_latency"]
    assert not stats["late_payloads"], f"payloads started late: {stats['late_payloads']}"


@cocotb.test(skip=STIMULUS_ENV not in os.environ)
async def replay(dut):
    spec = json.loads(pathlib.Path(os.environ[STIMULUS_ENV]).read_text())
    frames = [(bytes.fromhex(h), bool(bad)) for h, bad in spec["frames"]]
    filters = [tuple(f) for f in spec.get("filters", FILTERS)]
    tb = NetRxWideTB(dut, _width(), seed=spec.get("seed", 0),
                     valid_probability=spec.get("valid_probability", 1.0),
                     ready_probability=spec.get("ready_probability", 1.0))
    stats = await tb.run(frames, filters)
    tb.log.info("replay: %s", stats)
    if spec.get("results"):
        pathlib.Path(spec["results"]).write_text(json.dumps(stats))
    _check(tb, stats)
    if spec.get("valid_probability", 1.0) == 1.0 and spec.get("ready_probability", 1.0) == 1.0:
        _check_line_rate(stats)


@cocotb.test()
async def alignment(dut):
    frames = [(f.data, f.fcs_bad) for f in alignment_frames(random.Random(5))]
    tb = NetRxWideTB(dut, _width())
    stats = await tb.run(frames, list(FILTERS))
    tb.log.info("alignment: %s", stats)
    _check(tb, stats)
    _check_line_rate(stats)
    for reason in ("accepted", "bad_fcs", "malformed"):
        assert stats["expected_counters"][reason] > 0, f"no {reason} frame"


@cocotb.test()
@cocotb.parametrize(seed=[3, 5])
async def random_stream(dut, seed):
    rng = random.Random(seed)
    count = int(os.environ.get(RANDOM_COUNT_ENV, "300"))
    frames = [(f.data, f.fcs_bad) for f in
              faulty_stream(rng, random_messages(rng, count, malformed_share=0.1),
                            fault_rate=0.6)]
    # seed 3: back to back, seed 5: idle input cycles too; both with output backpressure
    tb = NetRxWideTB(dut, _width(), seed=seed, valid_probability=1.0 if seed == 3 else 0.8,
                     ready_probability=0.8)
    stats = await tb.run(frames, list(FILTERS))
    tb.log.info("random_stream seed=%d: %s", seed, stats)
    for reason in ("bad_fcs", "bad_ip_checksum", "filtered", "malformed", "fragments"):
        assert stats["expected_counters"][reason] > 0, f"no {reason} frame in the stream"
    _check(tb, stats)


@cocotb.test()
async def overflow(dut):
    """The output held not ready: payloads fill the buffer to its last word and the metadata
    queue to its last entry; a payload one word too long, and any after the queue is full, are
    dropped as Overflow, whole. Released, the committed payloads come out intact, and frames
    after that are accepted again."""
    width = _width()
    defaults = NetRxWide(width=width)
    words, entries = defaults.buffer_depth // width, defaults.meta_depth
    rng = random.Random(9)

    def frame(nwords, **kw):             # a payload of `nwords` words, the last one partial
        return build_frame(rng.randbytes(nwords * width - rng.randrange(width)), **kw), False

    big = -(-1472 // width)
    small = entries - 3                  # one-word payloads that fill the metadata queue
    frames = [(build_frame(rng.randbytes(1472)), False)] * 2
    frames.append(frame(words + PREFETCH - 2 * big - small, vlan=5))   # fits
    frames.append(frame(small + 1, group=GROUP_B, port=PORT_B))        # one word too many
    frames += [(build_frame(rng.randbytes(1472)), True)]               # bad FCS: no effect
    frames += [frame(1, group=GROUP_B, port=PORT_B) for _ in range(small)]   # fill both
    frames += [frame(1) for _ in range(3)]                             # queue full
    stalled = len(frames)
    frames += [(build_frame(rng.randbytes(rng.randint(1, 1472))), False) for _ in range(6)]
    tb = NetRxWideTB(dut, width)
    stats = await tb.run(frames, list(FILTERS), stalled=stalled,
                         capacity=(words, entries, PREFETCH))
    tb.log.info("overflow: %s", stats)
    assert stats["expected_counters"]["overflow"] == 4, stats["expected_counters"]
    _check(tb, stats)
