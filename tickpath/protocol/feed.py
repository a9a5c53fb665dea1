"""The normalised feed event: what the ITCH decoder emits and the order table/book consume.

Defined once as Amaranth layouts (the gateware's stream payloads) together with the golden
model :func:`expected_event`. Which ITCH field feeds which event field is the table
:data:`EVENT_SOURCES`, resolved against :data:`tickpath.protocol.itch.SPECS` by
:func:`event_sources`; the gateware decoder and the model both derive from it.
"""

from typing import Any

from amaranth.lib import data, enum

from tickpath.protocol import itch

__all__ = [
    "EventKind", "FeedEvent", "ByteBeat", "KIND_BY_TYPE", "EVENT_SOURCES", "LENGTH_MAX",
    "SIDE_SELL",
    "event_sources", "expected_event", "as_dict", "pack_event", "unpack_event",
    "byte_beats", "pack_beat", "unpack_beat", "zero_event",
    "wide_beat", "wide_beats", "join_wide_beats",
]


class EventKind(enum.Enum, shape=4):
    Add              = 0   # A, F
    Execute          = 1   # E
    ExecuteWithPrice = 2   # C
    Cancel           = 3   # X
    Delete           = 4   # D
    Replace          = 5   # U
    Trade            = 6   # P
    Other            = 7   # any other valid message: passed up to the host
    Malformed        = 8   # unknown type, or a length that disagrees with the type


class FeedEvent(data.Struct):
    """One decoded ITCH message. Fields a message type lacks are zero; a Malformed event
    carries only ``kind``, ``msg_type`` (its first byte) and ``length``."""
    kind:            EventKind
    msg_type:        8
    stock_locate:    16
    tracking_number: 16
    timestamp:       48
    order_ref:       64    # U: the original reference
    new_order_ref:   64    # U only
    side:            1     # B=0, S=1
    shares:          32    # shares / executed_shares / canceled_shares
    price:           32    # 4 implied decimals, as on the wire
    match_number:    64
    length:          16    # bytes received, saturating


#: One byte of an ITCH message on an 8-bit stream; one message per packet, ``last`` on its end.
ByteBeat = data.StructLayout({"data": 8, "last": 1})



def wide_beat(width: int) -> data.StructLayout:
    """``width`` bytes of a byte stream per beat (``width`` 8: a 64-bit datapath).

    Lane ``i`` (bits ``8*i`` to ``8*i+7`` of ``data``) holds the ``i``-th byte in wire order;
    ``nbytes`` lanes from lane 0 are valid, which is ``width`` on every beat but a packet's
    last. ``first`` and ``last`` mark a packet's first and last beat (one packet: one ITCH
    message, or one MoldUDP64 packet). At ``width`` 1 the low bits (``data``, ``last``) are a
    :data:`ByteBeat`. Wider layouts carrying metadata add their fields after these.
    """
    if width < 1:
        raise ValueError(f"width must be at least 1 byte, not {width}")
    return data.StructLayout({"data": 8 * width, "last": 1, "first": 1,
                              "nbytes": width.bit_length()})


def wide_beats(raw: bytes, width: int) -> list[dict[str, int]]:
    """The :func:`wide_beat` beats of one packet ``raw`` (invalid lanes zero)."""
    if not raw:
        raise ValueError("a packet has at least one byte")
    chunks = [raw[i:i + width] for i in range(0, len(raw), width)]
    return [{"data": int.from_bytes(c, "little"), "nbytes": len(c), "first": int(i == 0),
             "last": int(i == len(chunks) - 1)} for i, c in enumerate(chunks)]


def join_wide_beats(beats: list[dict[str, int]], width: int) -> list[bytes]:
    """Packets from :func:`wide_beat` beats, checking the framing: ``first`` exactly on a
    packet's first beat, ``nbytes`` = ``width`` on all but a packet's last beat, no trailing
    beats."""
    out: list[bytes] = []
    current: list[bytes] = []
    for i, beat in enumerate(beats):
        if bool(beat["first"]) != (not current):
            raise ValueError(f"beat {i}: first={beat['first']} "
                             f"{'inside' if current else 'at the start of'} a packet")
        n = beat["nbytes"]
        if not 1 <= n <= width or (n != width and not beat["last"]):
            raise ValueError(f"beat {i}: nbytes {n} (width {width}, last {beat['last']})")
        current.append((beat["data"] & ((1 << 8 * n) - 1)).to_bytes(n, "little"))
        if beat["last"]:
            out.append(b"".join(current))
            current = []
    if current:
        raise ValueError(f"{len(current)} beats after the last packet's end")
    return out


