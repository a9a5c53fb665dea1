"""The 64-bit feed front, MoldSequencerWide -> ItchDecoder(data_width=64), as one bench top,
with the sequencer's message stream brought out (read-only) for the bench to check."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.hdl.itch_decoder import ItchDecoder
from tickpath.hdl.mold_sequencer_wide import FIFO_DEPTH, OUT_DEPTH, MoldSequencerWide
from tickpath.protocol.feed import FeedEvent
from tickpath.protocol.netfeed import SEQ_COUNTERS, SeqEvent, wide_message_beat, wide_udp_beat

__all__ = ["FeedWide", "WIDTH"]

WIDTH = 8     # bytes a beat


class FeedWide(wiring.Component):
    """UDP payloads (MoldUDP64 packets) in, feed events and sequencer events out.

    Members
    -------
    i_stream : ``In(stream.Signature(wide_udp_beat(8)))``
    o_stream : ``Out(stream.Signature(FeedEvent))``
    o_event : ``Out(stream.Signature(SeqEvent))``
    session_config : ``In(80)``, session_check : ``In(1)``
    msg_payload : ``Out(wide_message_beat(8))``, msg_valid, msg_ready : ``Out(1)``
        The sequencer's output stream as the decoder takes it (observed only).
    level, out_level : the sequencer's input FIFO and output queue occupancy.
    seq_<counter>, dec_messages, dec_malformed : ``Out(32)``
    """

    def __init__(self):
        members = {
            "i_stream":       In(stream.Signature(wide_udp_beat(WIDTH))),
            "o_stream":       Out(stream.Signature(FeedEvent)),
            "o_event":        Out(stream.Signature(SeqEvent)),
            "session_config": In(80),
            "session_check":  In(1),
            "msg_payload":    Out(wide_message_beat(WIDTH)),
            "msg_valid":      Out(1),
            "msg_ready":      Out(1),
            "level":          Out(range(FIFO_DEPTH + 1)),
            "out_level":      Out(range(OUT_DEPTH + 1)),
            "dec_messages":   Out(32),
            "dec_malformed":  Out(32),
        }
        members.update({f"seq_{n}": Out(32) for n in SEQ_COUNTERS})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.seq = seq = MoldSequencerWide(width=WIDTH)
        m.submodules.dec = dec = ItchDecoder(data_width=8 * WIDTH)
        wiring.connect(m, wiring.flipped(self.i_stream), seq.i_stream)
        msg = seq.o_stream
        m.d.comb += [
            dec.i_stream.valid.eq(msg.valid),
            dec.i_stream.p.data.eq(msg.p.data),
            dec.i_stream.p.nbytes.eq(msg.p.nbytes),
            dec.i_stream.p.first.eq(msg.p.first),
            dec.i_stream.p.last.eq(msg.p.last),
            msg.ready.eq(dec.i_stream.ready),
            self.msg_payload.eq(msg.p),
            self.msg_valid.eq(msg.valid),
            self.msg_ready.eq(dec.i_stream.ready),
            seq.session_config.eq(self.session_config),
            seq.session_check.eq(self.session_check),
            self.level.eq(seq.level),
            self.out_level.eq(seq.out_level),
            self.dec_messages.eq(dec.messages),
            self.dec_malformed.eq(dec.malformed),
        ]
        wiring.connect(m, dec.o_stream, wiring.flipped(self.o_stream))
        wiring.connect(m, seq.o_event, wiring.flipped(self.o_event))
        for n in SEQ_COUNTERS:
            m.d.comb += getattr(self, f"seq_{n}").eq(getattr(seq, n))
        return m
