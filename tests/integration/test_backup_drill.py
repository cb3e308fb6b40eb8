"""Recovery drill: data across shards on two MariaDB servers, `wework-admin backup`, every
database dropped, `wework-admin restore`, every table compared row by row with what was there.

Prints the restore time against the original design's RTO (2 hours) and how recent the restored
data is against its RPO (15 minutes). Runs as a database user with a password and privileges on
its own databases only, as a deployment would.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness import make_database_config, physical_database_names
from harness.admin_cli import admin_document, run_admin, write_settings
from wework.domain.identity import Tenant as TenantEntity
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import (
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
    User,
    UserRole,
    WeworkAccount,
)
from wework.persistence.repositories.identity import TenantRepository
from wework.server.security.field_crypto import FieldCipher

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

RTO_TARGET = timedelta(hours=2)
RPO_TARGET = timedelta(minutes=15)
# Values that break naive dumpers: quotes, backslashes, statement and comment markers, line
# breaks, NUL, 4-byte UTF-8.
AWKWARD = ["plain", "引号 ' \" 反斜杠 \\ ; -- /* */", "line\nbreak\r\n\ttab;", "emoji 😀 𠀋", "nul\x00byte",
           "ends with semicolon;", ""]


@pytest.fixture
def drill_user(mariadb_server, second_mariadb, unique_db_prefix):
    """A user with a password and rights on the drill's databases only, on both servers."""
    user, password = f"wwd_{secrets.token_hex(4)}", "pw-" + secrets.token_urlsafe(12)
    servers = [mariadb_server, second_mariadb]
    for server in servers:
        conn = server.sync_connect()
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON `{unique_db_prefix}\\_%`.* TO '{user}'@'%'")
        conn.close()
    yield [dataclasses.replace(s, user=user, password=password, process=None, basedir=None) for s in servers]
    for server in servers:
        conn = server.sync_connect()
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        conn.close()


def _tenant_ids_spread_over_shards(db: Database, per_shard: int) -> list[str]:
    """Tenant ids with exactly `per_shard` on every shard (random ids could leave one empty)."""
    counts = dict.fromkeys(db.shard_names, 0)
    ids: list[str] = []
    while len(ids) < per_shard * len(counts):
        tenant_id = new_id()
        shard = db.shard_for(tenant_id)
        if counts[shard] < per_shard:
            counts[shard] += 1
            ids.append(tenant_id)
    return ids


