"""Market-data capture behind one interface: captured datagrams out, each with a timestamp.

Backends (see :mod:`.base` for the interface):

- ``socket`` — :class:`~.udp.SocketCapture`: multicast UDP sockets, ``recvmmsg`` batches,
  kernel receive timestamps, kernel drops reported.
- ``ring`` — :class:`~.ring.RingCapture`: AF_PACKET ``TPACKET_V3`` block ring with a BPF
  filter for the groups and ports.
- ``xdp`` — :class:`~.xdp.XdpCapture`: AF_XDP (libxdp) in copy mode, driven through a small C
  helper built at first use.
- ``pcap`` — :class:`~.replay.ReplayCapture`: a pcap file at its own pacing, a fixed rate, or
  as fast as possible.

Modules are imported lazily, so importing this package needs none of the kernel features.
"""

from __future__ import annotations

from collections.abc import Iterable

from .base import Capture, CaptureError, CaptureStats, Datagram, Group, parse_groups

__all__ = [
    "Capture", "CaptureError", "CaptureStats", "Datagram", "Group", "parse_groups",
    "BACKENDS", "open_capture",
]

BACKENDS = ("socket", "ring", "xdp", "pcap")


def open_capture(backend: str, groups: Iterable[Group | str] | None = None, *,
                 interface: str = "127.0.0.1", ifname: str = "lo", path: str | None = None,
                 **options) -> Capture:
    """Open a capture by backend name (what ``tickpath feed listen --backend`` calls).

    ``interface`` is the IPv4 address socket joins use; ``ifname`` the device the ring and
    AF_XDP capture on; ``path`` the pcap file to replay. Other keywords go to the backend.
    """
    if backend == "socket":
        from .udp import SocketCapture
        if groups is None:
            raise ValueError("the socket backend needs at least one group")
        return SocketCapture(groups, interface=interface, **options)
    if backend == "ring":
        from .ring import RingCapture
        return RingCapture(ifname, groups, **options)
    if backend == "xdp":
        from .xdp import XdpCapture
        return XdpCapture(ifname, groups, **options)
    if backend == "pcap":
        from .replay import ReplayCapture
        if path is None:
            raise ValueError("the pcap backend needs a path")
        return ReplayCapture(path, groups=groups, **options)
    raise ValueError(f"unknown capture backend {backend!r} (one of {', '.join(BACKENDS)})")
