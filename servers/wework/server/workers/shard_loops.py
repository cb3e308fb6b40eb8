"""One background loop per shard, for the workers that sweep every shard of a service database
(dispatch, callback processing, webhook delivery), and the frame those workers share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Protocol

from wework.persistence.database import Database


def default_worker_id() -> str:
    """host:pid:random, which tells one worker's claims (and log lines) from another's."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(1 << 30):x}"


async def wait_for_wake(event: asyncio.Event, seconds: float) -> None:
    """Returns when `event` is set (a wake-up) or after `seconds` (the poll), whichever is first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


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


class Waker(Protocol):
    """Wake-ups of idle loops (dispatch.DispatchWaker and its per-queue channels)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def event(self) -> asyncio.Event: ...


class ShardWorker:
    """The frame of a worker that claims from a queue table on every shard: its id on the claims,
    the optional wake-ups, and one `_shard_loop(shard)` per shard (subclasses write that loop)."""

    def __init__(self, db: Database, name: str, waker: Waker | None, worker_id: str | None) -> None:
        self._waker = waker
        self.worker_id = worker_id or default_worker_id()
        self._loops = ShardLoops(db, name, self._shard_loop)

    async def start(self) -> None:
        if self._waker is not None:
            await self._waker.start()
        self._loops.start()

    def ensure_shard_loops(self) -> None:
        """Starts a loop for each shard added since start (runtime shard map, shardmap.py)."""
        self._loops.ensure()

    async def _stop_loops(self, grace_seconds: float = 0.0) -> None:
        """Stops the loops (after up to `grace_seconds` for them to end by themselves), then the wake-ups."""
        await self._loops.close(grace_seconds)
        if self._waker is not None:
            await self._waker.close()

    def _wake_event(self) -> asyncio.Event:
        """The event an idle shard loop waits on: set by the wake-ups, when there are any."""
        return self._waker.event() if self._waker is not None else asyncio.Event()

    async def _shard_loop(self, shard: str) -> None:
        raise NotImplementedError
