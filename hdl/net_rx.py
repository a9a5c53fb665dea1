"""Ethernet II / IPv4 / UDP receive, 8 bits a cycle, with a destination filter.

Ref: IEEE 802.3 / 802.1Q, RFC 791 (IPv4), RFC 768 (UDP). The rules, and which fault wins when
a frame has several, are those of :class:`tickpath.model.netfeed.NetRxModel` (the golden model).

Bad FCS: the MAC's verdict arrives with a frame's last byte, after its payload has been parsed.
NetRx *undoes* such frames: payload bytes are written into a packet buffer as they arrive and a
frame is committed (made readable) only at its last byte, when it is known good; any other
outcome rewinds the write pointer. Downstream therefore never sees a byte of a bad frame, at a
cost in latency of one payload's length (see :class:`NetRx`).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
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
    on every beat. Its first byte is valid 2 cycles after the cycle that took the frame's last
    byte, then one byte a cycle while ``o_stream.ready`` is high.

    Parameters
    ----------
    filters : int
        Destination filter entries (1..16), each (IPv4 group, UDP port, enable), written
        through ``filter_write``; all are disabled after reset.
    buffer_depth : int
        Payload buffer in bytes (a power of 2, at least 2048 so a full 1472-byte payload fits
        beside the one being read). A payload that does not fit is dropped as Overflow.
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
        off       = Signal(16)            # byte offset inside the current section
        tagged    = Signal()
        etype_hi  = Signal(8)
        hlen      = Signal(6)             # IPv4 header bytes
        total     = Signal(16)
        frag      = Signal()
        proto     = Signal(8)
        dst       = Signal(32)
        csum      = Signal(21)
        dport     = Signal(16)
        ulen      = Signal(16)
        remaining = Signal(16)
        reason    = Signal(RxReason)      # why a frame in Drop is being dropped
        match_idx = Signal(FILTER_INDEX_WIDTH)
        overflowed = Signal()             # a payload byte found the buffer full

        next_state = Signal(_State)
        drop_now   = Signal()
        reason_now = Signal(RxReason)
        write      = Signal()             # this byte is a payload byte
        write_last = Signal()
        m.d.comb += next_state.eq(state)
        # Plain assignments, outside any Switch: Icarus does not evaluate a combinational block
        # at time 0 when nothing it reads changes, and `write` would stay X until it did.
        m.d.comb += [
            write.eq(state == _State.Pay),
            write_last.eq((state == _State.Pay) & (remaining == 1)),
        ]

        def drop(why):
            m.d.comb += [drop_now.eq(1), reason_now.eq(why), next_state.eq(_State.Drop)]

        def ethertype_decision():
            etype = Cat(byte, etype_hi)
            with m.If(etype == 0x0800):
                m.d.comb += next_state.eq(_State.Ip)
            with m.Elif(((etype == _VLAN_TYPES[0]) | (etype == _VLAN_TYPES[1])) & ~tagged):
                m.d.comb += next_state.eq(_State.Vlan)
            with m.Else():
                drop(RxReason.Filtered)

        with m.Switch(state):
            with m.Case(_State.Eth):
                with m.If(off == 12):
                    m.d.sync += etype_hi.eq(byte)
                with m.If(off == 13):
                    ethertype_decision()
            with m.Case(_State.Vlan):
                with m.If(off == 2):
                    m.d.sync += etype_hi.eq(byte)
                with m.If(off == 3):
                    ethertype_decision()
            with m.Case(_State.Ip):
                csum_now = Signal(21)
                m.d.comb += csum_now.eq(csum + Mux(off[0], byte, Cat(Const(0, 8), byte)))
                fold1 = Signal(17)
                fold2 = Signal(17)
                m.d.comb += [
                    fold1.eq(csum_now[:16] + csum_now[16:]),
                    fold2.eq(fold1[:16] + fold1[16:]),
                ]
                with m.Switch(off):
                    with m.Case(0):
                        m.d.sync += hlen.eq(Cat(Const(0, 2), byte[:4]))
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
                with m.If((off != 0) & (off == hlen - 1)):
                    with m.If(fold2[:16] != 0xFFFF):
                        drop(RxReason.BadIpChecksum)
                    with m.Elif(total < hlen + 8):
                        drop(RxReason.Malformed)
                    with m.Elif(frag):
                        drop(RxReason.Fragment)
                    with m.Elif(proto != 17):
                        drop(RxReason.Filtered)
                    with m.Else():
                        m.d.comb += next_state.eq(_State.Udp)
                m.d.sync += csum.eq(csum_now)
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
                hits = Signal(n)
                m.d.comb += hits.eq(Cat(f_enable[i] & (f_group[i] == dst) & (f_port[i] == dport)
                                        for i in range(n)))
                with m.If(off == 7):
                    with m.If((ulen != total - hlen) | (ulen == 8)):
                        drop(RxReason.Malformed)
                    with m.Elif(hits == 0):
                        drop(RxReason.Filtered)
                    with m.Else():
                        m.d.comb += next_state.eq(_State.Pay)
                        m.d.sync += remaining.eq(ulen - 8)
                        for i in reversed(range(n)):          # lowest index wins
                            with m.If(hits[i]):
                                m.d.sync += match_idx.eq(i)
            with m.Case(_State.Pay):
                m.d.sync += remaining.eq(remaining - 1)
                with m.If(remaining == 1):
                    m.d.comb += next_state.eq(_State.Pad)

        # --- packet buffer (write side) -----------------------------------------------------
        abits = (self._buffer_depth - 1).bit_length()
        m.submodules.buf = buf = Memory(shape=9, depth=self._buffer_depth, init=[])
        wr = buf.write_port()
        rd = buf.read_port()
        m.submodules.meta = meta = SyncFIFO(width=FILTER_INDEX_WIDTH + 16 + TIMESTAMP_WIDTH,
                                            depth=self._meta_depth)
        wptr   = Signal(abits + 1)
        commit = Signal(abits + 1)
        rptr   = Signal(abits + 1)
        full   = Signal()
        m.d.comb += full.eq((wptr - rptr)[:abits + 1] == self._buffer_depth)
        write_ok = Signal()
        m.d.comb += [
            write_ok.eq(take & write & ~full),
            wr.addr.eq(wptr[:abits]),
            wr.data.eq(Cat(byte, write_last)),
            wr.en.eq(write_ok),
        ]
        wptr_next = Signal(abits + 1)
        m.d.comb += wptr_next.eq(wptr + write_ok)

        # --- frame end ----------------------------------------------------------------------
        final    = Signal(RxReason)
        complete = Signal()
        m.d.comb += complete.eq((state == _State.Pad) | ((state == _State.Pay) & (remaining == 1)))
        with m.If(beat.fcs_bad):
            m.d.comb += final.eq(RxReason.BadFcs)
        with m.Elif(drop_now):
            m.d.comb += final.eq(reason_now)
        with m.Elif(state == _State.Drop):
            m.d.comb += final.eq(reason)
        with m.Elif(complete):
            with m.If(overflowed | (write & full) | ~meta.w_rdy):
                m.d.comb += final.eq(RxReason.Overflow)
            with m.Else():
                m.d.comb += final.eq(RxReason.Accepted)
        with m.Else():
            m.d.comb += final.eq(RxReason.Malformed)

        m.d.comb += meta.w_data.eq(Cat(match_idx, dport, self.cycle))
        with m.If(take):
            with m.If(beat.last):
                m.d.sync += [
                    state.eq(_State.Eth), off.eq(0), tagged.eq(0), csum.eq(0),
                    overflowed.eq(0),
                    self.frames.eq(self.frames + 1),
                ]
                with m.Switch(final):
                    for why, counter in _COUNTER_OF.items():
                        with m.Case(why):
                            c = getattr(self, counter)
                            m.d.sync += c.eq(c + 1)
                with m.If(final == RxReason.Accepted):
                    m.d.comb += meta.w_en.eq(1)
                    m.d.sync += [wptr.eq(wptr_next), commit.eq(wptr_next)]
                with m.Else():
                    m.d.sync += wptr.eq(commit)
            with m.Else():
                m.d.sync += [state.eq(next_state), wptr.eq(wptr_next)]
                with m.If(write & full):
                    m.d.sync += overflowed.eq(1)
                with m.If(drop_now):
                    m.d.sync += reason.eq(reason_now)
                with m.If((next_state != state) & (state != _State.Pay)):
                    m.d.sync += off.eq(0)
                with m.Else():
                    m.d.sync += off.eq(Mux(off == 0xFFFF, off, off + 1))
                with m.If(next_state == _State.Vlan):
                    m.d.sync += tagged.eq(1)

        # --- packet buffer (read side) ------------------------------------------------------
        out = self.o_stream
        avail = Signal()
        can   = Signal()
        m.d.comb += [
            avail.eq(rptr != commit),
            can.eq(~out.valid | out.ready),
            rd.addr.eq(rptr[:abits]),
            rd.en.eq(can & avail),
        ]
        with m.If(can):
            m.d.sync += out.valid.eq(avail)
            with m.If(avail):
                m.d.sync += rptr.eq(rptr + 1)
        m.d.comb += [
            out.p.data.eq(rd.data[:8]),
            out.p.last.eq(rd.data[8]),
            Cat(out.p.group, out.p.port, out.p.ingress).eq(meta.r_data),
            meta.r_en.eq(out.valid & out.ready & out.p.last),
        ]
        return m
