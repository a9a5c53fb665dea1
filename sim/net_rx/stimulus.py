"""Frames for the NetRx / MoldSequencer / feed-chain benches: the real captures rewritten into one
consistent MoldUDP64 stream, the BX sample packed into frames, and seeded faulty streams.

The real ``*-itch50`` captures have zeroed addresses, ports, checksums, session and sequence
numbers (``../shared/data/README.md``); :func:`capture_frames` rewrites them with
``pcap.udp_frame`` / ``moldudp64.encode_packet`` (ITCH bytes untouched, VLAN tags kept).
"""

from __future__ import annotations

import dataclasses
import pathlib
import random
import struct

from tickpath.protocol import itch, moldudp64, pcap
from tickpath.protocol.netfeed import filter_write

__all__ = ["SESSION", "GROUP", "PORT", "GROUP_B", "PORT_B", "SRC_IP", "FILTERS", "Frame",
           "capture_frames", "bx_frames", "capture_messages", "build_frame", "mold_frames",
           "faulty_stream", "filter_writes", "ipv4_checksum"]

SESSION = "TICKPATH01"
GROUP, PORT = "239.1.1.1", 30001           # the A feed
GROUP_B, PORT_B = "239.1.1.2", 30002       # the B feed (A/B arbitration)
SRC_IP = "10.0.0.1"
#: (group, port) of the filter entries the benches program, index order.
FILTERS = ((GROUP, PORT), (GROUP_B, PORT_B))


@dataclasses.dataclass(frozen=True)
class Frame:
    data: bytes
    fcs_bad: bool = False
    note: str = ""


def filter_writes(filters=FILTERS) -> list[dict]:
    return [filter_write(i, g, p) for i, (g, p) in enumerate(filters)]


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_frame(payload: bytes, *, group: str = GROUP, port: int = PORT, vlan: int | None = None,
                options: bytes = b"", frag: int = 0x4000, proto: int = 17,
                bad_checksum: bool = False, ulen_delta: int = 0, total_delta: int = 0,
                padding: bytes = b"", ethertype: int = 0x0800, version: int = 4) -> bytes:
    """Ethernet II (optionally 802.1Q) / IPv4 (``options`` make IHL > 5) / UDP by hand, so
    that every header field can be made wrong. The UDP checksum is left 0 (not checked)."""
    if len(options) % 4:
        raise ValueError("IPv4 options are a multiple of 4 bytes")
    ihl = 5 + len(options) // 4
    ulen = 8 + len(payload) + ulen_delta
    total = ihl * 4 + 8 + len(payload) + total_delta
    header = bytearray(struct.pack(">BBHHHBBH4s4s", (version << 4) | ihl, 0, total & 0xFFFF,
                                   0x1234, frag, 64, proto, 0,
                                   bytes(int(x) for x in SRC_IP.split(".")),
                                   bytes(int(x) for x in group.split("."))) + options)
    checksum = ipv4_checksum(bytes(header))
    if bad_checksum:
        checksum ^= 0x0101
    header[10:12] = struct.pack(">H", checksum)
    udp = struct.pack(">HHHH", 30000, port, ulen & 0xFFFF, 0)
    eth = bytes.fromhex("01005e010101") + bytes.fromhex("020000000001")
    if vlan is not None:
        eth += struct.pack(">HH", 0x8100, vlan)
    eth += struct.pack(">H", ethertype)
    return eth + bytes(header) + udp + payload + padding


def capture_messages(pcap_dirs: list[pathlib.Path]) -> list[tuple[list[bytes], int | None]]:
    """(ITCH messages, VLAN id) of every MoldUDP64 packet of every capture, in file order."""
    out = []
    for directory in pcap_dirs:
        for path in sorted(directory.glob("*.pcap")):
            for _, datagram, packet in pcap.iter_mold_messages(path):
                out.append((list(packet.messages), datagram.vlan))
    return out


