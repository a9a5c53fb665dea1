"""Golden models of the network side of the feed path: frames -> UDP payloads (``NetRxModel``)
and UDP payloads -> sequenced ITCH messages and gap events (``MoldSequencerModel``).

Ref: IEEE 802.3 / 802.1Q, RFC 791, RFC 768, NASDAQ MoldUDP64 1.00; layouts in
:mod:`tickpath.protocol.netfeed`. The gateware (``hdl/net_rx.py``, ``hdl/mold_sequencer.py``)
must give exactly what these give; the rules, and which fault wins when a frame has several,
are written here once.

Receive (one reason per frame, checks in wire order, the first failing one decides):
a bad FCS wins over everything; fewer than 14 bytes is Malformed; one 802.1Q/802.1ad tag is
skipped (a second tag, or an EtherType other than IPv4, is Filtered); IPv4 version not 4 or
IHL < 5 is Malformed; at the end of the IPv4 header (options included): bad header checksum,
then total length < header + 8 (Malformed), then a fragment (MF or offset), then a protocol
other than UDP (Filtered); at the end of the UDP header: UDP length != IPv4 payload length or
an empty payload (Malformed), then no enabled filter entry with that group and port (Filtered;
the lowest matching index wins); a frame that ends before any of these points, or before the
IPv4 total length, is Malformed. Bytes after the IPv4 total length are Ethernet padding.

Sequencer policy (the gateware holds no future packets):

* The session is latched from the first packet with a complete header (or configured); a
  packet of another session is counted ``foreign`` and dropped. The first packet also sets the
  next expected sequence (joining late is allowed; nothing before it is asked for).
* ``high`` is the end of everything known to exist (max over packets of sequence + count, or
  the sequence of a heartbeat / end of session). When a packet raises ``high`` above what was
  known (``max(high, expected)``), one Gap event reports just the newly found range
  ``[max(high, expected), new high)``: the host re-requests it and the retransmissions arrive
  as ordinary packets.
* A data packet that starts beyond the next expected sequence is dropped (``ahead``); one that
  ends at or before it is a duplicate; one that covers it is delivered from the expected
  message on (its older messages counted ``duplicate_messages``). Delivered messages go out
  one per output packet with their sequence numbers.
* Heartbeats (count 0) and end of session (count 0xFFFF) deliver nothing but can reveal a
  gap; the first end of session gives one EndOfSession event.
* Malformed (counted once per packet): a header shorter than 20 bytes, a block length or block
  running past the packet, or bytes after the last block (or after a heartbeat/end of session
  header). A block cut short by the packet's end still goes out, ending at the packet's last
  byte (the ITCH decoder then reports it Malformed), and does not advance the sequence.
  Packets dropped as ahead/duplicate/foreign are not parsed further. A zero-length block
  advances the sequence and is counted ``empty_messages``.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable

from tickpath.protocol.moldudp64 import END_OF_SESSION_COUNT, HEADER_LENGTH, session_bytes
from tickpath.protocol.netfeed import (
    MAX_FILTERS,
    RX_COUNTERS,
    SEQ_COUNTERS,
    RxReason,
    SeqEventKind,
    ip_int,
)

__all__ = ["FilterEntry", "RxResult", "NetRxModel", "SequencedMessage", "MoldSequencerModel",
           "ipv4_header_ok", "VLAN_TYPES"]

ETH_TYPE_IPV4 = 0x0800
VLAN_TYPES = (0x8100, 0x88A8)
IP_PROTO_UDP = 17
_COUNTER_OF = {
    RxReason.Accepted: "accepted", RxReason.BadFcs: "bad_fcs",
    RxReason.BadIpChecksum: "bad_ip_checksum", RxReason.Filtered: "filtered",
    RxReason.Malformed: "malformed", RxReason.Fragment: "fragments",
    RxReason.Overflow: "overflow",
}


@dataclasses.dataclass(frozen=True)
class FilterEntry:
    group: int          # IPv4 address as an integer
    port: int
    enable: bool = True

    @classmethod
    def of(cls, group: str | int, port: int, enable: bool = True) -> FilterEntry:
        return cls(ip_int(group), port, enable)


@dataclasses.dataclass(frozen=True)
class RxResult:
    reason: RxReason
    payload: bytes = b""
    group: int = 0       # the filter entry index that matched
    port: int = 0


def ipv4_header_ok(header: bytes) -> bool:
    """One's-complement sum of the header (checksum included) is 0xFFFF."""
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


