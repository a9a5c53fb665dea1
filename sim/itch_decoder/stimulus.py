"""Message streams for the ITCH decoder benches: real captures and seeded random streams."""

import pathlib
import random

from tickpath.protocol import itch
from tickpath.protocol.pcap import iter_mold_messages

__all__ = ["bx_messages", "pcap_messages", "random_messages", "valid_message", "UNKNOWN_TYPES"]

#: First bytes that are not an ITCH 5.0 type.
UNKNOWN_TYPES = bytes(b for b in range(256) if chr(b) not in itch.SPECS)


def bx_messages(image: bytes, limit: int | None = None) -> list[bytes]:
    """Raw messages of a BinaryFILE image (the first ``limit`` of them)."""
    out = []
    for _, raw in itch.iter_binaryfile_raw(image):
        if limit is not None and len(out) >= limit:
            break
        out.append(raw)
    return out


def pcap_messages(pcap_dirs: list[pathlib.Path]) -> list[bytes]:
    """Every ITCH message inside the MoldUDP64 packets of every capture in ``pcap_dirs``."""
    out = []
    for directory in pcap_dirs:
        for path in sorted(directory.glob("*.pcap")):
            for _, _, packet in iter_mold_messages(path):
                out.extend(packet.messages)
    return out


def valid_message(rng: random.Random, type_char: str) -> bytes:
    """A well-formed message of ``type_char`` with random field bytes (side B or S)."""
    spec = itch.SPECS[type_char]
    body = bytearray(rng.randbytes(spec.length))
    body[0] = ord(type_char)
    for field in spec.fields:
        if field.name == "buy_sell_indicator":
            body[field.offset] = rng.choice(b"BS")
    return bytes(body)


def random_messages(rng: random.Random, count: int, *, malformed_share: float = 0.25,
                    max_extra: int = 40) -> list[bytes]:
    """``count`` messages: valid ones of every type with random fields, mixed with unknown
    types, messages too long by up to ``max_extra`` bytes and truncated ones (down to 1 byte)."""
    types = sorted(itch.SPECS)
    out = []
    for _ in range(count):
        raw = valid_message(rng, rng.choice(types))
        if rng.random() < malformed_share:
            fault = rng.choice(("unknown", "long", "short"))
            if fault == "unknown":
                raw = bytes([rng.choice(UNKNOWN_TYPES)]) + raw[1:]
            elif fault == "long":
                raw += rng.randbytes(rng.randint(1, max_extra))
            else:
                raw = raw[:rng.randint(1, len(raw) - 1)]
        out.append(raw)
    return out
