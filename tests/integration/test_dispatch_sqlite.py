"""The queue and batch repositories on SQLite (embedded mode: one process, no SKIP LOCKED)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from wework.domain.batches import BatchStatus, BatchTask, TargetType
from wework.persistence.ids import new_id
from wework.persistence.models import message as mm
from wework.server.application.context import utcnow


async def test_materialize_claim_record_and_count_on_sqlite(sqlite_database):
    db = sqlite_database
    tenant_id = new_id()
    now = utcnow()
    task = BatchTask(id=new_id(), tenant_id=tenant_id, creator_id="u", task_name="t", account_id="acc",
                     message_type="text", content={"text": "hi"}, target_type=TargetType.IMPORT,
                     status=BatchStatus.RUNNING, created_at=now, updated_at=now, version=1)
    rows = [{"id": new_id(), "created_at": now, "updated_at": now, "tenant_id": tenant_id, "account_id": "acc",
             "conversation_id": f"c{i}", "message_type": "text", "content": {"text": f"hi {i}"},
             "template_id": None, "status": "pending", "retry_count": 0, "batch_id": task.id,
             "priority": 5 + i % 2, "paused": False} for i in range(1500)]
    async with db.unit_of_work("message", tenant_id) as uow:
        repo = uow.batches
        await repo.add(task)
        assert await repo.materialize(rows) == 1500
    shard = db.shard_for(tenant_id)
    async with db.shard_unit_of_work("message", shard) as uow:
        claimed = [m for m in await uow.dispatch.claim("w", utcnow(), 5000, timedelta(seconds=60))
                   if m.tenant_id == tenant_id]
    assert len(claimed) == 1500 and claimed[0].priority == 6 and claimed[0].content == {"text": "hi 1"}
    async with db.shard_unit_of_work("message", shard) as uow:
        repo = uow.dispatch
        assert await repo.mark_sent_many([(m, f"w-{m.id}") for m in claimed[:1000]], "w", utcnow()) == 1000
        assert await repo.defer_many([(m, utcnow() + timedelta(hours=1)) for m in claimed[1000:]], "w", utcnow()) == 500
    async with db.unit_of_work("message", tenant_id) as uow:
        counts = await uow.batches.counts(tenant_id, task.id)
        wids = (await uow.session.execute(sa.select(mm.Message.wework_msg_id).where(
            mm.Message.id == claimed[0].id))).scalar_one()
    assert (counts.sent, counts.pending, counts.total) == (1000, 500, 1500)
    assert wids == f"w-{claimed[0].id}"


async def test_recording_sends_a_receipt_already_advanced_is_a_no_op_on_sqlite(sqlite_database):
    """The simulator's receipts often arrive before the dispatcher records its batch: when none of
    the batch is still this worker's, recording it changes nothing and does not fail."""
    db = sqlite_database
    tenant_id, now = new_id(), utcnow()
    task = BatchTask(id=new_id(), tenant_id=tenant_id, creator_id="u", task_name="t", account_id="acc",
                     message_type="text", content={"text": "hi"}, target_type=TargetType.IMPORT,
                     status=BatchStatus.RUNNING, created_at=now, updated_at=now, version=1)
    row = {"id": new_id(), "created_at": now, "updated_at": now, "tenant_id": tenant_id, "account_id": "acc",
           "conversation_id": "c", "message_type": "text", "content": {"text": "hi"}, "template_id": None,
           "status": "pending", "retry_count": 0, "batch_id": task.id, "priority": 5, "paused": False}
    async with db.unit_of_work("message", tenant_id) as uow:
        await uow.batches.add(task)
        await uow.batches.materialize([row])
    shard = db.shard_for(tenant_id)
    async with db.shard_unit_of_work("message", shard) as uow:
        claimed = [m for m in await uow.dispatch.claim("w", utcnow(), 100, timedelta(seconds=60))
                   if m.tenant_id == tenant_id]
    async with db.shard_unit_of_work("message", shard) as uow:  # the DELIVERED receipt got there first
        await uow.session.execute(sa.update(mm.Message).where(mm.Message.id == row["id"])
                                  .values(status="delivered", claimed_by=None, claimed_until=None))
    async with db.shard_unit_of_work("message", shard) as uow:
        assert await uow.dispatch.mark_sent_many([(claimed[0], "w-1")], "w", utcnow()) == 0
    async with db.unit_of_work("message", tenant_id) as uow:
        status = (await uow.session.execute(sa.select(mm.Message.status).where(
            mm.Message.id == row["id"]))).scalar_one()
    assert status == "delivered"
