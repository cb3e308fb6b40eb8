"""Bulk loads with LOAD DATA LOCAL (wework.persistence.bulk.LocalInfileLoad) on MariaDB.

The platform's connections accept the server's request for local data, so these tests pin
what that must and must not mean: batch materialization really loads its rows that way, a load
that skips a row (LOAD DATA LOCAL turns a duplicate key into a warning) fails instead of
half-writing, a server that asks for a file by name gets nothing from the file system, and a
server that refuses local infile gets the same rows through INSERT.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from harness.batches import delete_messages
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine
from wework.persistence.bulk import BulkLoadIncomplete, LocalInfileLoad
from wework.persistence.ids import new_id
from wework.persistence.models import message as mm
from wework.persistence.repositories.batches import _COLUMNS


def _rows(tenant_id: str, batch_id: str, n: int) -> list[dict]:
    at = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    return [{"id": new_id(), "created_at": at + timedelta(microseconds=i), "updated_at": at, "tenant_id": tenant_id,
             "account_id": "acc-1", "conversation_id": f"wmchat-{i}", "message_type": "text",
             "content": {"text": f"hello {i}"}, "template_id": None, "batch_id": batch_id, "priority": 5}
            for i in range(n)]


async def _batch_count(db, tenant_id: str, batch_id: str) -> int:
    async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
        return (await uow.session.execute(sa.select(sa.func.count()).select_from(mm.Message).where(
            mm.Message.batch_id == batch_id))).scalar_one()


async def test_materialization_loads_its_rows_with_load_data_local(mariadb_database):
    tenant_id, batch_id = new_id(), new_id()
    statements: list[str] = []
    async with mariadb_database.unit_of_work("message", tenant_id) as uow:
        conn = await uow.session.connection()
        event.listen(conn.sync_connection, "before_cursor_execute",
                     lambda _c, _cur, sql, *_: statements.append(sql))
        assert await uow.batches.materialize(_rows(tenant_id, batch_id, 12_000)) == 12_000
    loads = [s for s in statements if s.startswith("LOAD DATA LOCAL INFILE")]
    # 1,000 rows first (the server starts sooner), then 5,000 a statement.
    assert len(loads) == 4 and not [s for s in statements if s.startswith("INSERT")]
    assert await _batch_count(mariadb_database, tenant_id, batch_id) == 12_000
    await delete_messages(mariadb_database, tenant_id)


async def test_values_shared_by_every_row_go_once_into_the_statement(mariadb_database):
    tenant_id, batch_id = new_id(), new_id()
    rows = _rows(tenant_id, batch_id, 6_000)
    shared = {c: rows[0][c] for c in ("updated_at", "tenant_id", "account_id", "message_type", "batch_id")}
    statements: list[str] = []
    async with mariadb_database.unit_of_work("message", tenant_id) as uow:
        conn = await uow.session.connection()
        event.listen(conn.sync_connection, "before_cursor_execute",
                     lambda _c, _cur, sql, *_: statements.append(sql))
        per_row = [{k: v for k, v in r.items() if k not in shared} for r in rows]
        assert await uow.batches.materialize(per_row, shared=shared) == 6_000
    loads = [s for s in statements if s.startswith("LOAD DATA LOCAL INFILE")]
    assert len(loads) == 2
    for sql in loads:
        fields, assignments = sql.split(") SET ")
        assert "batch_id" not in fields and f"batch_id = '{batch_id}'" in assignments
        assert "updated_at = '2026-11-29 08:00:00.000000'" in assignments
    assert await _batch_count(mariadb_database, tenant_id, batch_id) == 6_000
    await delete_messages(mariadb_database, tenant_id)


async def test_a_load_that_skips_a_duplicate_fails_and_leaves_nothing(mariadb_database):
    tenant_id, batch_id = new_id(), new_id()
    async with mariadb_database.unit_of_work("message", tenant_id) as uow:
        first = _rows(tenant_id, new_id(), 1)
        await uow.batches.materialize(first)
    rows = _rows(tenant_id, batch_id, 7_000)
    # In the last of three statements (1,000, 5,000, 1,000 rows), after two were written.
    rows[6_500]["id"], rows[6_500]["created_at"] = first[0]["id"], first[0]["created_at"]
    with pytest.raises(BulkLoadIncomplete, match="wrote 999 of 1000 rows"):
        async with mariadb_database.unit_of_work("message", tenant_id) as uow:
            await uow.batches.materialize(rows)
    assert await _batch_count(mariadb_database, tenant_id, batch_id) == 0


async def test_a_request_for_a_file_by_name_gets_no_data(mariadb_database, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the application's secret\nsecond line\n")
    tenant_id = new_id()
    async with mariadb_database.unit_of_work("message", tenant_id) as uow:
        conn = await uow.session.connection()
        await conn.exec_driver_sql("CREATE TEMPORARY TABLE leak (line TEXT)")
        # What a hostile server could ask for; the stock driver would open and send the file.
        result = await conn.exec_driver_sql(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE leak")
        assert result.rowcount == 0
        assert (await conn.exec_driver_sql("SELECT COUNT(*) FROM leak")).scalar_one() == 0
        await conn.exec_driver_sql("DROP TEMPORARY TABLE leak")


async def test_a_server_that_refuses_local_infile_gets_the_rows_by_insert(mariadb_config, mariadb_database):
    # A connection without the capability is refused as a server with local_infile=OFF is (4166).
    url = mariadb_config.shards[0].dsn.format(db="message")
    engine = create_async_engine(url, connect_args={"charset": "utf8mb4", "local_infile": False,
                                                    "init_command": "SET time_zone = '+00:00'"})
    tenant_id, batch_id = new_id(), new_id()
    per_row = tuple(c for c in _COLUMNS if c not in ("tenant_id", "batch_id"))
    loader = LocalInfileLoad(mm.Message.__table__, per_row)
    rows = _rows(tenant_id, batch_id, 3_000)
    statements: list[str] = []
    try:
        async with engine.begin() as conn:
            event.listen(conn.sync_connection, "before_cursor_execute",
                         lambda _c, _cur, sql, *_: statements.append(sql))
            assert await loader.execute(conn, [tuple(r[c] for c in per_row) for r in rows],
                                        shared={"tenant_id": tenant_id, "batch_id": batch_id}) == 3_000
        async with engine.connect() as conn:
            stored = (await conn.execute(sa.select(sa.func.count()).select_from(mm.Message).where(
                mm.Message.batch_id == batch_id))).scalar_one()
    finally:
        await engine.dispose()
    assert stored == 3_000
    assert statements[0].startswith("LOAD DATA LOCAL") and statements[1].startswith("INSERT")
    await delete_messages(mariadb_database, tenant_id)
