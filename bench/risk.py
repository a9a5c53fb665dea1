"""Pre-trade risk checks per second and per-order latency; kill-switch time to last cancel."""

from __future__ import annotations

from bench.report import Row
from tickpath.host.risk import measure


def run() -> list[Row]:
    r = measure.measure()
    k = measure.measure_kill()
    return [
        Row("risk checks", r["checks_per_s"], "checks/s", note="target >= 100k/s"),
        Row("risk check p50", r["p50_ns"], "ns"),
        Row("risk check p99", r["p99_ns"], "ns", note="target <= 20 us"),
        Row("kill switch, time to last cancel", k["time_to_last_cancel_ns"] // 1000, "us",
            note=f"{k['orders_canceled']} resting orders"),
    ]
