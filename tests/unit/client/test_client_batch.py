"""The facade's batch_send_messages with a list longer than one call, against a grpc_testing
channel that scripts the server's answers: what a failed call midway raises, and that every
call shares one deadline. (The calls and results against a real server: tests/e2e/test_batch_send.py.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import grpc_testing
import pytest
from wework.client import ClientOptions, UnavailableError, WeworkClient
from wework.client.batching import BatchSendInterrupted
from wework.v1 import message_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["MessageService"]
BATCH = SERVICE.methods_by_name["BatchSendMessages"]


class TimeoutRecorder:
    """The testing channel, recording each call's timeout (grpc_testing drops it)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.timeouts: list[float | None] = []

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        call = self.inner.unary_unary(method, *args, **kwargs)

        def record(request: Any, timeout: float | None = None, metadata: Any = None, **_: Any) -> Any:
            self.timeouts.append(timeout)
            return call(request, timeout=timeout, metadata=metadata)

        return record


@pytest.fixture
def setup() -> Iterator[tuple[WeworkClient, Any, TimeoutRecorder, ThreadPoolExecutor]]:
    channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
    recorder = TimeoutRecorder(channel)
    client = WeworkClient(ClientOptions("unused:0", api_key="k"), channel=recorder)  # type: ignore[arg-type]
    pool = ThreadPoolExecutor(max_workers=1)
    yield client, channel, recorder, pool
    pool.shutdown(wait=False, cancel_futures=True)


def items(n: int) -> list[pb.SendMessageRequest]:
    return [pb.SendMessageRequest(account_id="a", conversation_id="c",
                                  content=pb.MessageContent(text=pb.TextContent(text=str(i)))) for i in range(n)]


def answer(channel: Any, code: grpc.StatusCode = grpc.StatusCode.OK, pause: float = 0.0) -> pb.BatchSendMessagesRequest:
    """Takes the next BatchSendMessages call and answers each item with a message named by its
    request_id (or fails the call with `code`)."""
    _, request, rpc = channel.take_unary_unary(BATCH)
    time.sleep(pause)
    if code is grpc.StatusCode.OK:
        rpc.terminate(pb.BatchSendMessagesResponse(results=[
            pb.BatchSendMessagesResult(message=pb.Message(id=r.request_id)) for r in request.requests]), (), code, "")
    else:
        rpc.terminate(None, (), code, "server going away")
    return request


def test_a_call_failing_midway_raises_what_was_answered_and_what_to_resend(setup) -> None:
    client, channel, recorder, pool = setup
    fut: Future[Any] = pool.submit(lambda: client.messages.batch_send_messages(requests=items(2500), timeout=30))
    first = answer(channel, pause=0.2)
    second = answer(channel, grpc.StatusCode.UNAVAILABLE)  # not retried by default: the call fails
    with pytest.raises(BatchSendInterrupted) as stopped:
        fut.result(timeout=5)
    assert [len(first.requests), len(second.requests)] == [1000, 1000]
    assert [r.message.id for r in stopped.value.results] == [r.request_id for r in first.requests]
    resend = stopped.value.requests
    assert len(resend) == 2500 and all(r.request_id for r in resend)
    assert [r.request_id for r in resend[:2000]] == [r.request_id for r in [*first.requests, *second.requests]]
    assert isinstance(stopped.value.error, UnavailableError)
    # One deadline for the whole list: the second call got what the first one left of 30 s.
    assert 29 < recorder.timeouts[0] <= 30 and recorder.timeouts[1] <= recorder.timeouts[0] - 0.2


def test_a_list_that_fits_one_call_fails_as_that_call_does(setup) -> None:
    client, channel, _, pool = setup
    fut: Future[Any] = pool.submit(lambda: client.messages.batch_send_messages(requests=items(1000)))
    sent = answer(channel, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(UnavailableError):
        fut.result(timeout=5)
    assert len(sent.requests) == 1000 and all(r.request_id for r in sent.requests)
