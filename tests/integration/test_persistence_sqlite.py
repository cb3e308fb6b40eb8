"""The embedded mode: the same models and migrations on SQLite files."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from harness import make_sqlite_config
from sqlalchemy.exc import IntegrityError
from wework.persistence.database import Database
from wework.persistence.errors import duplicate_key_name
from wework.persistence.ids import new_id
from wework.persistence.migrate import head_revision, migrate_all
from wework.persistence.models import (
    METADATA,
    AccountGuid,
    AccountStatusHistory,
    ApiKey,
    BatchSendTask,
    CallbackEvent,
    Conversation,
    Message,
    MessageStatistic,
    MessageTemplate,
    Role,
    Tenant,
    User,
    UserRole,
    WeworkAccount,
)


@pytest.fixture
async def embedded(tmp_path):
    # A nested, not yet existing directory: migrate_all creates it.
    config = make_sqlite_config(tmp_path / "data" / "nested", n_shards=2)
    results = await migrate_all(config)
    assert all(r.changed for r in results)
    db = Database(config)
    await db.start()
    yield db, config
    await db.dispose()


async def test_migrations_are_idempotent_and_complete(embedded):
    db, config = embedded
    assert [r.changed for r in await migrate_all(config)] == [False] * (1 + 4 * 2)
    await db.ping()
    for name, metadata in METADATA.items():
        engine = db.engine(name, None if name == "directory" else "s1")
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
            version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        assert tables == set(metadata.tables) | {"alembic_version"}
        assert version == head_revision(name)


async def test_every_model_round_trips(embedded):
    db, _ = embedded
    tenant_id, user_id, role_id, account_id = new_id(), new_id(), new_id(), new_id()
    now = datetime.now(UTC)
    async with db.unit_of_work("user", tenant_id) as uow:
        s = uow.session
        s.add(Tenant(id=tenant_id, tenant_code="acme", tenant_name="Acme", config={"tz": "Asia/Shanghai"}))
        await uow.flush()  # foreign keys are enforced on SQLite too
        s.add(Role(id=role_id, tenant_id=tenant_id, role_code="admin", role_name="Admin", permissions=["a.b"]))
        s.add(User(id=user_id, tenant_id=tenant_id, username="ann", email="ct", email_hash="h" * 64,
                   password_hash="$argon2id$..."))
        await uow.flush()
        s.add(UserRole(tenant_id=tenant_id, user_id=user_id, role_id=role_id, assigned_by=user_id))
        s.add(ApiKey(tenant_id=tenant_id, role_id=role_id, display_name="ci", prefix="wwk_abcd",
                     secret_hash="0" * 64, expires_at=now))
    async with db.unit_of_work("account", tenant_id) as uow:
        uow.session.add(WeworkAccount(id=account_id, tenant_id=tenant_id, account_name="a1", guid="g-1"))
        uow.session.add(AccountStatusHistory(tenant_id=tenant_id, account_id=account_id, new_status="created"))
        uow.session.add(Conversation(tenant_id=tenant_id, account_id=account_id, conversation_id="c1",
                                     conversation_type="group", tags=["vip"]))
    async with db.unit_of_work("message", tenant_id) as uow:
        uow.session.add(Message(tenant_id=tenant_id, account_id=account_id, conversation_id="c1",
                                message_type="text", content={"text": "hi"}))
        uow.session.add(MessageTemplate(tenant_id=tenant_id, creator_id=user_id, template_name="t",
                                        template_type="text", template_content={"text": "{{name}}"}))
        uow.session.add(BatchSendTask(tenant_id=tenant_id, creator_id=user_id, task_name="b", account_id=account_id,
                                      message_content={}, target_type="manual", target_config={},
                                      progress_percent=Decimal("12.50")))
        uow.session.add(MessageStatistic(tenant_id=tenant_id, account_id=account_id, stat_date=date(2026, 1, 1),
                                         stat_hour=23, total_count=3))
    async with db.unit_of_work("callback", tenant_id) as uow:
        uow.session.add(CallbackEvent(guid="g-1", notify_type=11003, event_type="login", raw_data="{}"))
    async with db.directory_unit_of_work() as uow:
        uow.session.add(AccountGuid(guid="g-1", tenant_id=tenant_id, account_id=account_id))

    async with db.session("user", tenant_id) as s:
        user = await s.get(User, user_id)
        assert user.created_at.tzinfo is UTC and user.version == 1 and user.status == "active"
        assert (await s.get(Role, role_id)).permissions == ["a.b"]
        key = (await s.scalars(sa.select(ApiKey))).one()
        assert key.expires_at == now
    async with db.session("message", tenant_id) as s:
        task = (await s.scalars(sa.select(BatchSendTask))).one()
        assert task.progress_percent == Decimal("12.50") and task.status == "created"
    async with db.directory_session() as s:
        assert (await s.get(AccountGuid, "g-1")).account_id == account_id


async def test_constraints_hold_on_sqlite(embedded):
    db, _ = embedded
    tenant_id = new_id()
    with pytest.raises(IntegrityError):  # foreign key to tenants
        async with db.unit_of_work("user", tenant_id) as uow:
            uow.session.add(Role(tenant_id=tenant_id, role_code="r", role_name="r", permissions=[]))
    with pytest.raises(IntegrityError):  # enum values are checked
        async with db.unit_of_work("user", tenant_id) as uow:
            await uow.session.execute(sa.text(
                "INSERT INTO tenants (id, tenant_code, tenant_name, status, max_accounts, max_daily_messages, version,"
                " created_at, updated_at) VALUES ('x', 'x', 'x', 'bogus', 1, 1, 1, '2026-01-01', '2026-01-01')"))
    async with db.unit_of_work("user", tenant_id) as uow:
        uow.session.add(Tenant(id=tenant_id, tenant_code="dup", tenant_name="A"))
    with pytest.raises(IntegrityError) as info:
        async with db.unit_of_work("user", tenant_id) as uow:
            uow.session.add(Tenant(id=new_id(), tenant_code="dup", tenant_name="B"))
    assert duplicate_key_name(info.value, METADATA["user"]) == "uk_tenants_tenant_code"


async def test_concurrent_writers_wait_instead_of_failing(embedded):
    """BEGIN IMMEDIATE: read-then-write transactions on one file queue up rather than erroring."""
    db, _ = embedded
    tenant_id = new_id()
    async with db.unit_of_work("user", tenant_id) as uow:
        uow.session.add(Tenant(id=tenant_id, tenant_code="counter", tenant_name="c", max_accounts=0))

    async def increment() -> None:
        async with db.unit_of_work("user", tenant_id) as uow:
            tenant = await uow.session.get(Tenant, tenant_id)
            await asyncio.sleep(0.001)  # let the others interleave
            tenant.max_accounts += 1

    await asyncio.gather(*(increment() for _ in range(20)))
    async with db.session("user", tenant_id, read_only=True) as s:
        assert (await s.get(Tenant, tenant_id)).max_accounts == 20
