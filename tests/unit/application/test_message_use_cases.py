"""MessageUseCases (application/messages.py) on in-memory repositories and the embedded Redis:
SendMessage's rules, idempotency and daily quota, BatchSendMessages, Get/List, Cancel and Retry.

What a caller sees is asserted: the returned messages, the domain errors with their fields,
what a later read returns, what the quota counter holds, and that nothing is written on a
refusal (FakeDatabase.committed). The group commit's concurrency against MariaDB is tested in
tests/integration and tests/e2e; here it runs on the same asyncio loop as the test.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import fakeredis
import pytest
from harness.message_world import MessageWorld
from wework.domain.accounts import AccountStatus
from wework.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    RequestIdReused,
    Unavailable,
)
from wework.domain.identity import TenantStatus
from wework.domain.media import MediaKind
from wework.domain.messages import Message, MessageStatus, MessageType, VariableDef, transition
from wework.persistence.ids import new_id
from wework.persistence.repositories.messages import MessageFilter
from wework.server.application.messages import MAX_BATCH_SEND, MESSAGE_DB, SendRequest

MS = MessageStatus


def text(account_id: str, body: str = "hello", *, conversation_id: str = "chat-1", **more) -> SendRequest:
    return SendRequest(account_id=account_id, conversation_id=conversation_id, message_type=MessageType.TEXT,
                       content={"text": body}, **more)


def fields(error: InvalidArgument) -> set[str]:
    return {v.field for v in error.violations}


@pytest.fixture
def world() -> MessageWorld:
    return MessageWorld()


async def stored(world: MessageWorld, tenant_id: str) -> list[Message]:
    async with world.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
        rows, _ = await uow.messages.list_page(tenant_id, MessageFilter(), None, 1000)
    return rows


# ---- SendMessage ---------------------------------------------------------------------------------


async def test_send_accepts_a_pending_message_that_a_later_read_returns(world):
    principal, account = world.sender()
    sent = await world.messages.send_message(principal, text(account, "hi there"))
    assert (sent.status, sent.priority, sent.content, sent.tenant_id) == (MS.PENDING, 5, {"text": "hi there"},
                                                                          principal.tenant_id)
    assert sent.created_at == world.clock.now
    assert await world.messages.get_message(principal, sent.id) == sent
    assert world.accepted == [[sent.id]]  # the dispatcher is woken once the row is committed
    assert await world.quota_used(principal.tenant_id) == 1


async def test_send_names_every_invalid_field_at_once_and_writes_nothing(world):
    principal, _ = world.sender()
    req = SendRequest(account_id="", conversation_id="has space", message_type=None, content={}, priority=11,
                      variables={"x": 1}, request_id="r" * 65,
                      scheduled_time=world.clock.now - timedelta(seconds=1))
    with pytest.raises(InvalidArgument) as refused:
        await world.messages.send_message(principal, req)
    assert fields(refused.value) == {"account_id", "conversation_id", "request_id", "priority", "scheduled_time",
                                     "content", "variables"}
    assert world.db.committed == 0
    assert await world.quota_used(principal.tenant_id) == 0


async def test_send_checks_the_content_of_its_type(world):
    principal, account = world.sender()
    req = SendRequest(account, "chat-1", MessageType.LINK, {"title": "", "url": "ftp://x"})
    with pytest.raises(InvalidArgument) as refused:
        await world.messages.send_message(principal, req)
    assert fields(refused.value) == {"content.link.title", "content.link.url"}


async def test_send_from_another_tenants_account_is_not_found(world):
    principal, _ = world.sender()
    _, foreign_account = world.sender()
    with pytest.raises(NotFound) as refused:
        await world.messages.send_message(principal, text(foreign_account))
    assert (refused.value.resource_type, refused.value.resource_id) == ("account", foreign_account)
    assert world.db.committed == 0


async def test_a_suspended_tenant_cannot_send(world):
    principal, account = world.sender()
    world.tenants.set(principal.tenant_id, status=TenantStatus.SUSPENDED)
    with pytest.raises(FailedPrecondition) as refused:
        await world.messages.send_message(principal, text(account))
    assert refused.value.reason == "TENANT_SUSPENDED"
    assert refused.value.violations[0].subject == f"tenants/{principal.tenant_id}"
    assert world.db.committed == 0


async def test_an_offline_account_still_gets_its_message_accepted(world):
    principal, _ = world.sender()
    offline = world.accounts.add(principal.tenant_id, AccountStatus.OFFLINE)
    sent = await world.messages.send_message(principal, text(offline))
    assert sent.status is MS.PENDING  # held by the dispatcher until the account is back


async def test_priority_is_kept_and_defaults_to_five(world):
    principal, account = world.sender()
    urgent = await world.messages.send_message(principal, text(account, priority=9))
    default = await world.messages.send_message(principal, text(account, priority=0))
    assert (urgent.priority, default.priority) == (9, 5)
    assert (await world.messages.get_message(principal, urgent.id)).priority == 9


async def test_a_scheduled_message_is_accepted_without_waking_the_dispatcher(world):
    principal, account = world.sender()
    at = world.clock.now + timedelta(hours=2)
    sent = await world.messages.send_message(principal, text(account, scheduled_time=at))
    assert (await world.messages.get_message(principal, sent.id)).scheduled_time == at
    assert world.accepted == []  # found by the dispatcher's poll once due
    assert await world.quota_used(principal.tenant_id) == 1


async def test_a_schedule_beyond_the_horizon_is_refused(world):
    principal, account = world.sender()
    with pytest.raises(InvalidArgument) as refused:
        await world.messages.send_message(principal, text(account, scheduled_time=world.clock.now + timedelta(days=31)))
    assert fields(refused.value) == {"scheduled_time"}
    assert "30 days" in refused.value.violations[0].description


# ---- templates and media -------------------------------------------------------------------------


async def test_a_template_is_rendered_and_its_use_counted(world):
    principal, account = world.sender()
    template = await world.add_template(principal, {"text": "Hi {{name}}"},
                                        variables=[VariableDef("name", required=True)])
    sent = await world.messages.send_message(principal, SendRequest(
        account, "chat-1", None, {}, template_id=template.id, variables={"name": "Ada"}))
    assert (sent.message_type, sent.content, sent.template_id) == (MessageType.TEXT, {"text": "Hi Ada"}, template.id)
    async with world.db.unit_of_work(MESSAGE_DB, principal.tenant_id, read_only=True) as uow:
        after = await uow.templates.get(principal.tenant_id, template.id)
    assert (after.usage_count, after.last_used_time) == (1, world.clock.now)


async def test_template_refusals(world):
    principal, account = world.sender()
    inactive = await world.add_template(principal, {"text": "x"}, is_active=False)
    with pytest.raises(FailedPrecondition) as refused:
        await world.messages.send_message(principal, SendRequest(account, "c", None, {}, template_id=inactive.id))
    assert refused.value.violations[0].subject == f"templates/{inactive.id}"
    # A private template exists only for its creator.
    other = replace(principal, subject_id="another-key")
    private = await world.add_template(principal, {"text": "x"}, is_public=False)
    with pytest.raises(NotFound):
        await world.messages.send_message(other, SendRequest(account, "c", None, {}, template_id=private.id))
    with pytest.raises(InvalidArgument) as both:
        await world.messages.send_message(principal, replace(text(account), template_id=private.id))
    assert fields(both.value) == {"content"}
    assert await stored(world, principal.tenant_id) == []


async def test_a_media_id_must_name_media_of_the_tenant_and_of_a_fitting_kind(world):
    principal, account = world.sender()
    image = await world.add_media(principal.tenant_id, MediaKind.IMAGE)
    sent = await world.messages.send_message(principal, SendRequest(account, "c", MessageType.IMAGE,
                                                                    {"media_id": image.id}))
    assert sent.content == {"media_id": image.id}
    foreign = await world.add_media(world.tenants.add(), MediaKind.IMAGE)
    with pytest.raises(InvalidArgument) as refused:
        await world.messages.send_message(principal, SendRequest(account, "c", MessageType.IMAGE,
                                                                 {"media_id": foreign.id}))
    assert [(v.field, v.reason) for v in refused.value.violations] == [("content.media_id", "MEDIA_NOT_FOUND")]


# ---- idempotency ---------------------------------------------------------------------------------


async def test_a_repeated_request_id_answers_the_first_message_and_counts_once(world):
    principal, account = world.sender()
    first = await world.messages.send_message(principal, text(account, request_id="req-1"))
    again = await world.messages.send_message(principal, text(account, request_id="req-1"))
    assert again == first
    assert [m.id for m in await stored(world, principal.tenant_id)] == [first.id]
    assert await world.quota_used(principal.tenant_id) == 1  # the retry's unit went back


async def test_concurrent_sends_of_one_request_make_one_message(world):
    principal, account = world.sender()
    answers = await asyncio.gather(*(world.messages.send_message(principal, text(account, request_id="same"))
                                     for _ in range(5)))
    assert len({m.id for m in answers}) == 1
    assert len(await stored(world, principal.tenant_id)) == 1
    assert await world.quota_used(principal.tenant_id) == 1


async def test_a_request_id_reused_for_another_request_is_refused(world):
    principal, account = world.sender()
    first = await world.messages.send_message(principal, text(account, "one", request_id="req-1"))
    with pytest.raises(RequestIdReused) as refused:
        await world.messages.send_message(principal, text(account, "two", request_id="req-1"))
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert f"messages/{first.id}" in refused.value.message
    assert [m.content for m in await stored(world, principal.tenant_id)] == [{"text": "one"}]


async def test_request_ids_are_per_tenant(world):
    a, account_a = world.sender()
    b, account_b = world.sender()
    one = await world.messages.send_message(a, text(account_a, request_id="shared"))
    two = await world.messages.send_message(b, text(account_b, request_id="shared"))
    assert one.id != two.id


# ---- daily quota ---------------------------------------------------------------------------------


async def test_the_daily_quota_refuses_past_the_limit(world):
    principal, account = world.sender(max_daily_messages=2)
    for _ in range(2):
        await world.messages.send_message(principal, text(account))
    with pytest.raises(QuotaExceeded) as refused:
        await world.messages.send_message(principal, text(account))
    violation = refused.value.violations[0]
    assert violation.subject == f"tenants/{principal.tenant_id}"
    assert "max_daily_messages=2" in violation.description
    assert len(await stored(world, principal.tenant_id)) == 2
    assert await world.quota_used(principal.tenant_id) == 2  # the refused unit was given back


async def test_a_retry_of_an_accepted_request_is_answered_when_the_quota_is_used_up(world):
    principal, account = world.sender(max_daily_messages=1)
    first = await world.messages.send_message(principal, text(account, request_id="req-1"))
    assert await world.messages.send_message(principal, text(account, request_id="req-1")) == first


async def test_the_quota_counter_is_seeded_from_the_days_accepted_messages(world):
    principal, account = world.sender(max_daily_messages=3)
    now = world.clock.now
    async with world.db.unit_of_work(MESSAGE_DB, principal.tenant_id) as uow:
        for status, created in ((MS.SENT, now - timedelta(hours=1)), (MS.PENDING, now),
                                (MS.CANCELLED, now),  # given back: not counted
                                (MS.SENT, now - timedelta(days=1))):  # yesterday's quota
            await uow.messages.add(Message(new_id(), principal.tenant_id, account, "c", MessageType.TEXT,
                                           {"text": "x"}, created, created, status=status))
    await world.messages.send_message(principal, text(account))
    with pytest.raises(QuotaExceeded):
        await world.messages.send_message(principal, text(account))
    assert await world.quota_used(principal.tenant_id) == 3


async def test_the_next_utc_day_has_a_fresh_quota(world):
    principal, account = world.sender(max_daily_messages=1)
    await world.messages.send_message(principal, text(account))
    world.clock.advance(days=1)
    assert (await world.messages.send_message(principal, text(account))).status is MS.PENDING


async def test_a_failed_write_gives_its_quota_unit_back_and_leaves_nothing(world):
    principal, account = world.sender()
    await world.messages.send_message(principal, text(account))  # seeds the counter
    world.db.failing = Unavailable("the message database on shard s0 is unavailable; retry shortly")
    with pytest.raises(Unavailable):
        await world.messages.send_message(principal, text(account, request_id="req-2"))
    assert await world.quota_used(principal.tenant_id) == 1
    assert len(await stored(world, principal.tenant_id)) == 1
    # The request_id was not taken: the retry is accepted.
    retried = await world.messages.send_message(principal, text(account, request_id="req-2"))
    assert retried.status is MS.PENDING
    assert await world.quota_used(principal.tenant_id) == 2


async def test_redis_down_refuses_sends_as_unavailable():
    server = fakeredis.FakeServer()  # a Redis of its own, to take down
    world = MessageWorld(redis=fakeredis.FakeAsyncRedis(server=server))
    principal, account = world.sender()
    server.connected = False
    with pytest.raises(Unavailable) as refused:
        await world.messages.send_message(principal, text(account))
    assert refused.value.metadata == {"dependency": "redis"}
    assert world.db.committed == 0
    server.connected = True
    assert (await world.messages.send_message(principal, text(account))).status is MS.PENDING


# ---- BatchSendMessages ---------------------------------------------------------------------------


async def test_batch_send_answers_per_item_in_order(world):
    principal, account = world.sender(max_daily_messages=4)
    reqs = [
        text(account, "a", request_id="r-a"),
        SendRequest(account, "c", MessageType.TEXT, {"text": ""}),  # invalid
        text("no-such-account"),
        text(account, "a", request_id="r-a"),  # the same request again: the first item's message
        text(account, "other", request_id="r-a"),  # another request with that id
        text(account, "b"),
        text(account, "c"),
        text(account, "d"),
        text(account, "e"),  # past the quota of 4
    ]
    out = await world.messages.send_messages(principal, reqs)
    assert isinstance(out[0], Message) and out[0].content == {"text": "a"}
    assert isinstance(out[1], InvalidArgument) and fields(out[1]) == {"content.text.text"}
    assert isinstance(out[2], NotFound) and out[2].resource_id == "no-such-account"
    assert out[3] is out[0]
    assert isinstance(out[4], RequestIdReused) and "requests[0]" in out[4].message
    assert [o.content for o in out[5:8]] == [{"text": "b"}, {"text": "c"}, {"text": "d"}]
    assert isinstance(out[8], QuotaExceeded)
    assert sorted(m.content["text"] for m in await stored(world, principal.tenant_id)) == ["a", "b", "c", "d"]
    assert await world.quota_used(principal.tenant_id) == 4


async def test_a_retried_batch_answers_its_first_messages(world):
    principal, account = world.sender()
    reqs = [text(account, str(i), request_id=f"r-{i}") for i in range(3)]
    first = await world.messages.send_messages(principal, reqs)
    again = await world.messages.send_messages(principal, reqs)
    assert [m.id for m in again] == [m.id for m in first]
    assert len(await stored(world, principal.tenant_id)) == 3
    assert await world.quota_used(principal.tenant_id) == 3


async def test_concurrent_batches_with_one_request_id_make_one_message(world):
    """Both calls pass the lookup before either writes: the key's uniqueness settles it at the
    write (AlreadyExists for the loser's message, whose unit goes back), and the loser answers
    the winner's message."""
    principal, account = world.sender()
    one, two = await asyncio.gather(
        world.messages.send_messages(principal, [text(account, "x", request_id="dup"), text(account, "y")]),
        world.messages.send_messages(principal, [text(account, "x", request_id="dup"), text(account, "z")]))
    assert one[0].id == two[0].id
    assert sorted(m.content["text"] for m in await stored(world, principal.tenant_id)) == ["x", "y", "z"]
    assert await world.quota_used(principal.tenant_id) == 3


async def test_batch_send_bounds_its_size(world):
    principal, account = world.sender()
    with pytest.raises(InvalidArgument) as empty:
        await world.messages.send_messages(principal, [])
    assert [(v.field, v.reason) for v in empty.value.violations] == [("requests", "REQUIRED")]
    with pytest.raises(InvalidArgument) as many:
        await world.messages.send_messages(principal, [text(account)] * (MAX_BATCH_SEND + 1))
    assert [(v.field, v.reason) for v in many.value.violations] == [("requests", "TOO_MANY")]


async def test_an_atomic_batch_is_written_in_one_transaction(world):
    principal, account = world.sender()
    committed = world.db.committed
    out = await world.messages.send_messages(principal, [text(account, str(i)) for i in range(5)], atomic=True)
    assert [m.content["text"] for m in out] == ["0", "1", "2", "3", "4"]
    assert world.db.committed == committed + 1
    assert len(await stored(world, principal.tenant_id)) == 5


async def test_an_atomic_batch_with_an_invalid_item_names_its_fields_and_writes_nothing(world):
    principal, account = world.sender()
    reqs = [text(account), SendRequest(account, "", MessageType.TEXT, {"text": "x"}), text(account, priority=12)]
    with pytest.raises(InvalidArgument) as refused:
        await world.messages.send_messages(principal, reqs, atomic=True)
    assert fields(refused.value) == {"requests[1].conversation_id", "requests[2].priority"}
    assert world.db.committed == 0


async def test_an_atomic_batch_fails_with_its_first_failing_item(world):
    principal, account = world.sender()
    with pytest.raises(NotFound) as refused:
        await world.messages.send_messages(principal, [text(account), text("gone")], atomic=True)
    assert refused.value.message.startswith("requests[1]: ")
    assert refused.value.metadata["request_index"] == "1"
    assert await stored(world, principal.tenant_id) == []


async def test_an_atomic_batch_takes_the_whole_quota_or_none(world):
    principal, account = world.sender(max_daily_messages=3)
    await world.messages.send_message(principal, text(account))
    with pytest.raises(QuotaExceeded):
        await world.messages.send_messages(principal, [text(account, str(i)) for i in range(3)], atomic=True)
    assert await world.quota_used(principal.tenant_id) == 1
    assert len(await stored(world, principal.tenant_id)) == 1
    # What does fit is accepted whole.
    out = await world.messages.send_messages(principal, [text(account, "x"), text(account, "y")], atomic=True)
    assert all(isinstance(m, Message) for m in out)


async def test_an_atomic_batch_whose_write_fails_gives_back_every_unit(world):
    principal, account = world.sender()
    await world.messages.send_message(principal, text(account))  # seeds the counter
    world.db.failing = Unavailable("the message database is unavailable; retry shortly")
    with pytest.raises(Unavailable):
        await world.messages.send_messages(principal, [text(account, str(i)) for i in range(3)], atomic=True)
    assert await world.quota_used(principal.tenant_id) == 1
    assert len(await stored(world, principal.tenant_id)) == 1


async def test_a_batch_whose_group_write_fails_is_written_one_by_one(world):
    principal, account = world.sender()
    await world.messages.send_message(principal, text(account))  # seeds the counter
    world.db.failing = Unavailable("the message database is unavailable; retry shortly")
    out = await world.messages.send_messages(principal, [text(account, str(i)) for i in range(3)])
    # The group's transaction failed; each message then got a transaction of its own.
    assert all(isinstance(m, Message) for m in out)
    assert len(await stored(world, principal.tenant_id)) == 4
    assert await world.quota_used(principal.tenant_id) == 4


@pytest.mark.parametrize("linger, commits", [(0.5, 1), (0.0, 3)])
async def test_under_load_the_accept_linger_gathers_the_next_sends_into_one_commit(linger, commits):
    # message.accept_linger_seconds: after a commit of several messages, the next batch waits
    # for company (up to the linger) instead of committing each send that trickles in.
    world = MessageWorld(linger_seconds=linger)
    principal, account = world.sender()
    await asyncio.gather(*(world.messages.send_message(principal, text(account, f"wave {i}")) for i in range(3)))
    before = world.db.committed

    async def trickle(i: int) -> Message:
        await asyncio.sleep(0.03 * i)
        return await world.messages.send_message(principal, text(account, f"later {i}"))

    started = asyncio.get_running_loop().time()
    sent = await asyncio.gather(*(trickle(i) for i in range(3)))
    assert world.db.committed - before == commits
    assert len(await stored(world, principal.tenant_id)) == 6 and all(m.status == MS.PENDING for m in sent)
    # The wait is bounded by the linger, not by the queue filling up (it never does here).
    assert asyncio.get_running_loop().time() - started < linger + 0.5


# ---- Get / List ----------------------------------------------------------------------------------


async def test_get_is_scoped_to_the_callers_tenant(world):
    principal, account = world.sender()
    other, _ = world.sender()
    sent = await world.messages.send_message(principal, text(account))
    with pytest.raises(NotFound):
        await world.messages.get_message(other, sent.id)
    with pytest.raises(InvalidArgument) as missing:
        await world.messages.get_message(principal, "")
    assert fields(missing.value) == {"id"}


async def test_list_pages_newest_first_with_filters(world):
    principal, account = world.sender()
    sent = []
    for i in range(5):
        sent.append(await world.messages.send_message(principal, text(account, str(i),
                                                                      conversation_id=f"chat-{i % 2}")))
        world.clock.advance(seconds=1)
    ids = [m.id for m in reversed(sent)]
    page, token = await world.messages.list_messages(principal, MessageFilter(), 2, "")
    assert [m.id for m in page] == ids[:2] and token
    page2, token2 = await world.messages.list_messages(principal, MessageFilter(), 2, token)
    page3, token3 = await world.messages.list_messages(principal, MessageFilter(), 2, token2)
    assert [m.id for m in page2 + page3] == ids[2:] and token3 == ""
    chat0, _ = await world.messages.list_messages(principal, MessageFilter(conversation_id="chat-0"), 10, "")
    assert [m.content["text"] for m in chat0] == ["4", "2", "0"]
    window, _ = await world.messages.list_messages(principal, MessageFilter(
        start_time=sent[1].created_at, end_time=sent[3].created_at), 10, "")
    assert [m.id for m in window] == [sent[2].id, sent[1].id]


async def test_list_refusals(world):
    principal, _ = world.sender()
    other, account = world.sender()
    await world.messages.send_message(other, text(account))
    await world.messages.send_message(other, text(account))
    _, token = await world.messages.list_messages(other, MessageFilter(), 1, "")
    with pytest.raises(InvalidArgument) as foreign:
        await world.messages.list_messages(principal, MessageFilter(), 1, token)
    assert fields(foreign.value) == {"page_token"}
    now = world.clock.now
    with pytest.raises(InvalidArgument) as backwards:
        await world.messages.list_messages(principal, MessageFilter(start_time=now, end_time=now), 10, "")
    assert fields(backwards.value) == {"end_time"}


# ---- Cancel / Retry ------------------------------------------------------------------------------


async def test_cancel_ends_a_pending_message_and_gives_its_unit_back(world):
    principal, account = world.sender(max_daily_messages=1)
    sent = await world.messages.send_message(principal, text(account))
    cancelled = await world.messages.cancel_message(principal, sent.id)
    assert cancelled.status is MS.CANCELLED
    assert (await world.messages.get_message(principal, sent.id)).status is MS.CANCELLED
    assert await world.quota_used(principal.tenant_id) == 0
    await world.messages.send_message(principal, text(account))  # the unit is free again
    with pytest.raises(FailedPrecondition) as again:
        await world.messages.cancel_message(principal, sent.id)
    assert "this one is cancelled" in again.value.message
    assert again.value.violations[0].subject == f"messages/{sent.id}"


async def test_cancel_of_yesterdays_message_keeps_todays_counter(world):
    principal, account = world.sender()
    sent = await world.messages.send_message(principal, text(account))
    world.clock.advance(days=1)
    await world.messages.send_message(principal, text(account))
    await world.messages.cancel_message(principal, sent.id)
    assert await world.quota_used(principal.tenant_id) == 1


async def test_cancel_and_retry_of_an_unknown_message_are_not_found(world):
    principal, _ = world.sender()
    with pytest.raises(NotFound):
        await world.messages.cancel_message(principal, new_id())
    with pytest.raises(NotFound):
        await world.messages.retry_message(principal, new_id())


async def fail_it(world: MessageWorld, tenant_id: str, message: Message) -> None:
    """What the dispatcher does to a message the provider refuses: FAILED, counted in the statistics."""
    async with world.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
        sending = transition(message, MS.SENDING, now=world.clock.now)
        assert await uow.messages.save_state(sending, expected_status=MS.PENDING)
        failed = transition(sending, MS.FAILED, now=world.clock.now, error_code="E1", error_message="refused")
        assert await uow.messages.save_state(failed, expected_status=MS.SENDING)
        await uow.messages.record_terminal_status(failed, MS.SENDING, world.clock.now)


def statistics(world: MessageWorld, tenant_id: str) -> dict:
    shard = world.db.shard_for(tenant_id)
    return {k: (v["total"], v["failed"]) for k, v in world.db.tables(MESSAGE_DB, shard)["message_statistics"].items()}


async def test_retry_puts_a_failed_message_back_and_takes_its_failure_out_of_the_statistics(world):
    principal, account = world.sender()
    sent = await world.messages.send_message(principal, text(account))
    await fail_it(world, principal.tenant_id, sent)
    key = (principal.tenant_id, account, sent.created_at.date(), sent.created_at.hour)
    assert statistics(world, principal.tenant_id) == {key: (1, 1)}
    world.accepted.clear()
    world.clock.advance(minutes=5)
    retried = await world.messages.retry_message(principal, sent.id)
    assert (retried.status, retried.retry_count, retried.error_code, retried.error_message) == (MS.PENDING, 1,
                                                                                                None, None)
    assert await world.messages.get_message(principal, sent.id) == retried
    assert statistics(world, principal.tenant_id) == {key: (0, 0)}
    assert world.accepted == [[sent.id]]  # the dispatcher is woken for it


async def test_only_a_failed_message_can_be_retried(world):
    principal, account = world.sender()
    sent = await world.messages.send_message(principal, text(account))
    with pytest.raises(FailedPrecondition) as refused:
        await world.messages.retry_message(principal, sent.id)
    assert "this one is pending" in refused.value.message
    assert (await world.messages.get_message(principal, sent.id)).retry_count == 0
