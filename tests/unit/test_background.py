"""cancel_and_wait: a close() returns once the background task has ended, even when the task
swallowed the first cancellation."""

from __future__ import annotations

import asyncio

from wework.persistence.background import cancel_and_wait


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again_until_it_ends():
    swallowed = []

    async def stubborn_loop() -> None:
        # As a retry loop around a driver that turned the cancellation into its own error does.
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    task = asyncio.create_task(stubborn_loop())
    await asyncio.sleep(0)
    closing = asyncio.create_task(cancel_and_wait(task))
    done, _ = await asyncio.wait([closing], timeout=5)  # one cancel() only: waited forever
    try:
        assert closing in done and task.cancelled() and swallowed == [True]
    finally:
        for t in (closing, task, task):  # the task swallows one more cancel at most
            t.cancel()
            await asyncio.wait([t], timeout=1)


async def test_a_task_that_ends_on_its_cancellation_is_waited_for_once():
    ended = asyncio.Event()

    async def loop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.set()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert ended.is_set() and task.cancelled()
    await cancel_and_wait(None)  # nothing started: nothing to stop
