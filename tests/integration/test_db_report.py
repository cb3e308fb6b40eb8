"""`wework-admin db-report` on a private mariadbd (it changes global settings: never the shared server).

The report first finds no statistics (MariaDB 10.11's defaults), switches on the runtime ones
(`--enable-statistics`: userstat, slow log table, statements without an index), then names a
deliberately unindexed query among the top statements with its full-scan plan, and lists the
indexes no statement read, as JSON, as a table and as metrics.
"""

from __future__ import annotations

import json

import harness
import pytest
from harness import make_database_config
from harness.admin_cli import admin_document, run_admin, write_settings
from wework.persistence.database import Database
from wework.persistence.dbreport import fingerprint
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import Tenant

pytestmark = pytest.mark.mariadb


@pytest.fixture(scope="module")
def private_mariadb():
    with harness.private_mariadb() as server:
        yield server


def test_fingerprints_group_statements_that_differ_in_literals_only():
    a = fingerprint("SELECT id FROM tenants WHERE tenant_name = 'x' AND id IN (1, 2, 3) LIMIT 20")
    b = fingerprint("select id from  tenants where tenant_name = 'it''s'\n and id in (4) limit 5")
    assert a == "select id from tenants where tenant_name = ? and id in (?+) limit ?"
    assert fingerprint("SELECT id FROM t WHERE id IN (7, 8)") == fingerprint("SELECT id FROM t WHERE id IN (9)") \
        .replace("(?)", "(?+)")
    assert b.startswith("select id from tenants where tenant_name = ? and id in (?) limit ?")


async def test_an_unindexed_query_is_reported_with_its_plan_and_unused_indexes_are_listed(private_mariadb, tmp_path):
    server = private_mariadb
    prefix = harness.new_db_prefix("dr")
    config = make_database_config(prefix, [server], 1)
    await migrate_all(config)
    settings = tmp_path / "settings.yaml"
    write_settings(settings, config)
    schema = f"{prefix}_user_0"

    # MariaDB's defaults: nothing to read; the report says so instead of inventing figures.
    code, out, err = await run_admin(settings, "db-report", "--json")
    assert code == 0, err
    (report,) = admin_document("db-report", code, out, err)["servers"]
    assert report["statement_source"] is None and report["index_source"] is None
    assert report["unused_indexes"] is None and any("no index statistics" in n for n in report["notes"])

    code, _out, err = await run_admin(settings, "db-report", "--enable-statistics", "--long-query-time", "10")
    assert code == 0, err
    assert "userstat=1" in err and "slow_query_log=1" in err and "log_queries_not_using_indexes=1" in err

    db = Database(config)
    await db.start()
    try:
        tenants = [new_id() for _ in range(300)]
        async with db.unit_of_work("user", tenants[0]) as uow:
            uow.session.add_all([Tenant(id=t, tenant_code=f"c-{t[-12:]}", tenant_name=f"Acme {i}")
                                 for i, t in enumerate(tenants)])
    finally:
        await db.dispose()
    # A deliberately unindexed query (tenant_name has no index), and an indexed one.
    conn = server.sync_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"USE `{schema}`")
            cur.execute("SELECT id FROM tenants WHERE tenant_name LIKE %s", ("%needle%",))
            cur.execute("SELECT tenant_name FROM tenants WHERE tenant_code = %s", (f"c-{tenants[5][-12:]}",))
    finally:
        conn.close()

    prom = tmp_path / "db-report.prom"
    code, out, err = await run_admin(settings, "db-report", "--json", "--metrics-file", str(prom))
    assert code == 0, err
    (report,) = json.loads(out)["servers"]
    assert report["server"] == f"{server.host}:{server.port}"
    assert (report["statement_source"], report["index_source"]) == ("slow_log", "userstat")
    assert "userstat" in report["index_since"]
    by_text = {s["text"]: s for s in report["statements"]}
    unindexed = by_text["select id from tenants where tenant_name like ?"]
    assert unindexed["schema"] == schema and unindexed["calls"] == 1 and unindexed["full_scan"] is True
    assert unindexed["plan"] == [{"table": "tenants", "access_type": "ALL", "key": None,
                                  "rows": unindexed["plan"][0]["rows"]}]
    assert unindexed["rows_examined"] >= 300
    # The indexed lookup is not logged (fast, uses an index); the statistics saw its index read.
    assert not [s for s in report["statements"] if "tenant_code" in s["text"]]
    unused = {(i["schema"], i["table"], i["index"]) for i in report["unused_indexes"]}
    assert (schema, "tenants", "idx_tenants_created_at") in unused
    assert (schema, "tenants", "uk_tenants_tenant_code") not in unused
    assert (f"{prefix}_message_0", "messages", "idx_messages_claim") in unused

    text = prom.read_text()
    digest = unindexed["digest"]
    assert f'wework_db_report_statement_full_scan{{digest="{digest}",server="{report["server"]}"}} 1.0' in text
    assert f'wework_db_report_source{{server="{report["server"]}",source="slow_log"}} 1.0' in text
    assert f'wework_db_report_unused_indexes{{db="{schema}",server="{report["server"]}"}}' in text

    # The operator's table names the statement, its full scan and the unused index.
    code, out, err = await run_admin(settings, "db-report")
    assert code == 0, err
    assert "FULL SCAN" in out and "idx_tenants_created_at" in out and "userstat" in out


