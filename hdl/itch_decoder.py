"""ITCH 5.0 message decoder: one ITCH message per input packet in, one :class:`FeedEvent` out.

Ref: NASDAQ TotalView-ITCH 5.0. Per-type lengths and field offsets come from
:data:`tickpath.protocol.itch.SPECS`, and which ITCH field feeds which event field from
:func:`tickpath.protocol.feed.event_sources`; nothing here is copied by hand.
"""

from collections import defaultdict

from amaranth.hdl import Cat, Module, Mux, Signal
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
        # Timing: whatever depends on the type byte or on the byte's offset is decided a cycle
        # ahead and registered, so a message's last byte meets a LUT or two between the
        # flip-flops and the output register:
        # - the type byte is decoded once, as it arrives, into registered ``kind``, body
        #   ``group`` (one-hot) and ``remaining`` (bytes still expected after the current one);
        # - a one-hot ``position`` (a shift register, not a counter compared with every offset)
        #   and ``group`` give a registered capture ``enable`` per event byte lane, for the byte
        #   that comes next;
        # - ``length_ok`` says ahead of time whether the current byte, if it is the last, makes
        #   the right length for a known type, and ``length`` counts the bytes including the
        #   current one (saturating), so no adder or comparator sits on the ``last`` path.
        m = Module()
        beat = self.i_stream.p
        out = self.o_stream

        header, bodies = capture_plan()
        groups = list(bodies)
        if not all(2 <= spec.length <= 127 for spec in itch.SPECS.values()):
            raise AssertionError("ITCH lengths must be in 2..127 for `remaining`")
        # event byte lane -> [(offset, body group index, or None for the common header)]
        sources: dict[Lane, list[tuple[int, int | None]]] = defaultdict(list)
        for offset, lanes in header.items():
            for lane in lanes:
                sources[lane].append((offset, None))
        for g, body in enumerate(groups):
            for offset, lanes in bodies[body].items():
                if offset < itch.HEADER_LENGTH:     # `group` is known only after the type byte
                    raise AssertionError(f"ITCH {body} capture at {offset}, inside the header")
                for lane in lanes:
                    sources[lane].append((offset, g))
        offsets = [offset for terms in sources.values() for offset, _ in terms]
        if min(offsets) < 1:
            raise AssertionError("offset 0 is the type byte, captured on its own")

        first     = Signal(init=1)             # the current byte is a message's type byte
        position  = Signal(max(offsets) + 1)   # one-hot: the current byte's offset (0 beyond)
        group     = Signal(len(groups))        # one-hot: the current message's body group
        kind      = Signal(EventKind)          # the current message's kind, if its type is known
        remaining = Signal(7)                  # bytes expected after the current one (0: none)
        length_ok = Signal()                   # known type, and the current byte is its last
        length    = Signal(16, init=1)         # bytes of the current message, this one included
        enable    = {lane: Signal(name=f"enable_{lane[0]}_{'side' if lane[1] is None else lane[1]}")
                     for lane in sources}      # the current byte fills this lane
        work      = Signal(FeedEvent)          # fields captured from earlier bytes (0 at first)
        captured  = Signal(FeedEvent)          # `work` with the current byte applied

        accept = self.i_stream.valid & self.i_stream.ready
        m.d.comb += self.i_stream.ready.eq(~out.valid | out.ready)

        m.d.comb += [
            captured.eq(work),
            captured.msg_type.eq(Mux(first, beat.data, work.msg_type)),
        ]
        for (event_field, low), en in enable.items():
            with m.If(en):
                if low is None:
                    m.d.comb += captured.side.eq(beat.data == ord(SIDE_SELL))
                else:
                    m.d.comb += getattr(captured, event_field)[low:low + 8].eq(beat.data)

        next_position = Signal.like(position)
        m.d.comb += next_position.eq(Mux(first, 0b10, position << 1))

        with m.If(accept & beat.last):
            m.d.sync += [
                first.eq(1),
                position.eq(0),
                length.eq(1),
                length_ok.eq(0),
                work.eq(0),
                out.valid.eq(1),
                self.messages.eq(self.messages + 1),
            ]
            m.d.sync += [en.eq(0) for en in enable.values()]
            with m.If(length_ok):
                m.d.sync += [
                    out.p.eq(captured),
                    out.p.kind.eq(kind),
                    out.p.length.eq(length),
                ]
            with m.Else():
                m.d.sync += [
                    out.p.eq(0),
                    out.p.kind.eq(EventKind.Malformed),
                    out.p.msg_type.eq(captured.msg_type),
                    out.p.length.eq(length),
                    self.malformed.eq(self.malformed + 1),
                ]
        with m.Else():
            with m.If(accept):
                m.d.sync += [
                    first.eq(0),
                    position.eq(next_position),
                    length.eq(Mux(length == LENGTH_MAX, LENGTH_MAX, length + 1)),
                    work.eq(captured),
                ]
                for lane, en in enable.items():
                    terms = [next_position[offset] & (1 if g is None else group[g])
                             for offset, g in sources[lane]]
                    m.d.sync += en.eq(Cat(*terms).any())
                with m.If(first):
                    m.d.sync += [group.eq(0), kind.eq(0), remaining.eq(0), length_ok.eq(0)]
                    with m.Switch(beat.data):
                        for type_char, spec in itch.SPECS.items():
                            with m.Case(ord(type_char)):
                                m.d.sync += [
                                    kind.eq(KIND_BY_TYPE.get(type_char, EventKind.Other)),
                                    remaining.eq(spec.length - 2),
                                    length_ok.eq(spec.length == 2),
                                ]
                                m.d.sync += [group[g].eq(1) for g, types in enumerate(groups)
                                             if type_char in types]
                with m.Else():      # an unknown type keeps `remaining` at 0: never length_ok
                    m.d.sync += [
                        remaining.eq(Mux(remaining == 0, 0, remaining - 1)),
                        length_ok.eq(remaining == 1),
                    ]
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)
        return m
