"""MoldUDP64 sequencer, 8 bytes a cycle: UDP payloads in, one ITCH message per output packet
out, realigned to lane 0, in sequence order, with gap and end-of-session events for the host.

Ref: NASDAQ MoldUDP64 1.00. The policy (what is delivered, dropped, counted and reported) is
:class:`tickpath.model.netfeed.MoldSequencerModel`'s, as for the 8-bit
:class:`tickpath.hdl.mold_sequencer.MoldSequencer`; only the datapath differs.

Messages start at any byte offset (a 20-byte header, then a 2-byte length before each
message), so one input beat can hold the end of one message, the next one's length and its
start. A message that starts in lane ``s`` is realigned by one rotation, the same for all its
beats: each output beat is lanes ``s..7`` of one input beat (kept in a carry register) and
lanes ``0..s-1`` of the next.

Pipeline: input FIFO (``FIFO_DEPTH`` beats: block RAM, a register stage, the look-ahead stage)
-> parser -> realign stage -> output queue (``OUT_DEPTH`` entries) -> output register.

* The look-ahead stage works on each beat alone, before the parser sees it: for every lane a
  block's length may start at (lanes 0 to 6, and the length split across the previous beat's
  end), it takes that length and registers what follows from it (zero, whole in the beat, the
  message's last lane and the beats to it, whether its last beat spills into two output
  beats), and where each lane stands against the beat's end.
* The parser only selects by its lane ``p`` (no adder, no comparator on a length): it takes
  one beat a cycle and, in that cycle, ends the current message and starts the next. It moves
  no bytes: it registers a command for the realign stage.
* The realign stage, a cycle later, keeps the carry (a message's bytes not yet sent), rotates
  it with the beat the parser was on, and writes the output queue. When a message's final
  beat completes two output beats (a full one, and the tail that spills past it: ``L`` bytes
  take ``ceil(L / 8)`` beats however they are aligned), both go into the output queue as one
  entry, read out one beat a cycle.

The parser stays on a beat for extra cycles only for the header's decision (two a packet: the
header's fields are compared with the sequencer's state, registered, then acted on), for a
message of up to 6 bytes held whole in one beat, a zero-length block, a message cut short
inside a beat, and a heartbeat's trailer check. ``expected`` and ``high`` follow a block's end
a cycle later. The look-ahead FIFO and the realign stage lengthen the latency from input to
output (``sim/feed_wide`` asserts throughput, not latency).

Throughput: the parser takes ``beats + 2`` cycles a packet and the output ``ceil(L / 8)`` a
message. For the ITCH mix (19 to 50 bytes) in full-size packets the output needs about 4% more
beats than the input (each message's 2 length bytes are gone, but its last beat is partly
empty), so UDP payloads back to back with no gap at all cannot all be taken at once: input
``ready`` then drops for single cycles. At the 10 GbE wire rate a payload's frame brings at
least 8 idle beats (preamble, Ethernet, IPv4 and UDP headers, FCS and inter-frame gap: 66
bytes), which covers it: input ``ready`` never drops. ``sim/feed_wide`` asserts both on the
real captures, the BX sample and a synthetic mix.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.protocol.moldudp64 import END_OF_SESSION_COUNT, HEADER_LENGTH
from tickpath.protocol.netfeed import (
    SEQ_COUNTERS,
    TIMESTAMP_WIDTH,
    SeqEvent,
    SeqEventKind,
    wide_message_beat,
    wide_udp_beat,
)

__all__ = ["MoldSequencerWide", "FIFO_DEPTH", "OUT_DEPTH"]

#: Input FIFO depth in beats (block RAM, then a 3-beat register stage and the 3-beat look-ahead
#: stage before the parser). The real captures, the BX sample and the synthetic mix at the
#: 10 GbE wire rate fill it to 112 at most (``sim/feed_wide``): a run of packets of short
#: messages needs more output beats than the wire brings beats.
FIFO_DEPTH = 256
_SKID_DEPTH = 3
_AHEAD_DEPTH = 3
#: Output queue depth in entries (an entry is one output beat, or a full beat and its
#: message's final tail). 16 are used: the parser issues a write only when the queue has room
#: for it and the realign stage's write in flight (16 entries of LUT RAM and the output
#: register, so that the queue's own ``w_rdy`` is never needed).
OUT_DEPTH = 17


def _table(m, name, shape, inputs, fn):
    """A combinational function of a few small signals, written out as a case table so that
    synthesis makes it LUTs (not carry chains): ``fn`` takes the inputs' values."""
    out = Signal(shape, name=name)
    widths = [len(x) for x in inputs]
    cases: dict[int, list[int]] = {}
    for code in range(1 << sum(widths)):
        args, rest = [], code
        for w in widths:
            args.append(rest & ((1 << w) - 1))
            rest >>= w
        cases.setdefault(int(fn(*args)), []).append(code)
    with m.Switch(Cat(*inputs)):
        for value, codes in cases.items():
            if value:
                with m.Case(*codes):
                    m.d.comb += out.eq(value)
    return out


