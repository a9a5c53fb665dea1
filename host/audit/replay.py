"""Event sourcing: positions and PnL rebuilt from the journal alone."""

from __future__ import annotations

import os
from collections.abc import Iterable

from tickpath.host.positions import Positions

from .format import Kind, Record
from .reader import iter_records

__all__ = ["replay", "replay_records"]


def replay_records(records: Iterable[Record]) -> Positions:
    """Apply every ``EXECUTED`` record (account, symbol, side, quantity, price) in order; the
    mark of each symbol is its last execution price."""
    positions = Positions()
    for record in records:
        if record.kind == Kind.EXECUTED:
            positions.apply_fill(record.account, record.symbol, record.side, record.quantity,
                                 record.price)
    return positions


def replay(directory: str | os.PathLike) -> Positions:
    return replay_records(iter_records(directory))
