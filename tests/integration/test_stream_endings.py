"""Server streams that end by client cancel or deadline leave nothing running in the server
(issue 17, item 1): before the fix each ended WatchAccounts / WatchBatchTask left its poller
alive, and a few hundred of them kept an idle server's CPU busy."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import grpc
import harness
import pytest
from harness.embedded import embedded_stack
from wework.v1 import account_pb2, account_pb2_grpc, message_pb2, message_pb2_grpc

STREAMS = 500
CONCURRENT = 50
IDLE_WINDOW_SECONDS = 3.0
# Every stream ends within a second (0.3 s deadlines, prompt cancels); a stuck one fails here,
# named, rather than at pytest's timeout.
STREAM_END_SECONDS = 30


@pytest.fixture(scope="module")
async def stack(tmp_path_factory):
    async with embedded_stack(tmp_path_factory.mktemp("stream-endings")) as stack:
        yield stack


def cpu_seconds() -> float:
    """CPU time of this process, every thread (grpc's core threads included)."""
    return time.process_time()


async def idle_cpu(window: float = IDLE_WINDOW_SECONDS) -> float:
    before = cpu_seconds()
    await asyncio.sleep(window)
    return cpu_seconds() - before


async def settle(stack) -> None:
    # Lets the server finish the calls it is ending (their finally blocks, access-log lines).
    for _ in range(20):
        await asyncio.sleep(0.1)


async def end_one_stream(channel: grpc.aio.Channel, metadata, i: int, task_id: str) -> None:
    """One stream ended by the client, by cancel or by deadline: server streams (WatchAccounts,
    WatchBatchTask) after their first response, a client stream (ImportBatchTargets) after its
    first chunk."""
    kind, cancel = i % 3, (i // 3) % 2 == 1
    timeout = None if cancel else 0.3
    sent, ended = asyncio.Event(), asyncio.Event()
    if kind == 0:
        call = account_pb2_grpc.AccountServiceStub(channel).WatchAccounts(
            account_pb2.WatchAccountsRequest(), metadata=metadata, timeout=timeout)
    elif kind == 1:
        call = message_pb2_grpc.MessageServiceStub(channel).WatchBatchTask(
            message_pb2.WatchBatchTaskRequest(id=task_id), metadata=metadata, timeout=timeout)
    else:
        async def chunks():
            yield message_pb2.ImportBatchTargetsRequest(task_id=task_id, targets=[
                message_pb2.BatchTarget(conversation_id=f"c{i}")])
            sent.set()
            await ended.wait()  # never a second chunk: the client ends the call

        call = message_pb2_grpc.MessageServiceStub(channel).ImportBatchTargets(
            chunks(), metadata=metadata, timeout=timeout)
    try:
        if kind == 2:
            # grpc's own task reads the first chunk. A call whose 0.3 s deadline passes before
            # that (a loaded machine) never reads it: waiting for `sent` alone would hang.
            await first_of(sent.wait(), call.code())
            await asyncio.sleep(0.05)
        else:
            await call.read()  # the first response: the server's poller is running now
        if cancel:
            call.cancel()
        await (call if kind == 2 else call.read())
    except (grpc.aio.AioRpcError, asyncio.CancelledError):
        pass
    finally:
        ended.set()
    code = await call.code()
    assert code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED), code


async def first_of(*awaitables) -> None:
    """Returns once one of `awaitables` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def running_tasks() -> Counter:
    """The loop's tasks by coroutine name. Compared by count: background loops replace their
    tasks (a new wait per cycle), so the same set of tasks is never seen twice."""
    return Counter(getattr(t.get_coro(), "__qualname__", type(t.get_coro()).__name__) for t in asyncio.all_tasks() if not t.done())


async def end_streams(stack, count: int, task_id: str) -> None:
    async with grpc.aio.insecure_channel(stack.target) as channel:
        gate = asyncio.Semaphore(CONCURRENT)

        async def one(i: int) -> None:
            async with gate:
                try:
                    async with asyncio.timeout(STREAM_END_SECONDS):
                        await end_one_stream(channel, stack.tenant_metadata(), i, task_id)
                except TimeoutError:
                    raise AssertionError(f"stream {i} (kind {i % 3}, cancelled: {(i // 3) % 2 == 1}) did not "
                                         f"end within {STREAM_END_SECONDS} s") from None

        await asyncio.gather(*(one(i) for i in range(count)))
    await settle(stack)


async def test_ended_streams_leave_no_task_and_an_idle_cpu(stack, caplog):
    task_id = await harness_created_task(stack)
    # A first round starts what the server starts once per tenant (dispatcher loops, pub/sub).
    await end_streams(stack, 30, task_id)
    tasks_before = running_tasks()
    baseline = await idle_cpu()

    await end_streams(stack, STREAMS, task_id)

    # On a loaded machine the last calls' finally blocks can still be running after settle():
    # wait for the count to come down (a leak keeps hundreds of pollers alive however long we wait).
    deadline = time.monotonic() + 15
    while (leftover := running_tasks().total() - tasks_before.total()) > 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    after = await idle_cpu()
    assert leftover <= 2, (f"{leftover} tasks left behind by {STREAMS} ended streams: "
                           f"{running_tasks() - tasks_before}")
    # A leak of 500 pollers costs whole seconds of CPU in the window; an idle server a few ms.
    assert after <= baseline * 3 + 0.3, f"idle CPU {after:.2f}s after the streams, {baseline:.2f}s before"
    assert "already running" not in caplog.text


async def harness_created_task(stack) -> str:
    from harness.batches import add_created_task
    return await add_created_task(stack.app.db, stack.tenant_id)


_ = harness  # the module is imported for its fixtures' side effects in conftest
