"""Ethernet II / IPv4 / UDP receive, 8 bits a cycle, with a destination filter.

Ref: IEEE 802.3 / 802.1Q, RFC 791 (IPv4), RFC 768 (UDP). The rules, and which fault wins when
a frame has several, are those of :class:`tickpath.model.netfeed.NetRxModel` (the golden model).

Bad FCS: the MAC's verdict arrives with a frame's last byte, after its payload has been parsed.
NetRx *undoes* such frames: payload bytes are written into a packet buffer as they arrive and a
frame is committed (made readable) only at its last byte, when it is known good; any other
outcome rewinds the write pointer. Downstream therefore never sees a byte of a bad frame, at a
cost in latency of one payload's length (see :class:`NetRx`).
"""

from typing import NamedTuple

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickpath.protocol.netfeed import (
    FILTER_INDEX_WIDTH,
    MAX_FILTERS,
    RX_COUNTERS,
    TIMESTAMP_WIDTH,
    FilterWrite,
    FrameBeat,
    RxReason,
    UdpBeat,
)

__all__ = ["NetRx"]

_VLAN_TYPES = (0x8100, 0x88A8)


class _State(enum.Enum, shape=3):
    Eth  = 0
    Vlan = 1
    Ip   = 2
    Udp  = 3
    Pay  = 4
    Pad  = 5
    Drop = 6


_COUNTER_OF = {
    RxReason.Accepted: "accepted", RxReason.BadFcs: "bad_fcs",
    RxReason.BadIpChecksum: "bad_ip_checksum", RxReason.Filtered: "filtered",
    RxReason.Malformed: "malformed", RxReason.Fragment: "fragments",
    RxReason.Overflow: "overflow",
}


