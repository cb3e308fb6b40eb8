"""backup_all / restore_all: consistency under writes, verification, refusals, SQLite, locks."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import make_database_config, make_sqlite_config
from wework.persistence.backup import (
    BackupError,
    RestoreError,
    VerificationError,
    _open_mysql_snapshot,
    backup_all,
    load_manifest,
    restore_all,
    sha256_file,
    sqlite_table_digests,
)
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.maintenance import lock_name, maintain_all
from wework.persistence.migrate import migrate_all
from wework.persistence.models import Message, Tenant
from wework.persistence.sharding import physical_databases

pytestmark = pytest.mark.mariadb


def _db_name(config, db: str) -> str:
    return sa.engine.make_url(config.shards[0].dsn_for(db)).database


async def _add_messages(config, texts: list[str]) -> None:
    db = Database(config)
    await db.start()
    try:
        tenant = new_id()
        async with db.unit_of_work("message", tenant) as uow:
            uow.session.add_all([Message(tenant_id=tenant, account_id="a", conversation_id="c",
                                         message_type="text", content={"text": t}, error_message=t)
                                 for t in texts])
        async with db.unit_of_work("user", tenant) as uow:
            uow.session.add(Tenant(id=tenant, tenant_code=f"c{tenant[-12:]}", tenant_name="T"))
    finally:
        await db.dispose()


@pytest.fixture
async def one_shard(mariadb_server, unique_db_prefix):
    config = make_database_config(unique_db_prefix, [mariadb_server], 1)
    await migrate_all(config)
    return config


def _restore_target(mariadb_server, unique_db_prefix):
    """The same shard map (names, buckets) on other databases: where restores go in these tests."""
    return make_database_config(f"{unique_db_prefix}_r", [mariadb_server], 1)


async def test_each_database_is_one_snapshot_while_writers_write(mariadb_server, one_shard, unique_db_prefix,
                                                                 tmp_path):
    config = one_shard
    name = _db_name(config, "message")
    # Bulk that the dump reads between batch_send_tasks (first table) and messages (last).
    bulk = mariadb_server.sync_connect(name)
    with bulk.cursor() as cur:
        cur.executemany("INSERT INTO idempotency_keys (tenant_id, operation, request_id, resource_id, created_at) "
                        "VALUES (%s, 'op', %s, 'r', UTC_TIMESTAMP(6))",
                        [("t", f"req-{i}") for i in range(40000)])
    bulk.close()

    stop = threading.Event()
    written = [0]

    def writer() -> None:
        # Each transaction adds one row to the first and one to the last table of the dump.
        conn = mariadb_server.sync_connect(name, autocommit=False)
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    i = new_id()
                    cur.execute("INSERT INTO batch_send_tasks (id, tenant_id, creator_id, task_name, account_id, "
                                "message_content, target_type, target_config, created_at, updated_at) VALUES "
                                "(%s, 't', 'c', 'n', 'a', '{}', 'manual', '{}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
                                (i,))
                    cur.execute("INSERT INTO messages (id, created_at, tenant_id, account_id, conversation_id, "
                                "message_type, content, updated_at) VALUES "
                                "(%s, UTC_TIMESTAMP(6), 't', 'a', 'c', 'text', '{}', UTC_TIMESTAMP(6))", (i,))
                    conn.commit()
                    written[0] += 1
        finally:
            conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 20:
            await asyncio.sleep(0.01)
        result = await asyncio.to_thread(backup_all, config, tmp_path / "b")
        at_snapshot_end = written[0]
    finally:
        stop.set()
        thread.join()
    tables = result.manifest.entry("message", "s0").tables
    pairs = tables["messages"].rows
    assert tables["batch_send_tasks"].rows == pairs  # never one half of a transaction
    assert tables["idempotency_keys"].rows == 40000
    assert 20 <= pairs < at_snapshot_end  # the writer went on during the dump

    target = _restore_target(mariadb_server, unique_db_prefix)
    restored = await asyncio.to_thread(restore_all, target, result.path)
    assert sum(d.rows for d in restored.databases) == result.manifest.total_rows
    check = mariadb_server.sync_connect(_db_name(target, "message"))
    with check.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM messages m JOIN batch_send_tasks b ON b.id = m.id")
        assert cur.fetchone()[0] == pairs
    check.close()


async def test_restore_refuses_damage_and_verifies_what_it_restored(mariadb_server, one_shard, unique_db_prefix,
                                                                    tmp_path):
    config = one_shard
    await _add_messages(config, ["hello", "it's", "back\\slash", "多字节"])
    good = (await asyncio.to_thread(backup_all, config, tmp_path / "good")).path
    target = _restore_target(mariadb_server, unique_db_prefix)

    # A damaged file is found before anything is written.
    damaged = tmp_path / "damaged"
    shutil.copytree(good, damaged)
    file = damaged / "message.s0.sql.gz"
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=r"message@s0: message.s0.sql.gz is damaged"):
        await asyncio.to_thread(restore_all, target, damaged)
    assert mariadb_server.list_databases(f"{unique_db_prefix}_r_") == []

    # A dump whose rows differ from what the manifest recorded fails verification after the restore.
    forged = tmp_path / "forged"
    shutil.copytree(good, forged)
    file = forged / "message.s0.sql.gz"
    text = gzip.decompress(file.read_bytes()).decode()
    assert text.count("'hello'") == 1  # error_message
    file.write_bytes(gzip.compress(text.replace("'hello'", "'HELLO'").encode()))
    manifest = load_manifest(forged)
    entry = manifest.entry("message", "s0")
    entry.sha256, entry.bytes = sha256_file(file), file.stat().st_size
    (forged / "manifest.json").write_text(manifest.model_dump_json())
    with pytest.raises(VerificationError) as failed:
        await asyncio.to_thread(restore_all, target, forged)
    assert failed.value.problems == ["message@s0.messages: checksum differs from the backup's"]

    # The forged restore left tables behind: refused without --force, replaced with it.
    with pytest.raises(RestoreError, match="not empty"):
        await asyncio.to_thread(restore_all, target, good)
    assert (await asyncio.to_thread(restore_all, target, good, force=True, dry_run=True)).dry_run
    result = await asyncio.to_thread(restore_all, target, good, force=True)
    assert [d.label for d in result.databases] == [t.label for t in physical_databases(target)]
    conn = mariadb_server.sync_connect(_db_name(target, "message"))
    with conn.cursor() as cur:
        cur.execute("SELECT error_message FROM messages ORDER BY error_message")
        assert [r[0] for r in cur.fetchall()] == sorted(["hello", "it's", "back\\slash", "多字节"])
        cur.execute("SELECT COUNT(*) FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = DATABASE() "
                    "AND TABLE_NAME = 'messages' AND PARTITION_NAME = 'p_future'")
        assert cur.fetchone()[0] == 1  # restored partitioned
    conn.close()

    # Another shard layout is refused: tenants would land where the router does not look.
    other = make_database_config(f"{unique_db_prefix}_x", [mariadb_server], 2)
    with pytest.raises(RestoreError, match="shard map differs"):
        await asyncio.to_thread(restore_all, other, good)


async def test_backup_and_maintenance_exclude_each_other(mariadb_server, one_shard, tmp_path):
    config = one_shard
    name = _db_name(config, "message")
    # A maintenance run holds a database: the backup waits for it, then gives up and cleans up.
    holder = mariadb_server.sync_connect()
    with holder.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(name),))
    try:
        with pytest.raises(BackupError, match="held by a migration or maintenance"):
            await asyncio.to_thread(backup_all, config, tmp_path / "b", lock_timeout=1)
        assert not (tmp_path / "b").exists()
    finally:
        holder.close()
    # A backup's open snapshot makes maintenance skip that database instead of breaking it.
    target = next(t for t in physical_databases(config) if (t.db, t.shard) == ("message", "s0"))
    snapshot = await asyncio.to_thread(_open_mysql_snapshot, target, 5)
    try:
        reports = {r.db: r for r in await maintain_all(config, now=datetime.now(UTC))}
        assert reports["message"].status == "skipped"
        assert reports["account"].status == "done"
    finally:
        snapshot.conn.close()


async def test_output_directory_and_sqlite_round_trip(tmp_path):
    config = make_sqlite_config(tmp_path / "live")
    await migrate_all(config)
    await _add_messages(config, ["a", "b\nc", "ü"])

    volume = tmp_path / "volume"
    first = await asyncio.to_thread(backup_all, config, volume)
    assert first.path == volume  # a new directory is the backup itself
    with pytest.raises(BackupError, match="already holds a backup"):
        await asyncio.to_thread(backup_all, config, volume)
    (tmp_path / "cron").mkdir()
    (tmp_path / "cron" / "lost+found").mkdir()
    second = await asyncio.to_thread(backup_all, config, tmp_path / "cron")
    assert second.path.parent == tmp_path / "cron" and second.path.name.startswith("wework-backup-")
    assert [e.engine for e in second.manifest.databases] == ["sqlite"] * 5

    target = make_sqlite_config(tmp_path / "restored")
    result = await asyncio.to_thread(restore_all, target, second.path)
    assert len(result.databases) == 5
    for live, restored in zip(physical_databases(config), physical_databases(target), strict=True):
        a = sqlite_table_digests(Path(sa.engine.make_url(live.dsn).database))
        b = sqlite_table_digests(Path(sa.engine.make_url(restored.dsn).database))
        assert {k: (v.rows, v.checksum) for k, v in a.items()} == {k: (v.rows, v.checksum) for k, v in b.items()}
    assert sum(d.rows for d in result.databases) == second.manifest.total_rows > 0
    with pytest.raises(RestoreError, match="not empty"):
        await asyncio.to_thread(restore_all, target, second.path)
