"""Order table: order reference -> (symbol slot, locate, side, price, shares), behind a memory port.

Scheme: a bucketed hash table. The reference is hashed (:func:`~tickpath.protocol.bookfeed.
bucket_of`, an H3 XOR hash) to one bucket of ``ways`` entries; one memory word holds a whole
bucket, so a lookup is one read and an update one write, whatever the occupancy (bounded time,
no probing, no tombstones: a delete clears its way and the way is free at once). An add whose
bucket is full is refused: counted in ``table_full`` and the symbol's book flagged invalid.
``capacity`` = buckets x ways; at a load factor of 1/2 with 8 ways about 1 add in 10^4 meets a
full bucket (less with more ways or a lower load).

Per event: the event waits in an input register with its bucket hashed; the bucket read goes
out as it is taken; block RAM answers, its data is registered (:class:`BlockRamOrderMemory`),
then the bucket and what each way says (holds the key, is free, what a reduce takes from it)
are registered; the decision reads only those registers, sends its
:class:`~tickpath.protocol.bookfeed.BookOp` at once (valid 5 cycles after the stream handed the
event over: add, execute, cancel, delete) and registers one-hot selects per way, from which the
bucket is written the cycle after. A replace then reads, decides and writes the new reference's
bucket (its op valid 10 cycles after). No block RAM output, hash or 64-bit compare stands in
front of a decision or an address; counters count a cycle late, from a strobe.

The decision follows :class:`tickpath.model.book.BookBuilder` exactly (duplicate adds and zero
shares ignored, overfills remove the order); where it cannot (unknown reference, full bucket) it
flags the book.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tickpath.hdl.bram import ColumnMemory
from tickpath.hdl.counters import late_counters
from tickpath.protocol.bookfeed import (
    BOOK_KINDS,
    SLOT_WIDTH,
    BookOp,
    OrderEntry,
    Subscription,
    SubscriptionEntry,
    TimedFeedEvent,
    bucket_layout,
    hash_masks,
    order_memory_signature,
)
from tickpath.protocol.feed import EventKind

__all__ = ["OrderTable", "BlockRamOrderMemory", "OrderTableUnit", "COUNTERS"]

#: Counter outputs of :class:`OrderTable`.
COUNTERS = ("events", "ignored", "unsubscribed", "unknown_reference", "table_full",
            "duplicate_add", "zero_shares", "overfill", "ops")


def _check_pow2(name, value, lo, hi):
    if value not in range(lo, hi + 1) or value & (value - 1):
        raise ValueError(f"{name} must be a power of two in {lo}..{hi}, not {value}")


def reference_hash(ref, bits):
    """HDL form of :func:`~tickpath.protocol.bookfeed.bucket_of`."""
    return Cat(*((ref & mask).xor() for mask in hash_masks(bits)))


def _one_hot_select(select, values):
    """``values[w]`` for the set bit of the one-hot ``select`` (0 for none), as an AND-OR."""
    out = 0
    for w, value in enumerate(values):
        value = Value.cast(value)
        out = out | (value & select[w].replicate(len(value)))
    return out


class BlockRamOrderMemory(wiring.Component):
    """The order table's memory in block RAM: always ready, reads answered two cycles later
    (the block RAM's read data is registered).

    Members
    -------
    bus : ``In(order_memory_signature(addr_width, ways))``
    """

    def __init__(self, *, addr_width, ways):
        self._addr_width = addr_width
        self._ways = ways
        super().__init__({"bus": In(order_memory_signature(addr_width, ways))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.storage = storage = ColumnMemory(shape=bucket_layout(self._ways),
                                                      depth=1 << self._addr_width)
        req = self.bus.req
        m.d.comb += [
            req.ready.eq(1),
            storage.w_addr.eq(req.p.addr), storage.w_data.eq(req.p.data),
            storage.w_en.eq(req.valid & req.p.write),
            storage.r_addr.eq(req.p.addr),      # always enabled: the data is registered
        ]
        # the read data goes through a register (block RAM's clock-to-output is slow)
        # (reset-less: a reset term would put a LUT between the block RAM and the register)
        read = Signal()
        data_r = Signal(bucket_layout(self._ways), reset_less=True)
        m.d.sync += [read.eq(req.valid & ~req.p.write),
                     self.bus.resp.valid.eq(read), data_r.eq(storage.r_data)]
        m.d.comb += self.bus.resp.p.data.eq(data_r)
        return m


class OrderTable(wiring.Component):
    """Hashed order table: feed events in, book operations out.

    Parameters
    ----------
    capacity : int
        Live orders the table can hold (power of two); ``capacity // ways`` buckets.
    ways : int
        Entries per bucket (power of two, 1..16).
    slots : int
        Book slots (subscribed symbols), 1..256.
    locate_bits : int
        The subscription table covers stock locates ``0 .. 2**locate_bits - 1``; events of
        other locates are counted in ``unsubscribed``.
    subscriptions : dict or None
        Initial subscription table, locate -> slot; ``None`` maps locates ``1..slots`` to
        slots ``0..slots-1``.
    counter_width : int

    Members
    -------
    i_stream : ``In(stream.Signature(TimedFeedEvent))``
        Feed events with their ingress cycle. Kinds outside :data:`BOOK_KINDS` are counted in
        ``ignored`` and dropped.
    o_stream : ``Out(stream.Signature(BookOp))``
        At most one operation per event, in order.
    mem : ``Out(order_memory_signature(bucket_bits, ways))``
        The table's storage (e.g. :class:`BlockRamOrderMemory`).
    subscribe : ``In(stream.Signature(Subscription))``
        Subscription table writes; taken between events (before a waiting event).
    occupancy : ``Out(counter_width)``
        Live orders held.
    events, ignored, unsubscribed, unknown_reference, table_full, duplicate_add, zero_shares,
    overfill, ops : ``Out(counter_width)``
        Counters (wrap). ``events`` counts every event taken.
    """

    def __init__(self, *, capacity=8192, ways=8, slots=256, locate_bits=14, subscriptions=None,
                 counter_width=32):
        _check_pow2("ways", ways, 1, 16)
        _check_pow2("capacity", capacity, 2 * ways, 1 << 24)
        if slots not in range(1, (1 << SLOT_WIDTH) + 1):
            raise ValueError(f"slots must be in 1..{1 << SLOT_WIDTH}, not {slots}")
        if locate_bits not in range(1, 17):
            raise ValueError(f"locate_bits must be in 1..16, not {locate_bits}")
        if subscriptions is None:
            subscriptions = {locate: locate - 1 for locate in range(1, slots + 1)
                             if locate < (1 << locate_bits)}
        for locate, slot in subscriptions.items():
            if locate not in range(1 << locate_bits) or slot not in range(slots):
                raise ValueError(f"subscription {locate} -> {slot} is out of range")
        self._capacity = capacity
        self._ways = ways
        self._slots = slots
        self._locate_bits = locate_bits
        self._subscriptions = dict(subscriptions)
        self._counter_width = counter_width
        self._bucket_bits = (capacity // ways).bit_length() - 1
        members = {
            "i_stream":  In(stream.Signature(TimedFeedEvent)),
            "o_stream":  Out(stream.Signature(BookOp)),
            "mem":       Out(order_memory_signature(self._bucket_bits, ways)),
            "subscribe": In(stream.Signature(Subscription)),
            "occupancy": Out(counter_width),
        }
        members.update({name: Out(counter_width) for name in COUNTERS})
        super().__init__(members)

    capacity      = property(lambda self: self._capacity)
    ways          = property(lambda self: self._ways)
    slots         = property(lambda self: self._slots)
    locate_bits   = property(lambda self: self._locate_bits)
    subscriptions = property(lambda self: dict(self._subscriptions))
    counter_width = property(lambda self: self._counter_width)
    bucket_bits   = property(lambda self: self._bucket_bits)

    def elaborate(self, platform):
        m = Module()
        ways = self._ways
        i, o, mem = self.i_stream, self.o_stream, self.mem

        init = [None] * (1 << self._locate_bits)
        for locate, slot in self._subscriptions.items():
            init[locate] = {"enable": 1, "slot": slot}
        # in columns: a 16k-locate table as banks would put a multiplexer after the block RAM
        m.submodules.subs = subs = ColumnMemory(shape=SubscriptionEntry,
                                                depth=1 << self._locate_bits, init=init)

        ev       = Signal(TimedFeedEvent)
        locate_ok = Signal()
        zero_shares = Signal()        # ev's shares == 0
        phase2   = Signal()           # a replace's second half: the new reference
        op       = Signal(BookOp)
        key      = Signal(64)         # the reference looked up: ev's, then a replace's new one

        # counters count a cycle late (one strobe each, not the counters' every enable)
        count = late_counters(m, {name: getattr(self, name) for name in COUNTERS})

        # occupancy too: one strobe each way, applied the cycle after
        occ_up, occ_down = Signal(), Signal()
        m.d.sync += [occ_up.eq(0), occ_down.eq(0),
                     self.occupancy.eq(self.occupancy + occ_up - occ_down)]


        # --- the bucket: taken from the response into `wbucket`, with per-way flags ---------
        # Nothing is decided on the response itself (block RAM data is slow to come out): the
        # bucket and what each way says about the key and the shares are registered first.
        wbucket  = Signal(bucket_layout(ways))    # the bucket as read
        hits     = Signal(ways)                   # way holds the key
        frees    = Signal(ways)                   # way is free
        partial  = Signal(ways)                   # a reduce leaves the way shares (fewer taken)
        over     = Signal(ways)                   # a reduce takes more than the way holds
        taken    = Signal(data.ArrayLayout(32, ways))   # the shares a reduce of the way takes
        left     = Signal(data.ArrayLayout(32, ways))   # the way's shares - ev's shares
        have     = Signal()                       # the registers above hold the response
        hit      = Signal()                       # some way holds the key
        has_free = Signal()                       # some way is free
        resp = mem.resp.p.data
        resp_hits = Cat(resp[w].valid & (resp[w].order_ref == key) for w in range(ways))
        resp_frees = Cat(~resp[w].valid for w in range(ways))
        # a delete or replace takes the whole order; an execute or cancel takes its shares
        whole = (ev["kind"] == EventKind.Delete) | (ev["kind"] == EventKind.Replace)
        m.d.sync += have.eq(mem.resp.valid)
        with m.If(mem.resp.valid):
            # "any" registered beside the per-way flags, so the decision starts from flip-flops
            m.d.sync += [wbucket.eq(resp), hits.eq(resp_hits), frees.eq(resp_frees),
                         hit.eq(resp_hits.any()), has_free.eq(resp_frees.any())]
            for w in range(ways):
                fewer = ~whole & (ev["shares"] < resp[w].shares)
                m.d.sync += [
                    partial[w].eq(fewer),
                    over[w].eq(~whole & (ev["shares"] > resp[w].shares)),
                    taken[w].eq(Mux(fewer, ev["shares"], resp[w].shares)),
                    left[w].eq(resp[w].shares - ev["shares"]),
                ]
        # a reference is held at most once in a bucket (an add of a held one is refused), so
        # `hits` is one-hot already; a free way is chosen lowest first
        hit_1h  = hits
        free_1h = Signal(ways)
        for w in range(ways):
            m.d.comb += free_1h[w].eq(frees[w] & ~frees[:w].any() if w else frees[w])
        # the hit way's entry and the shares a reduce takes from it: AND-OR over the one-hot
        entry = Signal(OrderEntry)
        hit_taken = Signal(32)
        m.d.comb += [entry.eq(_one_hot_select(hit_1h, [wbucket[w] for w in range(ways)])),
                     hit_taken.eq(_one_hot_select(hit_1h, [taken[w] for w in range(ways)]))]

        # what DECIDE does to each way, registered: WRITE builds the bucket it writes from
        # these one-hot selects, so the decision drives 3 x ways flip-flops, not the bucket's
        # every bit
        put     = Signal(ways)                    # the new entry goes into this way
        clear   = Signal(ways)                    # the way is freed
        reduced = Signal(ways)                    # the way keeps `left` shares
        new_r   = Signal(OrderEntry)              # the new entry, as DECIDE built it
        c_put, c_clear, c_reduced = Signal(ways), Signal(ways), Signal(ways)
        m.d.sync += [put.eq(c_put), clear.eq(c_clear), reduced.eq(c_reduced)]
        written = Signal(bucket_layout(ways))
        for w in range(ways):
            m.d.comb += written[w].eq(wbucket[w])
            with m.If(put[w]):
                m.d.comb += written[w].eq(new_r)
            with m.Elif(clear[w]):
                m.d.comb += written[w].eq(0)
            with m.Elif(reduced[w]):
                m.d.comb += written[w].shares.eq(left[w])

        # the read goes out as IDLE takes the event (its bucket from the input register), then
        # at the key's bucket
        idle = Signal()                     # the FSM is in IDLE (the select is not `ready`)
        # the input register: an event waits here with its reference's bucket already hashed,
        # so no hash stands between the stream and the block RAM's address (an event costs the
        # table 4 cycles or more, so refusing while one waits costs no throughput)
        inp        = Signal(TimedFeedEvent)
        inp_valid  = Signal()
        inp_bucket = Signal(self._bucket_bits)
        inp_take   = Signal()               # IDLE takes `inp` this cycle
        m.d.comb += i.ready.eq(~inp_valid)
        with m.If(inp_take):
            m.d.sync += inp_valid.eq(0)
        with m.If(i.valid & ~inp_valid):
            m.d.sync += [inp.eq(i.p), inp_valid.eq(1),
                         inp_bucket.eq(reference_hash(i.p["order_ref"], self._bucket_bits))]

        # past IDLE the key's bucket comes from a register: the reference's as the event is
        # taken, the new reference's (hashed from `ev` meanwhile) as a replace turns to it
        bucket = Signal(self._bucket_bits)
        new_bucket = Signal(self._bucket_bits)
        m.d.sync += new_bucket.eq(reference_hash(ev["new_order_ref"], self._bucket_bits))
        m.d.comb += [
            mem.req.p.addr.eq(Mux(idle, inp_bucket, bucket)),
            mem.req.p.data.eq(written),
        ]

        # subscription read: always at the input register's locate (no multiplexer in front of
        # the address, nor of the collision check Yosys adds beside it); the entry read for
        # the event just taken is registered the cycle after
        m.d.comb += subs.r_addr.eq(inp["stock_locate"][:self._locate_bits])
        sub = Signal(SubscriptionEntry)
        took = Signal()
        m.d.sync += took.eq(inp_take)
        with m.If(took):
            m.d.sync += sub.eq(subs.r_data)

        # a replace's new half keeps the old order's symbol and side
        m.d.sync += [
            new_r.valid.eq(1),
            new_r.order_ref.eq(key),
            new_r.price.eq(ev["price"]),
            new_r.shares.eq(ev["shares"]),
            new_r.side.eq(Mux(phase2, op.side, ev["side"])),
            new_r.slot.eq(Mux(phase2, op.slot, sub.slot)),
            new_r.stock_locate.eq(Mux(phase2, op.stock_locate, ev["stock_locate"])),
        ]

        # what the event is, worked out while the bucket is read (the subscription entry is
        # registered a cycle before the bucket's flags): DECIDE starts from these flip-flops
        pre_ignored, pre_unsubscribed, pre_add, pre_replace = (
            Signal(name=n) for n in ("pre_ignored", "pre_unsubscribed", "pre_add",
                                     "pre_replace"))
        kind = ev["kind"]
        book_kind = Cat(*(kind == k for k in BOOK_KINDS)).any()
        m.d.sync += [
            pre_ignored.eq(~phase2 & ~book_kind),
            pre_unsubscribed.eq(~phase2 & (~locate_ok | ~sub.enable)),
            pre_add.eq(phase2 | (kind == EventKind.Add)),
            pre_replace.eq(kind == EventKind.Replace),
        ]

        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)
        emit_ok = Signal()
        m.d.comb += emit_ok.eq(~o.valid | o.ready)
        op_n = Signal(BookOp)               # `op` as DECIDE leaves it
        m.d.comb += op_n.eq(op)
        sent = Signal()                     # DECIDE sent `op` already
        wanted = Signal()                   # `op` has something for the book
        m.d.comb += wanted.eq(op.reduce | op.add | op.invalidate)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(self.subscribe.valid):
                    m.d.comb += [
                        self.subscribe.ready.eq(1),
                        subs.w_addr.eq(self.subscribe.p.stock_locate[:self._locate_bits]),
                        subs.w_data.enable.eq(self.subscribe.p.enable),
                        subs.w_data.slot.eq(self.subscribe.p.slot),
                        subs.w_en.eq((self.subscribe.p.stock_locate >> self._locate_bits) == 0),
                    ]
                with m.Else():
                    m.d.comb += [inp_take.eq(inp_valid & mem.req.ready),
                                 mem.req.valid.eq(inp_valid), mem.req.p.write.eq(0)]
                    with m.If(inp_valid & mem.req.ready):
                        m.d.sync += [
                            ev.eq(inp),
                            bucket.eq(inp_bucket),
                            key.eq(inp["order_ref"]),
                            phase2.eq(0),
                            locate_ok.eq((inp["stock_locate"] >> self._locate_bits) == 0),
                            zero_shares.eq(inp["shares"] == 0),
                        ]
                        count("events")
                        m.next = "DECIDE"

            with m.State("READ"):            # a replace's new reference
                m.d.comb += [mem.req.valid.eq(1), mem.req.p.write.eq(0)]
                with m.If(mem.req.ready):
                    m.next = "DECIDE"

            with m.State("DECIDE"):         # waits for the bucket's registers
                kind = ev["kind"]
                shares = ev["shares"]
                # the op as decided (`op_n`) goes out from here when it is final and the output
                # is free; the bucket is written in WRITE, the cycle after
                with m.If(~phase2):
                    m.d.comb += [
                        op_n.eq(0),
                        op_n.kind.eq(ev["kind"]),
                        op_n.slot.eq(sub.slot),
                        op_n.stock_locate.eq(ev["stock_locate"]),
                        op_n.side.eq(ev["side"]),
                        op_n.ingress.eq(ev["ingress"]),
                    ]
                with m.If(have):
                    m.d.sync += op.eq(op_n)
                final = Signal()            # no second half follows
                m.d.comb += final.eq(1)
                with m.If(~have):
                    m.d.comb += final.eq(0)
                with m.Elif(pre_ignored):
                    m.d.comb += final.eq(0)
                    count("ignored")
                    m.next = "IDLE"
                with m.Elif(pre_unsubscribed):
                    m.d.comb += final.eq(0)
                    count("unsubscribed")
                    m.next = "IDLE"
                with m.Elif(pre_add):
                    with m.If(hit):
                        count("duplicate_add")
                        m.next = "EMIT"
                    with m.Elif(zero_shares):
                        count("zero_shares")
                        m.next = "EMIT"
                    with m.Elif(~has_free):
                        count("table_full")
                        m.d.comb += op_n.invalidate.eq(1)
                        m.next = "EMIT"
                    with m.Else():
                        m.d.comb += c_put.eq(free_1h)
                        m.d.comb += [op_n.add.eq(1), op_n.add_price.eq(ev["price"]),
                                     op_n.add_shares.eq(shares)]
                        m.d.sync += occ_up.eq(1)
                        m.next = "WRITE"
                with m.Elif(~hit):
                    count("unknown_reference")
                    m.d.comb += [op_n.invalidate.eq(1), op_n.side.eq(0)]
                    m.next = "EMIT"
                with m.Else():
                    m.d.comb += [
                        op_n.reduce.eq(1),
                        op_n.reduce_price.eq(entry.price),
                        op_n.slot.eq(entry.slot),
                        op_n.stock_locate.eq(entry.stock_locate),
                        op_n.side.eq(entry.side),
                    ]
                    with m.If(pre_replace):
                        m.d.comb += final.eq(0)
                    # the hit way keeps its shares less the taken ones, or is freed
                    m.d.comb += [c_reduced.eq(hit_1h & partial),
                                 c_clear.eq(hit_1h & ~partial),
                                 op_n.reduce_shares.eq(hit_taken)]
                    with m.If(~(partial & hit_1h).any()):
                        m.d.comb += op_n.remove.eq(1)
                        m.d.sync += occ_down.eq(1)
                        with m.If((over & hit_1h).any()):
                            count("overfill")
                    m.next = "WRITE"
                # the payload loads whenever the output is free; only `valid` (and `sent`)
                # wait for the decision, which so does not reach the payload's enables
                send_now = final & (op_n.reduce | op_n.add | op_n.invalidate)
                with m.If(emit_ok):
                    m.d.sync += [o.p.eq(op_n), o.valid.eq(send_now), sent.eq(send_now)]
                    with m.If(send_now):
                        count("ops")
                with m.Else():
                    m.d.sync += sent.eq(0)

            with m.State("WRITE"):
                m.d.comb += [mem.req.valid.eq(1), mem.req.p.write.eq(1)]
                with m.If(mem.req.ready):
                    with m.If((ev["kind"] == EventKind.Replace) & ~phase2):
                        m.d.sync += [phase2.eq(1), bucket.eq(new_bucket),
                                     key.eq(ev["new_order_ref"])]
                        m.next = "READ"
                    with m.Elif(sent):
                        m.next = "IDLE"
                    with m.Elif(emit_ok):
                        m.d.sync += [o.valid.eq(1), o.p.eq(op)]
                        count("ops")
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "EMIT"

            with m.State("EMIT"):
                with m.If(wanted & ~sent):
                    with m.If(emit_ok):
                        m.d.sync += [o.valid.eq(1), o.p.eq(op)]
                        count("ops")
                        m.next = "IDLE"
                with m.Else():
                    m.next = "IDLE"
        return m


class OrderTableUnit(wiring.Component):
    """:class:`OrderTable` with its block RAM (same parameters and members, less ``mem``)."""

    def __init__(self, **params):
        self._table = OrderTable(**params)
        members = {name: value for name, value in self._table.signature.members.items()
                   if name != "mem"}
        super().__init__(members)

    @property
    def table(self):
        return self._table

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = self._table
        m.submodules.memory = memory = BlockRamOrderMemory(addr_width=table.bucket_bits,
                                                           ways=table.ways)
        wiring.connect(m, table.mem, memory.bus)
        wiring.connect(m, wiring.flipped(self.i_stream), table.i_stream)
        wiring.connect(m, table.o_stream, wiring.flipped(self.o_stream))
        wiring.connect(m, wiring.flipped(self.subscribe), table.subscribe)
        for name in ("occupancy",) + COUNTERS:
            m.d.comb += getattr(self, name).eq(getattr(table, name))
        return m

