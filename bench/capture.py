"""Capture backends on loopback (and a veth pair for AF_XDP), datagrams per second, against a
plain ``recv`` loop measured in the same run.  Bounded: 100k datagrams or 5 s per backend."""

from __future__ import annotations

from bench.report import Row
from tickpath.host.capture import measure

COUNT, SECONDS = 100_000, 5


def run() -> list[Row]:
    rows = []
    for messages, label in ((1, "small"), (40, "full")):
        base = f"recv loop ({label})"
        for backend in ("recv", "socket", "ring-frames", "xdp-frames", "pcap"):
            r = measure.measure(backend, count=COUNT, seconds=SECONDS, messages=messages)
            name = base if backend == "recv" else f"{backend} ({label})"
            if "skipped" in r:
                rows.append(Row(name, 0, "dgram/s", note=f"skipped: {r['skipped']}"))
                continue
            got = r.get("received", 0)
            rows.append(Row(name, r["per_s"], "dgram/s",
                            baseline=None if backend == "recv" else base,
                            note=f"{got} received of {COUNT} sent"))
    return rows
