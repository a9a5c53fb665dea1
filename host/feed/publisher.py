"""MoldUDP64 publisher with a re-request server.

Ref: NASDAQ MoldUDP64 Protocol Specification 1.00 (layout in ``docs/PROTOCOLS.md``).

:class:`RetransmissionStore` keeps the last ``capacity`` messages sent; :class:`RerequestServer`
answers a re-request with one ordinary downstream packet (clamped to what fits the MTU) and
counts the bad ones; both are pure logic. :class:`Publisher` drives the sockets: it packs ITCH
messages into packets up to the MTU (as ``moldudp64.pack_messages`` does), sends them to a
multicast group with pacing (a token bucket of messages per second and a burst), heartbeats
when idle, sends end of session at the end (repeated), and answers re-requests unicast to the
requester's address until its linger time is over.

Sending is batched: the packets of one pacing step go out in ``sendmmsg`` calls (through
ctypes, :class:`BatchSender`) of up to ``send_batch`` packets, one system call each; the pacing
itself (messages per second, ``burst`` messages per step) is unchanged. ``send_batch=1`` sends
each packet with its own ``sendto``.

Multicast is pinned to an interface, 127.0.0.1 unless told otherwise (the machine's default
route leads off it), and with loopback the TTL is 0 so nothing can leave the host.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import ipaddress
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from tickpath.protocol import moldudp64
from tickpath.protocol.moldudp64 import (
    HEADER,
    HEADER_LENGTH,
    MAX_PAYLOAD,
    MoldError,
    Rerequest,
)

__all__ = [
    "RetransmissionStore", "RerequestServer", "ServerStats", "Publisher", "PublisherConfig",
    "PublisherStats", "multicast_sender", "BatchSender",
]

_S = 1_000_000_000
_MMSGHDR = 64                # struct mmsghdr on LP64: msghdr (56) + msg_len, padded
_IOVEC = 16
_MSGHDR = struct.Struct("<QI4xQQQQi4x")    # name, namelen, iov, iovlen, control, controllen,
_IOV = struct.Struct("<QQ")                # flags
_libc = ctypes.CDLL(None, use_errno=True)
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_sendmmsg.restype = ctypes.c_int


class BatchSender:
    """Sends lists of datagrams on a *connected* UDP socket with ``sendmmsg(2)``.

    Packets are copied into one preallocated arena (``arena`` bytes) and described by
    preallocated ``mmsghdr``/``iovec`` arrays, so a call costs one system call per ``batch``
    datagrams. A datagram the kernel refuses (``ENOBUFS``, ``ECONNREFUSED`` …) is counted in
    :attr:`errors` and skipped, like a failed ``sendto``.
    """

    def __init__(self, sock: socket.socket, batch: int = 64, arena: int = 1 << 20):
        if struct.calcsize("P") != 8:       # pragma: no cover - LP64 layouts only
            raise OSError("BatchSender needs a 64-bit Linux")
        if not 1 <= batch <= 1024:
            raise ValueError(f"batch must be in 1..1024, not {batch}")
        self._fd = sock.fileno()
        self._sock = sock
        self._batch = batch
        self._hdrs = ctypes.create_string_buffer(_MMSGHDR * batch)
        self._iovs = ctypes.create_string_buffer(_IOVEC * batch)
        self._arena = ctypes.create_string_buffer(arena)
        self._arena_size = arena
        self._a_hdrs = ctypes.addressof(self._hdrs)
        self._a_iovs = ctypes.addressof(self._iovs)
        self._a_arena = ctypes.addressof(self._arena)
        for i in range(batch):
            _MSGHDR.pack_into(self._hdrs, i * _MMSGHDR, 0, 0, self._a_iovs + i * _IOVEC, 1,
                              0, 0, 0)
        self.errors = 0
        self.calls = 0

    def send(self, packets: list[bytes]) -> tuple[int, int]:
        """Send ``packets`` in order; returns ``(datagrams sent, bytes sent)``."""
        sent = nbytes = 0
        i, total = 0, len(packets)
        iovs, a_arena, cap = self._iovs, self._a_arena, self._arena_size
        pack_iov = _IOV.pack_into
        memmove = ctypes.memmove
        while i < total:
            k = off = 0
            while i + k < total and k < self._batch:
                p = packets[i + k]
                n = len(p)
                if off + n > cap:
                    if k == 0:              # larger than the arena: send it on its own
                        try:
                            self._sock.send(p)
                            sent += 1
                            nbytes += n
                        except OSError:
                            self.errors += 1
                        i += 1
                        continue
                    break
                memmove(a_arena + off, p, n)
                pack_iov(iovs, k * _IOVEC, a_arena + off, n)
                off += n
                k += 1
            done = 0
            while done < k:
                r = _sendmmsg(self._fd, self._a_hdrs + done * _MMSGHDR, k - done, 0)
                self.calls += 1
                if r < 0:
                    err = ctypes.get_errno()
                    if err == errno.EINTR:
                        continue
                    if err in (errno.EAGAIN, errno.ENOBUFS):
                        select.select([], [self._sock], [], 0.001)
                        r = _sendmmsg(self._fd, self._a_hdrs + done * _MMSGHDR, k - done, 0)
                        self.calls += 1
                        if r > 0:
                            sent += r
                            nbytes += sum(len(packets[i + j]) for j in range(done, done + r))
                            done += r
                            continue
                    self.errors += 1    # this datagram is refused: skip it
                    done += 1
                    continue
                sent += r
                nbytes += sum(len(packets[i + j]) for j in range(done, done + r))
                done += r
            i += k
        return sent, nbytes


class RetransmissionStore:
    """The last ``capacity`` messages published, by sequence number (a ring; bounded)."""

    def __init__(self, capacity: int = 1 << 20, first_sequence: int = 1):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._ring: list[bytes | None] = [None] * capacity
        self._capacity = capacity
        self._first = first_sequence          # oldest sequence still held
        self._next = first_sequence           # next sequence to be stored

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def first_sequence(self) -> int:
        return self._first

    @property
    def next_sequence(self) -> int:
        return self._next

    def append(self, message: bytes) -> int:
        seq = self._next
        self._ring[seq % self._capacity] = message
        self._next = seq + 1
        if seq + 1 - self._first > self._capacity:
            self._first = seq + 1 - self._capacity
        return seq

    def extend(self, messages: Iterable[bytes]) -> None:
        ring, cap = self._ring, self._capacity
        seq = self._next
        for m in messages:
            ring[seq % cap] = m
            seq += 1
        self._next = seq
        if seq - self._first > cap:
            self._first = seq - cap

    def __contains__(self, seq: int) -> bool:
        return self._first <= seq < self._next

    def get(self, seq: int, count: int, max_payload: int = MAX_PAYLOAD) -> list[bytes]:
        """Up to ``count`` messages from ``seq`` on that fit one packet of ``max_payload``
        bytes (fewer at the end of what is held)."""
        ring, cap = self._ring, self._capacity
        room = max_payload - HEADER_LENGTH
        out = []
        end = min(seq + count, self._next)
        q = max(seq, self._first)
        if q != seq:
            return out
        while q < end:
            m = ring[q % cap]
            room -= len(m) + 2
            if room < 0:
                break
            out.append(m)
            q += 1
        return out


@dataclasses.dataclass
class ServerStats:
    """``requests``: re-requests received; ``answered``: packets sent back; ``messages``:
    messages in them; ``clamped``: answers shorter than asked (MTU, or the end of what was
    published); ``bad``: malformed, another session, count 0, or nothing of it held;
    ``too_old``: asked for messages no longer in the store (part of ``bad``)."""

    requests: int = 0
    answered: int = 0
    messages: int = 0
    clamped: int = 0
    bad: int = 0
    too_old: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class RerequestServer:
    """Answers MoldUDP64 re-requests from a :class:`RetransmissionStore` (pure logic)."""

    def __init__(self, session: str | bytes, store: RetransmissionStore,
                 max_payload: int = MAX_PAYLOAD):
        self._session = moldudp64.session_bytes(session)
        self._store = store
        self._max_payload = max_payload
        self.stats = ServerStats()

    def answer(self, request: bytes) -> bytes | None:
        """The downstream packet answering ``request``, or ``None`` (counted as bad)."""
        st = self.stats
        st.requests += 1
        try:
            rr = Rerequest.decode(request)
        except MoldError:
            st.bad += 1
            return None
        if moldudp64.session_bytes(rr.session) != self._session or rr.count == 0 \
                or rr.count == moldudp64.END_OF_SESSION_COUNT:
            st.bad += 1
            return None
        store = self._store
        if rr.sequence < store.first_sequence:
            st.bad += 1
            st.too_old += 1
            return None
        msgs = store.get(rr.sequence, rr.count, self._max_payload)
        if not msgs:
            st.bad += 1
            return None
        if len(msgs) < rr.count:
            st.clamped += 1
        st.answered += 1
        st.messages += len(msgs)
        return moldudp64.encode_packet(self._session, rr.sequence, msgs)


def _parse_addr(addr: tuple[str, int] | str) -> tuple[str, int]:
    if isinstance(addr, str):
        host, sep, port = addr.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{addr!r} is not ADDR:PORT")
        addr = (host, int(port))
    host, port = addr
    ipaddress.IPv4Address(host)
    if not 0 < int(port) < 65536:
        raise ValueError(f"port {port} is not in 1..65535")
    return host, int(port)


def multicast_sender(interface: str = "127.0.0.1", ttl: int | None = None,
                     sndbuf: int = 4 << 20) -> socket.socket:
    """A UDP socket whose multicast leaves through ``interface`` (loopback: TTL 0)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        if ttl is None:
            ttl = 0 if ipaddress.IPv4Address(interface).is_loopback else 1
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        _set_buf(s, socket.SO_SNDBUF, sndbuf)
    except BaseException:
        s.close()
        raise
    return s