LENGTH_MAX = (1 << 16) - 1

KIND_BY_TYPE: dict[str, EventKind] = {
    "A": EventKind.Add, "F": EventKind.Add,
    "E": EventKind.Execute, "C": EventKind.ExecuteWithPrice,
    "X": EventKind.Cancel, "D": EventKind.Delete, "U": EventKind.Replace,
    "P": EventKind.Trade,
}

#: Event field -> the ITCH field names that feed it (a type has at most one of each).
EVENT_SOURCES: dict[str, tuple[str, ...]] = {
    "stock_locate":    ("stock_locate",),
    "tracking_number": ("tracking_number",),
    "timestamp":       ("timestamp",),
    "order_ref":       ("order_reference_number", "original_order_reference_number"),
    "new_order_ref":   ("new_order_reference_number",),
    "side":            ("buy_sell_indicator",),
    "shares":          ("shares", "executed_shares", "canceled_shares"),
    "price":           ("price", "execution_price"),
    "match_number":    ("match_number",),
}

#: The ``buy_sell_indicator`` byte that makes ``side`` 1.
SIDE_SELL = "S"


def event_sources(spec: itch.MessageSpec) -> dict[str, itch.Field]:
    """Event field -> the ITCH field of ``spec`` it is taken from."""
    by_name = {f.name: f for f in spec.fields}
    out: dict[str, itch.Field] = {}
    for event_field, names in EVENT_SOURCES.items():
        found = [by_name[n] for n in names if n in by_name]
        if len(found) > 1:
            raise AssertionError(f"ITCH {spec.type!r} feeds {event_field} twice: {found}")
        if found:
            if event_field != "side" and 8 * found[0].size > _width(event_field):
                raise AssertionError(f"ITCH {spec.type!r} {found[0].name} is wider than "
                                     f"{event_field}")
            out[event_field] = found[0]
    return out


def _width(event_field: str) -> int:
    return data.Layout.cast(FeedEvent)[event_field].width


_SOURCES_BY_TYPE = {t: event_sources(spec) for t, spec in itch.SPECS.items()}
_ZERO_FIELDS = [name for name, _ in data.Layout.cast(FeedEvent)]


def zero_event() -> dict[str, Any]:
    d: dict[str, Any] = dict.fromkeys(_ZERO_FIELDS, 0)
    d["kind"] = EventKind.Add
    return d


def expected_event(raw: bytes) -> dict[str, Any]:
    """The event the decoder must emit for one received message ``raw`` (the golden model)."""
    if not raw:
        raise ValueError("an ITCH message has at least its type byte; got 0 bytes")
    event = zero_event()
    event["msg_type"] = raw[0]
    event["length"] = min(len(raw), LENGTH_MAX)
    spec = itch.SPECS.get(chr(raw[0]))
    if spec is None or spec.length != len(raw):
        event["kind"] = EventKind.Malformed
        return event
    msg = itch.decode(raw, 0, len(raw))
    event["kind"] = KIND_BY_TYPE.get(spec.type, EventKind.Other)
    for event_field, source in _SOURCES_BY_TYPE[spec.type].items():
        value = getattr(msg, source.name)
        if event_field == "side":
            value = int(value == SIDE_SELL)
        event[event_field] = value
    return event


def as_dict(c: data.Const) -> dict[str, Any]:
    """Readable view of a layout constant: field -> value (enums as members)."""
    return {name: c[name] for name, _ in data.Layout.cast(c.shape())}


def pack_event(event: dict[str, Any]) -> int:
    return FeedEvent.const(event).as_bits()


def unpack_event(bits: int) -> dict[str, Any]:
    return as_dict(FeedEvent.from_bits(bits))


def byte_beats(raw: bytes) -> list[dict[str, int]]:
    """The stream beats of one message."""
    last = len(raw) - 1
    return [{"data": b, "last": int(i == last)} for i, b in enumerate(raw)]


def pack_beat(beat: dict[str, int]) -> int:
    return ByteBeat.const(beat).as_bits()


def unpack_beat(bits: int) -> dict[str, int]:
    return as_dict(ByteBeat.from_bits(bits))
