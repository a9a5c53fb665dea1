"""Feed-to-book core: [ItchDecoder] -> OrderTable (block RAM) -> Book, with cycle stamps.

``source="events"`` takes :class:`~tickpath.protocol.feed.FeedEvent` directly (ingress = the cycle
the event is taken); ``source="itch"`` takes ITCH message bytes through
:class:`~tickpath.hdl.itch_decoder.ItchDecoder` (ingress = the cycle the message's last byte is
taken, carried beside the decoder in a small FIFO); ``source="messages"`` takes the sequencer's
:data:`~tickpath.protocol.netfeed.MessageBeat` and keeps the ingress stamp the message arrived
with (the cycle its frame's last byte reached ``NetRx``: both count cycles from reset). Egress is
the cycle an update is first valid, from the book's free-running ``cycle`` counter.
"""

from amaranth.hdl import Module
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.hdl import book as book_module
from tickpath.hdl import order_table as table_module
from tickpath.hdl.book import Book
from tickpath.hdl.itch_decoder import ItchDecoder
from tickpath.hdl.order_table import BlockRamOrderMemory, OrderTable
from tickpath.protocol.bookfeed import (
    CYCLE_WIDTH,
    SLOT_WIDTH,
    BookQuery,
    Subscription,
    book_update_layout,
)
from tickpath.protocol.feed import ByteBeat, FeedEvent
from tickpath.protocol.netfeed import MessageBeat

_INPUTS = {"events": FeedEvent, "itch": ByteBeat, "messages": MessageBeat}

__all__ = ["FeedBook", "COUNTERS"]

#: Counter outputs: the order table's, then the book's (prefixed ``book_``), then the decoder's.
COUNTERS = (tuple(table_module.COUNTERS) + ("occupancy",)
            + tuple(f"book_{n}" for n in book_module.COUNTERS))


class FeedBook(wiring.Component):
    """The feed path from decoded events (or ITCH bytes) to book updates.

    Parameters
    ----------
    source : ``"events"``, ``"itch"`` or ``"messages"``
    capacity, ways, locate_bits, subscriptions
        As :class:`~tickpath.hdl.order_table.OrderTable`.
    slots, levels, depth
        As :class:`~tickpath.hdl.book.Book`.

    Members
    -------
    i_stream : ``In(stream.Signature(FeedEvent | ByteBeat | MessageBeat))``, by ``source``
    o_stream : ``Out(stream.Signature(book_update_layout(depth)))``
    subscribe, query, clear
        As on the order table and the book.
    invalid : ``Out(slots)``
    cycle : ``Out(CYCLE_WIDTH)``
    events, ignored, ..., book_ops, book_updates, ... : ``Out(32)``
        :data:`COUNTERS`; with a decoder also ``messages`` and ``malformed``.
    """

    def __init__(self, *, source="events", capacity=8192, ways=8, slots=256, locate_bits=14,
                 subscriptions=None, levels=16, depth=8):
        if source not in _INPUTS:
            raise ValueError(f"source must be one of {', '.join(_INPUTS)}, not {source!r}")
        self._source = source
        self._table = OrderTable(capacity=capacity, ways=ways, slots=slots,
                                 locate_bits=locate_bits, subscriptions=subscriptions)
        self._book = Book(slots=slots, levels=levels, depth=depth)
        members = {
            "i_stream":  In(stream.Signature(_INPUTS[source])),
            "o_stream":  Out(stream.Signature(book_update_layout(depth))),
            "subscribe": In(stream.Signature(Subscription)),
            "query":     In(stream.Signature(BookQuery)),
            "clear":     In(stream.Signature(SLOT_WIDTH)),
            "invalid":   Out(slots),
            "cycle":     Out(CYCLE_WIDTH),
        }
        members.update({name: Out(32) for name in COUNTERS})
        if source != "events":
            members.update({"messages": Out(32), "malformed": Out(32)})
        super().__init__(members)

    source = property(lambda self: self._source)
    table  = property(lambda self: self._table)
    book   = property(lambda self: self._book)

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = self._table
        m.submodules.book = book = self._book
        m.submodules.memory = memory = BlockRamOrderMemory(addr_width=table.bucket_bits,
                                                           ways=table.ways)
        wiring.connect(m, table.mem, memory.bus)
        wiring.connect(m, table.o_stream, book.i_stream)
        wiring.connect(m, book.o_stream, wiring.flipped(self.o_stream))
        wiring.connect(m, wiring.flipped(self.subscribe), table.subscribe)
        wiring.connect(m, wiring.flipped(self.query), book.query)
        wiring.connect(m, wiring.flipped(self.clear), book.clear)
        m.d.comb += [self.invalid.eq(book.invalid), self.cycle.eq(book.cycle)]
        for name in table_module.COUNTERS + ("occupancy",):
            m.d.comb += getattr(self, name).eq(getattr(table, name))
        for name in book_module.COUNTERS:
            m.d.comb += getattr(self, f"book_{name}").eq(getattr(book, name))

        feed_width = FeedEvent.as_shape().size
        events = table.i_stream
        if self._source == "events":
            m.d.comb += [
                events.valid.eq(self.i_stream.valid),
                self.i_stream.ready.eq(events.ready),
                events.p.as_value()[:feed_width].eq(self.i_stream.p.as_value()),
                events.p["ingress"].eq(book.cycle),
            ]
        else:
            m.submodules.decoder = decoder = ItchDecoder()
            m.submodules.stamps = stamps = fifo.SyncFIFO(width=CYCLE_WIDTH, depth=4)
            i = self.i_stream
            m.d.comb += [
                decoder.i_stream.valid.eq(i.valid),
                decoder.i_stream.p.data.eq(i.p.data),
                decoder.i_stream.p.last.eq(i.p.last),
                i.ready.eq(decoder.i_stream.ready),
                stamps.w_en.eq(i.valid & i.ready & i.p.last),
                stamps.w_data.eq(book.cycle if self._source == "itch" else i.p.ingress),
                events.valid.eq(decoder.o_stream.valid & stamps.r_rdy),
                decoder.o_stream.ready.eq(events.ready & stamps.r_rdy),
                events.p.as_value()[:feed_width].eq(decoder.o_stream.p.as_value()),
                events.p["ingress"].eq(stamps.r_data),
                stamps.r_en.eq(decoder.o_stream.valid & events.ready & stamps.r_rdy),
                self.messages.eq(decoder.messages),
                self.malformed.eq(decoder.malformed),
            ]
        return m
