"""Audit journal: records made durable per second with group commit (1 ms batching), the commit
latency distribution, a gateway-style loop (each client waits for its record to be durable before
the next), and `audit verify` speed."""

from __future__ import annotations

from bench.report import Row
from tickpath.host.audit import measure

RECORDS = 200_000
CLIENTS = 256


def run() -> list[Row]:
    r = measure.measure(RECORDS, None, 0.001)
    g = measure.measure_gateway(RECORDS // 2, None, 0.001, CLIENTS)
    lat, ack = r["commit_latency_us"], g["ack_latency_us"]
    return [
        Row("durable records (open loop)", r["durable_records_per_s"], "rec/s",
            note=f"target >= 100k/s; {r['records_per_commit_mean']:.0f} records/commit"),
        Row("append -> durable p50", lat["p50"], "us"),
        Row("append -> durable p99", lat["p99"], "us"),
        Row(f"durable records ({CLIENTS} waiting clients)", g["durable_records_per_s"], "rec/s"),
        Row("client ack p50", ack["p50"], "us"),
        Row("client ack p99", ack["p99"], "us"),
        Row("audit verify", r["verify_records_per_s"], "rec/s"),
    ]
