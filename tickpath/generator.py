"""Synthetic, internally consistent ITCH 5.0 feeds, deterministic by seed.

Layouts come from :data:`tickpath.protocol.itch.SPECS` (NASDAQ TotalView-ITCH 5.0); framing is
NASDAQ BinaryFILE (u16 big-endian length before each message) or, for pcap, MoldUDP64 1.00 over
UDP multicast (``tickpath.protocol.moldudp64`` and ``tickpath.protocol.pcap``).

The day: ``S 'O'``, one ``R`` per symbol (locates 1..S), ``S 'S'``, ``S 'Q'``, the body, then
``S 'M'``, ``S 'E'``, ``S 'C'``; timestamps strictly increase from ``start_ns`` (09:30:00).
In the body every ``E``/``C``/``X``/``D``/``U`` names a live order and never takes more shares
than it has left; ``X`` is always partial (a full cancel is a ``D``); order references are
unique and increasing for the day (``U``'s new reference too); match numbers are unique and
increasing across ``E``/``C``/``P``/``Q``. Prices are whole cents at or above $1.00 around a
per-symbol mid that walks by one cent; bids sit below the mid and asks above it, except for
an occasional marketable-looking order priced through the mid.

Speed: one ``struct.Struct`` per type (BinaryFILE prefix included) packed into a preallocated
buffer, random numbers drawn in vectorised chunks by a numpy ``Generator`` (PCG64).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import struct
import time
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from tickpath.protocol import itch

__all__ = [
    "BOOK_TYPES", "DEFAULT_MIX", "MIX_TYPES", "GeneratorConfig", "GeneratorError", "PcapConfig",
    "Summary",
    "iter_binaryfile_chunks", "generate_binaryfile", "iter_messages", "pcap_frames",
    "write_binaryfile", "write_pcap", "parse_mix", "preamble_length", "TRAILER_EVENTS",
]

#: Types the body can hold, and a default mix loosely shaped like a NASDAQ day.
MIX_TYPES = "AFECXDUPHIQY"
BOOK_TYPES = "AFECXDU"
DEFAULT_MIX: dict[str, int] = {
    "A": 40, "F": 3, "E": 5, "C": 1, "X": 3, "D": 33, "U": 8,
    "P": 4, "H": 1, "I": 1, "Q": 1, "Y": 1,
}
PREAMBLE_EVENTS = ("S", "Q")          # after 'O' and the directory: system hours, market hours
TRAILER_EVENTS = ("M", "E", "C")      # end of market hours, of system hours, of messages
START_OF_MARKET_NS = 34_200 * 1_000_000_000
DAY_NS = 86_400 * 1_000_000_000
MIN_PRICE = 10_000                    # $1.00 in 4-decimal ticks
MAX_PRICE = 1_999_999_900             # $199,999.99: the largest whole-cent Price(4) NASDAQ takes
CENT = 100

_CHUNK = 1 << 16                      # messages per vectorised draw (part of the seed contract)


class GeneratorError(ValueError):
    """The configuration cannot make a valid day (found while generating)."""


def preamble_length(symbols: int) -> int:
    """Messages before the body: S 'O', the directory, then the market-hours events."""
    return 1 + symbols + len(PREAMBLE_EVENTS)


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. ``messages`` counts every message written, system events included.

    ``mix`` maps body types (:data:`MIX_TYPES`) to integer weights; types left out never
    appear. ``mean_interval_ns`` sets the gaps between timestamps (uniform up to twice it,
    with bursts). ``marketable_per_mille``
    is how many adds/replaces in a thousand are priced through the mid.
    """

    messages: int = 100_000
    symbols: int = 8
    seed: int = 0
    mix: Mapping[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_MIX))
    start_ns: int = START_OF_MARKET_NS
    mean_interval_ns: int = 2_000
    marketable_per_mille: int = 10

    def __post_init__(self):
        def integer(name, lo, hi=None):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an integer, not {v!r}")
            if v < lo or (hi is not None and v > hi):
                bound = f"at least {lo}" if hi is None else f"in {lo}..{hi}"
                raise ValueError(f"{name} must be {bound}, not {v}")

        integer("symbols", 1, 65_535)             # stock_locate is a u16, 0 means "none"
        integer("messages", preamble_length(self.symbols) + len(TRAILER_EVENTS))
        integer("seed", 0)
        integer("start_ns", 0, DAY_NS - 1)
        integer("mean_interval_ns", 1, 10**12)
        integer("marketable_per_mille", 0, 1000)
        mix = dict(self.mix)
        for t, w in mix.items():
            if t not in MIX_TYPES:
                raise ValueError(f"mix: {t!r} is not a generated type (choose from "
                                 f"{' '.join(MIX_TYPES)})")
            if isinstance(w, bool) or not isinstance(w, int) or w < 0:
                raise ValueError(f"mix: weight of {t!r} must be a non-negative integer, not {w!r}")
        if sum(mix.values()) == 0:
            raise ValueError("mix: at least one weight must be positive")
        if not (mix.get("A", 0) or mix.get("F", 0)) and any(mix.get(t, 0) for t in "ECXDU"):
            raise ValueError("mix: E, C, X, D and U need live orders, so A or F must be positive")
        object.__setattr__(self, "mix", {t: mix[t] for t in MIX_TYPES if mix.get(t, 0)})


