"""The matching engine's ITCH 5.0 output: a wide per-message record (:func:`itch_record_layout`)
written by the engine's FSM in the cycle it decides, and :class:`ItchSerializer`, which turns
queued records into ITCH bytes, ``width`` bytes a beat (:func:`itch_beat_layout`: a
:func:`tickpath.protocol.feed.wide_beat` with the message's ingress cycle stamp).

Every message length and field offset comes from :data:`tickpath.protocol.itch.SPECS`; the
constant bytes of a message (its type byte, and every fixed field of ``R``) come from the
golden :class:`~tickpath.model.matching.MatchingModel`'s own records, encoded with
:func:`tickpath.protocol.itch.encode` — nothing about the wire format is written out here.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.protocol import itch
from tickpath.protocol.feed import SIDE_SELL, wide_beat
from tickpath.protocol.netfeed import TIMESTAMP_WIDTH

__all__ = ["ITCH_TYPES", "itch_record_layout", "itch_beat_layout", "default_stocks",
           "ItchSerializer"]

#: The message types the engine emits; a record's ``type`` is an index into this.
ITCH_TYPES = ("S", "R", "A", "E", "X", "D", "U")

#: Record field -> the ITCH field names it feeds (big-endian, zero-extended to the field).
_SOURCES = {
    "stock_locate": "locate",
    "timestamp": "timestamp",
    "order_reference_number": "ref",
    "original_order_reference_number": "ref",
    "new_order_reference_number": "ref2",
    "shares": "shares",
    "executed_shares": "shares",
    "canceled_shares": "shares",
    "price": "price",
    "match_number": "match",
}


def default_stocks(symbols: int) -> tuple[str, ...]:
    """ITCH stock names of symbol ids ``0..symbols-1`` when none are given."""
    return tuple(f"SYM{s}" for s in range(symbols))


def itch_record_layout(*, symbol_width: int) -> data.StructLayout:
    """One ITCH message to emit (fields a type lacks are ignored)."""
    return data.StructLayout({
        "type":      unsigned(3),          # index into ITCH_TYPES
        "symbol":    unsigned(max(symbol_width, 1)),   # R, A: the stock name's symbol
        "locate":    unsigned(16),
        "timestamp": unsigned(48),
        "ref":       unsigned(32),         # order reference (U: the original)
        "ref2":      unsigned(32),         # U: the new reference
        "shares":    unsigned(32),
        "price":     unsigned(32),
        "match":     unsigned(64),
        "side":      unsigned(1),          # A: 0 buy, 1 sell
        "close":     unsigned(1),          # S: 0 start of day 'O', 1 end 'C'
        "ingress":   unsigned(TIMESTAMP_WIDTH),    # cycle stamp: not on the wire
    })


def itch_beat_layout(width: int) -> data.StructLayout:
    """``width`` bytes of one ITCH message per beat (:func:`~tickpath.protocol.feed.wide_beat`:
    ``data``, ``last``, ``first``, ``nbytes`` at the same offsets), then ``ingress``: the cycle
    stamp of the message's record, the same on every beat of the message."""
    fields = {name: field.shape for name, field in wide_beat(width)}
    return data.StructLayout({**fields, "ingress": unsigned(TIMESTAMP_WIDTH)})


def _templates() -> dict[str, itch.ItchMessage]:
    """``R`` (with its fixed fields) and ``S`` (``SO``, ``SC``) as the golden model writes
    them."""
    from tickpath.model.matching import MatchingModel
    from tickpath.protocol.records import Action, Order, OrderType, Side, TimeInForce

    model = MatchingModel()
    model.set_symbol(0, "T")
    model.process(Order(Action.Enter, Side.Buy, TimeInForce.Day, OrderType.Limit, 1, 0, 1, 0,
                        100, 1_000_000, 0))
    model.process(Order(action=Action.EndOfDay))
    found: dict[str, itch.ItchMessage] = {}
    for msg in model.itch:
        if msg.type in "SR":
            found.setdefault(msg.type + (msg.event_code if msg.type == "S" else ""), msg)
    return found


def _select(sel, values):
    """``values[sel]`` as an AND-OR of ``Mux``es (0 when ``sel`` is out of range)."""
    out = Const(0)
    for k, v in enumerate(values):
        out = out | Mux(sel == k, v, 0)
    return out


