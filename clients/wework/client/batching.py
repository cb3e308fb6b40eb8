"""BatchSendMessages for lists of any length: split into calls of at most 1,000 items.

    from wework.client.batching import batch_send_messages

    response = batch_send_messages(stub.BatchSendMessages, requests, metadata=md, timeout=30)

`call` is anything that takes a BatchSendMessagesRequest (and the keyword arguments given
here) and returns a BatchSendMessagesResponse: a generated stub's method or a facade method.
The chunks are sent one after another, in order, and their results concatenated, so result i
answers request i and the daily quota is taken in request order as in a single call. Atomic
mode covers one call only, so a list of more than 1,000 items is refused with atomic=True.

Every item without a request_id gets one (a UUID4) before the first call, as the client
facade does for single requests: a chunk resent after a lost answer then returns its first
results instead of sending twice. If a chunk's call fails, BatchSendInterrupted carries the
results of the chunks already answered and the requests, ids filled in, to send again.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from wework.v1 import message_pb2 as pb

MAX_BATCH_ITEMS = 1000  # the server's bound per call (docs/messages.md)


class BatchSendInterrupted(Exception):
    """A chunk's call failed; `results` answer requests[:len(results)], `requests` (with their
    request_ids filled in) are what to send again (all of them: answered ones return their
    first results)."""

    def __init__(self, results: list[pb.BatchSendMessagesResult], requests: list[pb.SendMessageRequest],
                 error: BaseException) -> None:
        super().__init__(f"batch send interrupted after {len(results)} of {len(requests)} items: {error}")
        self.results = results
        self.requests = requests
        self.error = error


def prepare(requests: Sequence[pb.SendMessageRequest], atomic: bool,
            chunk_size: int = MAX_BATCH_ITEMS) -> tuple[list[pb.SendMessageRequest], list[pb.BatchSendMessagesRequest]]:
    """(the requests with request_ids filled in, the calls to make in order)."""
    if not 1 <= chunk_size <= MAX_BATCH_ITEMS:
        raise ValueError(f"chunk_size must be 1 to {MAX_BATCH_ITEMS}")
    if atomic and len(requests) > chunk_size:
        raise ValueError(f"atomic mode covers one call: at most {chunk_size} items, got {len(requests)}")
    filled = []
    for request in requests:
        if not request.request_id:
            copy = pb.SendMessageRequest()
            copy.CopyFrom(request)
            copy.request_id = str(uuid.uuid4())
            request = copy
        filled.append(request)
    calls = [pb.BatchSendMessagesRequest(requests=filled[i:i + chunk_size], atomic=atomic)
             for i in range(0, len(filled), chunk_size)]
    return filled, calls


def batch_send_messages(call: Callable[..., pb.BatchSendMessagesResponse],
                        requests: Sequence[pb.SendMessageRequest], *, atomic: bool = False,
                        chunk_size: int = MAX_BATCH_ITEMS, **kwargs: Any) -> pb.BatchSendMessagesResponse:
    """Sends `requests` in calls of at most `chunk_size` items; one result per request, in order."""
    filled, calls = prepare(requests, atomic, chunk_size)
    results: list[pb.BatchSendMessagesResult] = []
    for request in calls:
        try:
            response = call(request, **kwargs)
        except Exception as exc:
            raise BatchSendInterrupted(results, filled, exc) from exc
        results.extend(response.results)
    return pb.BatchSendMessagesResponse(results=results)


async def batch_send_messages_async(call: Callable[..., Awaitable[pb.BatchSendMessagesResponse]],
                                    requests: Sequence[pb.SendMessageRequest], *, atomic: bool = False,
                                    chunk_size: int = MAX_BATCH_ITEMS,
                                    **kwargs: Any) -> pb.BatchSendMessagesResponse:
    """batch_send_messages for an asyncio stub or facade; the chunks go one after another."""
    filled, calls = prepare(requests, atomic, chunk_size)
    results: list[pb.BatchSendMessagesResult] = []
    for request in calls:
        try:
            response = await call(request, **kwargs)
        except Exception as exc:
            raise BatchSendInterrupted(results, filled, exc) from exc
        results.extend(response.results)
    return pb.BatchSendMessagesResponse(results=results)
