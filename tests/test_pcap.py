import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from tickpath.protocol import itch
from tickpath.protocol.moldudp64 import encode_packet
from tickpath.protocol.pcap import (
    PcapError,
    iter_mold_messages,
    iter_tcp_segments,
    multicast_mac,
    parse_tcp_frame,
    parse_udp_frame,
    pcap_bytes,
    read_pcap,
    udp_frame,
    write_pcap,
)

FRAME_ARGS = dict(src_ip="127.0.0.1", dst_ip="233.54.12.45", sport=4000, dport=26477)


def test_multicast_mac_mapping():
    assert multicast_mac("233.54.12.45") == "01:00:5e:36:0c:2d"
    assert multicast_mac("239.255.255.255") == "01:00:5e:7f:ff:ff"


@pytest.mark.parametrize("vlan", [None, 142])
def test_udp_frame_checksums_match_scapy(vlan):
    payload = encode_packet("TEST", 5, [b"hello", b"world!"])
    frame = udp_frame(payload, vlan=vlan, ttl=3, **FRAME_ARGS)
    pkt = Ether(frame)
    ip, udp = pkt[IP], pkt[UDP]
    assert pkt.dst == "01:00:5e:36:0c:2d"
    assert (pkt[Dot1Q].vlan if vlan is not None else None) == vlan
    assert bytes(udp.payload) == payload and ip.ttl == 3
    sent_ip, sent_udp = ip.chksum, udp.chksum
    del ip.chksum, udp.chksum                       # let scapy recompute both
    rebuilt = Ether(bytes(pkt))
    assert rebuilt[IP].chksum == sent_ip and rebuilt[UDP].chksum == sent_udp != 0
    d = parse_udp_frame(frame)
    assert d.ip_checksum_ok and d.udp_checksum_ok and d.vlan == vlan
    assert (d.src_ip, d.dst_ip, d.sport, d.dport) == ("127.0.0.1", "233.54.12.45", 4000, 26477)
    assert d.payload == payload and d.padding == b"" and not d.fragment


def test_corrupted_checksums_are_reported():
    frame = bytearray(udp_frame(b"payload", **FRAME_ARGS))
    frame[-1] ^= 0xFF
    d = parse_udp_frame(bytes(frame))
    assert d.ip_checksum_ok and d.udp_checksum_ok is False
    frame[14 + 8] ^= 0x01                           # TTL byte: breaks the IPv4 header sum
    assert parse_udp_frame(bytes(frame)).ip_checksum_ok is False


def test_ethernet_padding_kept_apart():
    frame = udp_frame(b"x", **FRAME_ARGS)
    d = parse_udp_frame(frame + bytes(60 - len(frame)))
    assert d.payload == b"x" and d.padding == bytes(60 - len(frame))


@pytest.mark.parametrize("cut, reason", [
    (10, "truncated Ethernet header"), (20, "truncated IPv4 header"),
    (40, "truncated IPv4 datagram")])
def test_truncated_frames(cut, reason):
    frame = udp_frame(b"0123456789", **FRAME_ARGS)
    with pytest.raises(PcapError, match=reason):
        parse_udp_frame(frame[:cut])


def test_non_ipv4_and_non_udp():
    arp = bytes(Ether(type=0x0806) / (b"\x00" * 28))
    with pytest.raises(PcapError, match="not IPv4: EtherType 0x0806"):
        parse_udp_frame(arp)
    tcp = bytes(Ether() / IP(dst="127.0.0.1", proto=6) / (b"\x00" * 20))
    with pytest.raises(PcapError, match="not UDP: IP protocol 6"):
        parse_udp_frame(tcp)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 * 10**9 - 1), st.binary(min_size=14,
                                                                       max_size=100)),
                max_size=10),
       st.booleans())
def test_pcap_round_trip_integer_nanoseconds(records, nano):
    image = pcap_bytes(records, nanosecond=nano)
    expect = records if nano else [(ts - ts % 1000, f) for ts, f in records]
    assert list(read_pcap(io.BytesIO(image))) == expect


def test_write_pcap_to_path_keeps_nanoseconds(tmp_path):
    ts = 1_692_711_000_123_456_789
    frame = udp_frame(b"abc", **FRAME_ARGS)
    assert write_pcap(tmp_path / "x.pcap", [(ts, frame)]) == 1
    assert list(read_pcap(tmp_path / "x.pcap")) == [(ts, frame)]


def test_truncated_pcap_record(tmp_path):
    image = pcap_bytes([(0, bytes(60))])
    with pytest.raises(PcapError, match="truncated pcap record") as e:
        list(read_pcap(io.BytesIO(image[:-5])))
    assert e.value.offset == 24
    with pytest.raises(PcapError, match="not a pcap file"):
        list(read_pcap(io.BytesIO(b"garbage garbage garbage!")))


def test_every_real_itch_pcap_decodes(shared_data):
    files = sorted(shared_data.glob("pcap/*-itch50/*.pcap"))
    assert len(files) == 23
    types = set()
    for f in files:
        n = 0
        for ts, d, packet in iter_mold_messages(f):
            assert d.vlan in (141, 142) and d.dst_mac.startswith("01:00:5e")
            assert packet.session == "" and packet.count == len(packet.messages) > 0
            for raw in packet.messages:
                msg = itch.decode(raw, 0, len(raw))      # framing length must match type
                assert msg.encode() == raw
                types.add(msg.type)
                n += 1
            assert ts > 1_600_000_000 * 10**9
        assert n > 0, f
    assert types >= set("SAFPXDECUYNH")


def test_real_ouch_pcaps_are_tcp(shared_data):
    files = sorted(shared_data.glob("pcap/nasdaq-ouch50/*.pcap"))
    assert len(files) == 6
    for f in files:
        segs = list(iter_tcp_segments(f))
        assert segs and all(s.tcp_checksum_ok and s.ip_checksum_ok for _, s in segs)
        assert 8001 in (segs[0][1].sport, segs[0][1].dport) or \
            8003 in (segs[0][1].sport, segs[0][1].dport)
    with pytest.raises(PcapError, match="not UDP"):
        list(iter_mold_messages(shared_data / "pcap/nasdaq-ouch50/CanceledMessage.pcap"))
    with pytest.raises(PcapError, match="not TCP"):
        parse_tcp_frame(udp_frame(b"x", **FRAME_ARGS))


@pytest.mark.parametrize("nano", [False, True])
def test_big_endian_pcap(nano):
    import dpkt.pcap as dpcap

    magic = dpcap.TCPDUMP_MAGIC_NANO if nano else dpcap.TCPDUMP_MAGIC
    frame = udp_frame(b"be", **FRAME_ARGS)
    image = bytes(dpcap.FileHdr(magic=magic, snaplen=65535, linktype=1)) + bytes(
        dpcap.PktHdr(tv_sec=1_700_000_000, tv_usec=123_456, caplen=len(frame),
                     len=len(frame))) + frame
    assert image[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
    ts = 1_700_000_000 * 10**9 + (123_456 if nano else 123_456_000)
    assert list(read_pcap(io.BytesIO(image))) == [(ts, frame)]
