"""The receiving side of a MoldUDP64 session: sequencing, A/B arbitration, gap recovery.

Ref: NASDAQ MoldUDP64 Protocol Specification 1.00 (layout in ``docs/PROTOCOLS.md``).

:class:`MoldSession` is pure logic: it owns no socket and never reads a clock. The caller hands
it downstream packets (``on_packet``, with the arrival time in integer nanoseconds and which
feed they came from) and calls :meth:`MoldSession.poll` now and then with the current time; it
gets back the messages that became deliverable, in order, and the re-requests to send. The
same object can therefore be driven by a socket, a packet ring, a pcap replay, a deterministic
test, or the gap events of the feed gateware (:meth:`MoldSession.on_sequence_hint`).

Every message is delivered exactly once and in sequence order. Sequence numbers the session
knows about but has not delivered are either *buffered* (arrived early, bounded by
``max_buffered``) or *missing* (a gap). Missing ranges are re-requested after ``gap_delay_ns``
(time for reordering or the other feed of an A/B pair to fill them), unicast, limited to
``request_rate`` per second with a burst of ``request_burst``, at most ``max_outstanding``
awaiting an answer, each retried with exponential back-off. A server answers at most one
MTU's worth, so when an answer fills the front of a range the remainder is requested again at
once. A range still missing ``recovery_timeout_ns`` after it was found is given up: counted in
``lost``, recorded in :attr:`MoldSession.lost_ranges`, and skipped. Hitting any bound is
counted, never fatal.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

from tickpath.protocol.moldudp64 import (
    END_OF_SESSION_COUNT,
    HEADER,
    HEADER_LENGTH,
    HEARTBEAT_COUNT,
    MAX_MESSAGES,
    MoldError,
    Rerequest,
    session_text,
)

__all__ = ["MoldSession", "SessionConfig", "SessionStats", "split_packet"]

_MS = 1_000_000
_S = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    """Bounds and timers of a :class:`MoldSession`; all times are integer nanoseconds.

    ``session``: the session name to follow (``None``: adopt the first one seen).
    ``first_sequence``: the first sequence wanted (``1`` recovers a whole session from its
    start; ``None`` joins late, at the first packet seen).
    ``rerequest``: whether to produce re-requests at all (off for a pure A/B arbiter).
    ``recovery_timeout_ns``: give a missing range up after this long (``None``: never).
    ``request_chunk``: 0 asks for a missing range with one request (the server answers one
    MTU's worth and the rest is asked for after each answer, one round trip per packet);
    N > 0 asks for a longer range in pieces of N messages side by side, as many at once as
    ``max_outstanding`` and the rate allow (a burst refills in a few round trips; pick N so
    that N messages fit one packet, e.g. 24 ITCH messages).
    """

    session: str | None = None
    first_sequence: int | None = 1
    rerequest: bool = True
    gap_delay_ns: int = 1 * _MS
    request_timeout_ns: int = 50 * _MS
    max_request_timeout_ns: int = 1 * _S
    request_rate: int = 2_000
    request_burst: int = 64
    max_outstanding: int = 16
    max_request_count: int = 1_000
    max_buffered: int = 1 << 20
    recovery_timeout_ns: int | None = 30 * _S
    max_lost_ranges: int = 1_000
    max_recovery_samples: int = 100_000
    request_chunk: int = 0

    def __post_init__(self):
        for name in ("gap_delay_ns", "request_timeout_ns", "max_request_timeout_ns",
                     "request_rate", "request_burst", "max_outstanding", "max_request_count",
                     "max_buffered", "max_lost_ranges", "max_recovery_samples",
                     "request_chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {v!r}")
        if self.request_timeout_ns <= 0 or self.request_rate <= 0:
            raise ValueError("request_timeout_ns and request_rate must be positive")
        if not 1 <= self.max_request_count <= MAX_MESSAGES:
            raise ValueError(f"max_request_count must be in 1..{MAX_MESSAGES}")
        if self.request_burst < 1 or self.max_outstanding < 1:
            raise ValueError("request_burst and max_outstanding must be at least 1")
        if self.first_sequence is not None and self.first_sequence < 0:
            raise ValueError("first_sequence must be non-negative")


@dataclasses.dataclass
class SessionStats:
    """Counters, cumulative. Messages are counted once each; packets per arrival.

    ``delivered``: messages handed out. ``packets``/``feed_packets``: packets received (per
    feed). ``feed_wins``: packets that brought at least one new message, per feed (A/B
    arbitration: first arrival wins). ``duplicate_packets``/``duplicate_messages``: nothing
    new / messages already had. ``gaps``: missing ranges found; ``gap_messages`` their size.
    ``recovered``: messages that arrived after their gap was found. ``requests``: re-requests
    produced (``request_retries`` of them after a timeout, ``continuations`` after a partial
    answer). ``rate_limited``/``outstanding_limited``: times a request had to wait for the
    rate or the outstanding bound. ``overflow_packets``/``overflow_messages``: early packets
    not buffered because ``max_buffered`` was reached (they are re-requested later).
    ``lost``: messages given up. ``malformed``: undecodable packets. ``foreign_packets``:
    packets of another session while this one is unfinished. ``recovered_gaps``: missing
    ranges filled completely; ``recovery_ns_total``/``recovery_ns_max``: time from each one's
    detection to its last message arriving (the first ``max_recovery_samples`` are also kept
    in :attr:`MoldSession.recovery_samples`, for percentiles).
    """

    delivered: int = 0
    packets: int = 0
    feed_packets: dict = dataclasses.field(default_factory=dict)
    feed_wins: dict = dataclasses.field(default_factory=dict)
    heartbeats: int = 0
    end_of_session: int = 0
    duplicate_packets: int = 0
    duplicate_messages: int = 0
    gaps: int = 0
    gap_messages: int = 0
    recovered: int = 0
    requests: int = 0
    request_retries: int = 0
    continuations: int = 0
    rate_limited: int = 0
    outstanding_limited: int = 0
    overflow_packets: int = 0
    overflow_messages: int = 0
    lost: int = 0
    malformed: int = 0
    foreign_packets: int = 0
    session_changes: int = 0
    buffered_peak: int = 0
    recovered_gaps: int = 0
    recovery_ns_total: int = 0
    recovery_ns_max: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Gap:
    """A missing range ``[start, end)`` and the state of its re-request."""

    __slots__ = ("start", "end", "found_ns", "due_ns", "attempts", "requested_ns")

    def __init__(self, start: int, end: int, found_ns: int, due_ns: int):
        self.start = start
        self.end = end
        self.found_ns = found_ns
        self.due_ns = due_ns          # when to (re-)request
        self.attempts = 0             # requests sent since the last progress
        self.requested_ns = -1        # when the last request went out (-1: none awaiting)

    def split(self, start: int, end: int) -> _Gap:
        g = _Gap(start, end, self.found_ns, self.due_ns)
        g.attempts = self.attempts
        g.requested_ns = self.requested_ns
        return g

    def __repr__(self) -> str:
        return f"_Gap({self.start}, {self.end})"


class MoldSession:
    """Sequencer for one MoldUDP64 session fed by one or more feeds (A/B).

    ``on_packet`` and ``poll`` return the messages that became deliverable, in sequence order;
    ``poll`` also returns the re-requests to send now.
    """

    def __init__(self, config: SessionConfig | None = None, **kwargs):
        if config is None:
            config = SessionConfig(**kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        self._config = config
        self.stats = SessionStats()
        self._session: str | None = config.session
        self._session_raw: bytes | None = None
        self._reset(config.first_sequence)
        # request token bucket: credit in ns of request time, capped at burst * interval
        self._interval_ns = _S // config.request_rate
        self._credit_ns = self._interval_ns * config.request_burst
        self._credit_at: int | None = None
        self.lost_ranges: list[tuple[str, int, int]] = []
        #: nanoseconds from detection to fill of each fully recovered range (bounded)
        self.recovery_samples: list[int] = []

    def _reset(self, first_sequence: int | None) -> None:
        self._next = first_sequence               # next sequence to deliver (None: unknown)
        self._high = first_sequence               # one past the highest sequence known to exist
        self._buffer: dict[int, bytes] = {}
        self._gaps: list[_Gap] = []               # sorted, disjoint, all within [next, high)
        self._lost: list[tuple[int, int]] = []    # given-up ranges not yet passed by next
        self._eos: int | None = None              # sequence the end of session announced

    # -- what callers read -------------------------------------------------------------------
    @property
    def config(self) -> SessionConfig:
        return self._config

    @property
    def session(self) -> str | None:
        return self._session

    @property
    def next_sequence(self) -> int | None:
        """The next sequence to be delivered."""
        return self._next

    @property
    def high_sequence(self) -> int | None:
        """One past the highest sequence known to exist."""
        return self._high

    @property
    def end_of_session(self) -> int | None:
        """The final next-sequence announced by an end-of-session packet, once seen."""
        return self._eos

    @property
    def complete(self) -> bool:
        """End of session seen and every message before it delivered (or given up)."""
        return self._eos is not None and self._next is not None and self._next >= self._eos

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def missing(self) -> list[tuple[int, int]]:
        """Missing ranges ``(first, end)`` not yet recovered."""
        return [(g.start, g.end) for g in self._gaps]

    @property
    def missing_messages(self) -> int:
        return sum(g.end - g.start for g in self._gaps)

    @property
    def outstanding(self) -> int:
        """Re-requests sent and still awaiting an answer."""
        return sum(1 for g in self._gaps if g.requested_ns >= 0)

    # -- input -------------------------------------------------------------------------------
    def on_packet(self, payload: bytes, now_ns: int, feed: int = 0) -> list[bytes]:
        """A downstream packet (multicast or a retransmission) arrived at ``now_ns``."""
        st = self.stats
        st.packets += 1
        fp = st.feed_packets
        fp[feed] = fp.get(feed, 0) + 1
        try:
            raw, sequence, count, msgs = split_packet(payload)
        except MoldError:
            st.malformed += 1
            return []
        if raw != self._session_raw:
            if not self._check_session(session_text(raw), raw, sequence):
                st.foreign_packets += 1
                return []
        if count == HEARTBEAT_COUNT or count == END_OF_SESSION_COUNT:
            if count == HEARTBEAT_COUNT:
                st.heartbeats += 1
            else:
                st.end_of_session += 1
                if self._eos is None or sequence > self._eos:
                    self._eos = sequence
            if self._next is None:
                self._next = self._high = sequence
            self._extend(sequence, now_ns)
            return self._drain([]) if count == END_OF_SESSION_COUNT else []
        return self._data(sequence, msgs, now_ns, feed)

    def on_sequence_hint(self, next_sequence: int, now_ns: int) -> list[bytes]:
        """Messages up to ``next_sequence`` exist (a heartbeat, or a gap event from the feed
        gateware): whatever of them has not arrived is a gap."""
        if self._next is None:
            self._next = self._high = next_sequence
        self._extend(next_sequence, now_ns)
        return []

    def _check_session(self, name: str, raw: bytes, sequence: int) -> bool:
        """Whether a packet of session ``raw`` belongs here (adopting or switching to it)."""
        if self._session_raw is None and (self._session is None or name == self._session):
            self._session, self._session_raw = name, raw
            return True
        if self._session_raw is not None and self.complete and self._config.session is None:
            # The session ended and everything was delivered: follow the next one, from 1.
            self.stats.session_changes += 1
            self._session, self._session_raw = name, raw
            self._reset(1)
            return True
        return False

    def _extend(self, end: int, now_ns: int) -> None:
        """Sequences below ``end`` exist: a gap for those beyond what is known."""
        high = self._high
        if end > high:
            self._add_gap(high, end, now_ns)
            self._high = end

    def _add_gap(self, start: int, end: int, now_ns: int) -> None:
        st = self.stats
        st.gaps += 1
        st.gap_messages += end - start
        gaps = self._gaps
        if gaps and gaps[-1].end == start:
            gaps[-1].end = end        # adjoining the last gap: one range
        else:
            gaps.append(_Gap(start, end, now_ns, now_ns + self._config.gap_delay_ns))

    def _data(self, s: int, msgs: Sequence[bytes], now_ns: int, feed: int) -> list[bytes]:
        st = self.stats
        n = len(msgs)
        e = s + n
        nxt = self._next
        if nxt is None:
            nxt = self._next = self._high = s
        if e <= nxt or n == 0:
            st.duplicate_packets += 1
            st.duplicate_messages += n
            return []
        old_high = self._high
        if e > old_high:
            if s > old_high:
                self._add_gap(old_high, s, now_ns)
            self._high = e
        buf = self._buffer
        if s <= nxt:
            # In order (or overlapping the front): deliver at once.
            skip = nxt - s
            if skip:
                st.duplicate_messages += skip
                out = list(msgs[skip:])
            else:
                out = msgs if type(msgs) is list else list(msgs)   # split_packet's own list
            if self._gaps and self._gaps[0].start < e:
                st.recovered += self._fill(nxt, e, now_ns)
            if buf:
                for q in range(nxt, e):
                    if buf.pop(q, None) is not None:
                        st.duplicate_messages += 1
            self._next = e
            wf = st.feed_wins
            wf[feed] = wf.get(feed, 0) + 1
            return self._drain(out)
        # Early: buffer what is new (inside a gap, or beyond what was known), within the bound.
        new_seqs = self._missing_in(s, min(e, old_high)) if s < old_high else []
        recovered = sum(b - a for a, b in new_seqs)
        if e > old_high:
            new_seqs.append((max(s, old_high), e))
        wanted = sum(b - a for a, b in new_seqs)
        if wanted == 0:
            st.duplicate_packets += 1
            st.duplicate_messages += n
            return []
        if len(buf) + wanted > self._config.max_buffered:
            st.overflow_packets += 1
            st.overflow_messages += wanted
            if e > old_high:
                # Not kept: these sequences are missing too (re-requested later).
                self._add_gap(max(s, old_high), e, now_ns)
            return []
        for a, b in new_seqs:
            for q in range(a, b):
                buf[q] = msgs[q - s]
        if recovered:
            st.recovered += self._fill(s, min(e, old_high), now_ns)
        st.duplicate_messages += n - wanted
        if len(buf) > st.buffered_peak:
            st.buffered_peak = len(buf)
        wf = st.feed_wins
        wf[feed] = wf.get(feed, 0) + 1
        return []

    def _missing_in(self, s: int, e: int) -> list[tuple[int, int]]:
        """Parts of ``[s, e)`` inside gaps."""
        out = []
        gaps = self._gaps
        i = bisect.bisect_right(gaps, s, key=lambda g: g.end)
        while i < len(gaps) and gaps[i].start < e:
            g = gaps[i]
            a, b = max(g.start, s), min(g.end, e)
            if a < b:
                out.append((a, b))
            i += 1
        return out

    def _fill(self, s: int, e: int, now_ns: int) -> int:
        """Remove ``[s, e)`` from the gaps; returns how many missing sequences it covered.
        A gap whose front was filled is asked for again at once (a partial answer)."""
        gaps = self._gaps
        st = self.stats
        i = bisect.bisect_right(gaps, s, key=lambda g: g.end)
        filled = 0
        while i < len(gaps) and gaps[i].start < e:
            g = gaps[i]
            a, b = max(g.start, s), min(g.end, e)
            filled += b - a
            if a <= g.start and b >= g.end:
                del gaps[i]
                took = now_ns - g.found_ns
                st.recovered_gaps += 1
                st.recovery_ns_total += took
                if took > st.recovery_ns_max:
                    st.recovery_ns_max = took
                if len(self.recovery_samples) < self._config.max_recovery_samples:
                    self.recovery_samples.append(took)
                continue
            if a <= g.start:
                g.start = b                       # front filled: progress
                if g.requested_ns >= 0:
                    g.requested_ns = -1
                    g.attempts = 0
                    g.due_ns = -1                 # continue now
                i += 1
            elif b >= g.end:
                g.end = a                         # tail filled
                i += 1
            else:
                gaps.insert(i + 1, g.split(b, g.end))
                g.end = a
                i += 2
        return filled

    def _drain(self, out: list[bytes]) -> list[bytes]:
        """Append buffered messages that are now in order; skip given-up ranges."""
        buf = self._buffer
        nxt = self._next
        lost = self._lost
        while True:
            if buf:
                m = buf.pop(nxt, None)
                if m is not None:
                    out.append(m)
                    nxt += 1
                    continue
            if lost and lost[0][0] <= nxt:
                nxt = max(nxt, lost.pop(0)[1])
                continue
            break
        self._next = nxt
        self.stats.delivered += len(out)
        return out

    # -- time --------------------------------------------------------------------------------
    def poll(self, now_ns: int) -> tuple[list[bytes], list[Rerequest]]:
        """Advance timers: returns messages released by giving ranges up, and the re-requests
        due now (at most what the rate and outstanding bounds allow)."""
        cfg = self._config
        out: list[bytes] = []
        gaps = self._gaps
        if not gaps:
            return out, []
        if cfg.recovery_timeout_ns is not None:
            limit = now_ns - cfg.recovery_timeout_ns
            if any(g.found_ns <= limit for g in gaps):
                self._give_up([g for g in gaps if g.found_ns <= limit])
                out = self._drain(out)
                if not gaps:
                    return out, []
        if not cfg.rerequest:
            return out, []
        requests: list[Rerequest] = []
        st = self.stats
        outstanding = 0
        for g in gaps:
            if g.requested_ns >= 0:
                timeout = min(cfg.request_timeout_ns << min(g.attempts - 1, 20),
                              cfg.max_request_timeout_ns)
                if now_ns - g.requested_ns < timeout:
                    outstanding += 1
                    continue
                g.requested_ns = -1               # timed out: due again
                g.due_ns = now_ns
        self._refill(now_ns)
        chunk = cfg.request_chunk
        for i, g in enumerate(gaps):
            if g.requested_ns >= 0 or g.due_ns > now_ns:
                continue
            if outstanding >= cfg.max_outstanding:
                st.outstanding_limited += 1
                break
            if self._credit_ns < self._interval_ns:
                st.rate_limited += 1
                break
            self._credit_ns -= self._interval_ns
            if chunk and g.end - g.start > chunk:
                # Ask for the range in pieces, side by side (visited next in this loop).
                gaps.insert(i + 1, g.split(g.start + chunk, g.end))
                g.end = g.start + chunk
            count = min(g.end - g.start, cfg.max_request_count)
            requests.append(Rerequest(self._session or "", g.start, count))
            st.requests += 1
            if g.attempts:
                st.request_retries += 1
            elif g.due_ns < 0:
                st.continuations += 1
            g.attempts += 1
            g.requested_ns = now_ns
            outstanding += 1
        return out, requests

    def _refill(self, now_ns: int) -> None:
        if self._credit_at is not None:
            cap = self._interval_ns * self._config.request_burst
            self._credit_ns = min(cap, self._credit_ns + (now_ns - self._credit_at))
        self._credit_at = now_ns

    def _give_up(self, victims: list[_Gap]) -> None:
        for g in victims:
            self._gaps.remove(g)
            self.stats.lost += g.end - g.start
            if len(self.lost_ranges) < self._config.max_lost_ranges:
                self.lost_ranges.append((self._session or "", g.start, g.end))
            self._lost.append((g.start, g.end))
        self._lost.sort()

    def give_up(self, now_ns: int) -> list[bytes]:
        """Give every missing range up now (e.g. at a deadline); returns what that releases."""
        self._give_up(list(self._gaps))
        return self._drain([])

    def next_deadline(self, now_ns: int) -> int | None:
        """The earliest time ``poll`` has something to do (``None``: nothing pending)."""
        if not self._gaps:
            return None
        cfg = self._config
        best = None
        for g in self._gaps:
            if g.requested_ns >= 0:
                t = g.requested_ns + min(cfg.request_timeout_ns << min(g.attempts - 1, 20),
                                         cfg.max_request_timeout_ns)
            else:
                t = g.due_ns
            if cfg.recovery_timeout_ns is not None:
                t = min(t, g.found_ns + cfg.recovery_timeout_ns)
            best = t if best is None else min(best, t)
        return max(best, now_ns)


_unpack_header = HEADER.unpack_from


def split_packet(buf: bytes | bytearray | memoryview) -> tuple[bytes, int, int, list[bytes]]:
    """``(raw session, sequence, count, messages)`` of a downstream packet: the same checks as
    ``moldudp64.decode_packet`` (raises :class:`MoldError`), about twice as fast (no packet
    object, no text session name, slices of ``bytes``); what the receive path calls."""
    end = len(buf)
    if end < HEADER_LENGTH:
        raise MoldError(f"truncated MoldUDP64 header: {end} of {HEADER_LENGTH} bytes", 0)
    raw, sequence, count = _unpack_header(buf, 0)
    if count == END_OF_SESSION_COUNT or count == HEARTBEAT_COUNT:
        if end != HEADER_LENGTH:
            raise MoldError(f"{end - HEADER_LENGTH} bytes after a header of count {count}",
                            HEADER_LENGTH)
        return raw, sequence, count, []
    if type(buf) is not bytes:
        buf = bytes(buf)
    msgs: list[bytes] = []
    append = msgs.append
    pos = HEADER_LENGTH
    try:
        for _ in range(count):
            nxt = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
            append(buf[pos + 2:nxt])
            pos = nxt
    except IndexError:
        raise MoldError(f"truncated block in a packet of {count} blocks", pos) from None
    if pos != end:
        raise MoldError(f"{count} blocks say {pos} bytes, the packet has {end}", min(pos, end))
    return raw, sequence, count, msgs
