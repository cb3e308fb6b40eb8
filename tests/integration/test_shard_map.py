"""Runtime shard map: versions in the directory, picked up by running processes without a restart."""

from __future__ import annotations

import asyncio
import uuid

import harness
import pytest
import sqlalchemy as sa
from harness import make_database_config
from wework.domain.errors import Unavailable
from wework.persistence.config import DatabaseConfig, RedisConfig, ShardSpec
from wework.persistence.database import Database
from wework.persistence.migrate import migrate_all
from wework.persistence.models import user as um
from wework.persistence.models.base import utcnow
from wework.persistence.models.directory import ShardMapVersion
from wework.persistence.redis.client import create_redis
from wework.persistence.sharding import bucket_of
from wework.persistence.shardmap import (
    ShardMapConflict,
    ShardMapStore,
    ShardMapWatcher,
    live_acks,
    wait_for_acks,
)


@pytest.fixture(scope="module")
async def migrated(mariadb_server):
    """Two migrated shards (s0: 0-511, s1: 512-1023) plus a migrated spare shard `s2` not yet in
    the map; migrated once per module (it takes seconds), dropped at the end."""
    prefix = harness.new_db_prefix("m")
    config = make_database_config(prefix, [mariadb_server], 2)
    spare = ShardSpec(name="s2", buckets="0", dsn=mariadb_server.url(f"{prefix}_{{db}}_2"))
    await migrate_all(config)
    await migrate_all(config.model_copy(update={"shards": [spare.model_copy(update={"buckets": "0-1023"})]}))
    yield config, spare
    mariadb_server.drop_databases(prefix + "_")


@pytest.fixture
async def layout(migrated):
    """`migrated` with no published shard map version (each test starts from the settings' map)."""
    config, _ = migrated
    db = Database(config)
    async with db.directory_unit_of_work() as uow:
        await uow.session.execute(sa.delete(ShardMapVersion))
    await db.dispose()
    return migrated


@pytest.fixture
async def redis(redis_server):
    client = create_redis(RedisConfig(url=redis_server.url))
    yield client
    await client.aclose()


def moved(config: DatabaseConfig, spare: ShardSpec, rng: str = "768-1023", *, frozen: str = "") -> DatabaseConfig:
    """`config` with buckets `rng` (the top of s1) moved to the spare shard."""
    lo = int(rng.split("-")[0])
    shards = [config.shards[0], config.shards[1].model_copy(update={"buckets": f"512-{lo - 1}"}),
              spare.model_copy(update={"buckets": rng})]
    return config.model_copy(update={"shards": shards, "frozen_buckets": frozen})


def tenant_in(lo: int, hi: int, count: int = 1024) -> str:
    while True:
        tid = str(uuid.uuid4())
        if lo <= bucket_of(tid, count) <= hi:
            return tid


async def insert_tenant(db: Database, tid: str) -> None:
    async with db.unit_of_work("user", tid) as uow:
        uow.session.add(um.Tenant(id=tid, tenant_code=f"c{tid[:8]}", tenant_name="t", status="active",
                                  created_at=utcnow(), updated_at=utcnow()))


async def test_publish_versions_current_and_validation(layout):
    config, spare = layout
    db = Database(config)
    store = ShardMapStore(db)
    try:
        assert await store.current() is None
        assert await store.effective() == (0, config)
        v1 = await store.publish(moved(config, spare), "expand to s2")
        assert v1 == 1
        version, current = await store.current()
        assert version == 1 and [s.name for s in current.shards] == ["s0", "s1", "s2"]
        assert current.pool_size == config.pool_size  # non-layout settings come from the process
        with pytest.raises(ShardMapConflict):
            await store.publish(config, "stale change", expected_version=0)
        with pytest.raises(ValueError, match="bucket_count"):
            await store.publish(DatabaseConfig(bucket_count=64, directory_dsn=config.directory_dsn,
                                               shards=[config.shards[0].model_copy(update={"buckets": "0-63"})]),
                                "other bucket count")
        # A hand-built map that leaves buckets unassigned is refused by the validator.
        broken = DatabaseConfig.model_construct(**{**config.model_dump(), "shards": [config.shards[0]]})
        with pytest.raises(ValueError, match="belongs to no shard"):
            await store.publish(broken, "gap")
        assert await store.current_version() == 1
        assert [h[:2] for h in await store.history()] == [(1, "expand to s2")]
    finally:
        await db.dispose()


