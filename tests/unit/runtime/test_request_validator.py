"""RequestValidator on messages the API does not send today (Durations, maps, lists inside
Structs): the checks are driven by the descriptors, so a future request using them is covered."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2, struct_pb2
from wework.domain.errors import InvalidArgument
from wework.server.runtime.validation import MAX_DEPTH, UNDECODABLE, RequestValidator, safe_deserializer
from wework.v1 import message_pb2

V = RequestValidator()


def violations(message) -> list[str]:
    with pytest.raises(InvalidArgument) as info:
        V.check(message)
    return [v.field for v in info.value.violations]


@pytest.mark.parametrize(("seconds", "nanos", "ok"), [
    (0, 0, True), (315_576_000_000, 999_999_999, True), (-5, -1, True),
    (315_576_000_001, 0, False), (1, -1, False), (0, 1_000_000_000, False),
])
def test_durations(seconds, nanos, ok):
    d = duration_pb2.Duration(seconds=seconds, nanos=nanos)
    if ok:
        V.check(d)
    else:
        assert violations(d) == [""]


def test_lists_inside_structs_are_walked():
    s = struct_pb2.Struct()
    s.update({"a": [1, {"b": [float("nan")]}]})
    assert violations(s) == ["a[1].b[0]"]


def test_depth_is_bounded_without_recursion():
    value = struct_pb2.Value(number_value=1)
    for _ in range(MAX_DEPTH + 5):
        value = struct_pb2.Value(list_value=struct_pb2.ListValue(values=[value]))
    assert len(violations(value)) == 1


def test_repeated_messages_name_their_index():
    request = message_pb2.ImportBatchTargetsRequest(task_id="t")
    request.targets.add(conversation_id="a")
    request.targets.add(conversation_id="b").variables.update({"x": float("inf")})
    assert violations(request) == ["targets[1].variables.x"]


def test_undecodable_bytes_become_a_marker_then_invalid_argument():
    decode = safe_deserializer(message_pb2.SendMessageRequest)
    assert decode(b"\xff\xff\xff") is UNDECODABLE
    assert violations(UNDECODABLE) == ["request"]
    assert decode(message_pb2.SendMessageRequest(account_id="a").SerializeToString()).account_id == "a"


def test_a_hostile_request_reports_a_bounded_number_of_violations():
    request = message_pb2.ImportBatchTargetsRequest(task_id="t")
    for _ in range(500):
        request.targets.add(conversation_id="a").variables.update({"x": float("nan")})
    assert len(violations(request)) == 20
