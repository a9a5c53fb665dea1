"""A MoldUDP64 listener: any capture backend in, a :class:`~.session.MoldSession` in the middle,
delivered messages out (a BinaryFILE, or any sink), re-requests sent unicast.

The capture hands over multicast datagrams (``tickpath.host.capture``: socket, ring, AF_XDP,
pcap replay); retransmissions come back to this listener's own small UDP socket
(:class:`RerequestClient`), which is also where the re-requests leave from, so the server's
answer reaches us whichever backend captures the multicast stream. Feed numbers: the index of
the group a datagram was sent to (A/B: 0 and 1), :data:`RETRANSMISSION` for answers.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import select
import socket
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO

from tickpath.protocol import itch
from tickpath.protocol.moldudp64 import Rerequest

from .session import MoldSession

__all__ = ["Listener", "ListenResult", "RerequestClient", "BinaryFileSink", "RETRANSMISSION"]

RETRANSMISSION = -1
_MS = 1_000_000


class RerequestClient:
    """Sends re-requests to ``server`` and receives the answers, from one unicast socket."""

    def __init__(self, server: tuple[str, int], rcvbuf: int = 4 << 20):
        host, port = server
        local = "127.0.0.1" if ipaddress.IPv4Address(host).is_loopback else "0.0.0.0"
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)     # SO_RCVBUFFORCE
            except OSError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((local, 0))
            self._sock.connect((host, port))
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise
        self.sent = 0
        self.send_errors = 0
        self.received = 0

    @property
    def address(self) -> tuple[str, int]:
        return self._sock.getsockname()

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, request: Rerequest) -> None:
        try:
            self._sock.send(request.encode())
            self.sent += 1
        except OSError:                 # e.g. ECONNREFUSED from an earlier ICMP: counted
            self.send_errors += 1

    def receive(self, max_count: int = 256) -> list[bytes]:
        out = []
        recv = self._sock.recv
        while len(out) < max_count:
            try:
                out.append(recv(65535))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:             # ICMP port unreachable surfaces here: counted
                self.send_errors += 1
                break
        self.received += len(out)
        return out

    def close(self) -> None:
        self._sock.close()


class BinaryFileSink:
    """Writes delivered messages as a NASDAQ BinaryFILE (u16 length before each)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.messages = 0

    def __call__(self, messages: list[bytes]) -> None:
        self._f.write(itch.encode_binaryfile(messages))
        self.messages += len(messages)


@dataclasses.dataclass
class ListenResult:
    complete: bool              # end of session seen, everything before it delivered
    reason: str                 # "complete", "timeout", "end of input", "stopped"
    session: str | None
    next_sequence: int | None
    end_of_session: int | None
    missing: list[tuple[int, int]]
    lost_ranges: list[tuple[str, int, int]]
    stats: dict
    capture: dict
    seconds_ns: int

    @property
    def ok(self) -> bool:
        """Nothing missing or given up, and the end of session (or of the replay) reached."""
        return not self.missing and self.stats["lost"] == 0 and (
            self.complete or self.reason == "end of input")


