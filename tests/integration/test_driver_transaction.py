"""Units of work on the pooled driver connection (driver_tx, the group commit's path): they
commit, roll back, report errors and treat dead or abandoned connections like the general path,
and Database.shard_unit_of_work(rendered_sql=True) takes them only where they apply."""

from __future__ import annotations

import asyncio

import harness
import pymysql
import pytest
import sqlalchemy as sa
from harness.batches import delete_messages
from wework.domain.errors import Unavailable
from wework.persistence import database
from wework.persistence.driver_tx import DriverTransaction
from wework.persistence.errors import is_duplicate_key
from wework.persistence.uow import open_driver_unit_of_work

pytestmark = pytest.mark.mariadb


@pytest.fixture
async def engine(mariadb_server, unique_db_prefix):
    name = f"{unique_db_prefix}_drv"
    harness.create_scratch_database(mariadb_server, name, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(2000) NOT NULL)")
    engine = harness.single_connection_engine(mariadb_server, name)
    yield engine
    await engine.dispose()


def _query(mariadb_server, name: str, sql: str) -> list[tuple]:
    other = mariadb_server.sync_connect(name)
    try:
        with other.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        other.close()


async def _session_counters(engine) -> tuple[int, int]:
    """(connection id, Com_rollback) of the pooled connection."""
    async with engine.connect() as conn:
        conn_id = (await conn.execute(sa.text("SELECT CONNECTION_ID()"))).scalar_one()
        rows = dict((await conn.execute(sa.text("SHOW SESSION STATUS LIKE 'Com_rollback'"))).all())
        await conn.commit()
    return conn_id, int(rows["Com_rollback"])


async def test_it_commits_then_runs_the_hooks_and_returns_the_connection_without_a_rollback(engine, mariadb_server):
    name = engine.url.database
    conn_id, rollbacks = await _session_counters(engine)
    seen_by_hook: list[list[tuple]] = []
    async with open_driver_unit_of_work(engine, "test", None, None) as uow:
        assert isinstance(uow.session, DriverTransaction)
        assert await uow.session.exec_driver_sql("INSERT INTO t VALUES (1, 'a'), (2, 'b')") == 2
        uow.after_commit(lambda: seen_by_hook.append(_query(mariadb_server, name, "SELECT id FROM t ORDER BY id")))
        assert _query(mariadb_server, name, "SELECT id FROM t") == []  # not committed yet
    assert seen_by_hook == [[(1,), (2,)]]
    same_id, after = await _session_counters(engine)
    assert same_id == conn_id and after == rollbacks


async def test_an_error_in_the_work_rolls_back_and_the_connection_stays_usable(engine, mariadb_server):
    name = engine.url.database
    conn_id, _ = await _session_counters(engine)
    with pytest.raises(RuntimeError):
        async with open_driver_unit_of_work(engine, "test", None, None) as uow:
            await uow.session.exec_driver_sql("INSERT INTO t VALUES (1, 'a')")
            raise RuntimeError("the caller failed")
    assert _query(mariadb_server, name, "SELECT id FROM t") == []
    async with open_driver_unit_of_work(engine, "test", None, None) as uow:
        await uow.session.exec_driver_sql("INSERT INTO t VALUES (2, 'b')")
    assert _query(mariadb_server, name, "SELECT id FROM t") == [(2,)]
    same_id, _ = await _session_counters(engine)
    assert same_id == conn_id  # the rollback left it clean: kept, not replaced


async def test_a_duplicate_key_is_sqlalchemys_integrity_error_naming_only_the_statements_head(engine, mariadb_server):
    name = engine.url.database
    long_value = "x" * 1500
    with pytest.raises(sa.exc.IntegrityError) as failed:
        async with open_driver_unit_of_work(engine, "test", None, None) as uow:
            await uow.session.exec_driver_sql(f"INSERT INTO t VALUES (1, '{long_value}'), (1, 'again')")
    assert is_duplicate_key(failed.value)
    assert isinstance(failed.value.orig, pymysql.err.IntegrityError)
    assert long_value not in str(failed.value)  # the rendered values stay out of errors and logs
    assert _query(mariadb_server, name, "SELECT id FROM t") == []


async def test_a_connection_killed_since_its_last_use_fails_as_unavailable_then_the_pool_recovers(
        engine, mariadb_server, monkeypatch):
    monkeypatch.setattr(database, "PING_IF_IDLE_SECONDS", 3600.0)  # used a moment ago: no ping
    conn_id, _ = await _session_counters(engine)
    harness.kill_connection(mariadb_server, conn_id)
    with pytest.raises(Unavailable):
        async with open_driver_unit_of_work(engine, "test", None, None) as uow:
            await uow.session.exec_driver_sql("INSERT INTO t VALUES (1, 'a')")
    async with open_driver_unit_of_work(engine, "test", None, None) as uow:
        await uow.session.exec_driver_sql("INSERT INTO t VALUES (2, 'b')")
    new_id, _ = await _session_counters(engine)
    assert new_id != conn_id
    assert _query(mariadb_server, engine.url.database, "SELECT id FROM t") == [(2,)]