async def test_running_process_picks_up_a_new_version(layout, redis):
    config, spare = layout
    prefix = f"wwt:{uuid.uuid4().hex[:8]}:"
    server_db, admin_db = Database(config), Database(config)
    # A long poll: the Redis nudge, not the poll, has to deliver the change.
    watcher = ShardMapWatcher(ShardMapStore(server_db), server_db, redis, key_prefix=prefix, poll_seconds=30)
    await watcher.start()
    try:
        tid = tenant_in(768, 1023)
        assert server_db.shard_for(tid) == "s1"
        await insert_tenant(server_db, tid)  # on s1
        store = ShardMapStore(admin_db, redis=redis, key_prefix=prefix)
        await asyncio.sleep(0.3)  # the subscriber is connected
        version = await store.publish(moved(config, spare), "expand")
        assert await wait_for_acks(redis, prefix, version, timeout=10) == {}
        assert server_db.shard_for(tid) == "s2" and server_db.map_version == version
        # New work goes to the new shard's database.
        async with server_db.unit_of_work("user", tid, read_only=True) as uow:
            assert await uow.session.get(um.Tenant, tid) is None
        await insert_tenant(server_db, tid)
        async with admin_db.shard_session("user", "s1", read_only=True) as s:
            assert await s.scalar(sa.select(sa.func.count()).where(um.Tenant.id == tid)) == 1
        assert (await live_acks(redis, prefix, stale_after_seconds=10))[watcher.instance_id] == version

        # A process starting now uses the stored version, not its settings.
        late_db = Database(config)
        late = ShardMapWatcher(ShardMapStore(late_db), late_db, None, poll_seconds=30)
        await late.start()
        assert late_db.shard_for(tid) == "s2"
        await late.close()
        await late_db.dispose()
    finally:
        await watcher.close()
        await server_db.dispose()
        await admin_db.dispose()
    assert watcher.instance_id not in await live_acks(redis, prefix, stale_after_seconds=10)


async def test_frozen_buckets_hold_writes_until_the_switch(layout, redis):
    config, spare = layout
    prefix = f"wwt:{uuid.uuid4().hex[:8]}:"
    db, admin_db = Database(config), Database(config)
    watcher = ShardMapWatcher(ShardMapStore(db), db, redis, key_prefix=prefix, poll_seconds=0.2,
                              drain_timeout_seconds=5)
    await watcher.start()
    store = ShardMapStore(admin_db, redis=redis, key_prefix=prefix)
    try:
        frozen_tid, other_tid = tenant_in(768, 1023), tenant_in(512, 767)
        # A write on a bucket about to freeze is running when the freeze arrives.
        release = asyncio.Event()

        async def slow_write() -> None:
            async with db.unit_of_work("user", frozen_tid) as uow:
                uow.session.add(um.Tenant(id=frozen_tid, tenant_code=f"c{frozen_tid[:8]}", tenant_name="t",
                                          status="active", created_at=utcnow(), updated_at=utcnow()))
                await release.wait()

        running = asyncio.create_task(slow_write())
        await asyncio.sleep(0.1)
        frozen_version = await store.publish(moved(config, spare).model_copy(
            update={"shards": config.shards, "frozen_buckets": "768-1023"}), "freeze")
        # Not acknowledged while that write is open: the move must not copy yet.
        assert await wait_for_acks(redis, prefix, frozen_version, timeout=1.0) != {}
        release.set()
        await running
        assert await wait_for_acks(redis, prefix, frozen_version, timeout=5) == {}
        assert db.shard_for(frozen_tid) == "s1"

        # Writes to other buckets go on, batched ones too (their tenants are known); writes to
        # frozen buckets and sweeps of s1 (tenants unknown) wait.
        await insert_tenant(db, other_tid)
        async with db.shard_unit_of_work("user", "s1", tenants=[other_tid]):
            pass
        second = tenant_in(768, 1023)
        waiting = asyncio.create_task(insert_tenant(db, second))

        async def write(**kwargs) -> bool:
            async with db.shard_unit_of_work("user", "s1", **kwargs):
                return True

        sweep = asyncio.create_task(write())
        batch = asyncio.create_task(write(tenants=[other_tid, second]))  # routed to s1 before the switch
        await asyncio.sleep(0.5)
        assert not waiting.done() and not sweep.done() and not batch.done()
        await store.publish(moved(config, spare), "switch")
        await asyncio.wait_for(waiting, 5)
        # The held tenant write went to the new owner; the sweep goes on (what it finds on s1 is
        # s1's); the batch that carries a tenant now on s2 is refused, retryably.
        async with db.shard_session("user", "s2", read_only=True) as s:
            assert await s.scalar(sa.select(sa.func.count()).where(um.Tenant.id == second)) == 1
        assert await asyncio.wait_for(sweep, 5)
        with pytest.raises(Unavailable, match="moved off shard s1"):
            await asyncio.wait_for(batch, 5)
    finally:
        await watcher.close()
        await db.dispose()
        await admin_db.dispose()


async def test_a_freeze_that_never_switches_ends_in_unavailable(layout):
    config, _ = layout
    db = Database(config)
    db.freeze_wait_seconds = 0.3
    try:
        db.replace_shard_map(config.model_copy(update={"frozen_buckets": "0-1023"}), 5)
        with pytest.raises(Unavailable, match="being moved"):
            await insert_tenant(db, tenant_in(0, 1023))
        async with db.unit_of_work("user", tenant_in(0, 1023), read_only=True):
            pass  # reads are never held
    finally:
        await db.dispose()
