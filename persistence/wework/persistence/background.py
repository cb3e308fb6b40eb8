"""Stopping background asyncio tasks (subscribers, monitors, wake-up loops) the same way everywhere."""

from __future__ import annotations

import asyncio
import contextlib

# How long a cancelled task gets before it is cancelled again.
RECANCEL_SECONDS = 0.5


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancels `task` and waits until it has finished, so nothing runs after a close() returns.

    A loop can swallow a cancellation: asyncio.wait_for (Python 3.11) returns the result of an
    inner wait that completed at the moment it was cancelled, and a database driver may turn a
    cancellation inside a query into an error of its own that the loop's retry catches. The loop
    then goes on and a single cancel() leaves close() waiting forever (seen: an idle `wework-worker
    dispatch` that never exited after SIGTERM, its shard-map poll loop still running). So the
    task is cancelled again until it ends."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=RECANCEL_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        await task
