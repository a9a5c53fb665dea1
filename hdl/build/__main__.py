"""Build a board image, or report a component's Fmax and utilisation on a device.

    python -m tickpath.hdl.build --board icebreaker [--top itch_decoder] [-o build/icebreaker]
                                 [--type rtlil|verilog|bitstream] [--dry-run] [--keep-files]
    python -m tickpath.hdl.build --device lfe5u-85f [--component itch_decoder ...]
                                 [--clock 125] [--json] [-o DIR] [--keep-files]
    python -m tickpath.hdl.build --list
"""

from __future__ import annotations

import argparse
import json
import sys

from tickpath.hdl.build.board import TYPES, build_board
from tickpath.hdl.build.components import COMPONENTS
from tickpath.hdl.build.platforms import BOARDS, DEVICES
from tickpath.hdl.build.report import BuildError, prepare_report, synth_report
from tickpath.hdl.build.toolchain import missing_tools
from tickpath.hdl.build.tops import TOPS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tickpath.hdl.build",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--board", choices=list(BOARDS), help="build an image for this board")
    mode.add_argument("--device", choices=list(DEVICES),
                      help="report Fmax/utilisation out of context on this device")
    mode.add_argument("--list", action="store_true", help="list boards, tops, devices, components")
    parser.add_argument("--top", choices=list(TOPS), default="itch_decoder",
                        help="board top (with --board)")
    parser.add_argument("-t", "--type", choices=TYPES, default="bitstream",
                        help="what to build (with --board)")
    parser.add_argument("--dry-run", action="store_true",
                        help="write the build plan (sources, constraints, scripts), run no tool")
    parser.add_argument("--component", action="append", choices=list(COMPONENTS),
                        help="component to report (with --device; repeatable; default: all "
                             "registered for the device)")
    parser.add_argument("--clock", type=float, default=125.0,
                        help="clock constraint in MHz for the report (default 125)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="stop a report's build after this many seconds (default 3600)")
    parser.add_argument("--router", choices=["router1", "router2"],
                        help="nextpnr router for reports (default: nextpnr's, router1)")
    parser.add_argument("--json", action="store_true", help="print reports as JSON lines")
    parser.add_argument("-o", "--output", help="output folder (default build/<board> for "
                                               "--board; a temporary folder for --device)")
    parser.add_argument("--keep-files", action="store_true",
                        help="keep intermediate files (netlists, placed design, scripts)")
    return parser


def _list() -> None:
    print("boards:     " + ", ".join(BOARDS))
    print("tops:       " + ", ".join(TOPS))
    print("devices:    " + ", ".join(DEVICES))
    for name, entry in COMPONENTS.items():
        print(f"component:  {name:<16} {entry.target}  on {', '.join(entry.devices)}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        _list()
        return 0
    needs_tools = not args.dry_run and (args.device or args.type == "bitstream")
    if needs_tools and (missing := missing_tools()):
        print(f"missing tools: {', '.join(missing)}; install them with "
              "`pip install -e '.[fpga]'`", file=sys.stderr)
        return 2

    if args.board:
        try:
            result = build_board(args.board, args.top, directory=args.output, type=args.type,
                                 dry_run=args.dry_run, keep_files=args.keep_files)
        except BuildError as e:
            print(e, file=sys.stderr)
            return 1
        for path in result.files:
            print(path)
        if result.report is not None:
            print(json.dumps(result.report.as_dict()) if args.json else result.report.summary())
            print(f"built in {result.report.seconds} s", file=sys.stderr)
        return 0

    names = args.component or [n for n, e in COMPONENTS.items() if args.device in e.devices]
    status = 0
    for name in names:
        entry = COMPONENTS[name]
        directory = f"{args.output}/{name}" if args.output else None
        if args.dry_run:
            plan, _ = prepare_report(entry.factory(args.device), args.device, args.clock,
                                     router=args.router)
            plan.extract(directory or f"build/{args.device}/{name}")
            print(directory or f"build/{args.device}/{name}")
            continue
        try:
            report = synth_report(entry.factory(args.device), args.device, args.clock,
                                  name=name, directory=directory, keep_files=args.keep_files,
                                  timeout=args.timeout, router=args.router)
        except BuildError as e:
            print(f"{name} on {args.device}: build failed: {e.reason}", file=sys.stderr)
            status = 1
            continue
        except Exception as e:     # noqa: BLE001 -- a component still being written: say why
            print(f"{name} on {args.device}: skipped ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        print(json.dumps(report.as_dict()) if args.json else report.summary(), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
