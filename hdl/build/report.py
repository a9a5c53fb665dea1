"""Synthesis reports: Fmax per clock and utilisation, parsed from Yosys and nextpnr output.

Every figure in a :class:`Report` is read from the tools' own output: nextpnr's JSON report
(``--report``; its log ``top.tim`` when there is none) for Fmax and the placed resources, and the
Yosys log (``top.rpt``) for the mapped cell counts. Nothing is estimated, except the harness
sizes, which are structural counts of the out-of-context wrapper (see :mod:`.harness`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

__all__ = [
    "Report", "BuildError", "parse_critical_path", "parse_nextpnr_json", "parse_nextpnr_log",
    "parse_yosys_stat", "parse_yosys_version", "read_report", "run_plan", "prepare_report",
    "synth_report",
]

# nextpnr bel types per resource, both families.
LC_BELS    = ("ICESTORM_LC", "TRELLIS_COMB")
EBR_BELS   = ("ICESTORM_RAM", "DP16KD")
SPRAM_BELS = ("ICESTORM_SPRAM",)
DSP_BELS   = ("ICESTORM_DSP", "MULT18X18D")
IO_BELS    = ("SB_IO", "TRELLIS_IO")
# Yosys cells after synth_ice40 / synth_ecp5.
LUT_CELLS  = ("SB_LUT4", "LUT4")
CARRY_CELLS = {"SB_CARRY": 0, "CCU2C": 2}   # CCU2C is two LUT4s with their carry
FF_PREFIXES = ("SB_DFF", "TRELLIS_FF")


class BuildError(RuntimeError):
    """A tool failed; ``log`` holds the tail of its output."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message + (f"\n--- tool output (tail) ---\n{log}" if log else ""))
        self.log = log

    @property
    def reason(self) -> str:
        """The tool's first ``ERROR:`` line (e.g. nextpnr's "no BELs remaining": does not fit)."""
        for line in self.log.splitlines():
            if line.startswith("ERROR:"):
                return line
        return str(self).splitlines()[0]


@dataclasses.dataclass
class Report:
    component: str
    device: str
    clock_mhz: float                        # the constraint nextpnr was given
    fmax_mhz: dict[str, float]              # clock net -> achieved Fmax (nextpnr)
    utilisation: dict[str, tuple[int, int]]  # nextpnr bel type -> (used, available)
    cells: dict[str, int]                   # Yosys mapped cell type -> count
    critical_path: list[str] = dataclasses.field(default_factory=list)  # cells, worst clock
    harness_ffs: int = 0                    # out-of-context wrapper (0 for a board top)
    harness_luts: int = 0
    tools: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    directory: str | None = None            # where the logs are, when kept

    def _used(self, bels) -> int:
        return sum(self.utilisation.get(b, (0, 0))[0] for b in bels)

    def _available(self, bels) -> int:
        return sum(self.utilisation.get(b, (0, 0))[1] for b in bels)

    @property
    def fmax(self) -> float | None:
        """The slowest clock's Fmax in MHz (None if nextpnr reported none)."""
        return min(self.fmax_mhz.values()) if self.fmax_mhz else None

    @property
    def luts(self) -> int:
        """LUT4s after synthesis (Yosys), counting an ECP5 CCU2C carry cell as two."""
        return (sum(self.cells.get(c, 0) for c in LUT_CELLS)
                + sum(n * self.cells.get(c, 0) for c, n in CARRY_CELLS.items()))

    @property
    def ffs(self) -> int:
        return sum(n for c, n in self.cells.items() if c.startswith(FF_PREFIXES))

    @property
    def lcs(self) -> int:
        """Placed logic cells: iCE40 LCs (LUT+FF+carry) or ECP5 TRELLIS_COMB (nextpnr)."""
        return self._used(LC_BELS)

    @property
    def lcs_available(self) -> int:
        return self._available(LC_BELS)

    @property
    def ebr(self) -> int:
        return self._used(EBR_BELS)

    @property
    def ebr_available(self) -> int:
        return self._available(EBR_BELS)

    @property
    def spram(self) -> int:
        return self._used(SPRAM_BELS)

    @property
    def dsp(self) -> int:
        return self._used(DSP_BELS)

    @property
    def io(self) -> int:
        return self._used(IO_BELS)

    def summary(self) -> str:
        fmax = ", ".join(f"{clk}: {mhz:.2f} MHz" for clk, mhz in self.fmax_mhz.items()) or "none"
        text = (f"{self.component} on {self.device}: Fmax {fmax} (constraint {self.clock_mhz:g} "
                f"MHz); LUT4 {self.luts}, FF {self.ffs}, LC/COMB {self.lcs}/{self.lcs_available}, "
                f"EBR {self.ebr}/{self.ebr_available}, SPRAM {self.spram}, DSP {self.dsp}, "
                f"IO {self.io}")
        if self.harness_ffs:
            text += f" (incl. harness: {self.harness_ffs} FF, <= {self.harness_luts} LUT)"
        if self.critical_path:
            text += (f"; critical path {self.critical_path[0]} -> {self.critical_path[-1]}, "
                     f"{len(self.critical_path) - 2} logic cells")
        return text

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["utilisation"] = {k: list(v) for k, v in self.utilisation.items()}
        for key in ("fmax", "luts", "ffs", "lcs", "lcs_available", "ebr", "ebr_available",
                    "spram", "dsp", "io"):
            d[key] = getattr(self, key)
        return d


