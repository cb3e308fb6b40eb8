"""Batch tasks through the use cases and real dispatchers (MariaDB, Redis, the simulator).

Every target kind materializes one message per recipient and ends completed; counters always
equal what the messages say; Pause stops sends within 1 s, Resume continues without
resending, Cancel cancels what is still pending.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import sqlalchemy as sa
from test_dispatch_claims import FAST, Node, node_factory
from wework.domain.access import Principal, PrincipalKind
from wework.domain.accounts import AccountStatus
from wework.domain.batches import BatchStatus, BatchTarget, BatchTask, SendStrategy, TargetFilter, TargetType
from wework.domain.errors import FailedPrecondition, InvalidArgument
from wework.domain.identity import Tenant
from wework.persistence.models import message as mm
from wework.persistence.repositories.batches import SPLIT_MIN_ROWS
from wework.server.application.batches import BatchUseCases, finish_if_done
from wework.server.workers.dispatch import Dispatcher, DispatchSettings

pytestmark = pytest.mark.mariadb
ADMIN = Principal(PrincipalKind.PLATFORM_ADMIN, "platform-admin", None, frozenset({"*"}))


@pytest.fixture
async def nodes(mariadb_config, redis_server):
    async with node_factory(mariadb_config, redis_server.url) as make:
        yield make


async def _setup(node: Node) -> tuple[Principal, str, str]:
    code = f"t{uuid.uuid4().hex[:12]}"
    tenant = await node.tenants.create_tenant(ADMIN, Tenant(id="", tenant_code=code, tenant_name=code), "")
    principal = Principal(PrincipalKind.API_KEY, f"key-{code}", tenant.id, frozenset({"*"}))
    account = await node.accounts.create_account(principal, {"account_name": "sender"}, "")
    await node.accounts.start_login(principal, account.id)
    async with asyncio.timeout(10):
        while (acc := await node.store.load(tenant.id, account.id)).status is not AccountStatus.ONLINE:
            await asyncio.sleep(0.02)
    await node.store.cache.invalidate(node.store.cache_key(tenant.id, account.id))
    return principal, account.id, acc.guid


def _batches(node: Node) -> BatchUseCases:
    return BatchUseCases(node.ctx, node.gateway, node.tenants)


def _dispatcher(node: Node, settings: DispatchSettings = FAST) -> Dispatcher:
    d = Dispatcher(node.db, node.provider, node.gateway, settings,
                   finish_batch=lambda t, i: finish_if_done(node.ctx, t, i))
    node.dispatchers.append(d)
    return d


def _task(account_id: str, kind: TargetType, **kw) -> BatchTask:
    return BatchTask(task_name=f"{kind.value} task", account_id=account_id, message_type="text",
                     content={"text": "hello"}, target_type=kind, **kw)


async def _message_counts(node: Node, tenant_id: str, task_id: str) -> dict[str, int]:
    async with node.db.unit_of_work("message", tenant_id, read_only=True) as uow:
        rows = await uow.session.execute(sa.select(mm.Message.status, sa.func.count())
                                         .where(mm.Message.batch_id == task_id).group_by(mm.Message.status))
        return {s: n for s, n in rows}


async def _watch_to_end(batches: BatchUseCases, principal: Principal, task_id: str) -> list:
    seen = []
    async with asyncio.timeout(30):
        async for task, eta in batches.watch_batch_task(principal, task_id):
            seen.append((task, eta))
    return seen


def _assert_counters_match(task: BatchTask, counts: dict[str, int]) -> None:
    assert task.total_count == sum(counts.values())
    assert task.success_count == counts.get("sent", 0) + counts.get("delivered", 0)
    assert task.failed_count == counts.get("failed", 0)


async def test_a_batch_of_each_target_kind_runs_to_completion(nodes):
    node = await nodes()
    principal, account_id, guid = await _setup(node)
    tenant_id = principal.tenant_id
    for i in range(3):
        await node.provider.conversation_changed(guid, f"group-{i}", conversation_type="group")
    await node.provider.conversation_changed(guid, "private-0", conversation_type="private")
    await node.provider.drain()
    batches = _batches(node)
    await _dispatcher(node).start()

    manual = await batches.create_batch_task(principal, _task(
        account_id, TargetType.MANUAL, manual_targets=[BatchTarget(f"m-{i}") for i in range(25)]), "")
    imported = await batches.create_batch_task(principal, _task(account_id, TargetType.IMPORT), "")

    async def chunks():
        for c in range(3):
            yield imported.id, [BatchTarget(f"imp-{c}-{i}") for i in range(40)]

    assert await batches.import_targets(principal, chunks()) == (120, 120)
    group = await batches.create_batch_task(principal, _task(account_id, TargetType.GROUP), "")
    filt = await batches.create_batch_task(principal, _task(
        account_id, TargetType.FILTER, target_filter=TargetFilter(conversation_type="private")), "")

    expected = {manual.id: 25, imported.id: 120, group.id: 3, filt.id: 1}
    for task_id in expected:
        started = await batches.start_batch_task(principal, task_id)
        assert started.status is BatchStatus.RUNNING
    for task_id, n in expected.items():
        seen = await _watch_to_end(batches, principal, task_id)
        final = seen[-1][0]
        assert final.status is BatchStatus.COMPLETED, final
        assert final.total_count == n and final.progress_percent == 100.0 and seen[-1][1] == 0
        counts = await _message_counts(node, tenant_id, task_id)
        _assert_counters_match(final, counts)
        # Counters never ran ahead of the messages and only grew.
        progress = [t.success_count + t.failed_count for t, _ in seen]
        assert progress == sorted(progress)
    async with node.db.unit_of_work("message", tenant_id, read_only=True) as uow:
        convs = set((await uow.session.execute(sa.select(mm.Message.conversation_id)
                                               .where(mm.Message.batch_id == group.id))).scalars())
    assert convs == {"group-0", "group-1", "group-2"}
    with pytest.raises(FailedPrecondition):
        await batches.start_batch_task(principal, manual.id)


async def test_pause_stops_sends_within_a_second_and_resume_does_not_resend(nodes):
    node = await nodes()
    principal, account_id, _ = await _setup(node)
    batches = _batches(node)
    slow = DispatchSettings(**{**FAST.__dict__, "account_min_interval_seconds": 0.05, "claim_batch_size": 10})
    await _dispatcher(node, slow).start()
    task = await batches.create_batch_task(principal, _task(
        account_id, TargetType.MANUAL, manual_targets=[BatchTarget(f"p-{i}") for i in range(80)],
        send_strategy=SendStrategy(priority=7)), "")
    await batches.start_batch_task(principal, task.id)
    async with asyncio.timeout(10):
        while (await _message_counts(node, principal.tenant_id, task.id)).get("pending", 0) > 60:
            await asyncio.sleep(0.02)
    await batches.pause_batch_task(principal, task.id)
    paused_at = time.monotonic()
    await asyncio.sleep(1.0)
    sent_after_1s = len(node.provider.sent_messages)
    await asyncio.sleep(1.0)
    assert len(node.provider.sent_messages) == sent_after_1s, "sends continued more than 1 s after Pause"
    assert time.monotonic() - paused_at >= 2.0
    paused = await batches.get_batch_task(principal, task.id)
    assert paused.status is BatchStatus.PAUSED and 0 < paused.success_count < 80
    await batches.resume_batch_task(principal, task.id)
    final = (await _watch_to_end(batches, principal, task.id))[-1][0]
    assert final.status is BatchStatus.COMPLETED and final.success_count == 80
    assert all(node.provider.send_count(k) == 1 for k in node.provider.sent_messages)


async def test_cancel_cancels_what_is_pending(nodes):
    node = await nodes()
    principal, account_id, _ = await _setup(node)
    batches = _batches(node)
    slow = DispatchSettings(**{**FAST.__dict__, "account_min_interval_seconds": 0.05, "claim_batch_size": 5})
    await _dispatcher(node, slow).start()
    task = await batches.create_batch_task(principal, _task(
        account_id, TargetType.MANUAL, manual_targets=[BatchTarget(f"c-{i}") for i in range(60)]), "")
    await batches.start_batch_task(principal, task.id)
    await asyncio.sleep(0.4)
    cancelled = await batches.cancel_batch_task(principal, task.id)
    assert cancelled.status is BatchStatus.CANCELLED
    await asyncio.sleep(1.0)  # in-flight sends finish or are cancelled
    counts = await _message_counts(node, principal.tenant_id, task.id)
    assert counts.get("pending", 0) == 0 and counts.get("sending", 0) == 0
    assert counts.get("cancelled", 0) > 0
    final = await batches.get_batch_task(principal, task.id)
    _assert_counters_match(final, counts)
    assert final.cancelled_count == counts["cancelled"]


async def test_bad_tasks_are_refused_with_the_field(nodes):
    node = await nodes()
    principal, account_id, _ = await _setup(node)
    batches = _batches(node)
    with pytest.raises(InvalidArgument) as exc:
        await batches.create_batch_task(principal, BatchTask(
            task_name="x", account_id=account_id, message_type="text", content={"text": ""},
            target_type=TargetType.MANUAL, manual_targets=[BatchTarget("a")]), "")
    assert exc.value.violations[0].field.startswith("task.message_content.text")
    with pytest.raises(InvalidArgument):
        await batches.create_batch_task(principal, _task(
            account_id, TargetType.MANUAL, manual_targets=[BatchTarget(f"x{i}") for i in range(10_001)]), "")


async def test_a_large_batch_is_written_by_two_connections_and_cancelled_as_one(nodes):
    node = await nodes()
    principal, account_id, _ = await _setup(node)
    tenant_id = principal.tenant_id
    batches = _batches(node)  # two writers by default (message.materialize_writers)
    task = await batches.create_batch_task(principal, _task(account_id, TargetType.IMPORT), "")

    async def chunks():
        for c in range(2):
            yield task.id, [BatchTarget(f"big-{c}-{i}") for i in range(SPLIT_MIN_ROWS // 2)]

    assert await batches.import_targets(principal, chunks()) == (SPLIT_MIN_ROWS, SPLIT_MIN_ROWS)
    statements: list[str] = []

    def record(_conn, _cursor, sql, *_):
        statements.append(sql)

    engine = node.db.engine("message", node.db.shard_for(tenant_id)).sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        started = await batches.start_batch_task(principal, task.id)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert [s for s in statements if s.startswith("XA PREPARE")]
    assert (started.total_count, started.materialized_count) == (SPLIT_MIN_ROWS, SPLIT_MIN_ROWS)
    assert await _message_counts(node, tenant_id, task.id) == {"pending": SPLIT_MIN_ROWS}
    # Both connections' messages are the task's: Cancel reaches every one. (No dispatcher runs
    # here: sending 20,000 through the simulator would load the tests that follow.)
    cancelled = await batches.cancel_batch_task(principal, task.id)
    assert cancelled.status is BatchStatus.CANCELLED
    assert await _message_counts(node, tenant_id, task.id) == {"cancelled": SPLIT_MIN_ROWS}
    final = await batches.get_batch_task(principal, task.id)
    assert (final.total_count, final.cancelled_count) == (SPLIT_MIN_ROWS, SPLIT_MIN_ROWS)
