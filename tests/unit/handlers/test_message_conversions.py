"""The send path's fast conversions answer exactly what the protobuf library's would
(content_from_pb against json_format.MessageToDict, from_timestamp against ToDatetime)."""

from __future__ import annotations

from datetime import UTC

from google.protobuf import json_format, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st
from wework.server.handlers.convert import from_timestamp
from wework.server.handlers.message import _PLAIN_MEMBERS, content_from_pb
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
