"""Capture backend 3: AF_XDP, through libxdp/libbpf, in copy mode.

Ref: Documentation/networking/af_xdp.rst; libxdp's xsk.h.

The UMEM and its fill/completion/RX rings are created by libxdp; the ring accessors are static
inline functions in ``xsk.h``, so a small C helper (``xsk_helper.c``, next to this file) wraps
them. It is compiled at first use with the system C compiler (``cc``, needs Debian
``libxdp-dev libbpf-dev``) into ``$TICKPATH_CACHE`` or ``~/.cache/tickpath`` under a name that
carries the hash of its source, and loaded with ctypes.

libxdp attaches its default XDP program, which redirects *every* frame of the queue into the
socket: the group/port filter is applied here, to parsed datagrams and to raw frames alike
(:meth:`~.base.Capture.poll_frames` checks the Ethernet/VLAN, IPv4 and UDP headers in place),
and whatever does not match (ARP, IPv6 neighbour discovery, other groups) is counted as
``filtered``, never as ``received``. Those frames never reach the kernel's own stack either, so
use AF_XDP on an interface (or queue) that carries only the feed, and reach the re-request
server through another one. Frames carry no kernel timestamp in copy mode; the
capture timestamp is ``CLOCK_REALTIME`` read when a batch is taken off the RX ring.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterable

from .base import Capture, CaptureError, Datagram, Group, parse_groups
from .ring import _datagram

__all__ = ["XdpCapture", "helper_library", "xdp_unavailable"]

_SOURCE = pathlib.Path(__file__).with_name("xsk_helper.c")
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_MODES = {"skb": 0, "drv": 1}


def _cache_dir() -> pathlib.Path:
    base = os.environ.get("TICKPATH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tickpath")
    return pathlib.Path(base)


def helper_library() -> ctypes.CDLL:
    """Build (once, cached by source hash) and load the AF_XDP helper."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        src = _SOURCE.read_bytes()
        digest = hashlib.sha256(src).hexdigest()[:16]
        out = _cache_dir() / f"libtpxsk-{digest}.so"
        if not out.exists():
            cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
            if cc is None:
                raise CaptureError("AF_XDP helper: no C compiler (cc) found")
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            cmd = [cc, "-O2", "-Wall", "-shared", "-fPIC", "-o", str(tmp), str(_SOURCE),
                   "-lxdp", "-lbpf"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if r.returncode:
                raise CaptureError(f"AF_XDP helper did not build ({' '.join(cmd)}): "
                                   f"{r.stderr.strip()[-800:]}")
            os.replace(tmp, out)
        lib = ctypes.CDLL(str(out), use_errno=True)
        lib.tp_xsk_open.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                                    ctypes.c_uint32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.tp_xsk_open.restype = ctypes.c_void_p
        lib.tp_xsk_close.argtypes = [ctypes.c_void_p]
        lib.tp_xsk_close.restype = None
        lib.tp_xsk_fd.argtypes = [ctypes.c_void_p]
        lib.tp_xsk_fd.restype = ctypes.c_int
        lib.tp_xsk_recv.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                    ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p]
        lib.tp_xsk_recv.restype = ctypes.c_int
        lib.tp_xsk_stats.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.tp_xsk_stats.restype = ctypes.c_int
        lib.tp_xsk_quiet.argtypes = [ctypes.c_int]
        lib.tp_xsk_quiet(0 if os.environ.get("TICKPATH_XDP_DEBUG") else 1)
        _lib = lib
        return lib


def xdp_unavailable() -> str | None:
    """``None`` if AF_XDP capture can work here, else why not (for skipping tests)."""
    if os.geteuid() != 0:
        return "AF_XDP needs root (CAP_NET_ADMIN, CAP_BPF)"
    if not pathlib.Path("/usr/include/xdp/xsk.h").exists():
        return "AF_XDP needs libxdp-dev and libbpf-dev (apt) to build its helper"
    try:
        helper_library()
    except (CaptureError, OSError) as e:
        return f"AF_XDP helper unavailable: {e}"
    return None


def _frame_key(frame: bytes, want: set[bytes] | None) -> bool:
    """Whether ``frame`` is an unfragmented IPv4/UDP frame (one 802.1Q/802.1ad tag allowed)
    to one of ``want`` (destination address and port, 6 bytes; ``None``: any)."""
    ip = 14
    etype = frame[12:14]
    if etype == b"\x81\x00" or etype == b"\x88\xa8":
        etype = frame[16:18]
        ip = 18
    if etype != b"\x08\x00" or len(frame) < ip + 28:
        return False
    vihl = frame[ip]
    if vihl >> 4 != 4 or frame[ip + 9] != 17 or (frame[ip + 6] & 0x3F) or frame[ip + 7]:
        return False                      # not IPv4/UDP, or a fragment (MF or an offset)
    udp = ip + (vihl & 0x0F) * 4
    if len(frame) < udp + 8:
        return False
    return want is None or frame[ip + 16:ip + 20] + frame[udp + 2:udp + 4] in want