class NetRxModel:
    """Ethernet II / IPv4 / UDP receive with a destination filter (see the module docstring)."""

    def __init__(self, filters: Iterable[FilterEntry] = ()):
        self.filters: list[FilterEntry] = [FilterEntry(0, 0, False)] * MAX_FILTERS
        for i, entry in enumerate(filters):
            self.filters[i] = entry
        self.counters = dict.fromkeys(RX_COUNTERS, 0)

    def set_filter(self, index: int, entry: FilterEntry) -> None:
        self.filters[index] = entry

    def classify(self, frame: bytes, fcs_bad: bool = False) -> RxResult:
        """What becomes of ``frame``, without counting it."""
        bad = RxReason.Malformed
        if fcs_bad:
            return RxResult(RxReason.BadFcs)
        n = len(frame)
        if n < 14:
            return RxResult(bad)
        etype = (frame[12] << 8) | frame[13]
        pos = 14
        if etype in VLAN_TYPES:
            if n < 18:
                return RxResult(bad)
            etype = (frame[16] << 8) | frame[17]
            pos = 18
            if etype in VLAN_TYPES:
                return RxResult(RxReason.Filtered)
        if etype != ETH_TYPE_IPV4:
            return RxResult(RxReason.Filtered)
        if n < pos + 1:
            return RxResult(bad)
        vihl = frame[pos]
        hlen = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or hlen < 20:
            return RxResult(bad)
        if n < pos + hlen:
            return RxResult(bad)
        header = frame[pos:pos + hlen]
        if not ipv4_header_ok(header):
            return RxResult(RxReason.BadIpChecksum)
        total = (header[2] << 8) | header[3]
        if total < hlen + 8:
            return RxResult(bad)
        if ((header[6] << 8) | header[7]) & 0x3FFF:
            return RxResult(RxReason.Fragment)
        if header[9] != IP_PROTO_UDP:
            return RxResult(RxReason.Filtered)
        udp = pos + hlen
        if n < udp + 8:
            return RxResult(bad)
        dport = (frame[udp + 2] << 8) | frame[udp + 3]
        ulen = (frame[udp + 4] << 8) | frame[udp + 5]
        if ulen != total - hlen or ulen == 8:
            return RxResult(bad)
        group = int.from_bytes(header[16:20], "big")
        match = next((i for i, f in enumerate(self.filters)
                      if f.enable and f.group == group and f.port == dport), None)
        if match is None:
            return RxResult(RxReason.Filtered)
        if n < pos + total:
            return RxResult(bad)
        return RxResult(RxReason.Accepted, bytes(frame[udp + 8:pos + total]), match, dport)

    def frame(self, frame: bytes, fcs_bad: bool = False) -> RxResult:
        result = self.classify(frame, fcs_bad)
        self.counters["frames"] += 1
        self.counters[_COUNTER_OF[result.reason]] += 1
        return result


@dataclasses.dataclass(frozen=True)
class SequencedMessage:
    sequence: int
    data: bytes


class MoldSequencerModel:
    """The MoldUDP64 sequencer's policy (see the module docstring). ``packet`` returns the
    messages delivered and the events raised by one UDP payload."""

    def __init__(self, session: str | bytes | None = None):
        self.session: bytes | None = None if session is None else session_bytes(session)
        self.expected: int | None = None
        self.high = 0
        self.ended = False
        self.counters = dict.fromkeys(SEQ_COUNTERS, 0)

    def _event(self, kind: SeqEventKind, first: int, count: int) -> dict:
        return {"kind": kind, "session": int.from_bytes(self.session, "big"),
                "first": first, "count": count}

    def _reveal(self, end: int, events: list[dict]) -> None:
        known = max(self.high, self.expected)
        if end > known:
            events.append(self._event(SeqEventKind.Gap, known, end - known))
            self.counters["gaps"] += 1
            self.high = end

    def packet(self, p: bytes) -> tuple[list[SequencedMessage], list[dict]]:
        c = self.counters
        c["packets"] += 1
        out: list[SequencedMessage] = []
        events: list[dict] = []
        n = len(p)
        if n < HEADER_LENGTH:
            c["malformed"] += 1
            return out, events
        raw_session = bytes(p[:10])
        s, count = struct.unpack_from(">QH", p, 10)
        if self.session is None:
            self.session = raw_session
        if raw_session != self.session:
            c["foreign"] += 1
            return out, events
        if self.expected is None:
            self.expected = self.high = s
        if count in (0, END_OF_SESSION_COUNT):
            c["heartbeats" if count == 0 else "end_of_session"] += 1
            self._reveal(s, events)
            if count == END_OF_SESSION_COUNT and not self.ended:
                self.ended = True
                events.append(self._event(SeqEventKind.EndOfSession, s, 0))
            if n > HEADER_LENGTH:
                c["malformed"] += 1
            return out, events
        end = (s + count) & ((1 << 64) - 1)
        if s > self.expected:
            c["ahead"] += 1
            self._reveal(end, events)
            return out, events
        if end <= self.expected:
            c["duplicates"] += 1
            return out, events
        pos, cur = HEADER_LENGTH, s
        for _ in range(count):
            if n - pos < 2:
                c["malformed"] += 1
                return out, events
            length = (p[pos] << 8) | p[pos + 1]
            pos += 2
            emit = cur == self.expected
            if n - pos < length:
                if emit and n > pos:
                    out.append(SequencedMessage(cur, bytes(p[pos:])))
                c["malformed"] += 1
                return out, events
            if emit:
                if length:
                    out.append(SequencedMessage(cur, bytes(p[pos:pos + length])))
                    c["messages"] += 1
                else:
                    c["empty_messages"] += 1
                self.expected += 1
                self.high = max(self.high, self.expected)
            else:
                c["duplicate_messages"] += 1
            pos += length
            cur += 1
        if pos != n:
            c["malformed"] += 1
        return out, events
