"""The whole feed path: Ethernet frames in, book updates, host messages and gap events out,
every counter and control behind one register bank.

::

    frames -> NetRx -> MoldSequencer -+-> FeedBook (ItchDecoder -> OrderTable -> Book) -> updates
                          |           +-> host messages (every type the book does not decode)
                          +-> gap / end-of-session events

Host messages: an ITCH message whose type is none of the decoded ones (A F E C X D U P) -- the
system, directory, trading-state and auction messages -- is copied, intact and with its
MoldUDP64 sequence number, into a FIFO for the host (``host_stream``), while it also goes
through the decoder (which counts it). A message that finds less room in the FIFO than the
longest ITCH message is not copied and counted in ``host_overflow`` (decided at its first
byte, so the host never sees part of a message); the book path never waits for the host.

Directory snooping (on the same bytes, costing the book path nothing):

* **Trading state**: every well-formed ``H`` message sets its stock locate's trading state
  (``H`` halted, ``P`` paused, ``Q`` quotation only, ``T`` trading), held per locate in block
  RAM; the host writes ``state_locate`` and reads ``trading_state`` (the ITCH character, 0 while
  no ``H`` has named that locate).
* **Subscription by name**: the host writes (stock name -> slot) entries into a name table
  (``name``, then ``name_commit``); an ``R`` message whose stock is in the table subscribes its
  locate to that slot (``name_subscribed`` counts them). The table is direct-mapped by
  :func:`name_index` (the order table's reference hash over the 8 name bytes), so a lookup is
  one block RAM read; the host refuses two names that share an index
  (:func:`name_index` is the one definition both sides use).

Timestamps: each book update carries ``ingress``, the cycle its message's frame had fully
arrived at ``NetRx`` (``NetRx`` holds a frame until its FCS is known, so no byte of it can move
earlier), and ``egress``, the cycle the update is first valid; both count cycles since reset.

Registers: :data:`REGISTERS` (a :class:`~tickpath.protocol.regmap.RegisterMap`). Filter entries
are written as ``filter_group``, ``filter_port``, then ``filter_commit`` (index and enable);
``subscribe`` writes one subscription; ``clear`` clears a slot's ``invalid`` flag.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickpath.hdl import book as book_module
from tickpath.hdl import order_table as table_module
from tickpath.hdl.feed_book import FeedBook
from tickpath.hdl.mold_sequencer import MoldSequencer
from tickpath.hdl.net_rx import NetRx
from tickpath.hdl.order_table import reference_hash
from tickpath.hdl.regs import RegisterBank, bus_signature
from tickpath.protocol import itch
from tickpath.protocol.bookfeed import SLOT_WIDTH, BookQuery, book_update_layout, bucket_of
from tickpath.protocol.feed import KIND_BY_TYPE
from tickpath.protocol.netfeed import (
    FILTER_INDEX_WIDTH,
    RX_COUNTERS,
    SEQ_COUNTERS,
    TIMESTAMP_WIDTH,
    FrameBeat,
    MessageBeat,
    SeqEvent,
)
from tickpath.protocol.regmap import RegisterMap

__all__ = ["FeedPath", "HOST_TYPES", "TRADING_STATES", "NAME_BITS", "feed_path_registers",
           "name_key", "name_index"]

#: ITCH types passed up to the host: every type the decoder does not turn into a book event.
HOST_TYPES = tuple(t for t in itch.SPECS if t not in KIND_BY_TYPE)
#: Trading states of ``H`` messages, by their code in the per-locate memory (0: none seen).
TRADING_STATES = "HPQT"
#: The name table has ``2**NAME_BITS`` entries.
NAME_BITS = 9

_H, _R = itch.SPECS["H"], itch.SPECS["R"]
_LOCATE = _H.field("stock_locate").offset
_STOCK = _H.field("stock").offset
assert (_LOCATE, _STOCK) == (_R.field("stock_locate").offset, _R.field("stock").offset)
_STATE = _H.field("trading_state").offset


def name_key(stock: str) -> int:
    """The 8 ITCH stock bytes (space padded) as the big-endian integer the gateware holds."""
    raw = stock.encode("ascii").ljust(8)
    if len(raw) != 8:
        raise ValueError(f"stock name {stock!r} is longer than 8 characters")
    return int.from_bytes(raw, "big")


def name_index(stock: str) -> int:
    """The name table entry of ``stock``."""
    return bucket_of(name_key(stock), NAME_BITS)


#: The longest ITCH message: the room a message needs in the host FIFO.
LONGEST = max(spec.length for spec in itch.SPECS.values())


def feed_path_registers(slots: int = 256) -> RegisterMap:
    """The feed path's register map (``slots`` sets the width of the ``invalid`` words)."""
    fields = [("cycle", TIMESTAMP_WIDTH, "r", "cycles since reset")]
    fields += [(f"rx_{n}", 32, "r", f"NetRx: {n.replace('_', ' ')}") for n in RX_COUNTERS]
    fields += [(f"seq_{n}", 32, "r", f"MoldSequencer: {n.replace('_', ' ')}")
               for n in SEQ_COUNTERS]
    fields += [("seq_expected", 64, "r", "next MoldUDP64 sequence number to deliver"),
               ("seq_high", 64, "r", "end of the sequences known to exist")]
    fields += [("dec_messages", 32, "r", "ITCH messages decoded"),
               ("dec_malformed", 32, "r", "ITCH messages of an unknown type or wrong length")]
    fields += [(f"table_{n}", 32, "r", f"order table: {n.replace('_', ' ')}")
               for n in (*table_module.COUNTERS, "occupancy")]
    fields += [(f"book_{n}", 32, "r", f"book: {n.replace('_', ' ')}")
               for n in book_module.COUNTERS]
    fields += [("host_messages", 32, "r", "messages copied to the host"),
               ("host_overflow", 32, "r", "messages not copied: the host FIFO was full"),
               ("name_subscribed", 32, "r", "R messages that subscribed a locate by name"),
               ("trading_state", 8, "r", "trading state of state_locate (ITCH char, 0: none)")]
    fields += [(f"invalid_{k}", min(64, slots - 64 * k), "r",
                f"symbols {64 * k}..{min(slots, 64 * k + 64) - 1} flagged invalid")
               for k in range(-(-slots // 64))]
    fields += [
        ("session_config", 80, "rw", "MoldUDP64 session to follow (with session_check)"),
        ("session_check", 1, "rw", "1: take only session_config; 0: latch the first session"),
        ("filter_group", 32, "rw", "destination filter: IPv4 group of the next commit"),
        ("filter_port", 16, "rw", "destination filter: UDP port of the next commit"),
        ("filter_commit", FILTER_INDEX_WIDTH + 1, "w",
         "write filter entry (bits 3:0 index, bit 4 enable) from filter_group/port"),
        ("subscribe", 16 + SLOT_WIDTH + 1, "w",
         "subscription: bits 15:0 stock locate, 23:16 slot, 24 enable"),
        ("clear", SLOT_WIDTH, "w", "clear the invalid flag of a slot"),
        ("state_locate", 16, "rw", "stock locate whose trading_state is read"),
        ("name", 64, "rw", "name table: the stock (8 bytes, big-endian) of the next commit"),
        ("name_commit", SLOT_WIDTH + 1, "w",
         "write the name table entry of name: bits 7:0 slot, bit 8 enable"),
    ]
    return RegisterMap("feed_path", fields)


class FeedPath(wiring.Component):
    """Frames to book updates. Parameters are :class:`~tickpath.hdl.feed_book.FeedBook`'s plus
    ``host_depth`` (host FIFO bytes) and ``buffer_depth`` (NetRx's frame buffer).

    Members
    -------
    i_stream : ``In(stream.Signature(FrameBeat))``
    o_stream : ``Out(stream.Signature(book_update_layout(depth)))``
    host_stream : ``Out(stream.Signature(MessageBeat))``
    o_event : ``Out(stream.Signature(SeqEvent))``
    query : ``In(stream.Signature(BookQuery))``
        As on the book: one update of a side as it stands, on ``o_stream``.
    bus : ``In(bus_signature())``
        The register bank (:attr:`registers`).
    """

    def __init__(self, *, capacity=8192, ways=8, slots=256, locate_bits=14, levels=32, depth=8,
                 host_depth=1024, buffer_depth=2048, subscriptions=None):
        self._feed = FeedBook(source="messages", capacity=capacity, ways=ways, slots=slots,
                              locate_bits=locate_bits, levels=levels, depth=depth,
                              subscriptions=subscriptions)
        self._locate_bits = locate_bits
        self._host_depth = host_depth
        self._buffer_depth = buffer_depth
        self._slots = slots
        self.registers = feed_path_registers(slots)
        super().__init__({
            "i_stream":    In(stream.Signature(FrameBeat)),
            "o_stream":    Out(stream.Signature(book_update_layout(depth))),
            "host_stream": Out(stream.Signature(MessageBeat)),
            "o_event":     Out(stream.Signature(SeqEvent)),
            "query":       In(stream.Signature(BookQuery)),
            "bus":         In(bus_signature()),
        })

    feed = property(lambda self: self._feed)

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = NetRx(buffer_depth=self._buffer_depth)
        m.submodules.seq = seq = MoldSequencer()
        m.submodules.feed = feed = self._feed
        m.submodules.regs = regs = RegisterBank(self.registers)
        m.submodules.host = host = fifo.SyncFIFOBuffered(
            width=MessageBeat.size, depth=self._host_depth)

        wiring.connect(m, wiring.flipped(self.bus), regs.bus)
        wiring.connect(m, wiring.flipped(self.i_stream), rx.i_stream)
        wiring.connect(m, rx.o_stream, seq.i_stream)
        wiring.connect(m, seq.o_event, wiring.flipped(self.o_event))
        wiring.connect(m, feed.o_stream, wiring.flipped(self.o_stream))

        # sequencer -> book path, with a copy of host messages (never waiting for the host)
        beat = seq.o_stream
        first = Signal(init=1)          # the next beat starts a message
        copying = Signal()
        host_type = Signal()
        m.d.comb += host_type.eq(0)
        with m.Switch(beat.p.data):
            for t in HOST_TYPES:
                with m.Case(ord(t)):
                    m.d.comb += host_type.eq(1)
        room = Signal()
        m.d.comb += room.eq(host.level <= self._host_depth - LONGEST)
        copy = Signal()
        m.d.comb += copy.eq(Mux(first, host_type & room, copying))
        took = Signal()
        m.d.comb += [
            feed.i_stream.valid.eq(beat.valid),
            feed.i_stream.p.eq(beat.p),
            beat.ready.eq(feed.i_stream.ready),
            took.eq(beat.valid & beat.ready),
            host.w_en.eq(took & copy),
            host.w_data.eq(beat.p.as_value()),
        ]
        host_messages, host_overflow = Signal(32), Signal(32)
        with m.If(took):
            m.d.sync += first.eq(beat.p.last)
            with m.If(first):
                m.d.sync += copying.eq(host_type & room & ~beat.p.last)
                with m.If(host_type & room):
                    m.d.sync += host_messages.eq(host_messages + 1)
                with m.If(host_type & ~room):
                    m.d.sync += host_overflow.eq(host_overflow + 1)
            with m.Elif(beat.p.last):
                m.d.sync += copying.eq(0)
        out = self.host_stream
        m.d.comb += [
            out.valid.eq(host.r_rdy),
            out.p.eq(host.r_data),
            host.r_en.eq(out.ready),
        ]

        # directory snooping: H -> trading state, R -> subscription by name
        index = Signal(6)               # byte index in the message (saturates)
        mtype = Signal(8)
        locate = Signal(16)
        stock = Signal(64)
        state = Signal(8)
        byte = beat.p.data
        with m.If(took):
            m.d.sync += index.eq(Mux(beat.p.last, 0, Mux(index == 63, 63, index + 1)))
            with m.If(first):
                m.d.sync += mtype.eq(byte)
            with m.If((index == _LOCATE) | (index == _LOCATE + 1)):
                m.d.sync += locate.eq(Cat(byte, locate[:8]))
            with m.If((index >= _STOCK) & (index < _STOCK + 8)):
                m.d.sync += stock.eq(Cat(byte, stock[:56]))
            with m.If(index == _STATE):
                m.d.sync += state.eq(byte)

        m.submodules.states = states = Memory(shape=3, depth=1 << self._locate_bits, init=[])
        st_w, st_r = states.write_port(), states.read_port(domain="sync")
        code = Signal(3)
        for n, c in enumerate(TRADING_STATES, 1):
            with m.If(state == ord(c)):
                m.d.comb += code.eq(n)
        h_end = took & beat.p.last & (mtype == ord("H")) & (index == _H.length - 1) & ~first
        m.d.comb += [
            st_w.addr.eq(locate), st_w.data.eq(code), st_w.en.eq(h_end & (code != 0)),
            st_r.addr.eq(regs.state_locate), st_r.en.eq(1),
        ]
        char = Signal(8)
        with m.Switch(st_r.data):
            for n, c in enumerate(TRADING_STATES, 1):
                with m.Case(n):
                    m.d.comb += char.eq(ord(c))
        m.d.comb += regs.trading_state.eq(char)

        names = Memory(shape=data.StructLayout({"name": 64, "slot": SLOT_WIDTH, "valid": 1}),
                       depth=1 << NAME_BITS, init=[])
        m.submodules.names = names
        nm_w, nm_r = names.write_port(), names.read_port(domain="sync")
        nc = regs.name_commit
        m.d.comb += [
            nm_w.addr.eq(reference_hash(regs.name, NAME_BITS)),
            nm_w.data.name.eq(regs.name), nm_w.data.slot.eq(nc[:SLOT_WIDTH]),
            nm_w.data.valid.eq(nc[SLOT_WIDTH]), nm_w.en.eq(regs.name_commit_stb),
            # the stock is whole once its last byte is in: look it up while the message goes on
            nm_r.addr.eq(reference_hash(stock, NAME_BITS)), nm_r.en.eq(1),
        ]
        r_end = took & beat.p.last & (mtype == ord("R")) & (index == _R.length - 1) & ~first
        found = Signal()
        m.d.comb += found.eq(nm_r.data.valid & (nm_r.data.name == stock))
        by_name = Signal(16 + SLOT_WIDTH + 1)       # a Subscription: locate, slot, enable
        by_name_stb = Signal()
        m.d.sync += by_name_stb.eq(r_end & found)
        with m.If(r_end & found):
            m.d.sync += by_name.eq(Cat(locate, nm_r.data.slot, 1))
        name_subscribed = Signal(32)
        with m.If(by_name_stb):
            m.d.sync += name_subscribed.eq(name_subscribed + 1)
        m.d.comb += regs.name_subscribed.eq(name_subscribed)

        # registers
        m.d.comb += [
            regs.cycle.eq(rx.cycle),
            regs.seq_expected.eq(seq.expected),
            regs.seq_high.eq(seq.high),
            regs.dec_messages.eq(feed.messages),
            regs.dec_malformed.eq(feed.malformed),
            regs.host_messages.eq(host_messages),
            regs.host_overflow.eq(host_overflow),
            seq.session_config.eq(regs.session_config),
            seq.session_check.eq(regs.session_check),
        ]
        for n in RX_COUNTERS:
            m.d.comb += getattr(regs, f"rx_{n}").eq(getattr(rx, n))
        for n in SEQ_COUNTERS:
            m.d.comb += getattr(regs, f"seq_{n}").eq(getattr(seq, n))
        for n in (*table_module.COUNTERS, "occupancy"):
            m.d.comb += getattr(regs, f"table_{n}").eq(getattr(feed, n))
        for n in book_module.COUNTERS:
            m.d.comb += getattr(regs, f"book_{n}").eq(getattr(feed, f"book_{n}"))
        for k in range(-(-self._slots // 64)):
            m.d.comb += getattr(regs, f"invalid_{k}").eq(feed.invalid[64 * k:64 * k + 64])

        # commands: one-cycle strobes become stream writes (each block takes them at once;
        # a write the block is not ready for is held until it is)
        def command(target, strobe, payload):
            pending = Signal(name=f"{strobe.name}_pending")
            with m.If(strobe):
                m.d.sync += pending.eq(1)
            with m.Elif(target.ready):
                m.d.sync += pending.eq(0)
            m.d.comb += [target.valid.eq(pending), target.p.eq(payload)]

        fc = regs.filter_commit
        command(rx.filter_write, regs.filter_commit_stb,
                Cat(fc[:FILTER_INDEX_WIDTH], regs.filter_group, regs.filter_port,
                    fc[FILTER_INDEX_WIDTH]))
        # subscriptions come from the host and from R messages: the R's first
        host_sub, name_sub = Signal(), Signal()
        sub = feed.subscribe
        with m.If(regs.subscribe_stb):
            m.d.sync += host_sub.eq(1)
        with m.Elif(sub.ready & ~name_sub):
            m.d.sync += host_sub.eq(0)
        with m.If(by_name_stb):
            m.d.sync += name_sub.eq(1)
        with m.Elif(sub.ready):
            m.d.sync += name_sub.eq(0)
        m.d.comb += [sub.valid.eq(host_sub | name_sub),
                     sub.p.eq(Mux(name_sub, by_name, regs.subscribe))]
        command(feed.clear, regs.clear_stb, regs.clear)
        wiring.connect(m, wiring.flipped(self.query), feed.query)
        return m

