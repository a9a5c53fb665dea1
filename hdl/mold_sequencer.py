"""MoldUDP64 sequencer, 8 bits a cycle: UDP payloads in, one ITCH message per output packet out,
in sequence order, with gap and end-of-session events for the host.

Ref: NASDAQ MoldUDP64 1.00. The policy (what is delivered, dropped, counted and reported) is
that of :class:`tickpath.model.netfeed.MoldSequencerModel`, the golden model; in short, the
gateware holds no future packets: a packet beyond the next expected sequence is dropped and
each newly found missing range is reported once, as a Gap event, for the host to re-request;
the retransmissions then arrive as ordinary packets and are delivered in order.

A/B arbitration comes for free when both feeds' groups are entries of one ``NetRx`` filter:
whichever copy of a packet arrives first is delivered, the other is a duplicate.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.protocol.moldudp64 import END_OF_SESSION_COUNT, HEADER_LENGTH
from tickpath.protocol.netfeed import SEQ_COUNTERS, MessageBeat, SeqEvent, SeqEventKind, UdpBeat

__all__ = ["MoldSequencer"]


class _State(enum.Enum, shape=3):
    Hdr   = 0
    LenHi = 1
    LenLo = 2
    Data  = 3
    Trail = 4     # after the last block (or a heartbeat header): any byte is malformed
    Skip  = 5     # a dropped packet: ignore the rest


class MoldSequencer(wiring.Component):
    """Sequence MoldUDP64 packets into ITCH messages.

    One input byte a cycle while the output can take a beat (``i_stream.ready`` is
    ``~o_stream.valid | o_stream.ready``). A message byte leaves the cycle after it arrives.
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
        bytes, big-endian) are taken; otherwise the first packet's session is latched.
    session : ``Out(80)``, started : ``Out(1)``
        The session followed, and whether a packet has set ``expected``.
    expected : ``Out(64)``
        Next sequence number to deliver.
    high : ``Out(64)``
        End of the sequences known to exist (``high - expected`` are missing).
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

        m.d.comb += self.i_stream.ready.eq(~out.valid | out.ready)
        take = Signal()
        m.d.comb += take.eq(self.i_stream.valid & self.i_stream.ready)

        state       = Signal(_State)
        off         = Signal(5)
        sess_in     = Signal(80)
        seq_in      = Signal(64)
        count_hi    = Signal(8)
        cur         = Signal(64)
        blocks_left = Signal(16)
        blen_hi     = Signal(8)
        blen        = Signal(16)
        emit        = Signal()
        have        = Signal()            # a session was latched
        eos_pending = Signal()
        eos_seq     = Signal(64)
        next_state  = Signal(_State)
        malformed_end = Signal()          # this last byte ends a malformed packet
        m.d.comb += next_state.eq(state)

        def bump(counter):
            c = getattr(self, counter)
            m.d.sync += c.eq(c + 1)

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

        # --- output register ----------------------------------------------------------------
        emit_now = Signal()
        m.d.comb += emit_now.eq((state == _State.Data) & emit)     # not in a Switch: see NetRx
        with m.If(take & emit_now):
            m.d.sync += [
                out.valid.eq(1),
                out.p.data.eq(byte),
                out.p.last.eq((blen == 1) | beat.last),
                out.p.sequence.eq(cur),
                out.p.ingress.eq(beat.ingress),
            ]
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)

        # --- parser -------------------------------------------------------------------------
        def block_done(delivered):
            """The current block is complete with this byte."""
            with m.If(delivered):
                m.d.sync += self.expected.eq(self.expected + 1)
                with m.If(self.expected + 1 > self.high):
                    m.d.sync += self.high.eq(self.expected + 1)
            with m.Else():
                bump("duplicate_messages")
            m.d.sync += [cur.eq(cur + 1), blocks_left.eq(blocks_left - 1)]
            m.d.comb += next_state.eq(Mux(blocks_left == 1, _State.Trail, _State.LenHi))
            with m.If(beat.last & (blocks_left != 1)):
                m.d.comb += malformed_end.eq(1)

        with m.If(take):
            with m.Switch(state):
                with m.Case(_State.Hdr):
                    m.d.sync += off.eq(off + 1)
                    with m.If(off < 10):
                        m.d.sync += sess_in.eq(Cat(byte, sess_in[:72]))
                    with m.Elif(off < 18):
                        m.d.sync += seq_in.eq(Cat(byte, seq_in[:56]))
                    with m.Elif(off == 18):
                        m.d.sync += count_hi.eq(byte)
                    with m.If(beat.last & (off != HEADER_LENGTH - 1)):
                        m.d.comb += malformed_end.eq(1)
                    with m.If(off == HEADER_LENGTH - 1):
                        self._header(m, Cat(byte, count_hi), sess_in, seq_in, next_state,
                                     malformed_end, gap_fire, gap_first, gap_count, bump,
                                     have, cur, blocks_left, eos_pending, eos_seq, beat)
                with m.Case(_State.LenHi):
                    m.d.sync += blen_hi.eq(byte)
                    m.d.comb += next_state.eq(_State.LenLo)
                    with m.If(beat.last):
                        m.d.comb += malformed_end.eq(1)
                with m.Case(_State.LenLo):
                    length = Cat(byte, blen_hi)
                    delivered = cur == self.expected
                    m.d.sync += [blen.eq(length), emit.eq(delivered)]
                    with m.If(length == 0):
                        with m.If(delivered):
                            bump("empty_messages")
                        block_done(delivered)
                    with m.Else():
                        m.d.comb += next_state.eq(_State.Data)
                        with m.If(beat.last):
                            m.d.comb += malformed_end.eq(1)
                with m.Case(_State.Data):
                    m.d.sync += blen.eq(blen - 1)
                    with m.If(blen == 1):
                        with m.If(emit):
                            bump("messages")
                        block_done(emit)
                    with m.Elif(beat.last):
                        m.d.comb += malformed_end.eq(1)
                with m.Case(_State.Trail):
                    with m.If(beat.last):
                        m.d.comb += malformed_end.eq(1)

            with m.If(beat.last):
                bump("packets")
                m.d.sync += [state.eq(_State.Hdr), off.eq(0)]
                with m.If(malformed_end):
                    bump("malformed")
            with m.Else():
                m.d.sync += state.eq(next_state)
        return m

    def _header(self, m, count, sess_in, seq_in, next_state, malformed_end, gap_fire, gap_first,
                gap_count, bump, have, cur, blocks_left, eos_pending, eos_seq, beat):
        """Decisions at the header's last byte (``count`` includes it)."""
        known_session = Signal()
        session_now = Signal(80)
        m.d.comb += [
            known_session.eq(have | self.session_check),
            session_now.eq(Mux(self.session_check, self.session_config, self.session)),
        ]
        exp = Signal(64)
        hi = Signal(64)
        known = Signal(64)
        m.d.comb += [
            exp.eq(Mux(self.started, self.expected, seq_in)),
            hi.eq(Mux(self.started, self.high, seq_in)),
            known.eq(Mux(hi > exp, hi, exp)),
        ]

        def reveal(end):
            with m.If(end > known):
                m.d.comb += [gap_fire.eq(1), gap_first.eq(known), gap_count.eq(end - known)]
                m.d.sync += self.high.eq(end)

        with m.If(known_session & (sess_in != session_now)):
            bump("foreign")
            m.d.comb += next_state.eq(_State.Skip)
        with m.Else():
            m.d.sync += [
                have.eq(1),
                self.session.eq(Mux(self.session_check, self.session_config,
                                    Mux(have, self.session, sess_in))),
                self.started.eq(1),
                self.expected.eq(exp),
                self.high.eq(hi),
            ]
            with m.If((count == 0) | (count == END_OF_SESSION_COUNT)):
                with m.If(count == 0):
                    bump("heartbeats")
                with m.Else():
                    bump("end_of_session")
                    with m.If(~self.ended):
                        m.d.sync += [self.ended.eq(1), eos_pending.eq(1), eos_seq.eq(seq_in)]
                reveal(seq_in)
                m.d.comb += next_state.eq(_State.Trail)
            with m.Else():
                end = Signal(64)
                m.d.comb += end.eq(seq_in + count)
                with m.If(seq_in > exp):
                    bump("ahead")
                    reveal(end)
                    m.d.comb += next_state.eq(_State.Skip)
                with m.Elif(end <= exp):
                    bump("duplicates")
                    m.d.comb += next_state.eq(_State.Skip)
                with m.Else():
                    m.d.sync += [cur.eq(seq_in), blocks_left.eq(count)]
                    m.d.comb += next_state.eq(_State.LenHi)
                    with m.If(beat.last):
                        m.d.comb += malformed_end.eq(1)
