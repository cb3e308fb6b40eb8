"""Bulk INSERTs rendered as literals (wework.persistence.bulk) store exactly what they are given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from harness.batches import delete_messages
from wework.persistence.ids import new_id
from wework.persistence.models import message as mm

# Strings a literal renderer must not get wrong: quotes, backslashes, driver format markers,
# SQL comment and statement breakers, multi-byte and 4-byte characters, control characters.
AWKWARD = ["it's", 'say "hi"', "back\\slash", "100% %s %(x)s", "a'); DROP TABLE messages; --",
           "你好，世界", "emoji 🎉👍", "tab\tnew\nline\r\x1a", "\\'", "''", "\\"]


def _rows(tenant_id: str, batch_id: str, n: int) -> list[dict]:
    base = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    shared = {"text": "same for everyone"}
    rows = []
    for i in range(n):
        awkward = AWKWARD[i % len(AWKWARD)]
        rows.append({"id": new_id(), "created_at": base + timedelta(microseconds=i), "updated_at": base,
                     "tenant_id": tenant_id, "account_id": "acc-1", "conversation_id": f"{awkward}-{i}"[:100],
                     "message_type": "text",
                     "content": shared if i % 3 == 0 else {"text": awkward, "n": i, "nested": [awkward, None, 1.5]},
                     "template_id": None, "status": "pending", "retry_count": 0, "batch_id": batch_id,
                     "priority": 1 + i % 10, "paused": False})
    return rows


async def _stored(database, tenant_id: str, batch_id: str) -> dict[str, mm.Message]:
    async with database.unit_of_work("message", tenant_id, read_only=True) as uow:
        return {m.id: m for m in (await uow.session.execute(
            sa.select(mm.Message).where(mm.Message.batch_id == batch_id))).scalars()}


@pytest.fixture(params=["mariadb", "sqlite"])
def database(request):
    return request.getfixturevalue(f"{request.param}_database")


async def test_materialize_round_trips_every_value(database):
    tenant_id, batch_id = new_id(), new_id()
    rows = _rows(tenant_id, batch_id, 2_345)  # several chunks and a partial one
    async with database.unit_of_work("message", tenant_id) as uow:
        assert await uow.batches.materialize(rows, chunk=500) == len(rows)
    stored = await _stored(database, tenant_id, batch_id)
    assert len(stored) == len(rows)
    for r in rows:
        m = stored[r["id"]]
        assert (m.conversation_id, m.content, m.priority, m.tenant_id) == (
            r["conversation_id"], r["content"], r["priority"], tenant_id)
        assert m.created_at == r["created_at"] and m.updated_at == r["updated_at"]
        assert (m.status, m.retry_count, m.paused, m.template_id) == ("pending", 0, False, None)
    await delete_messages(database, tenant_id)


async def test_a_failed_materialization_leaves_nothing(database):
    tenant_id, batch_id = new_id(), new_id()
    rows = _rows(tenant_id, batch_id, 1_200)
    rows[1_100]["content"] = {"text": object()}  # not JSON: fails while earlier chunks are written
    with pytest.raises(TypeError):
        async with database.unit_of_work("message", tenant_id) as uow:
            await uow.batches.materialize(rows, chunk=500)
    async with database.unit_of_work("message", tenant_id, read_only=True) as uow:
        count = (await uow.session.execute(sa.select(sa.func.count()).select_from(mm.Message).where(
            mm.Message.batch_id == batch_id))).scalar_one()
    assert count == 0


async def test_values_shared_by_the_batch_are_stored_on_every_row(database):
    tenant_id, batch_id = new_id(), new_id()
    base = datetime(2026, 11, 29, 9, 30, 0, 654321, tzinfo=UTC)
    awkward = "it's 100% %s \\ \t 你好 🎉"
    shared = {"updated_at": base, "tenant_id": tenant_id, "account_id": awkward, "message_type": "link",
              "content": {"title": awkward, "url": "https://example.com/?q=1"}, "template_id": None,
              "batch_id": batch_id, "priority": 7}
    rows = [{"id": new_id(), "created_at": base + timedelta(microseconds=i), "conversation_id": f"c-{i}"}
            for i in range(1_234)]
    async with database.unit_of_work("message", tenant_id) as uow:
        assert await uow.batches.materialize(rows, chunk=500, shared=shared) == len(rows)
    stored = await _stored(database, tenant_id, batch_id)
    assert len(stored) == len(rows)
    for r in rows:
        m = stored[r["id"]]
        assert (m.created_at, m.conversation_id) == (r["created_at"], r["conversation_id"])
        assert (m.updated_at, m.tenant_id, m.account_id, m.message_type, m.content, m.template_id, m.priority) == (
            base, tenant_id, awkward, "link", shared["content"], None, 7)
        assert (m.status, m.retry_count, m.paused) == ("pending", 0, False)
    await delete_messages(database, tenant_id)


async def test_a_shared_value_for_a_column_materialization_does_not_write_is_refused(database):
    tenant_id = new_id()
    with pytest.raises(ValueError, match="does not write"):
        async with database.unit_of_work("message", tenant_id) as uow:
            await uow.batches.materialize(
                [{"id": new_id()}], shared={"status": "sent", "tenant_id": tenant_id})
