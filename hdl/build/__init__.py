"""Synthesis, place-and-route and bitstreams with the YoWASP tools (``pip install -e '.[fpga]'``).

- :func:`synth_report`: a component out of context on a device -> Fmax and utilisation.
- :func:`build_board`: a thin board top (UART, LEDs) around a component -> ``.bin``/``.bit``.
- ``python -m tickpath.hdl.build``: both from the command line.

Board tops and platforms live here because ``firmware/`` is not a Python package; ``firmware/``
keeps the board notes and documents the outputs.
"""

from tickpath.hdl.build.board import BuildResult, build_board
from tickpath.hdl.build.components import COMPONENTS, Entry, component_factory
from tickpath.hdl.build.platforms import BOARDS, DEVICES, board_platform, device_platform
from tickpath.hdl.build.report import (
    BuildError,
    Report,
    parse_nextpnr_json,
    parse_nextpnr_log,
    parse_yosys_stat,
    synth_report,
)

__all__ = [
    "BOARDS", "DEVICES", "COMPONENTS", "Entry", "Report", "BuildError", "BuildResult",
    "board_platform", "device_platform", "component_factory", "build_board", "synth_report",
    "parse_nextpnr_json", "parse_nextpnr_log", "parse_yosys_stat",
]
