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
    wide_beat,
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


def _lane_sources() -> tuple[list[tuple[str, ...]], dict[Lane, list[tuple[int, int | None]]]]:
    """The body groups, and event byte lane -> [(message offset, body group index, or None for
    the common header)] from :func:`capture_plan`."""
    header, bodies = capture_plan()
    groups = list(bodies)
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
    if min(offset for terms in sources.values() for offset, _ in terms) < 1:
        raise AssertionError("offset 0 is the type byte, captured on its own")
    return groups, sources


class ItchDecoder(wiring.Component):
    """Decode ITCH 5.0 messages, one beat per cycle, into normalised feed events.

    A message takes as many cycles as it has beats, back to back; its event is valid the cycle
    after its last beat. An unknown type, or a length that disagrees with the type, gives a
    ``Malformed`` event (never a stall). The input is ready unless the one output register is
    full and not being taken.

    Parameters
    ----------
    data_width : int
        Input beat width in bits: 8 (one byte a cycle, Gigabit line rate at 125 MHz), or 16,
        32 or 64 (64: the 10 GbE MAC width). The capture plan is in byte offsets; a wider
        datapath groups it by beat.
    counter_width : int
        Width of the message counters (they wrap).

    Members
    -------
    i_stream : ``In(stream.Signature(ByteBeat))``, or ``In(stream.Signature(wide_beat(n)))``
        with ``n = data_width // 8`` bytes a beat when ``data_width`` is above 8
        Message bytes; ``last`` marks each message's final beat. A wide message starts in lane
        0 of its first beat; its length is the sum of its beats' ``nbytes`` (``first`` is not
        used: a message starts after the previous one's ``last``).
    o_stream : ``Out(stream.Signature(FeedEvent))``
        One event per message, in order.
    messages : ``Out(counter_width)``
        Messages received (malformed included).
    malformed : ``Out(counter_width)``
        Messages received as ``Malformed``.
    """

    def __init__(self, *, data_width=8, counter_width=32):
        if data_width not in (8, 16, 32, 64):
            raise ValueError(f"data_width must be 8, 16, 32 or 64, not {data_width}")
        if counter_width not in range(1, 65):
            raise ValueError(f"counter_width must be in 1..64, not {counter_width}")
        self._data_width = data_width
        self._counter_width = counter_width
        super().__init__({
            "i_stream":  In(stream.Signature(ByteBeat if data_width == 8
                                             else wide_beat(data_width // 8))),
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
        if self._data_width != 8:
            return self._elaborate_wide()
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

        groups, sources = _lane_sources()
        if not all(2 <= spec.length <= 127 for spec in itch.SPECS.values()):
            raise AssertionError("ITCH lengths must be in 2..127 for `remaining`")
        offsets = [offset for terms in sources.values() for offset, _ in terms]

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

    def _elaborate_wide(self):
        # The 8-bit decoder's plan, a beat at a time: the type byte is lane 0 of the first beat;
        # its decode is registered (``kind``, one-hot ``group``, ``remaining``) and, combined
        # with a one-hot beat ``position``, gives registered capture enables per (event byte
        # lane, input byte lane) for the beat that comes next. Body captures start at offset
        # 11, so they never fall in the first beat (whose enables are the header's alone) for
        # beats of up to 11 bytes; the second beat's enables are decoded from the type byte
        # itself as it arrives. No ITCH type fits in one beat, so a one-beat message is always
        # Malformed, and ``remaining`` (the type's length less the bytes before the current
        # beat) compared with ``nbytes`` decides the length check at the last beat.
        m = Module()
        width = self._data_width // 8
        beat = self.i_stream.p
        out = self.o_stream

        groups, sources = _lane_sources()
        if not all(width < spec.length <= 255 for spec in itch.SPECS.values()):
            raise AssertionError(f"ITCH lengths must be in {width + 1}..255")
        if any(offset < width for terms in sources.values() for offset, g in terms
               if g is not None):
            raise AssertionError("a body capture falls in the first beat")
        beats = max(offset for terms in sources.values() for offset, _ in terms) // width + 1
        # (event byte lane, input byte lane) -> [(beat index, body group or None)]
        plan: dict[tuple[Lane, int], list[tuple[int, int | None]]] = defaultdict(list)
        for lane, terms in sources.items():
            for offset, g in terms:
                plan[(lane, offset % width)].append((offset // width, g))

        def byte(j):
            return beat.data[8 * j:8 * j + 8]

        first     = Signal(init=1)             # the current beat is a message's first
        position  = Signal(beats)              # one-hot: the current beat's index (0 beyond)
        group     = Signal(len(groups))        # one-hot: the current message's body group
        kind      = Signal(EventKind)          # the current message's kind, if its type is known
        alive     = Signal()                   # known type, not yet longer than it
        remaining = Signal(8)                  # its length less the bytes before this beat
        length    = Signal(16)                 # bytes before this beat (saturating)
        enable    = {key: Signal(name=f"enable_{key[0][0]}_"
                                      f"{'side' if key[0][1] is None else key[0][1]}_{key[1]}",
                                 init=any(k == 0 for k, _ in terms))
                     for key, terms in plan.items()}    # this beat's byte lane fills this lane
        work      = Signal(FeedEvent)          # fields captured from earlier beats (0 at first)
        captured  = Signal(FeedEvent)          # `work` with the current beat applied

        accept = self.i_stream.valid & self.i_stream.ready
        m.d.comb += self.i_stream.ready.eq(~out.valid | out.ready)

        m.d.comb += [
            captured.eq(work),
            captured.msg_type.eq(Mux(first, byte(0), work.msg_type)),
        ]
        by_lane: dict[Lane, list[int]] = defaultdict(list)
        for lane, j in plan:
            by_lane[lane].append(j)
        for (event_field, low), lanes in by_lane.items():
            picked = Signal(8, name=f"picked_{event_field}_{'side' if low is None else low}")
            hit = Cat(*(enable[((event_field, low), j)] for j in lanes))
            m.d.comb += picked.eq(0)
            for j in lanes:          # one-hot: at most one byte lane fills an event lane
                with m.If(enable[((event_field, low), j)]):
                    m.d.comb += picked.eq(byte(j))
            with m.If(hit.any()):
                if low is None:
                    m.d.comb += captured.side.eq(picked == ord(SIDE_SELL))
                else:
                    m.d.comb += getattr(captured, event_field)[low:low + 8].eq(picked)

        # the type byte's decode, used at once for the second beat's enables
        type_group = Signal(len(groups))
        type_kind  = Signal(EventKind)
        type_len   = Signal(8)
        with m.Switch(byte(0)):
            for type_char, spec in itch.SPECS.items():
                with m.Case(ord(type_char)):
                    m.d.comb += [
                        type_kind.eq(KIND_BY_TYPE.get(type_char, EventKind.Other)),
                        type_len.eq(spec.length),
                    ]
                    m.d.comb += [type_group[g].eq(1) for g, types in enumerate(groups)
                                 if type_char in types]
        group_next    = Signal.like(group)
        next_position = Signal.like(position)
        m.d.comb += [
            group_next.eq(Mux(first, type_group, group)),
            next_position.eq(Mux(first, 0b10, position << 1)),
        ]
        total = Signal(17)                     # bytes up to and including this beat
        m.d.comb += total.eq(length + beat.nbytes)
        saturated = Mux(total[16], LENGTH_MAX, total[:16])

        with m.If(accept & beat.last):
            m.d.sync += [
                first.eq(1),
                position.eq(0),
                length.eq(0),
                alive.eq(0),
                work.eq(0),
                out.valid.eq(1),
                self.messages.eq(self.messages + 1),
            ]
            m.d.sync += [en.eq(any(k == 0 for k, _ in plan[key])) for key, en in enable.items()]
            with m.If(~first & alive & (remaining == beat.nbytes)):
                m.d.sync += [
                    out.p.eq(captured),
                    out.p.kind.eq(kind),
                    out.p.length.eq(saturated),
                ]
            with m.Else():
                m.d.sync += [
                    out.p.eq(0),
                    out.p.kind.eq(EventKind.Malformed),
                    out.p.msg_type.eq(captured.msg_type),
                    out.p.length.eq(saturated),
                    self.malformed.eq(self.malformed + 1),
                ]
        with m.Else():
            with m.If(accept):
                m.d.sync += [
                    first.eq(0),
                    position.eq(next_position),
                    length.eq(saturated),
                    work.eq(captured),
                ]
                for key, en in enable.items():
                    terms = [next_position[k] & (1 if g is None else group_next[g])
                             for k, g in plan[key] if k < beats]
                    m.d.sync += en.eq(Cat(*terms).any())
                with m.If(first):
                    m.d.sync += [
                        group.eq(type_group),
                        kind.eq(type_kind),
                        alive.eq(type_len != 0),     # every known type is longer than a beat
                        remaining.eq(type_len - beat.nbytes),
                    ]
                with m.Else():
                    m.d.sync += [
                        alive.eq(alive & (remaining > beat.nbytes)),
                        remaining.eq(remaining - beat.nbytes),
                    ]
            with m.If(out.ready):
                m.d.sync += out.valid.eq(0)
        return m
