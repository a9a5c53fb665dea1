"""pcap files and the Ethernet II / 802.1Q / IPv4 / UDP and TCP framing inside them.

Ref: libpcap file format (tcpdump.org/linktypes, pcap-savefile(5)); IEEE 802.3 / 802.1Q;
RFC 791 (IPv4, header checksum), RFC 768 (UDP, pseudo-header checksum), RFC 793 (TCP);
RFC 1112 §6.4 (IPv4 multicast to 01:00:5e MAC mapping).

Files are read and written with dpkt's pcap header classes, keeping timestamps as integer
nanoseconds since the epoch (dpkt's own reader and writer go through float seconds, which
loses nanoseconds). Frames are built with dpkt, which fills in both checksums; parsing is
done here so that every fault is reported with a clear reason.
"""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import dpkt
import dpkt.pcap as dpcap

from tickpath.protocol.moldudp64 import MoldError, MoldPacket, decode_packet

__all__ = [
    "PcapError", "UdpDatagram", "TcpSegment", "udp_frame", "parse_udp_frame",
    "parse_tcp_frame", "write_pcap", "read_pcap", "iter_pcap_records", "iter_mold_messages",
    "iter_udp_datagrams", "iter_tcp_segments", "multicast_mac", "pcap_bytes", "PCAP_MAGICS",
    "PCAPNG_MAGIC", "file_kind",
]

DEFAULT_SRC_MAC = "02:00:00:00:00:01"      # locally administered
ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_VLAN = (0x8100, 0x88A8, 0x9100)
IP_PROTO_TCP = 6
IP_PROTO_UDP = 17

# magic as read big-endian -> (byte order, nanosecond timestamps)
PCAP_MAGICS: dict[int, tuple[str, bool]] = {
    dpcap.TCPDUMP_MAGIC: (">", False),
    dpcap.TCPDUMP_MAGIC_NANO: (">", True),
    dpcap.PMUDPCT_MAGIC: ("<", False),
    dpcap.PMUDPCT_MAGIC_NANO: ("<", True),
}
PCAPNG_MAGIC = 0x0A0D0D0A


def file_kind(head: bytes) -> str:
    """``"pcap"``, ``"pcapng"`` or ``"other"`` (e.g. a BinaryFILE), from a file's first bytes."""
    if len(head) < 4:
        return "other"
    magic = int.from_bytes(head[:4], "big")
    if magic in PCAP_MAGICS:
        return "pcap"
    return "pcapng" if magic == PCAPNG_MAGIC else "other"


class PcapError(ValueError):
    """Malformed capture or frame; ``offset`` is where (in the file or frame) it was found."""

    def __init__(self, message: str, offset: int | None = None):
        self.offset = offset
        super().__init__(message if offset is None else f"at offset {offset}: {message}")


# --- frames ------------------------------------------------------------------------------

def _mac_bytes(mac: str | bytes) -> bytes:
    if isinstance(mac, bytes):
        raw = mac
    else:
        raw = bytes(int(p, 16) for p in mac.replace("-", ":").split(":"))
    if len(raw) != 6:
        raise ValueError(f"MAC address {mac!r} is not 6 bytes")
    return raw


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def multicast_mac(ip: str) -> str:
    """01:00:5e followed by the low 23 bits of an IPv4 multicast group."""
    addr = ipaddress.IPv4Address(ip)
    if not addr.is_multicast:
        raise ValueError(f"{ip} is not an IPv4 multicast address")
    low = int(addr) & 0x7FFFFF
    return _mac_text(bytes((0x01, 0x00, 0x5E, low >> 16, (low >> 8) & 0xFF, low & 0xFF)))


def udp_frame(payload: bytes, *, src_ip: str, dst_ip: str, sport: int, dport: int,
              src_mac: str | bytes = DEFAULT_SRC_MAC, dst_mac: str | bytes | None = None,
              vlan: int | None = None, ttl: int = 64) -> bytes:
    """An Ethernet II frame (optionally 802.1Q tagged) carrying one IPv4/UDP datagram with
    valid IPv4 header and UDP checksums. ``dst_mac`` defaults to the multicast mapping for a
    multicast ``dst_ip`` and is required otherwise."""
    if dst_mac is None:
        if not ipaddress.IPv4Address(dst_ip).is_multicast:
            raise ValueError(f"dst_mac is needed for unicast destination {dst_ip}")
        dst_mac = multicast_mac(dst_ip)
    if len(payload) > 0xFFFF - 28:
        raise ValueError(f"{len(payload)}-byte payload does not fit one IPv4 datagram")
    udp = dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src_ip), dst=socket.inet_aton(dst_ip),
                    p=IP_PROTO_UDP, ttl=ttl, df=1, data=udp)
    eth = dpkt.ethernet.Ethernet(src=_mac_bytes(src_mac), dst=_mac_bytes(dst_mac),
                                 type=ETH_TYPE_IPV4, data=ip)
    if vlan is not None:
        if not 0 <= vlan < 4096:
            raise ValueError(f"VLAN id {vlan} is not in 0..4095")
        eth.vlan_tags = [dpkt.ethernet.VLANtag8021Q(id=vlan)]
    return bytes(eth)


