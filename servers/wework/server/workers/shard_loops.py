"""One background loop per shard, for the workers that sweep every shard of a service database
(dispatch, callback processing, webhook delivery), and the frame those workers share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
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


class Chore:
    """Work a shard loop does between its claims, at most once every `interval_seconds`
    (monotonic). The first run is due at once on a host up longer than the interval (the
    monotonic clock counts from boot), or `first_after_seconds` after the chore is made."""

    def __init__(self, interval_seconds: float, run: Callable[[], Awaitable[object]], *,
                 first_after_seconds: float | None = None) -> None:
        self._interval, self._run = interval_seconds, run
        self._last = 0.0 if first_after_seconds is None else time.monotonic() - interval_seconds + first_after_seconds

    async def run_if_due(self) -> None:
        if time.monotonic() - self._last > self._interval:
            self._last = time.monotonic()
            await self._run()


class ShardWorker:
    """The frame of a worker that claims from a queue table on every shard: its id on the claims,
    the optional wake-ups, one `_shard_loop(shard)` per shard (subclasses write that loop, or
    use _claim_rounds), and the stop: `_stopping` is set and every idle loop woken at once."""

    def __init__(self, db: Database, name: str, waker: Waker | None, worker_id: str | None) -> None:
        self._waker = waker
        self.worker_id = worker_id or default_worker_id()
        self._loops = ShardLoops(db, name, self._shard_loop)
        self._stopping = asyncio.Event()
        self._loop_events: set[asyncio.Event] = set()

    async def start(self) -> None:
        if self._waker is not None:
            await self._waker.start()
        self._loops.start()

    def ensure_shard_loops(self) -> None:
        """Starts a loop for each shard added since start (runtime shard map, shardmap.py)."""
        self._loops.ensure()

    async def _stop_loops(self, grace_seconds: float = 0.0) -> None:
        """Sets _stopping and wakes every loop, gives them up to `grace_seconds` to end by
        themselves, cancels the rest, then stops the wake-ups."""
        self._stopping.set()
        for event in self._loop_events:
            event.set()
        await self._loops.close(grace_seconds)
        if self._waker is not None:
            await self._waker.close()

    def _wake_event(self) -> asyncio.Event:
        """The event an idle shard loop waits on: set by the wake-ups (when there are any) and
        by the stop. A loop that ends gives it back with `_loop_events.discard`."""
        event = self._waker.event() if self._waker is not None else asyncio.Event()
        self._loop_events.add(event)
        return event

    @staticmethod
    async def _round_start(chores: Sequence[Chore], event: asyncio.Event) -> None:
        """What comes before each claim: the due chores, then the wake-up cleared, so that one
        arriving during the claim is kept for the idle wait after it."""
        for chore in chores:
            await chore.run_if_due()
        event.clear()

    async def _claim_rounds(self, shard: str, chores: Sequence[Chore], *, idle_poll_seconds: float, what: str,
                            failures_wait_for_wake: bool) -> None:
        """Round after round until the stop: the due chores, then one claim handled by
        `run_once(shard)` (the number claimed); when it claimed nothing, a wait for a wake-up or
        the poll. A failed round is logged (`what` names the loop) and tried again a second
        later, or at the next wake-up when `failures_wait_for_wake`."""
        event = self._wake_event()
        try:
            while not self._stopping.is_set():
                try:
                    await self._round_start(chores, event)
                    if await self.run_once(shard) == 0:
                        await wait_for_wake(event, idle_poll_seconds)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Logged as the worker's module: the same logger as the rest of its messages.
                    logging.getLogger(type(self).__module__).exception("%s on shard %s failed; retrying",
                                                                        what, shard)
                    if failures_wait_for_wake:
                        await wait_for_wake(event, 1.0)
                    else:
                        await asyncio.sleep(1.0)
        finally:
            self._loop_events.discard(event)

    async def run_once(self, shard: str) -> int:
        raise NotImplementedError

    async def _shard_loop(self, shard: str) -> None:
        raise NotImplementedError
