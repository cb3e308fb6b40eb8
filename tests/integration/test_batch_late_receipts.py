"""A finished batch task keeps counters equal to its messages when a receipt arrives late."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from test_dispatch_batches import (
    _assert_counters_match,
    _batches,
    _dispatcher,
    _message_counts,
    _setup,
    _task,
    _watch_to_end,
    nodes,  # noqa: F401 - the fixture
)
from wework.domain.batches import BatchStatus, BatchTarget, TargetType
from wework.persistence.models import message as mm
from wework.server.application.context import utcnow
from wework.server.providers.base import NotifyType, ProviderCallback
from wework.server.providers.simulator import SimulatorConfig

pytestmark = pytest.mark.mariadb


async def test_a_late_failure_receipt_moves_a_success_to_failed(nodes):  # noqa: F811
    # No delivery receipts: the messages stay "sent", which a provider may still report failed.
    node = await nodes(SimulatorConfig(scan_delay_seconds=0, confirm_delay_seconds=0, heartbeat_interval_seconds=3600,
                                       delivery_delay_seconds=3600))
    principal, account_id, guid = await _setup(node)
    tenant_id = principal.tenant_id
    batches = _batches(node)
    await _dispatcher(node).start()
    task = await batches.create_batch_task(principal, _task(
        account_id, TargetType.MANUAL, manual_targets=[BatchTarget(f"member-{i}") for i in range(4)]), "")
    await batches.start_batch_task(principal, task.id)
    await _watch_to_end(batches, principal, task.id)
    done = await batches.get_batch_task(principal, task.id)
    assert (done.status, done.success_count, done.failed_count) == (BatchStatus.COMPLETED, 4, 0)

    async with node.db.unit_of_work("message", tenant_id, read_only=True) as uow:
        victim = (await uow.session.execute(sa.select(mm.Message.id).where(
            mm.Message.batch_id == task.id).limit(1))).scalar_one()
    failed = ProviderCallback(guid, int(NotifyType.MESSAGE_FAILED),
                              {"msg_id": victim, "error_code": "RECIPIENT_BLOCKED", "error_message": "blocked"},
                              uuid.uuid4().hex, utcnow())
    await node.message_events.deliver(failed)
    await node.message_events.deliver(failed)  # a repeated receipt changes nothing more

    listed, _ = await batches.list_batch_tasks(principal, 50, "", None, "")
    stored = next(t for t in listed if t.id == task.id)  # the list shows the stored row
    assert (stored.status, stored.success_count, stored.failed_count, stored.sent_count) == (
        BatchStatus.COMPLETED, 3, 1, 4)
    assert stored.version > done.version  # its etag changed
    again = await batches.get_batch_task(principal, task.id)
    _assert_counters_match(again, await _message_counts(node, tenant_id, task.id))
    assert (again.success_count, again.failed_count, again.end_time) == (3, 1, done.end_time)