@dataclasses.dataclass(frozen=True)
class UdpDatagram:
    src_mac: str
    dst_mac: str
    vlan: int | None
    src_ip: str
    dst_ip: str
    sport: int
    dport: int
    payload: bytes
    ip_checksum_ok: bool | None           # None: not computed (checksums=False)
    udp_checksum_ok: bool | None          # None: sender sent no checksum (0) or a fragment
    padding: bytes                        # Ethernet bytes beyond the IPv4 total length
    fragment: bool                        # first fragment of a fragmented datagram
    #: where the payload starts in the frame it was parsed from (to report file offsets)
    payload_offset: int = dataclasses.field(default=0, compare=False)


@dataclasses.dataclass(frozen=True)
class TcpSegment:
    src_mac: str
    dst_mac: str
    vlan: int | None
    src_ip: str
    dst_ip: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int                            # TH_FIN=1 SYN=2 RST=4 PUSH=8 ACK=16
    payload: bytes
    ip_checksum_ok: bool | None           # None: not computed (checksums=False)
    tcp_checksum_ok: bool
    padding: bytes


_ETH = struct.Struct(">6s6sH")
_IPV4 = struct.Struct(">BBHHHBBH4s4s")


def _parse_ipv4(frame: bytes, proto_wanted: int, checksums: bool = True):
    """Ethernet (with any VLAN tags) and IPv4 header; returns the pieces both transports use."""
    n = len(frame)
    if n < 14:
        raise PcapError(f"truncated Ethernet header: {n} of 14 bytes", 0)
    dst, src, etype = _ETH.unpack_from(frame, 0)
    pos = 14
    vlan = None
    while etype in ETH_TYPE_VLAN:
        if n - pos < 4:
            raise PcapError("truncated 802.1Q tag", pos)
        tci, etype = struct.unpack_from(">HH", frame, pos)
        if vlan is None:
            vlan = tci & 0x0FFF
        pos += 4
    if etype != ETH_TYPE_IPV4:
        raise PcapError(f"not IPv4: EtherType 0x{etype:04x}", pos - 2)
    if n - pos < 20:
        raise PcapError(f"truncated IPv4 header: {n - pos} of 20 bytes", pos)
    vihl, _tos, total, _ident, frag, _ttl, proto, _sum, sip, dip = _IPV4.unpack_from(frame, pos)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        raise PcapError(f"bad IPv4 version/header length byte 0x{vihl:02x}", pos)
    if total < ihl:
        raise PcapError(f"IPv4 total length {total} is shorter than its header ({ihl})", pos)
    if n - pos < total:
        raise PcapError(f"truncated IPv4 datagram: total length {total}, {n - pos} bytes "
                        "in frame", pos)
    if proto != proto_wanted:
        name = {IP_PROTO_UDP: "UDP", IP_PROTO_TCP: "TCP"}[proto_wanted]
        raise PcapError(f"not {name}: IP protocol {proto}", pos + 9)
    ip_ok = dpkt.in_cksum(frame[pos:pos + ihl]) == 0 if checksums else None
    more_fragments, frag_offset = frag & 0x2000, frag & 0x1FFF
    if frag_offset:
        raise PcapError("non-first IPv4 fragment: no transport header", pos + 6)
    return (_mac_text(src), _mac_text(dst), vlan, socket.inet_ntoa(sip), socket.inet_ntoa(dip),
            sip, dip, pos + ihl, pos + total, ip_ok, bool(more_fragments))


def _transport_sum(sip: bytes, dip: bytes, proto: int, segment: bytes) -> int:
    s = dpkt.in_cksum_add(0, struct.pack(">4s4sxBH", sip, dip, proto, len(segment)))
    return dpkt.in_cksum_done(dpkt.in_cksum_add(s, segment))