class Listener:
    """Runs ``capture`` (a ``tickpath.host.capture.Capture``) into ``session``.

    ``groups``: the ``(addr, port)`` of each feed in order (A, B); ``sink`` receives each batch
    of delivered messages in order; ``rerequest``: the server's address (``None``: no
    re-requests are sent, gaps wait for the other feed). ``batch``: most datagrams taken per
    step; re-requests go out at the end of each step, so a smaller batch asks sooner when
    the listener is behind (1024 made recovery wait tens of ms behind a backlog).
    """

    def __init__(self, capture, session: MoldSession, *,
                 groups: Sequence[tuple[str, int]] = (),
                 rerequest: tuple[str, int] | None = None,
                 sink: Callable[[list[bytes]], None] | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, batch: int = 256):
        self._capture = capture
        self._batch = batch
        self.session = session
        self._feeds = {tuple(g): i for i, g in enumerate(groups)}
        self._client = RerequestClient(rerequest) if rerequest is not None else None
        self._sink = sink
        self._clock = clock
        self.capture_stats: dict = {}
        # Wait on the capture's descriptors and the re-request socket together, so that a
        # retransmission wakes the listener at once instead of after the capture's timeout.
        self._poller = None
        fds = capture._fds() if self._client is not None and hasattr(capture, "_fds") else []
        if fds:
            self._poller = select.poll()
            for fd in (*fds, self._client.fileno()):
                self._poller.register(fd, select.POLLIN)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def rerequest_client(self) -> RerequestClient | None:
        return self._client

    def step(self, timeout_ns: int) -> int:
        """One round: wait up to ``timeout_ns`` for datagrams, feed everything ready to the
        session, send due re-requests. Returns how many datagrams were taken."""
        session = self.session
        sink = self._sink
        feeds = self._feeds
        size = self._batch
        if self._poller is not None and timeout_ns > 0:
            batch = self._capture.poll(0, size)
            if not batch:
                self._poller.poll(-(-timeout_ns // _MS))
                batch = self._capture.poll(0, size)
        else:
            batch = self._capture.poll(timeout_ns, size)
        now = self._clock()
        on_packet = session.on_packet
        for d in batch:
            msgs = on_packet(d.payload, now, feeds.get(d.dst, 0))
            if msgs and sink is not None:
                sink(msgs)
        n = len(batch)
        client = self._client
        if client is not None:
            answers = client.receive()
            for payload in answers:
                msgs = on_packet(payload, now, RETRANSMISSION)
                if msgs and sink is not None:
                    sink(msgs)
            n += len(answers)
        msgs, requests = session.poll(now)
        if msgs and sink is not None:
            sink(msgs)
        if client is not None:
            for r in requests:
                client.send(r)
        return n

    def run(self, *, timeout_ns: int | None = None, idle_end_ns: int | None = None,
            progress: Callable[[Listener, bool], None] | None = None,
            progress_interval_ns: int = 500 * _MS,
            stop: Callable[[], bool] | None = None) -> ListenResult:
        """Until end of session and everything before it is delivered, or ``timeout_ns``, or
        (a replay) the input is exhausted, or ``stop()`` says so."""
        clock = self._clock
        session = self.session
        start = clock()
        deadline = None if timeout_ns is None else start + timeout_ns
        next_progress = start + progress_interval_ns
        at_end = getattr(self._capture, "at_end", None)
        reason = "stopped"
        while True:
            now = clock()
            if session.complete:
                reason = "complete"
                break
            if deadline is not None and now >= deadline:
                reason = "timeout"
                break
            if stop is not None and stop():
                break
            if session.missing_messages:
                wait = 1 * _MS
            else:
                wait = 20 * _MS
            if deadline is not None:
                wait = max(0, min(wait, deadline - now))
            got = self.step(wait)
            if not got and at_end is not None and self._capture.at_end:
                if not session.missing_messages or self._client is None:
                    reason = "end of input"
                    break
            if progress is not None and now >= next_progress:
                self.capture_stats = self._capture.stats().as_dict()
                progress(self, False)
                next_progress = now + progress_interval_ns
        if reason in ("timeout", "end of input") and session.missing_messages:
            # Nothing more will come: give the gaps up so everything received is delivered
            # (and the loss is reported).
            msgs = session.give_up(clock())
            if msgs and self._sink is not None:
                self._sink(msgs)
        self.capture_stats = self._capture.stats().as_dict()
        if progress is not None:
            progress(self, True)
        st = session.stats
        return ListenResult(session.complete, reason, session.session, session.next_sequence,
                            session.end_of_session, session.missing, list(session.lost_ranges),
                            st.as_dict(), dict(self.capture_stats), clock() - start)
