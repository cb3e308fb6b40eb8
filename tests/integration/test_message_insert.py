"""The group commit's driver-level multi-row INSERTs (MessageRepository.add_many and
put_idempotent_many) store exactly what SQLAlchemy's own INSERT stores, on MariaDB and SQLite,
in an ordinary unit of work and in the group commit's own (rendered SQL only: on MariaDB it runs
on the driver connection, wework.persistence.driver_tx)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from wework.domain.errors import AlreadyExists
from wework.domain.messages import Message, MessageStatus, MessageType
from wework.persistence.ids import new_id
from wework.persistence.models import message as mm
from wework.persistence.repositories.messages import message_row_values

pytestmark = pytest.mark.mariadb

NOW = datetime(2026, 11, 28, 21, 30, 15, 123456, tzinfo=UTC)


def sample(tenant_id: str, i: int, delivery_state: bool = False) -> Message:
    """A message as SendMessage accepts it; with `delivery_state`, message 1 carries delivery
    fields too (the INSERT then writes every column, not only a new message's)."""
    extra = {"wework_msg_id": "ww-1", "send_time": NOW, "callback_time": NOW, "error_code": "E1",
             "error_message": "failed once", "retry_count": 2, "hold_reason": "account offline",
             "status": MessageStatus.FAILED} if delivery_state and i == 1 else {}
    return Message(
        id=new_id(), tenant_id=tenant_id, account_id=new_id(), conversation_id=f"wm{i}",
        message_type=MessageType.TEXT if i % 2 else MessageType.IMAGE,
        content={"text": f"héllo 100% 'quoted' \\ {i} 你好", "n": [1, None, True]} if i % 2 else {"media_id": "m"},
        created_at=NOW, updated_at=NOW + timedelta(microseconds=i),
        template_id=new_id() if i == 2 else None, priority=i % 10,
        scheduled_time=NOW + timedelta(days=1, microseconds=7) if i % 3 == 0 else None, **{
            "status": MessageStatus.PENDING, **extra})


def stored(row: mm.Message) -> dict:
    return {c.name: getattr(row, c.name) for c in mm.Message.__table__.columns}


@pytest.fixture(params=["mariadb", "sqlite"])
def database(request):
    return request.getfixturevalue(f"{request.param}_database")


@pytest.fixture(params=["session", "group-commit"])
def writing(request, database):
    """(tenant_id) -> the unit of work the rows are written in."""
    if request.param == "session":
        return lambda tenant_id: database.unit_of_work("message", tenant_id)
    return lambda tenant_id: database.shard_unit_of_work("message", database.shard_for(tenant_id),
                                                         tenants=[tenant_id], rendered_sql=True)


@pytest.mark.parametrize("delivery_state", [False, True], ids=["new", "with-delivery-state"])
@pytest.mark.parametrize("count", [1, 3, 70])  # 70: beyond the cached statement texts
async def test_rows_match_sqlalchemys_insert(database, writing, count, delivery_state):
    tenant_id = new_id()
    ours = [sample(tenant_id, i, delivery_state) for i in range(count)]
    theirs = [sample(tenant_id, i, delivery_state) for i in range(count)]
    async with writing(tenant_id) as uow:
        await uow.messages.add_many(ours)
    async with database.unit_of_work("message", tenant_id) as uow:
        await uow.session.execute(sa.insert(mm.Message), [message_row_values(m) for m in theirs])
    async with database.unit_of_work("message", tenant_id, read_only=True) as uow:
        rows = {r.id: r for r in (await uow.session.execute(
            sa.select(mm.Message).where(mm.Message.tenant_id == tenant_id))).scalars()}
        repo = uow.messages
        for a, b in zip(ours, theirs, strict=True):
            mine, reference = stored(rows[a.id]), stored(rows[b.id])
            assert {**mine, "id": None, "account_id": None, "template_id": None} == \
                   {**reference, "id": None, "account_id": None, "template_id": None}
            assert mine["paused"] is False and mine["created_at"] == NOW
            assert await repo.get(tenant_id, a.id) == a  # reads back as the entity that was written


async def test_a_taken_request_id_fails_the_whole_insert(database, writing):
    tenant_id = new_id()
    async with writing(tenant_id) as uow:
        await uow.messages.put_idempotent_many([(tenant_id, "SendMessage", "r1", "m1", "h1")], NOW)
    with pytest.raises(AlreadyExists):
        async with writing(tenant_id) as uow:
            await uow.messages.put_idempotent_many(
                [(tenant_id, "SendMessage", "r2", "m2", None), (tenant_id, "SendMessage", "r1", "m3", "h3")], NOW)
    async with database.unit_of_work("message", tenant_id, read_only=True) as uow:
        repo = uow.messages
        assert await repo.get_idempotent(tenant_id, "SendMessage", "r1") == "m1"
        assert await repo.get_idempotent_request(tenant_id, "SendMessage", "r1") == ("m1", "h1")
        assert await repo.get_idempotent(tenant_id, "SendMessage", "r2") is None  # rolled back together
