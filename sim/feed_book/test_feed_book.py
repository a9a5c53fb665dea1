"""cocotb tests for FeedBook (run through tickpath.sim.common.runner.run_bench).

``replay`` reads the JSON spec named by ``FEED_BOOK_STIMULUS``::

    {"runs": [{"bx": path, "limit": n} | {"generator": {"messages", "symbols", "seed"}}
              | {"messages": [hex, ...]}, ...],
     "subscribe": [[locate, slot, enable], ...], "clear_after": [slot, ...],
     "seed": int, "valid_probability": float, "ready_probability": float,
     "query": bool, "results": path or null}

Runs are fed one after the other into the same book; ``clear_after`` clears flags after the
runs and then the end queries (``query``) read every subscribed side.
"""

import json
import os
import pathlib

import cocotb

from tickpath.generator import GeneratorConfig, iter_messages
from tickpath.protocol import itch
from tickpath.sim.feed_book.tb_feed_book import FeedBookTB

STIMULUS_ENV = "FEED_BOOK_STIMULUS"
PARAMS = ("capacity", "ways", "slots", "locate_bits", "levels", "depth")


def params_from_env() -> dict:
    out = {name: int(os.environ[f"PARAM_{name.upper()}"]) for name in PARAMS}
    out["source"] = os.environ["PARAM_SOURCE"]
    return out


def run_messages(run: dict) -> list[bytes]:
    if "bx" in run:
        image = pathlib.Path(run["bx"]).read_bytes()
        out = [raw for _, raw in itch.iter_binaryfile_raw(image)]
        return out[:run.get("limit")] if run.get("limit") else out
    if "generator" in run:
        return list(iter_messages(GeneratorConfig(**run["generator"])))
    return [bytes.fromhex(h) for h in run["messages"]]


@cocotb.test(skip=STIMULUS_ENV not in os.environ)
async def replay(dut):
    spec = json.loads(pathlib.Path(os.environ[STIMULUS_ENV]).read_text())
    tb = FeedBookTB(dut, params_from_env(), seed=spec.get("seed", 0),
                    valid_probability=spec.get("valid_probability", 1.0),
                    ready_probability=spec.get("ready_probability", 1.0))
    await tb.start()
    if spec.get("subscribe"):
        await tb.subscribe(spec["subscribe"])
    stats = []
    for run in spec["runs"]:
        stats.append(await tb.feed(run_messages(run)))
        tb.log.info("run: %s", stats[-1])
    if spec.get("clear_after"):
        await tb.clear(spec["clear_after"])
    if spec.get("query", True):
        await tb.query_all()
    result = {"runs": stats, "counters": tb.counters(), "invalid": sorted(tb.invalid()),
              "golden_checked": tb.model.golden_checked,
              "golden_anomalies": dict(tb.model.golden.anomalies)}
    tb.log.info("result: %s", result)
    if spec.get("results"):
        pathlib.Path(spec["results"]).write_text(json.dumps(result))
    tb.check_end()
