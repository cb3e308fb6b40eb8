"""Message-database rows that tests and benches write directly: a batch task in CREATED, and
the clean-up of a tenant's messages."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from wework.domain.batches import BatchStatus, BatchTask, TargetType
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.models import message as mm


async def add_created_task(db: Database, tenant_id: str, *, creator_id: str = "u", task_name: str = "big") -> str:
    """Stores a text batch task of account acc-1 that was never started; returns its id."""
    now = datetime.now(UTC)
    task = BatchTask(id=new_id(), tenant_id=tenant_id, creator_id=creator_id, task_name=task_name,
                     account_id="acc-1", message_type="text", content={"text": "hello"},
                     target_type=TargetType.IMPORT, status=BatchStatus.CREATED, created_at=now, updated_at=now,
                     version=1)
    async with db.unit_of_work("message", tenant_id) as uow:
        await uow.batches.add(task)
    return task.id


async def delete_messages(db: Database, tenant_id: str) -> None:
    """Deletes the tenant's messages: pending rows left in a shared database would be claimed by
    later tests' dispatchers."""
    async with db.unit_of_work("message", tenant_id) as uow:
        await uow.session.execute(sa.delete(mm.Message).where(mm.Message.tenant_id == tenant_id))