def _first_lane(c):
    """The first lane of a message whose length field the parser takes with ``p`` = ``c``: the
    length is lanes ``c``, ``c + 1`` (``c`` up to ``W - 2``), or, with ``c = W - 1`` (in
    ``LenLo``), the previous beat's last byte and lane 0."""
    return 1 if c == 7 else c + 2


def _take_layout(width):
    """What the parser needs of one block length it may take from a beat (at one ``p``)."""
    return data.StructLayout({
        "ge":         1,                     # p >= nbytes
        "at_end":     1,                     # p == nbytes - 1
        "zero":       1,                     # the length is 0
        "fits":       1,                     # the message ends in this beat
        "length":     range(width + 1),      # ... and its length (its low bits)
        "fit_end":    range(width + 1),      # ... and the lane after it
        "avail":      range(width + 1),      # the beat's bytes from the message's first lane
        "some":       1,                     # avail != 0
        "beats_left": 14,                    # beats after this one to its last byte
        "ends":       1,                     # beats_left == 0
        "end_lane":   range(width),          # lane of its last byte in that beat
        "spill":      1,                     # that beat completes two output beats
    })


class _State(enum.Enum, shape=4):
    Hdr0   = 0    # session bytes 0-7
    Hdr1   = 1    # session bytes 8-9, sequence bytes 0-5
    Hdr2   = 2    # sequence bytes 6-7, message count (lanes 0-3); blocks from lane 4
    Decide = 3    # the header's decision, on registered comparisons (the beat is kept)
    Block  = 4    # a block's length starts at lane `p` (8: in the next beat)
    LenLo  = 5    # the length's low byte is lane 0 (its high byte ended the previous beat)
    Data   = 6    # a message's bytes from lane 0 (its earlier bytes in `carry`)
    Flush  = 7    # `carry` holds a message's final `tail` bytes: send them, then lane `p`
    Trail  = 8    # no block is left: any byte from lane `p` on is malformed
    Skip   = 9    # a dropped packet: ignore the rest
    Compare = 10  # the header's fields compared with the sequencer's state (the beat is kept)


