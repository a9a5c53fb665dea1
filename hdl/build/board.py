"""Board images: a thin top around a component, built with the YoWASP tools to .bin/.bit."""

from __future__ import annotations

import dataclasses
import pathlib
import time

from tickpath.hdl.build.platforms import BOARDS, board_platform
from tickpath.hdl.build.report import Report, nextpnr_options, read_report, run_plan
from tickpath.hdl.build.toolchain import tool_versions
from tickpath.hdl.build.tops import TOPS

__all__ = ["BuildResult", "build_board", "TYPES"]

TYPES = ("rtlil", "verilog", "bitstream")

#: Outputs kept without --keep-files: the image, the logs and the report.
_KEEP = (".bin", ".bit", ".svf", ".rpt", ".tim", ".report.json", ".log")


@dataclasses.dataclass
class BuildResult:
    board: str
    top: str
    directory: pathlib.Path
    files: list[pathlib.Path]
    report: Report | None = None


def build_board(board: str, top: str = "itch_decoder", *,
                directory: str | pathlib.Path | None = None, type: str = "bitstream",
                dry_run: bool = False, keep_files: bool = False) -> BuildResult:
    """Elaborate ``top`` for ``board`` and, for ``type="bitstream"``, build the image.

    ``rtlil``/``verilog`` write only ``top.il``/``top.debug.v``; ``dry_run`` writes the whole
    build plan (sources, constraints, scripts) without running a tool."""
    if type not in TYPES:
        raise ValueError(f"type must be one of {', '.join(TYPES)}, not {type!r}")
    if top not in TOPS:
        raise ValueError(f"unknown top {top!r}; known: {', '.join(TOPS)}")
    spec = BOARDS[board] if board in BOARDS else None
    platform = board_platform(board)
    design = TOPS[top](spec)
    plan = platform.prepare(design, name="top", nextpnr_opts=nextpnr_options(),
                            debug_verilog=(type == "verilog"))
    out = pathlib.Path(directory or pathlib.Path("build") / board)
    out.mkdir(parents=True, exist_ok=True)

    if dry_run:
        plan.extract(out)
        return BuildResult(board, top, out, sorted(p for p in out.iterdir() if p.is_file()))
    if type != "bitstream":
        wanted = "top.il" if type == "rtlil" else "top.debug.v"
        target = out / wanted
        content = plan.files[wanted]
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
        return BuildResult(board, top, out, [target])

    start = time.monotonic()
    run_plan(plan, out)
    seconds = time.monotonic() - start
    parsed = read_report(out)
    tools = tool_versions()
    if yosys := parsed.pop("yosys"):
        tools["yosys"] = yosys
    report = Report(component=f"{top} top", device=board,
                    clock_mhz=platform.default_clk_frequency / 1e6, **parsed,
                    tools=tools, seconds=round(seconds, 1),
                    directory=str(out))
    if not keep_files:
        # the plan's inputs and the tools' intermediate netlists / placed designs
        for filename in [*plan.files, "top.json", "top.asc", "top.config"]:
            path = out / filename
            if path.is_file() and not filename.endswith(_KEEP):
                path.unlink()
    files = sorted(p for p in out.iterdir() if p.is_file())
    return BuildResult(board, top, out, files, report)
