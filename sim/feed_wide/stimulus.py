"""UDP payloads (MoldUDP64 packets) for the 64-bit feed-front bench: the real captures and the
BX sample as NetRx would deliver them, a synthetic realistic mix, and seeded faulty streams
(the network faults of ``sim/net_rx/stimulus.faulty_stream`` that reach the sequencer, plus
blocks of every small length, zero-length blocks and packets cut at every offset)."""

from __future__ import annotations

import pathlib
import random
import struct

from tickpath.generator import GeneratorConfig, iter_messages
from tickpath.model.netfeed import FilterEntry, NetRxModel, RxReason
from tickpath.protocol import moldudp64
from tickpath.sim.itch_decoder.stimulus import random_messages
from tickpath.sim.net_rx.stimulus import (
    FILTERS,
    SESSION,
    Frame,
    bx_frames,
    capture_frames,
    capture_messages,
    faulty_stream,
)

__all__ = ["udp_payloads", "real_payloads", "mix_payloads", "faulty_payloads", "edge_payloads",
           "MAX_PAYLOAD"]

#: A full Ethernet frame's UDP payload (1500 - 20 - 8).
MAX_PAYLOAD = 1472


def udp_payloads(frames: list[Frame]) -> list[bytes]:
    """The UDP payloads NetRx accepts from ``frames`` (the golden NetRxModel decides)."""
    rx = NetRxModel([FilterEntry.of(g, p) for g, p in FILTERS])
    return [r.payload for f in frames
            if (r := rx.frame(f.data, f.fcs_bad)).reason is RxReason.Accepted]


def real_payloads(shared_data: pathlib.Path, bx_image: bytes,
                  bx_limit: int | None = None) -> tuple[list[bytes], int]:
    """Every *-itch50 capture's packets (sequences 1..), then the BX sample's messages (its
    first ``bx_limit``) in full-size MoldUDP64 packets; and the number of messages."""
    dirs = sorted(shared_data.glob("pcap/*-itch50"))
    captured = sum(len(messages) for messages, _ in capture_messages(dirs))
    more, bx = bx_frames(bx_image, bx_limit, first_sequence=1 + captured,
                         max_payload=MAX_PAYLOAD)
    return udp_payloads(capture_frames(dirs) + more), captured + len(bx)


def mix_payloads(count: int, seed: int, *, first_sequence: int = 1) -> list[bytes]:
    """``count`` messages of the synthetic generator's NASDAQ-like mix, full-size packets."""
    messages = list(iter_messages(GeneratorConfig(messages=count, symbols=8, seed=seed)))
    return [packet for _, packet in moldudp64.pack_messages(SESSION, first_sequence, messages,
                                                             max_payload=MAX_PAYLOAD)]


def faulty_payloads(rng: random.Random, count: int) -> list[bytes]:
    """A faulty frame stream of ``count`` random messages (10% malformed ITCH) with gaps,
    duplicates, reordering, heartbeats, malformed blocks and the end of session, as NetRx
    delivers it, with a too-short payload and a foreign session in the middle."""
    frames = faulty_stream(rng, random_messages(rng, count, malformed_share=0.1),
                           fault_rate=0.6)
    out = udp_payloads(frames)
    out[len(out) // 2:len(out) // 2] = [b"short", b"OTHERSESSN" + bytes(10)]
    return out


_LENGTHS = (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 17, 19, 23, 36, 44, 50)


def edge_payloads(rng: random.Random, count: int, *, first_sequence: int = 1) -> list[bytes]:
    """``count`` packets of 1..5 blocks of lengths around the beat (zero included), some cut
    at a random offset, some with trailing bytes, heartbeats with and without trailing bytes,
    and packets that overlap what was delivered (duplicates inside a delivered packet)."""
    session = moldudp64.session_bytes(SESSION)
    out, seq = [], first_sequence
    for _ in range(count):
        blocks = [rng.randbytes(rng.choice(_LENGTHS)) for _ in range(rng.randint(1, 5))]
        body = b"".join(struct.pack(">H", len(b)) + b for b in blocks)
        packet = session + struct.pack(">QH", seq, len(blocks)) + body
        r = rng.random()
        if r < 0.2:
            out.append(packet[:rng.randint(1, len(packet) - 1)])
        elif r < 0.25:
            out.append(packet + rng.randbytes(rng.randint(1, 9)))
            seq += len(blocks)
        elif r < 0.3:
            out.append(moldudp64.heartbeat(SESSION, seq) + rng.randbytes(rng.randint(0, 3)))
        elif r < 0.35:
            back = max(first_sequence, seq - rng.randint(0, 3))
            out.append(packet[:10] + struct.pack(">Q", back) + packet[18:])
        else:
            out.append(packet)
            seq += len(blocks)
    return out
