"""ColumnMemory against a Python memory: random writes and reads, every cycle's read data
compared (one cycle from address to data, two and the output enable when registered)."""

import os
import random

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from tickpath.sim.common.tb import TB

CYCLES = int(os.environ.get("BRAM_CYCLES", "3000"))


@cocotb.test()
async def reads_match_the_model(dut):
    depth = int(os.environ["PARAM_DEPTH"])
    width = int(os.environ["PARAM_WIDTH"])
    registered = os.environ["PARAM_REGISTERED"] == "True"
    rng = random.Random(int(os.environ.get("BRAM_SEED", "1")) * 1000003 + depth * 131 + width)
    tb = TB(dut)
    dut.rst.value = 0
    dut.w_en.value = 0
    tb.start_clock()

    # a small pool of addresses (so reads meet written words) plus both ends and any address
    pool = [0, depth - 1] + [rng.randrange(depth) for _ in range(30)]
    mem = {}
    latched = 0          # the word read at the last edge
    out_reg = 0          # the output register (registered)
    checked = written = 0
    for cycle in range(CYCLES + 2):
        await FallingEdge(tb.clk)
        w_en = rng.random() < 0.5
        w_addr = rng.choice(pool) if rng.random() < 0.8 else rng.randrange(depth)
        w_data = rng.getrandbits(width)
        r_addr = rng.choice(pool) if rng.random() < 0.8 else rng.randrange(depth)
        if w_en and r_addr == w_addr:       # undefined on the block RAM: not asked
            r_addr = (r_addr + 1) % depth
        out_en = rng.random() < 0.7
        dut.w_en.value = int(w_en)
        dut.w_addr.value = w_addr
        dut.w_data.value = w_data
        dut.r_addr.value = r_addr
        dut.r_out_en.value = int(out_en)
        await RisingEdge(tb.clk)
        if out_en:
            out_reg = latched
        latched = mem.get(r_addr, 0)
        if w_en:
            mem[w_addr] = w_data
            written += 1
        await ReadOnly()
        if cycle < 2:           # the read data before the first reads are in: not defined
            continue
        expected = out_reg if registered else latched
        got = dut.r_data.value
        assert got.is_resolvable, f"read data has X or Z: {got}"
        assert int(got) == expected, (f"read data {int(got):#x}, expected {expected:#x} "
                                      f"(depth {depth}, width {width})")
        checked += 1
    assert checked == CYCLES and written > CYCLES // 3
    dut._log.info("%d reads checked, %d writes", checked, written)
