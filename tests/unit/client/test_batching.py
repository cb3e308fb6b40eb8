"""wework.client.batching: chunks of at most 1,000, results in request order, atomic bound,
request_ids filled in once, an interrupted list says what was answered."""

from __future__ import annotations

import asyncio

import pytest
from wework.client.batching import BatchSendInterrupted, batch_send_messages, batch_send_messages_async
from wework.v1 import message_pb2 as pb


class Endpoint:
    """Stands for the server: answers each item with a message named after its content."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[pb.BatchSendMessagesRequest] = []
        self.kwargs: list[dict] = []
        self.fail_on_call = fail_on_call

    def __call__(self, request: pb.BatchSendMessagesRequest, **kwargs) -> pb.BatchSendMessagesResponse:
        self.calls.append(request)
        self.kwargs.append(kwargs)
        if len(self.calls) == self.fail_on_call:
            raise ConnectionError("lost")
        return pb.BatchSendMessagesResponse(results=[
            pb.BatchSendMessagesResult(message=pb.Message(id=r.request_id, content=r.content)) for r in request.requests])

    async def aio(self, request, **kwargs):
        await asyncio.sleep(0)
        return self(request, **kwargs)


def items(n: int) -> list[pb.SendMessageRequest]:
    return [pb.SendMessageRequest(account_id="a", conversation_id="c",
                                  content=pb.MessageContent(text=pb.TextContent(text=str(i)))) for i in range(n)]


def texts(response: pb.BatchSendMessagesResponse) -> list[str]:
    return [r.message.content.text.text for r in response.results]


def test_a_long_list_is_sent_in_calls_of_at_most_1000_in_order():
    endpoint = Endpoint()
    response = batch_send_messages(endpoint, items(2500), timeout=5)
    assert [len(c.requests) for c in endpoint.calls] == [1000, 1000, 500]
    assert texts(response) == [str(i) for i in range(2500)]
    assert all(kw == {"timeout": 5} for kw in endpoint.kwargs)
    ids = [r.message.id for r in response.results]
    assert all(ids) and len(set(ids)) == 2500  # each item got its own request_id


def test_request_ids_given_are_kept_and_the_callers_requests_are_not_changed():
    given = items(3)
    given[1].request_id = "mine"
    response = batch_send_messages(Endpoint(), given)
    assert response.results[1].message.id == "mine"
    assert [r.request_id for r in given] == ["", "mine", ""]


def test_atomic_mode_is_one_call_so_more_than_1000_items_are_refused():
    endpoint = Endpoint()
    with pytest.raises(ValueError, match="atomic"):
        batch_send_messages(endpoint, items(1001), atomic=True)
    assert endpoint.calls == []
    batch_send_messages(endpoint, items(1000), atomic=True)
    assert len(endpoint.calls) == 1 and endpoint.calls[0].atomic


def test_an_interrupted_list_carries_the_answered_results_and_what_to_resend():
    endpoint = Endpoint(fail_on_call=2)
    with pytest.raises(BatchSendInterrupted) as stopped:
        batch_send_messages(endpoint, items(5), chunk_size=2)
    assert texts(pb.BatchSendMessagesResponse(results=stopped.value.results)) == ["0", "1"]
    resend = stopped.value.requests
    assert [r.request_id for r in resend[:2]] == [r.request_id for r in endpoint.calls[0].requests]
    again = batch_send_messages(Endpoint(), resend, chunk_size=2)  # the same ids: a safe retry
    assert [r.message.id for r in again.results] == [r.request_id for r in resend]


def test_the_async_variant_chunks_the_same_way():
    endpoint = Endpoint()
    response = asyncio.run(batch_send_messages_async(endpoint.aio, items(1001)))
    assert [len(c.requests) for c in endpoint.calls] == [1000, 1]
    assert texts(response) == [str(i) for i in range(1001)]
    with pytest.raises(ValueError):
        asyncio.run(batch_send_messages_async(endpoint.aio, items(3), chunk_size=1001))


def test_an_empty_list_is_one_call_for_the_server_to_refuse():
    endpoint = Endpoint()
    assert texts(batch_send_messages(endpoint, [])) == []
    assert [len(c.requests) for c in endpoint.calls] == [0]
