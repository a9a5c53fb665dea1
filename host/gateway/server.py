"""What the FIX and OUCH servers share: an asyncio TCP listener that runs one connection object
per client and tracks its task, so ``close`` can stop every client before the stores close."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any


class SessionServer:
    """Base of the gateway servers. Subclasses set ``counters`` and implement
    :meth:`connection` (a new per-client object with an ``async run()``) and
    :meth:`abort` (make one connection stop)."""

    counters: Counter[str]

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._conns: set[Any] = set()

    def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        raise NotImplementedError

    def abort(self, conn: Any) -> None:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the port."""
        self._server = await asyncio.start_server(self._accept, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters["connections"] += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = self.connection(reader, writer)
        self._conns.add(conn)
        try:
            await conn.run()
        finally:
            self._conns.discard(conn)
            if task is not None:
                self._tasks.discard(task)

    async def stop_connections(self) -> None:
        """Stop listening, stop every client and wait (bounded) for their tasks."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            self.abort(conn)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
