"""Frames aimed at the wide receiver's realigners: every IPv4 header length with and without a
VLAN tag, payload lengths covering every lane the payload can end in, padding, a frame cut at
every length, and runs of tiny frames (a frame's end every cycle)."""

from __future__ import annotations

import random

from tickpath.sim.net_rx.stimulus import GROUP_B, PORT_B, Frame, build_frame

__all__ = ["alignment_frames"]


def alignment_frames(rng: random.Random) -> list[Frame]:
    frames: list[Frame] = []
    for vlan in (None, 7):
        for words in range(11):                       # IHL 5..15
            options = rng.randbytes(4 * words)
            for length in list(range(1, 18)) + [63, 64, 65, 200]:
                pad = bytes(rng.choice((0, 0, 1, 5, 17)))
                b_feed = rng.random() < 0.3
                kw = {"group": GROUP_B, "port": PORT_B} if b_feed else {}
                frames.append(Frame(build_frame(rng.randbytes(length), vlan=vlan,
                                                options=options, padding=pad, **kw),
                                    fcs_bad=rng.random() < 0.05,
                                    note=f"vlan {vlan} ihl {5 + words} len {length}"))
    # One frame of each tagging, with options, cut at every length.
    for vlan in (None, 3):
        full = build_frame(rng.randbytes(21), vlan=vlan, options=rng.randbytes(8))
        for cut in range(1, len(full) + 1):
            frames.append(Frame(full[:cut], note=f"vlan {vlan} cut at {cut}"))
    # Tiny frames back to back, then a good one right behind them.
    for _ in range(4):
        for _ in range(rng.randint(1, 12)):
            frames.append(Frame(rng.randbytes(rng.randint(1, 16)), fcs_bad=rng.random() < 0.2,
                                note="tiny"))
        frames.append(Frame(build_frame(rng.randbytes(rng.randint(1, 30))), note="after tiny"))
    return frames
