"""Network namespaces and veth pairs for tests and measurements (root only).

Everything made here is named uniquely (process id and a counter) and removed on exit, even on
failure. Code runs inside a namespace through :func:`run_in_netns`: a short-lived thread joins the
namespace with ``setns(2)`` and runs the function; sockets it creates stay in that namespace
after the thread is gone, so the caller can use them from any thread.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["NetnsError", "have_netns", "run_in_netns", "Netns", "VethLab"]

CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_counter = itertools.count()
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(OSError):
    pass


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if r.returncode:
        raise NetnsError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def have_netns() -> str | None:
    """``None`` when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs)"
    try:
        subprocess.run(["ip", "-V"], capture_output=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return "needs the `ip` command (iproute2)"
    return None


def run_in_netns(name: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in a thread that has joined network namespace ``name``."""
    result: list = []

    def body():
        try:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise NetnsError(e, f"setns({name}): {os.strerror(e)}")
            finally:
                os.close(fd)
            result.append((True, fn(*args, **kwargs)))
        except BaseException as e:         # handed to the caller
            result.append((False, e))

    t = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    t.start()
    t.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value


class Netns:
    """A network namespace, with its loopback up; deleted on :meth:`close`."""

    def __init__(self, prefix: str = "tpcap"):
        self.name = f"{prefix}{os.getpid()}n{next(_counter)}"
        _ip("netns", "add", self.name)
        try:
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def ip(self, *args: str) -> None:
        _ip("-n", self.name, *args)

    def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        return run_in_netns(self.name, fn, *args, **kwargs)

    def quiet_ipv6(self) -> None:
        """Turn IPv6 off for interfaces made afterwards, so a new link sends no neighbour
        discovery or MLD frames of its own (they would show up in captures and drop counts).
        Best effort: a kernel without IPv6 has nothing to turn off."""
        subprocess.run(["ip", "netns", "exec", self.name, "sysctl", "-q", "-w",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"],
                       capture_output=True, timeout=10)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VethLab:
    """Two namespaces joined by a veth pair: ``tx`` holds ``tx_if``, ``rx`` holds ``rx_if``.

    Addresses are from 198.18.0.0/15 (RFC 2544, benchmarking) and exist only inside the two
    namespaces. Deleting the namespaces deletes the veth pair.
    """

    TX_ADDR = "198.18.0.1"
    RX_ADDR = "198.18.0.2"

    def __init__(self, *, rx_queues: int = 1):
        n = next(_counter)
        tag = f"{os.getpid()}{n}"
        self.tx_if = f"tpa{tag}"[:15]
        self.rx_if = f"tpb{tag}"[:15]
        self.tx = Netns("tptx")
        try:
            self.rx = Netns("tprx")
        except BaseException:
            self.tx.close()
            raise
        try:
            for ns in (self.tx, self.rx):
                ns.quiet_ipv6()
            self.tx.ip("link", "add", self.tx_if, "numrxqueues", str(rx_queues),
                       "numtxqueues", str(rx_queues), "type", "veth", "peer", "name",
                       self.rx_if, "netns", self.rx.name, "numrxqueues", str(rx_queues),
                       "numtxqueues", str(rx_queues))
            self.tx.ip("addr", "add", f"{self.TX_ADDR}/30", "dev", self.tx_if)
            self.rx.ip("addr", "add", f"{self.RX_ADDR}/30", "dev", self.rx_if)
            self.tx.ip("link", "set", self.tx_if, "up")
            self.rx.ip("link", "set", self.rx_if, "up")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.rx.close()
        self.tx.close()

    def __enter__(self) -> VethLab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
