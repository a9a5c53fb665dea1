"""NASDAQ OUCH 5.0 order entry messages: the types seen in the sample captures.

Ref: NASDAQ OUCH 5.0 specification (message layouts and Appendix "Optional Appendage" tags);
checked byte for byte against ``../shared/data/pcap/nasdaq-ouch50/``.

Differences from OUCH 4.2: a u32 ``user_ref_num`` instead of the 14-byte token, u64 prices
(still 4 implied decimals), a 14-byte ``cl_ord_id``, and on some messages an optional
appendage: u16 total length, then entries of (length byte counting tag + value, tag, value).
Records keep the appendage as raw ``(tag, value bytes)`` pairs; :func:`options` reads them.
Covered: inbound enter order ``O`` and cancel ``X``; outbound accepted ``A`` and canceled ``C``.
"""

from __future__ import annotations

from typing import Any

from tickpath.protocol.ouch42 import Codec, Kind, OuchError, OuchMessage, build_specs

__all__ = [
    "OuchError", "INBOUND", "OUTBOUND", "INBOUND_RECORDS", "OUTBOUND_RECORDS",
    "OPTION_TAGS", "decode_inbound", "decode_outbound", "encode", "options", "appendage",
    "EnterOrder", "CancelOrder", "Accepted", "Canceled",
]

U, A, P = Kind.UINT, Kind.ALPHA, Kind.PRICE

_INBOUND_TABLE = [
    ("O", "enter_order", 47, [
        (1, 4, "user_ref_num", U), (5, 1, "side", A), (6, 4, "quantity", U),
        (10, 8, "symbol", A), (18, 8, "price", P), (26, 1, "time_in_force", A),
        (27, 1, "display", A), (28, 1, "capacity", A),
        (29, 1, "intermarket_sweep_eligibility", A), (30, 1, "cross_type", A),
        (31, 14, "cl_ord_id", A), (45, 2, "appendage_length", U)]),
    ("X", "cancel_order", 9, [(1, 4, "user_ref_num", U), (5, 4, "quantity", U)]),
]

_OUTBOUND_TABLE = [
    ("A", "accepted", 64, [
        (1, 8, "timestamp", U), (9, 4, "user_ref_num", U), (13, 1, "side", A),
        (14, 4, "quantity", U), (18, 8, "symbol", A), (26, 8, "price", P),
        (34, 1, "time_in_force", A), (35, 1, "display", A),
        (36, 8, "order_reference_number", U), (44, 1, "capacity", A),
        (45, 1, "intermarket_sweep_eligibility", A), (46, 1, "cross_type", A),
        (47, 1, "order_state", A), (48, 14, "cl_ord_id", A), (62, 2, "appendage_length", U)]),
    ("C", "canceled", 18, [
        (1, 8, "timestamp", U), (9, 4, "user_ref_num", U), (13, 4, "quantity", U),
        (17, 1, "reason", A)]),
]

INBOUND = build_specs("OUCH 5.0", "inbound", _INBOUND_TABLE, appendage_types=frozenset("O"))
OUTBOUND = build_specs("OUCH 5.0", "outbound", _OUTBOUND_TABLE, appendage_types=frozenset("A"))
_IN = Codec(INBOUND, __name__)
_OUT = Codec(OUTBOUND, __name__)
INBOUND_RECORDS = _IN.records
OUTBOUND_RECORDS = _OUT.records
EnterOrder = INBOUND_RECORDS["O"]
CancelOrder = INBOUND_RECORDS["X"]
Accepted = OUTBOUND_RECORDS["A"]
Canceled = OUTBOUND_RECORDS["C"]

# tag -> (name, size, kind); "signed" values are two's complement price offsets.
OPTION_TAGS: dict[int, tuple[str, int, str]] = {
    1: ("secondary_ord_ref_num", 8, "uint"),
    2: ("firm", 4, "alpha"),
    3: ("min_qty", 4, "uint"),
    4: ("customer_type", 1, "alpha"),
    5: ("max_floor", 4, "uint"),
    6: ("price_type", 1, "alpha"),
    7: ("peg_offset", 4, "signed"),
    9: ("discretion_price", 8, "uint"),
    10: ("discretion_price_type", 1, "alpha"),
    11: ("discretion_peg_offset", 4, "signed"),
    12: ("post_only", 1, "alpha"),
    13: ("random_reserves", 4, "uint"),
    14: ("route", 4, "alpha"),
    15: ("expire_time", 4, "uint"),
    16: ("trade_now", 1, "alpha"),
    17: ("handle_inst", 1, "alpha"),
    18: ("bbo_weight_indicator", 1, "alpha"),
    22: ("display_quantity", 4, "uint"),
    23: ("display_price", 8, "uint"),
    24: ("group_id", 2, "uint"),
    25: ("shares_located", 1, "alpha"),
    26: ("locate_broker", 4, "alpha"),
    27: ("side", 1, "alpha"),
    28: ("user_ref_idx", 1, "uint"),
}
_TAG_BY_NAME = {name: (tag, size, kind) for tag, (name, size, kind) in OPTION_TAGS.items()}


def options(msg: OuchMessage) -> dict[str, Any]:
    """The appendage as ``{name: value}``; unknown tags appear as ``tag_<n>`` with raw bytes."""
    out: dict[str, Any] = {}
    for tag, value in getattr(msg, "appendage", ()):
        known = OPTION_TAGS.get(tag)
        if known is None or len(value) != known[1]:
            out[f"tag_{tag}"] = value
            continue
        name, _size, kind = known
        if kind == "alpha":
            out[name] = value.decode("latin-1") if len(value) == 1 else \
                value.decode("latin-1").rstrip(" ")
        else:
            out[name] = int.from_bytes(value, "big", signed=kind == "signed")
    return out


def appendage(**values: Any) -> tuple[tuple[int, bytes], ...]:
    """Appendage entries from option names, e.g. ``appendage(firm="LIME", min_qty=100)``."""
    entries = []
    for name, v in values.items():
        if name not in _TAG_BY_NAME:
            raise OuchError(f"unknown OUCH 5.0 option {name!r}")
        tag, size, kind = _TAG_BY_NAME[name]
        if kind == "alpha":
            raw = v.encode("ascii")
            if len(raw) > size or (size == 1 and len(raw) != 1):
                raise OuchError(f"option {name}: {v!r} does not fit {size} bytes")
            raw = raw.ljust(size, b" ")
        else:
            try:
                raw = int(v).to_bytes(size, "big", signed=kind == "signed")
            except OverflowError:
                raise OuchError(f"option {name}: {v} does not fit {size} bytes") from None
        entries.append((tag, raw))
    return tuple(entries)


def decode_inbound(buf: bytes | bytearray | memoryview, offset: int = 0,
                   length: int | None = None) -> OuchMessage:
    """Decode a client-to-exchange message (SoupBinTCP unsequenced data)."""
    return _IN.decode(buf, offset, length)


def decode_outbound(buf: bytes | bytearray | memoryview, offset: int = 0,
                    length: int | None = None) -> OuchMessage:
    """Decode an exchange-to-client message (SoupBinTCP sequenced data)."""
    return _OUT.decode(buf, offset, length)


def encode(msg: OuchMessage) -> bytes:
    return msg.encode()