def parse_mix(text: str) -> dict[str, int]:
    """``"A=40,D=30,E=5"`` -> ``{"A": 40, "D": 30, "E": 5}`` (the whole mix, not overrides)."""
    mix: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        t, sep, w = item.partition("=")
        t = t.strip()
        if not sep or not w.strip().isdigit():
            raise ValueError(f"mix: {item!r} is not TYPE=WEIGHT with a whole-number weight")
        if t in mix:
            raise ValueError(f"mix: {t!r} given twice")
        mix[t] = int(w)
    if not mix:
        raise ValueError("mix: empty")
    return mix


# --- packers derived from SPECS ----------------------------------------------------------

def _packer(t: str, args: str) -> tuple[struct.Struct, int]:
    """BinaryFILE-framed packer for type ``t``: ``>H`` length, then the spec's fields in order.

    ``args`` names the positional arguments the generator passes; it must be the spec's field
    order (with the 48-bit timestamp as ``ts_hi ts_lo``), so a spec change fails here, loudly.
    """
    spec = itch.SPECS[t]
    fmt = [">H"]
    names = []
    for f in spec.fields:
        if f.kind is itch.Kind.ALPHA:
            fmt.append(f"{f.size}s")
            names.append(f.name)
        elif f.size == 6:
            fmt.append("HI")
            names += [f.name + "_hi", f.name + "_lo"]
        else:
            fmt.append({1: "B", 2: "H", 4: "I", 8: "Q"}[f.size])
            names.append(f.name)
    assert names == args.split(), (t, names)
    st = struct.Struct("".join(fmt))
    assert st.size == spec.length + 2, t
    return st, spec.length


_HDR = "message_type stock_locate tracking_number timestamp_hi timestamp_lo "
_S, _LEN_S = _packer("S", _HDR + "event_code")
_R, _LEN_R = _packer("R", _HDR + (
    "stock market_category financial_status_indicator round_lot_size round_lots_only "
    "issue_classification issue_sub_type authenticity short_sale_threshold_indicator ipo_flag "
    "luld_reference_price_tier etp_flag etp_leverage_factor inverse_indicator"))
_A, _LEN_A = _packer("A", _HDR + "order_reference_number buy_sell_indicator shares stock price")
_F, _LEN_F = _packer(
    "F", _HDR + "order_reference_number buy_sell_indicator shares stock price attribution")
_E, _LEN_E = _packer("E", _HDR + "order_reference_number executed_shares match_number")
_C, _LEN_C = _packer("C", _HDR + (
    "order_reference_number executed_shares match_number printable execution_price"))
_X, _LEN_X = _packer("X", _HDR + "order_reference_number canceled_shares")
_D, _LEN_D = _packer("D", _HDR + "order_reference_number")
_U, _LEN_U = _packer("U", _HDR + (
    "original_order_reference_number new_order_reference_number shares price"))
_P, _LEN_P = _packer(
    "P", _HDR + "order_reference_number buy_sell_indicator shares stock price match_number")
_H, _LEN_H = _packer("H", _HDR + "stock trading_state reserved reason_code")
_I, _LEN_I = _packer("I", _HDR + (
    "paired_shares imbalance_shares imbalance_direction stock far_price near_price "
    "current_reference_price cross_type price_variation_indicator"))