def _set_buf(s: socket.socket, opt: int, size: int) -> None:
    force = {socket.SO_SNDBUF: 32, socket.SO_RCVBUF: 33}[opt]   # SO_SNDBUFFORCE/RCVBUFFORCE
    try:
        s.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, opt, size)


@dataclasses.dataclass(frozen=True)
class PublisherConfig:
    """``rate``: messages per second (``None``: as fast as possible); ``burst``: messages one
    pacing step may send at once; ``heartbeat_ns``: idle time before a heartbeat;
    ``eos_repeats`` end-of-session packets ``eos_interval_ns`` apart, then one per
    ``heartbeat_ns`` while lingering ``linger_ns`` to answer re-requests; ``send_batch``:
    most datagrams per ``sendmmsg`` call (1: one ``sendto`` each)."""

    session: str = "TICKPATH01"
    first_sequence: int = 1
    max_payload: int = MAX_PAYLOAD
    rate: int | None = None
    burst: int = 1_000
    heartbeat_ns: int = 1 * _S
    eos_repeats: int = 3
    eos_interval_ns: int = 50_000_000
    linger_ns: int = 5 * _S
    store_capacity: int = 1 << 20
    send_batch: int = 64

    def __post_init__(self):
        moldudp64.session_bytes(self.session)
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be positive, not {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst}")
        if not HEADER_LENGTH + 2 < self.max_payload <= 65507:
            raise ValueError(f"max_payload {self.max_payload} is out of range")
        if not 1 <= self.send_batch <= 1024:
            raise ValueError(f"send_batch must be in 1..1024, not {self.send_batch}")
        for name in ("heartbeat_ns", "eos_interval_ns", "linger_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


@dataclasses.dataclass
class PublisherStats:
    messages: int = 0
    packets: int = 0
    bytes: int = 0
    heartbeats: int = 0
    end_of_session: int = 0
    send_errors: int = 0
    started_ns: int = 0
    finished_ns: int = 0          # last data packet sent

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Publisher:
    """Publishes messages to ``group`` and serves re-requests on ``rerequest_bind``.

    ``clock`` returns integer nanoseconds (monotonic); ``stop`` (optional) is polled and ends
    the linger early when it returns true.
    """

    def __init__(self, group: tuple[str, int] | str, config: PublisherConfig | None = None, *,
                 rerequest_bind: tuple[str, int] | str | None = None,
                 interface: str = "127.0.0.1", ttl: int | None = None,
                 clock: Callable[[], int] = time.monotonic_ns):
        self._config = config or PublisherConfig()
        self._group = _parse_addr(group)
        if not ipaddress.IPv4Address(self._group[0]).is_multicast:
            raise ValueError(f"{self._group[0]} is not a multicast group")
        self._clock = clock
        cfg = self._config
        self.store = RetransmissionStore(cfg.store_capacity, cfg.first_sequence)
        self.server = RerequestServer(cfg.session, self.store, cfg.max_payload)
        self.stats = PublisherStats()
        self._session_raw = moldudp64.session_bytes(cfg.session)
        self._next_seq = cfg.first_sequence
        self._tx = multicast_sender(interface, ttl)
        self._rr: socket.socket | None = None
        self._batcher: BatchSender | None = None
        try:
            if cfg.send_batch > 1:
                # Connected to the group: sendmmsg needs no address per datagram.
                self._tx.connect(self._group)
                self._batcher = BatchSender(self._tx, cfg.send_batch)
            if rerequest_bind is not None:
                self._rr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._rr.bind(_parse_addr(rerequest_bind))
                self._rr.setblocking(False)
                _set_buf(self._rr, socket.SO_RCVBUF, 1 << 20)
        except BaseException:
            self.close()
            raise
        self._last_send = 0

    @property
    def config(self) -> PublisherConfig:
        return self._config

    @property
    def rerequest_address(self) -> tuple[str, int] | None:
        return self._rr.getsockname() if self._rr is not None else None

    @property
    def next_sequence(self) -> int:
        return self._next_seq

    def close(self) -> None:
        self._tx.close()
        if self._rr is not None:
            self._rr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sending -----------------------------------------------------------------------------
    def _send(self, packet: bytes) -> None:
        try:
            if self._batcher is not None:
                self._tx.send(packet)
            else:
                self._tx.sendto(packet, self._group)
        except OSError:
            self.stats.send_errors += 1
            return
        self.stats.packets += 1
        self.stats.bytes += len(packet)
        self._last_send = self._clock()

    def send_messages(self, messages: list[bytes]) -> None:
        """Pack and send ``messages`` now (the last packet is flushed, not held back)."""
        cfg = self._config
        packets = _pack(self._session_raw, self._next_seq, messages, cfg.max_payload)
        self.store.extend(messages)
        self._next_seq += len(messages)
        self.stats.messages += len(messages)
        self.send_packets(packets)

    def send_packets(self, packets: list[bytes]) -> None:
        """Send already packed datagrams (batched when ``send_batch`` > 1)."""
        if self._batcher is None:
            for p in packets:
                self._send(p)
            return
        b = self._batcher
        errors = b.errors
        sent, nbytes = b.send(packets)
        st = self.stats
        st.packets += sent
        st.bytes += nbytes
        st.send_errors += b.errors - errors
        self._last_send = self._clock()

    def heartbeat(self) -> None:
        self._send(moldudp64.heartbeat(self._session_raw, self._next_seq))
        self.stats.heartbeats += 1

    def end_of_session(self) -> None:
        self._send(moldudp64.end_of_session(self._session_raw, self._next_seq))
        self.stats.end_of_session += 1

    def serve(self, max_count: int = 256) -> int:
        """Answer re-requests waiting now (up to ``max_count``); returns how many were read."""
        rr = self._rr
        if rr is None:
            return 0
        n = 0
        while n < max_count:
            try:
                data, addr = rr.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            n += 1
            answer = self.server.answer(data)
            if answer is not None:
                try:
                    rr.sendto(answer, addr)
                except OSError:
                    self.stats.send_errors += 1
        return n

    def _wait(self, until_ns: int) -> None:
        """Serve re-requests until ``until_ns`` (monotonic clock)."""
        while True:
            self.serve()
            left = until_ns - self._clock()
            if left <= 0:
                return
            if self._rr is None:
                time.sleep(left / 1e9)
                return
            select.select([self._rr], [], [], left / 1e9)

    # -- the whole run -----------------------------------------------------------------------
    def run(self, messages: Iterable[bytes], *, stop: Callable[[], bool] | None = None,
            deadline_ns: int | None = None) -> PublisherStats:
        """Publish every message, then end of session, then linger; bounded by
        ``deadline_ns`` (monotonic) when given."""
        cfg = self._config
        clock = self._clock
        it: Iterator[bytes] = iter(messages)
        start = clock()
        self.stats.started_ns = start
        self._last_send = start
        sent = 0
        rate = cfg.rate
        done = False
        while not done:
            now = clock()
            if deadline_ns is not None and now >= deadline_ns:
                break
            if stop is not None and stop():
                break
            if rate is None:
                allowed = cfg.burst
            else:
                allowed = min(cfg.burst, start_allowance(rate, now - start) - sent)
            if allowed > 0:
                batch = list(islice(it, allowed))
                done = len(batch) < allowed
                if batch:
                    self.send_messages(batch)
                    sent += len(batch)
                self.serve()
                continue
            # Wait for the next message's turn, answering re-requests meanwhile.
            next_at = start + -(-(sent + 1) * _S // rate)
            if now - self._last_send >= cfg.heartbeat_ns:
                self.heartbeat()
            self._wait(min(next_at, self._last_send + cfg.heartbeat_ns))
        self.stats.finished_ns = clock()
        self._finish(stop, deadline_ns)
        return self.stats

    def _finish(self, stop, deadline_ns) -> None:
        cfg = self._config
        clock = self._clock
        for i in range(cfg.eos_repeats):
            self.end_of_session()
            if i + 1 < cfg.eos_repeats:
                self._wait(clock() + cfg.eos_interval_ns)
        end = clock() + cfg.linger_ns
        if deadline_ns is not None:
            end = min(end, deadline_ns)
        while True:
            now = clock()
            if now >= end or (stop is not None and stop()):
                break
            step = min(end, now + min(cfg.heartbeat_ns, 100_000_000))
            self._wait(step)
            if clock() - self._last_send >= cfg.heartbeat_ns:
                self.end_of_session()
        self.serve()


_LEN16 = [n.to_bytes(2, "big") for n in range(1 << 16)]


def _pack(session: bytes, seq: int, messages: list[bytes], max_payload: int) -> list[bytes]:
    """``moldudp64.pack_messages`` for the send path: the same packets (as many consecutive
    messages as fit ``max_payload``), about 1.4x faster (length prefixes from a table)."""
    room = max_payload - HEADER_LENGTH
    pack = HEADER.pack
    out: list[bytes] = []
    parts: list[bytes] = [b""]
    add = parts.append
    used = 0
    for m in messages:
        n = len(m) + 2
        if used + n > room:
            if n > room:
                raise MoldError(f"a {n - 2}-byte message does not fit a {max_payload}-byte "
                                "packet")
            count = (len(parts) - 1) >> 1
            parts[0] = pack(session, seq, count)
            out.append(b"".join(parts))
            seq += count
            parts = [b""]
            add = parts.append
            used = 0
        add(_LEN16[n - 2])
        add(m)
        used += n
    if len(parts) > 1:
        count = (len(parts) - 1) >> 1
        parts[0] = pack(session, seq, count)
        out.append(b"".join(parts))
    return out


def start_allowance(rate: int, elapsed_ns: int) -> int:
    """Messages a pacer at ``rate`` per second may have sent after ``elapsed_ns``."""
    return rate * elapsed_ns // _S + 1