async def test_an_idle_dead_connection_is_replaced_at_checkout(engine, mariadb_server, monkeypatch):
    monkeypatch.setattr(database, "PING_IF_IDLE_SECONDS", 0.0)  # the pool's checkout ping applies here too
    conn_id, _ = await _session_counters(engine)
    harness.kill_connection(mariadb_server, conn_id)
    async with open_driver_unit_of_work(engine, "test", None, None) as uow:
        await uow.session.exec_driver_sql("INSERT INTO t VALUES (1, 'a')")
    assert _query(mariadb_server, engine.url.database, "SELECT id FROM t") == [(1,)]


async def test_a_transaction_cancelled_mid_statement_commits_nothing_and_its_connection_is_not_reused(
        engine, mariadb_server):
    name = engine.url.database
    conn_id, _ = await _session_counters(engine)
    started = asyncio.Event()

    async def slow() -> None:
        async with open_driver_unit_of_work(engine, "test", None, None) as uow:
            await uow.session.exec_driver_sql("INSERT INTO t VALUES (1, 'a')")
            started.set()
            await uow.session.exec_driver_sql("SELECT SLEEP(30)")

    task = asyncio.create_task(slow())
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.2)  # the SLEEP is on the wire
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Its state is unknown (a result still on the way): closed, so the pool hands out a new one.
    async with open_driver_unit_of_work(engine, "test", None, None) as uow:
        await uow.session.exec_driver_sql("INSERT INTO t VALUES (2, 'b')")
    new_id, _ = await _session_counters(engine)
    assert new_id != conn_id
    assert _query(mariadb_server, name, "SELECT id FROM t") == [(2,)]


async def test_shard_units_of_work_take_the_driver_path_only_for_rendered_sql_on_unreplicated_mariadb(
        mariadb_database, sqlite_database, monkeypatch):
    shard = mariadb_database.shard_names[0]
    async with mariadb_database.shard_unit_of_work("message", shard, rendered_sql=True) as uow:
        assert isinstance(uow.session, DriverTransaction)
    async with mariadb_database.shard_unit_of_work("message", shard) as uow:
        assert not isinstance(uow.session, DriverTransaction)
    async with sqlite_database.shard_unit_of_work("message", sqlite_database.shard_names[0], rendered_sql=True) as uow:
        assert not isinstance(uow.session, DriverTransaction)  # SQLite binds parameters instead
    # A replicated shard's writes are tracked (their GTID, for reads that follow): the general path.
    monkeypatch.setattr(mariadb_database.replicas, "has_replicas", lambda _shard: True)
    async with mariadb_database.shard_unit_of_work("message", shard, rendered_sql=True) as uow:
        assert not isinstance(uow.session, DriverTransaction)


async def test_the_group_commit_of_plain_sends_bypasses_sqlalchemys_execution_and_commits(mariadb_database):
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from wework.domain.messages import Message, MessageType
    from wework.persistence.ids import new_id
    from wework.server.application.messages import MessageWriter, _Pending

    db, tenant_id = mariadb_database, new_id()
    shard = db.shard_for(tenant_id)
    now = datetime.now(UTC)
    writer = MessageWriter(SimpleNamespace(db=db, clock=lambda: now), quota=None, on_accepted=[])  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()

    def pending(template_id: str | None = None) -> _Pending:
        message = Message(id=new_id(), tenant_id=tenant_id, account_id=new_id(), conversation_id="wm",
                          message_type=MessageType.TEXT, content={"text": "hi"}, created_at=now, updated_at=now,
                          template_id=template_id)
        return _Pending(message, new_id(), 100, now.date(), loop.create_future())

    statements: list[str] = []
    engine = db.engine("message", shard).sync_engine
    listener = lambda _conn, _cursor, statement, *_rest: statements.append(statement)
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        plain = [pending(), pending()]
        await writer._write(shard, plain)
        assert statements == []  # idempotency keys, messages and COMMIT went to the driver directly
        templated = [pending(), pending(template_id=new_id())]
        await writer._write(shard, templated)
        assert any(s.startswith("UPDATE message_templates") for s in statements)  # the ORM's counter update
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
        repo = uow.messages
        for item in plain + templated:
            assert await repo.get(tenant_id, item.message.id) == item.message
            assert await repo.get_idempotent(tenant_id, "SendMessage", item.request_id) == item.message.id
    await delete_messages(db, tenant_id)
