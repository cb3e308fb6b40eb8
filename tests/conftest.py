"""Fixtures shared by every test of the project.

Servers are session-scoped and real (see tests/harness/servers.py for how they are found or
started). Databases are never shared by name between tests: each test takes `unique_db_prefix`,
and everything created under that prefix is dropped when the test ends, on every server used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Makes `import harness` work from any test directory, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import servers as _servers

# Every MariaDB server handed out this session: the targets of prefix cleanup.
_MARIADB_SERVERS: list[harness.MariaDBServer] = []


def _exit_unavailable(exc: Exception) -> None:
    pytest.exit(f"integration test servers unavailable: {exc}", returncode=1)


def _drop_issued(server: harness.MariaDBServer) -> None:
    import pymysql

    for prefix in harness.ISSUED_PREFIXES:
        try:
            server.drop_databases(prefix + "_")
        except (pymysql.MySQLError, OSError) as exc:  # a broken server has nothing left to clean
            print(f"cannot drop test databases {prefix}_* on port {server.port}: {exc}")


@pytest.fixture(scope="session")
def mariadb_server():
    """The default MariaDB (127.0.0.1:3306 if reachable, else a private one)."""
    try:
        server = harness.find_or_start_mariadb()
    except harness.ServerUnavailable as exc:
        _exit_unavailable(exc)
    _MARIADB_SERVERS.append(server)
    yield server
    _drop_issued(server)
    _MARIADB_SERVERS.remove(server)
    _servers.forget(server)


@pytest.fixture(scope="session")
def second_mariadb():
    """A separate mariadbd always started from the installed binary (multi-server sharding)."""
    try:
        server = harness.start_private_mariadb()
    except harness.ServerUnavailable as exc:
        _exit_unavailable(exc)
    _MARIADB_SERVERS.append(server)
    yield server
    _MARIADB_SERVERS.remove(server)
    _servers.forget(server)  # stops it and removes its datadir


@pytest.fixture(scope="session")
def redis_server():
    try:
        server = harness.find_or_start_redis()
    except harness.ServerUnavailable as exc:
        _exit_unavailable(exc)
    yield server
    _servers.forget(server)


@pytest.fixture(scope="session")
def redis_cluster():
    """A real three-node Redis Cluster (tests/harness/redis_cluster.py), stopped at the end."""
    from harness.redis_cluster import start_redis_cluster

    try:
        cluster = start_redis_cluster()
    except harness.ServerUnavailable as exc:
        pytest.fail(f"cannot start a Redis Cluster: {exc}", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def unique_db_prefix():
    """`wwt_<8 hex>`; every database named `<prefix>_...` is dropped after the test."""
    prefix = harness.new_db_prefix()
    yield prefix
    for server in _MARIADB_SERVERS:
        server.drop_databases(prefix + "_")


# ---- migrated databases shared by a whole session -------------------------------------------
# Migrating 17 databases takes seconds, so repository tests share one migrated shard map per
# session and isolate themselves with fresh tenant ids (ids.new_id()) instead of fresh schemas.


@pytest.fixture(scope="session")
async def mariadb_config(mariadb_server):
    """A migrated two-shard map on the default MariaDB, dropped at session end."""
    from wework.persistence.migrate import migrate_all

    prefix = harness.new_db_prefix("s")
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    await migrate_all(config)
    yield config
    mariadb_server.drop_databases(prefix + "_")


@pytest.fixture(scope="session")
async def mariadb_database(mariadb_config):
    """A started `Database` over `mariadb_config`."""
    from wework.persistence.database import Database

    db = Database(mariadb_config)
    await db.start()
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def sqlite_config(tmp_path_factory):
    """A migrated embedded-mode (SQLite) shard map in a temporary directory."""
    from wework.persistence.migrate import migrate_all

    config = harness.make_sqlite_config(tmp_path_factory.mktemp("sqlite-db"))
    await migrate_all(config)
    return config


@pytest.fixture(scope="session")
async def sqlite_database(sqlite_config):
    from wework.persistence.database import Database

    db = Database(sqlite_config)
    await db.start()
    yield db
    await db.dispose()


@pytest.fixture(scope="module")
def replicated_mariadb():
    """A private MariaDB primary and a semi-synchronous GTID replica of it (harness/replication.py).

    Module-scoped: tests stop and start the replica's threads; the pair is stopped (and its
    datadirs removed) when the module ends.
    """
    from harness.replication import start_replicated_pair

    try:
        pair = start_replicated_pair()
    except harness.ServerUnavailable as exc:
        _exit_unavailable(exc)
    _MARIADB_SERVERS.append(pair.primary)  # dropping a prefix there reaches the replica too
    yield pair
    if pair.primary in _MARIADB_SERVERS:
        _MARIADB_SERVERS.remove(pair.primary)
    pair.stop()