def capture_frames(pcap_dirs: list[pathlib.Path], *, first_sequence: int = 1,
                   group: str = GROUP, port: int = PORT) -> list[Frame]:
    """The real captures as one consistent stream: session, consecutive sequences, valid
    checksums, the group and port under test; ITCH bytes and VLAN tags as captured."""
    frames, seq = [], first_sequence
    for messages, vlan in capture_messages(pcap_dirs):
        packet = moldudp64.encode_packet(SESSION, seq, messages)
        seq += len(messages)
        frames.append(Frame(pcap.udp_frame(packet, src_ip=SRC_IP, dst_ip=group, sport=30000,
                                           dport=port, vlan=vlan), note="capture"))
    return frames


def mold_frames(messages: list[bytes], *, first_sequence: int = 1, max_payload: int = 1472,
                group: str = GROUP, port: int = PORT, vlan: int | None = None) -> list[Frame]:
    return [Frame(pcap.udp_frame(packet, src_ip=SRC_IP, dst_ip=group, sport=30000, dport=port,
                                 vlan=vlan), note=f"seq {seq}")
            for seq, packet in moldudp64.pack_messages(SESSION, first_sequence, messages,
                                                       max_payload=max_payload)]


def bx_frames(image: bytes, limit: int | None = None, *, max_payload: int = 1472,
              first_sequence: int = 1) -> tuple[list[Frame], list[bytes]]:
    """The BX sample (its first ``limit`` messages) packed into MoldUDP64 frames."""
    messages = []
    for _, raw in itch.iter_binaryfile_raw(image):
        if limit is not None and len(messages) >= limit:
            break
        messages.append(raw)
    return mold_frames(messages, first_sequence=first_sequence,
                       max_payload=max_payload), messages


def _packets(messages: list[bytes], rng: random.Random, first: int) -> list[tuple[int, bytes]]:
    """Consecutive MoldUDP64 packets of 1..6 messages each."""
    out, i, seq = [], 0, first
    while i < len(messages):
        k = rng.randint(1, 6)
        chunk = messages[i:i + k]
        out.append((seq, moldudp64.encode_packet(SESSION, seq, chunk)))
        i += k
        seq += len(chunk)
    return out


