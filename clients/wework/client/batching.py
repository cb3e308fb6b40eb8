"""Batch calls (AIP-233) for lists of any length: split into calls of at most 1,000 items.

The client facade does this by itself: `client.messages.batch_send_messages(requests=[...])`
(and the asyncio client's) takes a list of any length (docs/client.md). For a generated stub:

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

from google.protobuf.message import Message
from wework.v1 import message_pb2 as pb

from ._base import MAX_BATCH_ITEMS  # the server's bound per call (docs/messages.md)


class BatchSendInterrupted(Exception):
    """A chunk's call failed; `results` answer requests[:len(results)], `requests` (with their
    request_ids filled in) are what to send again (all of them: answered ones return their
    first results)."""

    def __init__(self, results: list[Message], requests: list[Message], error: BaseException) -> None:
        super().__init__(f"batch send interrupted after {len(results)} of {len(requests)} items: {error}")
        self.results = results
        self.requests = requests
        self.error = error


def split(batch: Message, chunk_size: int = MAX_BATCH_ITEMS) -> tuple[list[Message], list[Message]]:
    """A batch request (its repeated `requests`, and `atomic` if it has one) as (its items with
    request_ids filled in, the calls to make in order). A list that fits one call (or is empty:
    the server says why) is one call."""
    if not 1 <= chunk_size <= MAX_BATCH_ITEMS:
        raise ValueError(f"chunk_size must be 1 to {MAX_BATCH_ITEMS}")
    items = list(batch.requests)  # type: ignore[attr-defined]
    atomic = bool(getattr(batch, "atomic", False))
    if atomic and len(items) > chunk_size:
        raise ValueError(f"atomic=True covers one call, at most {chunk_size} items; got {len(items)}. A longer "
                         f"list cannot be all or nothing: send it without atomic, or in atomic calls of at most "
                         f"{chunk_size}")
    filled = [_with_request_id(item) for item in items]
    rest = type(batch)()  # the batch's other fields (atomic), copied into every call
    rest.CopyFrom(batch)
    del rest.requests[:]  # type: ignore[attr-defined]
    calls = []
    for i in range(0, max(len(filled), 1), chunk_size):
        call = type(batch)()
        call.CopyFrom(rest)
        call.requests.extend(filled[i:i + chunk_size])  # type: ignore[attr-defined]
        calls.append(call)
    return filled, calls


def _with_request_id(item: Message) -> Message:
    if "request_id" not in item.DESCRIPTOR.fields_by_name or item.request_id:  # type: ignore[attr-defined]
        return item
    copy = type(item)()
    copy.CopyFrom(item)
    copy.request_id = str(uuid.uuid4())  # type: ignore[attr-defined]
    return copy


def prepare(requests: Sequence[pb.SendMessageRequest], atomic: bool,
            chunk_size: int = MAX_BATCH_ITEMS) -> tuple[list[pb.SendMessageRequest], list[pb.BatchSendMessagesRequest]]:
    """(the requests with request_ids filled in, the BatchSendMessages calls to make in order)."""
    return split(pb.BatchSendMessagesRequest(requests=requests, atomic=atomic), chunk_size)  # type: ignore[return-value]


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
