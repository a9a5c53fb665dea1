"""cocotb test on the bare MatchingEngine: sustained cycles per action on a non-crossing stream
(resting enters and cancels, no input gaps, every output always ready), events, book and ITCH
checked by :class:`~tickpath.sim.matching.tb_matching.MatchingTB`. The ITCH width is whatever
the engine was built with (``itch_width``; read from the port).

Environment: ``PARAM_*`` (the engine's parameters), ``THROUGHPUT_COUNT`` actions (default
2000), ``THROUGHPUT_RESULTS`` a JSON path for the statistics.
"""

import json
import os
import pathlib
import random

import cocotb

from tickpath.sim.matching.tb_matching import MatchingTB
from tickpath.sim.mold_out.stimulus import non_crossing_actions


@cocotb.test()
async def non_crossing(dut):
    p = {k: int(os.environ[f"PARAM_{k.upper()}"])
         for k in ("symbols", "capacity", "levels", "token_bits")}
    count = int(os.environ.get("THROUGHPUT_COUNT", "2000"))
    orders = non_crossing_actions(random.Random(1), count, symbols=p["symbols"],
                                  capacity=p["capacity"], levels=p["levels"],
                                  token_bits=p["token_bits"])
    tb = MatchingTB(dut, symbols=p["symbols"], capacity=p["capacity"], levels=p["levels"],
                    seed=1)
    stats = await tb.run(orders)
    tb.scoreboard.result()
    await tb.check_book()
    stats["itch"] = tb.check_itch()
    stats["itch_width"] = tb.itch_width
    assert set(stats["kinds"]) <= {"rest", "cancel"}, stats["kinds"]
    tb.log.info("non_crossing itch_width=%d: %s", tb.itch_width, json.dumps(stats))
    path = os.environ.get("THROUGHPUT_RESULTS")
    if path:
        pathlib.Path(path).write_text(json.dumps(stats, indent=1))
    tb.monitor.stop()
