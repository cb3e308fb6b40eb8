"""The send path's fast conversions answer exactly what the protobuf library's would
(content_from_pb against json_format.MessageToDict, from_timestamp against ToDatetime)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from google.protobuf import json_format, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st
from wework.domain.messages import Message, MessageType
from wework.server.handlers.convert import from_timestamp
from wework.server.handlers.message import (
    _PLAIN_MEMBERS,
    content_from_pb,
    message_to_pb,
    send_request_from_pb,
)
from wework.v1 import message_pb2 as pb

MEMBERS = [f.name for f in pb.MessageContent.DESCRIPTOR.oneofs_by_name["content"].fields]


def test_every_content_member_takes_the_fast_path():
    # A member with another field type would fall back to json_format; this says when one does.
    assert sorted(_PLAIN_MEMBERS) == sorted(MEMBERS)


@st.composite
def contents(draw) -> pb.MessageContent:
    member = draw(st.sampled_from(MEMBERS))
    out = pb.MessageContent()
    value = getattr(out, member)
    for field in value.DESCRIPTOR.fields:
        if field.is_repeated:
            getattr(value, field.name).extend(draw(st.lists(st.text(max_size=5), max_size=3)))
        elif field.type == field.TYPE_BOOL:
            setattr(value, field.name, draw(st.booleans()))
        else:
            setattr(value, field.name, draw(st.text(max_size=8)))
    value.SetInParent()
    return out


@given(contents())
def test_content_from_pb_is_message_to_dict(content):
    member = content.WhichOneof("content")
    message_type, fields = content_from_pb(content)
    assert message_type.value == member
    assert fields == json_format.MessageToDict(getattr(content, member), preserving_proto_field_name=True)
    assert list(fields) == list(json_format.MessageToDict(getattr(content, member),
                                                          preserving_proto_field_name=True))


@given(st.integers(-62_135_596_800, 253_402_300_799), st.integers(0, 999_999_999))
def test_from_timestamp_is_to_datetime(seconds, nanos):
    request = pb.SendMessageRequest(scheduled_time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    assert from_timestamp(request, "scheduled_time") == request.scheduled_time.ToDatetime(tzinfo=UTC)
    assert from_timestamp(pb.SendMessageRequest(), "scheduled_time") is None


@given(st.lists(contents(), min_size=1, max_size=6))
def test_items_of_one_call_with_the_same_content_share_its_conversion(items):
    # BatchSendMessages converts each distinct content once (by wire form); every item still
    # gets exactly its own content, and the answer built from it echoes that content.
    shared: dict = {}
    requests = [pb.SendMessageRequest(account_id="a", conversation_id=f"c{i}", content=c)
                for i, c in enumerate(items)]
    converted = [send_request_from_pb(r, shared) for r in requests]
    for request, req in zip(requests, converted, strict=True):
        assert (req.message_type.value if req.message_type else None, req.content) == (
            request.content.WhichOneof("content"), content_from_pb(request.content)[1])
    for a, b in itertools.combinations(range(len(items)), 2):
        same = items[a].SerializeToString(deterministic=True) == items[b].SerializeToString(deterministic=True)
        assert (converted[a].content is converted[b].content) == same


def test_answers_fill_every_set_field_of_the_message():
    now = datetime(2026, 12, 7, 15, 0, 0, 123456, tzinfo=UTC)
    m = Message(id="m1", tenant_id="t1", account_id="a1", conversation_id="c1", message_type=MessageType.TEXT,
                content={"text": "hi"}, created_at=now, updated_at=now, template_id="tp", wework_msg_id="w",
                send_time=now, error_code="E", error_message="boom", retry_count=2, batch_id="b",
                priority=7, scheduled_time=now, hold_reason="paced")
    out = message_to_pb(m)
    assert json_format.MessageToDict(out, preserving_proto_field_name=True) == {
        "id": "m1", "tenant_id": "t1", "account_id": "a1", "conversation_id": "c1", "message_type": "MESSAGE_TYPE_TEXT",
        "content": {"text": {"text": "hi"}}, "template_id": "tp", "status": "MESSAGE_STATUS_PENDING",
        "wework_msg_id": "w", "send_time": "2026-12-07T15:00:00.123456Z", "error_code": "E",
        "error_message": "boom", "retry_count": 2, "batch_id": "b", "priority": 7,
        "scheduled_time": "2026-12-07T15:00:00.123456Z", "hold_reason": "paced",
        "create_time": "2026-12-07T15:00:00.123456Z", "update_time": "2026-12-07T15:00:00.123456Z"}
    # Unset optional fields stay unset, as the proto3 defaults.
    bare = message_to_pb(Message(id="m2", tenant_id="t1", account_id="a1", conversation_id="c1",
                                 message_type=MessageType.TEXT, content={"text": "x"}, created_at=now, updated_at=now))
    assert not bare.HasField("send_time") and not bare.HasField("scheduled_time") and bare.template_id == ""
