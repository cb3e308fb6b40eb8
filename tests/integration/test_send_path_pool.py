"""The MariaDB pool without pool_pre_ping's and the reset's round trip on every transaction
(database._lean_pool): a committed connection goes back without a ROLLBACK, anything else is
still rolled back, and a connection idle for a while is still pinged and replaced if dead."""

from __future__ import annotations

import harness
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from wework.persistence import database
from wework.persistence.errors import is_unavailable
from wework.persistence.uow import open_unit_of_work

pytestmark = pytest.mark.mariadb


@pytest.fixture
async def engine(mariadb_server, unique_db_prefix):
    name = f"{unique_db_prefix}_pool"
    harness.create_scratch_database(mariadb_server, name, "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)",
                                    "INSERT INTO t VALUES (1, 0)")
    engine = harness.single_connection_engine(mariadb_server, name)
    yield engine
    await engine.dispose()


async def _counters(engine) -> tuple[int, int, int]:
    """(connection id, Com_commit, Com_rollback) of the pooled connection, in a committed read."""
    async with engine.connect() as conn:
        conn_id = (await conn.execute(sa.text("SELECT CONNECTION_ID()"))).scalar_one()
        rows = dict((await conn.execute(sa.text(
            "SHOW SESSION STATUS WHERE Variable_name IN ('Com_commit', 'Com_rollback')"))).all())
        await conn.commit()
    return conn_id, int(rows["Com_commit"]), int(rows["Com_rollback"])


def _row_is_free(mariadb_server, name: str) -> bool:
    """Whether another connection can lock row 1 at once (nobody holds it)."""
    other = mariadb_server.sync_connect(name, autocommit=False)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT v FROM t WHERE id = 1 FOR UPDATE NOWAIT")
        return True
    except pymysql.err.OperationalError:
        return False
    finally:
        other.rollback()
        other.close()


async def test_a_committed_connection_goes_back_without_a_rollback(engine):
    conn_id, _, rollbacks = await _counters(engine)
    async with open_unit_of_work(engine, "test", None, None) as uow:
        await uow.session.execute(sa.text("UPDATE t SET v = v + 1 WHERE id = 1"))
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE t SET v = v + 1 WHERE id = 1"))
    same_id, _, after = await _counters(engine)
    assert same_id == conn_id and after == rollbacks


async def test_anything_not_committed_is_rolled_back_on_return(engine, mariadb_server):
    name = engine.url.database
    _, _, rollbacks = await _counters(engine)
    session = AsyncSession(bind=engine)
    await session.execute(sa.text("SELECT v FROM t WHERE id = 1 FOR UPDATE"))
    assert not _row_is_free(mariadb_server, name)
    await session.close()  # no commit: the lock must not stay on the pooled connection
    assert _row_is_free(mariadb_server, name)
    _, _, after = await _counters(engine)
    assert after > rollbacks


async def test_an_idle_dead_connection_is_replaced_at_checkout(engine, mariadb_server, monkeypatch):
    monkeypatch.setattr(database, "PING_IF_IDLE_SECONDS", 0.0)
    conn_id, _, _ = await _counters(engine)
    harness.kill_connection(mariadb_server, conn_id)  # as a failover or the server's idle timeout would
    async with open_unit_of_work(engine, "test", None, None) as uow:
        await uow.session.execute(sa.text("UPDATE t SET v = v + 1 WHERE id = 1"))
    new_id, _, _ = await _counters(engine)
    assert new_id != conn_id


async def test_a_connection_dead_since_its_last_use_fails_once_then_the_pool_recovers(
        engine, mariadb_server, monkeypatch):
    # Used a moment ago, so not pinged: the statement meets the dead connection and fails as
    # retryable (UNAVAILABLE for a caller); the pool is invalidated and the next use reconnects.
    monkeypatch.setattr(database, "PING_IF_IDLE_SECONDS", 3600.0)
    conn_id, _, _ = await _counters(engine)
    harness.kill_connection(mariadb_server, conn_id)
    with pytest.raises(Exception) as failed:
        async with open_unit_of_work(engine, "test", None, None) as uow:
            await uow.session.execute(sa.text("UPDATE t SET v = v + 1 WHERE id = 1"))
    assert is_unavailable(failed.value) or is_unavailable(failed.value.__cause__)
    new_id, _, _ = await _counters(engine)
    assert new_id != conn_id
