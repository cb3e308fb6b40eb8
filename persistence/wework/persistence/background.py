"""Stopping background asyncio tasks (subscribers, monitors, wake-up loops) the same way everywhere."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancels `task` and waits until it has finished, so nothing runs after a close() returns."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
