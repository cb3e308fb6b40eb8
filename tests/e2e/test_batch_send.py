"""BatchSendMessages end to end (issue 20): per-item results, atomic mode, the call's quota,
request_id rules, the 1,000-item bound. A real wework-server over MariaDB shards and Redis (the
platform of test_message_service.py), called through the generated stub.

Scheduled an hour ahead where the dispatcher would otherwise send: the tests look at what is
accepted, not at delivery (which is SendMessage's, tested there).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from harness import httpcall
from test_message_service import mp, text, ts  # noqa: F401 - mp is the module's server fixture
from wework.client import AsyncWeworkClient, ClientOptions, InvalidArgumentError
from wework.v1 import message_pb2 as pb
from wework.v1 import message_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]


class Sender:
    def __init__(self, mp, **tenant_fields) -> None:  # noqa: F811 - the imported fixture's name
        _, key = mp.new_tenant(**tenant_fields)
        self.client = mp.client(api_key=key)
        self.account = mp.online_account(self.client)
        self.stub = message_pb2_grpc.MessageServiceStub(self.client.channel)
        self.md = self.client.options.credential_metadata()
        self.later = ts(datetime.now(UTC) + timedelta(hours=1))

    def item(self, body: str = "x", **fields) -> pb.SendMessageRequest:
        values = {"account_id": self.account.id, "conversation_id": "c", "content": text(body),
                  "scheduled_time": self.later, **fields}
        return pb.SendMessageRequest(**values)

    def batch(self, items, atomic: bool = False) -> list[pb.BatchSendMessagesResult]:
        response = self.stub.BatchSendMessages(pb.BatchSendMessagesRequest(requests=items, atomic=atomic),
                                               metadata=self.md, timeout=60)
        assert len(response.results) == len(items)
        return list(response.results)

    def send(self, item: pb.SendMessageRequest) -> pb.Message:
        return self.stub.SendMessage(item, metadata=self.md, timeout=10)

    def stored(self) -> list[str]:
        return sorted(m.id for m in self.client.messages.iter_messages())


@pytest.fixture
def new_sender(mp):  # noqa: F811
    senders = []

    def make(**tenant_fields) -> Sender:
        senders.append(Sender(mp, **tenant_fields))
        return senders[-1]

    yield make
    for s in senders:
        s.client.close()


def detail(status: status_pb2.Status, kind):
    for d in status.details:
        if d.Is(kind.DESCRIPTOR):
            out = kind()
            d.Unpack(out)
            return out
    raise AssertionError(f"no {kind.DESCRIPTOR.name} in {status}")


def call_status(error: grpc.RpcError) -> status_pb2.Status:
    from grpc_status import rpc_status
    return rpc_status.from_call(error)


def test_each_item_answers_its_message_or_the_status_send_message_gives(new_sender):
    s = new_sender(max_daily_messages=4)
    template = s.client.messages.create_template(pb.MessageTemplate(
        template_name="hi", template_type=pb.MESSAGE_TYPE_TEXT, template_content=text("hi {{name}}"),
        variables=[pb.TemplateVariable(name="name", required=True)]))
    results = s.batch([
        s.item("one"),
        s.item("", priority=11),  # invalid: two violations, like SendMessage's
        pb.SendMessageRequest(account_id=s.account.id, conversation_id="c", template_id=template.id,
                              variables={"name": "Ann"}, priority=9),
        s.item("lost", account_id="no-such-account"),
        s.item("two"),
    ])
    assert [r.WhichOneof("result") for r in results] == ["message", "error", "message", "error", "message"]
    assert results[0].message.content.text.text == "one" and results[0].message.priority == 5
    assert results[2].message.content.text.text == "hi Ann" and results[2].message.priority == 9
    assert results[1].error.code == code_pb2.INVALID_ARGUMENT
    bad = detail(results[1].error, error_details_pb2.BadRequest)
    assert sorted(v.field for v in bad.field_violations) == ["content.text.text", "priority"]
    assert results[3].error.code == code_pb2.NOT_FOUND and "no-such-account" in results[3].error.message
    assert detail(results[3].error, error_details_pb2.ErrorInfo).reason == "NOT_FOUND"
    accepted = sorted(r.message.id for r in results if r.HasField("message"))
    assert s.stored() == accepted
    assert s.client.messages.get_template(template.id).usage_count == 1
    # Only the three accepted items took quota: one unit is left of four.
    s.send(s.item("fourth"))
    with pytest.raises(grpc.RpcError) as exhausted:
        s.send(s.item("fifth"))
    assert exhausted.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_atomic_accepts_every_item_or_none(new_sender):
    s = new_sender(max_daily_messages=5)
    with pytest.raises(grpc.RpcError) as invalid:
        s.batch([s.item("a"), s.item(""), s.item("c", priority=-1)], atomic=True)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = detail(call_status(invalid.value), error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["requests[1].content.text.text", "requests[2].priority"]
    with pytest.raises(grpc.RpcError) as missing:
        s.batch([s.item("a"), s.item("b", account_id="no-such-account")], atomic=True)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "requests[1]" in missing.value.details()
    info = detail(call_status(missing.value), error_details_pb2.ErrorInfo)
    assert info.metadata["request_index"] == "1"
    with pytest.raises(grpc.RpcError) as over:  # 6 units wanted, 5 left: none taken
        s.batch([s.item(str(i)) for i in range(6)], atomic=True)
    assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert s.stored() == []
    results = s.batch([s.item(str(i)) for i in range(5)], atomic=True)
    assert s.stored() == sorted(r.message.id for r in results)


def test_the_quota_is_taken_for_the_call_in_request_order(new_sender):
    s = new_sender(max_daily_messages=3)
    results = s.batch([s.item(str(i)) for i in range(5)])
    assert [r.WhichOneof("result") for r in results] == ["message"] * 3 + ["error"] * 2
    assert results[3].error.code == code_pb2.RESOURCE_EXHAUSTED
    assert detail(results[3].error, error_details_pb2.QuotaFailure).violations
    assert s.stored() == sorted(r.message.id for r in results[:3])


def test_request_ids_retry_reuse_and_duplicates_within_a_call(new_sender):
    s = new_sender(max_daily_messages=10)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    items = [s.item(f"m{i}", request_id=ids[i]) for i in range(3)]
    first = s.batch(items)
    again = s.batch(items)  # a retried call: the first messages, no new rows, no new units
    assert [r.message.id for r in again] == [r.message.id for r in first]
    assert s.stored() == sorted(r.message.id for r in first)

    # A request_id used before (by SendMessage or a batch) with another payload: refused, named.
    sent = s.send(s.item("single", request_id="single-1"))
    results = s.batch([s.item("changed", request_id="single-1"), s.item("m0", request_id=ids[0]),
                       s.item("m1 changed", request_id=ids[1])])
    assert results[0].error.code == code_pb2.FAILED_PRECONDITION and "single-1" in results[0].error.message
    info = detail(results[0].error, error_details_pb2.ErrorInfo)
    assert info.reason == "REQUEST_ID_REUSED"
    assert dict(info.metadata) | {"trace_id": ""} == {"request_id": "single-1", "resource": f"messages/{sent.id}",
                                                       "trace_id": ""}
    assert results[1].message.id == first[0].message.id
    assert detail(results[2].error, error_details_pb2.ErrorInfo).reason == "REQUEST_ID_REUSED"

    # Two items of one call with one request_id: as two SendMessage calls in that order.
    results = s.batch([s.item("d", request_id="dup"), s.item("d", request_id="dup"),
                       s.item("other", request_id="dup")])
    assert results[0].message.id and results[1].message.id == results[0].message.id
    reused = detail(results[2].error, error_details_pb2.ErrorInfo)
    assert reused.reason == "REQUEST_ID_REUSED" and reused.metadata["resource"] == "requests[0]"
    with pytest.raises(grpc.RpcError) as atomic:
        s.batch([s.item("e", request_id="dup2"), s.item("f", request_id="dup2")], atomic=True)
    assert atomic.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "dup2" in atomic.value.details()
    # 3 + 1 + 1 messages written, units taken for those only: 5 of 10 left.
    assert len(s.stored()) == 5
    assert sum(r.HasField("message") for r in s.batch([s.item(str(i)) for i in range(6)])) == 5


def test_a_thousand_items_in_one_call_and_no_more(mp, new_sender):  # noqa: F811
    s = new_sender()
    results = s.batch([s.item(f"n{i}", request_id=f"r{i}") for i in range(1000)])
    assert all(r.HasField("message") for r in results)
    assert [r.message.content.text.text for r in results[:3]] == ["n0", "n1", "n2"]
    assert len({r.message.id for r in results}) == 1000
    assert len(s.stored()) == 1000
    for items in ([s.item(str(i)) for i in range(1001)], []):
        with pytest.raises(grpc.RpcError) as refused:
            s.batch(items)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in detail(call_status(refused.value), error_details_pb2.BadRequest).field_violations] \
            == ["requests"]
    assert len(s.stored()) == 1000


def test_the_client_chunking_helper_against_the_server(new_sender):
    from wework.client.batching import batch_send_messages
    s = new_sender(max_daily_messages=4)
    response = batch_send_messages(s.stub.BatchSendMessages, [s.item(str(i)) for i in range(5)], chunk_size=2,
                                   metadata=s.md, timeout=30)
    assert [r.WhichOneof("result") for r in response.results] == ["message"] * 4 + ["error"]
    assert [r.message.content.text.text for r in response.results[:4]] == ["0", "1", "2", "3"]
    assert s.stored() == sorted(r.message.id for r in response.results[:4])


# ---- the client facade with lists of any length -------------------------------------------------------


def batch_calls(mp) -> int:  # noqa: F811
    """BatchSendMessages calls the server has answered (its wework_rpc_requests_total, any code)."""
    total = 0.0
    for line in httpcall.get(mp.server.metrics_url, timeout=5).text.splitlines():
        if line.startswith("wework_rpc_requests_total{") and 'method="BatchSendMessages"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def calls_since(mp, before: int, expected: int) -> int:  # noqa: F811
    """The server counts a call after answering it: wait briefly for the count to settle."""
    deadline = time.monotonic() + 5
    while (n := batch_calls(mp) - before) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def test_the_facade_sends_2500_items_in_three_calls_and_answers_each_in_order(mp, new_sender):  # noqa: F811
    s = new_sender(max_daily_messages=10_000)
    items = [s.item(f"n{i}") for i in range(2500)]
    items[1999] = s.item("")  # refused by the server (empty text): the last item of the 2nd call
    items[2000].request_id = "mine-2000"  # kept as given
    before = batch_calls(mp)
    response = s.client.messages.batch_send_messages(requests=items, timeout=120)
    assert calls_since(mp, before, 3) == 3
    assert len(response.results) == 2500
    for i, result in enumerate(response.results):
        if i == 1999:
            assert result.WhichOneof("result") == "error" and result.error.code == code_pb2.INVALID_ARGUMENT
        else:
            assert result.WhichOneof("result") == "message", (i, result)
            assert result.message.content.text.text == f"n{i}"
    accepted = [r.message.id for r in response.results if r.HasField("message")]
    assert len(set(accepted)) == 2499 and s.stored() == sorted(accepted)
    assert [it.request_id for it in items[:3]] == ["", "", ""]  # the caller's messages are not changed


async def test_the_asyncio_facade_chunks_the_same_way(mp, new_sender):  # noqa: F811
    s = new_sender(max_daily_messages=10_000)
    items = [s.item(f"a{i}") for i in range(1001)]
    before = batch_calls(mp)
    async with AsyncWeworkClient(ClientOptions(target=mp.server.target, api_key=s.client.options.api_key)) as aio:
        response = await aio.messages.batch_send_messages(requests=items, timeout=60)
    assert calls_since(mp, before, 2) == 2
    assert [r.message.content.text.text for r in response.results] == [f"a{i}" for i in range(1001)]
    assert len(s.stored()) == 1001


def test_atomic_above_one_call_is_refused_before_anything_is_sent(mp, new_sender):  # noqa: F811
    s = new_sender(max_daily_messages=10_000)
    before = batch_calls(mp)
    with pytest.raises(ValueError, match=r"atomic=True covers one call, at most 1000 items; got 1001"):
        s.client.messages.batch_send_messages(requests=[s.item(str(i)) for i in range(1001)], atomic=True)
    assert batch_calls(mp) == before and s.stored() == []
    # Up to 1,000 it is one atomic call, all or nothing as the server does it.
    with pytest.raises(InvalidArgumentError) as refused:
        s.client.messages.batch_send_messages(requests=[s.item("ok"), s.item("")], atomic=True)
    assert [v.field for v in refused.value.field_violations] == ["requests[1].content.text.text"]
    assert s.stored() == []
    response = s.client.messages.batch_send_messages(requests=[s.item(str(i)) for i in range(1000)], atomic=True)
    assert len(response.results) == 1000 and len(s.stored()) == 1000
