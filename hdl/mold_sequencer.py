"""MoldUDP64 sequencer, 8 bits a cycle: UDP payloads in, one ITCH message per output packet out,
in sequence order, with gap and end-of-session events for the host.

Ref: NASDAQ MoldUDP64 1.00. The policy (what is delivered, dropped, counted and reported) is
that of :class:`tickpath.model.netfeed.MoldSequencerModel`, the golden model; in short, the
gateware holds no future packets: a packet beyond the next expected sequence is dropped and
each newly found missing range is reported once, as a Gap event, for the host to re-request;
the retransmissions then arrive as ordinary packets and are delivered in order.

A/B arbitration comes for free when both feeds' groups are entries of one ``NetRx`` filter:
whichever copy of a packet arrives first is delivered, the other is a duplicate.

Timing (125 MHz on ECP5): no 64-bit add or compare stands in front of a decision. A header's
sequence number is complete two bytes before its message count ends it, so whatever does not
depend on the count is worked out meanwhile by a free-running look-ahead; the count's last byte
meets only 18-bit comparators, registered, and the packet's fate is decided from flags the
cycle after the header (``dec``), while the next byte is taken. Within a packet a block is
delivered exactly when the blocks before it have used up ``expected - sequence`` (a 16-bit
countdown), so a block needs no 64-bit equality either; the delivered message's sequence number
is ``expected``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.protocol.moldudp64 import END_OF_SESSION_COUNT, HEADER_LENGTH
from tickpath.protocol.netfeed import SEQ_COUNTERS, MessageBeat, SeqEvent, SeqEventKind, UdpBeat

__all__ = ["MoldSequencer"]

_SESSION_BYTES = 10               # header: session at 0..9, sequence 10..17, count 18..19
_COUNT_AT = 18
assert HEADER_LENGTH == _COUNT_AT + 2 and END_OF_SESSION_COUNT == 0xFFFF


class _State(enum.Enum, shape=3):
    Hdr   = 0
    Dec   = 1     # the cycle after a header's last byte: its packet's fate is being decided
    LenHi = 2
    LenLo = 3
    Data  = 4
    Trail = 5     # after the last block (or a heartbeat header): any byte is malformed
    Skip  = 6     # a dropped packet: ignore the rest


class MoldSequencer(wiring.Component):
    """Sequence MoldUDP64 packets into ITCH messages.

    One input byte a cycle while the output's skid register is empty (``i_stream.ready`` is
    a flip-flop: a beat produced while ``o_stream`` is held waits in the skid register, and
    input stops until it has moved on). A message byte leaves the cycle after it arrives.
    A header is acted on (state, counters) the cycle after its last byte, and its Gap event is
    loaded the cycle after that.
    Events are never waited for: a Gap event found while ``o_event`` still holds one that has
    not been taken is counted in ``events_lost`` (the end-of-session event waits instead).

    Parameters
    ----------
    counter_width : int
        Width of the counters (they wrap).

    Members
    -------
    i_stream : ``In(stream.Signature(UdpBeat))``
        UDP payloads (one MoldUDP64 packet each), e.g. from ``NetRx``.
    o_stream : ``Out(stream.Signature(MessageBeat))``
        One ITCH message per packet, ``last`` on its final byte, with its sequence number and
        the ingress cycle of its frame. The low bits (``data``, ``last``) are a
        :data:`tickpath.protocol.feed.ByteBeat` for ``ItchDecoder``.
    o_event : ``Out(stream.Signature(SeqEvent))``
        Gap and end-of-session events.
    session_config : ``In(80)``, session_check : ``In(1)``
        With ``session_check`` high, only packets of session ``session_config`` (the 10 wire
        bytes, big-endian) are taken; otherwise the first packet's session is latched. Both are
        sampled two cycles before a header is acted on.
    session : ``Out(80)``, started : ``Out(1)``
        The session followed, and whether a packet has set ``expected``.
    expected : ``Out(64)``
        Next sequence number to deliver.
    high : ``Out(64)``
        End of the sequences known to exist (``high - expected`` are missing); registered, so a
        cycle behind ``expected``.
    ended : ``Out(1)``
        An end-of-session packet has been seen.
    packets, messages, heartbeats, end_of_session, duplicates, duplicate_messages, ahead, gaps,
    foreign, malformed, empty_messages, events_lost : ``Out(counter_width)``
        Counters, as :class:`tickpath.model.netfeed.MoldSequencerModel` counts them.
    """

    def __init__(self, *, counter_width=32):
        if counter_width not in range(1, 65):
            raise ValueError(f"counter_width must be in 1..64, not {counter_width}")
        self._counter_width = counter_width
        members = {
            "i_stream":       In(stream.Signature(UdpBeat)),
            "o_stream":       Out(stream.Signature(MessageBeat)),
            "o_event":        Out(stream.Signature(SeqEvent)),
            "session_config": In(80),
            "session_check":  In(1),
            "session":        Out(80),
            "started":        Out(1),
            "expected":       Out(64),
            "high":           Out(64),
            "ended":          Out(1),
        }
        members.update({name: Out(counter_width) for name in SEQ_COUNTERS})
        super().__init__(members)

    @property
    def counter_width(self):
        return self._counter_width

    def elaborate(self, platform):
        m = Module()
        beat = self.i_stream.p
        byte = beat.data
        out = self.o_stream
        ev = self.o_event
        started = self.started
        expected = self.expected

        # The output has a skid register behind it, so `ready` is a flip-flop (not the next
        # block's `ready`, which would otherwise reach every enable here through `take`).
        skid = Signal(MessageBeat)
        skid_valid = Signal()
        m.d.comb += self.i_stream.ready.eq(~skid_valid)
        take = Signal()
        m.d.comb += take.eq(self.i_stream.valid & self.i_stream.ready)

        def bump(counter, by=1):
            c = getattr(self, counter)
            m.d.sync += c.eq(c + by)

        state = Signal(_State)

        # --- header bytes -------------------------------------------------------------------
        off      = Signal(range(HEADER_LENGTH + 1))
        at_sess  = Signal(init=1)         # off < 10 (decodes of `off`, registered beside it)
        seq_sel  = Signal(8)              # off == 17 - k: the byte is seq_in's byte k
        at_c_hi  = Signal()               # off == 18
        at_c_lo  = Signal()               # off == 19: the header's last byte
        sess_in  = Signal(80)
        seq_in   = Signal(64)
        count_hi = Signal(8)
        c_hi_00  = Signal()
        c_hi_ff  = Signal()
        off_next = Signal.like(off)
        hdr      = Signal()               # a header byte is taken
        m.d.comb += [
            off_next.eq(Mux(beat.last, 0, Mux(state == _State.Hdr, off + 1, off))),
            hdr.eq(take & (state == _State.Hdr)),
        ]
        with m.If(take):
            m.d.sync += [
                off.eq(off_next),
                at_sess.eq(off_next < _SESSION_BYTES),
                seq_sel.eq(Cat(off_next == _COUNT_AT - 1 - k for k in range(8))),
                at_c_hi.eq(off_next == _COUNT_AT),
                at_c_lo.eq(off_next == _COUNT_AT + 1),
            ]
        with m.If(hdr & at_sess):
            m.d.sync += sess_in.eq(Cat(byte, sess_in[:72]))
        # by position, not shifted in: its high 48 bits are final once its sixth byte is in
        for k in range(8):
            with m.If(hdr & seq_sel[k]):
                m.d.sync += seq_in[8 * k:8 * k + 8].eq(byte)
        with m.If(hdr & at_c_hi):
            m.d.sync += [count_hi.eq(byte), c_hi_00.eq(byte == 0x00), c_hi_ff.eq(byte == 0xFF)]
        seq_lo, seq_hi = seq_in[:16], seq_in[16:]

        # --- look-ahead ---------------------------------------------------------------------
        # Free-running. `seq_in` is complete at least 2 cycles before a header's last byte is
        # taken (3 before `dec`), its high 48 bits 4 cycles before, `sess_in` long before;
        # `expected`, `high_raw`, `started`, `have` and `session` last changed in an earlier
        # packet. Stage 1 is therefore valid when the last byte is taken, stage 2 at `dec`, and
        # the two stages from the high bits (`hi_*`) when the last byte is taken.
        have     = Signal()               # a session was latched
        high_raw = Signal(64)             # high is max(high_raw, expected): a delivered block
        high = self.high                  # moves only `expected`
        m.d.sync += high.eq(Mux(high_raw > expected, high_raw, expected))
        # exp: the sequence a header is judged by; known: max(high, exp)
        exp_lo, known_lo = Mux(started, expected[:16], seq_lo), Mux(started, high[:16], seq_lo)
        exp_r      = Signal(64)           # stage 1
        known_r    = Signal(64)
        ahead_r    = Signal()             # seq > exp (stage 2)
        hb_gap_r   = Signal()             # seq > known: a heartbeat reveals a gap (stage 2)
        hb_count_r = Signal(64)           # seq - known, its length (stage 2)
        t_exp0     = Signal(signed(18))   # exp_lo - seq_lo: end_lo <= exp_lo iff count <= this
        t_exp1     = Signal(17)           # ... + 2**16 (when seq_lo + count carries)
        t_known0   = Signal(signed(18))
        t_known1   = Signal(17)
        sess_eq    = Signal(_SESSION_BYTES)
        sess_known = Signal()
        session_now = Mux(self.session_check, self.session_config, self.session)
        m.d.sync += [
            exp_r.eq(Mux(started, expected, seq_in)),
            known_r.eq(Mux(started, high, seq_in)),
            t_exp0.eq(exp_lo - seq_lo),
            t_exp1.eq(Cat(exp_lo, Const(1, 1)) - seq_lo),
            t_known0.eq(known_lo - seq_lo),
            t_known1.eq(Cat(known_lo, Const(1, 1)) - seq_lo),
            sess_eq.eq(Cat(sess_in[8 * i:8 * i + 8] == session_now[8 * i:8 * i + 8]
                           for i in range(_SESSION_BYTES))),
            sess_known.eq(have | self.session_check),
        ]
        # seq against expected and high, and seq - high, in 32-bit halves over both stages (only
        # `dec` reads them)
        a_hi_gt, a_hi_eq, a_lo_gt = (Signal(name=n) for n in ("a_hi_gt", "a_hi_eq", "a_lo_gt"))
        g_hi_gt, g_hi_eq, g_lo_gt = (Signal(name=n) for n in ("g_hi_gt", "g_hi_eq", "g_lo_gt"))
        d_lo = Signal(33)                 # seq[:32] - high[:32], borrow on top
        m.d.sync += [
            a_hi_gt.eq(seq_in[32:] > expected[32:]), a_hi_eq.eq(seq_in[32:] == expected[32:]),
            a_lo_gt.eq(seq_in[:32] > expected[:32]),
            g_hi_gt.eq(seq_in[32:] > high[32:]), g_hi_eq.eq(seq_in[32:] == high[32:]),
            g_lo_gt.eq(seq_in[:32] > high[:32]),
            d_lo.eq(seq_in[:32] - high[:32]),
            ahead_r.eq(started & (a_hi_gt | (a_hi_eq & a_lo_gt))),
            hb_gap_r.eq(started & (g_hi_gt | (g_hi_eq & g_lo_gt))),
            hb_count_r.eq(Cat(d_lo[:32], seq_in[32:] - high[32:] - d_lo[32])),
        ]
        # stage 2
        foreign_r = Signal()
        dup_zero0 = Signal()              # exp == seq (when the packet is taken)
        m.d.sync += [
            foreign_r.eq(sess_known & ~sess_eq.all()),
            dup_zero0.eq(t_exp0[:16] == 0),
        ]
        # the end's high part (seq_hi, or seq_hi + 1 on a carry) against exp's and known's
        seq_hi1  = Signal(48)             # seq_hi + 1, wrapping
        exp_hi   = Signal(48)
        known_hi = Signal(48)
        m.d.sync += [
            seq_hi1.eq(seq_hi + 1),
            exp_hi.eq(Mux(started, expected[16:], seq_hi)),
            known_hi.eq(Mux(started, high[16:], seq_hi)),
        ]
        hi0_lt_exp, hi0_eq_exp, hi1_lt_exp, hi1_eq_exp = (Signal(name=n) for n in (
            "hi0_lt_exp", "hi0_eq_exp", "hi1_lt_exp", "hi1_eq_exp"))
        hi0_lt_kn, hi0_eq_kn, hi1_lt_kn, hi1_eq_kn = (Signal(name=n) for n in (
            "hi0_lt_kn", "hi0_eq_kn", "hi1_lt_kn", "hi1_eq_kn"))
        m.d.sync += [
            hi0_lt_exp.eq(seq_hi < exp_hi), hi0_eq_exp.eq(seq_hi == exp_hi),
            hi1_lt_exp.eq(seq_hi1 < exp_hi), hi1_eq_exp.eq(seq_hi1 == exp_hi),
            hi0_lt_kn.eq(seq_hi < known_hi), hi0_eq_kn.eq(seq_hi == known_hi),
            hi1_lt_kn.eq(seq_hi1 < known_hi), hi1_eq_kn.eq(seq_hi1 == known_hi),
        ]

        # --- the header's last byte: the count meets registered thresholds ------------------
        dec       = Signal()              # the cycle after a header's last byte
        hdr_last  = Signal()              # ... which ended its packet
        count_r   = Signal(16)
        bl_one0   = Signal()              # count == 1
        cnt_0     = Signal()              # count == 0: heartbeat
        cnt_eos   = Signal()              # count == 0xFFFF: end of session
        heartbeat = Signal()              # count 0 or 0xFFFF
        end_r     = Signal(64)            # seq + count, wrapping
        end_le_exp = Signal()             # end <= exp: nothing new (a duplicate)
        end_gt_known = Signal()           # end > known: the packet reveals a gap
        count = Cat(byte, count_hi)
        end_lo = Signal(17)               # seq_lo + count, its carry on top
        m.d.comb += end_lo.eq(seq_lo + count)
        # end_lo <= X_lo iff count <= X_lo - seq_lo (+ 2**16 on a carry)
        le_exp = Mux(end_lo[16], hi1_lt_exp | (hi1_eq_exp & (count <= t_exp1)),
                     hi0_lt_exp | (hi0_eq_exp & (count <= t_exp0)))
        le_kn = Mux(end_lo[16], hi1_lt_kn | (hi1_eq_kn & (count <= t_known1)),
                    hi0_lt_kn | (hi0_eq_kn & (count <= t_known0)))
        m.d.sync += dec.eq(hdr & at_c_lo)
        with m.If(hdr & at_c_lo):
            m.d.sync += [
                hdr_last.eq(beat.last),
                count_r.eq(count),
                bl_one0.eq(c_hi_00 & (byte == 1)),
                cnt_0.eq(c_hi_00 & (byte == 0x00)),
                cnt_eos.eq(c_hi_ff & (byte == 0xFF)),
                heartbeat.eq((c_hi_00 & (byte == 0x00)) | (c_hi_ff & (byte == 0xFF))),
                end_r.eq(Cat(end_lo[:16], Mux(end_lo[16], seq_hi1, seq_hi))),
                end_le_exp.eq(le_exp),
                end_gt_known.eq(~le_kn),
            ]

        # --- the decision (at `dec`) --------------------------------------------------------
        skip      = Signal()              # the packet's remaining bytes are ignored
        trail     = Signal()              # ... are malformed
        accept    = Signal()              # ... are blocks
        gap_fire  = Signal()
        m.d.comb += [
            skip.eq(foreign_r | (~heartbeat & (ahead_r | end_le_exp))),
            trail.eq(~foreign_r & heartbeat),
            accept.eq(~foreign_r & ~heartbeat & ~ahead_r & ~end_le_exp),
            gap_fire.eq(dec & ~foreign_r & Mux(heartbeat, hb_gap_r, ahead_r & end_gt_known)),
        ]
        blocks_left = Signal(16)
        bl_one      = Signal()            # blocks_left == 1
        dup_left    = Signal(16)          # blocks still to skip as duplicates
        dup_zero    = Signal()            # dup_left == 0: this block is delivered
        ended       = self.ended
        eos_pending = Signal()
        eos_seq     = Signal(64)
        malformed_dec = Signal()          # a header-only packet is short of its blocks
        m.d.comb += malformed_dec.eq(dec & accept & hdr_last)
        with m.If(dec):
            with m.If(foreign_r):
                bump("foreign")
            with m.Else():
                m.d.sync += [
                    have.eq(1),
                    self.session.eq(Mux(self.session_check, self.session_config,
                                        Mux(have, self.session, sess_in))),
                    started.eq(1),
                    expected.eq(exp_r),
                ]
                with m.If(gap_fire):
                    m.d.sync += high_raw.eq(Mux(heartbeat, seq_in, end_r))
                with m.Elif(~started):
                    m.d.sync += high_raw.eq(seq_in)
                with m.If(cnt_0):
                    bump("heartbeats")
                with m.If(cnt_eos):
                    bump("end_of_session")
                    with m.If(~ended):
                        m.d.sync += [ended.eq(1), eos_pending.eq(1), eos_seq.eq(seq_in)]
                with m.If(~heartbeat & ahead_r):
                    bump("ahead")
                with m.If(~heartbeat & ~ahead_r & end_le_exp):
                    bump("duplicates")
                with m.If(accept):
                    m.d.sync += [
                        blocks_left.eq(count_r), bl_one.eq(bl_one0),
                        dup_left.eq(t_exp0[:16]), dup_zero.eq(dup_zero0),
                    ]

        # --- events -------------------------------------------------------------------------
        # A gap is reported the cycle after `dec`, from the look-ahead's values, which still
        # hold; the session is the one just followed (the packet's: it is not foreign).
        ev_free = Signal()
        gap_go  = Signal()
        gap_hb  = Signal()                # ... revealed by a heartbeat
        m.d.comb += ev_free.eq(~ev.valid | ev.ready)
        m.d.sync += [gap_go.eq(gap_fire), gap_hb.eq(heartbeat)]
        with m.If(gap_go):
            bump("gaps")
            with m.If(ev_free):
                m.d.sync += [
                    ev.valid.eq(1),
                    ev.p.kind.eq(SeqEventKind.Gap),
                    ev.p.session.eq(self.session),
                    ev.p.first.eq(known_r),
                    ev.p.count.eq(Mux(gap_hb, hb_count_r, end_r - known_r)),
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

        # --- blocks -------------------------------------------------------------------------
        blen_hi   = Signal(8)
        blen_hi_0 = Signal()              # blen_hi == 0
        blen      = Signal(16)
        blen_one  = Signal()              # blen == 1: this Data byte is the message's last
        emit      = Signal()
        zero_len  = Signal()              # in LenLo: the block is empty
        m.d.comb += zero_len.eq(blen_hi_0 & (byte == 0))
        with m.If(take & ((state == _State.Dec) | (state == _State.LenHi))):
            m.d.sync += [blen_hi.eq(byte), blen_hi_0.eq(byte == 0)]
        with m.If(take & (state == _State.LenLo)):
            m.d.sync += [blen.eq(Cat(byte, blen_hi)), blen_one.eq(blen_hi_0 & (byte == 1)),
                         emit.eq(dup_zero)]
        with m.If(take & (state == _State.Data)):
            m.d.sync += [blen.eq(blen - 1), blen_one.eq(blen == 2)]

        block_done = Signal()             # the current block is complete with this byte
        delivered  = Signal()
        m.d.comb += [
            block_done.eq(take & (((state == _State.LenLo) & zero_len)
                                  | ((state == _State.Data) & blen_one))),
            delivered.eq(Mux(state == _State.Data, emit, dup_zero)),
        ]
        with m.If(block_done):
            with m.If(delivered):
                m.d.sync += expected.eq(expected + 1)
                with m.If(state == _State.Data):
                    bump("messages")
                with m.Else():
                    bump("empty_messages")
            with m.Else():
                bump("duplicate_messages")
                m.d.sync += [dup_left.eq(dup_left - 1), dup_zero.eq(dup_left == 1)]
            m.d.sync += [blocks_left.eq(blocks_left - 1), bl_one.eq(blocks_left == 2)]

        # --- output register ----------------------------------------------------------------
        emit_now = Signal()
        m.d.comb += emit_now.eq((state == _State.Data) & emit)
        new_beat = Signal(MessageBeat)
        m.d.comb += [
            new_beat.data.eq(byte),
            new_beat.last.eq(blen_one | beat.last),
            new_beat.sequence.eq(expected),
            new_beat.ingress.eq(beat.ingress),
        ]
        with m.If(~out.valid | out.ready):
            with m.If(skid_valid):
                m.d.sync += [out.valid.eq(1), out.p.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out.valid.eq(take & emit_now), out.p.eq(new_beat)]
        with m.Elif(take & emit_now):           # the output is held: the beat waits beside it
            m.d.sync += [skid_valid.eq(1), skid.eq(new_beat)]

        # --- packet state -------------------------------------------------------------------
        next_state = Signal(_State)       # after a byte that does not end the packet
        malformed_end = Signal()          # if this byte ends the packet, it is malformed
        after_block = Mux(bl_one, _State.Trail, _State.LenHi)
        with m.Switch(state):
            with m.Case(_State.Hdr):
                m.d.comb += [next_state.eq(Mux(at_c_lo, _State.Dec, _State.Hdr)),
                             malformed_end.eq(~at_c_lo)]   # the last header byte: at `dec`
            with m.Case(_State.Dec):
                m.d.comb += [next_state.eq(Mux(skip, _State.Skip,
                                               Mux(trail, _State.Trail, _State.LenLo))),
                             malformed_end.eq(~skip)]
            with m.Case(_State.LenHi):
                m.d.comb += [next_state.eq(_State.LenLo), malformed_end.eq(1)]
            with m.Case(_State.LenLo):
                m.d.comb += [next_state.eq(Mux(zero_len, after_block, _State.Data)),
                             malformed_end.eq(~zero_len | ~bl_one)]
            with m.Case(_State.Data):
                m.d.comb += [next_state.eq(Mux(blen_one, after_block, _State.Data)),
                             malformed_end.eq(~blen_one | ~bl_one)]
            with m.Case(_State.Trail):
                m.d.comb += [next_state.eq(_State.Trail), malformed_end.eq(1)]
            with m.Default():
                m.d.comb += [next_state.eq(_State.Skip), malformed_end.eq(0)]

        # counted a cycle late, so that no decision stands in front of the counter's adder
        malformed_take = Signal()
        malformed_late = Signal(2)
        m.d.comb += malformed_take.eq(take & beat.last & malformed_end)
        m.d.sync += malformed_late.eq(malformed_take + malformed_dec)
        bump("malformed", malformed_late)
        with m.If(take & beat.last):
            bump("packets")
            m.d.sync += state.eq(_State.Hdr)
        with m.Elif(take):
            m.d.sync += state.eq(next_state)
        with m.Elif(state == _State.Dec):
            m.d.sync += state.eq(Mux(skip, _State.Skip, Mux(trail, _State.Trail, _State.LenHi)))
        return m
