"""Database, routing and unit of work against real MariaDB shards."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from harness import make_database_config, physical_database_names
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from wework.domain.errors import Unavailable
from wework.persistence.config import DatabaseConfig, ShardSpec
from wework.persistence.database import Database
from wework.persistence.errors import duplicate_key_name, is_duplicate_key
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import METADATA, Message, Tenant, TenantCode
from wework.persistence.sharding import bucket_of

pytestmark = pytest.mark.mariadb


def _tenant(tenant_id: str, code: str | None = None) -> Tenant:
    return Tenant(id=tenant_id, tenant_code=code or f"code-{tenant_id[-12:]}", tenant_name="Acme")


@pytest.fixture
async def two_server_db(mariadb_server, second_mariadb, unique_db_prefix):
    config = make_database_config(unique_db_prefix, [mariadb_server, second_mariadb], 2)
    await migrate_all(config)
    db = Database(config)
    await db.start()
    yield db, config, [mariadb_server, second_mariadb]
    await db.dispose()


@pytest.fixture
async def one_server_db(mariadb_server, unique_db_prefix):
    config = make_database_config(unique_db_prefix, [mariadb_server], 2)
    await migrate_all(config)
    db = Database(config)
    await db.start()
    yield db
    await db.dispose()


async def test_rows_land_on_the_shard_the_map_names(two_server_db):
    db, config, servers = two_server_db
    await db.ping()
    names = physical_database_names(config)
    tenants = [new_id() for _ in range(24)]
    for tenant_id in tenants:
        async with db.unit_of_work("user", tenant_id) as uow:
            uow.session.add(_tenant(tenant_id))

    by_port = {s.port: s for s in servers}
    found: dict[str, list[str]] = {}
    for shard in config.shards:
        server = by_port[sa.engine.make_url(shard.dsn).port]
        conn = server.sync_connect(names[("user", shard.name)])
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM tenants")
                for (tenant_id,) in cur.fetchall():
                    found.setdefault(tenant_id, []).append(shard.name)
        finally:
            conn.close()

    for tenant_id in tenants:
        bucket = bucket_of(tenant_id, config.bucket_count)
        expected = db.router.shard_for_bucket(bucket).name
        assert found[tenant_id] == [expected], tenant_id  # there, and in no other shard
    assert len({s for v in found.values() for s in v}) >= 3  # 24 tenants spread over the shards

    # Reading back through the router finds each row; scatter-gather sees all of them.
    async with db.session("user", tenants[0], read_only=True) as session:
        assert (await session.get(Tenant, tenants[0])).tenant_name == "Acme"

    async def count(uow):
        return await uow.session.scalar(sa.select(sa.func.count()).select_from(Tenant))

    counts = await db.for_each_shard("user", count)
    assert len(counts) == len(db.shard_names)
    assert sum(counts) == len(tenants)
    for name, n in zip(db.shard_names, counts, strict=True):
        assert n == sum(1 for t in tenants if db.shard_for(t) == name)


async def test_unit_of_work_rolls_back_on_error(one_server_db):
    db = one_server_db
    tenant_id = new_id()
    with pytest.raises(RuntimeError):
        async with db.unit_of_work("user", tenant_id) as uow:
            uow.session.add(_tenant(tenant_id))
            await uow.flush()
            raise RuntimeError("boom")
    async with db.session("user", tenant_id) as session:
        assert await session.get(Tenant, tenant_id) is None


async def test_after_commit_hooks_run_only_after_commit(one_server_db):
    db = one_server_db
    calls: list[str] = []
    tenant_id = new_id()

    async def hook():
        calls.append("async")

    async with db.unit_of_work("user", tenant_id) as uow:
        uow.session.add(_tenant(tenant_id))
        uow.after_commit(lambda: calls.append("sync"))
        uow.after_commit(hook)
        assert calls == []
    assert calls == ["sync", "async"]
    with pytest.raises(ValueError):
        async with db.unit_of_work("user", tenant_id) as uow:
            uow.after_commit(lambda: calls.append("never"))
            raise ValueError
    assert "never" not in calls


class _Participant:
    """Prepared work elsewhere (an XA branch in production) that records what it was told."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    async def commit(self) -> None:
        self.calls.append("commit")

    async def rollback(self) -> None:
        self.calls.append("rollback")

    async def abandon(self) -> None:
        self.calls.append("abandon")


async def test_enlisted_work_follows_the_transaction_s_outcome(one_server_db):
    db = one_server_db
    calls: list[str] = []
    tenant_id = new_id()
    async with db.unit_of_work("user", tenant_id) as uow:
        uow.session.add(_tenant(tenant_id))
        uow.enlist(_Participant(calls))
        uow.after_commit(lambda: calls.append("hook"))
        assert calls == []
    assert calls == ["commit", "hook"]  # committed first: a hook may rely on its rows

    calls.clear()
    with pytest.raises(ValueError):
        async with db.unit_of_work("user", tenant_id) as uow:
            uow.enlist(_Participant(calls))
            raise ValueError
    assert calls == ["rollback"]

    # The COMMIT itself fails (the connection is killed): its outcome is unknown, so the
    # enlisted work is neither committed nor rolled back here.
    calls.clear()
    with pytest.raises(Unavailable):
        async with db.unit_of_work("user", tenant_id) as uow:
            connection_id = (await uow.session.execute(sa.text("SELECT CONNECTION_ID()"))).scalar_one()
            async with db.unit_of_work("user", tenant_id) as killer:
                await killer.session.execute(sa.text(f"KILL {int(connection_id)}"))
            uow.enlist(_Participant(calls))
    assert calls == ["abandon"]


