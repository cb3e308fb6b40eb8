"""migrate_all over two MariaDB servers, two databases per server and service database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from harness import make_database_config, physical_database_names
from wework.persistence.database import create_engine_for
from wework.persistence.migrate import head_revision, migrate_all, schema_status
from wework.persistence.models import METADATA
from wework.persistence.partitions import ensure_future_partitions, list_partitions, planned_partitions

pytestmark = pytest.mark.mariadb

PARTITIONED = {"account": {"account_status_history": "year"}, "message": {"messages": "year"},
               "callback": {"callback_events": "month"}}


def _server_for(config, servers, db, shard):
    dsn = config.directory_dsn if db == "directory" else next(
        s for s in config.shards if s.name == shard).dsn_for(db)
    port = sa.engine.make_url(dsn).port
    return next(s for s in servers if s.port == port)


async def test_migrate_all_over_two_servers(mariadb_server, second_mariadb, unique_db_prefix):
    servers = [mariadb_server, second_mariadb]
    config = make_database_config(unique_db_prefix, servers, 2)
    events: list[tuple[str, str, str]] = []

    results = await migrate_all(config, lambda db, shard, msg: events.append((db, shard, msg)))

    assert len(results) == 1 + 4 * 4
    assert results[0].db == "directory"
    assert all(r.changed and r.before is None and r.after == head_revision(r.db) for r in results)
    assert {(db, shard) for db, shard, _ in events} == {(r.db, r.shard) for r in results}
    assert any("creating database" in msg for _, _, msg in events)

    names = physical_database_names(config)
    for (db, shard), name in names.items():
        server = _server_for(config, servers, db, shard)
        assert server.list_databases(name) == [name], f"{name} missing on {server.port}"
        conn = server.sync_connect(name)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (name,))
                tables = {r[0] for r in cur.fetchall()}
                assert tables == set(METADATA[db].tables) | {"alembic_version"}, name
                cur.execute("SELECT version_num FROM alembic_version")
                assert [r[0] for r in cur.fetchall()] == [head_revision(db)]
                cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
                            "WHERE SCHEMA_NAME = %s", (name,))
                assert cur.fetchone()[0] == "utf8mb4"
                for table, interval in PARTITIONED.get(db, {}).items():
                    cur.execute("SELECT PARTITION_NAME, PARTITION_METHOD, PARTITION_EXPRESSION "
                                "FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                                "ORDER BY PARTITION_ORDINAL_POSITION", (name, table))
                    rows = cur.fetchall()
                    expected = [p.name for p in planned_partitions(interval)] + ["p_future"]
                    assert [r[0] for r in rows] == expected, (name, table)
                    assert {r[1] for r in rows} == {"RANGE COLUMNS"}
                # No other table is partitioned.
                cur.execute("SELECT DISTINCT TABLE_NAME FROM information_schema.PARTITIONS "
                            "WHERE TABLE_SCHEMA = %s AND PARTITION_NAME IS NOT NULL", (name,))
                assert {r[0] for r in cur.fetchall()} == set(PARTITIONED.get(db, {}))
        finally:
            conn.close()

    # Half of the shards really are on the second server.
    assert {_server_for(config, servers, "user", s.name).port for s in config.shards} == {
        mariadb_server.port, second_mariadb.port}

    again = await migrate_all(config)
    assert [r.changed for r in again] == [False] * len(again)
    assert all(r.after == head_revision(r.db) for r in again)
    status = await schema_status(config)
    assert all(s.after == head_revision(s.db) for s in status)


async def test_concurrent_runs_queue_on_the_named_lock(mariadb_server, unique_db_prefix):
    config = make_database_config(unique_db_prefix, [mariadb_server], 1)
    first, second = await asyncio.gather(migrate_all(config), migrate_all(config))
    # Each database was migrated exactly once: by one run or the other.
    for a, b in zip(first, second, strict=True):
        assert a.after == b.after == head_revision(a.db)
        assert a.changed != b.changed


async def test_future_partitions_are_split_out_of_p_future(mariadb_server, unique_db_prefix):
    config = make_database_config(unique_db_prefix, [mariadb_server], 1)
    await migrate_all(config)
    engine = create_engine_for(config.shards[0].dsn_for("callback"), config, pooled=False)
    try:
        async with engine.begin() as conn:
            before = await conn.run_sync(list_partitions, "callback_events")
            # Nothing is missing right after the migration...
            assert await conn.run_sync(ensure_future_partitions, "callback_events", "month") == []
            # ...but a year later the maintenance job adds the months up to a year ahead of then.
            later = datetime.now(UTC).replace(day=1, year=datetime.now(UTC).year + 1)
            added = await conn.run_sync(lambda c: ensure_future_partitions(c, "callback_events", "month", later))
            assert len(added) == 12
            after = await conn.run_sync(list_partitions, "callback_events")
            assert after == before[:-1] + added + ["p_future"]
            assert await conn.run_sync(lambda c: ensure_future_partitions(c, "callback_events", "month", later)) == []
    finally:
        await engine.dispose()
