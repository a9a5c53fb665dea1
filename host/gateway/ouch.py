"""OUCH 4.2 over SoupBinTCP 3.00 server (asyncio), orders into the
:class:`~tickpath.host.gateway.hub.OrderHub`.

Ref: NASDAQ SoupBinTCP 3.00 and OUCH 4.2 specifications; layouts from
:mod:`tickpath.protocol.soupbintcp` and :mod:`tickpath.protocol.ouch42` (summary in
``docs/PROTOCOLS.md``).

Session
    Each user has one sequenced stream (per-user store, kept in ``store_dir`` across
    restarts). Login: unknown user or wrong password → ``J A``; user already connected, a
    session name that is not the current one, or the day has ended → ``J S``. Requested
    sequence 0 means "from now on"; n ≥ 1 replays messages n, n+1, ... first (a number past
    the end starts at the end). The server sends ``H`` after ``heartbeat`` seconds without
    sending (1 s) and drops a client silent for ``dead`` seconds (15 s). End of day: every
    stream gets system event ``C``, then ``Z`` (end of session), and connections close.
Orders in (unsequenced data)
    ``O`` enter: side B buys, S/T/E sell; time in force 0 is IOC (FOK when minimum quantity
    equals shares: OUCH cannot say FOK), 99998/99999 day, other values rejected ``O``; a firm
    other than the user's (blank means the user's) rejected ``L``. A token the user already
    used today is ignored. ``U`` replace: shares are the new open size; unknown existing
    token or reused replacement token ignored. ``X`` cancel: shares are the new intended
    size; unknown token ignored; a token no longer live gets cancel reject ``I``; a cancel
    that changes nothing gets no answer. ``M`` modify: side within buy or within sell
    (S/T/E), shares the new intended size; answered ``M`` with the shares left.
Orders out (sequenced data)
    Accepted ``A`` (order reference number: the internal order id), executed ``E`` (liquidity
    ``R`` for the aggressor, ``A`` for the resting order), canceled ``C`` (reason from the
    engine), AIQ canceled ``D`` for self-match prevention (reason ``Q``), replaced ``U``,
    rejected ``J`` (the engine's upper-case OUCH codes; our own lower-case ones become ``O``),
    order modified ``M``, cancel reject ``I``, system events ``S``. Broken trade ``B`` is
    never sent: the engine never breaks a trade.
Malformed input
    A SoupBinTCP framing error cannot be resynchronised: counted, connection closed. A bad
    OUCH message inside a good packet is counted and answered with a Debug (``+``) packet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pathlib
import time
from collections import Counter
from typing import Any

from tickpath.host.gateway.hub import OrderHub, OrderState, Submission
from tickpath.host.gateway.server import SessionServer
from tickpath.protocol import ouch42 as ouch
from tickpath.protocol import soupbintcp as soup
from tickpath.protocol.records import (
    Action,
    CancelReason,
    Event,
    EventKind,
    Order,
    RejectReason,
    Side,
    TimeInForce,
)

__all__ = ["OuchUser", "OuchServer", "SoupStore", "ns_since_midnight"]

log = logging.getLogger(__name__)

_SIDES = {"B": Side.Buy, "S": Side.Sell, "T": Side.Sell, "E": Side.Sell}
_DAY_TIFS = (ouch.TIF_MARKET_HOURS, ouch.TIF_SYSTEM_HOURS)


def ns_since_midnight() -> int:
    return time.time_ns() % 86_400_000_000_000


@dataclasses.dataclass(frozen=True)
class OuchUser:
    """One SoupBinTCP login: username (≤ 6), password (≤ 10), the OUCH firm its orders carry
    (≤ 4; also the self-match group), the account they book to, cancel-on-disconnect."""

    username: str
    password: str
    firm: str
    account: str = ""
    cancel_on_disconnect: bool = True

    @property
    def key(self) -> str:
        return f"ouch:{self.username}"


class SoupStore:
    """The sequenced messages of one user's stream (1-based), in memory and, with a
    directory, appended to ``<user>.soup`` (u16 length, then the message)."""

    def __init__(self, directory: pathlib.Path | None, name: str):
        self.messages: list[bytes] = []
        self._file = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{name}.soup"
            if path.exists():
                raw = path.read_bytes()
                pos = 0
                while pos + 2 <= len(raw):          # bounded by the file size
                    n = int.from_bytes(raw[pos:pos + 2], "big")
                    if pos + 2 + n > len(raw):
                        break                       # torn tail from a crash
                    self.messages.append(raw[pos + 2:pos + 2 + n])
                    pos += 2 + n
                if pos != len(raw):
                    with open(path, "r+b") as f:
                        f.truncate(pos)
            self._file = open(path, "ab")         # noqa: SIM115 - kept for the session

    @property
    def next_sequence(self) -> int:
        return len(self.messages) + 1

    def append(self, message: bytes) -> int:
        self.messages.append(message)
        if self._file is not None:
            self._file.write(len(message).to_bytes(2, "big") + message)
            self._file.flush()
        return len(self.messages)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclasses.dataclass(slots=True)
class _OuchOrder:
    token: str
    internal_id: int
    side: str                 # OUCH side letter, as entered (or modified)
    stock: str
    tif: int
    firm: str
    display: str
    capacity: str
    intermarket_sweep: str
    minimum_quantity: int
    cross_type: str
    previous: str | None = None     # replaced token (for the ``U`` message)


class _Stream:
    """One user's sequenced stream, orders and (at most one) connection: the hub's listener
    for that user's orders."""

    def __init__(self, server: OuchServer, user: OuchUser):
        self.server = server
        self.user = user
        self.key = user.key
        self.store = SoupStore(server.store_dir, user.username)
        self.conn: _Connection | None = None
        self.tokens: dict[str, _OuchOrder] = {}
        self.pending: tuple[str, Any] | None = None    # (inbound type, _OuchOrder/side)
        if not self.store.messages:
            self.sequenced(ouch.SystemEvent(ns_since_midnight(), "S"))

    def sequenced(self, msg: ouch.OuchMessage) -> None:
        raw = msg.encode()
        self.store.append(raw)
        self.server.counters[f"out_{msg.type}"] += 1
        if self.conn is not None and self.conn.live:
            self.conn.write(soup.SequencedData(raw).encode())

    # --- orders in ---------------------------------------------------------------------

    async def inbound(self, msg: ouch.OuchMessage) -> None:
        t = msg.type
        counters = self.server.counters
        counters[f"in_{t}"] += 1
        if t == "O":
            await self._enter(msg)
        elif t == "U":
            await self._replace(msg)
        elif t == "X":
            order = self.tokens.get(msg.order_token)       # type: ignore[attr-defined]
            if order is None:
                counters["ignored_unknown_token"] += 1
                return
            await self._submit(Order(action=Action.Cancel, order_id=order.internal_id,
                                     shares=msg.shares), order, ("X", order))  # type: ignore
        elif t == "M":
            order = self.tokens.get(msg.order_token)       # type: ignore[attr-defined]
            side = msg.side                                # type: ignore[attr-defined]
            if order is None or side not in _SIDES \
                    or _SIDES[side] is not _SIDES[order.side]:
                counters["ignored_bad_modify"] += 1
                return
            await self._submit(Order(action=Action.Cancel, order_id=order.internal_id,
                                     shares=msg.shares), order,   # type: ignore[attr-defined]
                               ("M", (order, side)))

    async def _submit(self, order: Order, o: _OuchOrder, pending: tuple[str, Any],
                      state: OrderState | None = None) -> None:
        self.pending = pending
        try:
            await self.server.hub.submit(
                order, Submission(self.key, self.user.account or self.user.firm, o.token),
                self, new_state=state)
        finally:
            self.pending = None

    def _reject(self, token: str, reason: str) -> None:
        self.server.counters["local_rejects"] += 1
        self.sequenced(ouch.Rejected(ns_since_midnight(), token, reason))

    async def _enter(self, m: Any) -> None:
        hub = self.server.hub
        token = m.order_token
        if not token or token in self.tokens:
            self.server.counters["ignored_duplicate_token"] += 1
            return
        side = _SIDES.get(m.side)
        firm = m.firm or self.user.firm
        stock = m.stock
        if side is None:
            return self._reject(token, "O")
        if firm != self.user.firm:
            return self._reject(token, "L")
        if not stock or not stock.isascii() or " " in stock:
            return self._reject(token, "S")
        if m.time_in_force == ouch.TIF_IOC:
            if m.minimum_quantity and m.minimum_quantity == m.shares:
                tif, min_qty = TimeInForce.Fok, 0
            else:
                tif, min_qty = TimeInForce.Ioc, m.minimum_quantity
        elif m.time_in_force in _DAY_TIFS:
            tif, min_qty = TimeInForce.Day, m.minimum_quantity
        else:
            return self._reject(token, "O")
        internal = hub.new_order_id()
        o = _OuchOrder(token, internal, m.side, stock, m.time_in_force, firm, m.display,
                       m.capacity, m.intermarket_sweep, m.minimum_quantity, m.cross_type)
        self.tokens[token] = o
        symbol = hub.symbol_id(stock)
        account = self.user.account or self.user.firm
        state = OrderState(internal, self, token, account, side, symbol, m.price, extra=o)
        order = Order(action=Action.Enter, side=side, tif=tif, order_id=internal,
                      firm=hub.firm_id(firm), symbol=symbol, shares=m.shares, price=m.price,
                      min_qty=min_qty)
        await self._submit(order, o, ("O", o), state)

    async def _replace(self, m: Any) -> None:
        hub = self.server.hub
        old = self.tokens.get(m.existing_token)
        new_token = m.replacement_token
        if old is None or not new_token or new_token in self.tokens:
            self.server.counters["ignored_bad_replace"] += 1
            return
        internal = hub.new_order_id()
        o = dataclasses.replace(old, token=new_token, internal_id=internal, display=m.display,
                                intermarket_sweep=m.intermarket_sweep,
                                minimum_quantity=m.minimum_quantity, previous=old.token)
        self.tokens[new_token] = o
        live = hub.order(old.internal_id)
        state = OrderState(internal, self, new_token, self.user.account or self.user.firm,
                           _SIDES[old.side], live.symbol if live else hub.symbol_id(old.stock),
                           m.price, extra=o)
        order = Order(action=Action.Replace, order_id=old.internal_id, new_order_id=internal,
                      shares=m.shares, price=m.price)
        await self._submit(order, o, ("U", o), state)

    # --- events out --------------------------------------------------------------------

    def on_event(self, e: Event, state: OrderState | None, aggressor: bool) -> None:
        kind = e.kind
        now = ns_since_midnight()
        if kind is EventKind.Closed:
            self.sequenced(ouch.SystemEvent(now, "C"))
            self.server.end_stream(self)
            return
        if kind is EventKind.Rejected:
            self._on_reject(e, now)
            return
        assert state is not None
        o: _OuchOrder = state.extra
        if kind is EventKind.Accepted:
            self.sequenced(ouch.Accepted(
                now, o.token, o.side, e.shares, o.stock, e.price, o.tif, o.firm, o.display,
                o.internal_id, o.capacity, o.intermarket_sweep, o.minimum_quantity,
                o.cross_type, "L", " "))
        elif kind is EventKind.Executed:
            self.sequenced(ouch.Executed(now, o.token, e.shares, e.price,
                                         "R" if aggressor else "A", e.match_number))
        elif kind is EventKind.Canceled:
            pending = self.pending
            if pending is not None and pending[0] == "M" and pending[1][0] is o \
                    and e.reason == CancelReason.User:
                o.side = pending[1][1]
                self.sequenced(ouch.OrderModified(now, o.token, o.side,
                                                  state.open if state.live else 0))
            elif e.reason == CancelReason.SelfMatch:
                agg = self.server.hub.aggressor
                prevented = min(e.shares, agg.open) if agg is not None else e.shares
                self.sequenced(ouch.AiqCanceled(now, o.token, e.shares, "Q", prevented,
                                                e.price, "A"))
            elif e.shares:
                self.sequenced(ouch.Canceled(now, o.token, e.shares, chr(e.reason)))
            else:
                self.server.counters["cancel_no_change"] += 1
        elif kind is EventKind.Replaced:
            nxt = self.server.hub.order(e.contra_id)
            if nxt is None:
                return
            n: _OuchOrder = nxt.extra
            self.sequenced(ouch.Replaced(
                now, n.token, n.side, e.shares, n.stock, e.price, n.tif, n.firm, n.display,
                n.internal_id, n.capacity, n.intermarket_sweep, n.minimum_quantity,
                n.cross_type, "L", old_token(n), " "))

    def _on_reject(self, e: Event, now: int) -> None:
        pending = self.pending
        if pending is None:
            return
        t, what = pending
        reason = chr(e.reason) if 0 < e.reason < 128 else "O"
        if not reason.isupper():
            reason = "O"
        if t == "O":
            self.sequenced(ouch.Rejected(now, what.token, reason))
        elif t == "U":
            if e.reason == RejectReason.UnknownToken:
                self.server.counters["ignored_replace_not_live"] += 1
            else:
                self.sequenced(ouch.Rejected(now, what.token, reason))
        elif t == "X":
            self.sequenced(ouch.CancelReject(now, what.token))
        else:
            self.server.counters["ignored_modify_not_live"] += 1


