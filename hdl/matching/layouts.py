"""Storage layouts of the gateware matching engine (private to ``hdl/matching`` and its bench).

The order record and event record themselves are :mod:`tickpath.protocol.records`; these are
the rows of the engine's own memories, exposed to the testbench through the ``peek`` port.
"""

from amaranth.hdl import unsigned
from amaranth.lib import data

from tickpath.model.matching import MAX_SHARES

__all__ = ["SHARES_WIDTH", "slot_layout", "level_layout", "token_entry_layout"]

SHARES_WIDTH = MAX_SHARES.bit_length()      # 20: open shares of a resting order


def slot_layout(*, slot_width: int, symbol_width: int, level_width: int) -> data.StructLayout:
    """One resting order's static fields (the order store's data memory row)."""
    return data.StructLayout({
        "token":  unsigned(32),
        "firm":   unsigned(16),
        "price":  unsigned(32),
        "ref":    unsigned(32),       # ITCH order reference number (1, 2, 3... in resting order)
        "side":   unsigned(1),
        "symbol": unsigned(max(symbol_width, 1)),
        "level":  unsigned(max(level_width, 1)),    # level entry index within its book side
    })


def level_layout(*, slot_width: int) -> data.StructLayout:
    """One price level entry: its price and the FIFO of orders (head oldest)."""
    return data.StructLayout({
        "valid": unsigned(1),
        "price": unsigned(32),
        "head":  unsigned(slot_width),
        "tail":  unsigned(slot_width),
    })


def token_entry_layout(*, slot_width: int, symbol_width: int = 1) -> data.StructLayout:
    """Direct-mapped token table row: which slot holds a live token, and its symbol (whose
    price level rows a cancel or replace reads while the slot is read)."""
    return data.StructLayout({
        "slot":   unsigned(slot_width),
        "valid":  unsigned(1),
        "symbol": unsigned(max(symbol_width, 1)),
    })
