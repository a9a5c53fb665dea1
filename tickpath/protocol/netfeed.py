"""Layouts of the network side of the feed path: Ethernet/IPv4/UDP receive (``hdl/net_rx.py``)
and the MoldUDP64 sequencer (``hdl/mold_sequencer.py``), defined once.

Ref: IEEE 802.3 / 802.1Q, RFC 791 (IPv4), RFC 768 (UDP), NASDAQ MoldUDP64 1.00.

All layouts are flat (one level) so that the cocotb packers in ``sim/common/stream.py`` take
them; multi-byte protocol values (addresses, session, sequence) are held as big-endian integers
(the first wire byte is the most significant), as the gateware shifts them in.
"""

import ipaddress
from typing import Any

from amaranth.lib import data, enum

__all__ = [
    "TIMESTAMP_WIDTH", "FILTER_INDEX_WIDTH", "MAX_FILTERS",
    "FrameBeat", "FilterWrite", "UdpBeat", "MessageBeat", "SeqEventKind", "SeqEvent",
    "RxReason", "RX_COUNTERS", "SEQ_COUNTERS",
    "ip_int", "session_int", "filter_write", "frame_beats", "udp_beats",
    "wide_frame_beat", "wide_udp_beat", "wide_message_beat",
]

#: Width of the free-running cycle counter stamped at ingress (wraps after 26 days at 125 MHz).
TIMESTAMP_WIDTH = 48
#: Destination filter entries are addressed by a 4-bit index.
FILTER_INDEX_WIDTH = 4
MAX_FILTERS = 1 << FILTER_INDEX_WIDTH

#: One byte of an Ethernet frame as a MAC delivers it (FCS already stripped): ``last`` on the
#: final byte, ``fcs_bad`` valid with ``last`` (the MAC's FCS check failed).
FrameBeat = data.StructLayout({"data": 8, "last": 1, "fcs_bad": 1})

#: Register write of one destination filter entry: (IPv4 group, UDP port), enabled or not.
FilterWrite = data.StructLayout({
    "index":  FILTER_INDEX_WIDTH,
    "group":  32,
    "port":   16,
    "enable": 1,
})

#: One byte of an accepted UDP payload with its metadata, the same on every beat of a payload:
#: ``group`` is the filter entry index that matched, ``port`` the UDP destination port and
#: ``ingress`` the cycle at which the frame's last byte arrived.
UdpBeat = data.StructLayout({
    "data":    8,
    "last":    1,
    "group":   FILTER_INDEX_WIDTH,
    "port":    16,
    "ingress": TIMESTAMP_WIDTH,
})

#: One byte of a sequenced ITCH message: ``data``/``last`` as :data:`feed.ByteBeat` (same
#: offsets, so the low bits feed ``ItchDecoder`` directly), then the message's MoldUDP64
#: sequence number and the ingress cycle of the frame that carried it.
MessageBeat = data.StructLayout({
    "data":     8,
    "last":     1,
    "sequence": 64,
    "ingress":  TIMESTAMP_WIDTH,
})


def _wide(width: int, extra: dict[str, Any]) -> data.StructLayout:
    from tickpath.protocol.feed import wide_beat
    fields = {name: field.shape for name, field in wide_beat(width)}
    return data.StructLayout({**fields, **extra})


def wide_frame_beat(width: int) -> data.StructLayout:
    """:data:`FrameBeat` ``width`` bytes a beat (8: the 10 GbE MAC's 64 bits): the
    :func:`~tickpath.protocol.feed.wide_beat` fields (``data``, ``last``, ``first``,
    ``nbytes``), then ``fcs_bad`` (valid with ``last``)."""
    return _wide(width, {"fcs_bad": 1})


def wide_udp_beat(width: int) -> data.StructLayout:
    """:data:`UdpBeat` ``width`` bytes a beat: one UDP payload per packet, lane 0 its first
    byte; ``group``, ``port`` and ``ingress`` as :data:`UdpBeat`, the same on every beat."""
    return _wide(width, {"group": FILTER_INDEX_WIDTH, "port": 16, "ingress": TIMESTAMP_WIDTH})


def wide_message_beat(width: int) -> data.StructLayout:
    """:data:`MessageBeat` ``width`` bytes a beat: one ITCH message per packet, its type byte
    in lane 0; ``sequence`` and ``ingress`` as :data:`MessageBeat`."""
    return _wide(width, {"sequence": 64, "ingress": TIMESTAMP_WIDTH})


class SeqEventKind(enum.Enum, shape=2):
    Gap          = 0   # messages [first, first + count) exist and were not delivered
    EndOfSession = 1   # first = the session's end sequence (the next expected), count = 0


#: An event for the host: a newly found gap to re-request, or the end of the session.
SeqEvent = data.StructLayout({
    "kind":    SeqEventKind,
    "session": 80,
    "first":   64,
    "count":   64,
})


class RxReason(enum.Enum, shape=3):
    """What became of one received frame: exactly one reason per frame."""
    Accepted      = 0
    BadFcs        = 1   # the MAC flagged the FCS (takes precedence over everything)
    BadIpChecksum = 2
    Filtered      = 3   # not IPv4/UDP, more than one VLAN tag, or no filter entry matches
    Malformed     = 4   # bad version/IHL/lengths, empty UDP payload, truncated anywhere
    Fragment      = 5   # IPv4 fragment (MF set or offset non-zero)
    Overflow      = 6   # the payload buffer or its metadata queue was full


#: NetRx counter outputs, in register order: frames, then one per reason.
RX_COUNTERS = ("frames", "accepted", "bad_fcs", "bad_ip_checksum", "filtered", "malformed",
               "fragments", "overflow")

#: MoldSequencer counter outputs, in register order.
SEQ_COUNTERS = ("packets", "messages", "heartbeats", "end_of_session", "duplicates",
                "duplicate_messages", "ahead", "gaps", "foreign", "malformed",
                "empty_messages", "events_lost")


def ip_int(ip: str | int) -> int:
    return int(ipaddress.IPv4Address(ip))


def session_int(session: str | bytes) -> int:
    """The 10 wire bytes of a session as the big-endian integer the gateware holds."""
    from tickpath.protocol.moldudp64 import session_bytes
    return int.from_bytes(session_bytes(session), "big")


def filter_write(index: int, group: str | int, port: int, enable: bool = True) -> dict:
    return {"index": index, "group": ip_int(group), "port": port, "enable": int(enable)}


def frame_beats(frame: bytes, fcs_bad: bool = False) -> list[dict[str, int]]:
    last = len(frame) - 1
    return [{"data": b, "last": int(i == last), "fcs_bad": int(fcs_bad and i == last)}
            for i, b in enumerate(frame)]


def udp_beats(payload: bytes, **meta: Any) -> list[dict[str, int]]:
    last = len(payload) - 1
    return [{"data": b, "last": int(i == last), **meta} for i, b in enumerate(payload)]
