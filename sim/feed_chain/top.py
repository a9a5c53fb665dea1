"""The feed path's network front: NetRx -> MoldSequencer -> ItchDecoder, as one bench top."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.hdl.itch_decoder import ItchDecoder
from tickpath.hdl.mold_sequencer import MoldSequencer
from tickpath.hdl.net_rx import NetRx
from tickpath.protocol.feed import FeedEvent
from tickpath.protocol.netfeed import (
    RX_COUNTERS,
    SEQ_COUNTERS,
    TIMESTAMP_WIDTH,
    FilterWrite,
    FrameBeat,
    SeqEvent,
)

__all__ = ["FeedChain"]


class FeedChain(wiring.Component):
    """Frames in, feed events and sequencer events out; every block's counters as
    ``rx_<name>``, ``seq_<name>``, ``dec_messages``, ``dec_malformed``.

    Members
    -------
    i_stream : ``In(stream.Signature(FrameBeat))``
    filter_write : ``In(stream.Signature(FilterWrite))``
    o_stream : ``Out(stream.Signature(FeedEvent))``
    o_event : ``Out(stream.Signature(SeqEvent))``
    cycle : ``Out(TIMESTAMP_WIDTH)``
    """

    def __init__(self):
        members = {
            "i_stream":     In(stream.Signature(FrameBeat)),
            "filter_write": In(stream.Signature(FilterWrite)),
            "o_stream":     Out(stream.Signature(FeedEvent)),
            "o_event":      Out(stream.Signature(SeqEvent)),
            "cycle":        Out(TIMESTAMP_WIDTH),
            "dec_messages": Out(32),
            "dec_malformed": Out(32),
        }
        members.update({f"rx_{n}": Out(32) for n in RX_COUNTERS})
        members.update({f"seq_{n}": Out(32) for n in SEQ_COUNTERS})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = NetRx()
        m.submodules.seq = seq = MoldSequencer()
        m.submodules.dec = dec = ItchDecoder()
        wiring.connect(m, wiring.flipped(self.i_stream), rx.i_stream)
        wiring.connect(m, wiring.flipped(self.filter_write), rx.filter_write)
        wiring.connect(m, rx.o_stream, seq.i_stream)
        m.d.comb += [
            dec.i_stream.valid.eq(seq.o_stream.valid),
            dec.i_stream.p.data.eq(seq.o_stream.p.data),
            dec.i_stream.p.last.eq(seq.o_stream.p.last),
            seq.o_stream.ready.eq(dec.i_stream.ready),
            self.cycle.eq(rx.cycle),
            self.dec_messages.eq(dec.messages),
            self.dec_malformed.eq(dec.malformed),
        ]
        wiring.connect(m, dec.o_stream, wiring.flipped(self.o_stream))
        wiring.connect(m, seq.o_event, wiring.flipped(self.o_event))
        for n in RX_COUNTERS:
            m.d.comb += getattr(self, f"rx_{n}").eq(getattr(rx, n))
        for n in SEQ_COUNTERS:
            m.d.comb += getattr(self, f"seq_{n}").eq(getattr(seq, n))
        return m