def parse_udp_frame(frame: bytes, *, checksums: bool = True) -> UdpDatagram:
    """Parse Ethernet II (802.1Q tags allowed) / IPv4 / UDP; checksums are reported, not
    enforced (the published sample captures have them zeroed). ``checksums=False`` skips
    computing them (both ``*_checksum_ok`` are then None) for capture paths where the kernel
    has already checked them and Python time per frame matters."""
    frame = bytes(frame)
    (src_mac, dst_mac, vlan, src_ip, dst_ip, sip, dip, l4, ip_end, ip_ok,
     fragment) = _parse_ipv4(frame, IP_PROTO_UDP, checksums)
    if ip_end - l4 < 8:
        raise PcapError(f"truncated UDP header: {ip_end - l4} of 8 bytes", l4)
    sport, dport, ulen, usum = struct.unpack_from(">HHHH", frame, l4)
    if fragment:
        end = ip_end
        udp_ok = None
    else:
        if ulen != ip_end - l4:
            raise PcapError(f"UDP length {ulen} disagrees with IPv4 payload of "
                            f"{ip_end - l4} bytes", l4 + 4)
        end = l4 + ulen
        udp_ok = None if usum == 0 or not checksums else _transport_sum(
            sip, dip, IP_PROTO_UDP, frame[l4:end]) == 0
    return UdpDatagram(src_mac, dst_mac, vlan, src_ip, dst_ip, sport, dport,
                       frame[l4 + 8:end], ip_ok, udp_ok, frame[ip_end:], fragment, l4 + 8)


def parse_tcp_frame(frame: bytes) -> TcpSegment:
    """Parse Ethernet II (802.1Q tags allowed) / IPv4 / TCP."""
    frame = bytes(frame)
    (src_mac, dst_mac, vlan, src_ip, dst_ip, sip, dip, l4, ip_end, ip_ok,
     fragment) = _parse_ipv4(frame, IP_PROTO_TCP)
    if fragment:
        raise PcapError("fragmented TCP segment", l4)
    if ip_end - l4 < 20:
        raise PcapError(f"truncated TCP header: {ip_end - l4} of 20 bytes", l4)
    sport, dport, seq, ack, off_flags = struct.unpack_from(">HHIIH", frame, l4)
    data_off = (off_flags >> 12) * 4
    if data_off < 20 or data_off > ip_end - l4:
        raise PcapError(f"bad TCP data offset {data_off}", l4 + 12)
    tcp_ok = _transport_sum(sip, dip, IP_PROTO_TCP, frame[l4:ip_end]) == 0
    return TcpSegment(src_mac, dst_mac, vlan, src_ip, dst_ip, sport, dport, seq, ack,
                      off_flags & 0x1FF, frame[l4 + data_off:ip_end], ip_ok, tcp_ok,
                      frame[ip_end:])


# --- files -------------------------------------------------------------------------------