class XdpCapture(Capture):
    """Capture the UDP datagrams of ``groups`` arriving on ``ifname`` queue ``queue`` via AF_XDP.

    Parameters
    ----------
    ifname : str
        Interface, in the namespace of the calling thread (see :mod:`.netns`).
    groups : iterable of :class:`Group` or ``"ADDR:PORT"``, or ``None``
        Destination address/port pairs handed out; other frames are counted as filtered.
    mode : ``"skb"`` or ``"drv"``
        Generic XDP (any interface) or the driver's native XDP (veth supports it); always
        ``XDP_COPY``.
    frames, frame_size : int
        UMEM geometry (``frames`` a power of two; it is also every ring's size).
    """

    backend = "xdp"

    def __init__(self, ifname: str, groups: Iterable[Group | str] | None, *, queue: int = 0,
                 mode: str = "skb", frames: int = 4096, frame_size: int = 2048,
                 batch: int = 64):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, not {mode!r}")
        if frames & (frames - 1):
            raise ValueError(f"frames must be a power of two, not {frames}")
        self._groups = None if groups is None else parse_groups(groups)
        self._want = None if self._groups is None else {(g.addr, g.port) for g in self._groups}
        self._want_raw = None if self._groups is None else {
            socket.inet_aton(g.addr) + struct.pack(">H", g.port) for g in self._groups}
        self._ifname, self._mode = ifname, mode
        self._lib = helper_library()
        err = ctypes.c_int(0)
        self._x = self._lib.tp_xsk_open(ifname.encode(), queue, frames, frame_size,
                                        _MODES[mode], ctypes.byref(err))
        if not self._x:
            self._closed = True
            code = -err.value
            raise CaptureError(code, f"cannot open an AF_XDP socket on {ifname} queue {queue} "
                                     f"({mode} mode): {os.strerror(code)}")
        self._batch = batch
        self._cap = batch * frame_size
        self._buf = ctypes.create_string_buffer(self._cap)
        self._bv = memoryview(self._buf).cast("B")
        self._lens = (ctypes.c_uint32 * batch)()
        self._ts = ctypes.c_uint64(0)
        self._xstats = (ctypes.c_uint64 * 6)()

    @property
    def ifname(self) -> str:
        return self._ifname

    def fileno(self) -> int:
        return self._lib.tp_xsk_fd(self._x)

    def _fds(self) -> list[int]:
        return [self.fileno()]

    def _read(self, max_count: int) -> list[Datagram]:
        out: list[Datagram] = []
        st = self._stats
        want = self._want
        for ts, frame in self._take(max_count):
            d = _datagram(ts, frame)
            if d is None or (want is not None and d.dst not in want):
                st.filtered += 1
                continue
            out.append(d)
            st.bytes += len(d.payload)
        st.received += len(out)
        return out

    def _read_frames(self, max_count: int) -> list[tuple[int, bytes]]:
        # No kernel filter in front of AF_XDP (every frame of the queue arrives): keep only
        # the groups' unfragmented IPv4/UDP frames, count the rest as filtered.
        got = self._take(max_count)
        st = self._stats
        want = self._want_raw
        out = [tf for tf in got if _frame_key(tf[1], want)]
        st.filtered += len(got) - len(out)
        st.received += len(out)
        st.bytes += sum(len(f) for _, f in out)
        return out

    def _take(self, max_count: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        while len(out) < max_count:
            n = self._lib.tp_xsk_recv(self._x, self._buf, self._cap,
                                      min(self._batch, max_count - len(out)),
                                      self._lens, ctypes.byref(self._ts))
            if n < 0:
                raise CaptureError(-n, f"AF_XDP receive: {os.strerror(-n)}")
            if n == 0:
                break
            ts = self._ts.value
            pos = 0
            bv = self._bv
            lens = self._lens
            for i in range(n):
                ln = lens[i]
                out.append((ts, bv[pos:pos + ln].tobytes()))
                pos += ln
            if n < self._batch:
                break
        return out

    def _update_stats(self) -> None:
        if not self._x:
            return
        if self._lib.tp_xsk_stats(self._x, self._xstats) == 0:
            # rx_dropped counts every frame the socket lost: here the fill ring ran dry (the
            # kernel also counts those in rx_fill_ring_empty_descs, so that one is not added).
            # The RX ring is as large as the UMEM, so it cannot be full while a frame is free.
            self._stats.dropped = self._xstats[0]

    def kernel_stats(self) -> dict[str, int]:
        """The socket's ``XDP_STATISTICS``, as the kernel reports them."""
        self._lib.tp_xsk_stats(self._x, self._xstats)
        names = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
                 "rx_fill_ring_empty_descs", "tx_ring_empty_descs")
        return dict(zip(names, self._xstats, strict=True))

    def _close(self) -> None:
        if self._x:
            self._bv.release()
            self._lib.tp_xsk_close(self._x)
            self._x = None
