"""The whole feed path (:class:`tickpath.hdl.feed_path.FeedPath`: Ethernet frames -> NetRx ->
MoldSequencer -> ItchDecoder -> OrderTable -> Book) on the fast Verilator harness.

:func:`run` programs the destination filter and reads every counter through the register bank
(:class:`tickpath.protocol.regmap.RegisterClient` over the harness's bus ports, as the host
link will), streams the frames in at one byte a cycle, holds ``host_stream`` and ``o_event``
ready, collects the book updates with their ingress/egress stamps, then reads every subscribed
side back through ``query``. The configuration is the feed-book harness's default
(:data:`tickpath.sim.harness.feed_book.DEFAULT_CONFIG`), so the two engines hold the same book.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
from amaranth.lib import data

from tickpath.protocol.bookfeed import book_update_layout
from tickpath.protocol.netfeed import MessageBeat, ip_int
from tickpath.protocol.regmap import RegisterClient
from tickpath.sim.harness.feed_book import DEFAULT_CONFIG, SimBook, SimBookError, _query

__all__ = ["FeedPathRun", "feed_path_harness", "run", "frame_beats"]


@dataclasses.dataclass
class FeedPathRun:
    book: SimBook
    registers: dict[str, int]
    updates: int
    latency: dict[str, int]         # egress - ingress of the book updates: min, max, mean*1000
    host: list[tuple[int, bytes]]   # (sequence, message) from host_stream, when it was the sink
    states: dict[int, str]          # stock locate -> trading state read back ("" none)
    cycles: int
    beats: int
    seconds: float


def feed_path_harness(**overrides):
    from tickpath.hdl.feed_path import FeedPath, feed_path_registers
    from tickpath.sim.harness.build import build, source_key
    config = {k: v for k, v in DEFAULT_CONFIG.items() if k not in ("source",)}
    config.update(overrides)
    key = f"{sorted(config.items())}\0{source_key('tickpath.hdl', 'tickpath.protocol')}"
    return (build(lambda: FeedPath(**config), "feed_path", key=key), config,
            feed_path_registers(config["slots"]))


def frame_beats(frames: Sequence[tuple[bytes, bool]]) -> np.ndarray:
    """FrameBeat payloads (``data | last << 8 | fcs_bad << 9``) of whole frames."""
    joined = np.frombuffer(b"".join(f for f, _ in frames), dtype=np.uint8).astype(np.uint16)
    ends = np.cumsum([len(f) for f, _ in frames]) - 1
    joined[ends] |= 0x100
    bad = np.array([b for _, b in frames], dtype=bool)
    joined[ends[bad]] |= 0x200
    return joined


def _client(h, regmap) -> RegisterClient:
    def read(address):
        h.set("bus__addr", address)
        h.set("bus__r_stb", 1)
        h.step()
        h.set("bus__r_stb", 0)
        return h.get("bus__r_data")

    def write(address, value):
        h.set("bus__addr", address)
        h.set("bus__w_data", value)
        h.set("bus__w_stb", 1)
        h.step()
        h.set("bus__w_stb", 0)
    return RegisterClient(regmap, read, write)


def run(frames: Sequence[tuple[bytes, bool]], messages: Sequence[bytes],
        filters: Sequence[tuple[str, int]], *, sink: str = "o_stream",
        names: dict[str, int] | None = None, states_of: Sequence[int] = (),
        checkpoints: Sequence[int] = (), on_checkpoint=None, collect: bool = True,
        **overrides) -> FeedPathRun:
    """Frames through the feed path; ``messages`` (the ITCH messages they carry, in sequence
    order) name the stocks in the book lines, as ``tickpath book`` does. ``sink``: the output
    collected, ``"o_stream"`` (book updates: their latency) or ``"host_stream"`` (the host
    messages); the other is held ready and counted only. ``names`` (stock -> slot): subscribe
    by name only (the gateware starts with no subscription; ``R`` messages subscribe); the
    book is then keyed by the locates the ``R`` messages gave those names. ``states_of``:
    locates whose trading state is read back. After each of ``checkpoints`` (frame counts), the
    input pauses, the path drains and ``on_checkpoint(frames_sent, book)`` gets the book read
    back as it stands. ``collect=False`` counts the sink's beats without keeping them (soaks).
    """
    from tickpath.sim.harness.feed_book import _chunks
    if names is not None:
        overrides["subscriptions"] = {}
    h, config, regmap = feed_path_harness(**overrides)
    book = SimBook(depth=config["depth"], config=config)
    for _ in _chunks(messages, book):       # type counts and stock names
        pass
    started = time.perf_counter()
    with h:
        h.reset()
        regs = _client(h, regmap)
        for index, (group, port) in enumerate(filters):
            regs.write_many({"filter_group": ip_int(group), "filter_port": port})
            regs.write("filter_commit", index | 1 << 4)
        _write_names(regs, names or {})
        h.step(4)
        h.set("host_stream__ready", 1)
        h.set("o_stream__ready", 1)
        h.set("o_event__ready", 1)
        ends = sorted({*(c for c in checkpoints if 0 < c < len(frames)), len(frames)})
        payloads, taken, nbeats, at = [], 0, 0, 0
        for end in ends:
            beats = frame_beats(frames[at:end])
            nbeats += len(beats)
            # drain: NetRx holds a whole frame (up to ~1500 cycles) before its first byte leaves
            r = h.stream("i_stream", beats, sink, drain=4096, collect=None if collect else 0,
                         max_cycles=100 * len(beats) + 10_000)
            if r.timed_out or r.sent != len(beats):
                raise SimBookError(f"the feed path stalled: {r.sent} of {len(beats)} bytes "
                                   f"taken in {r.cycles} cycles")
            taken += r.taken
            if collect:
                payloads += r.payloads()
            if on_checkpoint is not None and end in checkpoints:
                snapshot = SimBook(depth=config["depth"], config=config, stocks=book.stocks)
                _query(h, snapshot, config)
                if names is not None:
                    _rekey(snapshot, names)
                on_checkpoint(end, snapshot)
            at = end
        stamps, host = np.zeros(0, dtype=np.int64), []
        if sink == "o_stream":
            layout = data.Layout.cast(book_update_layout(config["depth"]))
            ing, egr = layout["ingress"], layout["egress"]
            stamps = np.array([(p >> egr.offset & 0xFFFF_FFFF) - (p >> ing.offset & 0xFFFF_FFFF)
                               for p in payloads], dtype=np.int64)
        else:
            host = _messages(payloads)
        registers = regs.read_all()
        states = {}
        for locate in states_of:
            regs.write("state_locate", locate)
            h.step()                # the state memory answers the cycle after its address
            code = regs.read("trading_state")
            states[locate] = chr(code) if code else ""
        _query(h, book, config)
        book.cycles = h.cycle
    book.beats = nbeats
    for slot in range(config["slots"]):
        if registers[f"invalid_{slot // 64}"] >> slot % 64 & 1:
            book.flagged.setdefault(slot + 1, "invalid")
    if names is not None:
        _rekey(book, names)
    latency = ({"min": int(stamps.min()), "max": int(stamps.max()),
                "mean_milli": int(stamps.mean() * 1000)} if len(stamps) else {})
    return FeedPathRun(book, registers, taken, latency, host, states, book.cycles,
                       nbeats, time.perf_counter() - started)


def _write_names(regs: RegisterClient, names: dict[str, int]) -> None:
    from tickpath.hdl.feed_path import name_index, name_key
    taken: dict[int, str] = {}
    for stock, slot in names.items():
        index = name_index(stock)
        if index in taken:
            raise ValueError(f"stocks {taken[index]!r} and {stock!r} share name table entry "
                             f"{index}: subscribe one of them by locate")
        taken[index] = stock
        regs.write("name", name_key(stock))
        regs.write("name_commit", slot | 1 << 8)


def _rekey(book: SimBook, names: dict[str, int]) -> None:
    """Slot ``s`` was read back as locate ``s + 1``: key it by the locate whose ``R`` named
    the stock subscribed to ``s`` (slots no ``R`` named are dropped)."""
    slot_stock = {slot: stock for stock, slot in names.items()}
    locate_of = {stock: loc for loc, stock in book.stocks.items()}
    for attr in ("sides", "held", "flagged"):
        old = getattr(book, attr)
        new = {}
        for key, value in old.items():
            stock = slot_stock.get(key - 1)
            if stock in locate_of:
                new[locate_of[stock]] = value
        setattr(book, attr, new)


def _messages(payloads: list[int]) -> list[tuple[int, bytes]]:
    """MessageBeat payloads -> (sequence, message bytes)."""
    fields = {name: (f.offset, f.width) for name, f in data.Layout.cast(MessageBeat)}
    out, current = [], bytearray()
    for p in payloads:
        current.append(p & 0xFF)
        if p >> fields["last"][0] & 1:
            off, width = fields["sequence"]
            out.append((p >> off & ((1 << width) - 1), bytes(current)))
            current = bytearray()
    return out
