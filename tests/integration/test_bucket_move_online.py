"""BucketMover in process: rows of every kind move, resumes are safe at every phase, abort unfreezes.

The load-bearing test (a running server under write load, a crash, a second run) is
tests/e2e/test_bucket_move.py; these cover the phases' edge cases directly.
"""

from __future__ import annotations

import uuid

import harness
import pytest
import sqlalchemy as sa
from harness import make_database_config
from wework.persistence.bucket_move import BucketMover, MoveError, MoveOptions
from wework.persistence.config import RedisConfig
from wework.persistence.database import Database
from wework.persistence.migrate import migrate_all
from wework.persistence.models import message as mm
from wework.persistence.models import user as um
from wework.persistence.models.base import utcnow
from wework.persistence.models.directory import BucketMove, Lease, ShardMapVersion
from wework.persistence.redis.client import create_redis
from wework.persistence.sharding import bucket_of
from wework.persistence.shardmap import ShardMapStore

pytestmark = [pytest.mark.mariadb, pytest.mark.redis]


@pytest.fixture(scope="module")
async def migrated(mariadb_server):
    """Two migrated shards, once per module (migrating takes seconds)."""
    prefix = harness.new_db_prefix("b")
    config = make_database_config(prefix, [mariadb_server], 2)
    await migrate_all(config)
    yield config, prefix
    mariadb_server.drop_databases(prefix + "_")


@pytest.fixture
async def setup(migrated, mariadb_server, redis_server):
    """`migrated` with no shard map version, move or lease, and no target databases left."""
    config, prefix = migrated
    db = Database(config)
    async with db.directory_unit_of_work() as uow:
        for model in (ShardMapVersion, BucketMove, Lease):
            await uow.session.execute(sa.delete(model))
    await db.dispose()
    for db_name in ("user", "account", "message", "callback"):
        mariadb_server.drop_databases(f"{prefix}_{db_name}_9")
    redis = create_redis(RedisConfig(url=redis_server.url))
    yield config, redis, prefix, mariadb_server
    await redis.aclose()


def tenant_in(lo: int, hi: int) -> str:
    while True:
        tid = str(uuid.uuid4())
        if lo <= bucket_of(tid, 1024) <= hi:
            return tid


async def seed(db: Database, tid: str, n: int = 3) -> None:
    now = utcnow()
    async with db.unit_of_work("user", tid) as uow:
        uow.session.add(um.Tenant(id=tid, tenant_code=f"c{tid[:8]}", tenant_name="t", status="active",
                                  created_at=now, updated_at=now))
    async with db.unit_of_work("message", tid) as uow:
        for i in range(n):
            # message_statistics: an AUTO_INCREMENT id, copied as it is.
            uow.session.add(mm.MessageStatistic(tenant_id=tid, account_id=f"a{i}", stat_date=now.date(),
                                                stat_hour=i, created_at=now, updated_at=now))


async def test_move_then_a_resume_after_the_switch_deletes_nothing(setup):
    config, redis, prefix, server = setup
    db = Database(config)
    moving, staying = tenant_in(768, 1023), tenant_in(512, 767)
    for tid in (moving, staying):
        await seed(db, tid)
    lines: list[str] = []
    mover = BucketMover(config, redis, f"{prefix}:", options=MoveOptions(batch_size=2), progress=lines.append)
    try:
        result = await mover.move("768-1023", server.url(f"{prefix}_{{db}}_9"), "s9")
    finally:
        await mover.close()
    assert all(c.ok for c in result.checks) and result.version == 2
    stats = next(c for c in result.checks if c.table == "message_statistics")
    assert stats.source_rows == stats.target_rows == 3

    version, current = await ShardMapStore(db).effective()
    db.replace_shard_map(current, version)
    assert db.shard_for(moving) == "s9" and db.shard_for(staying) == "s1"
    async with db.shard_session("message", "s9", read_only=True) as s:
        ids = (await s.execute(sa.select(mm.MessageStatistic.id).where(mm.MessageStatistic.tenant_id == moving)
                               )).scalars().all()
    async with db.shard_session("message", "s1", read_only=True) as s:
        left = await s.scalar(sa.select(sa.func.count()).select_from(mm.MessageStatistic)
                              .where(mm.MessageStatistic.tenant_id == moving))
        kept = await s.scalar(sa.select(sa.func.count()).select_from(mm.MessageStatistic)
                              .where(mm.MessageStatistic.tenant_id == staying))
    assert len(ids) == 3 and left == 0 and kept == 3

    # A crash after publishing the switch but before recording "done": the resume must not
    # take the target (now the range's owner) for a source and delete from it.
    async with db.directory_unit_of_work() as uow:
        await uow.session.execute(sa.update(BucketMove).values(phase="deleting"))
    mover = BucketMover(config, redis, f"{prefix}:", progress=lines.append)
    try:
        again = await mover.resume()
    finally:
        await mover.close()
    assert again.version == 2 and again.rows_deleted == result.rows_deleted
    async with db.shard_session("message", "s9", read_only=True) as s:
        assert await s.scalar(sa.select(sa.func.count()).select_from(mm.MessageStatistic)
                              .where(mm.MessageStatistic.tenant_id == moving)) == 3
    await db.dispose()


async def test_abort_unfreezes_and_a_held_lease_refuses(setup):
    config, redis, prefix, server = setup
    db = Database(config)
    await seed(db, tenant_in(768, 1023), 1)
    store = ShardMapStore(db)
    # A move that died frozen: the map says frozen, the move row says so too.
    frozen = await store.publish(config.model_copy(update={"frozen_buckets": "768-1023"}), "freeze")
    async with db.directory_unit_of_work() as uow:
        uow.session.add(BucketMove(id=str(uuid.uuid4()), buckets="768-1023", source_shards="s1", target_shard="s9",
                                   target_dsn=server.url(f"{prefix}_{{db}}_9"), phase="frozen",
                                   checkpoint=f'{{"frozen_version": {frozen}}}'))
        uow.session.add(Lease(name="bucket-move", holder="someone-alive", expires_at=utcnow().replace(year=2100)))
    mover = BucketMover(config, redis, f"{prefix}:")
    try:
        with pytest.raises(MoveError, match="another bucket move is running"):
            await mover.abort()
        async with db.directory_unit_of_work() as uow:
            await uow.session.execute(sa.delete(Lease))
        await mover.abort()
    finally:
        await mover.close()
    version, current = await store.effective()
    assert version == frozen + 1 and current.frozen_buckets == ""
    async with db.directory_session(read_only=True) as s:
        assert await s.scalar(sa.select(BucketMove.phase)) == "aborted"
        assert await s.scalar(sa.select(sa.func.count()).select_from(ShardMapVersion)) == 2
    await db.dispose()


async def test_a_target_already_in_the_map_is_refused(setup):
    config, redis, prefix, server = setup
    mover = BucketMover(config, redis, f"{prefix}:")
    try:
        with pytest.raises(MoveError, match="database of the current shard map"):
            await mover.move("768-1023", config.shards[0].dsn, "s9")
        with pytest.raises(MoveError, match="without buckets"):
            await mover.move("512-1023", server.url(f"{prefix}_{{db}}_9"), "s9")
    finally:
        await mover.close()
