"""The capture interface every backend implements: captured datagrams out, each with a timestamp.

A multicast socket hands over UDP payloads, a packet ring or an AF_XDP socket whole Ethernet
frames, a pcap file recorded frames. The common denominator is the *captured datagram*: when it
was captured (integer nanoseconds, ``CLOCK_REALTIME`` for live backends, the file's own time for
replay), who sent it, the group and port it was sent to, the UDP payload, and the raw frame where
the backend has one.

Every backend is a context manager with a bounded :meth:`Capture.poll` (never blocks longer than
the timeout it is given), a bounded iterator (:meth:`Capture.iterate`) and counters
(:class:`CaptureStats`): nothing is dropped without being counted.
"""

from __future__ import annotations

import abc
import dataclasses
import ipaddress
import select
import time
from collections.abc import Iterable, Iterator
from typing import NamedTuple

__all__ = [
    "Datagram", "Group", "CaptureStats", "Capture", "CaptureError", "parse_groups",
]


class CaptureError(OSError):
    """A capture backend could not be opened or failed while running."""


class Datagram(NamedTuple):
    """One captured UDP datagram.

    ``src`` and ``dst`` are ``(ipv4 text, port)``; ``frame`` is the whole Ethernet frame as it was
    on the wire (a VLAN tag the kernel stripped is put back), or ``None`` for the socket backend.
    """

    ts_ns: int
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes
    frame: bytes | None = None


@dataclasses.dataclass(frozen=True)
class Group:
    """A multicast group (or unicast address) and UDP port; ``source`` for source-specific joins."""

    addr: str
    port: int
    source: str | None = None

    def __post_init__(self):
        ipaddress.IPv4Address(self.addr)
        if self.source is not None:
            ipaddress.IPv4Address(self.source)
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not in 1..65535")

    @property
    def is_multicast(self) -> bool:
        return ipaddress.IPv4Address(self.addr).is_multicast

    @classmethod
    def parse(cls, text: str) -> Group:
        """``239.1.1.1:30001`` or, source-specific, ``239.1.1.1:30001@10.0.0.1``."""
        spec, _, source = text.partition("@")
        addr, sep, port = spec.rpartition(":")
        if not sep:
            raise ValueError(f"group {text!r} is not ADDR:PORT[@SOURCE]")
        return cls(addr, int(port), source or None)

    def __str__(self) -> str:
        return f"{self.addr}:{self.port}" + (f"@{self.source}" if self.source else "")


def parse_groups(groups: Iterable[Group | str | tuple]) -> tuple[Group, ...]:
    out = []
    for g in groups:
        if isinstance(g, Group):
            out.append(g)
        elif isinstance(g, str):
            out.append(Group.parse(g))
        else:
            out.append(Group(*g))
    return tuple(out)


@dataclasses.dataclass
class CaptureStats:
    """Counters of one capture; all cumulative since it was opened.

    ``received``: datagrams handed out. ``dropped``: lost before the backend could read them
    (kernel socket queue full, ring full, AF_XDP ring full or fill ring empty), as the kernel
    reports them. ``filtered``: seen by the backend but not handed out (other groups or ports,
    not IPv4/UDP, a looped-back outgoing copy). ``truncated``: longer than the capture buffer,
    counted and not handed out.
    """

    received: int = 0
    bytes: int = 0
    dropped: int = 0
    filtered: int = 0
    truncated: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def ns_to_ms_ceil(timeout_ns: int) -> int:
    """Milliseconds for ``select.poll`` (rounded up, so a short wait is never a busy one)."""
    if timeout_ns <= 0:
        return 0
    return -(-timeout_ns // 1_000_000)


class Capture(abc.ABC):
    """A source of captured datagrams. Subclasses implement ``_read`` and ``_fds``."""

    backend: str = "?"

    def __init__(self) -> None:
        self._stats = CaptureStats()
        self._closed = False
        self._poller: select.poll | None = None

    # -- what a backend provides ---------------------------------------------------------
    @abc.abstractmethod
    def _read(self, max_count: int) -> list[Datagram]:
        """Whatever is ready now, without blocking (up to ``max_count``)."""

    def _fds(self) -> list[int]:
        """File descriptors that become readable when ``_read`` would return something."""
        return []

    def _wait(self, timeout_ns: int) -> None:
        """Block up to ``timeout_ns`` for something to read (default: poll the fds)."""
        if self._poller is None:
            self._poller = select.poll()
            for fd in self._fds():
                self._poller.register(fd, select.POLLIN)
        self._poller.poll(ns_to_ms_ceil(timeout_ns))

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's resources (called once)."""

    @property
    def at_end(self) -> bool:
        """True once a finite source (a pcap file) has nothing more to give; live captures
        never end by themselves."""
        return False

    def _update_stats(self) -> None:  # noqa: B027 - optional hook
        """Refresh kernel-side counters (drops) into ``self._stats``."""

    # -- the interface ---------------------------------------------------------------
    def poll(self, timeout_ns: int = 0, max_count: int = 1024) -> list[Datagram]:
        """Datagrams ready now, or the first ones to arrive within ``timeout_ns``.

        Returns an empty list when nothing arrived in time; never waits longer than the
        timeout (plus one scheduling quantum).
        """
        return self._poll(self._read, timeout_ns, max_count)

    def poll_frames(self, timeout_ns: int = 0, max_count: int = 1024) -> list[tuple[int, bytes]]:
        """Raw ``(ts_ns, frame)`` pairs, unparsed (backends that have frames: ring, xdp, pcap).

        This is what a consumer that parses frames itself (the FPGA shim) wants, and it skips
        the cost of parsing each frame in Python. Frames that pass the kernel filter are
        counted as received.
        """
        return self._poll(self._read_frames, timeout_ns, max_count)

    def _read_frames(self, max_count: int) -> list[tuple[int, bytes]]:
        raise CaptureError(f"the {self.backend} backend has no frames")

    def _poll(self, read, timeout_ns: int, max_count: int) -> list:
        if self._closed:
            raise CaptureError("capture is closed")
        got = read(max_count)
        if got or timeout_ns <= 0:
            return got
        deadline = time.monotonic_ns() + timeout_ns
        while True:
            left = deadline - time.monotonic_ns()
            if left <= 0:
                return read(max_count)
            self._wait(left)
            got = read(max_count)
            if got or self.at_end:
                return got

    def iterate(self, *, count: int | None = None, timeout_ns: int = 1_000_000_000,
                idle_ns: int | None = None) -> Iterator[Datagram]:
        """Yield datagrams until ``count`` were yielded, ``timeout_ns`` passed in all,
        nothing arrived for ``idle_ns``, or a finite source ended; always bounded."""
        deadline = time.monotonic_ns() + timeout_ns
        n = 0
        last = time.monotonic_ns()
        while count is None or n < count:
            now = time.monotonic_ns()
            if now >= deadline:
                return
            wait = deadline - now
            if idle_ns is not None:
                idle_left = last + idle_ns - now
                if idle_left <= 0:
                    return
                wait = min(wait, idle_left)
            batch = self.poll(wait, 1024 if count is None else min(1024, count - n))
            if batch:
                last = time.monotonic_ns()
            elif self.at_end:
                return
            yield from batch
            n += len(batch)

    def __iter__(self) -> Iterator[Datagram]:
        return self.iterate()

    def stats(self) -> CaptureStats:
        """A snapshot of the counters, kernel drops read now."""
        if not self._closed:
            self._update_stats()
        return dataclasses.replace(self._stats)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._update_stats()
        finally:
            self._closed = True
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass
