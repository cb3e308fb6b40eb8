"""`wework-admin verify` on a real primary/replica pair and between a bucket move's two sides.

Drills: a row changed on the replica behind the platform's back (sql_log_bin=0) is named by
table, key range and key; a verify run under live writes reports nothing; an interrupted run
resumes; a source/target difference of a bucket range is named the same way.
"""

from __future__ import annotations

import asyncio

import harness
import pytest
from harness import make_database_config
from harness.admin_cli import admin_document, run_admin, write_settings
from harness.replication import execute
from wework.persistence.config import ShardSpec
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import Tenant
from wework.persistence.sharding import bucket_of
from wework.persistence.verify import MoveVerifier, ReplicaVerifier, VerifyOptions

pytestmark = pytest.mark.mariadb

TENANTS = 240


async def _add_tenants(db: Database, ids: list[str]) -> None:
    async with db.unit_of_work("user", ids[0]) as uow:
        uow.session.add_all([Tenant(id=t, tenant_code=f"c-{t[-12:]}", tenant_name=f"Acme {i}")
                             for i, t in enumerate(ids)])


def _caught_up(pair) -> None:
    position = execute(pair.primary, "SELECT @@gtid_binlog_pos")[0][0]
    assert execute(pair.replica, "SELECT MASTER_GTID_WAIT(%s, 30)", (position,)) == [(0,)]


@pytest.fixture(scope="module")
async def replicated(replicated_mariadb, tmp_path_factory):
    """One migrated shard on the pair with its replica listed, TENANTS tenants, a settings file."""
    pair = replicated_mariadb
    prefix = harness.new_db_prefix("v")
    base = make_database_config(prefix, [pair.primary], 1)
    config = base.model_copy(update={"shards": [ShardSpec(**{**base.shards[0].model_dump(),
                                                             "replicas": [pair.replica.url(f"{prefix}_{{db}}_0")]})]})
    await migrate_all(config)
    db = Database(config)
    await db.start()
    ids = [new_id() for _ in range(TENANTS)]
    await _add_tenants(db, ids)
    # A table whose primary key has two columns (id, created_at), with rows sharing an id prefix.
    history = f"`{prefix}_account_0`.account_status_history"
    for i in range(120):
        execute(pair.primary, f"INSERT INTO {history} (id, created_at, tenant_id, account_id, new_status) VALUES "
                              "(%s, %s, %s, 'acc', 'online')",
                (f"h-{i // 3:03d}", f"2026-11-0{1 + i % 3} 10:00:00", ids[0]))
    _caught_up(pair)
    settings = tmp_path_factory.mktemp("verify") / "settings.yaml"
    write_settings(settings, config)
    yield db, pair, config, settings, ids, f"{prefix}_user_0"
    await db.dispose()


async def test_no_difference_is_reported_under_live_writes(replicated):
    db, _pair, config, _settings, ids, _schema = replicated
    stop = asyncio.Event()
    written = 0

    async def writer() -> None:
        nonlocal written
        i = 0
        while not stop.is_set():  # new rows in every chunk, and changes to rows already checked
            await _add_tenants(db, [new_id()])
            async with db.unit_of_work("user", ids[i % len(ids)]) as uow:
                row = await uow.session.get(Tenant, ids[i % len(ids)])
                row.tenant_name = f"renamed {i}"
            written += 2
            i += 7

    task = asyncio.create_task(writer())
    try:
        options = VerifyOptions(chunk_size=20, sleep_seconds=0.02, throttle_every_chunks=4,
                                tables=frozenset({"user.tenants"}))
        report = await ReplicaVerifier(config, options).run()
    finally:
        stop.set()
        await task
    assert written > 20, "the writer did not overlap the run"
    (table,) = report.tables
    assert table.chunks >= TENANTS // 20 and table.rows >= TENANTS
    assert report.ok, report.to_json()


