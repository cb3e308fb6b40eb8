"""Message domain rules: content per type, template rendering, status transitions, statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from wework.domain.errors import FailedPrecondition, InvalidArgument
from wework.domain.messages import (
    Message,
    MessageStatus,
    MessageType,
    Template,
    VariableDef,
    VariableType,
    is_stale_receipt,
    normalize_priority,
    render,
    terminal_statistics_delta,
    transition,
    validate_content,
    validate_schedule,
    validate_template,
)

S = MessageStatus
NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def paths(violations) -> list[str]:
    return [v.field for v in violations]


@pytest.mark.parametrize(("message_type", "content", "expected"), [
    (MessageType.TEXT, {"text": "hi"}, []),
    (MessageType.TEXT, {"text": ""}, ["content.text.text"]),
    (MessageType.TEXT, {"text": "   "}, ["content.text.text"]),
    (MessageType.TEXT, {"text": "x" * 4000}, []),
    (MessageType.TEXT, {"text": "x" * 4001}, ["content.text.text"]),
    (MessageType.IMAGE, {"media_id": "m1"}, []),
    (MessageType.IMAGE, {"url": "https://cdn.example.com/a.png"}, []),
    (MessageType.IMAGE, {}, ["content.image.media_id"]),
    (MessageType.IMAGE, {"url": "ftp://x/a.png"}, ["content.image.url"]),
    (MessageType.FILE, {"media_id": "f", "file_name": "a.pdf"}, []),
    (MessageType.FILE, {"file_name": "a.pdf"}, ["content.file.media_id"]),
    (MessageType.LINK, {"title": "t", "url": "https://example.com/x"}, []),
    (MessageType.LINK, {"title": "t", "url": "not a url"}, ["content.link.url"]),
    (MessageType.LINK, {"url": "https://example.com"}, ["content.link.title"]),
    (MessageType.LINK, {"title": "t", "url": "javascript:alert(1)"}, ["content.link.url"]),
    (MessageType.LINK, {"title": "t", "url": "https://e.com", "thumb_url": "nope"}, ["content.link.thumb_url"]),
    (MessageType.MINIPROGRAM, {"app_id": "wx1", "title": "t", "thumb_media_id": "m"}, []),
    (MessageType.MINIPROGRAM, {"title": "t"}, ["content.miniprogram.app_id", "content.miniprogram.thumb_media_id"]),
    (MessageType.AT, {"text": "hi", "user_ids": ["u1"]}, []),
    (MessageType.AT, {"text": "hi", "at_all": True}, []),
    (MessageType.AT, {"text": "hi"}, ["content.at.user_ids"]),
    (MessageType.AT, {"text": "hi", "user_ids": ["ok", ""]}, ["content.at.user_ids[1]"]),
])
def test_content_rules_per_type(message_type, content, expected):
    assert paths(validate_content(message_type, content)) == expected


def test_priority_and_schedule():
    assert normalize_priority(0) == 5
    assert normalize_priority(10) == 10
    for bad in (-1, 11):
        with pytest.raises(InvalidArgument) as err:
            normalize_priority(bad)
        assert paths(err.value.violations) == ["priority"]
    assert validate_schedule(None, NOW) == []
    assert validate_schedule(NOW + timedelta(seconds=1), NOW) == []
    assert paths(validate_schedule(NOW, NOW)) == ["scheduled_time"]
    assert paths(validate_schedule(NOW - timedelta(hours=1), NOW)) == ["scheduled_time"]
    assert paths(validate_schedule(NOW + timedelta(days=31), NOW, max_ahead=timedelta(days=30))) == ["scheduled_time"]


VARS = [VariableDef("name", VariableType.STRING, required=True),
        VariableDef("count", VariableType.NUMBER, default_value="1"),
        VariableDef("vip", VariableType.BOOL),
        VariableDef("day", VariableType.DATE)]
CONTENT = {"text": "Hi {{name}}, {{ count }} item(s), vip={{vip}} on {{day}}"}


def test_render_fills_typed_variables_and_defaults():
    out = render(MessageType.TEXT, CONTENT, VARS, {"name": "Ann", "count": 3.0, "vip": True, "day": "2026-12-01"})
    assert out == {"text": "Hi Ann, 3 item(s), vip=true on 2026-12-01"}
    assert render(MessageType.TEXT, CONTENT, VARS, {"name": "Bo"}) == {"text": "Hi Bo, 1 item(s), vip= on "}


@pytest.mark.parametrize(("values", "expected"), [
    ({}, ["variables.name"]),  # required, no default
    ({"name": "a", "nope": 1}, ["variables.nope"]),  # unknown
    ({"name": "a", "count": "many"}, ["variables.count"]),
    ({"name": "a", "vip": "yes"}, ["variables.vip"]),
    ({"name": "a", "day": "2026-13-01"}, ["variables.day"]),
    ({"name": "a", "count": True}, ["variables.count"]),  # a bool is not a number
])
def test_render_rejects_missing_unknown_and_mistyped_variables(values, expected):
    with pytest.raises(InvalidArgument) as err:
        render(MessageType.TEXT, CONTENT, VARS, values)
    assert paths(err.value.violations) == expected


def test_rendered_content_is_validated_for_its_type():
    with pytest.raises(InvalidArgument) as err:
        render(MessageType.TEXT, {"text": "{{name}}"}, [VariableDef("name")], {"name": "x" * 4001})
    assert paths(err.value.violations) == ["content.text.text"]
    with pytest.raises(InvalidArgument) as err:
        render(MessageType.LINK, {"title": "t", "url": "{{u}}"}, [VariableDef("u")], {"u": "not a url"})
    assert paths(err.value.violations) == ["content.link.url"]


def test_template_validation():
    assert validate_template("ok", MessageType.TEXT, CONTENT, VARS) == []
    bad = validate_template("", MessageType.TEXT, {"text": "{{who}}"},
                            [VariableDef("1x"), VariableDef("n", VariableType.NUMBER, default_value="abc")])
    assert paths(bad) == ["template.template_name", "template.variables[0].name",
                          "template.variables[1].default_value", "template.template_content"]
    dup = validate_template("ok", MessageType.TEXT, {"text": "{{a}}"}, [VariableDef("a"), VariableDef("a")])
    assert paths(dup) == ["template.variables[1].name"]


def test_private_templates_are_visible_to_their_creator_only():
    t = Template(id="t", tenant_id="x", creator_id="alice", template_name="n", template_type=MessageType.TEXT,
                 template_content={"text": "hi"}, created_at=NOW, updated_at=NOW)
    assert t.visible_to("alice") and not t.visible_to("bob") and not t.visible_to(None)
    t.is_public = True
    assert t.visible_to("bob")


def message(status: S = S.PENDING, **kw) -> Message:
    kw.setdefault("content", {"text": "hi"})
    return Message(id="m", tenant_id="t", account_id="a", conversation_id="c", message_type=MessageType.TEXT,
                   created_at=NOW, updated_at=NOW, status=status, **kw)


def test_happy_path_transitions_set_their_bookkeeping():
    later = NOW + timedelta(seconds=2)
    sending = transition(message(), S.SENDING, now=NOW)
    assert sending.status == S.SENDING and sending.send_time == NOW
    sent = transition(sending, S.SENT, now=later, wework_msg_id="w1")
    assert sent.wework_msg_id == "w1" and sent.callback_time == later
    delivered = transition(sent, S.DELIVERED, now=later)
    assert delivered.status == S.DELIVERED


@pytest.mark.parametrize(("old", "new"), [
    (S.PENDING, S.SENT), (S.PENDING, S.DELIVERED), (S.CANCELLED, S.PENDING), (S.SENT, S.CANCELLED),
    (S.SENDING, S.CANCELLED), (S.FAILED, S.SENT), (S.DELIVERED, S.PENDING), (S.CANCELLED, S.SENDING),
])
def test_illegal_transitions_are_refused(old, new):
    with pytest.raises(FailedPrecondition):
        transition(message(old), new, now=NOW)


def test_out_of_order_receipts_never_move_backwards():
    delivered = message(S.DELIVERED)
    assert transition(delivered, S.SENT, now=NOW) is None  # late SENT after DELIVERED: ignored
    assert transition(delivered, S.FAILED, now=NOW) is None
    assert transition(message(S.SENT), S.SENDING, now=NOW) is None
    assert transition(message(S.SENT), S.SENT, now=NOW) is None  # duplicate receipt
    assert is_stale_receipt(S.DELIVERED, S.SENT) and not is_stale_receipt(S.SENT, S.DELIVERED)


def test_failure_and_retry():
    failed = transition(message(S.SENDING), S.FAILED, now=NOW, error_code="E1", error_message="boom")
    assert (failed.error_code, failed.error_message) == ("E1", "boom")
    retried = transition(failed, S.PENDING, now=NOW)
    assert retried.retry_count == 1 and retried.error_code is None and retried.status == S.PENDING


def test_statistics_count_each_message_once_in_its_creation_hour():
    sending = message(S.SENDING, send_time=NOW)
    sent = transition(sending, S.SENT, now=NOW + timedelta(seconds=3))
    d = terminal_statistics_delta(sent, S.SENDING, now=NOW + timedelta(seconds=3))
    assert (d.stat_date, d.stat_hour, d.total, d.success, d.failed) == (NOW.date(), 9, 1, 1, 0)
    assert d.response_time_seconds == 3
    assert terminal_statistics_delta(transition(sent, S.DELIVERED, now=NOW), S.SENT) is None
    # DELIVERED straight from SENDING (lost SENT receipt) still counts once as a success.
    d = terminal_statistics_delta(transition(sending, S.DELIVERED, now=NOW), S.SENDING)
    assert (d.total, d.success) == (1, 1)
    failed = transition(sending, S.FAILED, now=NOW)
    d = terminal_statistics_delta(failed, S.SENDING)
    assert (d.total, d.success, d.failed) == (1, 0, 1)
    d = terminal_statistics_delta(transition(sent, S.FAILED, now=NOW), S.SENT)
    assert (d.total, d.success, d.failed) == (0, -1, 1)
    d = terminal_statistics_delta(transition(failed, S.PENDING, now=NOW), S.FAILED)
    assert (d.total, d.success, d.failed) == (-1, 0, -1)
    assert terminal_statistics_delta(transition(message(), S.CANCELLED, now=NOW), S.PENDING) is None


def test_request_fingerprint_ignores_key_order_and_sees_every_change():
    from wework.domain.messages import request_fingerprint

    a = request_fingerprint({"content": {"text": "hi", "at": [1, 2]}, "priority": 0, "conversation_id": "c"})
    assert a == request_fingerprint({"conversation_id": "c", "priority": 0, "content": {"at": [1, 2], "text": "hi"}})
    assert len(a) == 64
    for changed in ({"content": {"text": "hi!", "at": [1, 2]}, "priority": 0, "conversation_id": "c"},
                    {"content": {"text": "hi", "at": [2, 1]}, "priority": 0, "conversation_id": "c"},
                    {"content": {"text": "hi", "at": [1, 2]}, "priority": 1, "conversation_id": "c"}):
        assert request_fingerprint(changed) != a
