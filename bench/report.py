"""A benchmark's result rows and how they are printed."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable


@dataclasses.dataclass
class Row:
    name: str
    value: float            # a figure to print, never a decision
    unit: str
    baseline: str | None = None     # name of the row this one is compared with
    note: str = ""


def rate(fn: Callable[[], int], *, repeat: int = 3) -> float:
    """Best-of-``repeat`` items per second of ``fn``, which returns how many items it did."""
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        n = fn()
        dt = time.perf_counter_ns() - t0
        best = max(best, n * 1e9 / max(dt, 1))
    return best


def print_rows(title: str, rows: list[Row]) -> None:
    by_name = {r.name: r for r in rows}
    print(f"\n== {title}")
    width = max((len(r.name) for r in rows), default=10)
    for r in rows:
        ratio = ""
        if r.baseline and r.baseline in by_name and by_name[r.baseline].value:
            ratio = f"  x{r.value / by_name[r.baseline].value:.2f} vs {r.baseline}"
        print(f"  {r.name:<{width}}  {r.value:>14,.0f} {r.unit}{ratio}"
              + (f"  ({r.note})" if r.note else ""))
