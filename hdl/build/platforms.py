"""Dev boards (amaranth-boards platforms) and bare devices for out-of-context reports.

A board is an amaranth-boards platform plus which of its resources the thin top uses (the UART,
the LEDs). A device is the same FPGA with three pins of one of those boards (clock, serial in,
serial out) and a clock constraint at the frequency under test, so that a component can be
placed and routed on it without its wide ports needing pins (see :mod:`.harness`).

Pin numbers are copied from the amaranth-boards platform of the board each device sits on
(iCEBreaker, Colorlight 5A-75B, ULX3S); they only have to be legal pins of the package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from amaranth.build import Attrs, Clock, Pins, Resource

__all__ = ["Board", "BOARDS", "Device", "DEVICES", "board_platform", "device_platform"]


def _led_requests(name: str, count: int) -> Callable:
    def request(platform) -> list:
        return [platform.request(name, i, dir="-") for i in range(count)]
    return request


def _rgb_led_requests(count: int) -> Callable:
    def request(platform) -> list:
        leds = []
        for i in range(count):
            rgb = platform.request("rgb_led", i, dir="-")
            leds += [rgb.g, rgb.r]
        return leds
    return request


def _no_leds(platform) -> list:
    return []


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    module: str                 # amaranth_boards module
    platform: str               # platform class in it
    device: str                 # key into DEVICES: the same FPGA out of context
    leds: Callable              # platform -> the LED ports (``dir="-"``) the top may drive
    note: str = ""

    def platform_class(self):
        import importlib
        return getattr(importlib.import_module(self.module), self.platform)


BOARDS: dict[str, Board] = {b.name: b for b in [
    Board("icebreaker", "amaranth_boards.icebreaker", "ICEBreakerPlatform", "ice40up5k",
          lambda p: [p.request("led_g", 0, dir="-"), p.request("led_r", 0, dir="-")]),
    Board("ulx3s-85f", "amaranth_boards.ulx3s", "ULX3S_85F_Platform", "lfe5u-85f",
          _led_requests("led", 8)),
    # The 5A-75B's UART is its one LED (tx) and one button (rx): no LEDs beside it.
    Board("colorlight-5a-75b", "amaranth_boards.colorlight_5a75b_r7_0",
          "Colorlight_5A75B_R70Platform", "lfe5u-25f", _no_leds,
          note="UART on the J19 LED (tx) and KEY (rx) pins"),
    # ECPIX-5 85F carries an LFE5UM5G-85F (speed 8); the report device lfe5u-85f is speed 6.
    Board("ecpix5", "amaranth_boards.ecpix5", "ECPIX585Platform", "lfe5u-85f",
          _rgb_led_requests(4)),
]}


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    family: str                 # "ice40" | "ecp5"
    part: str                   # Amaranth's device name
    package: str
    speed: str | None
    clk: str                    # pin of the clock input
    sin: str                    # pin of the harness's serial input
    sout: str                   # pin of the harness's serial output
    io_attrs: dict
    capacity: dict              # nominal resources, for sanity checks: luts, ebr

    def platform(self, clock_mhz: float):
        return device_platform(self.name, clock_mhz)


DEVICES: dict[str, Device] = {d.name: d for d in [
    Device("ice40up5k", "ice40", "iCE40UP5K", "SG48", None, "35", "6", "9",
           {"IO_STANDARD": "SB_LVCMOS"}, {"luts": 5280, "ebr": 30}),
    Device("lfe5u-25f", "ecp5", "LFE5U-25F", "BG256", "6", "P6", "M13", "P11",
           {"IO_TYPE": "LVCMOS33"}, {"luts": 24288, "ebr": 56}),
    Device("lfe5u-85f", "ecp5", "LFE5U-85F", "BG381", "6", "G2", "M1", "L4",
           {"IO_TYPE": "LVCMOS33"}, {"luts": 83640, "ebr": 208}),
]}


def board_platform(board: str):
    """An instance of the board's amaranth-boards platform."""
    try:
        spec = BOARDS[board]
    except KeyError:
        raise ValueError(f"unknown board {board!r}; known: {', '.join(BOARDS)}") from None
    return spec.platform_class()()


def device_platform(device: str, clock_mhz: float):
    """A platform for ``device`` with a clock pin constrained to ``clock_mhz``, and one serial
    input and one serial output pin (resources ``clk``, ``sin``, ``sout``)."""
    try:
        spec = DEVICES[device]
    except KeyError:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}") from None
    if spec.family == "ice40":
        from amaranth.vendor import LatticeICE40Platform as base
        clk_attrs = Attrs(GLOBAL=True, **spec.io_attrs)
    else:
        from amaranth.vendor import LatticeECP5Platform as base
        clk_attrs = Attrs(**spec.io_attrs)
    attrs = {"device": spec.part, "package": spec.package, "default_clk": "clk",
             "resources": [], "connectors": []}
    if spec.speed is not None:
        attrs["speed"] = spec.speed
    cls = type(f"OutOfContext_{spec.part.replace('-', '_')}", (base,), attrs)
    platform = cls()
    platform.add_resources([
        Resource("clk", 0, Pins(spec.clk, dir="i"), Clock(clock_mhz * 1e6), clk_attrs),
        Resource("sin", 0, Pins(spec.sin, dir="i"), Attrs(**spec.io_attrs)),
        Resource("sout", 0, Pins(spec.sout, dir="o"), Attrs(**spec.io_attrs)),
    ])
    return platform
