"""Capture backend 4: replay a pcap file through the capture interface.

Frames are read with :mod:`tickpath.protocol.pcap` and released at the file's own pacing
(``pacing="file"``, optionally sped up by an integer ``speedup``), at a fixed rate
(``pacing="rate"``, ``rate`` datagrams per second), or as fast as they are asked for
(``pacing="asap"``). Each datagram keeps the timestamp recorded in the file as its capture
timestamp. Release times are integer nanoseconds on the monotonic clock; frames that are not
IPv4/UDP, or not for the configured groups, are counted as filtered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

from tickpath.protocol import pcap

from .base import Capture, Datagram, Group, parse_groups

__all__ = ["ReplayCapture"]

PACINGS = ("asap", "file", "rate")


class ReplayCapture(Capture):
    """Datagrams of a pcap file (path or binary file object), paced as asked."""

    backend = "pcap"

    def __init__(self, source: str | os.PathLike | object, *, pacing: str = "asap",
                 rate: int | None = None, speedup: int = 1,
                 groups: Iterable[Group | str] | None = None):
        super().__init__()
        if pacing not in PACINGS:
            raise ValueError(f"pacing must be one of {PACINGS}, not {pacing!r}")
        if pacing == "rate" and (rate is None or rate <= 0):
            raise ValueError("pacing='rate' needs a positive rate (datagrams per second)")
        if speedup < 1:
            raise ValueError(f"speedup must be a positive integer, not {speedup}")
        self._pacing, self._rate, self._speedup = pacing, rate, speedup
        groups = None if groups is None else parse_groups(groups)
        self._want = None if groups is None else {(g.addr, g.port) for g in groups}
        self._records: Iterator[tuple[int, bytes]] = pcap.read_pcap(source)
        self._pending: tuple[int, bytes] | None = None
        self._end = False
        self._start_mono: int | None = None
        self._first_ts: int | None = None
        self._index = 0                       # records released so far (for rate pacing)

    @property
    def at_end(self) -> bool:
        return self._end and self._pending is None

    def _peek(self) -> tuple[int, bytes] | None:
        if self._pending is None and not self._end:
            try:
                self._pending = next(self._records)
            except StopIteration:
                self._end = True
        return self._pending

    def _due(self, ts: int) -> int:
        """Monotonic time (ns) at which the next record is released."""
        if self._start_mono is None:
            self._start_mono = time.monotonic_ns()
            self._first_ts = ts
        if self._pacing == "file":
            return self._start_mono + max(0, ts - self._first_ts) // self._speedup
        if self._pacing == "rate":
            return self._start_mono + self._index * 1_000_000_000 // self._rate
        return 0

    def _released(self, max_count: int) -> list[tuple[int, bytes]]:
        """Records whose release time has come."""
        out: list[tuple[int, bytes]] = []
        now = time.monotonic_ns()
        while len(out) < max_count:
            rec = self._peek()
            if rec is None or (self._pacing != "asap" and self._due(rec[0]) > now):
                break
            self._pending = None
            self._index += 1
            out.append(rec)
        return out

    def _read_frames(self, max_count: int) -> list[tuple[int, bytes]]:
        out = [(ts, bytes(f)) for ts, f in self._released(max_count)]
        self._stats.received += len(out)
        self._stats.bytes += sum(len(f) for _, f in out)
        return out

    def _read(self, max_count: int) -> list[Datagram]:
        out: list[Datagram] = []
        st = self._stats
        for ts, frame in self._released(max_count):
            try:
                u = pcap.parse_udp_frame(frame)
            except pcap.PcapError:
                st.filtered += 1
                continue
            if self._want is not None and (u.dst_ip, u.dport) not in self._want:
                st.filtered += 1
                continue
            out.append(Datagram(ts, (u.src_ip, u.sport), (u.dst_ip, u.dport), u.payload,
                                bytes(frame)))
            st.bytes += len(u.payload)
        st.received += len(out)
        return out

    def _wait(self, timeout_ns: int) -> None:
        rec = self._peek()
        if rec is None:
            return
        wait = min(timeout_ns, self._due(rec[0]) - time.monotonic_ns())
        if wait > 0:
            time.sleep(wait / 1e9)

    def _close(self) -> None:
        close = getattr(self._records, "close", None)
        if close is not None:
            close()
