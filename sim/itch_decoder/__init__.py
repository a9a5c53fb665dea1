"""cocotb bench for the ITCH decoder, and :func:`run_decoder` for the demo command."""

import json
import pathlib
import tempfile
from typing import Any

from tickpath.protocol.feed import EventKind

__all__ = ["TEST_MODULE", "run_decoder"]

TEST_MODULE = "tickpath.sim.itch_decoder.test_itch_decoder"


def run_decoder(messages: list[bytes], simulator: str = "verilator", *, seed: int = 0,
                valid_probability: float = 1.0, ready_probability: float = 1.0,
                check: bool = False) -> dict[str, Any]:
    """Decode ``messages`` (raw ITCH messages, one per packet) on the gateware in a simulator.

    Returns ``{"events": [event dict per message, as feed.expected_event gives],
    "stats": {"messages", "bytes", "cycles", "cycles_per_message", "latency_cycles_min",
    "latency_cycles_max", "counters": {"messages", "malformed"}, ...},
    "simulator", "build_seconds", "test_seconds"}``. With ``check`` the bench also
    scoreboards against the golden model and raises ``BenchError`` on any difference.

    Runtime on this shared 2-core machine: Verilator builds once in 20-40 s (cached in
    ``build/sim/itch_decoder_run/``; rebuilt when ``hdl/itch_decoder.py`` changes), then
    about 4 s to start plus about 20k bytes/s (the whole 441 kB BX sample: about 25 s);
    Icarus builds in under a second, then about 4 s plus about 7k bytes/s. Concurrent calls
    on one simulator wait for each other (they share the build folder).
    """
    from tickpath.hdl.itch_decoder import ItchDecoder
    from tickpath.sim.common.runner import run_bench
    from tickpath.sim.itch_decoder.test_itch_decoder import STIMULUS_ENV

    for i, raw in enumerate(messages):
        if not raw:
            raise ValueError(f"message {i} is empty: an ITCH message has at least its type byte")
    if not messages:
        return {"events": [], "stats": {"messages": 0, "bytes": 0, "cycles": 0},
                "simulator": simulator, "build_seconds": 0.0, "test_seconds": 0.0}
    with tempfile.TemporaryDirectory(prefix="tickpath-itch-") as tmp:
        stimulus = pathlib.Path(tmp) / "stimulus.json"
        results = pathlib.Path(tmp) / "results.json"
        stimulus.write_text(json.dumps({
            "messages": [bytes(m).hex() for m in messages], "seed": seed,
            "valid_probability": valid_probability, "ready_probability": ready_probability,
            "check": check, "results": str(results),
        }))
        bench = run_bench(ItchDecoder, "itch_decoder", TEST_MODULE, simulator,
                          bench="itch_decoder_run", env={STIMULUS_ENV: str(stimulus)},
                          testcase="replay")
        out = json.loads(results.read_text())
    for event in out["events"]:
        event["kind"] = EventKind[event["kind"]]
    out.update(simulator=simulator, build_seconds=bench.build_seconds,
               test_seconds=bench.test_seconds)
    return out