class NetRx(wiring.Component):
    """Receive Ethernet frames one byte a cycle; deliver the UDP payloads that pass.

    The input is always ready (a MAC cannot wait): frames may come back to back at one byte a
    cycle. Each frame ends in exactly one counted reason (:class:`RxReason`). An accepted
    payload leaves ``o_stream`` whole, with ``last`` on its final byte and the same metadata
    on every beat. Its first byte is valid 3 cycles after the cycle that took the frame's last
    byte (the packet buffer's read data is registered once more before ``o_stream``), then one
    byte a cycle while ``o_stream.ready`` is high.

    Parameters
    ----------
    filters : int
        Destination filter entries (1..16), each (IPv4 group, UDP port, enable), written
        through ``filter_write``; all are disabled after reset.
    buffer_depth : int
        Payload buffer in bytes (a power of 2, at least 2048 so a full 1472-byte payload fits
        beside the one being read). A payload that does not fit is dropped as Overflow (the
        check may count one byte short: it is registered).
    meta_depth : int
        Committed payloads the buffer can hold at once (metadata queue depth).
    counter_width : int
        Width of the counters (they wrap).

    Members
    -------
    i_stream : ``In(stream.Signature(FrameBeat))``
        Frame bytes, FCS stripped; ``fcs_bad`` valid with ``last``. ``ready`` is always 1.
    o_stream : ``Out(stream.Signature(UdpBeat))``
        Accepted UDP payloads: ``group`` (matching filter index), ``port`` and ``ingress``
        (``cycle`` when the frame's last byte was taken).
    filter_write : ``In(stream.Signature(FilterWrite))``
        Register write port of the filter table, always ready (an index beyond ``filters``
        is ignored).
    cycle : ``Out(TIMESTAMP_WIDTH)``
        Free-running cycle counter (0 after reset), the time base of ``ingress``.
    frames, accepted, bad_fcs, bad_ip_checksum, filtered, malformed, fragments, overflow :
    ``Out(counter_width)``
        Frames received, and one counter per reason (they add up to ``frames``).
    """

    def __init__(self, *, filters=4, buffer_depth=2048, meta_depth=16, counter_width=32):
        if filters not in range(1, MAX_FILTERS + 1):
            raise ValueError(f"filters must be in 1..{MAX_FILTERS}, not {filters}")
        if buffer_depth < 2048 or buffer_depth & (buffer_depth - 1):
            raise ValueError(f"buffer_depth must be a power of 2 >= 2048, not {buffer_depth}")
        if meta_depth not in range(2, 257):
            raise ValueError(f"meta_depth must be in 2..256, not {meta_depth}")
        if counter_width not in range(1, 65):
            raise ValueError(f"counter_width must be in 1..64, not {counter_width}")
        self._filters = filters
        self._buffer_depth = buffer_depth
        self._meta_depth = meta_depth
        self._counter_width = counter_width
        members = {
            "i_stream":     In(stream.Signature(FrameBeat)),
            "o_stream":     Out(stream.Signature(UdpBeat)),
            "filter_write": In(stream.Signature(FilterWrite)),
            "cycle":        Out(TIMESTAMP_WIDTH),
        }
        members.update({name: Out(counter_width) for name in RX_COUNTERS})
        super().__init__(members)

    @property
    def filters(self):
        return self._filters

    @property
    def buffer_depth(self):
        return self._buffer_depth

    @property
    def meta_depth(self):
        return self._meta_depth

    @property
    def counter_width(self):
        return self._counter_width

    def elaborate(self, platform):
        m = Module()
        beat = self.i_stream.p
        byte = beat.data
        take = self.i_stream.valid
        m.d.comb += self.i_stream.ready.eq(1)
        m.d.sync += self.cycle.eq(self.cycle + 1)

        # --- filter table -------------------------------------------------------------------
        n = self._filters
        f_group  = Array(Signal(32, name=f"filter{i}_group") for i in range(n))
        f_port   = Array(Signal(16, name=f"filter{i}_port") for i in range(n))
        f_enable = Array(Signal(name=f"filter{i}_enable") for i in range(n))
        fw = self.filter_write
        m.d.comb += fw.ready.eq(1)
        with m.If(fw.valid & (fw.p.index < n)):
            m.d.sync += [
                f_group[fw.p.index].eq(fw.p.group),
                f_port[fw.p.index].eq(fw.p.port),
                f_enable[fw.p.index].eq(fw.p.enable),
            ]

        # --- parser state -------------------------------------------------------------------
        state     = Signal(_State)
        off       = Signal(8)             # byte offset inside the current section (saturates
                                          # at 128: only offsets below 64 are ever compared)
        tagged    = Signal()
        etype_hi  = Signal(8)
        hlen      = Signal(6)             # IPv4 header bytes
        total     = Signal(16)
        frag      = Signal()
        proto     = Signal(8)
        dst       = Signal(32)
        csum      = Signal(17)            # ones' complement sum, end-around carry folded as it goes
        dport     = Signal(16)
        ulen      = Signal(16)
        remaining = Signal(16)
        # Timing: comparisons of registers that settle bytes before they are used are registered
        # a cycle ahead, so the frame's decisions (and the FIFO write / counters behind them) see
        # flags, not adders and wide comparators.
        hlen_m1   = Signal(6)             # hlen - 1
        short_ip  = Signal()              # total < hlen + 8 (valid from IPv4 offset 5)
        ip_bad    = Signal()              # short_ip, frag or not UDP (valid from IPv4 offset 11)
        ip_reason = Signal(RxReason)      # the first of those, as a reason
        bad_ulen  = Signal()              # ulen != total - hlen, or ulen == 8 (valid from UDP
                                          # offset 7)
        ulen_nine = Signal()              # ulen == 9 (valid from UDP offset 7)
        pay_last  = Signal()              # in Pay: remaining == 1
        hits      = Signal(n)             # filter matches of (dst, dport) (valid from UDP offset 5)
        # `hits` is the table's match as of now: the match registered last cycle, with last
        # cycle's filter write (its own match registered beside it) applied.
        hits_held = Signal(n)
        w_valid   = Signal()
        w_index   = Signal.like(fw.p.index)
        w_match   = Signal()
        m.d.sync += [
            short_ip.eq(total < hlen + 8),
            ip_bad.eq(short_ip | frag | (proto != 17)),
            ip_reason.eq(Mux(short_ip, RxReason.Malformed,
                             Mux(frag, RxReason.Fragment, RxReason.Filtered))),
            bad_ulen.eq((ulen != total - hlen) | (ulen == 8)),
            ulen_nine.eq(ulen == 9),
            hits_held.eq(Cat(f_enable[i] & (f_group[i] == dst) & (f_port[i] == dport)
                             for i in range(n))),
            w_valid.eq(fw.valid),
            w_index.eq(fw.p.index),
            w_match.eq(fw.p.enable & (fw.p.group == dst) & (fw.p.port == dport)),
        ]
        m.d.comb += hits.eq(Cat(Mux(w_valid & (w_index == i), w_match, hits_held[i])
                                for i in range(n)))
        reason    = Signal(RxReason)      # why a frame in Drop is being dropped
        match_idx = Signal(FILTER_INDEX_WIDTH)
        overflowed = Signal()             # a payload byte found the buffer full

        next_state = Signal(_State)
        drop_now   = Signal()
        reason_now = Signal(RxReason)
        write      = Signal()             # this byte is a payload byte
        write_last = Signal()
        m.d.comb += next_state.eq(state)

        # IPv4 header checksum. csum[16] is the end-around carry of the previous add: the running
        # sum stays congruent (mod 0xFFFF) to the plain sum of the header words and is 0 only
        # while that is 0, so the header is good exactly when the last add (csum + its last byte,
        # hlen being a multiple of 4) gives 0xFFFF or 0x1FFFE. Which last byte does that is
        # worked out a cycle ahead, so the check is a byte comparison, not an add. The cycle
        # ahead is always an IPv4 header byte at an even offset, so that is the only add the
        # look-ahead works from (`csum_even`; its other cycles' values are never used):
        # 0xFFFF = csum + b  when csum[8:] == 0x0FF and b == ~csum[:8];
        # 0x1FFFE = csum + b when csum[8:] == 0x1FF, csum[:8] != 0xFF and b == 0xFE - csum[:8],
        #                    or csum == 0x1FEFF and b == 0xFF.
        csum_d    = Signal(17)            # csum's next value
        csum_even = Signal(17)            # csum + this byte as a high byte
        # The three cases exclude each other: the look-ahead keeps whether one holds and the
        # byte it wants.
        c_any     = Signal()
        c_want    = Signal(8)
        c_hi_0ff  = Signal()
        c_hi_1ff  = Signal()
        c_1feff   = Signal()
        # One adder (the end-around carry rides in bit 0 of the byte's operand); the low byte of
        # csum_even does not depend on the byte, so the wanted values come from `csum` alone.
        c_lo      = Signal(8)             # csum_even[:8]
        m.d.comb += [
            csum_d.eq(csum),
            csum_even.eq(csum[:16] + Cat(csum[16], Const(0, 7), byte)),
            c_lo.eq(csum[:8] + csum[16]),
            c_hi_0ff.eq(csum_even[8:] == 0x0FF),
            c_hi_1ff.eq((csum_even[8:] == 0x1FF) & (c_lo != 0xFF)),
            c_1feff.eq((csum_even[8:] == 0x1FE) & (c_lo == 0xFF)),
        ]
        m.d.sync += [
            csum.eq(csum_d),
            c_any.eq(c_hi_0ff | c_hi_1ff | c_1feff),
            c_want.eq(Mux(c_hi_0ff, ~c_lo, Mux(c_hi_1ff, 0xFE - c_lo, 0xFF))),
        ]
        csum_good = c_any & (byte == c_want)
        # Plain assignments, outside any Switch: Icarus does not evaluate a combinational block
        # at time 0 when nothing it reads changes, and `write` would stay X until it did.
        m.d.comb += [
            write.eq(state == _State.Pay),
            write_last.eq((state == _State.Pay) & pay_last),
        ]

        # hdr_last: in Ip, the current byte is the header's last (off == hlen - 1, off != 0),
        # kept a cycle ahead: set when the byte taken is the one before it.
        hdr_last = Signal()
        section_end = Signal()
        m.d.comb += section_end.eq(((state == _State.Eth) & (off == 13))
                                   | ((state == _State.Vlan) & (off == 3))
                                   | hdr_last
                                   | ((state == _State.Udp) & (off == 7)))
        with m.If(take):
            m.d.sync += hdr_last.eq((state == _State.Ip) & (off != 0) & ~hdr_last & ~beat.last
                                    & (off + 1 == hlen_m1))
        hi_08, hi_81, hi_88 = Signal(), Signal(), Signal()   # etype_hi is 0x08, 0x81, 0x88

        def capture_etype_hi():
            m.d.sync += [etype_hi.eq(byte), hi_08.eq(byte == 0x08), hi_81.eq(byte == 0x81),
                         hi_88.eq(byte == 0x88)]

        def drop(why):
            m.d.comb += [drop_now.eq(1), reason_now.eq(why), next_state.eq(_State.Drop)]

        # the frame enters Vlan (only from Eth: in Vlan, `tagged` is set), without `next_state`
        to_vlan = Signal()
        m.d.comb += to_vlan.eq((state == _State.Eth) & (off == 13)
                               & ((hi_81 & (byte == 0x00)) | (hi_88 & (byte == 0xA8))))

        def ethertype_decision():
            assert _VLAN_TYPES == (0x8100, 0x88A8)
            lo_00 = byte == 0x00
            with m.If(hi_08 & lo_00):
                m.d.comb += next_state.eq(_State.Ip)
            with m.Elif(((hi_81 & lo_00) | (hi_88 & (byte == 0xA8))) & ~tagged):
                m.d.comb += next_state.eq(_State.Vlan)
            with m.Else():
                drop(RxReason.Filtered)

        with m.Switch(state):
            with m.Case(_State.Eth):
                with m.If(off == 12):
                    capture_etype_hi()
                with m.If(off == 13):
                    ethertype_decision()
            with m.Case(_State.Vlan):
                with m.If(off == 2):
                    capture_etype_hi()
                with m.If(off == 3):
                    ethertype_decision()
            with m.Case(_State.Ip):
                m.d.comb += csum_d.eq(csum[:16] + csum[16]
                                      + Mux(off[0], byte, Cat(Const(0, 8), byte)))
                with m.Switch(off):
                    with m.Case(0):
                        m.d.sync += [hlen.eq(Cat(Const(0, 2), byte[:4])),
                                     hlen_m1.eq(Cat(Const(0, 2), byte[:4]) - 1)]
                        with m.If((byte[4:] != 4) | (byte[:4] < 5)):
                            drop(RxReason.Malformed)
                    with m.Case(2):
                        m.d.sync += total[8:].eq(byte)
                    with m.Case(3):
                        m.d.sync += total[:8].eq(byte)
                    with m.Case(6):
                        m.d.sync += frag.eq(byte[:6] != 0)
                    with m.Case(7):
                        m.d.sync += frag.eq(frag | (byte != 0))
                    with m.Case(9):
                        m.d.sync += proto.eq(byte)
                    with m.Case(16, 17, 18, 19):
                        m.d.sync += dst.eq(Cat(byte, dst[:24]))
                with m.If(hdr_last):
                    with m.If(~csum_good):
                        drop(RxReason.BadIpChecksum)
                    with m.Elif(ip_bad):
                        drop(ip_reason)
                    with m.Else():
                        m.d.comb += next_state.eq(_State.Udp)
            with m.Case(_State.Udp):
                with m.Switch(off):
                    with m.Case(2):
                        m.d.sync += dport[8:].eq(byte)
                    with m.Case(3):
                        m.d.sync += dport[:8].eq(byte)
                    with m.Case(4):
                        m.d.sync += ulen[8:].eq(byte)
                    with m.Case(5):
                        m.d.sync += ulen[:8].eq(byte)
                with m.If(off == 7):
                    with m.If(bad_ulen):
                        drop(RxReason.Malformed)
                    with m.Elif(hits == 0):
                        drop(RxReason.Filtered)
                    with m.Else():
                        m.d.comb += next_state.eq(_State.Pay)
                        m.d.sync += [remaining.eq(ulen - 8), pay_last.eq(ulen_nine)]
                        for i in reversed(range(n)):          # lowest index wins
                            with m.If(hits[i]):
                                m.d.sync += match_idx.eq(i)
            with m.Case(_State.Pay):
                m.d.sync += [remaining.eq(remaining - 1), pay_last.eq(remaining == 2)]
                with m.If(pay_last):
                    m.d.comb += next_state.eq(_State.Pad)

        # --- packet buffer (write side) -----------------------------------------------------
        abits = (self._buffer_depth - 1).bit_length()
        m.submodules.buf = buf = Memory(shape=9, depth=self._buffer_depth, init=[])
        wr = buf.write_port()
        rd = buf.read_port()
        # Metadata queue, one entry per committed payload. Not a SyncFIFO: loading a payload's
        # last byte into the output register pops it a cycle later (`popping`), so the pop is not
        # behind the buffer's read data, and meanwhile the entry after the head is what the
        # output loads; room counts a pending pop as done, so the queue looks exactly like one
        # popped at once. A commit
        # writes its entry a cycle late too (`meta_w_en` is registered): the entry is first read
        # 2 cycles after the commit, and the next commit that asks for room is a whole frame
        # later, so neither can tell.
        q = metadata_queue(m, depth=self._meta_depth,
                           width=FILTER_INDEX_WIDTH + 16 + TIMESTAMP_WIDTH)
        meta_head, meta_after, popping = q.head, q.after, q.popping
        meta_w_en, meta_w_rdy, meta_w_data = q.w_en, q.w_rdy, q.w_data
        wptr   = Signal(abits + 1)
        commit = Signal(abits + 1)
        rptr   = Signal(abits + 1)
        # `full` is registered: the buffer held at least depth - 1 bytes a cycle ago. So no byte
        # is written into a full buffer, and one may be refused with a byte free (after a read,
        # or a pause in the frame), never more.
        full   = Signal()
        fill   = Signal(abits + 1)
        m.d.comb += fill.eq(wptr - rptr)
        m.d.sync += full.eq(fill >= self._buffer_depth - 1)
        write_ok = Signal()
        m.d.comb += [
            write_ok.eq(take & write & ~full),
            wr.addr.eq(wptr[:abits]),
            wr.data.eq(Cat(byte, write_last)),
            wr.en.eq(write_ok),
        ]
        wptr_next = Signal(abits + 1)
        m.d.comb += wptr_next.eq(Mux(write_ok, wptr + 1, wptr))

        # --- frame end ----------------------------------------------------------------------
        final    = Signal(RxReason)
        complete = Signal()
        m.d.comb += complete.eq((state == _State.Pad) | ((state == _State.Pay) & pay_last))
        with m.If(beat.fcs_bad):
            m.d.comb += final.eq(RxReason.BadFcs)
        with m.Elif(drop_now):
            m.d.comb += final.eq(reason_now)
        with m.Elif(state == _State.Drop):
            m.d.comb += final.eq(reason)
        with m.Elif(complete):
            with m.If(overflowed | (write & full) | ~meta_w_rdy):
                m.d.comb += final.eq(RxReason.Overflow)
            with m.Else():
                m.d.comb += final.eq(RxReason.Accepted)
        with m.Else():
            m.d.comb += final.eq(RxReason.Malformed)

        # final == Accepted, without the reasons that cannot stand beside `complete` (a drop is
        # decided only in Eth, Vlan, Ip and Udp), so the buffer's pointers do not wait for them
        accept_now = Signal()
        m.d.comb += accept_now.eq(complete & ~beat.fcs_bad & ~overflowed & ~(write & full)
                                  & meta_w_rdy)

        # The counters count a frame a cycle after its last byte (`ended`, `ended_why`), so the
        # frame's verdict reaches them through a register.
        ended     = Signal()
        ended_why = Signal(RxReason)
        m.d.sync += [ended.eq(take & beat.last), ended_why.eq(final)]
        with m.If(ended):
            m.d.sync += self.frames.eq(self.frames + 1)
            with m.Switch(ended_why):
                for why, counter in _COUNTER_OF.items():
                    with m.Case(why):
                        c = getattr(self, counter)
                        m.d.sync += c.eq(c + 1)

        m.d.sync += [meta_w_data.eq(Cat(match_idx, dport, self.cycle)), meta_w_en.eq(0)]
        with m.If(take):
            with m.If(beat.last):
                m.d.sync += [
                    state.eq(_State.Eth), off.eq(0), tagged.eq(0),
                    overflowed.eq(0),
                ]
                m.d.comb += csum_d.eq(0)
                with m.If(accept_now):
                    m.d.sync += meta_w_en.eq(1)
                    m.d.sync += [wptr.eq(wptr_next), commit.eq(wptr_next)]
                with m.Else():
                    m.d.sync += wptr.eq(commit)
            with m.Else():
                m.d.sync += [state.eq(next_state), wptr.eq(wptr_next)]
                with m.If(write & full):
                    m.d.sync += overflowed.eq(1)
                with m.If(drop_now):
                    m.d.sync += reason.eq(reason_now)
                # `off` restarts where a section ends (whether the frame goes on or is dropped;
                # Drop reads no `off`), decided from `state` and `off` alone, not the byte.
                with m.If(section_end):
                    m.d.sync += off.eq(0)
                with m.Else():
                    m.d.sync += off.eq(Mux(off[7], off, off + 1))
                with m.If(to_vlan):
                    m.d.sync += tagged.eq(1)

        # --- packet buffer (read side) ------------------------------------------------------
        # Two stages: the buffer's read data (`s1_valid`), then the output register, so the
        # block RAM's slow clock-to-output reaches only flip-flops. The read data holds while
        # the output register is full and not taken (the read port is not enabled).
        out = self.o_stream
        avail    = Signal()
        can_out  = Signal()               # the output register can load
        can_s1   = Signal()               # the read stage can load
        s1_valid = Signal()
        moved    = Signal()               # the output register loaded last cycle
        m.d.comb += [
            avail.eq(rptr != commit),
            can_out.eq(~out.valid | out.ready),
            can_s1.eq(~s1_valid | can_out),
            rd.addr.eq(rptr[:abits]),
            rd.en.eq(can_s1),
        ]
        with m.If(can_s1):
            m.d.sync += s1_valid.eq(avail)
            with m.If(avail):
                m.d.sync += rptr.eq(rptr + 1)
        m.d.sync += moved.eq(can_out & s1_valid)
        with m.If(can_out):
            m.d.sync += out.valid.eq(s1_valid)
            with m.If(s1_valid):
                m.d.sync += [
                    out.p.data.eq(rd.data[:8]),
                    out.p.last.eq(rd.data[8]),
                    Cat(out.p.group, out.p.port, out.p.ingress).eq(
                        Mux(popping, meta_after.data, meta_head.data)),
                ]
        # A payload's entry is popped the cycle after its last byte entered the output register.
        m.d.comb += popping.eq(moved & out.p.last)
        return m