class ItchSerializer(wiring.Component):
    """Queue of ITCH records in, ITCH messages out, ``width`` bytes a cycle.

    A message of ``n`` bytes takes ``ceil(n / width)`` back-to-back beats (an ``A``, 36 bytes,
    5 beats at ``width`` 8) and the next message follows without a gap.

    Parameters
    ----------
    stocks : sequence of str
        ITCH stock name of each symbol id.
    symbol_width : int
        Width of a record's ``symbol``.
    depth : int
        Records queued.
    width : int
        Bytes per output beat (1 is a byte stream whose low bits are a ``ByteBeat``).

    Members
    -------
    i_stream : ``In(stream.Signature(itch_record_layout(...)))``
        Records; ready while the queue (``depth`` records) has room.
    o_stream : ``Out(stream.Signature(itch_beat_layout(width)))``
        One ITCH message per packet: ``first``/``last`` on its first and last beat,
        ``nbytes`` valid lanes (``width`` but on the last beat), the record's ``ingress`` on
        every beat.
    """

    def __init__(self, *, stocks, symbol_width, depth=16, width=8):
        self._stocks = tuple(stocks)
        for stock in self._stocks:
            if not stock or len(stock) > 8 or not stock.isascii() or stock != stock.strip():
                raise ValueError(f"stock {stock!r} is not 1 to 8 ASCII characters")
        if width not in range(1, 65):
            raise ValueError(f"width must be in 1..64 bytes, not {width}")
        self._depth = depth
        self._width = width
        self.record_shape = itch_record_layout(symbol_width=symbol_width)
        super().__init__({
            "i_stream": In(stream.Signature(self.record_shape)),
            "o_stream": Out(stream.Signature(itch_beat_layout(width))),
        })

    depth = property(lambda self: self._depth)
    width = property(lambda self: self._width)
    stocks = property(lambda self: self._stocks)

    def _bytes(self, t: str, rec, templates, stock) -> list:
        """The bytes of message type ``t`` for record ``rec``: the template's, with every
        variable field replaced by the record's value."""
        spec = itch.SPECS[t]
        if t == "S":
            code = Mux(rec.close, ord(templates["SC"].event_code),
                       ord(templates["SO"].event_code))
            base = bytearray(itch.encode(templates["SO"]))
        elif t in templates:
            base = bytearray(itch.encode(templates[t]))
        else:                       # every field but the type byte comes from the record
            base = bytearray(spec.length)
            base[spec.field("message_type").offset] = ord(t)
        out: list = [Const(b, 8) for b in base]
        for f in spec.fields:
            if f.name in _SOURCES:
                value = getattr(rec, _SOURCES[f.name])
                wide = Signal(8 * f.size, name=f"{t}_{f.name}")
                self._m.d.comb += wide.eq(value)
                for i in range(f.size):
                    lo = 8 * (f.size - 1 - i)
                    out[f.offset + i] = wide[lo:lo + 8]
            elif f.name == "tracking_number":
                for i in range(f.size):
                    out[f.offset + i] = Const(0, 8)
            elif f.name == "stock":
                for i in range(f.size):
                    out[f.offset + i] = stock[8 * (f.size - 1 - i):8 * (f.size - i)]
            elif f.name == "buy_sell_indicator":
                out[f.offset] = Mux(rec.side, ord(SIDE_SELL), ord("B"))
            elif f.name == "event_code":
                out[f.offset] = code
        return out

    def elaborate(self, platform):
        m = self._m = Module()
        W = self._width
        templates = _templates()
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(
            width=self.record_shape.size, depth=self._depth)
        m.d.comb += [queue.w_data.eq(self.i_stream.payload), queue.w_en.eq(self.i_stream.valid),
                     self.i_stream.ready.eq(queue.w_rdy)]
        rec = self.record_shape(queue.r_data)

        stock_width = 8 * itch.SPECS["A"].field("stock").size
        names = [int.from_bytes(s.ljust(stock_width // 8).encode("ascii"), "big")
                 for s in self._stocks] or [0]
        stock = Signal(stock_width)
        m.d.comb += stock.eq(_select(rec.symbol, [Const(n, stock_width) for n in names]))

        # Per type: each lane's byte, whether this beat is the last, its byte count; then the
        # type's. Selections are AND-OR of `Mux`es (continuous assignments), not `Array`s or
        # `Switch`es: Icarus never evaluates an `always @*` whose inputs do not change after
        # time 0, and a lane that is constant for `S` (the first message) stayed X.
        beats = {t: -(-itch.SPECS[t].length // W) for t in ITCH_TYPES}
        index = Signal(range(max(beats.values())))      # beat of the current message
        lane_by_type = [[] for _ in range(W)]
        final_by_type, nbytes_by_type = [], []
        for t in ITCH_TYPES:
            table = self._bytes(t, rec, templates, stock)
            length = itch.SPECS[t].length
            assert len(table) == length
            n = beats[t]
            for i in range(W):
                column = [table[b * W + i] if b * W + i < length else Const(0, 8)
                          for b in range(n)]
                lane_by_type[i].append(_select(index, column))
            final_by_type.append(index == n - 1)
            nbytes_by_type.append(Mux(index == n - 1, length - (n - 1) * W, W))
        lanes = [Signal(8, name=f"lane{i}") for i in range(W)]
        final = Signal()
        nbytes = Signal.like(self.o_stream.payload.nbytes)
        m.d.comb += [lane.eq(_select(rec.type, by_type))
                     for lane, by_type in zip(lanes, lane_by_type, strict=True)]
        m.d.comb += [final.eq(_select(rec.type, final_by_type)),
                     nbytes.eq(_select(rec.type, nbytes_by_type))]

        out = self.o_stream.payload
        m.d.comb += [self.o_stream.valid.eq(queue.r_rdy),
                     out.data.eq(Cat(*lanes)), out.last.eq(final), out.first.eq(index == 0),
                     out.nbytes.eq(nbytes), out.ingress.eq(rec.ingress)]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            with m.If(final):
                m.d.sync += index.eq(0)
                m.d.comb += queue.r_en.eq(1)
            with m.Else():
                m.d.sync += index.eq(index + 1)
        del self._m
        return m
