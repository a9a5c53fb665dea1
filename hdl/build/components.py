"""Which gateware components the Fmax/utilisation report synthesises, and at what sizes.

Adding a component is one :class:`Entry`: a name, ``"module:Class"``, and its constructor
arguments per device (``"*"`` for every device). Sizes follow ``DESIGN.md``, "Sizes to plan
for". A component that does not import, construct or elaborate is reported as skipped with the
reason, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import importlib

__all__ = ["Entry", "COMPONENTS", "component_factory"]

E85, E25, UP5K = "lfe5u-85f", "lfe5u-25f", "ice40up5k"


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    target: str                                 # "module:Class"
    params: dict[str, dict]                     # device (or "*") -> constructor kwargs
    devices: tuple[str, ...] = (UP5K, E25, E85)

    def kwargs(self, device: str) -> dict:
        return {**self.params.get("*", {}), **self.params.get(device, {})}

    def factory(self, device: str):
        """A zero-argument callable making the component sized for ``device``."""
        module, _, cls = self.target.partition(":")
        kwargs = self.kwargs(device)

        def make():
            return getattr(importlib.import_module(module), cls)(**kwargs)
        make.__name__ = f"{self.name}@{device}"
        return make


COMPONENTS: dict[str, Entry] = {e.name: e for e in [
    Entry("itch_decoder",    "tickpath.hdl.itch_decoder:ItchDecoder", {}),
    Entry("itch_decoder_64", "tickpath.hdl.itch_decoder:ItchDecoder", {"*": {"data_width": 64}},
          devices=(E85,)),
    Entry("net_rx",          "tickpath.hdl.net_rx:NetRx", {}),
    Entry("net_rx_wide",     "tickpath.hdl.net_rx_wide:NetRxWide", {"*": {"width": 8}},
          devices=(E85,)),
    Entry("mold_sequencer",  "tickpath.hdl.mold_sequencer:MoldSequencer", {}),
    Entry("mold_sequencer_wide", "tickpath.hdl.mold_sequencer_wide:MoldSequencerWide", {},
          devices=(E85,)),
    # 25F: 4-way buckets and 8 levels a side, so the table (18 EBR) and the book (19) fit the
    # 56 block RAMs together (the whole feed_path does not yet: docs/gateware.md)
    Entry("order_table",     "tickpath.hdl.order_table:OrderTableUnit",
          {E85: {"capacity": 8192}, E25: {"capacity": 2048, "ways": 4},
           UP5K: {"capacity": 512}}),
    Entry("book",            "tickpath.hdl.book:Book",
          {E85: {"slots": 256}, E25: {"slots": 64, "levels": 8}, UP5K: {"slots": 8}}),
    Entry("feed_book",       "tickpath.hdl.feed_book:FeedBook",
          {E85: {"capacity": 8192, "slots": 256},
           E25: {"capacity": 2048, "ways": 4, "slots": 64, "levels": 8},
           UP5K: {"capacity": 512, "slots": 8}}),
    Entry("feed_path",       "tickpath.hdl.feed_path:FeedPath",
          {E85: {"capacity": 8192, "slots": 256},
           E25: {"capacity": 2048, "ways": 4, "slots": 64, "levels": 8},
           UP5K: {"capacity": 512, "slots": 8, "levels": 8, "host_depth": 256,
                  "buffer_depth": 1024}}),
    # 64 symbols, 4k resting orders beside the feed path (price levels in block RAM)
    Entry("matching_engine", "tickpath.hdl.matching:MatchingEngine",
          {E85: {"symbols": 64, "capacity": 4096, "levels": 8, "token_bits": 13}}),
    # the order path's pre-trade risk gate at the engine's 85F size, 8 firms with limits
    Entry("risk_gate",       "tickpath.hdl.matching.risk_gate:RiskGate",
          {E85: {"firms": 8, "symbols": 64, "token_bits": 13}}, devices=(E85,)),
    # the engine's market data: ITCH (8 bytes a beat) framed into MoldUDP64 packets
    Entry("mold_framer",     "tickpath.hdl.matching.mold_out:MoldFramer", {"*": {"width": 8}},
          devices=(E85,)),
    # the feed path's network front (NetRx -> MoldSequencer -> ItchDecoder), joined in sim/ for now
    Entry("feed_chain",      "tickpath.sim.feed_chain.top:FeedChain", {}),
]}


def component_factory(name: str, device: str):
    try:
        entry = COMPONENTS[name]
    except KeyError:
        raise ValueError(f"unknown component {name!r}; known: {', '.join(COMPONENTS)}") from None
    return entry.factory(device)