async def _write_tenant(db: Database, cipher: FieldCipher, i: int, now: datetime, tenant_id: str) -> None:
    """One tenant's rows in every service database of its shard, and its directory rows."""
    code = f"drill-{i:03d}-{secrets.token_hex(3)}"
    async with db.directory_unit_of_work() as uow:
        await uow.directory.reserve_tenant_code(code, tenant_id, now)
    async with db.unit_of_work("user", tenant_id) as uow:
        await TenantRepository(uow.session, cipher).add(TenantEntity(
            id=tenant_id, tenant_code=code, tenant_name=AWKWARD[i % len(AWKWARD)] or "t",
            contact_phone=f"+86 138 0000 {i:04d}", contact_email=f"ops{i}@example.com",
            config={"k": AWKWARD[(i + 1) % len(AWKWARD)], "n": [1, 2.5, None]}, created_at=now, updated_at=now))
        role = Role(id=new_id(), tenant_id=tenant_id, role_code="admin", role_name="Admin",
                    permissions=["tenants.get", "users.*"], created_at=now, updated_at=now)
        users = [User(id=new_id(), tenant_id=tenant_id, username=f"u{k}", email=f"cipher-{k}",
                      email_hash=secrets.token_hex(32), password_hash="$argon2id$v=19$m=65536,t=3,p=4$x",
                      real_name=AWKWARD[k % len(AWKWARD)][:50], locked_until=now + timedelta(minutes=k),
                      created_at=now, updated_at=now) for k in range(3)]
        uow.session.add(role)
        uow.session.add_all(users)
        await uow.flush()
        uow.session.add_all([UserRole(tenant_id=tenant_id, user_id=u.id, role_id=role.id, assigned_by="drill",
                                      assigned_at=now) for u in users])
        uow.session.add(ApiKey(id=new_id(), tenant_id=tenant_id, role_id=role.id, display_name="k",
                               prefix="wwk_abc", secret_hash=secrets.token_hex(32), created_at=now))
    account_id, guid = new_id(), f"guid-{tenant_id}"
    async with db.directory_unit_of_work() as uow:
        uow.session.add(AccountGuid(guid=guid, tenant_id=tenant_id, account_id=account_id, created_at=now))
    async with db.unit_of_work("account", tenant_id) as uow:
        uow.session.add(WeworkAccount(id=account_id, tenant_id=tenant_id, account_name=f"acc {i}", guid=guid,
                                      status="online", config={"proxy": None, "x": AWKWARD[2]},
                                      last_heartbeat_time=now, created_at=now, updated_at=now))
        # One row per partition kind: the first (older years), the current year, p_future.
        for at in (datetime(now.year - 4, 2, 3, tzinfo=UTC), now - timedelta(seconds=i),
                   datetime(now.year + 3, 1, 1, tzinfo=UTC)):
            uow.session.add(AccountStatusHistory(id=new_id(), created_at=at, tenant_id=tenant_id,
                                                 account_id=account_id, old_status="offline", new_status="online",
                                                 extra_data={"at": at.isoformat()}))
        uow.session.add(Conversation(id=new_id(), tenant_id=tenant_id, account_id=account_id,
                                     conversation_id="room-1", conversation_type="group", tags=["a", "b"],
                                     created_at=now, updated_at=now))
    async with db.unit_of_work("message", tenant_id) as uow:
        template = MessageTemplate(id=new_id(), tenant_id=tenant_id, creator_id=users[0].id, template_name="t",
                                   template_type="text", template_content={"text": "Hi {{name}}"},
                                   variables=["name"], created_at=now, updated_at=now)
        uow.session.add(template)
        uow.session.add(BatchSendTask(id=new_id(), tenant_id=tenant_id, creator_id=users[0].id, task_name="b",
                                      account_id=account_id, template_id=template.id,
                                      message_content={"text": "x"}, target_type="manual",
                                      target_config={"ids": [1, 2]}, progress_percent=Decimal("33.33"),
                                      created_at=now, updated_at=now))
        for k in range(150):
            uow.session.add(Message(
                id=new_id(), created_at=now - timedelta(seconds=k, microseconds=k * 7), tenant_id=tenant_id,
                account_id=account_id, conversation_id="room-1", message_type="text",
                content={"text": AWKWARD[k % len(AWKWARD)]}, status=("pending", "sent", "failed")[k % 3],
                priority=k % 10, error_message=AWKWARD[k % len(AWKWARD)] if k % 5 == 0 else None,
                scheduled_time=now + timedelta(hours=k) if k % 4 == 0 else None, updated_at=now))
        for hour in (None, 0, 13, 23):
            uow.session.add(MessageStatistic(tenant_id=tenant_id, account_id=account_id, stat_date=date(2026, 1, 2),
                                             stat_hour=hour, total_count=10, success_count=9, failed_count=1,
                                             avg_response_time=Decimal("1.234"), created_at=now, updated_at=now))
    async with db.unit_of_work("callback", tenant_id) as uow:
        for k in range(3):
            # Large raw bodies: several INSERT statements per table in the dump.
            raw = json.dumps({"k": k, "body": AWKWARD[k] * 3000 + secrets.token_hex(20000)}, ensure_ascii=False)
            uow.session.add(CallbackEvent(id=new_id(), received_time=now - timedelta(milliseconds=k),
                                          tenant_id=tenant_id, guid=guid, notify_type=11000 + k,
                                          event_type="message", raw_data=raw, parsed_data={"k": k},
                                          status="processed", process_time=now))


def _capture(config, servers) -> dict[str, dict[str, object]]:
    """Every table of every physical database: its CREATE TABLE and its rows, sorted."""
    by_port = {s.port: s for s in servers}
    out: dict[str, dict[str, object]] = {}
    for (db, shard), name in physical_database_names(config).items():
        dsn = config.directory_dsn if db == "directory" else next(
            s for s in config.shards if s.name == shard).dsn_for(db)
        conn = by_port[sa.engine.make_url(dsn).port].sync_connect(name)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES")
                tables = sorted(r[0] for r in cur.fetchall())
                content: dict[str, object] = {}
                for table in tables:
                    cur.execute(f"SHOW CREATE TABLE `{table}`")
                    create = cur.fetchone()[1]
                    cur.execute(f"SELECT * FROM `{table}`")
                    rows = sorted(cur.fetchall(), key=repr)
                    content[table] = (create, rows)
                out[f"{db}@{shard}" if shard else db] = content
        finally:
            conn.close()
    return out


