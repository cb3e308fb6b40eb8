"""The group commit's wait for company (MessageWriter._gather): a lone send never waits; after a
batch of several, the next one waits at most the linger, and no longer once it is twice as big."""

from __future__ import annotations

import asyncio
import time

from wework.server.application.messages import MessageWriter


def _writer(linger: float) -> MessageWriter:
    return MessageWriter(ctx=None, quota=None, on_accepted=[], linger_seconds=linger)  # type: ignore[arg-type]


async def _timed(writer: MessageWriter, queue: list, last_batch: int) -> float:
    started = time.perf_counter()
    await writer._gather(queue, last_batch)
    return time.perf_counter() - started


async def test_a_lone_send_does_not_wait():
    assert await _timed(_writer(0.5), ["send"], last_batch=1) < 0.1
    assert await _timed(_writer(0.5), ["send"], last_batch=0) < 0.1


async def test_after_a_batch_of_several_the_next_waits_at_most_the_linger():
    waited = await _timed(_writer(0.05), ["send"], last_batch=4)
    assert 0.04 <= waited < 0.5


async def test_the_wait_ends_once_the_queue_is_twice_the_last_batch():
    writer, queue = _writer(5.0), ["send"]

    async def arrivals():
        for _ in range(7):
            await asyncio.sleep(0.002)
            queue.append("send")

    filler = asyncio.create_task(arrivals())
    assert await _timed(writer, queue, last_batch=4) < 1.0
    assert len(queue) >= 8
    await filler


async def test_no_linger_no_wait():
    assert await _timed(_writer(0.0), ["send"], last_batch=10) < 0.1
