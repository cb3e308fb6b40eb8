"""The group commit's wait for company (MessageWriter): a lone send never waits; after a batch of
several, the next one waits at most the linger, and no longer once it is twice as big; a writer
that ran out of sends a moment ago still waits for company instead of starting over at one."""

from __future__ import annotations

import asyncio
import time

from wework.server.application.messages import MessageWriter

SHARD = "s0"


def _writer(linger: float) -> MessageWriter:
    return MessageWriter(ctx=None, quota=None, on_accepted=[], linger_seconds=linger)  # type: ignore[arg-type]


async def _timed(writer: MessageWriter, queue: list, last_batch: int) -> float:
    started = time.perf_counter()
    await writer._gather(SHARD, queue, last_batch)
    return time.perf_counter() - started


async def test_a_lone_send_does_not_wait():
    assert await _timed(_writer(0.5), ["send"], last_batch=1) < 0.1
    assert await _timed(_writer(0.5), ["send"], last_batch=0) < 0.1


async def test_after_a_batch_of_several_the_next_waits_at_most_the_linger():
    waited = await _timed(_writer(0.05), ["send"], last_batch=4)
    assert 0.04 <= waited < 0.5


async def test_the_wait_ends_once_the_queue_is_twice_the_last_batch():
    writer = _RecordingWriter(5.0)
    writer._queues[SHARD] = queue = ["send"]
    writer._tasks[SHARD] = asyncio.current_task()  # the writer is this test: arrivals only queue

    async def arrivals():
        for _ in range(7):
            await asyncio.sleep(0.002)
            writer._enqueue(SHARD, "send")

    filler = asyncio.create_task(arrivals())
    assert await _timed(writer, queue, last_batch=4) < 1.0
    assert len(queue) >= 8
    await filler


async def test_no_linger_no_wait():
    assert await _timed(_writer(0.0), ["send"], last_batch=10) < 0.1


class _RecordingWriter(MessageWriter):
    """Charges and commits nothing: records the size of each batch the writer forms."""

    def __init__(self, linger: float) -> None:
        super().__init__(ctx=None, quota=None, on_accepted=[], linger_seconds=linger)  # type: ignore[arg-type]
        self.batches: list[int] = []

    async def _charge(self, batch):
        return batch

    async def _commit(self, shard, batch):
        self.batches.append(len(batch))


async def _until_idle(writer: MessageWriter) -> None:
    while SHARD in writer._tasks:
        await asyncio.sleep(0.001)


async def test_a_writer_that_just_ran_out_of_sends_still_waits_for_company():
    writer = _RecordingWriter(0.2)
    for _ in range(4):
        writer._enqueue(SHARD, "send")
    await _until_idle(writer)
    assert writer.batches == [4]  # the first batch: nothing to wait for
    # The queue ran empty and the writer stopped. The load goes on: the next sends arrive one
    # by one, and the writer gathers them instead of committing the first alone.
    for _ in range(8):
        writer._enqueue(SHARD, "send")
        await asyncio.sleep(0.005)
    await _until_idle(writer)
    assert writer.batches[1] >= 4, writer.batches