async def test_a_row_changed_on_the_replica_is_named_with_its_table_and_key(replicated, tmp_path):
    _db, pair, _config, settings, ids, schema = replicated
    victim = ids[TENANTS // 2]
    conn = pair.replica.sync_connect()
    try:
        with conn.cursor() as cur:  # behind the platform's back: not in any binlog
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"SELECT tenant_name FROM `{schema}`.tenants WHERE id = %s", (victim,))
            (original,) = cur.fetchone()
            cur.execute(f"UPDATE `{schema}`.tenants SET tenant_name = 'tampered' WHERE id = %s", (victim,))
            assert cur.rowcount == 1
        conn.commit()
        prom = tmp_path / "verify.prom"
        code, out, err = await run_admin(settings, "verify", "--chunk-size", "50", "--metrics-file", str(prom))
        assert code == 1, err
        (line,) = [x for x in out.splitlines() if x.startswith("DIFF")]
        assert "kind=replica" not in line and line.startswith("DIFF replica shard=s0")
        assert "table=user.tenants" in line and f'"id": "{victim}"' in line and line.endswith("differs")
        assert "range=(" in line
        text = prom.read_text()
        assert 'wework_verify_differing_rows{db="user",kind="replica",shard="s0",table="tenants",target=' in text
        differing = [x for x in text.splitlines() if x.startswith("wework_verify_differing_rows{") and
                     'table="tenants"' in x]
        assert differing and differing[0].endswith(" 1.0")

        code, out, err = await run_admin(settings, "verify", "--table", "tenants", "--json")
        assert code == 1
        report = admin_document("verify", code, out, err)  # a result: the documented keys, no `error`
        assert "error" not in report and report["kind"] == "replica" and not report["ok"]
        (diff,) = report["differences"]
        assert (diff["db"], diff["table"], diff["rows"]) == ("user", "tenants", [{"key": {"id": victim},
                                                                                  "problem": "differs"}])
    finally:
        with conn.cursor() as cur:  # repaired the same way, for the other tests of the module
            cur.execute(f"UPDATE `{schema}`.tenants SET tenant_name = %s WHERE id = %s", (original, victim))
        conn.commit()
        conn.close()
    # A row of a two-column key, in the middle of a chunk, is named by both columns.
    history = f"`{schema.removesuffix('_user_0')}_account_0`.account_status_history"
    conn = pair.replica.sync_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"UPDATE {history} SET new_status = 'offline' WHERE id = 'h-017' "
                        "AND created_at = '2026-11-02 10:00:00'")
            assert cur.rowcount == 1
        conn.commit()
        code, out, _err = await run_admin(settings, "verify", "--table", "account.account_status_history",
                                          "--chunk-size", "25")
        assert code == 1
        (line,) = [x for x in out.splitlines() if x.startswith("DIFF")]
        assert "table=account.account_status_history" in line and line.endswith("differs")
        assert '{"id": "h-017", "created_at": "2026-11-02 10:00:00.000000"}' in line
    finally:
        with conn.cursor() as cur:
            cur.execute(f"UPDATE {history} SET new_status = 'online' WHERE id = 'h-017'")
        conn.commit()
        conn.close()

    # A row the replica lacks is named as missing.
    conn = pair.replica.sync_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"SELECT * FROM `{schema}`.tenants WHERE id = %s", (ids[3],))
            saved = cur.fetchone()
            cur.execute(f"DELETE FROM `{schema}`.tenants WHERE id = %s", (ids[3],))
        conn.commit()
        code, out, _err = await run_admin(settings, "verify", "--table", "user.tenants")
        assert code == 1
        missing = [x for x in out.splitlines() if x.startswith("DIFF") and ids[3] in x]
        assert missing and missing[0].endswith("missing")
    finally:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO `{schema}`.tenants VALUES ({', '.join(['%s'] * len(saved))})", saved)
        conn.commit()
        conn.close()


async def test_an_interrupted_run_resumes_where_it_stopped(replicated):
    _db, pair, config, _settings, _ids, schema = replicated
    options = VerifyOptions(chunk_size=20, sleep_seconds=0.1, tables=frozenset({"tenants"}))
    first = asyncio.create_task(ReplicaVerifier(config, options).run())

    def done_chunks() -> int:
        rows = execute(pair.primary, "SELECT next_chunk FROM wework_verify.progress WHERE db = %s AND tbl = "
                                     "'tenants' AND finished = 0", (schema,))
        return rows[0][0] if rows else 0

    for _ in range(300):
        if done_chunks() >= 3:
            break
        await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    stopped_at = done_chunks()
    assert stopped_at >= 3
    said: list[str] = []
    resumed = ReplicaVerifier(config, VerifyOptions(chunk_size=20, resume=True, tables=frozenset({"tenants"})),
                              progress=said.append)
    report = await resumed.run()
    assert report.ok, report.to_json()
    assert any(f"resuming at chunk {stopped_at}" in line for line in said), said
    total = len(execute(pair.primary, "SELECT chunk FROM wework_verify.checksums WHERE db = %s AND tbl = 'tenants'",
                        (schema,)))
    assert report.tables[0].chunks == total > stopped_at