class MetadataQueue(NamedTuple):
    head: object        # comb read port: the entry at the head
    after: object       # comb read port: the entry after it
    level: Signal       # entries held
    popping: Signal     # drive high for one cycle to pop the head
    w_en: Signal        # drive high to append w_data
    w_rdy: Signal
    w_data: Signal


def metadata_queue(m: Module, *, depth: int, width: int) -> MetadataQueue:
    """The receivers' per-payload metadata queue (see NetRx.elaborate): a ring in LUT RAM whose
    head and the entry after it are both readable, so a pop can be taken a cycle late; room
    counts a pending pop as done."""
    m.submodules.meta = meta_mem = Memory(shape=width, depth=depth, init=[])
    meta_w     = meta_mem.write_port()
    meta_head  = meta_mem.read_port(domain="comb")
    meta_after = meta_mem.read_port(domain="comb")
    produce  = Signal(range(depth))
    consume  = Signal(range(depth))
    consume1 = Signal(range(depth), init=1)   # consume + 1, wrapped
    level    = Signal(range(depth + 1))
    popping  = Signal()
    meta_w_en   = Signal()
    meta_w_rdy  = Signal()
    meta_w_data = Signal(width)

    def wrap_incr(v):
        return Mux(v == depth - 1, 0, v + 1)

    m.d.comb += [
        meta_w_rdy.eq((level != depth) | popping),
        meta_w.addr.eq(produce),
        meta_w.data.eq(meta_w_data),
        meta_w.en.eq(meta_w_en),
        meta_head.addr.eq(consume),
        meta_after.addr.eq(consume1),
    ]
    with m.If(meta_w_en):
        m.d.sync += produce.eq(wrap_incr(produce))
    with m.If(popping):
        m.d.sync += [consume.eq(consume1), consume1.eq(wrap_incr(consume1))]
    with m.If(meta_w_en & ~popping):
        m.d.sync += level.eq(level + 1)
    with m.If(popping & ~meta_w_en):
        m.d.sync += level.eq(level - 1)
    return MetadataQueue(meta_head, meta_after, level, popping, meta_w_en, meta_w_rdy,
                         meta_w_data)
