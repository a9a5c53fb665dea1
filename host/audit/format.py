"""The audit journal's on-disk format: one definition, used by the writer, ``verify``, ``replay``,
``tail`` and ``export``.

A journal is a directory holding two files.

``journal.tpj``: a 64-byte file header, then records back to back.

File header (little-endian)::

    off size field
      0    8 magic        b"TPAUDJ01"
      8    4 header_len   64
     12    4 flags        0
     16   16 journal_id   random bytes, fixed at creation
     32    8 created_ns   i64, creation time (ns since the Unix epoch)
     40   24 reserved     zero

The *genesis hash* is ``SHA-256(file header)``: the first record's ``prev_hash``. The header is
written to a temporary file, fsynced and renamed into place, so it is never torn.

Record (little-endian; ``FIXED`` below is the first 95 bytes)::

    off size field
      0    4 length       u32, bytes in the whole record, this field through ``crc``
      4    2 magic        b"TR"
      6    1 version      1
      7    1 kind         :class:`Kind`
      8    8 seq          u64, record number: 1 for the first record, +1 for each next one
     16    8 ts_ns        i64, ns since the Unix epoch
     24   32 prev_hash    SHA-256 of the previous record's whole bytes (genesis for record 1)
     56    8 order_id     u64, the host's internal order token (0: none)
     64    8 price        i64, ticks (4 implied decimals; 0: none)
     72    8 quantity     i64, shares (0: none)
     80    1 side         ASCII ``B`` buy, ``S`` sell, 0 none
     81   14 lengths      7 x u16: byte lengths of the UTF-8 strings that follow, in this order:
                          client_id, account, strategy, symbol, venue, reason, detail
     95    …              the strings, back to back; ``detail`` is compact JSON (empty: none)
    L-4    4 crc          u32, CRC-32 (zlib) of bytes [0, L-4)

A record's *hash* is ``SHA-256`` of its whole bytes, crc included; the next record stores it as
``prev_hash``, so the records form a hash chain rooted in the file header.

Self-delimiting and torn tails: ``length`` says where the next record starts and ``crc`` proves a
record complete. A *torn tail* is what a crash leaves: from some offset to the end of the file, a
partial record (too short for its length, or a bad crc) with no complete valid record anywhere
after it. Only that is trimmed on reopen, and never below the last checkpoint; a bad record that
has a valid record after it is corruption.

``checkpoints``: text lines, appended and fsynced by the writer after a group commit, at most
every ``checkpoint_interval``::

    cp1 <count> <offset> <head_hex> <ts_ns> <mac_hex or -> <crc_hex>\\n

``count`` records end at byte ``offset`` of the journal and the last one's hash is ``head_hex``
(for count 0: the header's length and the genesis hash). ``mac`` is HMAC-SHA256 with the configured
key over the line's first five fields joined by single spaces (``-``: not signed). ``crc`` is the
CRC-32 of everything before it on the line (including the trailing space). Checkpoints make
truncation at a record boundary detectable: a journal with fewer records than a checkpoint
recorded, or whose record ``count`` does not hash to ``head``, fails ``verify``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Kind", "Record", "Checkpoint", "FormatError", "JOURNAL_FILE", "CHECKPOINT_FILE",
    "HEADER_LEN", "FIXED", "MAX_RECORD", "genesis_hash", "make_header", "check_header",
    "encode_record", "decode_record", "side_code", "format_checkpoint", "parse_checkpoint",
]

JOURNAL_FILE = "journal.tpj"
CHECKPOINT_FILE = "checkpoints"
MAGIC = b"TPAUDJ01"
HEADER = struct.Struct("<8sII16sq24s")
HEADER_LEN = HEADER.size  # 64
RECORD_MAGIC = b"TR"
VERSION = 1
FIXED = struct.Struct("<I2sBBQq32sQqqB7H")
CRC = struct.Struct("<I")
MIN_RECORD = FIXED.size + CRC.size
MAX_RECORD = 1 << 20
MAX_STRING = 0xFFFF
STRING_FIELDS = ("client_id", "account", "strategy", "symbol", "venue", "reason", "detail")
ZERO_HASH = bytes(32)


class FormatError(ValueError):
    """A value that does not fit the record format (too long, out of range, unknown kind)."""


class Kind(enum.IntEnum):
    """Record kinds. Client intents, engine answers, host decisions and operations."""
    ORDER = 1            # a new order received from a client (before it leaves the host)
    CANCEL_REQUEST = 2   # a client's cancel request
    REPLACE_REQUEST = 3  # a client's replace request (detail: new token, new price, new size)
    ACCEPTED = 4         # acknowledgement: the engine accepted the order
    EXECUTED = 5         # a fill: side, quantity = executed shares, price = execution price
    CANCELED = 6         # quantity = shares canceled; reason = cancel reason
    REPLACED = 7         # the replace took effect
    REJECTED = 8         # reason = reject reason (engine or gateway)
    RISK = 9             # a pre-trade risk decision: reason "pass" or the reject reason
    KILL = 10            # kill switch engaged or released (detail: scope, state)
    CONFIG = 11          # configuration change (detail: what changed, digest)
    RECOVERED = 12       # written on reopen after a torn tail was trimmed (detail: where, bytes)


_SIDES: dict[Any, int] = {None: 0, "": 0, "B": 66, "S": 83, "BUY": 66, "SELL": 83,
                          "b": 66, "s": 83, "buy": 66, "sell": 83}


def side_code(side: Any) -> int:
    """The byte stored for ``side``: a ``Side`` enum (``.name``), ``"B"``/``"S"``, or None."""
    if isinstance(side, int) and side in (0, 66, 83) and not hasattr(side, "name"):
        return side
    key = getattr(side, "name", side)
    try:
        return _SIDES[key.upper() if isinstance(key, str) else key]
    except (KeyError, AttributeError):
        raise FormatError(f"side must be buy/sell/None, not {side!r}") from None


def side_text(code: int) -> str:
    return chr(code) if code else ""


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts_ns: int
    kind: Kind
    order_id: int
    client_id: str
    account: str
    strategy: str
    symbol: str
    side: str            # "B", "S" or ""
    price: int
    quantity: int
    venue: str
    reason: str
    detail: Any          # decoded JSON, or None
    prev_hash: bytes
    hash: bytes
    offset: int          # byte offset in journal.tpj
    length: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "ts_ns": self.ts_ns, "kind": self.kind.name,
            "order_id": self.order_id, "client_id": self.client_id, "account": self.account,
            "strategy": self.strategy, "symbol": self.symbol, "side": self.side,
            "price": self.price, "quantity": self.quantity, "venue": self.venue,
            "reason": self.reason, "detail": self.detail, "offset": self.offset,
            "hash": self.hash.hex(),
        }


def make_header(journal_id: bytes, created_ns: int) -> bytes:
    return HEADER.pack(MAGIC, HEADER_LEN, 0, journal_id, created_ns, bytes(24))


def check_header(raw: bytes) -> str | None:
    """None if ``raw`` (the first bytes of a file) is a journal header, else what is wrong."""
    if len(raw) < HEADER_LEN:
        return f"file is {len(raw)} bytes, shorter than the {HEADER_LEN}-byte journal header"
    magic, length, flags, _, _, reserved = HEADER.unpack_from(raw)
    if magic != MAGIC:
        return f"not a tickpath audit journal (magic {magic!r}, expected {MAGIC!r})"
    if length != HEADER_LEN or flags != 0 or reserved != bytes(24):
        return "unsupported journal header (length, flags or reserved bytes)"
    return None


def genesis_hash(header: bytes) -> bytes:
    return hashlib.sha256(header[:HEADER_LEN]).digest()


def _utf8(name: str, value: Any) -> bytes:
    if value is None:
        return b""
    raw = value if isinstance(value, bytes) else str(value).encode()
    if len(raw) > MAX_STRING:
        raise FormatError(f"{name} is {len(raw)} bytes, more than {MAX_STRING}")
    return raw


_pack_fixed = FIXED.pack
_pack_crc = CRC.pack
_crc32 = zlib.crc32
_sha256 = hashlib.sha256


def encode_record(seq: int, ts_ns: int, kind: int, prev_hash: bytes, order_id: int = 0,
                  client_id: str = "", account: str = "", strategy: str = "",
                  symbol: str = "", side: Any = None, price: int = 0, quantity: int = 0,
                  venue: str = "", reason: str = "", detail: Any = None) -> bytes:
    """The bytes of one record (see the module docstring). Raises :class:`FormatError`."""
    try:        # the common case, kept cheap: str fields, a known side
        strings = (client_id.encode(), account.encode(), strategy.encode(), symbol.encode(),
                   venue.encode(), reason.encode(),
                   b"" if detail is None else
                   json.dumps(detail, separators=(",", ":"), sort_keys=True).encode())
        code = _SIDES[side]
    except (AttributeError, KeyError, TypeError):
        strings = (
            _utf8("client_id", client_id), _utf8("account", account),
            _utf8("strategy", strategy), _utf8("symbol", symbol), _utf8("venue", venue),
            _utf8("reason", reason),
            b"" if detail is None else _utf8(
                "detail", json.dumps(detail, separators=(",", ":"), sort_keys=True)))
        code = side_code(side)
    body = b"".join(strings)
    length = MIN_RECORD + len(body)
    if length > MAX_RECORD:
        raise FormatError(f"record is {length} bytes, more than {MAX_RECORD}")
    a, b, c, d, e, f, g = lengths = tuple(map(len, strings))
    if max(lengths) > MAX_STRING:
        name = STRING_FIELDS[lengths.index(max(lengths))]
        raise FormatError(f"{name} is {max(lengths)} bytes, more than {MAX_STRING}")
    try:
        raw = _pack_fixed(length, b"TR", 1, kind, seq, ts_ns, prev_hash, order_id, price,
                          quantity, code, a, b, c, d, e, f, g) + body
    except struct.error as exc:
        raise FormatError(f"field out of range: {exc}") from None
    return raw + _pack_crc(_crc32(raw))


def decode_record(raw: bytes | memoryview, offset: int = 0) -> Record:
    """Decode one complete record whose bytes are ``raw`` (already length- and crc-checked)."""
    (length, _, _, kind, seq, ts_ns, prev, order_id, price, quantity, side,
     *lengths) = FIXED.unpack_from(raw)
    pos = FIXED.size
    strings = []
    for n in lengths:
        strings.append(bytes(raw[pos:pos + n]).decode("utf-8", "replace"))
        pos += n
    client_id, account, strategy, symbol, venue, reason, detail = strings
    try:
        kind = Kind(kind)
    except ValueError:
        pass
    return Record(seq=seq, ts_ns=ts_ns, kind=kind, order_id=order_id, client_id=client_id,
                  account=account, strategy=strategy, symbol=symbol, side=side_text(side),
                  price=price, quantity=quantity, venue=venue, reason=reason,
                  detail=json.loads(detail) if detail else None, prev_hash=bytes(prev),
                  hash=_sha256(raw[:length]).digest(), offset=offset, length=length)


# --- checkpoints -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Checkpoint:
    count: int
    offset: int
    head: bytes
    ts_ns: int
    mac: bytes | None
    line_number: int = 0

    def signed_text(self) -> str:
        return f"cp1 {self.count} {self.offset} {self.head.hex()} {self.ts_ns}"

    def mac_ok(self, key: bytes) -> bool:
        if self.mac is None:
            return False
        want = hmac.new(key, self.signed_text().encode(), hashlib.sha256).digest()
        return hmac.compare_digest(want, self.mac)


def format_checkpoint(count: int, offset: int, head: bytes, ts_ns: int,
                      key: bytes | None) -> bytes:
    text = f"cp1 {count} {offset} {head.hex()} {ts_ns}"
    mac = hmac.new(key, text.encode(), hashlib.sha256).hexdigest() if key else "-"
    line = f"{text} {mac} "
    return f"{line}{zlib.crc32(line.encode()):08x}\n".encode()


def parse_checkpoint(line: bytes, line_number: int = 0) -> Checkpoint | None:
    """The checkpoint on ``line`` (without its newline), or None if it is not a whole one."""
    try:
        text = line.decode("ascii")
        body, crc = text.rsplit(" ", 1)
        if len(crc) != 8 or int(crc, 16) != zlib.crc32((body + " ").encode()):
            return None
        tag, count, offset, head, ts, mac = body.split(" ")
        if tag != "cp1" or len(head) != 64:
            return None
        return Checkpoint(int(count), int(offset), bytes.fromhex(head), int(ts),
                          None if mac == "-" else bytes.fromhex(mac), line_number)
    except ValueError:
        return None
