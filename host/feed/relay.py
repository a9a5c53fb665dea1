"""A deterministic lossy relay between two multicast groups on loopback (tests, benchmarks).

Every datagram arriving on the source group is, by a seeded ``random.Random`` drawn in arrival
order, dropped (``loss_ppm``), held back and released after the next ``reorder_depth``
datagrams (``reorder_ppm``), and/or sent twice (``dup_ppm``), then sent to the destination
group. Probabilities are integers in parts per million; ``drop_ranges`` drops given arrival
indexes outright (a loss burst). Both groups are pinned to 127.0.0.1 (TTL 0): nothing leaves
the host. The run is bounded in time and in datagrams.

:class:`RerequestRelay` sits on the unicast re-request path instead: the listener sends its
re-requests to the relay, the relay forwards them to the server and the answers back, dropping
a seeded share of each direction (lost re-requests, lost retransmissions).
"""

from __future__ import annotations

import dataclasses
import random
import select
import socket
import time
from collections.abc import Callable

from .publisher import _set_buf, multicast_sender

__all__ = ["LossyRelay", "RelayStats", "RerequestRelay", "RerequestRelayStats",
           "multicast_receiver"]

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
                 reorder_depth: int = 3, interface: str = "127.0.0.1",
                 drop_ranges: tuple[tuple[int, int], ...] = ()):
        for name, v in (("loss_ppm", loss_ppm), ("dup_ppm", dup_ppm),
                        ("reorder_ppm", reorder_ppm)):
            if not 0 <= v <= 1_000_000:
                raise ValueError(f"{name} must be in 0..1000000, not {v}")
        self._dst = dst
        self._rng = random.Random(seed)
        self._loss, self._dup, self._reorder = loss_ppm, dup_ppm, reorder_ppm
        self._depth = reorder_depth
        self._drop_ranges = tuple((int(a), int(b)) for a, b in drop_ranges)  # [first, end)
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
        lost = rng.randrange(1_000_000) < self._loss
        if lost or any(a <= index < b for a, b in self._drop_ranges):
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


@dataclasses.dataclass
class RerequestRelayStats:
    requests: int = 0               # re-requests received from the listener
    requests_dropped: int = 0
    answers: int = 0                # answers received from the server
    answers_dropped: int = 0


class RerequestRelay:
    """A unicast relay on the re-request path, losing some requests and some answers.

    Listens on ``bind`` (``127.0.0.1``, port 0: pick one; see :attr:`address`); a datagram from
    a client is forwarded to ``server`` from the relay's own socket (unless dropped, with
    probability ``request_loss_ppm``); an answer from the server goes back to the client that
    sent the last request (unless dropped, ``answer_loss_ppm``). Decisions come from a seeded
    ``random.Random`` in arrival order. ``log`` records ``(monotonic ns, "req"|"ans",
    datagram, dropped)`` for tests, bounded by ``max_log``.
    """

    def __init__(self, server: tuple[str, int], *, bind: tuple[str, int] = ("127.0.0.1", 0),
                 seed: int = 0, request_loss_ppm: int = 0, answer_loss_ppm: int = 0,
                 max_log: int = 100_000):
        for name, v in (("request_loss_ppm", request_loss_ppm),
                        ("answer_loss_ppm", answer_loss_ppm)):
            if not 0 <= v <= 1_000_000:
                raise ValueError(f"{name} must be in 0..1000000, not {v}")
        self._server = server
        self._rng = random.Random(seed)
        self._req_loss, self._ans_loss = request_loss_ppm, answer_loss_ppm
        self._max_log = max_log
        self.stats = RerequestRelayStats()
        self.log: list[tuple[int, str, bytes, bool]] = []
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._front.bind(bind)
            self._back.bind((bind[0], 0))
            self._back.connect(server)
            for s in (self._front, self._back):
                s.setblocking(False)
        except BaseException:
            self.close()
            raise
        self._client: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._front.getsockname()

    def close(self) -> None:
        self._front.close()
        self._back.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _note(self, kind: str, data: bytes, dropped: bool) -> None:
        if len(self.log) < self._max_log:
            self.log.append((time.monotonic_ns(), kind, data, dropped))

    def pump(self) -> int:
        """Move whatever is waiting, both ways; returns how many datagrams were read."""
        st = self.stats
        rng = self._rng
        n = 0
        while True:
            try:
                data, addr = self._front.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            n += 1
            st.requests += 1
            self._client = addr
            drop = rng.randrange(1_000_000) < self._req_loss
            self._note("req", data, drop)
            if drop:
                st.requests_dropped += 1
                continue
            try:
                self._back.send(data)
            except OSError:
                pass
        while True:
            try:
                data = self._back.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:                 # ICMP unreachable from an earlier send
                continue
            n += 1
            st.answers += 1
            drop = rng.randrange(1_000_000) < self._ans_loss
            self._note("ans", data, drop)
            if drop or self._client is None:
                st.answers_dropped += 1
                continue
            try:
                self._front.sendto(data, self._client)
            except OSError:
                pass
        return n

    def run(self, *, stop: Callable[[], bool], timeout_ns: int,
            max_datagrams: int = 10_000_000) -> RerequestRelayStats:
        """Relay until ``stop()``, ``timeout_ns`` or ``max_datagrams`` (bounded)."""
        deadline = time.monotonic_ns() + timeout_ns
        total = 0
        while not stop() and total < max_datagrams and time.monotonic_ns() < deadline:
            got = self.pump()
            total += got
            if not got:
                select.select([self._front, self._back], [], [], 0.005)
        return self.stats