async def test_enlisted_work_commits_even_if_the_caller_is_cancelled_after_the_commit(one_server_db):
    db = one_server_db
    calls: list[str] = []

    class Slow(_Participant):
        async def commit(self) -> None:
            self.calls.append("committing")
            await asyncio.sleep(0.3)
            self.calls.append("commit")

    async def start() -> None:
        async with db.unit_of_work("user", new_id()) as uow:
            uow.enlist(Slow(calls))

    caller = asyncio.create_task(start())
    async with asyncio.timeout(5):
        while "committing" not in calls:
            await asyncio.sleep(0.01)
    caller.cancel()  # e.g. the client went away
    with pytest.raises(asyncio.CancelledError):
        await caller
    async with asyncio.timeout(5):
        while "commit" not in calls:
            await asyncio.sleep(0.01)
    assert calls == ["committing", "commit"]


async def test_duplicate_keys_are_left_for_repositories(one_server_db):
    db = one_server_db
    tenant_id = new_id()
    async with db.directory_unit_of_work() as uow:
        uow.session.add(TenantCode(tenant_code="acme", tenant_id=tenant_id))
    with pytest.raises(IntegrityError) as info:
        async with db.directory_unit_of_work() as uow:
            uow.session.add(TenantCode(tenant_code="acme", tenant_id=new_id()))
    assert is_duplicate_key(info.value)
    assert duplicate_key_name(info.value) == "PRIMARY"

    async with db.unit_of_work("user", tenant_id) as uow:
        uow.session.add(_tenant(tenant_id, code="same"))
    other = next(t for t in (new_id() for _ in range(100)) if db.shard_for(t) == db.shard_for(tenant_id))
    with pytest.raises(IntegrityError) as info:
        async with db.unit_of_work("user", other) as uow:
            uow.session.add(_tenant(other, code="same"))
    assert duplicate_key_name(info.value, METADATA["user"]) == "uk_tenants_tenant_code"


async def test_version_column_detects_lost_updates(one_server_db):
    db = one_server_db
    tenant_id = new_id()
    async with db.unit_of_work("user", tenant_id) as uow:
        uow.session.add(_tenant(tenant_id))
    async with db.session("user", tenant_id) as s1, db.session("user", tenant_id) as s2:
        a = await s1.get(Tenant, tenant_id)
        b = await s2.get(Tenant, tenant_id)
        await s1.commit()
        await s2.commit()
        a.tenant_name = "first"
        await s1.commit()
        assert a.version == 2
        b.tenant_name = "second"
        with pytest.raises(StaleDataError):
            await s2.commit()


async def test_times_round_trip_as_utc_with_microseconds(one_server_db):
    db = one_server_db
    tenant_id = new_id()
    when = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    async with db.unit_of_work("message", tenant_id) as uow:
        uow.session.add(Message(tenant_id=tenant_id, account_id=new_id(), conversation_id="c1", message_type="text",
                                content={"text": "你好"}, created_at=when,
                                scheduled_time=when.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))))
    async with db.session("message", tenant_id) as session:
        msg = (await session.scalars(sa.select(Message).where(Message.tenant_id == tenant_id))).one()
    assert msg.created_at == when and msg.created_at.tzinfo is UTC
    assert msg.scheduled_time == when  # stored as UTC whatever zone it came in
    assert msg.content == {"text": "你好"}
    with pytest.raises(sa.exc.StatementError):  # naive datetimes are refused, not guessed
        async with db.unit_of_work("message", tenant_id) as uow:
            uow.session.add(Message(tenant_id=tenant_id, account_id="a", conversation_id="c", message_type="text",
                                    content={}, created_at=datetime(2026, 1, 1) + timedelta(0)))


async def test_unreachable_database_is_unavailable(mariadb_server):
    from harness import free_port

    port = free_port()  # nothing listens there
    config = DatabaseConfig(directory_dsn=f"mysql+aiomysql://root@127.0.0.1:{port}/wwt_nowhere",
                            shards=[ShardSpec(name="s0", buckets="0-1023",
                                              dsn=f"mysql+aiomysql://root@127.0.0.1:{port}/wwt_nowhere_{{db}}")],
                            connect_timeout_seconds=2)
    db = Database(config)
    await db.start()
    try:
        with pytest.raises(Unavailable) as info:
            async with db.unit_of_work("user", "t1") as uow:
                await uow.session.execute(sa.text("SELECT 1"))
        assert info.value.metadata == {"database": "user", "shard": "s0"}
        with pytest.raises(Unavailable):
            await db.ping()
        with pytest.raises(Unavailable):
            async with db.directory_session() as session:
                await session.execute(sa.text("SELECT 1"))
    finally:
        await db.dispose()


async def test_unmigrated_database_is_unavailable(mariadb_server, unique_db_prefix):
    db = Database(make_database_config(unique_db_prefix, [mariadb_server], 1))  # never migrated
    try:
        with pytest.raises(Unavailable):
            async with db.unit_of_work("user", "t1") as uow:
                await uow.session.get(Tenant, "t1")
    finally:
        await db.dispose()


async def test_concurrent_units_of_work_on_many_tenants(one_server_db):
    db = one_server_db
    tenants = [new_id() for _ in range(40)]

    async def create(tenant_id: str) -> None:
        async with db.unit_of_work("user", tenant_id) as uow:
            uow.session.add(_tenant(tenant_id))

    await asyncio.gather(*(create(t) for t in tenants))

    async def ids(uow):
        return set(await uow.session.scalars(sa.select(Tenant.id)))

    found = set().union(*(await db.for_each_shard("user", ids)))
    assert set(tenants) <= found
