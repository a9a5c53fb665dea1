"""FIX 4.2 acceptor (asyncio): session layer with persistent sequence numbers, and order entry
(NewOrderSingle, OrderCancelRequest, OrderCancelReplaceRequest in; ExecutionReport and
OrderCancelReject out) into the :class:`~tickpath.host.gateway.hub.OrderHub`.

Ref: FIX 4.2 specification, Volume 1 (session protocol: logon, heartbeat, test request,
resend request, sequence reset, logout, reject) and Volume 4 (order messages); summary in
``docs/PROTOCOLS.md``.

Session rules
    One connection per configured session (the client's SenderCompID); the first message
    must be a Logon naming a known SenderCompID and our TargetCompID, else Logout and close.
    Incoming MsgSeqNum: equal to expected → processed; higher → ResendRequest(expected, 0)
    and the message is not processed (the resend brings it back); lower without
    PossDupFlag → Logout and close; lower with PossDupFlag → ignored. SequenceReset-GapFill
    moves the expected number up; SequenceReset-Reset sets it (never down: Reject).
    ResendRequest: stored application messages are resent (PossDupFlag=Y, OrigSendingTime),
    runs of admin messages become one SequenceReset-GapFill. Logon with ResetSeqNumFlag=Y
    starts both directions at 1. Both numbers and the sent application messages persist in
    ``store_dir`` (``<session>.seq``, ``<session>.msgs``) across restarts.
    Heartbeat after HeartBtInt seconds without sending; TestRequest after HeartBtInt + 20%
    without hearing anything; disconnect after twice that.
    Garbled messages (bad BodyLength, bad CheckSum, garbage) are ignored and counted; a
    well-framed message missing a required header or body tag gets a session Reject
    (373 = 1) and is counted; MsgSeqNum missing → Logout.

Orders
    OrderID (37) is the internal id of the first order of a replace chain. OrderQty (38) is
    FIX's total: a replace sends ``new total - cum filled`` to the engine as the new open size
    (at least 1, else OrderCancelReject). Prices are decimal strings converted exactly to ticks
    (4 implied decimals); a price that is not a whole tick is rejected. AvgPx is exact when the
    decimal terminates, else rounded half-even to 8 places.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import pathlib
import re
import time
from collections import Counter
from decimal import Decimal, Inexact, localcontext
from typing import Any

from tickpath.host.gateway.hub import OrderHub, OrderState, Submission
from tickpath.host.gateway.server import SessionServer
from tickpath.protocol.fix42 import FixFramer, FixMessage, Garbled, encode, utc_timestamp
from tickpath.protocol.records import (
    Action,
    CancelReason,
    Event,
    EventKind,
    Order,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)

__all__ = ["FixSessionConfig", "FixAcceptor", "SeqStore", "price_to_ticks", "ticks_to_price",
           "avg_px"]

log = logging.getLogger(__name__)

_PRICE_RE = re.compile(r"^\d{1,12}(\.\d{1,12})?$")
_QTY_RE = re.compile(r"^(\d{1,12})(\.0{0,8})?$")
_SIDES = {"1": Side.Buy, "2": Side.Sell, "5": Side.Sell, "6": Side.Sell}
_TIFS = {"0": TimeInForce.Day, "3": TimeInForce.Ioc, "4": TimeInForce.Fok}
_ORD_TYPES = {"1": OrderType.Market, "2": OrderType.Limit}
_HEADER_TAGS = frozenset((8, 9, 35, 49, 56, 34, 52, 43, 97, 122, 115, 128, 50, 57, 10))
_ADMIN = frozenset("012345A")
_CANCEL_TEXT = {CancelReason.User: "canceled by user",
                CancelReason.ImmediateOrCancel: "immediate-or-cancel remainder",
                CancelReason.SelfMatch: "self-match prevention",
                CancelReason.Supervisory: "canceled by supervisor",
                CancelReason.EndOfDay: "expired at end of day"}
# internal reject reason -> (OrdRejReason 103: 4.2 has 0..8 only, 0 = broker option; text)
_REJECT = {RejectReason.InvalidPrice: ("0", "invalid price"),
           RejectReason.InvalidShares: ("3", "invalid quantity"),
           RejectReason.UnknownSymbol: ("1", "unknown symbol"),
           RejectReason.InvalidMinQty: ("0", "invalid minimum quantity"),
           RejectReason.Closed: ("2", "exchange closed"),
           RejectReason.Other: ("0", "invalid field value"),
           RejectReason.UnknownToken: ("5", "unknown order"),
           RejectReason.DuplicateToken: ("6", "duplicate order"),
           RejectReason.Full: ("3", "order store full"),
           # the hardware risk gate's (0 = broker option: a risk limit)
           RejectReason.Killed: ("0", "kill switch"),
           RejectReason.DeadMan: ("0", "dead-man switch"),
           RejectReason.Halted: ("0", "symbol halted"),
           RejectReason.MaxShares: ("3", "quantity above the limit"),
           RejectReason.NoReference: ("0", "no reference price"),
           RejectReason.MaxNotional: ("0", "notional above the limit"),
           RejectReason.Collar: ("0", "price outside the collar"),
           RejectReason.Position: ("0", "position limit"),
           RejectReason.Rate: ("0", "order rate limit")}
assert set(_REJECT) == set(RejectReason), "every engine reject reason needs a FIX mapping"


def price_to_ticks(text: str) -> int | None:
    """Ticks (4 implied decimals) of a FIX price string, exactly; ``None`` if the string is not
    a plain non-negative decimal or not a whole number of ticks."""
    if not _PRICE_RE.match(text):
        return None
    value = Decimal(text) * 10_000
    if value != value.to_integral_value():
        return None
    return int(value)


def ticks_to_price(ticks: int) -> str:
    return f"{ticks // 10_000}.{ticks % 10_000:04d}"


def avg_px(notional: int, qty: int) -> str:
    """``notional`` (ticks × shares) / ``qty`` as a price string: exact when it terminates,
    else half-even to 8 places."""
    if qty == 0:
        return "0"
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[Inexact] = True
        try:
            value = Decimal(notional) / Decimal(qty * 10_000)
        except Inexact:
            ctx.traps[Inexact] = False
            value = (Decimal(notional) / Decimal(qty * 10_000)).quantize(Decimal("1E-8"))
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _qty(text: str | None) -> int | None:
    if text is None:
        return None
    m = _QTY_RE.match(text)
    return int(m.group(1)) if m else None


@dataclasses.dataclass(frozen=True)
class FixSessionConfig:
    """One client: its SenderCompID, the account its orders book to (tag 1 overrides), the firm
    used for self-match prevention, and whether its orders are canceled when it disconnects."""

    sender_comp_id: str
    account: str = ""
    firm: str = ""
    cancel_on_disconnect: bool = True

    @property
    def key(self) -> str:
        return f"fix:{self.sender_comp_id}"


class SeqStore:
    """Sequence numbers and sent application messages of one session, in ``directory``.

    ``<name>.seq`` holds ``{"next_in": n, "next_out": m}`` (replaced atomically on every
    change); ``<name>.msgs`` appends ``seq SP raw LF`` per stored application message."""

    def __init__(self, directory: pathlib.Path | None, name: str, *, fsync: bool = False):
        self._dir = directory
        self._name = name
        self._fsync = fsync
        self.next_in = 1
        self.next_out = 1
        self.messages: dict[int, bytes] = {}
        self._log = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            seq = directory / f"{name}.seq"
            if seq.exists():
                try:
                    state = json.loads(seq.read_text())
                    self.next_in, self.next_out = int(state["next_in"]), int(state["next_out"])
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: unreadable, sequence numbers start at 1", seq)
            msgs = directory / f"{name}.msgs"
            if msgs.exists():
                for line in msgs.read_bytes().split(b"\n"):
                    head, sp, raw = line.partition(b" ")
                    if sp and head.isdigit() and raw.startswith(b"8=FIX"):
                        self.messages[int(head)] = raw
            self._log = open(msgs, "ab")           # noqa: SIM115 - kept for the session

    def save(self) -> None:
        if self._dir is None:
            return
        path = self._dir / f"{self._name}.seq"
        tmp = path.with_suffix(".seq.tmp")
        with open(tmp, "w") as f:
            json.dump({"next_in": self.next_in, "next_out": self.next_out}, f)
            if self._fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)

    def store(self, seq: int, raw: bytes) -> None:
        self.messages[seq] = raw
        if self._log is not None:
            self._log.write(b"%d %s\n" % (seq, raw))
            self._log.flush()

    def reset(self) -> None:
        self.next_in = self.next_out = 1
        self.messages.clear()
        if self._log is not None:
            self._log.truncate(0)
        self.save()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclasses.dataclass(slots=True)
class _Chain:
    """One FIX order across replaces."""

    order_id: str              # FIX OrderID: first internal id
    cl_ord_id: str             # current ClOrdID
    side: str                  # FIX side character
    stock: str
    ord_type: str
    tif: str
    account: str
    order_qty: int             # FIX total quantity
    price: int
    internal_id: int
    cum_qty: int = 0
    notional: int = 0          # ticks x shares
    done: bool = False
    orig_cl_ord_id: str | None = None


class _Session:
    """Per configured session: sequence store, orders, the live connection (if any). It is
    the hub's listener for its orders, so events reach it even while disconnected (they are
    stored and delivered on resend)."""

    def __init__(self, acceptor: FixAcceptor, config: FixSessionConfig):
        self.acceptor = acceptor
        self.config = config
        self.key = config.key
        self.store = SeqStore(acceptor.store_dir, config.sender_comp_id, fsync=acceptor.fsync)
        self.conn: _Connection | None = None
        self.chains: dict[str, _Chain] = {}           # every ClOrdID seen -> its chain
        self.pending: tuple[str, str, _Chain | None] | None = None  # (35, ClOrdID, chain)

    # --- sending -----------------------------------------------------------------------

    def send(self, msg_type: str, body: list[tuple[int, Any]]) -> bytes:
        seq = self.store.next_out
        raw = encode(msg_type, self._header(seq), body)
        self.store.next_out += 1
        self.store.save()
        if msg_type not in _ADMIN:
            self.store.store(seq, raw)
        if self.conn is not None:
            self.conn.write(raw)
        self.acceptor.counters[f"out_{msg_type}"] += 1
        return raw

    def _header(self, seq: int, *extra: tuple[int, Any]) -> list[tuple[int, Any]]:
        return [(49, self.acceptor.comp_id), (56, self.config.sender_comp_id), (34, seq),
                *extra, (52, utc_timestamp())]

    def resend(self, begin: int, end: int) -> None:
        last = self.store.next_out - 1
        if end == 0 or end > last:
            end = last
        seq = max(begin, 1)
        gap_start = None
        while seq <= end:                         # bounded by next_out
            raw = self.store.messages.get(seq)
            if raw is None:
                if gap_start is None:
                    gap_start = seq
                seq += 1
                continue
            if gap_start is not None:
                self._gap_fill(gap_start, seq)
                gap_start = None
            self._resend_one(seq, raw)
            seq += 1
        if gap_start is not None:
            self._gap_fill(gap_start, end + 1)

    def _gap_fill(self, seq: int, new_seq: int) -> None:
        raw = encode("4", self._header(seq, (43, "Y"), (122, utc_timestamp())),
                     [(123, "Y"), (36, new_seq)])
        if self.conn is not None:
            self.conn.write(raw)
        self.acceptor.counters["gap_fills_sent"] += 1

    def _resend_one(self, seq: int, raw: bytes) -> None:
        msg = FixFramer().feed(raw)[0]
        assert isinstance(msg, FixMessage)
        body = [(t, v) for t, v in msg.fields if t not in _HEADER_TAGS]
        out = encode(msg.msg_type or "8", self._header(seq, (43, "Y"), (122, msg.get(52))), body)
        if self.conn is not None:
            self.conn.write(out)
        self.acceptor.counters["resent"] += 1

    # --- orders in ---------------------------------------------------------------------

    async def application(self, msg: FixMessage) -> None:
        t = msg.msg_type
        if t == "D":
            await self._new_order(msg)
        elif t == "F":
            await self._cancel(msg)
        elif t == "G":
            await self._replace(msg)
        else:
            assert self.conn is not None
            self.conn.reject(msg, 11, f"unsupported MsgType {t}")

    def _missing(self, msg: FixMessage, tags: tuple[int, ...]) -> bool:
        for tag in tags:
            if msg.get(tag) in (None, ""):
                assert self.conn is not None
                self.conn.reject(msg, 1, f"required tag {tag} missing", ref_tag=tag)
                return True
        return False

    def _exec_report(self, chain: _Chain | None, exec_type: str, status: str, *,
                     cl_ord_id: str, orig: str | None = None, leaves: int = 0,
                     last: tuple[int, int] | None = None, text: str | None = None,
                     rej_reason: str | None = None, order_id: str | None = None,
                     msg: FixMessage | None = None) -> None:
        if chain is not None:
            side, stock, qty = chain.side, chain.stock, chain.order_qty
            cum, px = chain.cum_qty, avg_px(chain.notional, chain.cum_qty)
            ord_type, price, tif, account = chain.ord_type, chain.price, chain.tif, chain.account
            order_id = chain.order_id
        else:                                   # a reject before any chain exists
            assert msg is not None
            side, stock = msg.get(54, "1"), msg.get(55, "?")
            qty, cum, px = _qty(msg.get(38)) or 0, 0, "0"
            ord_type, price, tif, account = msg.get(40), None, msg.get(59), msg.get(1)
        self.acceptor.exec_ids += 1
        body: list[tuple[int, Any]] = [
            (37, order_id or "NONE"), (11, cl_ord_id), (41, orig),
            (17, f"{self.acceptor.exec_prefix}{self.acceptor.exec_ids}"), (20, "0"),
            (150, exec_type), (39, status), (103, rej_reason), (1, account or None),
            (55, stock), (54, side), (38, qty), (40, ord_type),
            (44, ticks_to_price(price) if price and ord_type == "2" else None), (59, tif)]
        if last is not None:
            body += [(32, last[0]), (31, ticks_to_price(last[1]))]
        body += [(151, leaves), (14, cum), (6, px), (60, utc_timestamp()), (58, text)]
        self.send("8", body)

    def _cancel_reject(self, cl_ord_id: str, orig: str, chain: _Chain | None, to: str,
                       reason: str, text: str) -> None:
        status = "8" if chain is None else ("4" if chain.done and chain.cum_qty < chain.order_qty
                                            else "2" if chain.done else
                                            "1" if chain.cum_qty else "0")
        self.send("9", [(37, chain.order_id if chain else "NONE"), (11, cl_ord_id), (41, orig),
                        (39, status), (434, to), (102, reason), (58, text)])

    async def _new_order(self, msg: FixMessage) -> None:
        if self._missing(msg, (11, 21, 55, 54, 60, 40, 38)):
            return
        cl = msg.get(11) or ""
        hub = self.acceptor.hub
        side = _SIDES.get(msg.get(54) or "")
        ord_type = _ORD_TYPES.get(msg.get(40) or "")
        tif = _TIFS.get(msg.get(59) or "0")
        qty = _qty(msg.get(38))
        price_text = msg.get(44)
        price = price_to_ticks(price_text) if price_text is not None else None
        min_qty = _qty(msg.get(110)) if msg.get(110) is not None else 0
        stock = msg.get(55) or ""
        problem = None
        if cl in self.chains:
            problem = ("6", "duplicate ClOrdID")
        elif side is None:
            problem = ("0", f"unsupported Side {msg.get(54)}")
        elif ord_type is None:
            problem = ("0", f"unsupported OrdType {msg.get(40)}")
        elif tif is None:
            problem = ("0", f"unsupported TimeInForce {msg.get(59)}")
        elif qty is None or min_qty is None:
            problem = ("3", "OrderQty/MinQty is not a whole number of shares")
        elif ord_type is OrderType.Limit and price_text is None:
            problem = ("0", "limit order without Price (44)")
        elif price_text is not None and price is None:
            problem = ("0", f"Price {price_text} is not a whole number of ticks (0.0001)")
        elif not stock or len(stock) > 8 or not stock.isascii() or stock != stock.strip():
            problem = ("1", f"unknown symbol {stock!r}")
        elif qty > 0xFFFFFFFF or (price or 0) > 0xFFFFFFFF or min_qty > 0xFFFFFFFF:
            problem = ("3", "value out of range")
        if problem is not None:
            self.acceptor.counters["local_rejects"] += 1
            self._exec_report(None, "8", "8", cl_ord_id=cl, rej_reason=problem[0],
                              text=problem[1], msg=msg)
            return
        assert side is not None and ord_type is not None and tif is not None and qty is not None
        account = msg.get(1) or self.config.account or self.config.sender_comp_id
        internal = hub.new_order_id()
        chain = _Chain(str(internal), cl, msg.get(54) or "1", stock, msg.get(40) or "2",
                       msg.get(59) or "0", account, qty,
                       0 if ord_type is OrderType.Market else price or 0, internal)
        self.chains[cl] = chain
        symbol = hub.symbol_id(stock)
        state = OrderState(internal, self, cl, account, side, symbol, chain.price,
                           extra=chain)
        order = Order(action=Action.Enter, side=side, tif=tif, ord_type=ord_type,
                      order_id=internal, firm=hub.firm_id(self.config.firm or account),
                      symbol=symbol, shares=qty, price=chain.price, min_qty=min_qty)
        await self._submit(order, Submission(self.key, account, cl), ("D", cl, chain), state)

    async def _submit(self, order: Order, ctx: Submission, pending: tuple[str, str, Any],
                      state: OrderState | None = None) -> None:
        self.pending = pending
        try:
            await self.acceptor.hub.submit(order, ctx, self, new_state=state)
        finally:
            self.pending = None

    def _live_chain(self, msg: FixMessage, to: str) -> _Chain | None:
        cl, orig = msg.get(11) or "", msg.get(41) or ""
        chain = self.chains.get(orig)
        if cl in self.chains:
            self._cancel_reject(cl, orig, chain, to, "2", "duplicate ClOrdID")
            return None
        if chain is None:
            self._cancel_reject(cl, orig, None, to, "1", "unknown order")
            return None
        if chain.done:
            self._cancel_reject(cl, orig, chain, to, "0", "order already done")
            return None
        return chain

    async def _cancel(self, msg: FixMessage) -> None:
        if self._missing(msg, (41, 11, 55, 54, 60)):
            return
        chain = self._live_chain(msg, "1")
        if chain is None:
            return
        cl = msg.get(11) or ""
        self.chains[cl] = chain
        order = Order(action=Action.Cancel, order_id=chain.internal_id, shares=0)
        await self._submit(order, Submission(self.key, chain.account, cl), ("F", cl, chain))

    async def _replace(self, msg: FixMessage) -> None:
        if self._missing(msg, (41, 11, 21, 55, 54, 60, 40, 38)):
            return
        chain = self._live_chain(msg, "2")
        if chain is None:
            return
        cl, orig = msg.get(11) or "", msg.get(41) or ""
        qty = _qty(msg.get(38))
        price_text = msg.get(44)
        price = price_to_ticks(price_text) if price_text is not None else chain.price
        problem = None
        if qty is None:
            problem = "OrderQty is not a whole number of shares"
        elif price is None:
            problem = f"Price {price_text} is not a whole number of ticks (0.0001)"
        elif msg.get(40) != chain.ord_type or msg.get(54) != chain.side \
                or msg.get(55) != chain.stock:
            problem = "OrdType, Side and Symbol cannot change"
        elif qty <= chain.cum_qty:
            problem = f"OrderQty {qty} is not above the filled {chain.cum_qty}"
        elif price > 0xFFFFFFFF or qty - chain.cum_qty > 0xFFFFFFFF:
            problem = "value out of range"
        if problem is not None:
            self.acceptor.counters["local_rejects"] += 1
            self._cancel_reject(cl, orig, chain, "2", "2", problem)
            return
        assert qty is not None and price is not None
        hub = self.acceptor.hub
        internal = hub.new_order_id()
        old = hub.order(chain.internal_id)
        side = _SIDES[chain.side]
        state = OrderState(internal, self, cl, chain.account, side,
                           old.symbol if old else hub.symbol_id(chain.stock), price,
                           extra=(chain, qty, orig))
        self.chains[cl] = chain
        order = Order(action=Action.Replace, order_id=chain.internal_id, new_order_id=internal,
                      shares=qty - chain.cum_qty, price=price)
        await self._submit(order, Submission(self.key, chain.account, cl), ("G", cl, chain),
                           state)

    # --- events out --------------------------------------------------------------------

    def on_event(self, e: Event, state: OrderState | None, aggressor: bool) -> None:
        kind = e.kind
        if kind is EventKind.Closed:
            return
        if kind is EventKind.Rejected:
            self._on_reject(e, state)
            return
        assert state is not None
        extra = state.extra
        chain: _Chain = extra[0] if isinstance(extra, tuple) else extra
        leaves = state.open if state.live else 0
        if kind is EventKind.Accepted:
            self._exec_report(chain, "0", "0", cl_ord_id=chain.cl_ord_id, leaves=leaves)
        elif kind is EventKind.Executed:
            chain.cum_qty += e.shares
            chain.notional += e.shares * e.price
            filled = not state.live
            chain.done = filled
            self._exec_report(chain, "2" if filled else "1", "2" if filled else "1",
                              cl_ord_id=chain.cl_ord_id, leaves=leaves,
                              last=(e.shares, e.price), orig=chain.orig_cl_ord_id)
        elif kind is EventKind.Canceled:
            reason = CancelReason(e.reason) if e.reason in CancelReason._value2member_map_ \
                else None
            text = _CANCEL_TEXT.get(reason, "canceled") if reason else "canceled"
            pending = self.pending
            cl, orig = chain.cl_ord_id, chain.orig_cl_ord_id
            if pending is not None and pending[0] == "F" and pending[2] is chain \
                    and reason is CancelReason.User:
                orig, cl = chain.cl_ord_id, pending[1]
                chain.orig_cl_ord_id, chain.cl_ord_id = orig, cl
            if state.live:                      # a reduction (OUCH-style), not an end
                self._exec_report(chain, "D", "1" if chain.cum_qty else "0", cl_ord_id=cl,
                                  orig=orig, leaves=leaves, text=text)
                return
            chain.done = True
            expired = reason is CancelReason.EndOfDay
            self._exec_report(chain, "C" if expired else "4", "C" if expired else "4",
                              cl_ord_id=cl, orig=orig, leaves=0, text=text)
        elif kind is EventKind.Replaced:
            nxt = self.acceptor.hub.order(e.contra_id)
            if nxt is None or not isinstance(nxt.extra, tuple):
                return
            _, new_total, orig = nxt.extra
            nxt.extra = chain
            chain.orig_cl_ord_id, chain.cl_ord_id = orig, nxt.client_id
            chain.internal_id, chain.order_qty, chain.price = nxt.order_id, new_total, e.price
            self._exec_report(chain, "5", "5", cl_ord_id=chain.cl_ord_id, orig=orig,
                              leaves=nxt.open)

    def _on_reject(self, e: Event, state: OrderState | None) -> None:
        pending = self.pending
        if pending is None:                    # e.g. a mass cancel racing a fill: no client
            return
        try:
            rej, text = _REJECT[RejectReason(e.reason)]
        except ValueError:
            rej, text = "0", f"rejected ({chr(e.reason) if 32 < e.reason < 127 else e.reason})"
        t, cl, chain = pending
        if t == "D":
            assert chain is not None
            chain.done = True
            self._exec_report(chain, "8", "8", cl_ord_id=cl, rej_reason=rej, text=text)
        elif chain is not None:
            orig = chain.cl_ord_id
            if e.reason == RejectReason.UnknownToken:
                chain.done = True
            self._cancel_reject(cl, orig, chain, "1" if t == "F" else "2",
                                "0" if e.reason == RejectReason.UnknownToken else "2", text)


class _Connection:
    """One TCP connection: framing, logon, sequence checks, heartbeats."""

    def __init__(self, acceptor: FixAcceptor, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.acceptor = acceptor
        self.reader = reader
        self.writer = writer
        self.session: _Session | None = None
        self.hb = 30.0
        self.last_in = self.last_out = time.monotonic()
        self.test_req_out = False
        self.resend_asked = 0                  # expected number when we last asked
        self.closing = False

    def write(self, raw: bytes) -> None:
        if not self.closing:
            self.writer.write(raw)
            self.last_out = time.monotonic()

    def reject(self, msg: FixMessage, reason: int, text: str, ref_tag: int | None = None
               ) -> None:
        self.acceptor.counters["rejects_sent"] += 1
        if self.session is not None:
            self.session.send("3", [(45, msg.seq_num()), (371, ref_tag), (372, msg.msg_type),
                                    (373, reason), (58, text)])

    def logout(self, text: str) -> None:
        if self.session is not None:
            self.session.send("5", [(58, text)])
        else:                                   # not logged on: no sequence to use
            raw = encode("5", [(49, self.acceptor.comp_id), (56, "UNKNOWN"), (34, 1),
                               (52, utc_timestamp())], [(58, text)])
            self.write(raw)
        self.closing = True

    async def run(self) -> None:
        framer = FixFramer()
        counters = self.acceptor.counters
        deadline = time.monotonic() + self.acceptor.logon_timeout
        timer = asyncio.create_task(self._timer())
        try:
            while not self.closing:
                timeout = (deadline - time.monotonic()) if self.session is None else 1.0
                if timeout <= 0:
                    counters["logon_timeouts"] += 1
                    break
                try:
                    async with asyncio.timeout(timeout):
                        data = await self.reader.read(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                self.last_in = time.monotonic()
                self.test_req_out = False
                for item in framer.feed(data):
                    if isinstance(item, Garbled):
                        counters["garbled"] += 1
                        log.info("garbled FIX input dropped (%d bytes): %s", item.size,
                                 item.reason)
                        continue
                    counters["in_" + (item.msg_type or "?")] += 1
                    await self._handle(item)
                    if self.closing:
                        break
                if framer.buffered > 2 * 65536 + 100:
                    counters["garbled"] += 1
                    break
        except (ConnectionError, OSError):
            counters["connection_errors"] += 1
        finally:
            timer.cancel()
            await self._close()

    async def _close(self) -> None:
        self.closing = True
        try:
            if self.writer.can_write_eof():
                await asyncio.wait_for(self.writer.drain(), 1.0)
        except (ConnectionError, OSError, TimeoutError):
            pass
        self.writer.close()
        session = self.session
        if session is not None and session.conn is self:
            session.conn = None
            if session.config.cancel_on_disconnect:
                await self.acceptor.hub.cancel_session(session.key)

    async def _timer(self) -> None:
        while not self.closing:                 # ends with the connection (cancelled)
            await asyncio.sleep(min(0.2, self.hb / 5))
            if self.session is None:
                continue
            now = time.monotonic()
            if now - self.last_out >= self.hb:
                self.session.send("0", [])
            silent = now - self.last_in
            if silent >= 2.4 * self.hb:
                self.acceptor.counters["heartbeat_timeouts"] += 1
                self.closing = True
                self.writer.close()
                return
            if silent >= 1.2 * self.hb and not self.test_req_out:
                self.test_req_out = True
                self.session.send("1", [(112, f"TEST{int(now * 1000)}")])

    async def _handle(self, msg: FixMessage) -> None:
        acc = self.acceptor
        t = msg.msg_type
        if self.session is None:
            await self._logon(msg)
            return
        session = self.session
        seq = msg.seq_num()
        if seq is None:
            acc.counters["bad_seqnum"] += 1
            self.logout("MsgSeqNum (34) missing or not a number")
            return
        if msg.get(49) != session.config.sender_comp_id or msg.get(56) != acc.comp_id:
            self.reject(msg, 9, "CompID problem")
            self.logout("CompID problem")
            return
        if t is None:
            self.reject(msg, 1, "MsgType (35) missing", ref_tag=35)
            session.store.next_in = max(session.store.next_in, seq + 1)
            session.store.save()
            return
        store = session.store
        if t == "4" and msg.get(123) != "Y":     # SequenceReset-Reset: MsgSeqNum ignored
            new = _qty(msg.get(36))
            if new is None or new < store.next_in:
                self.reject(msg, 5, "NewSeqNo (36) missing or lower than expected", ref_tag=36)
            else:
                store.next_in = new
                store.save()
            return
        if seq > store.next_in:
            acc.counters["seq_gaps"] += 1
            if t == "5":
                self.logout("logout acknowledged")
                return
            if self.resend_asked != store.next_in:
                self.resend_asked = store.next_in
                session.send("2", [(7, store.next_in), (16, 0)])
            if t == "2":
                self._resend_request(msg)
            return
        if seq < store.next_in:
            if msg.get(43) == "Y":
                acc.counters["poss_dup_ignored"] += 1
                return
            acc.counters["seq_too_low"] += 1
            self.logout(f"MsgSeqNum too low, expecting {store.next_in} but received {seq}")
            return
        if self._missing_header(msg):
            store.next_in = seq + 1
            store.save()
            return
        store.next_in = seq + 1
        store.save()
        if t == "0":
            pass
        elif t == "1":
            session.send("0", [(112, msg.get(112))])
        elif t == "2":
            self._resend_request(msg)
        elif t == "3":
            acc.counters["rejects_received"] += 1
        elif t == "4":
            new = _qty(msg.get(36))
            if new is None or new < store.next_in:
                self.reject(msg, 5, "NewSeqNo (36) missing or not above MsgSeqNum", ref_tag=36)
            else:
                store.next_in = new
                store.save()
        elif t == "5":
            self.logout("logout acknowledged")
        elif t == "A":
            self.reject(msg, 5, "already logged on")
        else:
            await session.application(msg)

    def _missing_header(self, msg: FixMessage) -> bool:
        if msg.get(52) in (None, ""):
            self.reject(msg, 1, "SendingTime (52) missing", ref_tag=52)
            return True
        return False

    def _resend_request(self, msg: FixMessage) -> None:
        begin, end = _qty(msg.get(7)), _qty(msg.get(16))
        if begin is None or end is None:
            self.reject(msg, 1, "BeginSeqNo (7) / EndSeqNo (16) missing or bad",
                        ref_tag=7 if begin is None else 16)
            return
        assert self.session is not None
        self.acceptor.counters["resend_requests"] += 1
        self.session.resend(begin, end)

    async def _logon(self, msg: FixMessage) -> None:
        acc = self.acceptor
        if msg.msg_type != "A":
            acc.counters["not_logon"] += 1
            self.logout("first message must be Logon")
            return
        session = acc.sessions.get(msg.get(49) or "")
        if session is None or msg.get(56) != acc.comp_id:
            acc.counters["logon_refused"] += 1
            self.logout("unknown SenderCompID or TargetCompID")
            return
        if session.conn is not None:
            acc.counters["logon_refused"] += 1
            self.logout("session already logged on")
            return
        hb = _qty(msg.get(108))
        seq = msg.seq_num()
        if hb is None or hb == 0 or hb > 3600 or seq is None:
            acc.counters["logon_refused"] += 1
            self.logout("HeartBtInt (108) or MsgSeqNum (34) missing or bad")
            return
        store = session.store
        if msg.get(141) == "Y":
            store.reset()
        elif seq < store.next_in:
            acc.counters["seq_too_low"] += 1
            session.conn = self
            self.session = session
            self.logout(f"MsgSeqNum too low, expecting {store.next_in} but received {seq}")
            session.conn = None
            self.session = None
            return
        self.hb = float(hb)
        self.session = session
        session.conn = self
        gap = seq > store.next_in
        if not gap:
            store.next_in = seq + 1
            store.save()
        session.send("A", [(98, 0), (108, hb), (141, "Y" if msg.get(141) == "Y" else None)])
        acc.counters["logons"] += 1
        if gap:
            acc.counters["seq_gaps"] += 1
            self.resend_asked = store.next_in
            session.send("2", [(7, store.next_in), (16, 0)])


class FixAcceptor(SessionServer):
    """FIX 4.2 acceptor for ``sessions`` (one per client SenderCompID), our CompID
    ``comp_id``, orders into ``hub``.

    Parameters
    ----------
    hub : OrderHub
    comp_id : str
        Our SenderCompID (the clients' TargetCompID).
    sessions : list of FixSessionConfig
    store_dir : pathlib.Path or None
        Where sequence numbers and sent messages persist (``None``: memory only).
    logon_timeout : float
        Seconds a new connection has to log on.
    """

    def __init__(self, hub: OrderHub, comp_id: str, sessions: list[FixSessionConfig], *,
                 store_dir: pathlib.Path | None = None, logon_timeout: float = 10.0,
                 fsync: bool = False):
        self.hub = hub
        self.comp_id = comp_id
        self.store_dir = store_dir
        self.fsync = fsync
        self.logon_timeout = logon_timeout
        self.counters: Counter[str] = Counter()
        self.exec_ids = 0
        self.exec_prefix = f"{time.time_ns() // 1_000_000:x}-"    # unique across restarts
        self.sessions: dict[str, _Session] = {c.sender_comp_id: _Session(self, c)
                                              for c in sessions}
        SessionServer.__init__(self)

    def connection(self, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> _Connection:
        return _Connection(self, reader, writer)

    def abort(self, conn: _Connection) -> None:
        conn.closing = True
        conn.writer.close()

    async def close(self) -> None:
        await self.stop_connections()
        for session in self.sessions.values():
            session.store.close()

    def session_store(self, sender_comp_id: str) -> SeqStore:
        return self.sessions[sender_comp_id].store