@pytest.fixture(scope="module")
def mariadb_with_performance_schema():
    with harness.private_mariadb(["--performance-schema=ON"]) as server:
        yield server


async def test_performance_schema_digests_and_index_io_are_preferred(mariadb_with_performance_schema, tmp_path):
    """With performance_schema on (a restart setting), statements come from its digests (every
    statement, not only slow ones) and unused indexes are counted since the server started."""
    server = mariadb_with_performance_schema
    prefix = harness.new_db_prefix("dp")
    config = make_database_config(prefix, [server], 1)
    await migrate_all(config)
    settings = tmp_path / "settings.yaml"
    write_settings(settings, config)
    schema = f"{prefix}_user_0"
    conn = server.sync_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"USE `{schema}`")
            for i in range(5):
                cur.execute("SELECT id FROM tenants WHERE contact_person = %s", (f"nobody {i}",))
            cur.execute("SELECT id FROM tenants WHERE tenant_code = %s", ("c-1",))
    finally:
        conn.close()

    code, out, err = await run_admin(settings, "db-report", "--json", "--top", "50")
    assert code == 0, err
    (report,) = json.loads(out)["servers"]
    assert report["statement_source"] == "performance_schema" and report["index_source"] == "performance_schema"
    assert report["index_since"].startswith("server start")
    unindexed = [s for s in report["statements"] if "contact_person" in s["text"]]
    assert len(unindexed) == 1, report["statements"]
    assert unindexed[0]["calls"] == 5 and unindexed[0]["no_index_used"] == 5
    assert unindexed[0]["schema"] == schema
    # Digests keep no statement text and the slow log is off: no plan, and the report says why.
    assert unindexed[0]["plan"] is None and "no sample" in unindexed[0]["plan_error"]
    unused = {(i["schema"], i["table"], i["index"]) for i in report["unused_indexes"]}
    assert (schema, "tenants", "idx_tenants_created_at") in unused

    # With the slow log on as well, a digest is explained from a logged statement of its shape.
    code, _out, err = await run_admin(settings, "db-report", "--enable-statistics")
    assert code == 0, err
    conn = server.sync_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"USE `{schema}`")
            cur.execute("SELECT id FROM tenants WHERE contact_person = %s", ("someone else",))
    finally:
        conn.close()
    code, out, err = await run_admin(settings, "db-report", "--json", "--top", "50")
    assert code == 0, err
    (report,) = json.loads(out)["servers"]
    assert report["statement_source"] == "performance_schema"
    (unindexed,) = [s for s in report["statements"] if "contact_person" in s["text"]]
    assert unindexed["calls"] == 6 and "contact_person" in unindexed["sample"]
    assert unindexed["full_scan"] is True and unindexed["plan"][0]["access_type"] == "ALL"
