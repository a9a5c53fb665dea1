"""Register maps and the gateware RegisterBank: the host's RegisterClient drives the bank's bus
on Amaranth's simulator, by name, through every access kind and a 64-bit value."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from tickpath.hdl.regs import RegisterBank
from tickpath.protocol.regmap import RegisterClient, RegisterError, RegisterMap

MAP = RegisterMap("demo", [
    ("frames",  32, "r",  "frames seen"),
    ("cycle",   48, "r",  "free-running cycle"),
    ("session", 64, "rw", "session to check", 0x1234),
    ("enable",  1,  "rw", "enable"),
    ("filter",  20, "w",  "commit a filter entry"),
])


def test_map_addresses_and_errors():
    assert [(r.name, r.address, r.words) for r in MAP] == [
        ("frames", 0, 1), ("cycle", 1, 2), ("session", 3, 2), ("enable", 5, 1), ("filter", 6, 1)]
    assert MAP.size == 7
    assert "| 0x003 | `session` | 64 | rw |" in MAP.table()
    with pytest.raises(RegisterError, match="has no register 'nope'"):
        MAP["nope"]
    with pytest.raises(RegisterError, match="twice"):
        RegisterMap("x", [("a", 1, "r"), ("a", 1, "r")])
    with pytest.raises(RegisterError, match="access"):
        RegisterMap("x", [("a", 1, "x")])
    with pytest.raises(RegisterError, match="does not fit"):
        RegisterMap("x", [("a", 4, "rw", "", 16)])


def test_bank_through_the_client():
    top = Module()
    top.submodules.bank = bank = RegisterBank(MAP)
    frames, cycle = Signal(32), Signal(48)
    top.d.sync += [frames.eq(frames + 3), cycle.eq(cycle + 1)]
    top.d.comb += [bank.frames.eq(frames), bank.cycle.eq(cycle)]
    seen = {}

    async def testbench(ctx):
        async def read(address):
            ctx.set(bank.bus.addr, address)
            ctx.set(bank.bus.r_stb, 1)
            await ctx.tick()
            ctx.set(bank.bus.r_stb, 0)
            return ctx.get(bank.bus.r_data)

        async def write(address, value):
            ctx.set(bank.bus.addr, address)
            ctx.set(bank.bus.w_data, value)
            ctx.set(bank.bus.w_stb, 1)
            await ctx.tick()
            ctx.set(bank.bus.w_stb, 0)

        # the client is synchronous; run it over recorded bus operations, one at a time
        ops = []
        client = RegisterClient(MAP, lambda a: ops.append(("r", a)) or 0,
                                lambda a, v: ops.append(("w", a, v)))
        client.write("session", 0xDEAD_BEEF_0000_0001)
        client.write("enable", 1)
        client.write("filter", 0xABCDE)
        assert ops == [("w", 4, 0xDEAD_BEEF), ("w", 3, 1), ("w", 5, 1), ("w", 6, 0xABCDE)]
        assert ctx.get(bank.session) == 0x1234                  # reset value before the writes
        for op in ops:
            await write(*op[1:])
            if op[1] == 6:
                assert ctx.get(bank.filter_stb) == 1            # one-cycle strobe with the value
                assert ctx.get(bank.filter) == 0xABCDE
        await ctx.tick()
        assert ctx.get(bank.filter_stb) == 0
        seen["session"] = (await read(3)) | (await read(4)) << 32
        seen["enable"] = await read(5)
        seen["filter"] = await read(6)                          # write-only: reads 0
        seen["unmapped"] = await read(100)
        f1 = await read(0)
        f2 = await read(0)
        seen["frames_step"] = f2 - f1
        lo, hi = await read(1), await read(2)
        seen["cycle"] = hi << 32 | lo
        seen["now"] = ctx.get(cycle)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen["session"] == 0xDEAD_BEEF_0000_0001
    assert (seen["enable"], seen["filter"], seen["unmapped"]) == (1, 0, 0)
    assert seen["frames_step"] == 3                             # sampled live, a cycle apart
    assert 0 < seen["cycle"] <= seen["now"]


def test_client_checks_access_and_width():
    client = RegisterClient(MAP, lambda a: 0, lambda a, v: None)
    with pytest.raises(RegisterError, match="read-only"):
        client.write("frames", 1)
    with pytest.raises(RegisterError, match="write-only"):
        client.read("filter")
    with pytest.raises(RegisterError, match="does not fit"):
        client.write("enable", 2)
    words = {1: 0xFFFF_FFFF, 2: 5}
    moving = RegisterClient(MAP, lambda a: words[a], lambda a, v: None)
    assert moving.read("cycle") == 5 << 32 | 0xFFFF_FFFF