async def test_recovery_drill(mariadb_server, second_mariadb, unique_db_prefix, drill_user, tmp_path):
    root_servers = [mariadb_server, second_mariadb]
    config = make_database_config(unique_db_prefix, drill_user, 2)  # s0, s1 on one server; s2, s3 on the other
    await migrate_all(config)
    cipher = FieldCipher({"k1": b"0123456789abcdef0123456789abcdef"}, "k1", b"lookup-key-0123456789")
    db = Database(config)
    await db.start()
    try:
        for i, tenant_id in enumerate(_tenant_ids_spread_over_shards(db, 4)):
            await _write_tenant(db, cipher, i, datetime.now(UTC), tenant_id)
    finally:
        await db.dispose()
    before = _capture(config, root_servers)
    counts = {label: {t: len(rows) for t, (_, rows) in tables.items()} for label, tables in before.items()}
    assert all(counts[f"user@s{i}"]["tenants"] > 0 for i in range(4)), counts  # every shard has tenants
    assert sum(counts[f"message@s{i}"]["messages"] for i in range(4)) == 16 * 150

    settings = tmp_path / "settings.yaml"
    write_settings(settings, config)
    volume = tmp_path / "backups"
    volume.mkdir()
    (volume / "older-backup").mkdir()  # a volume that already holds backups, as a CronJob's does

    t0 = time.monotonic()
    backed = await run_admin(settings, "backup", "--output", str(volume))
    backup_seconds = time.monotonic() - t0
    assert backed.returncode == 0, backed.stderr
    path = Path(backed.stdout.strip().splitlines()[-1])
    assert path.parent == volume and path.name.startswith("wework-backup-")
    manifest_text = (path / "manifest.json").read_text()
    manifest = json.loads(manifest_text)
    assert drill_user[0].password not in manifest_text  # the shard map is kept without passwords
    assert [s["name"] for s in manifest["shard_map"]["shards"]] == ["s0", "s1", "s2", "s3"]
    assert len(manifest["databases"]) == 17
    for entry in manifest["databases"]:
        label = entry["db"] if entry["shard"] is None else f"{entry['db']}@{entry['shard']}"
        assert {t: v["rows"] for t, v in entry["tables"].items()} == counts[label], label
        assert entry["binlog"]["enabled"] is False  # the test servers run without binlog
    partitioned = {(e["db"], t) for e in manifest["databases"] for t, v in e["tables"].items() if v["partitioned"]}
    assert partitioned == {("account", "account_status_history"), ("message", "messages"),
                           ("callback", "callback_events")}

    # The disaster: every database of the deployment is gone.
    for server in root_servers:
        server.drop_databases(unique_db_prefix + "_")
    assert not any(s.list_databases(unique_db_prefix + "_") for s in root_servers)

    t0 = time.monotonic()
    restored = await run_admin(settings, "restore", "--input", str(path), "--json")
    restore_seconds = time.monotonic() - t0
    assert restored.returncode == 0, restored.stderr
    assert "restored and verified 17 database(s)" in restored.stderr
    report = admin_document("restore", restored.returncode, restored.stdout, restored.stderr)
    assert (report["databases"], len(report["restored"]), report["dry_run"]) == (17, 17, False)
    assert report["rows"] == sum(r["rows"] for r in report["restored"]) == sum(sum(c.values()) for c in counts.values())

    after = _capture(config, root_servers)
    assert after.keys() == before.keys()
    for label in before:
        assert after[label].keys() == before[label].keys(), label
        for table, (create, rows) in before[label].items():
            assert after[label][table][0] == create, f"{label}.{table}: schema differs"
            assert after[label][table][1] == rows, f"{label}.{table}: rows differ"

    # How recent the restored data is: the newest message against the start of the backup.
    started = datetime.fromisoformat(manifest["started_at"])
    newest = max(row[1] for label, tables in after.items() if label.startswith("message@")
                 for row in tables["messages"][1]).replace(tzinfo=UTC)
    staleness = started - newest
    print(f"\nrecovery drill: {sum(sum(c.values()) for c in counts.values())} rows in 17 databases on 2 servers")
    print(f"  backup took {backup_seconds:.1f} s")
    print(f"  RTO: restore + verification took {restore_seconds:.1f} s (target {RTO_TARGET}: "
          f"{restore_seconds / RTO_TARGET.total_seconds():.3%} of it)")
    print(f"  RPO: newest restored row is {staleness.total_seconds():.1f} s older than the backup start (target "
          f"{RPO_TARGET}); without binlog point-in-time recovery the production RPO is the backup interval")
    assert restore_seconds < RTO_TARGET.total_seconds()
    assert timedelta(0) <= staleness < RPO_TARGET

    # A second restore onto the restored databases is refused, and changes nothing.
    again = await run_admin(settings, "restore", "--input", str(path))
    assert again.returncode == 1
    assert "refusing to overwrite databases that are not empty" in again.stderr