async def test_a_bucket_move_difference_is_named(mariadb_server, tmp_path):
    """Source and target databases of a range hold the same rows but one; rows of tenants outside
    the range exist on the source only and are not differences."""
    src_prefix, dst_prefix = harness.new_db_prefix("vs"), harness.new_db_prefix("vd")
    try:
        source = make_database_config(src_prefix, [mariadb_server], 1, bucket_count=64)
        target = make_database_config(dst_prefix, [mariadb_server], 1, bucket_count=64)
        await asyncio.gather(migrate_all(source), migrate_all(target))
        moving = range(32)
        tenants = [new_id() for _ in range(120)]
        inside = [t for t in tenants if bucket_of(t, 64) in moving]
        db = Database(source)
        await db.start()
        try:
            await _add_tenants(db, tenants)
        finally:
            await db.dispose()
        src_schema, dst_schema = f"{src_prefix}_user_0", f"{dst_prefix}_user_0"
        marks = ", ".join(["%s"] * len(inside))
        execute(mariadb_server, f"INSERT INTO `{dst_schema}`.tenants SELECT * FROM `{src_schema}`.tenants "
                                f"WHERE id IN ({marks})", inside)
        victim = inside[len(inside) // 2]
        execute(mariadb_server, f"UPDATE `{dst_schema}`.tenants SET tenant_name = 'drifted' WHERE id = %s", (victim,))
        # Clean range first: the same rows on both sides (in-range only) are no difference.
        clean = await MoveVerifier(source, "0-31", source.shards[0].dsn, target.shards[0].dsn,
                                   options=VerifyOptions(chunk_size=10, settle_seconds=0.1,
                                                         tables=frozenset({"accounts"}))).run()
        assert clean.ok, clean.to_json()

        settings = tmp_path / "settings.yaml"
        write_settings(settings, source)
        code, out, err = await run_admin(settings, "verify", "--buckets", "0-31", "--source-dsn", source.shards[0].dsn,
                                         "--target-dsn", target.shards[0].dsn, "--chunk-size", "10")
        assert code == 1, err
        lines = [x for x in out.splitlines() if x.startswith("DIFF")]
        assert len(lines) == 1, out
        assert lines[0].startswith("DIFF move shard=source target=target table=user.tenants")
        assert f'"id": "{victim}"' in lines[0] and lines[0].endswith("differs")

        # --move: the range and target of the unfinished move recorded in the directory; the source
        # is the shard the map in force gives the range.
        execute(mariadb_server, f"INSERT INTO `{src_prefix}_directory`.bucket_moves (id, buckets, source_shards, "
                                "target_shard, target_dsn, phase, checkpoint, created_at, updated_at) VALUES "
                                "(%s, '0-31', 's0', 's1', %s, 'frozen', '{}', UTC_TIMESTAMP(), UTC_TIMESTAMP())",
                (new_id(), target.shards[0].dsn))
        code, out, err = await run_admin(settings, "verify", "--move", "--table", "user.tenants")
        assert code == 1, err
        (line,) = [x for x in out.splitlines() if x.startswith("DIFF")]
        assert line.startswith("DIFF move shard=s0 target=s1 table=user.tenants") and victim in line
    finally:
        for prefix in (src_prefix, dst_prefix):
            mariadb_server.drop_databases(prefix + "_")


async def test_an_unreachable_replica_is_an_error_not_a_pass(replicated):
    _db, _pair, config, _settings, _ids, _schema = replicated
    dead = f"mysql+aiomysql://root@127.0.0.1:{harness.free_port()}/x_{{db}}"
    shard = config.shards[0]
    broken = config.model_copy(update={"shards": [shard.model_copy(update={"replicas": [*shard.replicas, dead]})],
                                       "connect_timeout_seconds": 1.0})
    report = await ReplicaVerifier(broken, VerifyOptions(tables=frozenset({"tenants"}))).run()
    assert not report.ok and not report.differences
    (error,) = report.errors
    assert "unreachable" in error and "user.tenants" in error
    assert {t.target for t in report.tables} == {"127.0.0.1:" + dead.split(":")[2].split("/")[0],
                                                 shard.replicas[0].split("@")[1].split("/")[0]}
