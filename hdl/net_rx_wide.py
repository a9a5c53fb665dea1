"""Ethernet II / IPv4 / UDP receive, ``width`` bytes a cycle (8: the 64-bit 10 GbE MAC width),
with a destination filter: the wide twin of :class:`tickpath.hdl.net_rx.NetRx` (as
verilog-ethernet keeps ``udp_complete_64`` beside ``udp_complete``).

Ref: IEEE 802.3 / 802.1Q, RFC 791 (IPv4), RFC 768 (UDP), RFC 1071 (the checksum's
one's-complement sum). The rules, and which fault wins when a frame has several, are those of
:class:`tickpath.model.netfeed.NetRxModel` (the golden model); the counters, the filter table
and the metadata mean what they mean for NetRx.

Bad FCS: like NetRx, NetRxWide *undoes* such frames. Payload words go into a packet buffer as
they arrive and a frame is committed (made readable) only when its end, with its verdict, reaches
the buffer; any other outcome rewinds the write pointer. Downstream never sees a word of a bad
frame, at a cost in latency of one payload's length.

The datapath is a fixed-latency pipeline that never stalls (the input is always ready):

1. ``a``: the input beat, registered.
2. L2 parse (EtherType, one optional 802.1Q/802.1ad tag) and the first realigner, which shifts
   the frame so that the IPv4 header starts in lane 0 (by 14 or 18 bytes).
3. IPv4 parse on that stream (fixed lanes), the header checksum (a tree of 16-bit adds over
   the beat's masked words, registered, then accumulated), and the second realigner, which
   shifts by the header length so that the UDP header starts in lane 0; with ``width`` dividing
   8 the UDP payload is then word-aligned.
4. UDP parse; payload words (bytes beyond the IPv4 total length are padding) go down a delay
   line beside a three-stage classifier (snapshot, checks, priority), so that a frame's verdict
   reaches the packet buffer with its last payload word; the frame is then committed or its
   words rewound, and counted.
5. Read side: words leave the block RAM into a register, then a 5-word FIFO, then
   ``o_stream`` with the metadata of the payload at its head.

Each realigner hands on a frame's end (and what the stage learned about the frame) one cycle
after the frame's last word, with the word's leftover bytes. That cycle is always free: the next
frame's first word never produces output (a realigner's output word k needs its input word k+1).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickpath.hdl.net_rx import metadata_queue
from tickpath.protocol.netfeed import (
    FILTER_INDEX_WIDTH,
    MAX_FILTERS,
    RX_COUNTERS,
    TIMESTAMP_WIDTH,
    FilterWrite,
    RxReason,
    wide_frame_beat,
    wide_udp_beat,
)

__all__ = ["NetRxWide", "WIDTHS", "LATENCY", "FIRST_BEAT_LATENCY", "PREFETCH"]

#: Supported widths in bytes: the UDP header's 8 bytes must be whole words (payload aligned
#: after the second realigner) and the EtherType and the 802.1Q inner EtherType must be in
#: different words.
WIDTHS = (4, 8)
#: Cycles from taking a frame's last beat to its end reaching the packet buffer (``ingress`` is
#: ``cycle`` then minus this).
LATENCY = 8
#: Cycles from taking a frame's last beat to its payload's first beat on ``o_stream`` (when
#: the output is not busy with an earlier payload).
FIRST_BEAT_LATENCY = LATENCY + 6
#: Words the read side takes out of the packet buffer ahead of ``o_stream`` (its output FIFO):
#: with the output stalled, the buffer holds this many words more.
PREFETCH = 5
#: Levels of the checksum adder tree, a cycle each (a narrower beat's tree is padded to it).
_TREE_DEPTH = 2

_ETH_IPV4 = 0x0800
_VLAN_TYPES = (0x8100, 0x88A8)

_COUNTER_OF = {
    RxReason.Accepted: "accepted", RxReason.BadFcs: "bad_fcs",
    RxReason.BadIpChecksum: "bad_ip_checksum", RxReason.Filtered: "filtered",
    RxReason.Malformed: "malformed", RxReason.Fragment: "fragments",
    RxReason.Overflow: "overflow",
}


def _lane(data, i):
    return data[8 * i:8 * i + 8]


class _Words:
    """A frame as words in wire order: ``nb`` valid lanes from lane 0, ``end`` after the frame's
    last word (with it, or alone on a later cycle) carrying ``info``. Plain signals."""

    def __init__(self, name, width, info_width):
        self.valid = Signal(name=f"{name}_valid")
        self.data  = Signal(8 * width, name=f"{name}_data")
        self.nb    = Signal(range(width + 1), name=f"{name}_nb")
        self.end   = Signal(name=f"{name}_end")
        self.info  = Signal(info_width, name=f"{name}_info")


class _WordIndex:
    """Index of a stream's current word in its frame: ``index`` (saturating at 255) and
    ``at[k]``, a flip-flop each, for ``index == k`` (k < ``flags``)."""

    def __init__(self, m, name, src, flags=16):
        self.index = Signal(8, name=f"{name}_index")
        self.at = Signal(flags, init=1, name=f"{name}_at")
        with m.If(src.end):
            m.d.sync += [self.index.eq(0), self.at.eq(1)]
        with m.Elif(src.valid):
            m.d.sync += self.at.eq(self.at << 1)
            with m.If(self.index != 255):
                m.d.sync += self.index.eq(self.index + 1)


def _by_shift(shift, shifts, fn):
    """``fn(s)`` for the value ``s`` of the signal ``shift`` (one of the constants ``shifts``)."""
    out = fn(shifts[0])
    for s in shifts[1:]:
        out = Mux(shift == s, fn(s), out)
    return out


def _realign(m, name, width, src, index, start, shift, shifts, keep, info):
    """Words of ``src`` from byte ``start * width + shift`` of each frame on, realigned to lane 0.

    ``start``, ``shift`` (one of ``shifts``) and ``keep`` (emit data at all) are the current
    frame's and must be valid from the word ``start + 1`` on (a frame that ends sooner is
    Malformed whatever comes out). Output word k is ``src`` words start+k and start+k+1,
    registered when the latter arrives; at the frame's end the leftover bytes (if any) and
    ``end`` come a cycle later, with ``info`` as it was with the end.
    """
    W = width
    out = _Words(name, W, len(info))
    prev    = Signal(8 * W, name=f"{name}_prev")
    prev_nb = Signal(range(W + 1), name=f"{name}_prev_nb")
    with m.If(src.valid):
        m.d.sync += [prev.eq(src.data), prev_nb.eq(src.nb)]

    emit    = Signal(name=f"{name}_emit")
    reg_data = Signal(8 * W, name=f"{name}_reg_data")
    reg_nb  = Signal(range(W + 1), name=f"{name}_reg_nb")
    m.d.comb += [
        emit.eq(src.valid & keep & (index.index > start)),
        reg_data.eq(_by_shift(shift, shifts,
                              lambda s: Cat(prev[8 * s:], src.data[:8 * s]))),
        reg_nb.eq(_by_shift(shift, shifts,
                            lambda s: Mux(src.nb >= s, W, W - s + src.nb) if s else W)),
    ]

    # The frame's last word: this one, or (an end alone) the one before.
    lw_data = Signal(8 * W, name=f"{name}_lw_data")
    lw_nb   = Signal(range(W + 1), name=f"{name}_lw_nb")
    reached = Signal(name=f"{name}_reached")
    m.d.comb += [
        lw_data.eq(Mux(src.valid, src.data, prev)),
        lw_nb.eq(Mux(src.valid, src.nb, prev_nb)),
        reached.eq(Mux(src.valid, index.index >= start, index.index > start)),
    ]
    t_pend  = Signal(name=f"{name}_t_pend")
    t_valid = Signal(name=f"{name}_t_valid")
    t_data  = Signal(8 * W, name=f"{name}_t_data")
    t_nb    = Signal(range(W + 1), name=f"{name}_t_nb")
    t_info  = Signal(len(info), name=f"{name}_t_info")
    m.d.sync += [
        t_pend.eq(src.end),
        t_valid.eq(src.end & keep & reached & (lw_nb > shift)),
        t_data.eq(_by_shift(shift, shifts,
                            lambda s: Cat(lw_data[8 * s:], Const(0, 8 * s)))),
        t_nb.eq(lw_nb - shift),
        t_info.eq(info),
    ]
    with m.If(t_pend):
        m.d.sync += [out.valid.eq(t_valid), out.data.eq(t_data), out.nb.eq(t_nb),
                     out.end.eq(1),
                     out.info.eq(t_info)]
    with m.Else():
        m.d.sync += [out.valid.eq(emit), out.data.eq(reg_data), out.nb.eq(reg_nb),
                     out.end.eq(0)]
    return out


def _fields(m, name, width, src, index, spec):
    """Big-endian fields at fixed byte offsets of ``src``'s frames: {field: (offset, size)}.
    Returns ({field: value so far (registered)}, {field: value including the current word})."""
    regs, nexts = {}, {}
    for field, (offset, size) in spec.items():
        r, n = [], []
        for j in range(offset, offset + size):
            reg = Signal(8, name=f"{name}_{field}{j - offset}")
            nxt = Mux(src.valid & index.at[j // width], _lane(src.data, j % width), reg)
            m.d.sync += reg.eq(nxt)
            r.append(reg)
            n.append(nxt)
        regs[field] = Cat(*reversed(r))
        nexts[field] = Cat(*reversed(n))
    return regs, nexts


class NetRxWide(wiring.Component):
    """Receive Ethernet frames ``width`` bytes a cycle; deliver the UDP payloads that pass.

    The input is always ready (a MAC cannot wait): frames may come back to back at one beat a
    cycle. Each frame ends in exactly one counted reason (:class:`RxReason`), as in
    :class:`~tickpath.hdl.net_rx.NetRx`. An accepted payload leaves ``o_stream`` whole, lane 0
    its first byte, ``width`` bytes a beat (``nbytes`` on the last), with the same metadata on
    every beat; its first beat is valid :data:`FIRST_BEAT_LATENCY` cycles after the cycle that
    took the frame's last beat, then one beat a cycle while ``o_stream.ready`` is high.

    Parameters
    ----------
    width : int
        Bytes a beat, one of :data:`WIDTHS` (8: 64 bits).
    filters : int
        Destination filter entries (1..16), each (IPv4 group, UDP port, enable), written
        through ``filter_write``; all are disabled after reset.
    buffer_depth : int
        Payload buffer in bytes (a power of 2, at least 2048), ``buffer_depth // width`` words;
        a payload takes whole words. A payload that does not fit is dropped as Overflow.
    meta_depth : int
        Committed payloads the buffer can hold at once (metadata queue depth).
    counter_width : int
        Width of the counters (they wrap).

    Members
    -------
    i_stream : ``In(stream.Signature(wide_frame_beat(width)))``
        Frame beats, FCS stripped: ``nbytes`` valid lanes from lane 0 (``width`` but on the
        last beat), ``last`` on the frame's last beat, ``fcs_bad`` valid with ``last``;
        ``first`` is not needed (a frame starts after a ``last``). ``ready`` is always 1.
    o_stream : ``Out(stream.Signature(wide_udp_beat(width)))``
        Accepted UDP payloads, ``first``/``last``/``nbytes`` framed: ``group`` (matching
        filter index), ``port`` and ``ingress`` (``cycle`` when the frame's last beat was
        taken).
    filter_write : ``In(stream.Signature(FilterWrite))``
        Register write port of the filter table, always ready (an index beyond ``filters``
        is ignored). A frame is matched against the table as it is 6 cycles after the frame's
        last beat (NetRx: at the frame's UDP header), which only matters to a frame in flight
        while its entry is rewritten.
    cycle : ``Out(TIMESTAMP_WIDTH)``
        Free-running cycle counter (0 after reset), the time base of ``ingress``.
    frames, accepted, bad_fcs, bad_ip_checksum, filtered, malformed, fragments, overflow :
    ``Out(counter_width)``
        Frames received, and one counter per reason (they add up to ``frames``).
    """

    def __init__(self, *, width=8, filters=4, buffer_depth=4096, meta_depth=16,
                 counter_width=32):
        if width not in WIDTHS:
            raise ValueError(f"width must be one of {WIDTHS}, not {width}")
        if filters not in range(1, MAX_FILTERS + 1):
            raise ValueError(f"filters must be in 1..{MAX_FILTERS}, not {filters}")
        if buffer_depth < 2048 or buffer_depth & (buffer_depth - 1):
            raise ValueError(f"buffer_depth must be a power of 2 >= 2048, not {buffer_depth}")
        if meta_depth not in range(2, 257):
            raise ValueError(f"meta_depth must be in 2..256, not {meta_depth}")
        if counter_width not in range(1, 65):
            raise ValueError(f"counter_width must be in 1..64, not {counter_width}")
        self._width = width
        self._filters = filters
        self._buffer_depth = buffer_depth
        self._meta_depth = meta_depth
        self._counter_width = counter_width
        members = {
            "i_stream":     In(stream.Signature(wide_frame_beat(width))),
            "o_stream":     Out(stream.Signature(wide_udp_beat(width))),
            "filter_write": In(stream.Signature(FilterWrite)),
            "cycle":        Out(TIMESTAMP_WIDTH),
        }
        members.update({name: Out(counter_width) for name in RX_COUNTERS})
        super().__init__(members)

    @property
    def width(self):
        return self._width

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
        W = self._width
        nbw = W.bit_length()
        m.d.sync += self.cycle.eq(self.cycle + 1)
        # `cycle` as it was LATENCY cycles ago: the ingress stamp of a frame ending now.
        stamp = Signal(TIMESTAMP_WIDTH, init=(-LATENCY) % (1 << TIMESTAMP_WIDTH))
        m.d.sync += stamp.eq(stamp + 1)

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

        # --- 1. input register --------------------------------------------------------------
        m.d.comb += self.i_stream.ready.eq(1)
        a = _Words("a", W, 1)
        beat = self.i_stream.p
        take = self.i_stream.valid
        m.d.sync += [
            a.valid.eq(take), a.data.eq(beat.data), a.nb.eq(beat.nbytes),
            a.end.eq(take & beat.last), a.info.eq(beat.fcs_bad & beat.last),
        ]

        # --- 2. Ethernet header, realigned to the IPv4 header -------------------------------
        ai = _WordIndex(m, "a", a)
        tagged = Signal()
        l2_ok  = Signal()                 # IPv4 (after at most one tag)
        l2_bad = Signal()                 # not IPv4, or a second tag: Filtered
        tagged_n, l2_ok_n, l2_bad_n = Signal(), Signal(), Signal()
        m.d.comb += [tagged_n.eq(tagged), l2_ok_n.eq(l2_ok), l2_bad_n.eq(l2_bad)]

        def ethertype(offset):
            return Cat(_lane(a.data, (offset + 1) % W), _lane(a.data, offset % W))

        et = ethertype(12)
        with m.If(a.valid & ai.at[13 // W] & (a.nb > 13 % W)):
            with m.If(et == _ETH_IPV4):
                m.d.comb += l2_ok_n.eq(1)
            with m.Elif((et == _VLAN_TYPES[0]) | (et == _VLAN_TYPES[1])):
                m.d.comb += tagged_n.eq(1)
            with m.Else():
                m.d.comb += l2_bad_n.eq(1)
        et2 = ethertype(16)
        with m.If(a.valid & tagged & ai.at[17 // W] & (a.nb > 17 % W)):
            with m.If(et2 == _ETH_IPV4):
                m.d.comb += l2_ok_n.eq(1)
            with m.Else():
                m.d.comb += l2_bad_n.eq(1)
        with m.If(a.end):
            m.d.sync += [tagged.eq(0), l2_ok.eq(0), l2_bad.eq(0)]
        with m.Else():
            m.d.sync += [tagged.eq(tagged_n), l2_ok.eq(l2_ok_n), l2_bad.eq(l2_bad_n)]
        # The EtherType is decided in or before word 14 // W (18 // W tagged), so `tagged` and
        # `l2_ok` are registered by the word after; the verdict itself goes out as of the end.
        shifts1 = sorted({14 % W, 18 % W})
        b = _realign(m, "b", W, a, ai,
                     start=Mux(tagged, 18 // W, 14 // W),
                     shift=Mux(tagged, 18 % W, 14 % W), shifts=shifts1,
                     keep=l2_ok, info=Cat(a.info, l2_ok_n, l2_bad_n))

        # --- 3. IPv4 header, realigned to the UDP header ------------------------------------
        bi = _WordIndex(m, "b", b)
        ip_r, ip = _fields(m, "ip", W, b, bi, {
            "vihl": (0, 1), "total": (2, 2), "frag": (6, 2), "proto": (9, 1), "dst": (16, 4)})
        ihl_n = ip["vihl"][:4]
        ip_n = Signal(17)                 # IPv4 bytes received (frames < 128 KiB)
        ip_n_n = Signal(17)
        m.d.comb += ip_n_n.eq(Mux(bi.at[0], 0, ip_n) + Mux(b.valid, b.nb, 0))
        with m.If(b.valid):
            m.d.sync += ip_n.eq(ip_n_n)
        hlen  = Signal(6)                 # registered header length (bytes)
        hlen8 = Signal(7)                 # hlen + 8
        with m.If(b.valid & bi.at[0]):
            m.d.sync += [hlen.eq(Cat(Const(0, 2), ihl_n)), hlen8.eq(Cat(Const(0, 2), ihl_n + 2))]
        # From registers, so valid from IPv4 word 2 on (a frame ending sooner is Malformed).
        pay_len = Signal(signed(18))      # UDP payload length by the IPv4 total length
        udp_len = Signal(17)              # total - hlen, wrapping
        m.d.sync += [pay_len.eq(ip_r["total"] - hlen8), udp_len.eq(ip_r["total"] - hlen)]

        # Header checksum: the beat's 16-bit words inside the header (all of word 0: W <= 20)
        # are masked into registers, summed by a tree of adders, a level a cycle (padded to
        # _TREE_DEPTH levels), and accumulated into `acc` without folding (30 words at most:
        # 21 bits); RFC 1071 folding happens in the classifier. Word t's sum is in `acc` from
        # cycle t + _TREE_DEPTH + 2 on.
        hw = W // 2
        words_left = Signal(6)            # header words after the current beat's
        with m.If(b.valid):
            with m.If(bi.at[0]):
                m.d.sync += words_left.eq(Mux(ihl_n * 2 > hw, ihl_n * 2 - hw, 0))
            with m.Else():
                m.d.sync += words_left.eq(Mux(words_left > hw, words_left - hw, 0))
        terms = []
        for i in range(hw):
            t = Signal(16, name=f"csum_word{i}")
            m.d.sync += t.eq(Mux(bi.at[0] | (words_left > i),
                                 Cat(_lane(b.data, 2 * i + 1), _lane(b.data, 2 * i)), 0))
            terms.append(t)
        flags = Signal(2, name="csum_flags0")     # (valid, first) beside the tree
        m.d.sync += flags.eq(Cat(b.valid, bi.at[0]))
        for level in range(_TREE_DEPTH):
            if len(terms) > 1:
                terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                         for k in range(0, len(terms), 2)]
            regs = [Signal(len(t), name=f"csum_l{level}_{k}") for k, t in enumerate(terms)]
            m.d.sync += [r.eq(t) for r, t in zip(regs, terms, strict=True)]
            terms = regs
            f = Signal(2, name=f"csum_flags{level + 1}")
            m.d.sync += f.eq(flags)
            flags = f
        assert len(terms) == 1, "a wider beat needs a deeper checksum tree"
        psum, psum_valid, psum_first = terms[0], flags[0], flags[1]
        acc = Signal(21)
        with m.If(psum_valid):
            m.d.sync += acc.eq(Mux(psum_first, 0, acc) + psum)
        # The frame's sum (the end word's psum with the sum of the words before), valid while
        # K2 (below) holds the frame's end.
        csum = Signal(21)
        m.d.sync += csum.eq(Mux(psum_valid & psum_first, 0, acc) + Mux(psum_valid, psum, 0))

        # The second realigner starts at the header's end: hlen is registered by IPv4 word 1.
        shifts2 = sorted({(4 * i) % W for i in range(16)})
        c = _realign(m, "c", W, b, bi,
                     start=hlen >> (W.bit_length() - 1),
                     shift=hlen & (W - 1), shifts=shifts2, keep=Const(1),
                     info=Cat(b.info, ip_n_n, ip["vihl"], ip["total"], ip["frag"],
                              ip["proto"], ip["dst"], udp_len))

        # --- 4. UDP header and payload ------------------------------------------------------
        ci = _WordIndex(m, "c", c)
        _, udp = _fields(m, "udp", W, c, ci, {"dport": (2, 2), "ulen": (4, 2)})
        first_pay = 8 // W                # the payload's first word
        pay_left = Signal(signed(18))
        left = Signal(signed(18))
        m.d.comb += left.eq(Mux(ci.at[first_pay], pay_len, pay_left))
        with m.If(c.valid & (ci.index >= first_pay)):
            m.d.sync += pay_left.eq(left - W)
        p_write = c.valid & (ci.index >= first_pay) & (left > 0)
        p_nb    = Mux(left < W, left[:nbw], W)
        p_last  = left <= W
        p_first = ci.at[first_pay]

        # Payload words wait three cycles beside the classifier: (write, data, nb, last, first).
        pw = [Signal(1 + 8 * W + nbw + 2, name=f"pw{k}") for k in range(3)]
        m.d.sync += [pw[0].eq(Cat(p_write, c.data, p_nb, p_last, p_first)),
                     pw[1].eq(pw[0]), pw[2].eq(pw[1])]

        # Classifier stage K1: the frame's facts as its end leaves stage 4.
        k1_end = Signal()
        k1 = Signal(len(c.info) + 32)
        m.d.sync += k1_end.eq(c.end)
        with m.If(c.end):
            m.d.sync += k1.eq(Cat(c.info, udp["dport"], udp["ulen"]))
        fcs_bad, ok2, bad2 = k1[0], k1[1], k1[2]
        pos = 3
        fields = {}
        for name, size in (("ip_n", 17), ("vihl", 8), ("total", 16), ("frag", 16),
                           ("proto", 8), ("dst", 32), ("udp_len", 17), ("dport", 16),
                           ("ulen", 16)):
            fields[name] = k1[pos:pos + size]
            pos += size
        assert pos == len(k1)
        f = fields
        ihl = f["vihl"][:4]
        k_hlen = Cat(Const(0, 2), ihl)

        # K2: each check as a flag, and the filter match.
        k2_end = Signal()
        k2_fcs, k2_l2ok, k2_l2bad = Signal(), Signal(), Signal()
        k2_noip, k2_vihl, k2_hdr = Signal(), Signal(), Signal()
        k2_total, k2_frag, k2_notudp, k2_udp = Signal(), Signal(), Signal(), Signal()
        k2_ulen, k2_pay = Signal(), Signal()
        k2_hits = Signal(n)
        k2_port = Signal(16)
        # `csum` is the frame's header sum while K2 holds its end (the end word's sum reached
        # the tree's end the cycle before): folded once (21 bits: the sum is good iff that gives
        # 0xFFFF) into a flag that is valid beside K3.
        # (csum[:16] + csum[16:] == 0xFFFF, with csum[16:] < 32, is this without an adder)
        csum_ok = Signal()
        m.d.sync += csum_ok.eq((csum[5:16] == 0x7FF) & (csum[:5] == ~csum[16:21]))
        m.d.sync += [
            k2_end.eq(k1_end), k2_fcs.eq(fcs_bad), k2_l2ok.eq(ok2), k2_l2bad.eq(bad2),
            k2_noip.eq(f["ip_n"] == 0),
            k2_vihl.eq((f["vihl"][4:] != 4) | (ihl < 5)),
            k2_hdr.eq(f["ip_n"] < k_hlen),
            k2_total.eq(f["total"] < k_hlen + 8),
            k2_frag.eq(f["frag"][:14] != 0),
            k2_notudp.eq(f["proto"] != 17),
            k2_udp.eq(f["ip_n"] < k_hlen + 8),
            k2_ulen.eq((f["ulen"] != f["udp_len"]) | (f["ulen"] == 8)),
            k2_pay.eq(f["ip_n"] < f["total"]),
            k2_hits.eq(Cat(f_enable[i] & (f_group[i] == f["dst"]) & (f_port[i] == f["dport"])
                           for i in range(n))),
            k2_port.eq(f["dport"]),
        ]

        # K3: the first failing check in wire order (the model's order), or Accepted: the
        # checks before the header checksum (`k3_pre`) and after it (`k3_why`); the checksum's
        # own flag is `csum_ok`.
        k3_end = Signal()
        k3_fcs = Signal()
        k3_pre = Signal(RxReason)
        k3_why = Signal(RxReason)
        k3_idx = Signal(FILTER_INDEX_WIDTH)
        k3_port = Signal(16)
        m.d.sync += [k3_end.eq(k2_end), k3_fcs.eq(k2_fcs), k3_port.eq(k2_port)]
        pre = Mux(~k2_l2ok, Mux(k2_l2bad, RxReason.Filtered, RxReason.Malformed),
                  Mux(k2_noip | k2_vihl | k2_hdr, RxReason.Malformed, RxReason.Accepted))
        m.d.sync += k3_pre.eq(pre)
        checks = [
            (k2_total, RxReason.Malformed),
            (k2_frag, RxReason.Fragment),
            (k2_notudp, RxReason.Filtered),
            (k2_udp | k2_ulen, RxReason.Malformed),
            (k2_hits == 0, RxReason.Filtered),
            (k2_pay, RxReason.Malformed),
        ]
        why = Const(RxReason.Accepted.value, 3)
        for cond, reason in reversed(checks):
            why = Mux(cond, reason, why)
        m.d.sync += k3_why.eq(why)
        idx = Const(0, FILTER_INDEX_WIDTH)
        for i in reversed(range(n)):               # lowest index wins
            idx = Mux(k2_hits[i], i, idx)
        m.d.sync += k3_idx.eq(idx)

        # --- packet buffer (write side) -----------------------------------------------------
        words = self._buffer_depth // W
        abits = (words - 1).bit_length()
        m.submodules.buf = buf = Memory(shape=8 * W + nbw + 2, depth=words, init=[])
        wr = buf.write_port()
        rd = buf.read_port()
        w_write = pw[2][0]
        w_rest  = pw[2][1:]
        # Metadata queue, one entry per committed payload (as NetRx: a pop is taken a cycle
        # after the payload's last beat, and meanwhile the entry after the head is shown).
        q = metadata_queue(m, depth=self._meta_depth,
                           width=FILTER_INDEX_WIDTH + 16 + TIMESTAMP_WIDTH)
        meta_head, meta_after, popping = q.head, q.after, q.popping
        meta_w_en, meta_w_rdy, meta_w_data = q.w_en, q.w_rdy, q.w_data

        # The write pointer steps through a register holding its successor, and a frame's
        # verdict (final) is applied the cycle after its end: commit, or rewind to the last
        # commit. No payload word reaches this stage then (the next frame's first payload word
        # is at least 5 cycles behind its end; meta_w_rdy may miss an entry being written then,
        # but accepted frames' ends are more than a cycle apart).
        wptr     = Signal(abits + 1)
        wptr_p1  = Signal(abits + 1, init=1)
        commit   = Signal(abits + 1)
        commit_p1 = Signal(abits + 1, init=1)
        rptr     = Signal(abits + 1)
        full     = Signal()
        m.d.comb += full.eq((wptr[:abits] == rptr[:abits]) & (wptr[abits] != rptr[abits]))
        write_ok = Signal()
        m.d.comb += [
            write_ok.eq(w_write & ~full),
            wr.addr.eq(wptr[:abits]),
            wr.data.eq(w_rest),
            wr.en.eq(write_ok),
        ]
        overflowed = Signal()

        final = Signal(RxReason)
        with m.If(k3_fcs):
            m.d.comb += final.eq(RxReason.BadFcs)
        with m.Elif(k3_pre != RxReason.Accepted):
            m.d.comb += final.eq(k3_pre)
        with m.Elif(~csum_ok):
            m.d.comb += final.eq(RxReason.BadIpChecksum)
        with m.Elif(k3_why != RxReason.Accepted):
            m.d.comb += final.eq(k3_why)
        with m.Elif(overflowed | (w_write & full) | ~meta_w_rdy):
            m.d.comb += final.eq(RxReason.Overflow)
        with m.Else():
            m.d.comb += final.eq(RxReason.Accepted)

        ended     = Signal()
        ended_why = Signal(RxReason)
        m.d.sync += [ended.eq(k3_end), ended_why.eq(final)]
        with m.If(ended):
            m.d.sync += self.frames.eq(self.frames + 1)
            with m.Switch(ended_why):
                for reason, counter in _COUNTER_OF.items():
                    with m.Case(reason):
                        cnt = getattr(self, counter)
                        m.d.sync += cnt.eq(cnt + 1)

        with m.If(k3_end):
            m.d.sync += [overflowed.eq(0), meta_w_data.eq(Cat(k3_idx, k3_port, stamp))]
        with m.Elif(w_write & full):
            m.d.sync += overflowed.eq(1)
        with m.If(write_ok):
            m.d.sync += [wptr.eq(wptr_p1), wptr_p1.eq(wptr_p1 + 1)]
        m.d.comb += meta_w_en.eq(ended & (ended_why == RxReason.Accepted))
        with m.If(meta_w_en):
            m.d.sync += [commit.eq(wptr), commit_p1.eq(wptr_p1)]
        with m.Elif(ended):
            m.d.sync += [wptr.eq(commit), wptr_p1.eq(commit_p1)]

        # --- packet buffer (read side) ------------------------------------------------------
        # A block RAM's read data comes late in the cycle (no output register is inferred):
        # it goes straight into a register, then into a small FIFO with registered outputs;
        # reads are issued while the FIFO has room for them and those in flight. A word holds
        # a place for 4 cycles from its read to its transfer: 5 places sustain a word a cycle.
        out = self.o_stream
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(width=len(w_rest), depth=PREFETCH)
        avail    = Signal()
        issue    = Signal()
        issued   = Signal()               # read data is on the port this cycle
        rq       = Signal(len(w_rest), reset_less=True)   # nothing but the RAM before it
        rq_valid = Signal()
        outstanding = Signal(range(PREFETCH + 1))   # read and not yet out of o_stream
        m.d.sync += outstanding.eq(outstanding + issue - (out.valid & out.ready))
        m.d.comb += [
            avail.eq(rptr != commit),
            issue.eq(avail & (outstanding != PREFETCH)),
            rd.addr.eq(rptr[:abits]),
            rd.en.eq(issue),
        ]
        with m.If(issue):
            m.d.sync += rptr.eq(rptr + 1)
        m.d.sync += [issued.eq(issue), rq.eq(rd.data), rq_valid.eq(issued)]
        m.d.comb += [
            out_fifo.w_data.eq(rq),
            out_fifo.w_en.eq(rq_valid),
            out.valid.eq(out_fifo.r_rdy),
            out_fifo.r_en.eq(out.ready),
            out.p.data.eq(out_fifo.r_data[:8 * W]),
            out.p.nbytes.eq(out_fifo.r_data[8 * W:8 * W + nbw]),
            out.p.last.eq(out_fifo.r_data[8 * W + nbw]),
            out.p.first.eq(out_fifo.r_data[8 * W + nbw + 1]),
            Cat(out.p.group, out.p.port, out.p.ingress).eq(
                Mux(popping, meta_after.data, meta_head.data)),
        ]
        m.d.sync += popping.eq(out.valid & out.ready & out.p.last)
        return m