# -- parsers ---------------------------------------------------------------------------------

def parse_nextpnr_json(text: str) -> tuple[dict[str, float], dict[str, tuple[int, int]]]:
    """``--report`` JSON -> (clock -> achieved MHz, bel type -> (used, available))."""
    data = json.loads(text)
    fmax = {clk: float(v["achieved"]) for clk, v in data.get("fmax", {}).items()}
    util = {bel: (int(v["used"]), int(v["available"]))
            for bel, v in data.get("utilization", {}).items()}
    return fmax, util


def parse_critical_path(text: str) -> list[str]:
    """The cells along the longest register-to-register path in a ``--report`` JSON: where
    the logic that limits Fmax sits (first and last entries: launching and capturing cells)."""
    worst: tuple[float, list[str]] = (-1.0, [])
    for path in json.loads(text).get("critical_paths", []):
        if "<async>" in (path.get("from"), path.get("to")):
            continue
        steps = path.get("path", [])
        delay = sum(float(step.get("delay", 0)) for step in steps)
        cells = [step["from"]["cell"] for step in steps if step.get("type") in
                 ("clk-to-q", "logic")]
        if steps:
            cells.append(steps[-1]["to"]["cell"])
        if delay > worst[0]:
            worst = (delay, cells)
    return worst[1]


_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+)\s+MHz")
_UTIL_RE = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)


def parse_nextpnr_log(text: str) -> tuple[dict[str, float], dict[str, tuple[int, int]]]:
    """nextpnr's log -> (clock -> achieved MHz, bel type -> (used, available)).

    nextpnr prints Fmax after placement and again after routing: the last figure per clock
    (the routed one) wins. The utilisation table is the one after "Device utilisation:"."""
    fmax: dict[str, float] = {}
    for clk, mhz in _FMAX_RE.findall(text):
        fmax[clk] = float(mhz)
    util: dict[str, tuple[int, int]] = {}
    start = text.rfind("Device utilisation:")
    if start >= 0:
        for line in text[start:].splitlines()[1:]:
            match = _UTIL_RE.match(line)
            if match is None:
                if util:
                    break
                continue
            util[match[1]] = (int(match[2]), int(match[3]))
    return fmax, util


# Yosys `stat` lists cells as "     SB_LUT4     321" after "Number of cells:" (before 0.50),
# or as "      321   SB_LUT4" (count, then the name indented) since; blackbox primitives
# (SB_LUT4, TRELLIS_FF, ...) are listed under "submodules" there, other cells under "cells".
_STAT_OLD_RE = re.compile(r"^\s+(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*$")
_STAT_NEW_RE = re.compile(r"^\s+(\d+)\s{2,}(\$?[A-Za-z_][\w$.]*)\s*$")


def parse_yosys_stat(text: str) -> dict[str, int]:
    """Cell type -> count from the last ``stat`` of a Yosys log (the mapped design).

    The totals come from the last "design hierarchy" section (counts including submodules)
    when there is one, otherwise from the last module section."""
    last_stat = text.rfind("Printing statistics")
    text = text[max(last_stat, 0):]
    heads = list(re.finditer(r"^=== (.*) ===[ \t]*$", text, re.M))
    if not heads:
        return {}
    hierarchy = [h for h in heads if h[1] == "design hierarchy"]
    head = hierarchy[-1] if hierarchy else heads[-1]
    lines = []
    for line in text[head.end():].splitlines()[1:]:
        if line.startswith("===") or (line and not line[0].isspace()):
            break
        lines.append(line)
    cells: dict[str, int] = {}
    for line in lines:
        if (match := _STAT_NEW_RE.match(line)) is not None:
            cells[match[2]] = cells.get(match[2], 0) + int(match[1])
    if cells:
        return cells
    in_cells = False
    for line in lines:
        if re.match(r"^\s+Number of cells:\s+\d+\s*$", line):
            in_cells, cells = True, {}
        elif in_cells:
            if (match := _STAT_OLD_RE.match(line)) is None:
                in_cells = False
                continue
            cells[match[1]] = cells.get(match[1], 0) + int(match[2])
    return cells


def parse_yosys_version(text: str) -> str | None:
    match = re.search(r"\bYosys (\d+\.\d+[^\s(]*)", text)
    return match[1] if match else None


