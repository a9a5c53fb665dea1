"""A deterministic lossy relay between two multicast groups on loopback (tests, benchmarks).

Every datagram arriving on the source group is, by a seeded ``random.Random`` drawn in arrival
order, dropped (``loss_ppm``), held back and released after the next ``reorder_depth``
datagrams (``reorder_ppm``), and/or sent twice (``dup_ppm``), then sent to the destination
group. Probabilities are integers in parts per million. Both groups are pinned to 127.0.0.1
(TTL 0): nothing leaves the host. The run is bounded in time and in datagrams.
"""

from __future__ import annotations

import dataclasses
import random
import select
import socket
import time
from collections.abc import Callable

from .publisher import _set_buf, multicast_sender

__all__ = ["LossyRelay", "RelayStats", "multicast_receiver"]

_MS = 1_000_000


def multicast_receiver(group: tuple[str, int], interface: str = "127.0.0.1",
                       rcvbuf: int = 8 << 20) -> socket.socket:
    """A non-blocking UDP socket joined to ``group`` on ``interface`` (this group only)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IP, 49, 0)                      # IP_MULTICAST_ALL off
        _set_buf(s, socket.SO_RCVBUF, rcvbuf)
        s.bind(group)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     socket.inet_aton(group[0]) + socket.inet_aton(interface))
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


@dataclasses.dataclass
class RelayStats:
    received: int = 0
    forwarded: int = 0          # datagrams sent (duplicates included)
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0


class LossyRelay:
    def __init__(self, src: tuple[str, int], dst: tuple[str, int], *, seed: int = 0,
                 loss_ppm: int = 0, dup_ppm: int = 0, reorder_ppm: int = 0,
                 reorder_depth: int = 3, interface: str = "127.0.0.1"):
        for name, v in (("loss_ppm", loss_ppm), ("dup_ppm", dup_ppm),
                        ("reorder_ppm", reorder_ppm)):
            if not 0 <= v <= 1_000_000:
                raise ValueError(f"{name} must be in 0..1000000, not {v}")
        self._dst = dst
        self._rng = random.Random(seed)
        self._loss, self._dup, self._reorder = loss_ppm, dup_ppm, reorder_ppm
        self._depth = reorder_depth
        self.stats = RelayStats()
        self._rx = multicast_receiver(src, interface)
        try:
            self._tx = multicast_sender(interface)
        except BaseException:
            self._rx.close()
            raise
        self._held: list[list] = []        # [datagrams still to pass, payload]
        #: sequence of decisions, for tests: (index, "drop"|"dup"|"hold")
        self.log: list[tuple[int, str]] = []

    def close(self) -> None:
        self._rx.close()
        self._tx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, payload: bytes) -> None:
        self._tx.sendto(payload, self._dst)
        self.stats.forwarded += 1

    def handle(self, payload: bytes) -> None:
        st = self.stats
        rng = self._rng
        index = st.received
        st.received += 1
        # Held datagrams move one step closer to release with each arrival.
        if self._held:
            for h in self._held:
                h[0] -= 1
            while self._held and self._held[0][0] <= 0:
                self._send(self._held.pop(0)[1])
        if rng.randrange(1_000_000) < self._loss:
            st.dropped += 1
            self.log.append((index, "drop"))
            return
        dup = rng.randrange(1_000_000) < self._dup
        if rng.randrange(1_000_000) < self._reorder:
            st.reordered += 1
            self.log.append((index, "hold"))
            self._held.append([self._depth, payload])
        else:
            self._send(payload)
        if dup:
            st.duplicated += 1
            self.log.append((index, "dup"))
            self._send(payload)

    def flush(self) -> None:
        while self._held:
            self._send(self._held.pop(0)[1])

    def run(self, *, stop: Callable[[], bool], timeout_ns: int, max_datagrams: int = 10_000_000,
            idle_flush_ns: int = 5 * _MS) -> RelayStats:
        """Relay until ``stop()``, ``timeout_ns`` or ``max_datagrams``; held datagrams are
        released after ``idle_flush_ns`` without traffic."""
        deadline = time.monotonic_ns() + timeout_ns
        last = time.monotonic_ns()
        rx = self._rx
        while not stop() and self.stats.received < max_datagrams:
            now = time.monotonic_ns()
            if now >= deadline:
                break
            got = 0
            while got < 256:
                try:
                    payload = rx.recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                self.handle(payload)
                got += 1
            if got:
                last = now
                continue
            if self._held and now - last >= idle_flush_ns:
                self.flush()
            select.select([rx], [], [], 0.005)
        self.flush()
        return self.stats
