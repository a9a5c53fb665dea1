"""The matching engine with its market data framed for publication: :class:`MatchingEngine`'s
ITCH 5.0 stream (``itch_stream``) through :class:`~.mold_out.MoldFramer` into MoldUDP64
packets (``mold_stream``).

A wrapper rather than a port of the engine: the engine stays a matching engine with an ITCH
stream (which the feed-path decoder can take), the framer is transport and works on any ITCH
beat stream, and the engine's parameters and the framer's (session, MTU, flush) do not mix.
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.protocol.moldudp64 import MAX_MESSAGES, SESSION_LENGTH
from tickpath.protocol.records import EventRecord, OrderRecord

from .engine import MatchingEngine
from .mold_out import MoldFramer, mold_beat_layout

__all__ = ["MarketData"]


class MarketData(wiring.Component):
    """:class:`MatchingEngine` (``symbols``, ``capacity``, ``levels``, ``token_bits``,
    ``stocks``, ``itch_depth``) with its ITCH output framed by :class:`~.mold_out.MoldFramer`
    (``width``, ``session``, ``mtu``, ``max_messages``, ``flush_cycles``); ``width`` is also the
    engine's ``itch_width``.

    Members
    -------
    i_stream : ``In(stream.Signature(OrderRecord))``
    o_stream : ``Out(stream.Signature(EventRecord))``
    busy, free, actions, events, rejects, fills
        The engine's (see :class:`MatchingEngine`).
    mold_stream : ``Out(stream.Signature(mold_beat_layout(width)))``
        MoldUDP64 packets of ``MatchingModel.itch``: ``first``/``last`` per packet, its first
        sequence, count, first message's ingress cycle and the egress cycle on every beat.
    session : ``In(80)``
        The 10 session bytes, big-endian (reset value from ``session``).
    next_sequence, packets, messages, ended
        The framer's (see :class:`~.mold_out.MoldFramer`).
    """

    def __init__(self, *, symbols=4, capacity=64, levels=8, token_bits=10, stocks=None,
                 itch_depth=16, width=8, session="TICKPATH", mtu=1400,
                 max_messages=MAX_MESSAGES, flush_cycles=8):
        self.engine = MatchingEngine(symbols=symbols, capacity=capacity, levels=levels,
                                     token_bits=token_bits, stocks=stocks,
                                     itch_depth=itch_depth, itch_width=width)
        self.framer = MoldFramer(width=width, session=session, mtu=mtu,
                                 max_messages=max_messages, flush_cycles=flush_cycles)
        engine_members = self.engine.signature.members
        super().__init__({
            "i_stream":      In(stream.Signature(OrderRecord)),
            "o_stream":      Out(stream.Signature(EventRecord)),
            **{name: Out(engine_members[name].shape)
               for name in ("busy", "free", "actions", "events", "rejects", "fills")},
            "mold_stream":   Out(stream.Signature(mold_beat_layout(width))),
            "session":       In(8 * SESSION_LENGTH, init=self.framer.session.init),
            "next_sequence": Out(64),
            "packets":       Out(32),
            "messages":      Out(32),
            "ended":         Out(1),
        })

    width = property(lambda self: self.framer.width)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.framer = framer = self.framer
        wiring.connect(m, wiring.flipped(self.i_stream), engine.i_stream)
        wiring.connect(m, engine.o_stream, wiring.flipped(self.o_stream))
        wiring.connect(m, engine.itch_stream, framer.i_stream)
        wiring.connect(m, framer.o_stream, wiring.flipped(self.mold_stream))
        m.d.comb += [getattr(self, name).eq(getattr(engine, name))
                     for name in ("busy", "free", "actions", "events", "rejects", "fills")]
        m.d.comb += [framer.session.eq(self.session),
                     engine.peek_addr.eq(0)]
        m.d.comb += [getattr(self, name).eq(getattr(framer, name))
                     for name in ("next_sequence", "packets", "messages", "ended")]
        return m
