"""Read replicas on a real MariaDB primary/replica pair: routing, read-your-writes, lag, semi-sync.

The pair (harness/replication.py) replicates with GTIDs and semi-sync; the shard map lists the
replica. Which server answered a read is told by `@@server_id` (1 primary, 2 replica), read in
the same transaction as the data.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import harness
import pytest
import sqlalchemy as sa
from harness import make_database_config
from harness.replication import execute, global_status, slave_status
from sqlalchemy.engine import make_url
from wework.persistence.config import ShardSpec
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import Tenant
from wework.persistence.replicas import ReplicaMonitor, WriteTracker, gtid_seq
from wework.persistence.sharding import DIRECTORY
from wework.server.observability import metrics

pytestmark = pytest.mark.mariadb

# Generous bounds: a loaded CI machine must not push a healthy replica out of reads.
MAX_LAG = 2.0
WAIT = 1.0


def _with_replicas(config, replica_dsns_by_shard):
    shards = [ShardSpec(**{**s.model_dump(), "replicas": replica_dsns_by_shard.get(s.name, [])})
              for s in config.shards]
    return config.model_copy(update={"shards": shards, "replica_max_lag_seconds": MAX_LAG,
                                     "replica_heartbeat_interval_seconds": 0.1, "replica_wait_seconds": WAIT})


@pytest.fixture(scope="module")
async def replicated_config(replicated_mariadb):
    """One migrated shard (and directory) on the pair for the whole module; tests use new tenants."""
    pair = replicated_mariadb
    prefix = harness.new_db_prefix("r")
    base = make_database_config(prefix, [pair.primary], 1)
    config = _with_replicas(base, {"s0": [pair.replica.url(f"{prefix}_{{db}}_0")]})
    await migrate_all(config)
    _caught_up(pair)
    return config  # the pair and its datadirs go when the module ends


@pytest.fixture
async def replicated(replicated_mariadb, replicated_config):
    pair, config = replicated_mariadb, replicated_config
    db = Database(config)
    await db.start()
    routed: list[tuple[str, str, str]] = []
    db.replicas.on_read = lambda *r: routed.append(r)
    monitor = ReplicaMonitor(db, on_lag=lambda shard, replica, lag: metrics.observe_replica_lag(
        db.databases, shard, replica, lag))
    await monitor.start()
    await _until(lambda: db.replicas.usable("s0"), "the replica never became usable")
    yield db, pair, routed
    await monitor.close()
    await db.dispose()
    _sql_thread(pair.replica, True)  # whatever a failed test left


async def _until(predicate, message: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)


def _caught_up(pair) -> None:
    """Waits until the replica applied everything the primary has (the migrations' DDL)."""
    position = execute(pair.primary, "SELECT @@gtid_binlog_pos")[0][0]
    assert execute(pair.replica, "SELECT MASTER_GTID_WAIT(%s, 30)", (position,)) == [(0,)]


def _sql_thread(server, running: bool) -> None:
    execute(server, "START SLAVE SQL_THREAD" if running else "STOP SLAVE SQL_THREAD")


async def _add_tenant(db: Database, tenant_id: str) -> None:
    async with db.unit_of_work("user", tenant_id) as uow:
        uow.session.add(Tenant(id=tenant_id, tenant_code=f"c-{tenant_id[-12:]}", tenant_name="Acme"))


async def _read_tenant(db: Database, tenant_id: str) -> tuple[int, str | None]:
    """(server_id that answered, the tenant's name or None), in one read-only transaction."""
    async with db.unit_of_work("user", tenant_id, read_only=True) as uow:
        server_id = (await uow.session.execute(sa.text("SELECT @@server_id"))).scalar_one()
        name = (await uow.session.execute(sa.select(Tenant.tenant_name).where(Tenant.id == tenant_id))).scalar()
    return server_id, name


async def _shard_wide_read(db: Database) -> int:
    async def server_id(uow):
        return (await uow.session.execute(sa.text("SELECT @@server_id"))).scalar_one()

    return (await db.for_each_shard("user", server_id))[0]


def _lag_metric(shard: str, replica: str) -> float | None:
    return metrics.REGISTRY.get_sample_value("wework_db_replica_lag_seconds",
                                             {"db": "user", "shard": shard, "replica": replica})


async def test_reads_go_to_the_replica_and_see_the_callers_own_writes(replicated):
    db, _pair, routed = replicated
    for _ in range(20):  # every read right after its own write
        tenant_id = new_id()
        await _add_tenant(db, tenant_id)
        assert await _read_tenant(db, tenant_id) == (2, "Acme")
    assert await _shard_wide_read(db) == 2
    # Writes and read_only=False calls stay on the primary.
    async with db.unit_of_work("user", new_id()) as uow:
        assert (await uow.session.execute(sa.text("SELECT @@server_id"))).scalar_one() == 1
    assert {r[1] for r in routed} == {"replica"}


async def test_own_write_the_replica_has_not_applied_is_read_from_the_primary(replicated):
    db, pair, routed = replicated
    other = new_id()
    await _add_tenant(db, other)
    await _read_tenant(db, other)  # applied on the replica
    _sql_thread(pair.replica, False)
    try:
        tenant_id = new_id()
        await _add_tenant(db, tenant_id)  # acknowledged by the replica, not applied
        routed.clear()
        assert await _read_tenant(db, tenant_id) == (1, "Acme")
        assert routed == [("s0", "primary", "wait_timeout")]
    finally:
        _sql_thread(pair.replica, True)
    await _until(lambda: db.replicas.usable("s0"), "the replica did not come back")
    assert await _read_tenant(db, tenant_id) == (2, "Acme")


async def test_a_lagging_replica_is_taken_out_of_reads_until_it_catches_up(replicated):
    db, pair, routed = replicated
    label = db.replicas.states["s0"][0].label
    reader = new_id()  # a tenant that writes nothing: only the lag decides where it reads
    assert (await _read_tenant(db, reader))[0] == 2
    assert _lag_metric("s0", label) <= MAX_LAG

    _sql_thread(pair.replica, False)
    try:
        for _ in range(5):  # writes keep being acknowledged (the IO thread still receives)
            await _add_tenant(db, new_id())
        await _until(lambda: not db.replicas.usable("s0"), "the stopped replica stayed in reads")
        assert _lag_metric("s0", label) > MAX_LAG
        routed.clear()
        assert (await _read_tenant(db, reader))[0] == 1
        assert await _shard_wide_read(db) == 1
        assert {r[1:] for r in routed} == {("primary", "no_usable_replica")}
    finally:
        _sql_thread(pair.replica, True)
    await _until(lambda: db.replicas.usable("s0"), "the replica did not return after catching up")
    assert _lag_metric("s0", label) <= MAX_LAG
    assert (await _read_tenant(db, reader))[0] == 2


async def test_an_unreachable_replica_is_skipped(replicated_mariadb, replicated_config):
    from harness import free_port

    live = replicated_config.shards[0].replicas[0]
    dead = f"mysql+aiomysql://root@127.0.0.1:{free_port()}/x_{{db}}"
    config = _with_replicas(replicated_config, {"s0": [dead, live]}).model_copy(
        update={"connect_timeout_seconds": 1.0})
    db = Database(config)
    monitor = ReplicaMonitor(db, on_lag=lambda shard, replica, lag: metrics.observe_replica_lag(
        ["user"], shard, replica, lag))
    await monitor.start()
    try:
        await _until(lambda: len(db.replicas.usable("s0")) == 1, "the live replica never became usable")
        dead_state, live_state = db.replicas.states["s0"]
        assert dead_state.error is not None and live_state.error is None
        assert _lag_metric("s0", dead_state.label) == float("inf")
        for _ in range(10):  # the choice among usable replicas is random: never the dead one
            assert (await _read_tenant(db, new_id()))[0] == 2
    finally:
        await monitor.close()
        await db.dispose()


async def test_an_acknowledged_write_exists_on_the_replica(replicated):
    """Semi-sync (AFTER_SYNC): when the commit returns, the replica has received the transaction,
    even with its SQL thread stopped; applying its relay log later shows the row."""
    db, pair, _routed = replicated
    yes_before = int(global_status(pair.primary, "Rpl_semi_sync_master_yes_tx"))
    _sql_thread(pair.replica, False)
    try:
        tenant_id = new_id()
        await _add_tenant(db, tenant_id)
        gtid = execute(pair.primary, "SELECT @@gtid_binlog_pos")[0][0]
        assert global_status(pair.primary, "Rpl_semi_sync_master_status") == "ON"
        assert int(global_status(pair.primary, "Rpl_semi_sync_master_yes_tx")) > yes_before
        received = slave_status(pair.replica)["Gtid_IO_Pos"]
        assert gtid_seq(received)[1] >= gtid_seq(gtid)[1]
        table = f"`{db.config.shards[0].dsn_for('user').rsplit('/', 1)[1]}`.tenants"
        assert execute(pair.replica, f"SELECT COUNT(*) FROM {table} WHERE id = %s", (tenant_id,)) == [(0,)]
    finally:
        _sql_thread(pair.replica, True)
    assert execute(pair.replica, "SELECT MASTER_GTID_WAIT(%s, 10)", (gtid,)) == [(0,)]
    assert execute(pair.replica, f"SELECT tenant_name FROM {table} WHERE id = %s", (tenant_id,)) == [("Acme",)]


async def test_without_a_monitor_replicas_are_not_used(replicated_config):
    config = replicated_config
    db = Database(config)
    try:
        assert (await _read_tenant(db, new_id()))[0] == 1  # no lag figures: the primary
    finally:
        await db.dispose()


async def test_write_tracker_keeps_the_later_gtid():
    tracker = WriteTracker(ttl=5)
    await tracker.record("s0", "t", "0-1-10")
    await tracker.record("s0", "t", "0-1-7")  # an earlier commit recorded late
    assert await tracker.get("s0", "t") == "0-1-10"
    assert await tracker.get("s0", "other") is None


async def test_failover_refuses_while_the_primary_answers(replicated):
    from wework.persistence.failover import FailoverError, failover
    from wework.persistence.shardmap import ShardMapStore

    db, pair, _routed = replicated
    store = ShardMapStore(db)
    with pytest.raises(FailoverError, match="still answers"):
        await failover(store, "s0", connect_timeout=2)
    with pytest.raises(FailoverError, match="no shard named"):
        await failover(store, "nope")
    with pytest.raises(FailoverError, match="no index 3"):
        await failover(store, "s0", "3")
    # Nothing changed: the replica still follows the primary, no map was published.
    status = slave_status(pair.replica)
    assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
    assert await store.current() is None


@pytest.mark.redis
async def test_a_write_through_one_process_is_waited_for_by_a_read_through_another(
        replicated, replicated_config, redis_server):
    """Read-your-writes across processes: the writer's GTID travels through Redis."""
    from wework.persistence.config import RedisConfig
    from wework.persistence.redis.client import create_redis
    from wework.persistence.replicas import RedisWriteTracker

    writer_db, pair, _routed = replicated
    prefix = f"{harness.new_db_prefix('q')}:"
    redis = create_redis(RedisConfig(url=redis_server.url, key_prefix=prefix))
    writer_db.replicas.tracker = RedisWriteTracker(redis, prefix, ttl=10)
    reader_db = Database(replicated_config)  # another server process, as far as routing goes
    reader_db.replicas.tracker = RedisWriteTracker(redis, prefix, ttl=10)
    monitor = ReplicaMonitor(reader_db)
    await monitor.start()
    try:
        await _until(lambda: reader_db.replicas.usable("s0"), "the replica never became usable")
        _sql_thread(pair.replica, False)
        try:
            tenant_id = new_id()
            await _add_tenant(writer_db, tenant_id)
            assert await _read_tenant(reader_db, tenant_id) == (1, "Acme")  # not applied: the primary
        finally:
            _sql_thread(pair.replica, True)
        await _until(lambda: reader_db.replicas.usable("s0"), "the replica did not come back")
        assert await _read_tenant(reader_db, tenant_id) == (2, "Acme")

        # The key keeps the later GTID of the tenant whatever order writes record in.
        tracker = reader_db.replicas.tracker
        await tracker.record("s0", "t-order", "0-1-10")
        await RedisWriteTracker(redis, prefix, ttl=10).record("s0", "t-order", "0-2-7")
        assert await RedisWriteTracker(redis, prefix, ttl=10).get("s0", "t-order") == "0-1-10"

        # A shard-wide write (the dispatcher's, for many tenants) is waited for by every tenant.
        _sql_thread(pair.replica, False)
        try:
            async with writer_db.shard_unit_of_work("user", "s0") as uow:
                await uow.session.execute(sa.update(Tenant).where(Tenant.id == tenant_id).values(tenant_name="Moved"))
            assert await _read_tenant(reader_db, tenant_id) == (1, "Moved")
        finally:
            _sql_thread(pair.replica, True)
    finally:
        await monitor.close()
        await reader_db.dispose()
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


# ---- the directory, routed as one more database (Database.directory_unit_of_work(read_only=True))


def _with_directory_replicas(config, dsns):
    return config.model_copy(update={"directory_replicas": dsns})


def _directory_replica_dsn(pair, config) -> str:
    return pair.replica.url(make_url(config.directory_dsn).database)


@pytest.fixture
async def directory_replicated(replicated_mariadb, replicated_config):
    pair = replicated_mariadb
    config = _with_directory_replicas(replicated_config, [_directory_replica_dsn(pair, replicated_config)])
    db = Database(config)
    routed: list[tuple[str, str, str]] = []
    db.replicas.on_read = lambda *r: routed.append(r)
    monitor = ReplicaMonitor(db)
    await monitor.start()
    await _until(lambda: db.replicas.usable(DIRECTORY), "the directory replica never became usable")
    yield db, pair, routed
    await monitor.close()
    await db.dispose()
    _sql_thread(pair.replica, True)


async def _add_code(db: Database) -> str:
    code = f"c{new_id()[-20:]}"
    async with db.directory_unit_of_work() as uow:
        assert (await uow.session.execute(sa.text("SELECT @@server_id"))).scalar_one() == 1
        await uow.directory.reserve_tenant_code(code, new_id(), datetime.now(UTC))
    return code


async def _look_up_code(db: Database, code: str) -> tuple[int, bool]:
    """(server_id that answered, whether the code was found), in one directory lookup."""
    async with db.directory_unit_of_work(read_only=True) as uow:
        server_id = (await uow.session.execute(sa.text("SELECT @@server_id"))).scalar_one()
        holder = await uow.directory.tenant_id_for_code(code)
    return server_id, holder is not None


async def test_directory_lookups_go_to_the_replica_and_see_the_callers_own_writes(directory_replicated):
    db, _pair, routed = directory_replicated
    for _ in range(10):  # every lookup right after its own write
        code = await _add_code(db)
        assert await _look_up_code(db, code) == (2, True)
    assert {r for r in routed} == {(DIRECTORY, "replica", "usable")}


async def test_a_directory_write_the_replica_has_not_applied_is_read_from_the_primary(directory_replicated):
    db, pair, routed = directory_replicated
    _sql_thread(pair.replica, False)
    try:
        code = await _add_code(db)  # acknowledged by the replica, not applied
        routed.clear()
        assert await _look_up_code(db, code) == (1, True)
        assert routed == [(DIRECTORY, "primary", "wait_timeout")]
    finally:
        _sql_thread(pair.replica, True)
    await _until(lambda: db.replicas.usable(DIRECTORY), "the directory replica did not come back")
    assert await _look_up_code(db, code) == (2, True)


async def test_a_lagging_directory_replica_is_taken_out_of_lookups_until_it_catches_up(directory_replicated):
    db, pair, routed = directory_replicated
    _sql_thread(pair.replica, False)
    try:
        # No directory write: only the heartbeats fall behind, so only the lag decides.
        await _until(lambda: not db.replicas.usable(DIRECTORY), "the stopped directory replica stayed in reads")
        routed.clear()
        assert await _look_up_code(db, "no-such-code") == (1, False)
        assert routed == [(DIRECTORY, "primary", "no_usable_replica")]
        assert db.replicas.usable("s0") == []  # the same server's shard replica lags alike
    finally:
        _sql_thread(pair.replica, True)
    await _until(lambda: db.replicas.usable(DIRECTORY), "the directory replica did not return after catching up")
    assert await _look_up_code(db, "no-such-code") == (2, False)


async def test_an_unreachable_directory_replica_leaves_lookups_on_the_primary(replicated_config):
    from harness import free_port

    dead = f"mysql+aiomysql://root@127.0.0.1:{free_port()}/x_directory"
    config = _with_directory_replicas(replicated_config, [dead]).model_copy(update={"connect_timeout_seconds": 1.0})
    db = Database(config)
    routed: list[tuple[str, str, str]] = []
    db.replicas.on_read = lambda *r: routed.append(r)
    monitor = ReplicaMonitor(db)
    await monitor.start()
    try:
        await _until(lambda: db.replicas.states[DIRECTORY][0].error is not None, "the dead replica was never measured")
        code = await _add_code(db)  # the directory primary is found among the candidates
        assert await _look_up_code(db, code) == (1, True)
        assert routed == [(DIRECTORY, "primary", "no_usable_replica")]
    finally:
        await monitor.close()
        await db.dispose()


async def test_forced_switchover_fences_the_old_primary_and_publishes_the_replica(
        replicated_mariadb, replicated_config):
    """Last in this module: it turns the pair around (the replica becomes the primary)."""
    from wework.persistence.failover import failover
    from wework.persistence.shardmap import ShardMapStore

    pair, config = replicated_mariadb, replicated_config
    db = Database(config)
    tenant_id = new_id()
    try:
        await _add_tenant(db, tenant_id)
        store = ShardMapStore(db)
        lines: list[str] = []
        result = await failover(store, "s0", force=True, progress=lines.append)
        assert result.version == 1 and result.new_primary == f"127.0.0.1:{pair.replica.port}"
        version, published = await store.current()
        assert version == 1
        assert published.shards[0].dsn == config.shards[0].replicas[0] and published.shards[0].replicas == []
    finally:
        await db.dispose()
    assert execute(pair.primary, "SELECT @@read_only") == [(1,)]  # fenced
    assert execute(pair.replica, "SELECT @@read_only, @@rpl_semi_sync_master_enabled") == [(0, 0)]
    assert slave_status(pair.replica) == {}  # no longer replicating
    assert any("read-only" in line for line in lines)

    moved = Database(published)
    try:
        assert await _read_tenant(moved, tenant_id) == (2, "Acme")  # the write made before is there
        other = new_id()
        await _add_tenant(moved, other)  # and the new primary takes writes
        async with moved.unit_of_work("user", other) as uow:
            assert (await uow.session.execute(sa.text("SELECT @@server_id"))).scalar_one() == 2
    finally:
        await moved.dispose()


async def test_a_promoted_directory_replica_is_not_read_as_a_replica(replicated_mariadb, replicated_config):
    """After the switchover above the listed replica is the writable server: it is the primary
    (found by the directory's primary discovery) and no longer a replica to wait on."""
    pair = replicated_mariadb
    assert execute(pair.replica, "SELECT @@read_only") == [(0,)]
    config = _with_directory_replicas(replicated_config, [_directory_replica_dsn(pair, replicated_config)])
    db = Database(config)
    routed: list[tuple[str, str, str]] = []
    db.replicas.on_read = lambda *r: routed.append(r)
    monitor = ReplicaMonitor(db)
    await monitor.start()
    try:
        await _until(lambda: db.replicas.states[DIRECTORY][0].writable, "the writable replica was never measured")
        assert db.replicas.usable(DIRECTORY) == []
        async with db.directory_unit_of_work(read_only=True) as uow:
            assert (await uow.session.execute(sa.text("SELECT @@server_id"))).scalar_one() == 2
        assert routed == [(DIRECTORY, "primary", "no_usable_replica")]
    finally:
        await monitor.close()
        await db.dispose()
