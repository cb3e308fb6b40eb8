"""Point-in-time recovery: restore a backup, then replay the binlog up to a chosen second.

Runs on a private mariadbd started with --log-bin (the shared test servers run without a
binlog) and gtid_strict_mode on, the setting under which a naive replay of old GTIDs fails.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from datetime import UTC, datetime, timedelta

import harness
import pytest
import sqlalchemy as sa
import yaml
from harness import make_database_config, physical_database_names
from harness.admin_cli import admin_document, run_admin, write_settings
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import CallbackEvent, Message, MessageStatistic, TenantCode

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

RPO_TARGET = timedelta(minutes=15)


@pytest.fixture(scope="module")
def binlog_mariadb():
    """A private mariadbd with binary logging (MIXED format, GTID strict mode)."""
    with harness.private_mariadb(["--log-bin=mariadb-bin", "--server-id=7", "--binlog-format=MIXED",
                                  "--gtid-strict-mode=ON"]) as server:
        yield server


def _capture(config, server) -> dict[str, dict[str, list[tuple]]]:
    out = {}
    for (db, shard), name in physical_database_names(config).items():
        conn = server.sync_connect(name)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES")
                tables = {}
                for (table,) in cur.fetchall():
                    cur.execute(f"SELECT * FROM `{table}`")
                    tables[table] = sorted(cur.fetchall(), key=repr)
                out[f"{db}@{shard}" if shard else db] = tables
        finally:
            conn.close()
    return out


async def _write(db: Database, tenant: str, label: str, n: int) -> list[str]:
    now = datetime.now(UTC)
    async with db.directory_unit_of_work() as uow:
        uow.session.add(TenantCode(tenant_code=f"{label}-{secrets.token_hex(4)}", tenant_id=new_id(), created_at=now))
    async with db.unit_of_work("message", tenant) as uow:
        rows = [Message(tenant_id=tenant, account_id="a", conversation_id="c", message_type="text",
                        content={"text": f"{label} {k} ' \\ ;\n"}, created_at=now) for k in range(n)]
        uow.session.add_all(rows)
        uow.session.add(MessageStatistic(tenant_id=tenant, account_id=label, stat_date=now.date(), stat_hour=1))
    async with db.unit_of_work("callback", tenant) as uow:
        uow.session.add(CallbackEvent(tenant_id=tenant, guid=label, notify_type=1, event_type="x",
                                      raw_data=f"{label} raw", received_time=now))
    return [r.id for r in rows]


async def _update(db: Database, tenant: str, keep: str, drop: str) -> None:
    async with db.unit_of_work("message", tenant) as uow:
        await uow.session.execute(sa.update(Message).where(Message.id == keep).values(status="sent"))
        await uow.session.execute(sa.delete(Message).where(Message.id == drop))


async def test_point_in_time_recovery(binlog_mariadb, unique_db_prefix, tmp_path):
    server = binlog_mariadb
    config = make_database_config(unique_db_prefix, [server], 1)
    await migrate_all(config)
    settings = tmp_path / "settings.yaml"
    write_settings(settings, config)
    db = Database(config)
    await db.start()
    tenant = new_id()
    try:
        first = await _write(db, tenant, "before-backup", 20)
        backed = await run_admin(settings, "backup", "--output", str(tmp_path / "backup"))
        assert backed.returncode == 0, backed.stderr
        # After the backup and before the chosen point: inserts, an update, a delete.
        await _write(db, tenant, "after-backup", 10)
        await _update(db, tenant, keep=first[0], drop=first[1])
        last_write = datetime.now(UTC)
        wanted = _capture(config, server)
        await asyncio.sleep(1.2)  # the binlog counts in whole seconds
        until = datetime.now(UTC)
        await asyncio.sleep(1.2)
        # After the chosen point: must not come back.
        await _write(db, tenant, "too-late", 5)
        await _update(db, tenant, keep=first[2], drop=first[3])
    finally:
        await db.dispose()
    manifest = yaml.safe_load((tmp_path / "backup" / "manifest.json").read_text())
    assert all(e["binlog"]["enabled"] and e["binlog"]["exact"] and e["binlog"]["gtid"]
               for e in manifest["databases"])

    # Remote binlogs (the server still has them), then archived copies (--binlog-dir).
    archive = tmp_path / "binlogs"
    archive.mkdir()
    for file in (server.basedir / "data").glob("mariadb-bin.[0-9]*"):
        shutil.copy(file, archive / file.name)
    for extra in ([], ["--binlog-dir", str(archive)]):
        server.drop_databases(unique_db_prefix + "_")
        t0 = time.monotonic()
        restored = await run_admin(settings, "restore", "--input", str(tmp_path / "backup"),
                                   "--until", until.isoformat(), *extra, "--json")
        seconds = time.monotonic() - t0
        assert restored.returncode == 0, restored.stderr
        assert "replayed the binlogs of 5 database(s)" in restored.stderr
        report = admin_document("restore", restored.returncode, restored.stdout, restored.stderr)
        assert datetime.fromisoformat(report["until"]) == datetime.fromisoformat(report["data_as_of"]) == until
        assert len(report["restored"]) == 5 and all(r["replayed_bytes"] is not None for r in report["restored"])
        got = _capture(config, server)
        for label, tables in wanted.items():
            for table, rows in tables.items():
                assert got[label][table] == rows, f"{label}.{table} ({'archive' if extra else 'remote'})"
        print(f"\npoint-in-time recovery ({'archived' if extra else 'remote'} binlogs): restore + replay took "
              f"{seconds:.1f} s; newest restored write is {(until - last_write).total_seconds():.1f} s before "
              f"the chosen point (RPO target {RPO_TARGET})")
    assert until - last_write < RPO_TARGET

    # Refusals: a point in the future, and a point before the backup.
    future = await run_admin(settings, "restore", "--input", str(tmp_path / "backup"), "--force", "--dry-run",
                             "--until", (datetime.now(UTC) + timedelta(minutes=5)).isoformat())
    assert future.returncode == 1 and "is not in the past" in future.stderr
    early = await run_admin(settings, "restore", "--input", str(tmp_path / "backup"), "--force", "--dry-run",
                            "--until", (datetime.now(UTC) - timedelta(days=1)).isoformat())
    assert early.returncode == 1 and "before the backup's snapshot" in early.stderr
