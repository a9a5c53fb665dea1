"""Capture backend 1: UDP multicast sockets, batched with ``recvmmsg``.

Ref: socket(7) (SO_RCVBUF, SO_RCVBUFFORCE, SO_TIMESTAMPNS, SO_RXQ_OVFL, SO_MEMINFO), ip(7)
(IP_ADD_MEMBERSHIP, IP_ADD_SOURCE_MEMBERSHIP, IP_MULTICAST_ALL), recvmmsg(2).

One socket per group, bound to the group address so that only that group's datagrams arrive
(and ``IP_MULTICAST_ALL`` off, so no group another socket joined leaks in). Each socket is read
with ``recvmmsg`` through ctypes into preallocated buffers: one system call for up to ``batch``
datagrams, each with its kernel receive timestamp (``SCM_TIMESTAMPNS``) and the socket's drop
count (``SO_RXQ_OVFL``). Kernel drops are also read with ``SO_MEMINFO`` whenever stats are asked.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Iterable

from .base import Capture, CaptureError, Datagram, Group, parse_groups

__all__ = ["SocketCapture"]

SO_TIMESTAMPNS = 35
SO_RXQ_OVFL = 40
SO_MEMINFO = 55
SO_RCVBUFFORCE = 33
IP_MULTICAST_ALL = 49
IP_ADD_SOURCE_MEMBERSHIP = 39          # linux/in.h (not exported by Python 3.11 on Linux)
SK_MEMINFO_DROPS = 8
MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20

_MMSGHDR = 64               # struct mmsghdr on x86_64/aarch64 (LP64)
_SOCKADDR_IN = 16
_IOVEC = 16
_CONTROL = 64               # CMSG_SPACE(timespec)=32 + CMSG_SPACE(u32)=24
_HDR_INIT = struct.Struct("<QI4xQQQQi4xI4x")   # name, namelen, iov, iovlen, control, controllen,
_HDR_OUT = struct.Struct("<Qi4xI")             # controllen, flags, msg_len (at offset 40)
_IOV = struct.Struct("<QQ")
_CMSG = struct.Struct("<QiI")
_TS_FAST = struct.Struct("<QiIqq")
_U32 = struct.Struct("<I")
_SRC = struct.Struct(">2xH4s")

if struct.calcsize("P") != 8:        # pragma: no cover - the layouts above are LP64 only
    raise ImportError("tickpath.host.capture.udp needs a 64-bit Linux")

_libc = ctypes.CDLL(None, use_errno=True)
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int


def _inet(addr: str) -> bytes:
    return socket.inet_aton(addr)


class _Slotted:
    """Preallocated recvmmsg arguments for one socket: headers, iovecs, buffers, control."""

    def __init__(self, batch: int, slot: int):
        self.batch, self.slot = batch, slot
        self.hdrs = ctypes.create_string_buffer(_MMSGHDR * batch)
        self.iovs = ctypes.create_string_buffer(_IOVEC * batch)
        self.names = ctypes.create_string_buffer(_SOCKADDR_IN * batch)
        self.ctrl = ctypes.create_string_buffer(_CONTROL * batch)
        self.bufs = ctypes.create_string_buffer(slot * batch)
        a_iov, a_name = ctypes.addressof(self.iovs), ctypes.addressof(self.names)
        a_ctrl, a_buf = ctypes.addressof(self.ctrl), ctypes.addressof(self.bufs)
        for i in range(batch):
            _IOV.pack_into(self.iovs, i * _IOVEC, a_buf + i * slot, slot)
            _HDR_INIT.pack_into(self.hdrs, i * _MMSGHDR, a_name + i * _SOCKADDR_IN,
                                _SOCKADDR_IN, a_iov + i * _IOVEC, 1,
                                a_ctrl + i * _CONTROL, _CONTROL, 0, 0)
        self.addr = ctypes.addressof(self.hdrs)
        # recvmmsg overwrites msg_namelen, msg_controllen, msg_flags and msg_len: one memmove
        # from this pristine copy resets the used headers for the next call.
        self.template = ctypes.create_string_buffer(self.hdrs.raw, len(self.hdrs))
        self.hv = memoryview(self.hdrs).cast("B")
        self.bv = memoryview(self.bufs).cast("B")
        self.nv = memoryview(self.names).cast("B")
        self.cv = memoryview(self.ctrl).cast("B")

    def release(self) -> None:
        for v in (self.hv, self.bv, self.nv, self.cv):
            v.release()


class SocketCapture(Capture):
    """Receive UDP datagrams sent to multicast groups (or a unicast address) and ports.

    Parameters
    ----------
    groups : iterable of :class:`Group` or ``"ADDR:PORT[@SOURCE]"``
        One socket each. A multicast group is joined on ``interface``; with a source, the join
        is source-specific (``IP_ADD_SOURCE_MEMBERSHIP``).
    interface : str
        IPv4 address of the interface to join on. Defaults to loopback: a host that should
        listen on another interface must say so.
    rcvbuf : int
        Receive buffer asked for (``SO_RCVBUFFORCE`` as root, else ``SO_RCVBUF``, which the
        kernel caps at ``net.core.rmem_max``); :attr:`rcvbuf` is what the kernel granted.
    batch : int
        Datagrams per ``recvmmsg`` call.
    slot : int
        Largest datagram accepted; longer ones are counted as truncated and not handed out.
    """

    backend = "socket"

    def __init__(self, groups: Iterable[Group | str], *, interface: str = "127.0.0.1",
                 rcvbuf: int = 8 << 20, batch: int = 64, slot: int = 2048):
        super().__init__()
        self._groups = parse_groups(groups)
        if not self._groups:
            raise ValueError("at least one group is needed")
        if not 1 <= batch <= 1024:
            raise ValueError(f"batch must be in 1..1024, not {batch}")
        self._interface = interface
        self._socks: list[socket.socket] = []
        self._slots: list[_Slotted] = []
        self._dst: list[tuple[str, int]] = []
        self._batch = batch
        self._ovfl = [0] * len(self._groups)
        self._meminfo_drops = [0] * len(self._groups)
        self._ip_cache: dict[bytes, str] = {}
        self._next = 0
        try:
            for g in self._groups:
                self._socks.append(self._open(g, rcvbuf))
                self._slots.append(_Slotted(batch, slot))
                self._dst.append((g.addr, g.port))
        except BaseException:
            self._close()
            self._closed = True
            raise

    def _open(self, g: Group, rcvbuf: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except PermissionError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            if g.is_multicast:
                s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            s.bind((g.addr, g.port))
            if g.is_multicast:
                if g.source is None:
                    mreq = _inet(g.addr) + _inet(self._interface)
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                else:   # struct ip_mreq_source: multiaddr, interface, sourceaddr
                    mreq = _inet(g.addr) + _inet(self._interface) + _inet(g.source)
                    s.setsockopt(socket.IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, mreq)
            s.setblocking(False)
        except OSError as e:
            s.close()
            raise CaptureError(e.errno, f"cannot open a socket for {g}: {e.strerror}") from e
        return s

    @property
    def groups(self) -> tuple[Group, ...]:
        return self._groups

    @property
    def rcvbuf(self) -> int:
        """Receive buffer the kernel granted (bytes, as ``getsockopt`` reports: doubled)."""
        return self._socks[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def fileno(self) -> int:
        """The first socket's descriptor (for a single-group capture)."""
        return self._socks[0].fileno()

    def _fds(self) -> list[int]:
        return [s.fileno() for s in self._socks]

    def _read(self, max_count: int) -> list[Datagram]:
        out: list[Datagram] = []
        n_socks = len(self._socks)
        # Round robin, so a busy group cannot starve the others.
        for k in range(n_socks):
            if len(out) >= max_count:
                break
            i = (self._next + k) % n_socks
            self._read_socket(i, max_count - len(out), out)
        self._next = (self._next + 1) % n_socks
        return out

    def _read_socket(self, i: int, max_count: int, out: list[Datagram]) -> None:
        sl = self._slots[i]
        fd = self._socks[i].fileno()
        dst = self._dst[i]
        st = self._stats
        ip_cache = self._ip_cache
        hv, bv, nv, cv = sl.hv, sl.bv, sl.nv, sl.cv
        slot = sl.slot
        while max_count > 0:
            want = min(sl.batch, max_count)
            n = _recvmmsg(fd, sl.addr, want, MSG_DONTWAIT, None)
            if n < 0:
                err = ctypes.get_errno()
                if err in (errno.EAGAIN, errno.EINTR):
                    return
                raise CaptureError(err, f"recvmmsg: {os.strerror(err)}")
            ovfl = self._ovfl[i]
            before = len(out)
            for j in range(n):
                controllen, flags, length = _HDR_OUT.unpack_from(hv, j * _MMSGHDR + 40)
                c = j * _CONTROL
                ts = 0
                if controllen == 32:      # the usual case: only the timestamp
                    _, _, _, sec, nsec = _TS_FAST.unpack_from(cv, c)
                    ts = sec * 1_000_000_000 + nsec
                else:
                    p, end = c, c + controllen
                    while p + 16 <= end:
                        clen, level, ctype = _CMSG.unpack_from(cv, p)
                        if level == socket.SOL_SOCKET:
                            if ctype == SO_TIMESTAMPNS:
                                sec, nsec = struct.unpack_from("<qq", cv, p + 16)
                                ts = sec * 1_000_000_000 + nsec
                            elif ctype == SO_RXQ_OVFL:
                                ovfl = _U32.unpack_from(cv, p + 16)[0]
                        p += (clen + 7) & ~7
                        if clen < 16:
                            break
                if flags & MSG_TRUNC or length > slot:
                    st.truncated += 1
                    continue
                port, raw_ip = _SRC.unpack_from(nv, j * _SOCKADDR_IN)
                ip = ip_cache.get(raw_ip)
                if ip is None:
                    if len(ip_cache) > 4096:
                        ip_cache.clear()
                    ip = ip_cache[raw_ip] = socket.inet_ntoa(raw_ip)
                b = j * slot
                out.append(Datagram(ts, (ip, port), dst, bv[b:b + length].tobytes()))
                st.bytes += length
            ctypes.memmove(sl.addr, sl.template, n * _MMSGHDR)
            st.received += len(out) - before
            self._ovfl[i] = ovfl
            max_count -= n
            if n < want:
                return

    def _update_stats(self) -> None:
        for i, s in enumerate(self._socks):
            if s.fileno() < 0:
                continue
            raw = s.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * 9)
            if len(raw) >= 4 * (SK_MEMINFO_DROPS + 1):
                self._meminfo_drops[i] = _U32.unpack_from(raw, 4 * SK_MEMINFO_DROPS)[0]
        # Both count the same kernel counter (sk_drops); the newer reading wins.
        self._stats.dropped = sum(max(a, b) for a, b in zip(self._ovfl, self._meminfo_drops,
                                                            strict=True))

    def _close(self) -> None:
        for s in self._socks:
            s.close()
        for sl in self._slots:
            sl.release()
