"""One background loop per shard, for the workers that sweep every shard of a service database
(dispatch, callback processing, webhook delivery)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from wework.persistence.database import Database


class ShardLoops:
    """The loops `loop(shard)`, one task per shard named "<prefix>-<shard>": started together,
    extended when the runtime shard map adds a shard (ensure), stopped together (close)."""

    def __init__(self, db: Database, prefix: str, loop: Callable[[str], Awaitable[None]]) -> None:
        self._db, self._prefix, self._loop = db, prefix, loop
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    def start(self) -> None:
        self._running = True
        self.ensure()

    def ensure(self) -> None:
        """Starts a loop for every shard that has none yet; nothing before start or after close."""
        if not self._running:
            return
        running = {t.get_name() for t in self._tasks}
        for shard in self._db.shard_names:
            name = f"{self._prefix}-{shard}"
            if name not in running:
                self._tasks.append(asyncio.create_task(self._loop(shard), name=name))

    async def close(self, grace_seconds: float = 0.0) -> None:
        """Cancels the loops, after up to `grace_seconds` for them to end by themselves."""
        self._running = False
        tasks, self._tasks = self._tasks, []
        pending = set(tasks)
        if pending and grace_seconds > 0:
            _, pending = await asyncio.wait(pending, timeout=grace_seconds)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await t
