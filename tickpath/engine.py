"""The engine interface: how the host submits order records and receives events, whoever sits
behind it (the golden model now, a simulated or real FPGA later). The host never knows which.

Records are :class:`tickpath.protocol.records.Order` and ``Event``; each submitted action is
answered by one or more events in order, the final one with ``last`` set, so a streaming engine
may be fed the next action before the previous one's events are read.
"""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from tickpath.model.matching import MatchingModel
from tickpath.protocol import itch
from tickpath.protocol.records import Action, Event, Order

__all__ = ["Engine", "EngineError", "ModelEngine"]


class EngineError(RuntimeError):
    """The engine cannot answer (nothing outstanding, transport gone)."""


class Engine(abc.ABC):
    @abc.abstractmethod
    def set_symbol(self, symbol: int, stock: str) -> None:
        """Tell the engine the ITCH stock name of internal symbol id ``symbol``."""

    @abc.abstractmethod
    async def submit(self, order: Order) -> None:
        """Send one action."""

    @abc.abstractmethod
    async def recv(self) -> Event:
        """The next event; ``Event.last`` ends one action's events."""

    @abc.abstractmethod
    def snapshot(self) -> dict[int, dict[str, tuple]]:
        """The resting book, as :meth:`tickpath.model.book.BookBuilder.snapshot`."""

    @abc.abstractmethod
    def book_lines(self) -> Iterable[dict[str, Any]]:
        """The resting book, one ``tickpath book`` line per stock locate with orders."""

    def itch_messages(self) -> list[itch.ItchMessage]:
        """The engine's ITCH output so far (engines that publish elsewhere return [])."""
        return []

    async def run_async(self, orders: Iterable[Order]) -> list[Event]:
        events: list[Event] = []
        for order in orders:
            await self.submit(order)
            while True:
                event = await self.recv()
                events.append(event)
                if event.last:
                    break
        return events

    def run(self, orders: Iterable[Order]) -> list[Event]:
        """Submit each action, collect its events up to ``last``, in order."""
        return asyncio.run(self.run_async(orders))

    def end_of_day(self) -> list[Event]:
        """Expire day orders (canceled, reason E) and close: the end-of-day action's events."""
        return self.run([Order(action=Action.EndOfDay)])


class ModelEngine(Engine):
    """The golden :class:`~tickpath.model.matching.MatchingModel` behind the interface."""

    def __init__(self, *, capacity: int | None = None):
        self.model = MatchingModel(capacity=capacity)
        self._pending: deque[Event] = deque()

    def set_symbol(self, symbol: int, stock: str) -> None:
        self.model.set_symbol(symbol, stock)

    async def submit(self, order: Order) -> None:
        self._pending.extend(self.model.process(order))

    async def recv(self) -> Event:
        if not self._pending:
            raise EngineError("recv with no action outstanding")
        return self._pending.popleft()

    def run(self, orders: Iterable[Order]) -> list[Event]:
        if self._pending:
            raise EngineError("run with events of earlier actions still unread")
        return self.model.process_all(orders)     # same answer as run_async, without a loop

    def snapshot(self) -> dict[int, dict[str, tuple]]:
        return self.model.snapshot()

    def book_lines(self) -> Iterable[dict[str, Any]]:
        return self.model.book_lines()

    def itch_messages(self) -> list[itch.ItchMessage]:
        return self.model.itch