def faulty_stream(rng: random.Random, messages: list[bytes], *, fault_rate: float = 0.3,
                  end_of_session: bool = True) -> list[Frame]:
    """Frames carrying ``messages`` in MoldUDP64 packets, with faults: garbage, truncated
    frames, bad IPv4 checksums, bad FCS, wrong port/group, fragments, IPv4 options, padding,
    VLAN tags, non-IPv4 frames, A/B copies, sequence gaps (packets lost, then retransmitted
    as the host would re-request them), duplicates, reordering, heartbeats, malformed
    MoldUDP64 blocks, and (optionally) the end of session."""
    packets = _packets(messages, rng, 1)
    frames: list[Frame] = []

    def send(packet: bytes, note: str, **kw):
        frames.append(Frame(build_frame(packet, **kw), note=note))

    def good(packet: bytes, note: str):
        kind = rng.random()
        if kind < 0.15:
            send(packet, note + " vlan", vlan=rng.randrange(4096))
        elif kind < 0.25:
            send(packet, note + " options", options=rng.randbytes(4 * rng.randint(1, 10)))
        elif kind < 0.35:
            send(packet, note + " padding", padding=bytes(rng.randint(1, 40)))
        elif kind < 0.45:
            send(packet, note + " B feed", group=GROUP_B, port=PORT_B)
        else:
            send(packet, note)

    lost: list[tuple[int, bytes]] = []
    i = 0
    while i < len(packets):
        seq, packet = packets[i]
        note = f"seq {seq}"
        if rng.random() >= fault_rate:
            good(packet, note)
            i += 1
            continue
        fault = rng.choice(("garbage", "truncated", "ip_checksum", "fcs", "port", "group",
                            "fragment", "arp", "qinq", "gap", "duplicate", "reorder",
                            "heartbeat", "ab", "mold_truncated", "mold_trailing", "short_ulen",
                            "ihl", "version", "total"))
        if fault == "garbage":
            frames.append(Frame(rng.randbytes(rng.randint(1, 90)), note="garbage"))
            continue
        if fault == "truncated":
            full = build_frame(packet, vlan=rng.choice((None, 5)))
            frames.append(Frame(full[:rng.randint(1, len(full) - 1)], note=note + " truncated"))
            continue                      # the same packet then comes whole
        if fault == "ip_checksum":
            send(packet, note + " bad ip checksum", bad_checksum=True)
            continue
        if fault == "fcs":
            frames.append(Frame(build_frame(packet), fcs_bad=True, note=note + " bad fcs"))
            continue
        if fault == "port":
            send(packet, note + " wrong port", port=PORT + 7)
            continue
        if fault == "group":
            send(packet, note + " wrong group", group="239.9.9.9")
            continue
        if fault == "fragment":
            send(packet, note + " fragment", frag=rng.choice((0x2000, 0x0010, 0x2001)))
            continue
        if fault == "arp":
            send(packet, "not ipv4", ethertype=0x0806)
            continue
        if fault == "qinq":
            frame = build_frame(packet, vlan=3)
            frames.append(Frame(frame[:12] + struct.pack(">HH", 0x88A8, 9) + frame[12:],
                                note=note + " two tags"))
            continue
        if fault == "short_ulen":
            send(packet, note + " udp length", ulen_delta=-rng.randint(1, 8))
            continue
        if fault == "ihl":
            frame = bytearray(build_frame(packet))
            frame[14] = 0x44
            frames.append(Frame(bytes(frame), note=note + " ihl 4"))
            continue
        if fault == "version":
            send(packet, note + " version 6", version=6)
            continue
        if fault == "total":
            send(packet, note + " total beyond frame", total_delta=rng.randint(1, 30))
            continue
        if fault == "heartbeat":
            send(moldudp64.heartbeat(SESSION, seq), "heartbeat")
            continue
        if fault == "mold_truncated":
            cut = rng.randint(1, len(packet) - 1)
            send(packet[:cut], note + f" mold cut at {cut}")
            good(packet, note)
            i += 1
            continue
        if fault == "mold_trailing":
            send(packet + rng.randbytes(rng.randint(1, 5)), note + " trailing bytes")
            i += 1
            continue
        if fault == "ab":
            good(packet, note)
            send(packet, note + " B copy", group=GROUP_B, port=PORT_B)
            i += 1
            continue
        if fault == "duplicate":
            good(packet, note)
            good(packet, note + " again")
            i += 1
            continue
        if fault == "reorder" and i + 1 < len(packets):
            # the next packet first (ahead: dropped, gap), then this one, then the next again
            # (as the re-request would bring it back)
            nseq, npacket = packets[i + 1]
            good(npacket, f"seq {nseq} early")
            good(packet, note)
            good(npacket, f"seq {nseq} again")
            i += 2
            continue
        if fault == "gap":
            # lose 1..3 packets; the next arrives (gap found), then the retransmissions
            k = min(rng.randint(1, 3), len(packets) - i)
            lost = packets[i:i + k]
            i += k
            if i < len(packets):
                nseq, npacket = packets[i]
                good(npacket, f"seq {nseq} after gap")
            for lseq, lpacket in lost:
                good(lpacket, f"seq {lseq} retransmitted")
            continue
        good(packet, note)
        i += 1
    if end_of_session:
        last = packets[-1][0] + (packets[-1][1][18] << 8 | packets[-1][1][19]) if packets else 1
        send(moldudp64.end_of_session(SESSION, last), "end of session")
        send(moldudp64.end_of_session(SESSION, last), "end of session again")
    return frames
