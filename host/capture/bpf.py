"""Classic BPF socket filters for the capture backends, generated here (no tcpdump at run time).

Ref: linux/filter.h (struct sock_filter, SKF_AD_*), Documentation/networking/filter.rst;
McCanne & Jacobson, "The BSD Packet Filter" (1993).

:func:`udp_filter` accepts IPv4/UDP frames (untagged or with one 802.1Q/802.1ad tag in the
frame) whose destination address and port are one of the given groups, that are not a non-first
fragment, and that were not sent by this host (``PACKET_OUTGOING``: on ``lo`` each frame is seen
both leaving and arriving). The accepted length is the whole frame.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .base import Group

__all__ = ["Insn", "udp_filter", "attach", "run"]

# opcode classes and fields (linux/bpf_common.h)
LD, LDX, JMP, RET = 0x00, 0x01, 0x05, 0x06
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MSH = 0x00, 0x20, 0x40, 0xA0
JEQ, JSET = 0x10, 0x40
K = 0x00
SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
ETH_P_IP, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x8100, 0x88A8
SNAP = 0x40000                     # accept: whole frame (up to 256 KiB)


@dataclass(frozen=True)
class Insn:
    code: int
    jt: int
    jf: int
    k: int

    def pack(self) -> bytes:
        return struct.pack("=HBBI", self.code, self.jt, self.jf, self.k & 0xFFFFFFFF)


class _Asm:
    """Two-pass assembler: jumps name labels, resolved to the u8 forward offsets BPF wants."""

    def __init__(self):
        self.items: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.items)

    def op(self, code: int, k: int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        self.items.append((code, jt, jf, k))

    def ja(self, target: str) -> None:
        """Unconditional jump (BPF_JA keeps its offset in k)."""
        self.items.append((JMP | K, 0, 0, target))     # type: ignore[arg-type]

    def build(self) -> list[Insn]:
        out = []
        for pc, (code, jt, jf, k) in enumerate(self.items):
            def rel(target, pc=pc):
                if isinstance(target, int):
                    return target
                off = self.labels[target] - pc - 1
                if not 0 <= off <= 255:
                    raise ValueError(f"BPF jump to {target} out of range ({off}): "
                                     "too many groups for one filter")
                return off
            if isinstance(k, str):
                k = self.labels[k] - pc - 1
            out.append(Insn(code, rel(jt), rel(jf), k))
        return out


def udp_filter(groups: Iterable[Group] | None, *, drop_outgoing: bool = True) -> list[Insn]:
    """The filter program; ``groups=None`` accepts every IPv4/UDP frame."""
    pairs = None if groups is None else sorted({(g.addr, g.port) for g in groups})
    a = _Asm()
    if drop_outgoing:
        a.op(LD | W | ABS, SKF_AD_OFF + SKF_AD_PKTTYPE)
        a.op(JMP | JEQ | K, PACKET_OUTGOING, "reject", 0)
    a.op(LD | H | ABS, 12)
    a.op(JMP | JEQ | K, ETH_P_IP, "l3_14", 0)
    a.op(JMP | JEQ | K, ETH_P_8021Q, "tag", 0)
    a.op(JMP | JEQ | K, ETH_P_8021AD, "tag", "reject")
    a.label("tag")
    a.op(LD | H | ABS, 16)
    a.op(JMP | JEQ | K, ETH_P_IP, "l3_18", "reject")
    for base in (14, 18):
        a.label(f"l3_{base}")
        a.op(LD | B | ABS, base + 9)                 # protocol
        a.op(JMP | JEQ | K, socket.IPPROTO_UDP, 0, "reject")
        a.op(LD | H | ABS, base + 6)                 # flags, fragment offset
        a.op(JMP | JSET | K, 0x1FFF, "reject", 0)
        if pairs is None:
            a.ja("accept")
            continue
        a.op(LDX | B | MSH, base)                    # X = IPv4 header length
        for i, (addr, port) in enumerate(pairs):
            nxt = f"p{base}_{i + 1}" if i + 1 < len(pairs) else "reject"
            a.label(f"p{base}_{i}")
            a.op(LD | W | ABS, base + 16)            # destination address
            a.op(JMP | JEQ | K, struct.unpack(">I", socket.inet_aton(addr))[0], 0, nxt)
            a.op(LD | H | IND, base + 2)             # [X + base + 2]: destination port
            a.op(JMP | JEQ | K, port, "accept", nxt)
    a.label("accept")
    a.op(RET | K, SNAP)
    a.label("reject")
    a.op(RET | K, 0)
    return a.build()


def attach(sock: socket.socket, prog: list[Insn]) -> None:
    """``SO_ATTACH_FILTER``; the kernel copies the program, so the buffer may go afterwards."""
    code = b"".join(i.pack() for i in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def run(prog: list[Insn], frame: bytes, *, pkttype: int = 0) -> int:
    """Interpret the program on a frame (for tests): returns the accepted length (0: reject).
    Only the instructions :func:`udp_filter` emits are supported."""
    a = x = 0
    pc = 0

    def load(off: int, size: int) -> int | None:
        if off == SKF_AD_OFF + SKF_AD_PKTTYPE:
            return pkttype
        if off < 0 or off + size > len(frame):
            return None
        return int.from_bytes(frame[off:off + size], "big")

    while True:
        i = prog[pc]
        pc += 1
        cls = i.code & 0x07
        if cls == RET:
            return i.k
        if cls == LD:
            size = {W: 4, H: 2, B: 1}[i.code & 0x18]
            off = i.k if i.code & 0xE0 == ABS else x + i.k
            v = load(off, size)
            if v is None:
                return 0
            a = v
        elif cls == LDX:
            v = load(i.k, 1)
            if v is None:
                return 0
            x = (v & 0x0F) * 4
        elif cls == JMP:
            op = i.code & 0xF0
            if op == 0:
                pc += i.k
            elif op == JEQ:
                pc += i.jt if a == i.k else i.jf
            elif op == JSET:
                pc += i.jt if a & i.k else i.jf
            else:
                raise ValueError(f"unsupported jump 0x{i.code:02x}")
        else:
            raise ValueError(f"unsupported instruction 0x{i.code:02x}")
