"""Every database or Redis connection failure becomes UNAVAILABLE with RetryInfo, on every path.

Real servers started by the harness for this module alone and killed with SIGKILL (never the
shared ones): a private mariadbd holding the directory and a shard whose replica DSN names the
same server, a private redis-server, a private three-node Redis Cluster. Each failure is taken
through the runtime's mapping (runtime/errors.status_from_exception), which is what a caller
sees: the code must be UNAVAILABLE with a RetryInfo, never INTERNAL.
"""

from __future__ import annotations

import signal

import grpc
import harness
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from harness.redis_cluster import start_redis_cluster, start_restartable_redis
from wework.persistence.config import RedisConfig
from wework.persistence.database import Database
from wework.persistence.migrate import migrate_all
from wework.persistence.redis.client import create_redis
from wework.server.runtime.errors import status_from_exception

pytestmark = [pytest.mark.mariadb, pytest.mark.redis]


def caller_sees(exc: BaseException) -> tuple[grpc.StatusCode, bool, str]:
    status = status_from_exception(exc, "trace-1")
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    retry = any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
    return code, retry, status.message


async def failure_of(coro_fn) -> BaseException:
    try:
        await coro_fn()
    except Exception as exc:  # noqa: BLE001 - the failure is what is examined
        return exc
    raise AssertionError("the call succeeded against a killed server")


def assert_unavailable(exc: BaseException, path: str) -> None:
    code, retry, message = caller_sees(exc)
    assert code == grpc.StatusCode.UNAVAILABLE, f"{path}: {code} for {exc!r}"
    assert retry, f"{path}: no RetryInfo"
    assert "Error" not in message, f"{path}: an internal class name reached the caller: {message}"


@pytest.fixture(scope="module")
async def killed_mariadb_database():
    """A started Database over a private mariadbd, which is then killed."""
    mariadb = harness.start_private_mariadb()
    prefix = harness.new_db_prefix("ka")
    try:
        config = harness.make_database_config(prefix, [mariadb], 1, connect_timeout_seconds=2)
        replicated = config.model_copy(update={"shards": [
            shard.model_copy(update={"replicas": [shard.dsn]}) for shard in config.shards]})
        await migrate_all(config)
        plain, with_replica = Database(config), Database(replicated)
        await plain.start()
        await with_replica.start()
        async with plain.shard_unit_of_work("message", "s0", rendered_sql=True) as uow:  # the pool holds one
            await uow.session.exec_driver_sql("SELECT 1")
        mariadb.process.send_signal(signal.SIGKILL)
        mariadb.process.wait(10)
        yield plain, with_replica
        await plain.dispose()
        await with_replica.dispose()
    finally:
        harness.servers.forget(mariadb)


async def test_database_paths(killed_mariadb_database):
    db, replicated = killed_mariadb_database

    async def driver_transaction():  # the group commit's raw driver connection
        async with db.shard_unit_of_work("message", "s0", rendered_sql=True) as uow:
            await uow.session.exec_driver_sql("SELECT 1")

    async def orm_unit_of_work():
        async with db.unit_of_work("user", "tenant-1") as uow:
            await uow.session.execute(sa.text("SELECT 1"))

    async def replica_read():
        async with replicated.unit_of_work("user", "tenant-1", read_only=True) as uow:
            await uow.session.execute(sa.text("SELECT 1"))

    async def directory():
        async with db.directory_session() as session:
            await session.execute(sa.text("SELECT 1"))

    async def raw_checkout():  # no unit of work at all: only the runtime's mapping stands
        engine = db.engine("message", "s0")
        connection = await engine.raw_connection()
        connection.close()

    for path in (driver_transaction, orm_unit_of_work, replica_read, directory, raw_checkout):
        assert_unavailable(await failure_of(path), path.__name__)


async def test_redis_single_server_killed():
    server = start_restartable_redis()
    try:
        client = create_redis(RedisConfig(url=server.url, socket_timeout_seconds=0.5))
        await client.set("wwt:probe", b"1")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        assert_unavailable(await failure_of(lambda: client.incrby("wwt:probe", 1)), "redis")
        await client.aclose()
    finally:
        server.remove()


async def test_redis_cluster_node_killed():
    cluster = start_redis_cluster()
    try:
        client = create_redis(RedisConfig(url=cluster.url, cluster=True, socket_timeout_seconds=0.5))
        key = "wwt:probe"
        await client.set(key, b"1")
        victim = cluster.ports.index(cluster.node_for_key(key))
        cluster.processes[victim].send_signal(signal.SIGKILL)
        cluster.processes[victim].wait(10)
        assert_unavailable(await failure_of(lambda: client.incrby(key, 1)), "redis cluster")
        await client.aclose()
    finally:
        cluster.stop()