def read_report(directory: pathlib.Path, name: str = "top") -> dict:
    """Parse a finished build folder: the :class:`Report` fields fmax_mhz, utilisation, cells,
    critical_path, and the Yosys version (``yosys``)."""
    directory = pathlib.Path(directory)
    json_path, log_path = directory / f"{name}.report.json", directory / f"{name}.tim"
    critical: list[str] = []
    if json_path.is_file():
        fmax, util = parse_nextpnr_json(json_path.read_text())
        critical = parse_critical_path(json_path.read_text())
    elif log_path.is_file():
        fmax, util = parse_nextpnr_log(log_path.read_text(errors="replace"))
    else:
        raise BuildError(f"no nextpnr report or log in {directory}")
    if not fmax and log_path.is_file():
        fmax = parse_nextpnr_log(log_path.read_text(errors="replace"))[0]
    rpt = directory / f"{name}.rpt"
    rpt_text = rpt.read_text(errors="replace") if rpt.is_file() else ""
    return {"fmax_mhz": fmax, "utilisation": util, "cells": parse_yosys_stat(rpt_text),
            "critical_path": critical, "yosys": parse_yosys_version(rpt_text)}


# -- running the tools -----------------------------------------------------------------------

def nextpnr_options(name: str = "top", router: str | None = None) -> str:
    # A failed constraint is a figure to report, not an error.
    return (f"--report {name}.report.json --timing-allow-fail"
            + (f" --router {router}" if router else ""))


def run_plan(plan, directory: pathlib.Path, *, timeout: float | None = None) -> float:
    """Extract an Amaranth build plan into ``directory`` and run its script with the YoWASP
    tools; returns the seconds it took. Raises :class:`BuildError` with the output's tail."""
    from tickpath.hdl.build.toolchain import tool_env
    directory = pathlib.Path(directory)
    plan.extract(directory)
    start = time.monotonic()
    # Its own process group, so that a timeout ends the tools too, not only the script.
    process = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=directory, env=tool_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        (directory / f"{plan.script}.log").write_text(output)
        raise BuildError(f"build in {directory} took longer than {timeout} s: stopped",
                         "\n".join(output.splitlines()[-10:])) from None
    except BaseException:               # Ctrl-C: the tools are in another session, end them
        os.killpg(process.pid, signal.SIGKILL)
        raise
    seconds = time.monotonic() - start
    (directory / f"{plan.script}.log").write_text(output)
    if process.returncode != 0:
        raise BuildError(f"build in {directory} failed (exit {process.returncode})",
                         "\n".join(output.splitlines()[-40:]))
    return seconds


def prepare_report(component_factory: Callable, device: str, clock_mhz: float = 125.0, *,
                   router: str | None = None):
    """(build plan, harness) for ``component_factory()`` out of context on ``device``;
    ``router`` picks nextpnr's router (``router1``, its default, or ``router2``)."""
    from tickpath.hdl.build.harness import OutOfContext
    from tickpath.hdl.build.platforms import device_platform

    harness = OutOfContext(component_factory())
    plan = device_platform(device, clock_mhz).prepare(
        harness, name="top", nextpnr_opts=nextpnr_options(router=router))
    return plan, harness


def synth_report(component_factory: Callable, device: str, clock_mhz: float = 125.0, *,
                 name: str | None = None, directory: str | pathlib.Path | None = None,
                 keep_files: bool = False, timeout: float | None = 3600,
                 router: str | None = None) -> Report:
    """Synthesise, place and route ``component_factory()`` out of context on ``device``
    (``ice40up5k``, ``lfe5u-25f``, ``lfe5u-85f``) with its clock constrained to ``clock_mhz``,
    and return the figures Yosys and nextpnr report.

    The build runs in ``directory`` (a temporary folder when None, removed afterwards unless
    ``keep_files``)."""
    from tickpath.hdl.build.toolchain import tool_versions

    plan, harness = prepare_report(component_factory, device, clock_mhz, router=router)
    label = name or getattr(component_factory, "__name__", type(harness.component).__name__)

    temporary = directory is None
    path = pathlib.Path(tempfile.mkdtemp(prefix="tickpath-synth-") if temporary else directory)
    try:
        seconds = run_plan(plan, path, timeout=timeout)
        parsed = read_report(path)
    finally:
        if temporary and not keep_files:
            shutil.rmtree(path, ignore_errors=True)
    tools = tool_versions()
    if yosys := parsed.pop("yosys"):
        tools["yosys"] = yosys
    return Report(component=label, device=device, clock_mhz=clock_mhz, **parsed,
                  harness_ffs=harness.harness_ffs,
                  harness_luts=harness.harness_luts, tools=tools, seconds=round(seconds, 1),
                  directory=str(path) if (keep_files or not temporary) else None)