class MoldSequencerWide(wiring.Component):
    """Sequence MoldUDP64 packets, 8 bytes a beat, into ITCH messages realigned to lane 0.

    Parameters
    ----------
    width : int
        Bytes a beat: 8 (the 10 GbE MAC's 64 bits).
    counter_width : int
        Width of the counters (they wrap).

    Members
    -------
    i_stream : ``In(stream.Signature(wide_udp_beat(width)))``
        UDP payloads (one MoldUDP64 packet each). ``ready`` is the input FIFO's: it drops only
        when the FIFO is full.
    o_stream : ``Out(stream.Signature(wide_message_beat(width)))``
        One ITCH message per packet, its type byte in lane 0, ``first``/``last`` on its first
        and final beats, ``nbytes`` valid lanes, its sequence number and its frame's ingress
        cycle. The low bits are a :func:`tickpath.protocol.feed.wide_beat` for
        ``ItchDecoder(data_width=64)``.
    o_event : ``Out(stream.Signature(SeqEvent))``
        Gap and end-of-session events, as ``MoldSequencer``'s.
    session_config, session_check, session, started, expected, high, ended :
        As ``MoldSequencer``'s.
    level : ``Out(range(FIFO_DEPTH + 1))``
        Beats in the input FIFO.
    out_level : ``Out(range(OUT_DEPTH + 1))``
        Entries in the output queue.
    packets, messages, heartbeats, end_of_session, duplicates, duplicate_messages, ahead, gaps,
    foreign, malformed, empty_messages, events_lost : ``Out(counter_width)``
        Counters, as :class:`tickpath.model.netfeed.MoldSequencerModel` counts them.
    """

    def __init__(self, *, width=8, counter_width=32):
        if width != 8:
            raise ValueError(f"width must be 8 bytes, not {width}")
        if counter_width not in range(1, 65):
            raise ValueError(f"counter_width must be in 1..64, not {counter_width}")
        self._width = width
        self._counter_width = counter_width
        members = {
            "i_stream":       In(stream.Signature(wide_udp_beat(width))),
            "o_stream":       Out(stream.Signature(wide_message_beat(width))),
            "o_event":        Out(stream.Signature(SeqEvent)),
            "session_config": In(80),
            "session_check":  In(1),
            "session":        Out(80),
            "started":        Out(1),
            "expected":       Out(64),
            "high":           Out(64),
            "ended":          Out(1),
            "level":          Out(range(FIFO_DEPTH + 1)),
            "out_level":      Out(range(OUT_DEPTH + 1)),
        }
        members.update({name: Out(counter_width) for name in SEQ_COUNTERS})
        super().__init__(members)

    @property
    def width(self):
        return self._width

    @property
    def counter_width(self):
        return self._counter_width

    def elaborate(self, platform):
        m = Module()
        W = self._width
        if HEADER_LENGTH != 2 * W + 4:
            raise AssertionError("the header is taken as two beats and four lanes")
        out = self.o_stream
        ev = self.o_event

        # --- input FIFO -------------------------------------------------------------------
        entry = data.StructLayout({"data": 8 * W, "nbytes": range(W + 1), "last": 1,
                                   "ingress": TIMESTAMP_WIDTH})
        m.submodules.fifo = big = fifo.SyncFIFOBuffered(
            width=entry.size, depth=FIFO_DEPTH - _SKID_DEPTH - _AHEAD_DEPTH)
        # the look-ahead stage reads flip-flops, not the block RAM's slow output
        m.submodules.skid = q = fifo.SyncFIFOBuffered(width=entry.size, depth=_SKID_DEPTH)
        i = self.i_stream
        m.d.comb += [
            big.w_data.eq(Cat(i.p.data, i.p.nbytes, i.p.last, i.p.ingress)),
            big.w_en.eq(i.valid),
            i.ready.eq(big.w_rdy),
            q.w_data.eq(big.r_data),
            q.w_en.eq(big.r_rdy),
            big.r_en.eq(q.w_rdy),
        ]
        # look-ahead: every block length the parser may take from this beat, with what follows
        # from it, computed before the parser sees the beat
        ahead_entry = data.StructLayout({"beat": entry,
                                         "take": data.ArrayLayout(_take_layout(W), W),
                                         "n_le": W,            # bit e: nbytes <= e
                                         "fits_held": W + 1})  # bit h: h + nbytes <= W
        m.submodules.ahead = a = fifo.SyncFIFOBuffered(width=ahead_entry.size,
                                                       depth=_AHEAD_DEPTH)
        m.d.comb += [
            a.w_data.eq(Cat(q.r_data, *self._lookahead(m, data.View(entry, q.r_data),
                                                       q.r_en))),
            a.w_en.eq(q.r_rdy),
            q.r_en.eq(a.w_rdy & q.r_rdy),
            self.level.eq(big.level + q.level + a.level),
        ]
        ahead = data.View(ahead_entry, a.r_data)
        beat = ahead.beat
        n = beat.nbytes
        last = beat.last

        def lane(j):
            return beat.data[8 * j:8 * j + 8]

        # --- parser registers ---------------------------------------------------------------
        state       = Signal(_State)
        p           = Signal(range(W + 1))   # lane of the next block (Block, Flush, Trail; Data)
        carry       = Signal(8 * W)          # the current message's bytes not yet sent
        shift       = Signal(range(W))       # the current message's first lane: its rotation
        held        = Signal(range(W + 1))   # bytes in `carry` between beats: W - shift, or 0
        beats_left  = Signal(14)             # Data: beats after this one to its last byte
        ends        = Signal()               # Data: beats_left == 0
        end_lane    = Signal(range(W))       # lane of its last byte in that beat
        tail        = Signal(range(W + 1))   # Flush: bytes in `carry`
        partial     = Signal()               # Flush: a message cut short by the packet's end
        emit        = Signal()               # the current message is delivered
        out_first   = Signal()               # the next output beat is a message's first
        dup_left    = Signal(16)             # blocks before the expected one (duplicates)
        blocks_left = Signal(16)
        dup_zero    = Signal()               # dup_left == 0
        dup_one     = Signal()               # dup_left == 1
        blocks_zero = Signal()               # blocks_left == 0
        blocks_one  = Signal()               # blocks_left == 1
        spill       = Signal()               # Data: the last beat completes two output beats
        cur         = Signal(64)             # sequence number of the current block
        sess_in     = Signal(80)
        seq_in      = Signal(64)
        count       = Signal(16)
        end_in      = Signal(64)             # seq_in + count
        control     = Signal()               # count is 0 or END_OF_SESSION_COUNT
        heartbeat   = Signal()               # count is 0
        reveal_end  = Signal(64)             # seq_in if `control`, else end_in
        bad         = Signal()               # the packet is malformed (counted at its end)
        have        = Signal()               # a session was latched
        eos_pending = Signal()
        eos_seq     = Signal(64)

        def bump(counter):
            c = getattr(self, counter)
            m.d.sync += c.eq(c + 1)

        # --- output queue: one entry a cycle, one beat or two of one message (a full beat and
        # its final tail) --------------------------------------------------------------------
        pair = data.StructLayout({
            "data0": 8 * W, "nbytes0": range(W + 1), "first0": 1, "last0": 1, "two": 1,
            "data1": 8 * W, "nbytes1": range(W + 1),
            "sequence": 64, "ingress": TIMESTAMP_WIDTH})
        m.submodules.out_fifo = oq = fifo.SyncFIFOBuffered(width=pair.size, depth=OUT_DEPTH)
        m.d.comb += self.out_level.eq(oq.level)
        head = data.View(pair, oq.r_data)
        phase = Signal()                     # the head entry's first beat is out
        take_out = Signal()
        m.d.comb += [
            take_out.eq(~out.valid | out.ready),
            oq.r_en.eq(take_out & oq.r_rdy & (phase | ~head.two)),
        ]
        with m.If(take_out):
            m.d.sync += out.valid.eq(oq.r_rdy)
            with m.If(oq.r_rdy):
                m.d.sync += [out.p.sequence.eq(head.sequence), out.p.ingress.eq(head.ingress)]
                with m.If(~phase):
                    m.d.sync += [
                        out.p.data.eq(head.data0),
                        out.p.nbytes.eq(head.nbytes0),
                        out.p.first.eq(head.first0),
                        out.p.last.eq(head.last0),
                        phase.eq(head.two),
                    ]
                with m.Else():
                    m.d.sync += [
                        out.p.data.eq(head.data1),
                        out.p.nbytes.eq(head.nbytes1),
                        out.p.first.eq(0),
                        out.p.last.eq(1),
                        phase.eq(0),
                    ]

        # The parser decides; the realign stage, a cycle later, moves the bytes: it keeps
        # `carry`, rotates it with the beat the parser was on and writes the output queue, as
        # the parser's registered command says. The parser goes on when the queue has room for
        # the write in flight and one more: `used` counts the queue's entries (its own level
        # is an adder) and its bounds are registered.
        used     = Signal(range(OUT_DEPTH + 1))
        used_next = Signal.like(used)
        room_one = Signal(init=1)            # used <= OUT_DEPTH - 2
        room_two = Signal(init=1)            # used <= OUT_DEPTH - 3
        room     = Signal()
        r_write  = Signal()                  # realign stage: the command (written below)
        m.d.comb += used_next.eq(used + oq.w_en - (oq.r_en & oq.r_rdy))
        m.d.sync += [used.eq(used_next), room_one.eq(used_next <= OUT_DEPTH - 2),
                     room_two.eq(used_next <= OUT_DEPTH - 3)]
        go       = Signal()                  # the parser acts this cycle
        pop      = Signal()                  # ... and is done with the beat
        bad_now  = Signal()                  # ... and finds the packet malformed
        m.d.comb += [
            room.eq(Mux(r_write, room_two, room_one)),
            go.eq(a.r_rdy & room),
            a.r_en.eq(go & pop),
        ]

        o_valid  = Signal()                  # the parser sends a beat (if `emit`)
        o_flush  = Signal()                  # ... of `carry` alone (else `carry` ++ the beat)
        o_nbytes = Signal(range(W + 1))
        o_last   = Signal()
        o_two    = Signal()                  # ... and its message's final tail
        o_nbytes1 = Signal(range(W + 1))
        lift     = Signal()                  # `carry` takes the beat from `first_lane` on
        keep     = Signal()                  # `carry` takes the beat from lane `shift` on
        first_lane = Signal(range(W + 1))    # the first lane of a block taken this cycle

        r_flush = Signal()
        r_lift  = Signal()
        r_keep  = Signal()
        r_shift = Signal.like(shift)
        r_first = Signal.like(first_lane)
        r_data  = Signal(8 * W)
        r_entry = Signal(pair)               # all but the data
        m.d.sync += [
            r_write.eq(go & o_valid & emit),
            r_flush.eq(o_flush),
            r_lift.eq(go & lift),
            r_keep.eq(go & keep),
            r_shift.eq(shift),
            r_first.eq(first_lane),
            r_data.eq(beat.data),
            r_entry.nbytes0.eq(o_nbytes), r_entry.first0.eq(out_first),
            r_entry.last0.eq(o_last & ~o_two), r_entry.two.eq(o_two),
            r_entry.nbytes1.eq(o_nbytes1),
            r_entry.sequence.eq(cur), r_entry.ingress.eq(beat.ingress),
        ]
        with m.If(go & o_valid):
            m.d.sync += out_first.eq(0)

        # carry ++ the beat's lanes 0..shift-1 (a full beat), and lanes shift.. as the next
        # carry: one rotation by the registered `shift`
        joined = Signal(8 * W)
        rest   = Signal(8 * W)
        with m.Switch(r_shift):
            for k in range(W):
                with m.Case(k):
                    if k == 0:
                        m.d.comb += joined.eq(r_data)
                    else:
                        m.d.comb += joined.eq(Cat(carry[:8 * (W - k)], r_data[:8 * k]))
                    m.d.comb += rest.eq(r_data[8 * k:])
        lifted = Signal(8 * W)               # the beat from lane `first_lane` on
        with m.Switch(r_first):
            for f in range(1, W + 1):
                with m.Case(f):
                    m.d.comb += lifted.eq(r_data[8 * f:])
        o_entry = Signal(pair)
        m.d.comb += [
            o_entry.eq(r_entry),
            o_entry.data0.eq(Mux(r_flush, carry, joined)),
            o_entry.data1.eq(rest),
            oq.w_data.eq(o_entry),
            oq.w_en.eq(r_write),
        ]
        with m.If(r_lift):
            m.d.sync += carry.eq(lifted)
        with m.Elif(r_keep):
            m.d.sync += carry.eq(rest)

        # --- events -------------------------------------------------------------------------
        gap_fire  = Signal()
        gap_first = Signal(64)
        gap_count = Signal(64)
        ev_free = Signal()
        m.d.comb += ev_free.eq(~ev.valid | ev.ready)
        with m.If(gap_fire):
            bump("gaps")
            with m.If(ev_free):
                m.d.sync += [
                    ev.valid.eq(1),
                    ev.p.kind.eq(SeqEventKind.Gap),
                    ev.p.session.eq(sess_in),
                    ev.p.first.eq(gap_first),
                    ev.p.count.eq(gap_count),
                ]
            with m.Else():
                bump("events_lost")
        with m.Elif(eos_pending & ev_free):
            m.d.sync += [
                ev.valid.eq(1),
                ev.p.kind.eq(SeqEventKind.EndOfSession),
                ev.p.session.eq(self.session),
                ev.p.first.eq(eos_seq),
                ev.p.count.eq(0),
                eos_pending.eq(0),
            ]
        with m.Elif(ev.ready):
            m.d.sync += ev.valid.eq(0)

        # --- block bookkeeping --------------------------------------------------------------
        no_block   = Signal()     # no block is left for the next block start
        next_emit  = Signal()     # the next block is delivered
        msg_done   = Signal()     # a message ends this cycle (its counters are bumped here)
        empty_done = Signal()     # a zero-length block ends this cycle
        delivered  = Signal()
        m.d.comb += delivered.eq(Mux(msg_done, emit, next_emit))
        # `expected`, `high` and the duplicate count follow a block's end a cycle later (the
        # next packet's header reads them at least four cycles later)
        advance    = Signal()     # a block ended last cycle...
        advance_in = Signal()     # ... and was delivered
        m.d.sync += [advance.eq(go & (msg_done | empty_done)), advance_in.eq(delivered)]
        with m.If(advance):
            with m.If(advance_in):
                m.d.sync += self.expected.eq(self.expected + 1)
                with m.If(self.expected == self.high):        # expected <= high always
                    m.d.sync += self.high.eq(self.expected + 1)
            with m.Else():
                bump("duplicate_messages")
        with m.If(go & (msg_done | empty_done)):
            m.d.sync += [
                cur.eq(cur + 1),
                blocks_left.eq(blocks_left - 1),
                blocks_zero.eq(blocks_one),
                blocks_one.eq(blocks_left == 2),
                dup_left.eq(Mux(dup_zero, 0, dup_left - 1)),
                dup_zero.eq(dup_zero | dup_one),
                dup_one.eq(dup_left == 2),
            ]
        # as seen by the next block, if it starts in the same cycle
        deciding   = Signal()     # the header's decision delivers: the first block starts
        first_emit = Signal()     # ... and is the expected one
        m.d.comb += [
            no_block.eq(~deciding & Mux(msg_done, blocks_one, blocks_zero)),
            next_emit.eq(Mux(deciding, first_emit, dup_zero | (msg_done & dup_one))),
        ]

        # A block's length L, its data from lane `first_lane`: the whole message, or its
        # first bytes into `carry`
        # small functions of `p`, `n` and the lengths, as LUTs, outside every condition; a
        # block's length and what follows from it come from the look-ahead stage
        take      = ahead.take[p[:3]]
        p_ge_n    = p[3] | take.ge             # p is at most W
        p_at_end  = ~p[3] & take.at_end
        n_le_end  = ahead.n_le.bit_select(end_lane, 1)
        fits_held = ahead.fits_held.bit_select(held, 1)
        # the length at lane `p` (lane `p` + 2 is the message's first), or in LenLo (p = W - 1)
        # the one whose high byte ended the previous beat (lane 1 is the message's first)
        m.d.comb += first_lane.eq(_table(m, "first_lane_p", range(W + 1), [p[:3]], _first_lane))
        shift_f    = _table(m, "shift_f", range(W), [p[:3]], lambda c: _first_lane(c) % W)
        held_f     = _table(m, "held_f", range(W + 1), [p[:3]], lambda c: W - _first_lane(c))

        def take_length():
            with m.If(take.zero):
                with m.If(msg_done | deciding):      # one block a cycle: take it next cycle
                    m.d.sync += state.eq(_State.Block)
                with m.Else():
                    with m.If(next_emit):
                        bump("empty_messages")
                    m.d.comb += empty_done.eq(1)
                    m.d.sync += [state.eq(_State.Block), p.eq(first_lane)]
            with m.Elif(take.fits):                  # whole in this beat (up to W - 2 bytes)
                m.d.comb += lift.eq(1)
                m.d.sync += [
                    emit.eq(next_emit),
                    out_first.eq(1),
                    tail.eq(take.length),
                    partial.eq(0),
                    p.eq(take.fit_end),
                    state.eq(_State.Flush),
                ]
            with m.Elif(last):                       # cut short by the packet's end
                m.d.comb += bad_now.eq(1)
                with m.If(take.some & next_emit):
                    m.d.comb += lift.eq(1)
                    m.d.sync += [
                        emit.eq(1),
                        out_first.eq(1),
                        tail.eq(take.avail),
                        partial.eq(1),
                        state.eq(_State.Flush),
                    ]
                with m.Else():
                    m.d.comb += pop.eq(1)
                    m.d.sync += state.eq(_State.Hdr0)
            with m.Else():                           # goes on in the next beats
                m.d.comb += [pop.eq(1), lift.eq(1)]
                m.d.sync += [
                    emit.eq(next_emit),
                    out_first.eq(1),
                    shift.eq(shift_f),
                    held.eq(held_f),
                    spill.eq(take.spill),
                    beats_left.eq(take.beats_left),
                    ends.eq(take.ends),
                    end_lane.eq(take.end_lane),
                    p.eq(take.end_lane + 1),
                    state.eq(_State.Data),
                ]

        # The next block from lane `p`, `carry` free (or being sent this cycle)
        def start_block():
            with m.If(no_block):
                m.d.comb += [bad_now.eq(~p_ge_n | ~last), pop.eq(1)]
                m.d.sync += state.eq(Mux(last, _State.Hdr0, _State.Skip))
            with m.Elif(p_ge_n):
                m.d.comb += [bad_now.eq(last), pop.eq(1)]
                m.d.sync += [state.eq(Mux(last, _State.Hdr0, _State.Block)), p.eq(0)]
            with m.Elif(p_at_end):
                m.d.comb += [bad_now.eq(last), pop.eq(1)]
                m.d.sync += [state.eq(Mux(last, _State.Hdr0, _State.LenLo)), p.eq(W - 1)]
            with m.Else():
                take_length()

        # --- parser -------------------------------------------------------------------------
        deliver = self._decide(m, go, sess_in, seq_in, count, end_in, control, heartbeat,
                               reveal_end, state, have, cur, blocks_left, dup_left,
                               eos_pending, eos_seq, gap_fire, gap_first, gap_count, first_emit,
                               bump, blocks_zero, blocks_one, dup_zero, dup_one)
        with m.If(go):
            with m.Switch(state):
                with m.Case(_State.Hdr0):
                    m.d.comb += [pop.eq(1), bad_now.eq(last)]
                    m.d.sync += sess_in[16:].eq(Cat(*(lane(j) for j in reversed(range(8)))))
                    with m.If(~last):
                        m.d.sync += state.eq(_State.Hdr1)
                with m.Case(_State.Hdr1):
                    m.d.comb += [pop.eq(1), bad_now.eq(last)]
                    m.d.sync += [
                        sess_in[:16].eq(Cat(lane(1), lane(0))),
                        seq_in[16:].eq(Cat(*(lane(j) for j in reversed(range(2, 8))))),
                        state.eq(Mux(last, _State.Hdr0, _State.Hdr2)),
                    ]
                with m.Case(_State.Hdr2):
                    seq_now = Cat(lane(1), lane(0), seq_in[16:])
                    count_now = Cat(lane(3), lane(2))
                    control_now = (count_now == 0) | (count_now == END_OF_SESSION_COUNT)
                    m.d.sync += [seq_in[:16].eq(Cat(lane(1), lane(0))),
                                 count.eq(count_now),
                                 end_in.eq(seq_now + count_now),
                                 control.eq(control_now),
                                 heartbeat.eq(count_now == 0),
                                 reveal_end.eq(Mux(control_now, seq_now, seq_now + count_now)),
                                 p.eq(HEADER_LENGTH % W)]
                    with m.If(n < 4):
                        m.d.comb += [pop.eq(1), bad_now.eq(1)]
                        m.d.sync += state.eq(Mux(last, _State.Hdr0, _State.Skip))
                    with m.Else():
                        m.d.sync += state.eq(_State.Compare)
                with m.Case(_State.Decide):
                    with m.If(deliver):
                        m.d.comb += deciding.eq(1)
                        start_block()
                with m.Case(_State.Block):
                    start_block()
                with m.Case(_State.LenLo):
                    take_length()
                with m.Case(_State.Data):
                    with m.If(last & (~ends | n_le_end)):            # cut short
                        m.d.comb += [bad_now.eq(1), o_valid.eq(1), o_last.eq(1)]
                        with m.If(fits_held):
                            m.d.comb += [pop.eq(1), o_nbytes.eq(held + n)]
                            m.d.sync += state.eq(_State.Hdr0)
                        with m.Else():
                            m.d.comb += [pop.eq(1), o_nbytes.eq(W), o_two.eq(1),
                                         o_nbytes1.eq(n - shift)]
                            m.d.sync += state.eq(_State.Hdr0)
                    with m.Elif(~ends):
                        m.d.comb += [pop.eq(1), o_valid.eq(1), o_nbytes.eq(W),
                                     keep.eq(1)]
                        m.d.sync += [beats_left.eq(beats_left - 1),
                                     ends.eq(beats_left == 1)]
                    with m.Else():       # the final beat, or a full beat and the final tail
                        m.d.comb += [o_valid.eq(1), o_last.eq(1),
                                     msg_done.eq(1)]
                        with m.If(~spill):
                            m.d.comb += o_nbytes.eq(held + end_lane + 1)
                        with m.Else():
                            m.d.comb += [o_nbytes.eq(W), o_two.eq(1),
                                         o_nbytes1.eq(end_lane + 1 - shift)]
                        with m.If(emit):
                            bump("messages")
                        start_block()
                with m.Case(_State.Flush):
                    m.d.comb += [o_valid.eq(1), o_flush.eq(1), o_nbytes.eq(tail),
                                 o_last.eq(1)]
                    with m.If(partial):
                        m.d.comb += pop.eq(1)
                        m.d.sync += state.eq(_State.Hdr0)
                    with m.Else():
                        m.d.comb += msg_done.eq(1)
                        with m.If(emit):
                            bump("messages")
                        start_block()
                with m.Case(_State.Trail):
                    m.d.comb += [bad_now.eq((p < n) | ~last), pop.eq(1)]
                    m.d.sync += state.eq(Mux(last, _State.Hdr0, _State.Skip))
                with m.Case(_State.Skip):
                    m.d.comb += pop.eq(1)
                    with m.If(last):
                        m.d.sync += state.eq(_State.Hdr0)

            with m.If(pop & last):
                bump("packets")
                m.d.sync += [bad.eq(0), state.eq(_State.Hdr0)]
                with m.If(bad | bad_now):
                    bump("malformed")
            with m.Elif(bad_now):
                m.d.sync += bad.eq(1)
        return m

    def _lookahead(self, m, beat, taken):
        """Every block length the parser may take from ``beat``, and what follows from each:
        at ``p`` = ``c`` for ``c`` up to ``W - 2`` (lanes ``c``, ``c + 1``), and at ``W - 1``
        in ``LenLo`` (the previous beat's last byte and lane 0); with where each ``p`` stands
        against the beat's end, and ``nbytes`` against every ``end_lane`` and ``held``.
        ``taken``: the beat moves on (the next one's ``LenLo`` length takes its last byte)."""
        W = self._width
        n = beat.nbytes
        lanes = [beat.data[8 * j:8 * j + 8] for j in range(W)]
        hi_prev = Signal(8)                      # the previous beat's last byte
        with m.If(taken):
            m.d.sync += hi_prev.eq(beat.data.word_select((n - 1)[:3], 8))
        takes = Signal(data.ArrayLayout(_take_layout(W), W))
        for c in range(W):
            f = _first_lane(c)
            length = Cat(lanes[0], hi_prev) if c == W - 1 else Cat(lanes[c + 1], lanes[c])
            t = takes[c]
            avail = _table(m, f"avail{c}", range(W + 1), [n], lambda b, f=f: max(0, b - f))
            end = Signal(17, name=f"end{c}")     # its last byte, from the next beat's lane 0
            m.d.comb += [
                t.ge.eq(_table(m, f"ge{c}", 1, [n], lambda b, c=c: c >= b)),
                t.at_end.eq(_table(m, f"at_end{c}", 1, [n], lambda b, c=c: c == b - 1)),
                end.eq(f + length - (W + 1)),
                t.zero.eq(length == 0),
                t.fits.eq((length[4:] == 0) & _table(m, f"fits{c}", 1, [length[:4], avail],
                                                     lambda a, b: a <= b)),
                t.length.eq(length[:4]),
                t.fit_end.eq(f + length[:4]),
                t.avail.eq(avail),
                t.some.eq(avail != 0),
                t.beats_left.eq(end[3:]),
                t.ends.eq(end[3:] == 0),
                t.end_lane.eq(end[:3]),
                t.spill.eq((end[:3] >= f % W) if f % W else 0),
            ]
        n_le = Signal(W)
        fits_held = Signal(W + 1)
        m.d.comb += [n_le[e].eq(_table(m, f"n_le{e}", 1, [n], lambda b, e=e: b <= e))
                     for e in range(W)]
        m.d.comb += [fits_held[h].eq(_table(m, f"fits_held{h}", 1, [n], lambda b, h=h: h + b <= W))
                     for h in range(W + 1)]
        return takes, n_le, fits_held

    def _decide(self, m, go, sess_in, seq_in, count, end, control, heartbeat, reveal_end,
                state, have, cur, blocks_left, dup_left, eos_pending, eos_seq, gap_fire,
                gap_first, gap_count, first_emit, bump, blocks_zero, blocks_one, dup_zero,
                dup_one):
        """The header's decisions in two cycles: ``Compare`` registers every comparison of the
        header's fields with the sequencer's state; ``Decide`` acts on them. Returns whether
        the packet is delivered (its first block then starts in the ``Decide`` cycle)."""
        exp = Signal(64)
        hi  = Signal(64)        # = max(high, expected): expected <= high always
        m.d.comb += [
            exp.eq(Mux(self.started, self.expected, seq_in)),
            hi.eq(Mux(self.started, self.high, seq_in)),
        ]
        foreign_r   = Signal()
        control_r   = Signal()
        ahead_r     = Signal()
        stale_r     = Signal()              # ends at or before the expected sequence
        reveal_r    = Signal()              # raises the end of what is known to exist
        gap_count_r = Signal(64)
        dup_r       = Signal(16)
        first_r     = Signal()
        dup_one_r   = Signal()
        count_one_r = Signal()
        with m.If(go & (state == _State.Compare)):
            session_now = Mux(self.session_check, self.session_config, self.session)
            m.d.sync += [
                foreign_r.eq((have | self.session_check) & (sess_in != session_now)),
                control_r.eq(control),
                ahead_r.eq(seq_in > exp),
                stale_r.eq(end <= exp),
                reveal_r.eq(reveal_end > hi),
                gap_count_r.eq(reveal_end - hi),
                dup_r.eq((exp - seq_in)[:16]),
                first_r.eq(exp[:16] == seq_in[:16]),
                dup_one_r.eq((exp - seq_in)[:16] == 1),
                count_one_r.eq(count == 1),
                state.eq(_State.Decide),
            ]

        def reveal():
            with m.If(reveal_r):
                m.d.comb += [gap_fire.eq(1), gap_first.eq(hi), gap_count.eq(gap_count_r)]
                m.d.sync += self.high.eq(reveal_end)

        deliver = Signal()
        with m.If(go & (state == _State.Decide)):
            with m.If(foreign_r):
                bump("foreign")
                m.d.sync += state.eq(_State.Skip)
            with m.Else():
                m.d.sync += [
                    have.eq(1),
                    self.session.eq(Mux(self.session_check, self.session_config,
                                        Mux(have, self.session, sess_in))),
                    self.started.eq(1),
                    self.expected.eq(exp),
                    self.high.eq(hi),
                ]
                with m.If(control_r):
                    with m.If(heartbeat):
                        bump("heartbeats")
                    with m.Else():
                        bump("end_of_session")
                        with m.If(~self.ended):
                            m.d.sync += [self.ended.eq(1), eos_pending.eq(1),
                                         eos_seq.eq(seq_in)]
                    reveal()
                    m.d.sync += state.eq(_State.Trail)
                with m.Elif(ahead_r):
                    bump("ahead")
                    reveal()
                    m.d.sync += state.eq(_State.Skip)
                with m.Elif(stale_r):
                    bump("duplicates")
                    m.d.sync += state.eq(_State.Skip)
                with m.Else():     # seq_in <= exp < end: fewer than 2**16 duplicates first
                    m.d.comb += [deliver.eq(1), first_emit.eq(first_r)]
                    m.d.sync += [cur.eq(seq_in), blocks_left.eq(count), dup_left.eq(dup_r),
                                 blocks_zero.eq(0), blocks_one.eq(count_one_r),
                                 dup_zero.eq(first_r), dup_one.eq(dup_one_r),
                                 state.eq(_State.Block)]
        return deliver
