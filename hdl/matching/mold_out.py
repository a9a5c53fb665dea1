"""MoldUDP64 framing of the matching engine's ITCH output: ITCH messages in (a wide beat stream,
one message per packet, from :class:`~.itch_out.ItchSerializer`), whole MoldUDP64 downstream
packets out, ``width`` bytes a beat, for the host to publish and to keep for re-requests.

Ref: NASDAQ MoldUDP64 1.00; the format is :mod:`tickpath.protocol.moldudp64` (its header
layout ``HEADER`` is checked against the gateware's at import, the block length prefix, the
session length and the end-of-session count are its constants). The message lengths come from
:data:`tickpath.protocol.itch.SPECS`, and the message that ends the session (``S`` ``C``) from
the golden :class:`~tickpath.model.matching.MatchingModel`'s own record.

Structure
---------
* **Fill**: each message becomes a block (2-byte length, from the type byte, then the message),
  shifted into place with a two-byte carry (a block takes the message's beats, or one more) and
  packed at any byte offset into one of two packet buffers (a memory of ``width``-byte words;
  a staging register holds the partly filled word, one word is written a cycle). The header is
  not stored.
* **Close**: the open packet is handed to the sender (a queue of packet descriptors) one cycle
  after its last message, when the next message's block would take it over ``mtu`` bytes, when
  it holds ``max_messages`` messages, or after the end-of-session message (then an
  end-of-session packet follows: count ``0xFFFF``, the next sequence, no blocks), and when
  ``flush_cycles`` cycles pass with no input while it is open. The fill side then goes on in
  the other buffer (it waits while that one is still being sent).
* **Send**: the header (session, first sequence, count) is put in front of the buffer's words
  as they are read; one idle cycle between packets.

Throughput: ``ceil(n / width)`` cycles for an ``n``-byte message, one more when its block
spills into an extra beat, plus one cycle per packet closed. The input is registered (the type
byte's length is looked up on the way in) and the MTU check compares the registered block
length with a registered ``room`` (``mtu - pos``), and what to append is chosen apart from
whether to: 95 MHz on an ECP5-85F at ``width`` 8 (the critical path is now the buffer's read
port to the output lanes).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from tickpath.protocol import itch
from tickpath.protocol.feed import wide_beat
from tickpath.protocol.moldudp64 import (
    END_OF_SESSION_COUNT,
    HEADER,
    HEADER_LENGTH,
    MAX_MESSAGES,
    SESSION_LENGTH,
    encode_packet,
    session_bytes,
)
from tickpath.protocol.netfeed import TIMESTAMP_WIDTH, session_int

from .itch_out import _templates, itch_beat_layout

__all__ = ["mold_beat_layout", "header_int", "MoldFramer"]


def _or(values):
    out = Const(0)
    for v in values:
        out = out | v
    return out

#: Bytes of a block's length prefix (big-endian), as ``encode_packet`` writes it.
BLOCK_PREFIX = len(encode_packet(b"", 0, [b""])) - HEADER_LENGTH
assert encode_packet(b"", 0, [bytes(0x102)])[HEADER_LENGTH:HEADER_LENGTH + 2] == b"\x01\x02"


def header_int(session: int, sequence: int, count: int) -> int:
    """The 20 header bytes as one big-endian integer (the gateware's ``Cat``)."""
    return (session << 80) | (sequence << 16) | count


# The gateware builds the header as `header_int`; it must be `moldudp64.HEADER`.
assert HEADER.size == HEADER_LENGTH == SESSION_LENGTH + 8 + 2
assert HEADER.pack(b"ABCDEFGHIJ", 0x0102030405060708, 0x090A) == header_int(
    int.from_bytes(b"ABCDEFGHIJ", "big"), 0x0102030405060708, 0x090A).to_bytes(HEADER_LENGTH,
                                                                               "big")


def mold_beat_layout(width: int) -> data.StructLayout:
    """``width`` bytes of a MoldUDP64 packet per beat (:func:`~tickpath.protocol.feed.wide_beat`
    fields first), then the packet's ``sequence`` (of its first message; the next sequence for
    an end-of-session packet), ``count`` (messages; ``0xFFFF`` end of session), ``ingress``
    (the cycle stamp of its first message, of the ``S`` ``C`` for an end-of-session packet) on
    every beat, and ``egress``: the cycle (since reset) the beat was first offered, its
    transfer cycle unless the consumer held it back."""
    fields = {name: field.shape for name, field in wide_beat(width)}
    return data.StructLayout({**fields, "sequence": unsigned(64), "count": unsigned(16),
                              "ingress": unsigned(TIMESTAMP_WIDTH),
                              "egress": unsigned(TIMESTAMP_WIDTH)})


class MoldFramer(wiring.Component):
    """ITCH messages in, MoldUDP64 packets out (see the module docstring).

    Parameters
    ----------
    width : int
        Bytes per beat in and out (a power of two, 2 to 64).
    session : str or bytes
        Reset value of ``session`` (ASCII, at most 10 characters, padded with spaces).
    mtu : int
        Largest packet (UDP payload bytes, header included).
    max_messages : int
        Most messages in one packet.
    flush_cycles : int
        Input idle cycles after which an open packet is sent.
    first_sequence : int
        Sequence number of the first message after reset.

    Members
    -------
    i_stream : ``In(stream.Signature(itch_beat_layout(width)))``
        ITCH messages, one per packet (``first``, ``last``, ``nbytes``, ``ingress``); each must
        be as long as :data:`tickpath.protocol.itch.SPECS` says for its type.
    o_stream : ``Out(stream.Signature(mold_beat_layout(width)))``
        MoldUDP64 packets, one per packet, ``last`` on its final beat.
    session : ``In(80)``
        The 10 session bytes, big-endian (``tickpath.protocol.netfeed.session_int``).
    next_sequence : ``Out(64)``
        Sequence number the next message will get.
    packets, messages : ``Out(32)``
        Packets handed to the sender (end of session included) and messages framed (wrap).
    ended : ``Out(1)``
        The end-of-session packet has been queued.
    """

    def __init__(self, *, width=8, session="TICKPATH", mtu=1400, max_messages=MAX_MESSAGES,
                 flush_cycles=8, first_sequence=1):
        try:
            self._check(width, mtu, max_messages, flush_cycles, first_sequence)
            self._session = session_bytes(session)
        except ValueError:
            self._MustUse__silence = True            # never elaborated: no warning about it
            raise
        self._width = width
        self._mtu = mtu
        self._max_messages = max_messages
        self._flush_cycles = flush_cycles
        self._first_sequence = first_sequence
        super().__init__({
            "i_stream":      In(stream.Signature(itch_beat_layout(width))),
            "o_stream":      Out(stream.Signature(mold_beat_layout(width))),
            "session":       In(8 * SESSION_LENGTH, init=session_int(self._session)),
            "next_sequence": Out(64, init=first_sequence),
            "packets":       Out(32),
            "messages":      Out(32),
            "ended":         Out(1),
        })

    @staticmethod
    def _check(width, mtu, max_messages, flush_cycles, first_sequence):
        if width not in (2, 4, 8, 16, 32, 64):
            raise ValueError(f"width must be a power of two in 2..64, not {width}")
        longest = max(spec.length for spec in itch.SPECS.values())
        if not HEADER_LENGTH + BLOCK_PREFIX + longest <= mtu <= 0xFFFF:
            raise ValueError(f"mtu {mtu} must fit the longest ITCH message ({longest} bytes) "
                             f"and be at most 65535")
        if max_messages not in range(1, MAX_MESSAGES + 1):
            raise ValueError(f"max_messages must be in 1..{MAX_MESSAGES}, not {max_messages}")
        if flush_cycles < 1:
            raise ValueError(f"flush_cycles must be at least 1, not {flush_cycles}")
        if first_sequence not in range(1, 1 << 63):
            raise ValueError(f"first_sequence {first_sequence} is out of range")

    width = property(lambda self: self._width)
    session_init = property(lambda self: self._session)
    mtu = property(lambda self: self._mtu)
    max_messages = property(lambda self: self._max_messages)
    flush_cycles = property(lambda self: self._flush_cycles)
    first_sequence = property(lambda self: self._first_sequence)

    def elaborate(self, platform):
        m = Module()
        W = self._width
        LW = exact_log2(W)
        words = -(-self._mtu // W)                   # words of one packet buffer
        AW = max(ceil_log2(words), 1)
        inp = self.i_stream
        # input register: the beat and its message's length (from the type byte, first beat
        # only), so the packing below starts from flip-flops
        beat = Signal.like(inp.payload)
        r_valid = Signal()                           # `beat` holds a beat
        r_take = Signal()                            # ... and it is appended this cycle

        m.submodules.buffer = buffer = Memory(shape=8 * W, depth=2 << AW, init=[])
        wr, rd = buffer.write_port(), buffer.read_port()

        desc_shape = data.StructLayout({
            "buffer": 1, "owns": 1, "sequence": 64, "count": 16, "length": range(self._mtu + 1),
            "ingress": TIMESTAMP_WIDTH,
        })
        m.submodules.descs = descs = fifo.SyncFIFO(width=desc_shape.size, depth=4)
        push = desc_shape(descs.w_data)

        cycle = Signal(TIMESTAMP_WIDTH)
        m.d.sync += cycle.eq(cycle + 1)

        # --- the message's length and whether it ends the session, from its bytes ----------
        lanes = [beat.data[8 * i:8 * i + 8] for i in range(W)]
        # Selections here are AND-OR of `Mux`es (continuous assignments), not `Array`s or
        # `Switch`es: Icarus never evaluates an `always @*` whose inputs do not change after
        # time 0 (a constant-input selection stays X).
        length = Signal(8 * BLOCK_PREFIX)            # of `beat`'s message (first beat only)
        block = Signal(8 * BLOCK_PREFIX)             # its block: length + BLOCK_PREFIX
        type_in = inp.payload.data[:8]
        m.d.comb += inp.ready.eq(~r_valid | r_take)
        with m.If(inp.valid & inp.ready):
            m.d.sync += [beat.eq(inp.payload), r_valid.eq(1),
                         length.eq(_or(Mux(type_in == ord(t), spec.length, 0)
                                       for t, spec in itch.SPECS.items())),
                         block.eq(_or(Mux(type_in == ord(t), spec.length + BLOCK_PREFIX, 0)
                                      for t, spec in itch.SPECS.items()))]
        with m.Elif(r_take):
            m.d.sync += r_valid.eq(0)
        end = _templates()["SC"]
        code_at = itch.SPECS[end.type].field("event_code").offset
        mbeat = Signal(range(max(spec.length for spec in itch.SPECS.values()) // W + 2))
        is_end_type = Signal()                       # latched from the first beat
        ends_session = Signal()                      # latched at the event code's beat
        cur_beat = Mux(beat.first, 0, mbeat)
        cur_end_type = Mux(beat.first, lanes[0] == ord(end.type), is_end_type)
        cur_ends = Signal()
        m.d.comb += cur_ends.eq(ends_session | (cur_end_type & (cur_beat == code_at // W)
                                                & (lanes[code_at % W] == ord(end.event_code))))
        ends_now = Mux(r_take, cur_ends, ends_session)   # else a tail cycle

        # --- fill state ----------------------------------------------------------------------
        fb = Signal()                                # buffer being filled
        busy = Signal(2)                             # buffer handed to the sender
        fb_busy = Mux(fb, busy[1], busy[0])
        claim = Signal(2)                            # the fill side hands a buffer over
        release = Signal(2)                          # the sender is done with a buffer
        m.d.sync += busy.eq((busy | claim) & ~release)
        pos = Signal(range(self._mtu + W + 1), init=HEADER_LENGTH)   # next byte's offset
        room = Signal(range(self._mtu + 1), init=self._mtu - HEADER_LENGTH)   # mtu - pos
        count = Signal(16)                           # messages in the open packet
        seq = Signal(64, init=self._first_sequence)  # sequence of its first message
        pkt_ingress = Signal(TIMESTAMP_WIDTH)
        last_ingress = Signal(TIMESTAMP_WIDTH)
        stage = Signal(8 * W)                        # word pos // W: lanes below pos % W
        dirty = Signal()                             # stage holds bytes not yet written
        carry = Signal(8 * BLOCK_PREFIX)             # the previous beat's top two bytes
        tail = Signal(range(BLOCK_PREFIX + 1))       # carry bytes still to append
        in_msg = Signal()                            # a message is partly appended
        close_req = Signal()                         # close the packet next
        eos_req = Signal()                           # then queue an end-of-session packet
        idle = Signal(range(self._flush_cycles + 1))
        m.d.comb += self.next_sequence.eq(seq + count)

        # append `k` bytes `app` (lanes 0..k-1) at `pos`
        app = Signal(8 * W)
        k = Signal(range(W + 1))
        do_append = Signal()
        msg_done = Signal()                          # the append ends a message
        offset = pos[:LW]
        shifted = Signal(16 * W)
        keep = Cat(*[Mux(i < k, Const(0xFF, 8), Const(0, 8)) for i in range(W)])
        m.d.comb += shifted.eq((app & keep) << (offset * 8))
        merged = stage | shifted[:8 * W]
        with m.If(do_append):
            m.d.comb += [wr.addr.eq(Cat(pos[LW:LW + AW], fb)), wr.data.eq(merged), wr.en.eq(1)]
            m.d.sync += [pos.eq(pos + k), room.eq(room - k)]
            with m.If(offset + k >= W):
                m.d.sync += [stage.eq(shifted[8 * W:]), dirty.eq(offset + k > W)]
            with m.Else():
                m.d.sync += [stage.eq(merged), dirty.eq(0)]

        # the block beat for an input beat: two carried (or length) bytes, then W - 2 new ones
        length_be = Cat(*[length[8 * i:8 * i + 8] for i in reversed(range(BLOCK_PREFIX))])
        front = Mux(beat.first, length_be, carry)
        fits = block <= room
        can_take = ~close_req & ~eos_req & (tail == 0) & ~fb_busy
        take = Signal()
        accepted = r_take
        closing = Signal()
        idle_close = (idle == self._flush_cycles) & (count != 0) & ~in_msg & (tail == 0)
        size_close = r_valid & beat.first & (count != 0) & ~fits

        with m.If(close_req | (can_take & (size_close | idle_close))):
            m.d.comb += closing.eq(descs.w_rdy)
        with m.Elif(eos_req & ~close_req):
            with m.If(descs.w_rdy):
                m.d.comb += [descs.w_en.eq(1), push.owns.eq(0), push.sequence.eq(seq),
                             push.count.eq(END_OF_SESSION_COUNT), push.length.eq(HEADER_LENGTH),
                             push.ingress.eq(last_ingress)]
                m.d.sync += [eos_req.eq(0), self.ended.eq(1), self.packets.eq(self.packets + 1)]
        with m.Elif(tail != 0):
            m.d.comb += [do_append.eq(1), msg_done.eq(1)]
            m.d.sync += tail.eq(0)
        with m.Else():
            m.d.comb += take.eq(can_take)

        with m.If(closing):
            with m.If(dirty):
                m.d.comb += [wr.addr.eq(Cat(pos[LW:LW + AW], fb)), wr.data.eq(stage), wr.en.eq(1)]
            m.d.comb += [descs.w_en.eq(1), push.buffer.eq(fb), push.owns.eq(1),
                         push.sequence.eq(seq), push.count.eq(count), push.length.eq(pos),
                         push.ingress.eq(pkt_ingress)]
            m.d.comb += claim.eq(Mux(fb, 0b10, 0b01))
            m.d.sync += [fb.eq(~fb), seq.eq(seq + count), count.eq(0), pos.eq(HEADER_LENGTH),
                         room.eq(self._mtu - HEADER_LENGTH),
                         stage.eq(0), dirty.eq(0), close_req.eq(0),
                         idle.eq(0), self.packets.eq(self.packets + 1)]

        m.d.comb += r_take.eq(r_valid & take & ~(beat.first & (count != 0) & ~fits))
        # what to append, decided apart from whether to (the data path waits for no decision)
        m.d.comb += [
            app.eq(Mux(tail != 0, carry, Cat(front, beat.data[:8 * (W - BLOCK_PREFIX)]))),
            k.eq(Mux(tail != 0, tail, Mux(beat.nbytes + BLOCK_PREFIX > W, W,
                                          beat.nbytes + BLOCK_PREFIX))),
        ]
        with m.If(accepted):
            m.d.comb += do_append.eq(1)
            m.d.sync += [carry.eq(beat.data[8 * (W - BLOCK_PREFIX):]), idle.eq(0),
                         mbeat.eq(cur_beat + 1), is_end_type.eq(cur_end_type),
                         ends_session.eq(cur_ends), last_ingress.eq(beat.ingress)]
            with m.If(beat.first & (count == 0)):
                m.d.sync += pkt_ingress.eq(beat.ingress)
            with m.If(beat.last):
                with m.If(beat.nbytes + BLOCK_PREFIX > W):
                    m.d.sync += [tail.eq(beat.nbytes + BLOCK_PREFIX - W), in_msg.eq(1)]
                with m.Else():
                    m.d.comb += msg_done.eq(1)
            with m.Else():
                m.d.sync += in_msg.eq(1)
        with m.Elif(~r_valid & (count != 0) & (idle != self._flush_cycles) & ~closing):
            m.d.sync += idle.eq(idle + 1)

        with m.If(msg_done):
            m.d.sync += [count.eq(count + 1), in_msg.eq(0), ends_session.eq(0),
                         self.messages.eq(self.messages + 1)]
            with m.If((count + 1 == self._max_messages) | ends_now):
                m.d.sync += close_req.eq(1)
            with m.If(ends_now):
                m.d.sync += eos_req.eq(1)

        # --- send ---------------------------------------------------------------------------
        # Two stages: the buffer's read data (``s_*``: the word read last cycle, held while the
        # output is held, ``rd.en`` low), then the output register, where the header is put in
        # front: between the block RAM and a flip-flop there is one 2:1 mux.
        out = self.o_stream
        cur = Signal(desc_shape)                     # the packet being read
        active = Signal()                            # words of it still to read
        word = Signal(AW + 1)                        # next word to read
        s_valid = Signal()                           # rd.data holds word s_word of s_desc
        s_word = Signal(AW + 1)
        s_desc = Signal(desc_shape)
        o_desc = Signal(desc_shape)                  # the packet on the output
        o_word = Signal(AW + 1)                      # word on the output
        o_egress = Signal(TIMESTAMP_WIDTH)           # the cycle it was first offered
        last_word = (cur.length - 1) >> LW
        o_advance = ~out.valid | out.ready
        s_advance = ~s_valid | o_advance
        m.d.comb += [rd.addr.eq(Cat(word[:AW], cur.buffer)), rd.en.eq(s_advance)]
        with m.If(s_advance):
            with m.If(active):
                m.d.sync += [s_valid.eq(1), s_word.eq(word), s_desc.eq(cur), word.eq(word + 1)]
                with m.If(word == last_word):
                    m.d.sync += active.eq(0)
                    with m.If(cur.owns):
                        m.d.comb += release.eq(Mux(cur.buffer, 0b10, 0b01))
            with m.Else():
                m.d.sync += s_valid.eq(0)
                with m.If(descs.r_rdy):
                    m.d.comb += descs.r_en.eq(1)
                    m.d.sync += [cur.eq(descs.r_data), active.eq(1), word.eq(0)]

        # which lanes of the word being read carry header bytes, and those bytes, registered
        # beside the read: a lane is then one 2:1 mux after the block RAM
        header = Signal(8 * HEADER_LENGTH)
        m.d.comb += header.eq(Cat(cur.count, cur.sequence, self.session))
        assert header.shape().width == 8 * HEADER_LENGTH
        s_lanes = []
        for i in range(W):
            sel, value = Const(0), Const(0, 8)
            for w in range(-(-HEADER_LENGTH // W)):
                j = w * W + i                      # wire byte
                if j < HEADER_LENGTH:
                    hi = 8 * (HEADER_LENGTH - j)
                    sel, value = sel | (word == w), Mux(word == w, header[hi - 8:hi], value)
            s_sel, s_value = Signal(name=f"s_hdr_sel_{i}"), Signal(8, name=f"s_hdr_{i}")
            with m.If(s_advance):
                m.d.sync += [s_sel.eq(sel), s_value.eq(value)]
            s_lanes.append(Mux(s_sel, s_value, rd.data[8 * i:8 * i + 8]))
        o_data = Signal(8 * W)
        with m.If(o_advance):
            m.d.sync += [out.valid.eq(s_valid), o_data.eq(Cat(*s_lanes)), o_word.eq(s_word),
                         o_desc.eq(s_desc), o_egress.eq(cycle + 1)]
        o_last_word = (o_desc.length - 1) >> LW
        final = o_word == o_last_word
        m.d.comb += [
            out.payload.data.eq(o_data),
            out.payload.first.eq(o_word == 0),
            out.payload.last.eq(final),
            out.payload.nbytes.eq(Mux(final, o_desc.length - (o_last_word << LW), W)),
            out.payload.sequence.eq(o_desc.sequence),
            out.payload.count.eq(o_desc.count),
            out.payload.ingress.eq(o_desc.ingress),
            out.payload.egress.eq(o_egress),
        ]
        return m