_Q, _LEN_Q = _packer("Q", _HDR + "cross_shares stock cross_price match_number cross_type")
_Y, _LEN_Y = _packer("Y", _HDR + "stock reg_sho_action")
_MAX_FRAMED = 2 + max(s.length for s in itch.SPECS.values())

# --- names and shapes --------------------------------------------------------------------

_REAL_TICKERS = (
    "AAPL MSFT AMZN NVDA GOOGL META TSLA AVGO COST NFLX AMD PEP ADBE CSCO TMUS INTC CMCSA QCOM "
    "TXN AMGN INTU HON AMAT ISRG BKNG SBUX MDLZ GILD ADP VRTX REGN ADI LRCX PYPL MU PANW SNPS "
    "KLAC CDNS MELI ASML CSX MAR ORLY MNST CTAS ABNB FTNT CHTR MRVL NXPI PCAR WDAY KDP ROST "
    "DXCM PAYX AEP ODFL CPRT IDXX FAST BIIB EA CTSH EXC XEL VRSK GEHC CSGP ZS TTD DDOG ANSS "
    "TEAM ON DLTR WBD ILMN WBA SIRI ZM JD LCID RIVN ALC BOB QQQ SPY TQQQ SQQQ"
).split()
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MPIDS = tuple(m.encode() for m in ("VIRT", "CDRG", "GSCO", "MSCO", "UBSS", "JPMS", "NITE"))
_SIDES = (b"B", b"S")
_PRINTABLE = (b"N",) + (b"Y",) * 7          # most executions print to the tape
_DIRECTIONS = (b"B", b"S", b"N", b"O")
_CROSS_TYPES = (b"O", b"C", b"H", b"I")
_REG_SHO = (b"0", b"1", b"2")


