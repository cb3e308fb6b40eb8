"""BatchUseCases (application/batches.py) on in-memory repositories and the embedded Redis:
create (idempotent), import targets, Start (materialization of the messages, the whole batch's
quota, template usage, the dispatcher's wake-up), pause/resume/cancel, counters and the end of
a task, listing and watching.

Start's materialization runs here as the in-memory repository writes it, in Start's own
transaction. Its MariaDB forms (LOAD DATA LOCAL, and the XA branches of a batch of
SPLIT_MIN_ROWS or more) are tested in tests/integration (test_dispatch_batches.py,
test_batch_write_branches.py, test_local_infile.py).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from harness.message_world import MessageWorld
from wework.domain.accounts import ConversationType
from wework.domain.batches import BatchStatus, BatchTarget, BatchTask, SendStrategy, TargetFilter, TargetType
from wework.domain.errors import FailedPrecondition, InvalidArgument, NotFound, QuotaExceeded, Unavailable
from wework.domain.identity import TenantStatus
from wework.domain.messages import Message, MessageStatus, MessageType, VariableDef, transition
from wework.persistence.repositories.messages import MessageFilter
from wework.server.application.messages import MESSAGE_DB, SendRequest

MS = MessageStatus


@pytest.fixture
def world() -> MessageWorld:
    return MessageWorld()


def manual(account_id: str, *conversations: str, **more) -> BatchTask:
    fields = {"task_name": "launch", "message_type": "text", "content": {"text": "hi"}, **more}
    return BatchTask(account_id=account_id, target_type=TargetType.MANUAL,
                     manual_targets=[BatchTarget(c) for c in conversations], **fields)


def single(account_id: str) -> SendRequest:
    return SendRequest(account_id, "solo", MessageType.TEXT, {"text": "x"})


async def batch_messages(world: MessageWorld, principal, task_id: str) -> list[Message]:
    page, _ = await world.messages.list_messages(principal, MessageFilter(batch_id=task_id), 1000, "")
    return page


async def deliver(world: MessageWorld, tenant_id: str, messages: list[Message], outcome: MessageStatus) -> None:
    """What the dispatcher and the receipts do: SENDING, then `outcome`."""
    async with world.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
        for m in messages:
            sending = transition(m, MS.SENDING, now=world.clock.now)
            assert await uow.messages.save_state(sending, expected_status=MS.PENDING)
            done = transition(sending, outcome, now=world.clock.now, error_code="E" if outcome is MS.FAILED else None)
            assert await uow.messages.save_state(done, expected_status=MS.SENDING)


# ---- create ----------------------------------------------------------------------------------------


async def test_create_makes_a_created_task_that_get_returns(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(account, "c1", "c2"), "")
    assert (task.status, task.tenant_id, task.creator_id, task.total_count) == (
        BatchStatus.CREATED, principal.tenant_id, principal.subject_id, 2)
    got = await world.batches.get_batch_task(principal, task.id)
    assert (got.id, got.status, got.total_count, got.manual_targets) == (
        task.id, BatchStatus.CREATED, 2, [BatchTarget("c1"), BatchTarget("c2")])
    assert world.accepted == [] and await batch_messages(world, principal, task.id) == []


async def test_create_with_a_request_id_is_idempotent(world):
    principal, account = world.sender()
    first = await world.batches.create_batch_task(principal, manual(account, "c1"), "req-1")
    again = await world.batches.create_batch_task(principal, manual(account, "c1"), "req-1")
    assert again.id == first.id
    page, _ = await world.batches.list_batch_tasks(principal, 10, "", None, "")
    assert [t.id for t in page] == [first.id]


async def test_create_refusals_write_nothing(world):
    principal, account = world.sender()
    bad = manual(account, "", task_name="", send_strategy=SendStrategy(priority=0))
    with pytest.raises(InvalidArgument) as invalid:
        await world.batches.create_batch_task(principal, bad, "")
    assert {v.field for v in invalid.value.violations} == {
        "task.task_name", "task.manual.targets[0].conversation_id", "task.send_strategy.priority"}
    with pytest.raises(InvalidArgument) as content:
        await world.batches.create_batch_task(principal, replace(manual(account, "c"), content={"text": ""}), "")
    assert [v.field for v in content.value.violations] == ["task.message_content.text.text"]
    _, foreign_account = world.sender()
    with pytest.raises(NotFound) as foreign:
        await world.batches.create_batch_task(principal, manual(foreign_account, "c"), "")
    assert foreign.value.resource_type == "account"
    world.tenants.set(principal.tenant_id, status=TenantStatus.SUSPENDED)
    with pytest.raises(FailedPrecondition) as suspended:
        await world.batches.create_batch_task(principal, manual(account, "c"), "")
    assert suspended.value.reason == "TENANT_SUSPENDED"
    assert world.db.committed == 0


async def test_a_template_task_takes_its_type_from_the_template(world):
    principal, account = world.sender()
    template = await world.add_template(principal, {"url": "https://x.test/{{path}}", "title": "T {{name}}"},
                                        variables=[VariableDef("path"), VariableDef("name")],
                                        message_type=MessageType.LINK)
    task = await world.batches.create_batch_task(principal, replace(
        manual(account, "c"), message_type="", content={}, template_id=template.id), "")
    assert (task.message_type, task.content) == ("link", {})
    other = replace(principal, subject_id="another-key")
    private = await world.add_template(principal, {"text": "x"}, is_public=False)
    with pytest.raises(NotFound):
        await world.batches.create_batch_task(other, replace(manual(account, "c"), template_id=private.id), "")


# ---- import ----------------------------------------------------------------------------------------


async def chunks(*items):
    for item in items:
        yield item


async def test_import_adds_targets_in_chunks_until_the_task_starts(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, BatchTask(
        task_name="import", account_id=account, message_type="text", content={"text": "hi"},
        target_type=TargetType.IMPORT), "")
    assert await world.batches.import_targets(principal, chunks(
        (task.id, [BatchTarget("a"), BatchTarget("b")]), ("", [BatchTarget("c")]))) == (3, 3)
    assert await world.batches.import_targets(principal, chunks((task.id, [BatchTarget("d")]))) == (1, 4)
    assert (await world.batches.get_batch_task(principal, task.id)).total_count == 4
    with pytest.raises(InvalidArgument) as bad:
        await world.batches.import_targets(principal, chunks((task.id, [BatchTarget("e"), BatchTarget("x" * 101)])))
    assert [v.field for v in bad.value.violations] == ["targets[1].conversation_id"]
    assert (await world.batches.get_batch_task(principal, task.id)).total_count == 4
    started = await world.batches.start_batch_task(principal, task.id)
    assert started.total_count == 4
    assert sorted(m.conversation_id for m in await batch_messages(world, principal, task.id)) == ["a", "b", "c", "d"]
    with pytest.raises(FailedPrecondition) as late:
        await world.batches.import_targets(principal, chunks((task.id, [BatchTarget("e")])))
    assert late.value.violations[0].type == "STATUS"
    # The staging rows went with Start.
    async with world.db.unit_of_work(MESSAGE_DB, principal.tenant_id, read_only=True) as uow:
        assert await uow.batches.import_count(task.id) == 0


async def test_import_refusals(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(account, "c"), "")
    with pytest.raises(FailedPrecondition) as not_import:
        await world.batches.import_targets(principal, chunks((task.id, [BatchTarget("a")])))
    assert not_import.value.violations[0].type == "TARGET_TYPE"
    with pytest.raises(InvalidArgument) as empty:
        await world.batches.import_targets(principal, chunks())
    assert [v.field for v in empty.value.violations] == ["task_id"]
    with pytest.raises(NotFound):
        await world.batches.import_targets(principal, chunks(("no-such-task", [BatchTarget("a")])))


# ---- start -----------------------------------------------------------------------------------------


async def test_start_writes_one_pending_message_per_recipient(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(
        account, "c1", "c2", "c3", send_strategy=SendStrategy(priority=8)), "")
    world.clock.advance(seconds=10)
    started = await world.batches.start_batch_task(principal, task.id)
    assert (started.status, started.total_count, started.materialized_count, started.start_time) == (
        BatchStatus.RUNNING, 3, 3, world.clock.now)
    messages = await batch_messages(world, principal, task.id)
    assert sorted(m.conversation_id for m in messages) == ["c1", "c2", "c3"]
    assert {(m.status, m.priority, m.account_id, m.message_type) for m in messages} == {
        (MS.PENDING, 8, account, MessageType.TEXT)}
    assert all(m.content == {"text": "hi"} for m in messages)
    assert world.woken == [world.db.shard_for(principal.tenant_id)]
    assert await world.quota_used(principal.tenant_id) == 3
    with pytest.raises(FailedPrecondition):
        await world.batches.start_batch_task(principal, task.id)
    assert len(await batch_messages(world, principal, task.id)) == 3


async def test_start_renders_the_template_per_recipient_and_counts_its_use(world):
    principal, account = world.sender()
    template = await world.add_template(principal, {"text": "Hi {{name}}"},
                                        variables=[VariableDef("name", default_value="friend")])
    task = await world.batches.create_batch_task(principal, BatchTask(
        task_name="t", account_id=account, template_id=template.id, target_type=TargetType.MANUAL,
        manual_targets=[BatchTarget("c1", {"name": "Ada"}), BatchTarget("c2")]), "")
    await world.batches.start_batch_task(principal, task.id)
    by_chat = {m.conversation_id: m.content for m in await batch_messages(world, principal, task.id)}
    assert by_chat == {"c1": {"text": "Hi Ada"}, "c2": {"text": "Hi friend"}}
    async with world.db.unit_of_work(MESSAGE_DB, principal.tenant_id, read_only=True) as uow:
        assert (await uow.templates.get(principal.tenant_id, template.id)).usage_count == 2


async def test_start_finds_group_and_filter_recipients_through_the_account_gateway(world):
    principal, account = world.sender()
    now = world.clock.now
    world.accounts.add_conversation(principal.tenant_id, account, "g1", ConversationType.GROUP, tags=("vip",),
                                    last_msg_time=now)
    world.accounts.add_conversation(principal.tenant_id, account, "g2", ConversationType.GROUP,
                                    last_msg_time=now - timedelta(days=10))
    world.accounts.add_conversation(principal.tenant_id, account, "p1", ConversationType.PRIVATE, tags=("vip",),
                                    last_msg_time=now)
    group = await world.batches.create_batch_task(principal, replace(
        manual(account), target_type=TargetType.GROUP, manual_targets=[]), "")
    await world.batches.start_batch_task(principal, group.id)
    assert sorted(m.conversation_id for m in await batch_messages(world, principal, group.id)) == ["g1", "g2"]
    vip_recent = await world.batches.create_batch_task(principal, replace(
        manual(account), target_type=TargetType.FILTER, manual_targets=[],
        target_filter=TargetFilter(tags=("vip",), active_since=now - timedelta(days=1))), "")
    await world.batches.start_batch_task(principal, vip_recent.id)
    assert sorted(m.conversation_id for m in await batch_messages(world, principal, vip_recent.id)) == ["g1", "p1"]


async def test_start_without_recipients_is_refused(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, replace(
        manual(account), target_type=TargetType.GROUP, manual_targets=[]), "")
    with pytest.raises(FailedPrecondition) as refused:
        await world.batches.start_batch_task(principal, task.id)
    assert refused.value.violations[0].type == "TARGETS"
    assert (await world.batches.get_batch_task(principal, task.id)).status is BatchStatus.CREATED


async def test_start_takes_the_whole_batch_quota_or_nothing(world):
    principal, account = world.sender(max_daily_messages=3)
    await world.messages.send_message(principal, single(account))
    task = await world.batches.create_batch_task(principal, manual(account, "c1", "c2", "c3"), "")
    with pytest.raises(QuotaExceeded):
        await world.batches.start_batch_task(principal, task.id)
    assert (await world.batches.get_batch_task(principal, task.id)).status is BatchStatus.CREATED
    assert await batch_messages(world, principal, task.id) == []
    assert await world.quota_used(principal.tenant_id) == 1


async def test_a_start_whose_write_fails_gives_the_quota_back(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(account, "c1", "c2"), "")
    await world.messages.send_message(principal, single(account))  # seeds the counter
    world.fail_next_write(Unavailable("the message database is unavailable; retry shortly"))
    with pytest.raises(Unavailable):
        await world.batches.start_batch_task(principal, task.id)
    assert await world.quota_used(principal.tenant_id) == 1
    assert (await world.batches.get_batch_task(principal, task.id)).status is BatchStatus.CREATED
    assert await batch_messages(world, principal, task.id) == [] and world.woken == []
    assert (await world.batches.start_batch_task(principal, task.id)).status is BatchStatus.RUNNING


# ---- pause / resume / cancel -----------------------------------------------------------------------


async def test_pause_and_resume_hold_and_release_the_pending_messages(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(account, "c1", "c2"), "")
    await world.batches.start_batch_task(principal, task.id)
    ids = {m.id for m in await batch_messages(world, principal, task.id)}

    def paused() -> set[str]:  # the `paused` column, which the dispatcher's claim skips
        return set(world.db.tables(MESSAGE_DB, world.db.shard_for(principal.tenant_id))["messages.paused"])

    assert (await world.batches.pause_batch_task(principal, task.id)).status is BatchStatus.PAUSED
    assert paused() == ids
    with pytest.raises(FailedPrecondition):
        await world.batches.pause_batch_task(principal, task.id)
    world.woken.clear()
    assert (await world.batches.resume_batch_task(principal, task.id)).status is BatchStatus.RUNNING
    assert paused() == set() and world.woken == [world.db.shard_for(principal.tenant_id)]


async def test_cancel_cancels_the_pending_messages_and_gives_their_quota_back(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(account, "c1", "c2", "c3"), "")
    await world.batches.start_batch_task(principal, task.id)
    sent_one = (await batch_messages(world, principal, task.id))[:1]
    await deliver(world, principal.tenant_id, sent_one, MS.DELIVERED)
    cancelled = await world.batches.cancel_batch_task(principal, task.id)
    assert (cancelled.status, cancelled.end_time, cancelled.cancelled_count, cancelled.success_count) == (
        BatchStatus.CANCELLED, world.clock.now, 2, 1)
    statuses = sorted(m.status.value for m in await batch_messages(world, principal, task.id))
    assert statuses == ["cancelled", "cancelled", "delivered"]
    assert await world.quota_used(principal.tenant_id) == 1
    with pytest.raises(FailedPrecondition):
        await world.batches.cancel_batch_task(principal, task.id)


async def test_a_task_cancelled_before_its_start_writes_no_messages(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(account, "c1"), "")
    assert (await world.batches.cancel_batch_task(principal, task.id)).status is BatchStatus.CANCELLED
    with pytest.raises(FailedPrecondition):
        await world.batches.start_batch_task(principal, task.id)
    assert await batch_messages(world, principal, task.id) == []


# ---- counters and the end of a task -----------------------------------------------------------------


async def test_a_task_completes_once_every_message_is_final(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(account, "c1", "c2", "c3"), "")
    await world.batches.start_batch_task(principal, task.id)
    messages = await batch_messages(world, principal, task.id)
    await deliver(world, principal.tenant_id, messages[:1], MS.SENT)
    await deliver(world, principal.tenant_id, messages[1:2], MS.FAILED)
    running = await world.batches.get_batch_task(principal, task.id)
    assert (running.status, running.success_count, running.failed_count, running.sent_count,
            running.progress_percent) == (BatchStatus.RUNNING, 1, 1, 2, 66.67)
    world.clock.advance(minutes=1)
    await deliver(world, principal.tenant_id, messages[2:], MS.DELIVERED)
    done = await world.batches.get_batch_task(principal, task.id)
    assert (done.status, done.success_count, done.failed_count, done.progress_percent, done.end_time) == (
        BatchStatus.COMPLETED, 2, 1, 100.0, world.clock.now)


async def test_a_task_whose_messages_all_failed_ends_failed_with_the_reason(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(account, "c1", "c2"), "")
    await world.batches.start_batch_task(principal, task.id)
    await deliver(world, principal.tenant_id, await batch_messages(world, principal, task.id), MS.FAILED)
    done = await world.batches.get_batch_task(principal, task.id)
    assert (done.status, done.error_message) == (BatchStatus.FAILED, "no message was sent (2 failed, 0 cancelled)")


# ---- read ------------------------------------------------------------------------------------------


async def test_list_pages_newest_first_with_filters(world):
    principal, account = world.sender()
    other_account = world.accounts.add(principal.tenant_id)
    made = []
    for i in range(3):
        made.append(await world.batches.create_batch_task(principal, manual(account, f"c{i}"), ""))
        world.clock.advance(seconds=1)
    made.append(await world.batches.create_batch_task(principal, manual(other_account, "x"), ""))
    await world.batches.cancel_batch_task(principal, made[0].id)
    page, token = await world.batches.list_batch_tasks(principal, 2, "", None, "")
    rest, last = await world.batches.list_batch_tasks(principal, 2, token, None, "")
    assert [t.id for t in page + rest] == [t.id for t in reversed(made)] and last == ""
    mine, _ = await world.batches.list_batch_tasks(principal, 10, "", None, account)
    assert [t.id for t in mine] == [made[2].id, made[1].id, made[0].id]
    cancelled, _ = await world.batches.list_batch_tasks(principal, 10, "", BatchStatus.CANCELLED, "")
    assert [t.id for t in cancelled] == [made[0].id]
    stranger, _ = world.sender()
    assert (await world.batches.list_batch_tasks(stranger, 10, "", None, ""))[0] == []
    with pytest.raises(NotFound):
        await world.batches.get_batch_task(stranger, made[0].id)


async def test_watch_of_an_ended_task_yields_it_once_and_stops(world):
    principal, account = world.sender()
    task = await world.batches.create_batch_task(principal, manual(account, "c1"), "")
    await world.batches.cancel_batch_task(principal, task.id)
    seen = [(t.status, eta) async for t, eta in world.batches.watch_batch_task(principal, task.id)]
    assert seen == [(BatchStatus.CANCELLED, 0)]
