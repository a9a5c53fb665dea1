"""Run every benchmark and print its figures, with ratios against the peers measured in the
same run.  ``python -m bench [NAME ...]``; ``--list`` shows the names."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

# name -> module under bench/ exposing run() -> list[Row]
BENCHES = {
    "models": "bench.models",
    "risk": "bench.risk",
    "audit": "bench.audit",
    "capture": "bench.capture",
    "feed": "bench.feed",
    "orders": "bench.orders",
    "matching": "bench.matching",
    "feed_path": "bench.feed_path",
    "feed_sim": "bench.feed_sim",
    "fmax": "bench.fmax",
}
# Run only when named: feed_sim simulates a million messages, fmax places and routes every
# component on every device (needs the `fpga` extra: `make fmax`).
SLOW = {"feed_sim", "fmax"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*",
                        help=f"benchmarks to run (default: all but {', '.join(sorted(SLOW))})")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(BENCHES))
        return 0
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}",
              file=sys.stderr)
        return 2
    from bench.report import print_rows
    for name in args.names or [n for n in BENCHES if n not in SLOW]:
        start = time.perf_counter_ns()
        rows = importlib.import_module(BENCHES[name]).run()
        took = (time.perf_counter_ns() - start) // 1_000_000
        print_rows(f"{name} ({took} ms)", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
