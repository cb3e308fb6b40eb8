"""A large batch written by two connections at once, atomically (MariaDB XA branches).

StartBatchTask writes the first share of a large batch in its own transaction and the rest in
an XA branch on a second connection, prepared before Start commits and committed after
(BatchRepository.materialize_task, wework.persistence.xa). These tests pin what a user must
never see: part of a batch, a batch written twice, or rows a crash left behind. A process killed
with SIGKILL between the two commits, or before Start's, leaves a prepared branch that the
dispatcher's sweep commits or rolls back from what the task records.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from harness.batches import add_created_task, delete_messages
from wework.domain.batches import BatchStatus
from wework.persistence.bulk import BulkLoadIncomplete
from wework.persistence.ids import new_id
from wework.persistence.models import message as mm
from wework.persistence.repositories.batches import SPLIT_MIN_ROWS
from wework.server.workers.dispatch import Dispatcher, DispatchSettings

pytestmark = pytest.mark.mariadb


@pytest.fixture
async def tenant_id(mariadb_database):
    """A tenant of its own. Afterwards nothing of the test is left in the shared databases: no
    prepared branch (it would hold its locks, and the table's metadata lock that DROP DATABASE
    waits for), and no pending message (later tests' dispatchers would claim and cancel them
    all, which slows them past their timing checks)."""
    db, tenant = mariadb_database, new_id()
    yield tenant
    for shard in db.shard_names:
        async with db.shard_unit_of_work("message", shard) as uow:
            left = await uow.batches.prepared_materializations()
        for xid in left:
            async with db.shard_unit_of_work("message", shard) as uow:
                await uow.batches.finish_prepared(xid, commit=False)
    await delete_messages(db, tenant)


def _shared(tenant_id: str, task_id: str) -> dict:
    return {"updated_at": datetime(2026, 11, 29, 10, 0, tzinfo=UTC), "tenant_id": tenant_id, "account_id": "acc-1",
            "message_type": "text", "content": {"text": "hello"}, "template_id": None, "batch_id": task_id,
            "priority": 5}


def _rows(n: int) -> list[dict]:
    at = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    return [{"id": new_id(), "created_at": at + timedelta(microseconds=i), "conversation_id": f"c-{i}"}
            for i in range(n)]


async def _visible(db, tenant_id: str, task_id: str) -> int:
    async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
        return (await uow.session.execute(sa.select(sa.func.count()).select_from(mm.Message).where(
            mm.Message.tenant_id == tenant_id, mm.Message.batch_id == task_id))).scalar_one()


async def _prepared(db, tenant_id: str) -> list:
    async with db.unit_of_work("message", tenant_id) as uow:
        return await uow.batches.prepared_materializations()


def _sweeper(db) -> Dispatcher:
    return Dispatcher(db, None, None, DispatchSettings())


async def test_a_large_batch_is_written_by_two_connections_in_one_transaction(mariadb_database, tenant_id):
    db = mariadb_database
    task_id = await add_created_task(db, tenant_id)
    async with db.unit_of_work("message", tenant_id) as uow:
        repo = uow.batches
        await repo.get(tenant_id, task_id, for_update=True)
        branches = await repo.materialize_task(task_id, _rows(SPLIT_MIN_ROWS), shared=_shared(tenant_id, task_id))
        assert branches is not None and len(branches.xids) == 1
        # Written and prepared, but nothing is visible before Start commits.
        assert await _prepared(db, tenant_id) == branches.xids
        assert await _visible(db, tenant_id, task_id) == 0
        uow.enlist(branches)
    assert await _visible(db, tenant_id, task_id) == SPLIT_MIN_ROWS
    assert await _prepared(db, tenant_id) == []


async def test_a_small_batch_or_one_writer_uses_start_s_connection_alone(mariadb_database, tenant_id):
    db = mariadb_database
    for rows, writers in ((SPLIT_MIN_ROWS - 1, 2), (SPLIT_MIN_ROWS, 1)):
        task_id = await add_created_task(db, tenant_id)
        async with db.unit_of_work("message", tenant_id) as uow:
            assert await uow.batches.materialize_task(
                task_id, _rows(rows), shared=_shared(tenant_id, task_id), writers=writers) is None
        assert await _visible(db, tenant_id, task_id) == rows


@pytest.mark.parametrize("bad_share", ["Start's own", "the branch's"])
async def test_a_share_that_fails_leaves_no_row_and_no_branch(mariadb_database, tenant_id, bad_share):
    db = mariadb_database
    task_id = await add_created_task(db, tenant_id)
    taken = _rows(1)
    async with db.unit_of_work("message", tenant_id) as uow:
        await uow.batches.materialize(taken, shared=_shared(tenant_id, new_id()))
    rows = _rows(SPLIT_MIN_ROWS)
    rows[0 if bad_share == "Start's own" else -1] = dict(taken[0])  # a duplicate key: that share fails
    with pytest.raises(BulkLoadIncomplete):
        async with db.unit_of_work("message", tenant_id) as uow:
            repo = uow.batches
            await repo.get(tenant_id, task_id, for_update=True)
            uow.enlist(await repo.materialize_task(task_id, rows, shared=_shared(tenant_id, task_id)))
    assert await _visible(db, tenant_id, task_id) == 0
    assert await _prepared(db, tenant_id) == []


_KILLED_START = textwrap.dedent("""
    import asyncio, os, signal, sys
    from datetime import UTC, datetime, timedelta
    from wework.persistence.config import DatabaseConfig
    from wework.persistence.database import Database
    from wework.persistence.ids import new_id
    from wework.persistence.repositories.batches import BatchRepository

    async def main(tenant_id, task_id, n, when):
        db = Database(DatabaseConfig.model_validate_json(os.environ["WEWORK_TEST_DB"]), ["message"])
        await db.start()
        at = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
        rows = [{"id": new_id(), "created_at": at + timedelta(microseconds=i), "conversation_id": f"c-{i}"}
                for i in range(n)]
        shared = {"updated_at": at, "tenant_id": tenant_id, "account_id": "acc-1", "message_type": "text",
                  "content": {"text": "hello"}, "template_id": None, "batch_id": task_id, "priority": 5}
        async with db.unit_of_work("message", tenant_id) as uow:
            repo = uow.batches
            await repo.get(tenant_id, task_id, for_update=True)
            await repo.materialize_task(task_id, rows, shared=shared)  # prepared, never enlisted
            if when == "before-commit":
                os.kill(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)  # Start committed; its branch did not

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
""")


async def _start_and_kill(db, tenant_id: str, task_id: str, when: str) -> None:
    env = {**os.environ, "WEWORK_TEST_DB": db.config.model_dump_json()}
    proc = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-c", _KILLED_START, tenant_id, task_id, str(SPLIT_MIN_ROWS), when],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


async def test_a_branch_left_by_a_start_killed_after_its_commit_is_committed_by_the_sweep(mariadb_database, tenant_id):
    db = mariadb_database
    task_id = await add_created_task(db, tenant_id)
    await _start_and_kill(db, tenant_id, task_id, "after-commit")
    # Start's share is visible, the branch's is prepared: the task must not look finished.
    assert await _visible(db, tenant_id, task_id) == SPLIT_MIN_ROWS // 2
    assert len(await _prepared(db, tenant_id)) == 1
    assert await _sweeper(db).resolve_prepared_batches(db.shard_for(tenant_id)) == 1
    assert await _visible(db, tenant_id, task_id) == SPLIT_MIN_ROWS
    assert await _prepared(db, tenant_id) == []
    # Another sweep finds nothing more to do: no row is written twice.
    assert await _sweeper(db).resolve_prepared_batches(db.shard_for(tenant_id)) == 0
    assert await _visible(db, tenant_id, task_id) == SPLIT_MIN_ROWS


async def test_a_branch_left_by_a_start_killed_before_its_commit_is_rolled_back_by_the_sweep(mariadb_database, tenant_id):
    db = mariadb_database
    task_id = await add_created_task(db, tenant_id)
    await _start_and_kill(db, tenant_id, task_id, "before-commit")
    assert len(await _prepared(db, tenant_id)) == 1
    assert await _sweeper(db).resolve_prepared_batches(db.shard_for(tenant_id)) == 1
    assert await _visible(db, tenant_id, task_id) == 0
    assert await _prepared(db, tenant_id) == []
    async with db.unit_of_work("message", tenant_id) as uow:
        task = await uow.batches.get(tenant_id, task_id)
    assert task.status is BatchStatus.CREATED  # Start may be called again


async def test_the_sweep_waits_for_a_start_in_flight_and_never_rolls_it_back(mariadb_database, tenant_id):
    db = mariadb_database
    task_id = await add_created_task(db, tenant_id)
    sweep = None
    async with db.unit_of_work("message", tenant_id) as uow:
        repo = uow.batches
        await repo.get(tenant_id, task_id, for_update=True)
        branches = await repo.materialize_task(task_id, _rows(SPLIT_MIN_ROWS), shared=_shared(tenant_id, task_id))
        uow.enlist(branches)
        # A sweep sees the prepared branch while Start is still in flight: it must wait for
        # Start's transaction (the task row's lock), not decide from what it sees now.
        sweep = asyncio.create_task(_sweeper(db).resolve_prepared_batches(db.shard_for(tenant_id)))
        await asyncio.sleep(0.5)
        assert not sweep.done()
    await asyncio.wait_for(sweep, 10)
    assert await _visible(db, tenant_id, task_id) == SPLIT_MIN_ROWS
    assert await _prepared(db, tenant_id) == []
