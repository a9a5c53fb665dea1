"""ITCH 5.0 message decoder: one ITCH message per input packet in, one :class:`FeedEvent` out.

Ref: NASDAQ TotalView-ITCH 5.0. Per-type lengths and field offsets come from
:data:`tickpath.protocol.itch.SPECS`, and which ITCH field feeds which event field from
:func:`tickpath.protocol.feed.event_sources`; nothing here is copied by hand.
"""

from collections import defaultdict

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.protocol import itch
from tickpath.protocol.feed import (
    KIND_BY_TYPE,
    LENGTH_MAX,
    SIDE_SELL,
    ByteBeat,
    EventKind,
    FeedEvent,
    event_sources,
)

__all__ = ["ItchDecoder", "capture_plan"]

#: (event field, low bit of the byte lane) or ("side", None) for the B/S indicator.
Lane = tuple[str, int | None]


def capture_plan() -> tuple[dict[int, list[Lane]], dict[tuple[str, ...], dict[int, list[Lane]]]]:
    """Byte index -> lanes it fills: once for the common header, and per group of types
    that share a body layout (so the gateware has one case per group, not per type).

    Byte indices are message offsets; a wider datapath groups them by ``offset // width``.
    """
    header: dict[int, list[Lane]] = {}
    bodies: dict[tuple, list[str]] = defaultdict(list)
    for spec in itch.SPECS.values():
        body: dict[int, list[Lane]] = defaultdict(list)
        spec_header: dict[int, list[Lane]] = defaultdict(list)
        for event_field, field in event_sources(spec).items():
            target = spec_header if field.offset < itch.HEADER_LENGTH else body
            for k in range(field.size):
                lane = None if event_field == "side" else 8 * (field.size - 1 - k)   # big-endian
                target[field.offset + k].append((event_field, lane))
        if header and header != spec_header:
            raise AssertionError(f"ITCH {spec.type!r} header differs from the others")
        header = dict(spec_header)
        if body:
            bodies[tuple((k, tuple(v)) for k, v in sorted(body.items()))].append(spec.type)
    grouped = {tuple(types): {k: list(v) for k, v in body} for body, types in bodies.items()}
    return header, grouped


class ItchDecoder(wiring.Component):
    """Decode ITCH 5.0 messages, one byte per cycle, into normalised feed events.

    A message takes as many cycles as it has bytes, back to back; its event is valid the cycle
    after its last byte. An unknown type, or a length that disagrees with the type, gives a
    ``Malformed`` event (never a stall). The input is ready unless the one output register is
    full and not being taken.

    Parameters
    ----------
    data_width : int
        Input beat width in bits. Only 8 for now; the capture plan is in byte offsets so a
        wider datapath can group it by beat.
    counter_width : int
        Width of the message counters (they wrap).

    Members
    -------
    i_stream : ``In(stream.Signature(ByteBeat))``
        Message bytes; ``last`` marks each message's final byte.
    o_stream : ``Out(stream.Signature(FeedEvent))``
        One event per message, in order.
    messages : ``Out(counter_width)``
        Messages received (malformed included).
    malformed : ``Out(counter_width)``
        Messages received as ``Malformed``.
    """

    def __init__(self, *, data_width=8, counter_width=32):
        if data_width != 8:
            raise ValueError(f"data_width must be 8 for now, not {data_width}")
        if counter_width not in range(1, 65):
            raise ValueError(f"counter_width must be in 1..64, not {counter_width}")
        self._data_width = data_width
        self._counter_width = counter_width
        super().__init__({
            "i_stream":  In(stream.Signature(ByteBeat)),
            "o_stream":  Out(stream.Signature(FeedEvent)),
            "messages":  Out(counter_width),
            "malformed": Out(counter_width),
        })

    @property
    def data_width(self):
        return self._data_width

    @property
    def counter_width(self):
        return self._counter_width

    def elaborate(self, platform):
        m = Module()
        beat = self.i_stream.p
        out = self.o_stream

        index    = Signal(16)          # bytes of the current message accepted so far (saturates)
        work     = Signal(FeedEvent)   # fields captured from earlier bytes of this message
        captured = Signal(FeedEvent)   # `work` with the current byte applied
        msg_type = Signal(8)
        known    = Signal()
        expected_length = Signal(16)
        kind     = Signal(EventKind)
        length   = Signal(16)

        accept = self.i_stream.valid & self.i_stream.ready
        m.d.comb += self.i_stream.ready.eq(~out.valid | out.ready)

        m.d.comb += msg_type.eq(Mux(index == 0, beat.data, work.msg_type))
        with m.Switch(msg_type):
            for type_char, spec in itch.SPECS.items():
                with m.Case(ord(type_char)):
                    m.d.comb += [
                        known.eq(1),
                        expected_length.eq(spec.length),
                        kind.eq(KIND_BY_TYPE.get(type_char, EventKind.Other)),
                    ]

        with m.If(index == 0):
            m.d.comb += [captured.eq(0), captured.msg_type.eq(beat.data)]
        with m.Else():
            m.d.comb += captured.eq(work)

        header, bodies = capture_plan()
        self._capture(m, captured, index, header, beat.data)
        with m.Switch(work.msg_type):      # bodies start after the header: the type is held
            for types, body in bodies.items():
                with m.Case(*(ord(t) for t in types)):
                    self._capture(m, captured, index, body, beat.data)

        m.d.comb += length.eq(Mux(index == LENGTH_MAX, LENGTH_MAX, index + 1))

        with m.If(accept & beat.last):
            m.d.sync += [
                index.eq(0),
                out.valid.eq(1),
                self.messages.eq(self.messages + 1),
            ]
            with m.If(~known | (length != expected_length)):
                m.d.sync += [
                    out.p.eq(0),
                    out.p.kind.eq(EventKind.Malformed),
                    out.p.msg_type.eq(captured.msg_type),
                    out.p.length.eq(length),
                    self.malformed.eq(self.malformed + 1),
                ]
            with m.Else():
                m.d.sync += [
                    out.p.eq(captured),
                    out.p.kind.eq(kind),
                    out.p.length.eq(length),
                ]
        with m.Else():
            with m.If(accept):
                m.d.sync += [
                    index.eq(Mux(index == LENGTH_MAX, LENGTH_MAX, index + 1)),
                    work.eq(captured),
                ]
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)
        return m

    @staticmethod
    def _capture(m, captured, index, plan, byte):
        with m.Switch(index):
            for offset, lanes in sorted(plan.items()):
                with m.Case(offset):
                    for event_field, low in lanes:
                        target = getattr(captured, event_field)
                        if low is None:
                            m.d.comb += target.eq(byte == ord(SIDE_SELL))
                        else:
                            m.d.comb += target[low:low + 8].eq(byte)