def old_token(o: _OuchOrder) -> str:
    return o.previous or ""


class _Connection:
    def __init__(self, server: OuchServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.stream: _Stream | None = None
        self.live = False
        self.closing = False
        self.last_in = self.last_out = time.monotonic()

    def write(self, raw: bytes) -> None:
        if not self.closing:
            self.writer.write(raw)
            self.last_out = time.monotonic()

    async def run(self) -> None:
        server = self.server
        counters = server.counters
        framer = soup.SoupFramer()
        timer = asyncio.create_task(self._timer())
        try:
            while not self.closing:
                try:
                    async with asyncio.timeout(0.5):
                        data = await self.reader.read(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                self.last_in = time.monotonic()
                try:
                    packets = framer.feed(data)
                except soup.SoupError as e:
                    counters["soup_errors"] += 1
                    log.info("bad SoupBinTCP input, closing: %s", e)
                    self.write(soup.Debug(f"bad SoupBinTCP packet: {e.reason}"[:200]).encode())
                    break
                for packet in packets:
                    await self._packet(packet)
                    if self.closing:
                        break
                if framer.buffered > 70_000:
                    break
                await self.writer.drain()
        except (ConnectionError, OSError):
            counters["connection_errors"] += 1
        finally:
            timer.cancel()
            await self._close()

    async def _packet(self, packet: soup.SoupPacket) -> None:
        server = self.server
        counters = server.counters
        if self.stream is None:
            if not isinstance(packet, soup.LoginRequest):
                counters["not_login"] += 1
                self.closing = True
                return
            await self._login(packet)
            return
        if isinstance(packet, soup.UnsequencedData):
            try:
                msg = ouch.decode_inbound(packet.message, 0, len(packet.message))
            except ouch.OuchError as e:
                counters["ouch_errors"] += 1
                self.write(soup.Debug(f"bad OUCH message: {e}"[:200]).encode())
                return
            await self.stream.inbound(msg)
        elif isinstance(packet, soup.LogoutRequest):
            counters["logouts"] += 1
            self.closing = True
        elif isinstance(packet, (soup.ClientHeartbeat, soup.Debug)):
            pass
        else:
            counters["unexpected_packets"] += 1

    async def _login(self, req: soup.LoginRequest) -> None:
        server = self.server
        stream = server.streams.get(req.username)
        if stream is None or stream.user.password != req.password:
            server.counters["login_rejected"] += 1
            self.write(soup.LoginRejected(soup.LoginRejected.NOT_AUTHORIZED).encode())
            self.closing = True
            return
        if stream.conn is not None or server.ended or \
                req.session not in ("", server.session):
            server.counters["login_rejected"] += 1
            self.write(soup.LoginRejected(soup.LoginRejected.SESSION_NOT_AVAILABLE).encode())
            self.closing = True
            return
        first = stream.store.next_sequence if req.sequence == 0 \
            else min(req.sequence, stream.store.next_sequence)
        self.stream = stream
        stream.conn = self
        self.write(soup.LoginAccepted(server.session, first).encode())
        for raw in stream.store.messages[first - 1:]:
            self.write(soup.SequencedData(raw).encode())
        server.counters["logins"] += 1
        server.counters["replayed"] += stream.store.next_sequence - first
        self.live = True

    async def _timer(self) -> None:
        server = self.server
        while not self.closing:                 # ends with the connection (cancelled)
            await asyncio.sleep(min(0.1, server.heartbeat / 4))
            now = time.monotonic()
            if self.stream is None:
                if now - self.last_in >= server.dead:
                    server.counters["login_timeouts"] += 1
                    self._abort()
                    return
                continue
            if now - self.last_out >= server.heartbeat:
                self.write(soup.ServerHeartbeat().encode())
            if now - self.last_in >= server.dead:
                server.counters["heartbeat_timeouts"] += 1
                self._abort()
                return

    def _abort(self) -> None:
        self.closing = True
        self.writer.close()

    def end_of_session(self) -> None:
        self.write(soup.EndOfSession().encode())
        self._abort()

    async def _close(self) -> None:
        self.closing = True
        self.live = False
        try:
            await asyncio.wait_for(self.writer.drain(), 1.0)
        except (ConnectionError, OSError, TimeoutError):
            pass
        self.writer.close()
        stream = self.stream
        if stream is not None and stream.conn is self:
            stream.conn = None
            if stream.user.cancel_on_disconnect and not self.server.ended:
                await self.server.hub.cancel_session(stream.key)


class OuchServer(SessionServer):
    """OUCH 4.2 / SoupBinTCP server for ``users``, orders into ``hub``.

    Parameters
    ----------
    hub : OrderHub
    users : list of OuchUser
    session : str
        SoupBinTCP session name (≤ 10 characters), announced in Login Accepted.
    store_dir : pathlib.Path or None
        Where each user's sequenced stream persists (``None``: memory only).
    heartbeat, dead : float
        Send a heartbeat after ``heartbeat`` idle seconds; drop a client silent ``dead``
        seconds.
    """

    def __init__(self, hub: OrderHub, users: list[OuchUser], *, session: str = "TICKPATH",
                 store_dir: pathlib.Path | None = None, heartbeat: float = 1.0,
                 dead: float = 15.0):
        if len(session) > 10:
            raise ValueError(f"session {session!r} is longer than 10 characters")
        self.hub = hub
        self.session = session
        self.store_dir = store_dir
        self.heartbeat = heartbeat
        self.dead = dead
        self.ended = False
        self.counters: Counter[str] = Counter()
        self.streams: dict[str, _Stream] = {u.username: _Stream(self, u) for u in users}
        SessionServer.__init__(self)
        for stream in self.streams.values():
            hub.add_broadcast(stream)

    def connection(self, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> _Connection:
        return _Connection(self, reader, writer)

    def abort(self, conn: _Connection) -> None:
        conn._abort()

    def end_stream(self, stream: _Stream) -> None:
        """End of day reached ``stream``: no new logins; end its session."""
        self.ended = True
        if stream.conn is not None:
            stream.conn.end_of_session()

    async def close(self) -> None:
        for stream in self.streams.values():
            self.hub.remove_broadcast(stream)
        await self.stop_connections()
        for stream in self.streams.values():
            stream.store.close()