def _stock_names(symbols: int, rng: np.random.Generator) -> list[str]:
    """Real tickers first, then made-up 3-5 letter ones; all unique, at most 8 characters."""
    names = list(_REAL_TICKERS[:symbols])
    seen = set(names)
    while len(names) < symbols:
        size = int(rng.integers(3, 6))
        name = "".join(_LETTERS[i] for i in rng.integers(0, 26, size))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _table(pairs: Iterable[tuple[int, int]], size: int = 256) -> tuple[int, ...]:
    """A lookup table of ``size`` entries: each value repeated in proportion to its weight,
    so one random byte draws from the distribution with integers only."""
    pairs = list(pairs)
    total = sum(w for _, w in pairs)
    out: list[int] = []
    for v, w in pairs:
        out += [v] * (w * size // total)
    out += [pairs[0][0]] * (size - len(out))
    return tuple(out)


# Distance from the mid in cents (near the mid far more often), order sizes (round lots mostly).
_DEPTH = _table((k, 240 // k) for k in range(1, 25))
_DEPTH_TICKS = tuple(d * CENT for d in _DEPTH)
_SHARES = _table([(100, 30), (200, 14), (300, 8), (400, 4), (500, 8), (1000, 6), (2000, 2),
                  (5000, 1), (1, 2), (10, 3), (25, 3), (50, 4), (75, 2), (150, 3), (250, 2)])


# --- the generator ---------------------------------------------------------------------------

def iter_binaryfile_chunks(config: GeneratorConfig) -> Iterator[bytes]:
    """The feed as consecutive BinaryFILE pieces (each whole messages); join them for the file."""
    rng = np.random.Generator(np.random.PCG64(config.seed))
    symbols = config.symbols
    names = _stock_names(symbols, rng)
    stocks = [n.encode().ljust(8) for n in names]
    locates = list(range(1, symbols + 1))
    # Mid in whole cents: a band ($5-20, $20-100, $100-500), then uniform inside it; integer
    # draws only, so the bytes do not depend on the platform's libm.
    bands = np.array([[500, 2_000], [2_000, 10_000], [10_000, 50_000]])[
        rng.integers(0, 3, symbols)]
    mids = (rng.integers(bands[:, 0], bands[:, 1]) * CENT).tolist()
    # Activity Zipf-like over the symbols, in a seeded order.
    activity = np.cumsum([max(1, 1_000_000 // (r + 1)) for r in range(symbols)])
    activity_order = rng.permutation(symbols)
    floor = MIN_PRICE + (max(_DEPTH) + 4) * CENT      # lowest mid: every price stays >= $1.00
    ceiling = MAX_PRICE - (max(_DEPTH) + 4) * CENT
    ts = config.start_ns
    cap = DAY_NS - 1

    buf = bytearray(_MAX_FRAMED * (symbols + 8))
    off = 0
    _S.pack_into(buf, off, _LEN_S, b"S", 0, 0, ts >> 32, ts & 0xFFFFFFFF, b"O")
    off += _LEN_S + 2
    for i in range(symbols):
        ts += 1
        tier = b"1" if mids[i] >= 300 * CENT else b"2"
        _R.pack_into(buf, off, _LEN_R, b"R", locates[i], 0, ts >> 32, ts & 0xFFFFFFFF,
                     stocks[i], b"Q", b"N", 100, b"N", b"C", b"Z ", b"P", b"N", b"N", tier,
                     b"N", 0, b"N")
        off += _LEN_R + 2
    for code in PREAMBLE_EVENTS:
        ts += 1
        _S.pack_into(buf, off, _LEN_S, b"S", 0, 0, ts >> 32, ts & 0xFFFFFFFF, code.encode())
        off += _LEN_S + 2
    yield bytes(buf[:off])

    mix_types = list(config.mix)
    kinds = np.array([MIX_TYPES.index(t) for t in mix_types])
    mix_cum = np.cumsum([config.mix[t] for t in mix_types])
    add_kind = MIX_TYPES.index("A" if config.mix.get("A") else "F")
    marketable = config.marketable_per_mille * 65_536 // 1000
    gap_span = 2 * config.mean_interval_ns

    live: list[int] = []                  # live references, for picking one at random
    orders: dict[int, list] = {}          # ref -> [index in live, symbol, side, price, shares]
    next_ref = 1
    match = 0
    body = config.messages - preamble_length(symbols) - len(TRAILER_EVENTS)
    buf = bytearray(_MAX_FRAMED * _CHUNK)

    def add_price(sym: int, side: int, bits: int) -> int:
        """A limit price for a new order: a cent step of the mid, then a level off it."""
        mid = mids[sym]
        step = bits & 7
        if step == 0 and mid > floor:
            mid -= CENT
        elif step == 1 and mid < ceiling:
            mid += CENT
        mids[sym] = mid
        depth = depth_ticks[(bits >> 3) & 0xFF]
        if (bits >> 11) & 0xFFFF < marketable:          # through the mid, marketable-looking
            depth = -((bits >> 27) & 1) * CENT - CENT
        return mid - depth if side == 0 else mid + depth

    # Locals, not globals, in the hot loop.
    pack_a, size_a = _A.pack_into, _A.size
    pack_f, size_f = _F.pack_into, _F.size
    pack_e, size_e = _E.pack_into, _E.size
    pack_c, size_c = _C.pack_into, _C.size
    pack_x, size_x = _X.pack_into, _X.size
    pack_d, size_d = _D.pack_into, _D.size
    pack_u, size_u = _U.pack_into, _U.size
    pack_p, size_p = _P.pack_into, _P.size
    pack_h, size_h = _H.pack_into, _H.size
    pack_i, size_i = _I.pack_into, _I.size
    pack_q, size_q = _Q.pack_into, _Q.size
    pack_y, size_y = _Y.pack_into, _Y.size
    sides, shares_table, depth_ticks, mpids = _SIDES, _SHARES, _DEPTH_TICKS, _MPIDS

    while body > 0:
        n = min(body, _CHUNK)
        body -= n
        kind_list = kinds[np.searchsorted(mix_cum, rng.integers(0, mix_cum[-1], n),
                                          side="right")].tolist()
        sym_list = activity_order[np.searchsorted(
            activity, rng.integers(0, activity[-1], n), side="right")].tolist()
        pick_list = rng.integers(0, 1 << 62, n, dtype=np.int64).tolist()
        bits_list = rng.integers(0, 1 << 62, n, dtype=np.int64).tolist()
        # Gaps uniform in 1..2*mean, a quarter of them squeezed 16-fold: bursts, in integers.
        gaps = rng.integers(1, gap_span, n, endpoint=True)
        gaps = np.where(rng.integers(0, 4, n) == 0, gaps // 16 + 1, gaps)
        stamps = np.cumsum(gaps) + ts
        ts = int(stamps[-1])
        if ts > cap:
            raise GeneratorError("the day overflows midnight: lower messages or "
                                 "mean_interval_ns, or start earlier")
        off = 0
        his = (stamps >> 32).tolist()
        los = (stamps & 0xFFFFFFFF).tolist()
        # kind is MIX_TYPES.index(type): 0 A, 1 F, 2 E, 3 C, 4 X, 5 D, 6 U, 7 P, 8 H, 9 I,
        # 10 Q, 11 Y. Bit fields of `bits` are disjoint within each branch.
        for kind, sym, pick, bits, hi, lo in zip(kind_list, sym_list, pick_list, bits_list,
                                                 his, los, strict=False):
            if kind > 1 and kind < 7 and not live:     # E C X D U with nothing live: add
                kind = add_kind
            if kind < 2:                                # A, F: a new order (add_price inlined)
                side = bits >> 61
                mid = mids[sym]
                step = bits & 7
                if step == 0 and mid > floor:
                    mid -= CENT
                    mids[sym] = mid
                elif step == 1 and mid < ceiling:
                    mid += CENT
                    mids[sym] = mid
                depth = depth_ticks[(bits >> 3) & 0xFF]
                if (bits >> 11) & 0xFFFF < marketable:
                    depth = -((bits >> 27) & 1) * CENT - CENT
                price = mid - depth if side == 0 else mid + depth
                shares = shares_table[(bits >> 28) & 0xFF]
                ref = next_ref
                next_ref += 1 + ((bits >> 36) & 3)
                orders[ref] = [len(live), sym, side, price, shares]
                live.append(ref)
                if kind == 0:
                    pack_a(buf, off, _LEN_A, b"A", sym + 1, 0, hi, lo, ref, sides[side],
                           shares, stocks[sym], price)
                    off += size_a
                else:
                    pack_f(buf, off, _LEN_F, b"F", sym + 1, 0, hi, lo, ref, sides[side],
                           shares, stocks[sym], price, mpids[(bits >> 40) % 7])
                    off += size_f
                continue
            if kind < 7:                                # E C X D U: an existing order
                ref = live[pick % len(live)]
                o = orders[ref]
                osym = o[1]
                left = o[4]
                if kind == 4 and left < 2:              # X must leave shares: delete instead
                    kind = 5
                if kind == 5 or kind == 6:              # D, U: the reference goes away
                    last = live.pop()
                    if last != ref:
                        live[o[0]] = last
                        orders[last][0] = o[0]
                    del orders[ref]
                    if kind == 5:
                        pack_d(buf, off, _LEN_D, b"D", osym + 1, 0, hi, lo, ref)
                        off += size_d
                        continue
                    side = o[2]
                    price = add_price(osym, side, bits)
                    shares = shares_table[(bits >> 28) & 0xFF]
                    new = next_ref
                    next_ref += 1 + ((bits >> 36) & 3)
                    orders[new] = [len(live), osym, side, price, shares]
                    live.append(new)
                    pack_u(buf, off, _LEN_U, b"U", osym + 1, 0, hi, lo, ref, new, shares,
                           price)
                    off += size_u
                    continue
                if kind == 4:                           # X: a partial cancel
                    cut = 1 + (bits >> 8) % (left - 1)
                    o[4] = left - cut
                    pack_x(buf, off, _LEN_X, b"X", osym + 1, 0, hi, lo, ref, cut)
                    off += size_x
                    continue
                # E, C: fill all of it half the time, else a lot-sized part of it
                fill = left if bits & 1 else min(left, shares_table[(bits >> 8) & 0xFF])
                match += 1 + ((bits >> 16) & 1)
                if fill == left:
                    last = live.pop()
                    if last != ref:
                        live[o[0]] = last
                        orders[last][0] = o[0]
                    del orders[ref]
                else:
                    o[4] = left - fill
                if kind == 2:
                    pack_e(buf, off, _LEN_E, b"E", osym + 1, 0, hi, lo, ref, fill, match)
                    off += size_e
                else:
                    price = o[3] + (((bits >> 20) & 1) * 2 - 1) * CENT * ((bits >> 21) & 1)
                    pack_c(buf, off, _LEN_C, b"C", osym + 1, 0, hi, lo, ref, fill, match,
                           _PRINTABLE[(bits >> 22) & 7], price)
                    off += size_c
                continue
            mid = mids[sym]
            if kind == 7:                               # P: a hidden order trades at the mid
                match += 1
                pack_p(buf, off, _LEN_P, b"P", sym + 1, 0, hi, lo, 0, b"B",
                       shares_table[bits & 0xFF], stocks[sym], mid, match)
                off += size_p
            elif kind == 8:                             # H: the symbol keeps trading
                pack_h(buf, off, _LEN_H, b"H", sym + 1, 0, hi, lo, stocks[sym], b"T",
                       b" ", b"    ")
                off += size_h
            elif kind == 9:                             # I: closing-cross imbalance
                paired = shares_table[bits & 0xFF] * 10
                imbalance = shares_table[(bits >> 8) & 0xFF]
                near = mid + (((bits >> 16) & 7) - 3) * CENT
                pack_i(buf, off, _LEN_I, b"I", sym + 1, 0, hi, lo, paired, imbalance,
                       _DIRECTIONS[(bits >> 20) & 3], stocks[sym], near, near, mid,
                       b"C", b"L")
                off += size_i
            elif kind == 10:                            # Q: a cross at the mid
                match += 1
                pack_q(buf, off, _LEN_Q, b"Q", sym + 1, 0, hi, lo,
                       shares_table[bits & 0xFF] * 10, stocks[sym], mid, match,
                       _CROSS_TYPES[(bits >> 8) & 3])
                off += size_q
            else:                                       # Y: Reg SHO state
                pack_y(buf, off, _LEN_Y, b"Y", sym + 1, 0, hi, lo, stocks[sym],
                       _REG_SHO[(bits & 0xFF) % 3])
                off += size_y
        yield bytes(buf[:off])

    tail = bytearray()
    for code in TRAILER_EVENTS:
        ts += 1
        if ts > cap:
            raise GeneratorError("the day overflows midnight: lower messages or "
                                 "mean_interval_ns, or start earlier")
        tail += _S.pack(_LEN_S, b"S", 0, 0, ts >> 32, ts & 0xFFFFFFFF, code.encode())
    yield bytes(tail)


def generate_binaryfile(config: GeneratorConfig) -> bytes:
    """The whole feed as one BinaryFILE image."""
    return b"".join(iter_binaryfile_chunks(config))


def iter_messages(config: GeneratorConfig) -> Iterator[bytes]:
    """The feed's raw ITCH messages (no framing), in order."""
    for chunk in iter_binaryfile_chunks(config):
        pos, end = 0, len(chunk)
        while pos < end:
            start = pos + 2
            pos = start + ((chunk[pos] << 8) | chunk[pos + 1])
            yield chunk[start:pos]


# --- output -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PcapConfig:
    """How the pcap carries the feed: MoldUDP64 ``session`` (≤ 10 ASCII characters), from
    ``src_ip:src_port`` to the multicast ``group:port``; capture time is midnight UTC of
    ``date`` plus each packet's last ITCH timestamp. Defaults: 127.0.0.1:30000 ->
    239.1.1.1:30001, session ``TICKPATH01``.
    """

    session: str = "TICKPATH01"
    group: str = "239.1.1.1"
    port: int = 30001
    src_ip: str = "127.0.0.1"
    src_port: int = 30000
    date: str = "2019-12-30"
    max_payload: int = 1472               # 1500-byte MTU - 20 IPv4 - 8 UDP

    def __post_init__(self):
        s = self.session
        if not isinstance(s, str) or not 1 <= len(s) <= 10 or not all(
                "\x20" <= c <= "\x7e" for c in s):
            raise ValueError(f"session must be 1..10 printable ASCII characters, not {s!r}")
        try:
            group = ipaddress.IPv4Address(self.group)
        except ValueError:
            raise ValueError(f"group must be an IPv4 address, not {self.group!r}") from None
        if not group.is_multicast:
            raise ValueError(f"group must be a multicast address (224.0.0.0/4), not {group}")
        try:
            ipaddress.IPv4Address(self.src_ip)
        except ValueError:
            raise ValueError(f"src_ip must be an IPv4 address, not {self.src_ip!r}") from None
        for name in ("port", "src_port"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65_535:
                raise ValueError(f"{name} must be in 1..65535, not {v!r}")
        try:
            datetime.date.fromisoformat(self.date)
        except (TypeError, ValueError):
            raise ValueError(f"date must be YYYY-MM-DD, not {self.date!r}") from None
        mp = self.max_payload
        if isinstance(mp, bool) or not isinstance(mp, int) or not 20 + 2 + 50 <= mp <= 1472:
            raise ValueError(f"max_payload must be in 72..1472, not {mp!r}")

    @property
    def midnight_ns(self) -> int:
        day = datetime.date.fromisoformat(self.date)
        return (day - datetime.date(1970, 1, 1)).days * DAY_NS


def _last_message_timestamp(packet: bytes) -> int:
    """ITCH timestamp of the last message of a MoldUDP64 packet (walks the block lengths)."""
    count = (packet[18] << 8) | packet[19]
    pos = 20
    for _ in range(count - 1):
        pos += 2 + ((packet[pos] << 8) | packet[pos + 1])
    return int.from_bytes(packet[pos + 7:pos + 13], "big")


def pcap_frames(config: GeneratorConfig, pcap_config: PcapConfig | None = None,
                stats: dict | None = None) -> Iterator[tuple[int, bytes]]:
    """``(capture time ns, Ethernet frame)`` for each MoldUDP64 packet of the feed; sequence
    numbers start at 1 and are consecutive. ``stats`` (if given) gets packets and messages."""
    from tickpath.protocol import moldudp64, pcap

    pcap_config = pcap_config or PcapConfig()
    midnight = pcap_config.midnight_ns
    packets = messages = 0
    for _, packet in moldudp64.pack_messages(pcap_config.session, 1, iter_messages(config),
                                             max_payload=pcap_config.max_payload):
        frame = pcap.udp_frame(packet, src_ip=pcap_config.src_ip, dst_ip=pcap_config.group,
                               sport=pcap_config.src_port, dport=pcap_config.port)
        packets += 1
        messages += (packet[18] << 8) | packet[19]
        yield midnight + _last_message_timestamp(packet), frame
    if stats is not None:
        stats.update(packets=packets, messages=messages)


@dataclasses.dataclass(frozen=True)
class Summary:
    messages: int
    packets: int            # 0 for BinaryFILE
    bytes: int
    seconds: float          # wall time, for the operator's eyes only

    def line(self, path) -> str:
        rate = self.messages / self.seconds if self.seconds > 0 else 0
        packets = f", {self.packets:,} packets" if self.packets else ""
        return (f"{path}: {self.messages:,} messages{packets}, {self.bytes:,} bytes in "
                f"{self.seconds:.2f} s ({rate:,.0f} msgs/s)")


def write_binaryfile(config: GeneratorConfig, path_or_file) -> Summary:
    """Write the feed as a BinaryFILE; the file is written chunk by chunk (bounded memory)."""
    start = time.perf_counter()
    size = 0
    own = not hasattr(path_or_file, "write")
    f = open(path_or_file, "wb") if own else path_or_file
    try:
        for chunk in iter_binaryfile_chunks(config):
            f.write(chunk)
            size += len(chunk)
    finally:
        if own:
            f.close()
    return Summary(config.messages, 0, size, time.perf_counter() - start)


def write_pcap(config: GeneratorConfig, path_or_file,
               pcap_config: PcapConfig | None = None) -> Summary:
    """Write the feed as a nanosecond pcap of MoldUDP64/UDP/IPv4/Ethernet frames."""
    from tickpath.protocol import pcap

    start = time.perf_counter()
    stats: dict = {}
    size = 0

    def counted():
        nonlocal size
        for ts, frame in pcap_frames(config, pcap_config, stats):
            size += 16 + len(frame)
            yield ts, frame

    pcap.write_pcap(path_or_file, counted(), nanosecond=True)
    return Summary(stats["messages"], stats["packets"], 24 + size, time.perf_counter() - start)
