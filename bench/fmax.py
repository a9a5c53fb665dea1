"""Fmax and utilisation of each gateware component on each device, from YoWASP Yosys + nextpnr.

Every component registered in :data:`tickpath.hdl.build.components.COMPONENTS` is placed and
routed out of context (see :mod:`tickpath.hdl.build.harness`) on iCE40UP5K, ECP5-25F and ECP5-85F
with its clock constrained to 125 MHz, the Gigabit line rate at 8 bits a cycle; the row
``target`` is that line. One nextpnr runs at a time. ``FMAX_DEVICES`` and ``FMAX_COMPONENTS``
(comma-separated) narrow the run: the whole matrix takes many minutes; ``FMAX_TIMEOUT`` (seconds,
default 1200) stops one component's build.
"""

from __future__ import annotations

import os
import sys

from bench.report import Row

TARGET_MHZ = 125.0
TARGET = "target (1 GbE, 8 bit)"


def _selected(variable: str, known) -> list[str]:
    value = os.environ.get(variable, "")
    return [v for v in value.split(",") if v] if value else list(known)


def run() -> list[Row]:
    from tickpath.hdl.build.components import COMPONENTS
    from tickpath.hdl.build.platforms import DEVICES
    from tickpath.hdl.build.report import BuildError, synth_report
    from tickpath.hdl.build.toolchain import missing_tools, tool_versions

    rows = [Row(TARGET, TARGET_MHZ, "MHz")]
    if missing := missing_tools():
        print(f"fmax: YoWASP tools missing ({', '.join(missing)}): pip install -e '.[fpga]'",
              file=sys.stderr)
        return rows
    print("fmax: " + ", ".join(f"{k} {v}" for k, v in tool_versions().items()), file=sys.stderr)
    for device in _selected("FMAX_DEVICES", DEVICES):
        for name in _selected("FMAX_COMPONENTS", COMPONENTS):
            entry = COMPONENTS[name]
            if device not in entry.devices:
                continue
            label = f"{name}@{device}"
            try:
                report = synth_report(entry.factory(device), device, TARGET_MHZ, name=label,
                                      timeout=float(os.environ.get("FMAX_TIMEOUT", 1200)))
            except BuildError as e:     # e.g. does not fit: nextpnr's "no BELs remaining"
                print(f"fmax: {label} failed: {e.reason}", file=sys.stderr)
                continue
            except Exception as e:      # noqa: BLE001 -- a component still being written
                print(f"fmax: {label} skipped: {type(e).__name__}: {str(e)[:300]}",
                      file=sys.stderr)
                continue
            size = ", ".join(f"{k}={v}" for k, v in entry.kwargs(device).items())
            if report.fmax is not None:
                rows.append(Row(f"{label} Fmax", report.fmax, "MHz", baseline=TARGET,
                                note=f"{report.fmax:.1f} MHz" + (f"; {size}" if size else "")))
            rows.append(Row(f"{label} LUT4", report.luts, "LUTs",
                            note=f"{report.lcs}/{report.lcs_available} LC/COMB, {report.ffs} FF, "
                                 f"harness <= {report.harness_luts} LUT {report.harness_ffs} FF"))
            rows.append(Row(f"{label} EBR", report.ebr, "EBR",
                            note=f"of {report.ebr_available}; SPRAM {report.spram}, "
                                 f"DSP {report.dsp}"))
    return rows
