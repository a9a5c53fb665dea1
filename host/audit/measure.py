"""Figures for the audit journal: records made durable per second with group commit, the commit
latency distribution (append to durable acknowledgement), and ``verify`` records per second.

    python -m tickpath.host.audit.measure [--records N] [--dir DIR] [--interval S]
        [--clients C] [--switch-interval S] [--json]

The journal goes in a fresh temporary directory under ``--dir`` (default: the system's temporary
directory; give one on the disk you care about), removed afterwards. Every record is a realistic
order record (ids, account, strategy, symbol, side, price, quantity, venue).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

from .format import Kind
from .journal import Journal
from .reader import verify


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, (len(sorted_values) * q).__ceil__() - 1)
    return sorted_values[max(index, 0)]


def _order(journal: Journal, i: int) -> int:
    return journal.append(Kind.ORDER, order_id=i + 1, client_id=f"C{i:012d}", account="ACCT01",
                          strategy="mm-1", symbol="AAPL", side="B" if i & 1 else "S",
                          price=1_500_000 + (i % 100) * 100, quantity=100 + i % 7, venue="OUCH")


def _latency_summary(latencies_ns: list[int]) -> dict:
    latencies_ns.sort()
    return {name: round(_percentile(latencies_ns, q) / 1000, 1)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999),
                            ("max", 1.0))}


def measure_gateway(records: int, directory: str | None, interval: float,
                    clients: int) -> dict:
    """Closed loop, as a gateway uses it: ``clients`` asyncio tasks each append a record and
    await its durability before the next (the acknowledgement waits for the disk)."""
    root = tempfile.mkdtemp(prefix="tickpath-audit-measure-", dir=directory)
    try:
        journal = Journal.open(root, commit_interval=interval)
        latencies: list[int] = []
        clock = time.perf_counter_ns
        per_client = records // clients

        async def client(c: int) -> None:
            for k in range(per_client):
                t0 = clock()
                seq = _order(journal, c * per_client + k)
                await journal.wait_durable_async(seq)
                latencies.append(clock() - t0)

        async def run() -> None:
            await asyncio.gather(*(client(c) for c in range(clients)))

        start = clock()
        asyncio.run(run())
        elapsed = clock() - start
        journal.close()
        return {"clients": clients, "records": len(latencies),
                "durable_records_per_s": round(len(latencies) * 1e9 / elapsed),
                "ack_latency_us": _latency_summary(latencies)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(records: int, directory: str | None, interval: float) -> dict:
    """Open loop: one producer appends as fast as it can; the committer follows."""
    root = tempfile.mkdtemp(prefix="tickpath-audit-measure-", dir=directory)
    try:
        journal = Journal.open(root, commit_interval=interval)
        commits: list[tuple[int, int]] = []       # (perf_counter_ns, durable seq)
        advance = journal._advance
        clock = time.perf_counter_ns

        def timed_advance(upto: int) -> None:
            commits.append((clock(), upto))
            advance(upto)

        journal._advance = timed_advance
        appended = [0] * (records + 1)
        first = journal.last_seq + 1
        start = clock()
        for i in range(records):
            seq = _order(journal, i)
            appended[seq - first + 1] = clock()
        journal.wait_durable(journal.last_seq)
        elapsed = clock() - start
        journal.close()
        # latency of each record: from its append to the first commit covering it
        latencies = []
        ci = 0
        for k in range(1, records + 1):
            seq = first + k - 1
            while commits[ci][1] < seq:
                ci += 1
            latencies.append(commits[ci][0] - appended[k])
        size = os.path.getsize(os.path.join(root, "journal.tpj"))
        t0 = clock()
        report = verify(root)
        verify_ns = clock() - t0
        assert report.ok, report.problem
        batches = [b[1] - a[1] for a, b in zip(commits, commits[1:], strict=False)]
        return {
            "records": records,
            "bytes_per_record": round((size - 64) / report.records, 1),
            "commit_interval_s": interval,
            "commits": len(commits),
            "records_per_commit_mean": round(records / max(len(commits), 1), 1),
            "records_per_commit_max": max(batches, default=records),
            "durable_records_per_s": round(records * 1e9 / elapsed),
            "commit_latency_us": _latency_summary(latencies),
            "verify_records_per_s": round(report.records * 1e9 / verify_ns),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--dir", default=None, help="where to put the temporary journal")
    parser.add_argument("--interval", type=float, default=0.001, help="commit interval, s")
    parser.add_argument("--clients", type=int, default=256,
                        help="concurrent clients of the closed-loop (gateway) run")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval for the run (Python's default: 0.005 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    result = measure(args.records, args.dir, args.interval)
    gateway = measure_gateway(args.records, args.dir, args.interval, args.clients)
    result["gateway"] = gateway
    result["switch_interval_s"] = sys.getswitchinterval()
    if args.json:
        print(json.dumps(result))
        return
    lat = result["commit_latency_us"]
    print(f"audit journal, {result['records']} records of {result['bytes_per_record']} bytes, "
          f"commit interval {result['commit_interval_s'] * 1e3:g} ms")
    print(f"  durable: {result['durable_records_per_s']:,} records/s in {result['commits']} "
          f"commits (mean {result['records_per_commit_mean']} records/commit)")
    print("  commit latency (append -> durable), us: "
          + ", ".join(f"{k} {v}" for k, v in lat.items()))
    print(f"  closed loop, {gateway['clients']} clients each awaiting durability: "
          f"{gateway['durable_records_per_s']:,} records/s; ack latency, us: "
          + ", ".join(f"{k} {v}" for k, v in gateway["ack_latency_us"].items()))
    print(f"  verify: {result['verify_records_per_s']:,} records/s")
    print(f"  (GIL switch interval {result['switch_interval_s'] * 1e3:g} ms, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