class _NanoWriter(dpcap.Writer):
    """dpkt's writer, plus records stamped with exact integer nanoseconds."""

    def __init__(self, fileobj: BinaryIO, *, nano: bool, snaplen: int = 65535):
        super().__init__(fileobj, snaplen=snaplen, linktype=dpcap.DLT_EN10MB, nano=nano)
        self._out = fileobj
        self._per_second = 10 ** 9 if nano else 10 ** 6
        self._divisor = 1 if nano else 1000

    def writepkt_ns(self, frame: bytes, ts_ns: int) -> None:
        if not isinstance(ts_ns, int) or ts_ns < 0:
            raise ValueError(f"timestamp must be a non-negative integer of ns, not {ts_ns!r}")
        sec, rest = divmod(ts_ns, 10 ** 9)
        if sec >= 1 << 32:
            raise ValueError(f"timestamp {ts_ns} ns is past the pcap 32-bit seconds range")
        n = len(frame)
        self._out.write(self._pack_hdr(sec, rest // self._divisor, n, n) + frame)


def _open(path_or_file, mode: str):
    if isinstance(path_or_file, (str, os.PathLike)):
        return open(path_or_file, mode), True
    return path_or_file, False


def write_pcap(path_or_file, frames: Iterable[tuple[int, bytes]], nanosecond: bool = True) -> int:
    """Write Ethernet ``(timestamp ns since the epoch, frame)`` records; returns the count.
    Microsecond files truncate the timestamps to whole microseconds."""
    f, owned = _open(path_or_file, "wb")
    try:
        w = _NanoWriter(f, nano=nanosecond)
        count = 0
        for ts_ns, frame in frames:
            w.writepkt_ns(bytes(frame), ts_ns)
            count += 1
        return count
    finally:
        if owned:
            f.close()


def iter_pcap_records(path_or_file) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(file offset of the frame, timestamp ns, frame)``; both byte orders and both
    timestamp resolutions; Ethernet link type only."""
    f, owned = _open(path_or_file, "rb")
    try:
        head = f.read(dpcap.FileHdr.__hdr_len__)
        if len(head) < 4:
            raise PcapError(f"not a pcap file: {len(head)} bytes", 0)
        magic = struct.unpack(">I", head[:4])[0]
        if magic not in PCAP_MAGICS:
            raise PcapError(f"not a pcap file: magic 0x{magic:08x}", 0)
        order, nano = PCAP_MAGICS[magic]
        if len(head) < dpcap.FileHdr.__hdr_len__:
            raise PcapError(f"truncated pcap file header: {len(head)} of "
                            f"{dpcap.FileHdr.__hdr_len__} bytes", 0)
        fh = (dpcap.LEFileHdr if order == "<" else dpcap.FileHdr)(head)
        if fh.linktype != dpcap.DLT_EN10MB:
            raise PcapError(f"link type {fh.linktype} is not Ethernet (1)", 20)
        hdr_cls = dpcap.LEPktHdr if order == "<" else dpcap.PktHdr
        hdr_len = hdr_cls.__hdr_len__
        scale = 1 if nano else 1000
        pos = len(head)
        while True:
            raw = f.read(hdr_len)
            if not raw:
                return
            if len(raw) < hdr_len:
                raise PcapError(f"truncated pcap record header: {len(raw)} of {hdr_len} "
                                "bytes", pos)
            ph = hdr_cls(raw)
            frame = f.read(ph.caplen)
            if len(frame) < ph.caplen:
                raise PcapError(f"truncated pcap record: {len(frame)} of {ph.caplen} bytes",
                                pos)
            yield pos + hdr_len, ph.tv_sec * 1_000_000_000 + ph.tv_usec * scale, frame
            pos += hdr_len + ph.caplen
    finally:
        if owned:
            f.close()


def read_pcap(path_or_file) -> Iterator[tuple[int, bytes]]:
    """Yield ``(timestamp ns since the epoch, frame)`` for each record."""
    for _pos, ts, frame in iter_pcap_records(path_or_file):
        yield ts, frame


def iter_udp_datagrams(path_or_file) -> Iterator[tuple[int, UdpDatagram]]:
    for pos, ts, frame in iter_pcap_records(path_or_file):
        try:
            yield ts, parse_udp_frame(frame)
        except PcapError as e:
            raise PcapError(f"frame at file offset {pos}: {e}", pos + (e.offset or 0)) from e


def iter_tcp_segments(path_or_file) -> Iterator[tuple[int, TcpSegment]]:
    """TCP payloads of a capture (e.g. SoupBinTCP); feed them to a per-direction framer."""
    for pos, ts, frame in iter_pcap_records(path_or_file):
        try:
            yield ts, parse_tcp_frame(frame)
        except PcapError as e:
            raise PcapError(f"frame at file offset {pos}: {e}", pos + (e.offset or 0)) from e


def iter_mold_messages(path_or_file) -> Iterator[tuple[int, UdpDatagram, MoldPacket]]:
    """Every UDP frame of a capture decoded as a MoldUDP64 packet."""
    for pos, ts, frame in iter_pcap_records(path_or_file):
        try:
            d = parse_udp_frame(frame)
        except PcapError as e:
            raise PcapError(f"frame at file offset {pos}: {e}", pos + (e.offset or 0)) from e
        try:
            packet = decode_packet(d.payload)
        except MoldError as e:
            where = pos + d.payload_offset + (e.offset or 0)
            raise PcapError(f"MoldUDP64 in frame at file offset {pos}: {e}", where) from e
        yield ts, d, packet


def pcap_bytes(frames: Iterable[tuple[int, bytes]], nanosecond: bool = True) -> bytes:
    """A pcap image in memory (handy for tests and for the shim)."""
    buf = io.BytesIO()
    write_pcap(buf, frames, nanosecond)
    return buf.getvalue()
