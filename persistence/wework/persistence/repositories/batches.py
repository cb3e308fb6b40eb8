"""Batch send tasks: rows, the import staging table, bulk materialization, counters.

Counters are never kept as running sums that could drift: `counts()` reads them from the
task's messages, from idx_batch_counts alone (tenant_id, batch_id, status, send_time), and the
task row stores the last reading.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from wework.domain.batches import (
    BatchStatus,
    BatchTarget,
    BatchTask,
    Counters,
    SendStrategy,
    TargetFilter,
    TargetType,
)
from wework.domain.messages import MessageStatus
from wework.persistence import xa
from wework.persistence.bulk import LocalInfileLoad
from wework.persistence.ids import new_id
from wework.persistence.models import message as mm

B = mm.BatchSendTask
M = mm.Message
I = mm.BatchImportTarget
MS = MessageStatus

# Rows per LOAD DATA statement: big enough to amortize the round trips, small enough that the
# server starts on the first one soon (the next is rendered while it runs).
MATERIALIZE_CHUNK = 5000

# A batch this large is written by several connections at once, each an XA branch of Start's
# transaction (wework.persistence.xa): the server runs one thread per connection. Smaller
# batches are written faster than the branches are set up.
MATERIALIZE_WRITERS = 2
SPLIT_MIN_ROWS = 20_000
# XA global ids of materialization branches: "wb", the database, the task. XA RECOVER lists
# the branches of every database on the server, and several shards may share one.
_XA_PREFIX = "wb:"


def _xa_prefix(conn: AsyncConnection) -> str:
    """This database's prefix of branch ids (gtrid and bqual are at most 64 bytes each)."""
    database = conn.engine.url.database or ""
    return f"{_XA_PREFIX}{hashlib.sha256(database.encode()).hexdigest()[:12]}:"

# messages columns written by materialization, in order. status, retry_count and paused are
# left to their server defaults (pending, 0, false): materialized messages are always new and
# pending, and every value the server need not parse is cheaper (about 15% of the INSERT).
_COLUMNS = ("id", "created_at", "updated_at", "tenant_id", "account_id", "conversation_id", "message_type",
            "content", "template_id", "batch_id", "priority")
# One loader per set of columns that vary from row to row (the rest are shared by the batch).
_LOADERS: dict[tuple[str, ...], tuple[LocalInfileLoad, Callable[[Any], Any]]] = {}


def _loader(shared: Mapping[str, Any]) -> tuple[LocalInfileLoad, Callable[[Any], Any]]:
    per_row = tuple(c for c in _COLUMNS if c not in shared)
    loader = _LOADERS.get(per_row)
    if loader is None:
        if unknown := set(shared) - set(_COLUMNS):
            raise ValueError(f"materialization does not write {sorted(unknown)}")
        get = itemgetter(*per_row)
        values = get if len(per_row) > 1 else lambda row: (get(row),)
        loader = _LOADERS[per_row] = (LocalInfileLoad(M.__table__, per_row), values)
    return loader


def _strategy_to_json(s: SendStrategy) -> dict[str, Any]:
    return {"rate_per_minute": s.rate_per_minute, "jitter_seconds": s.jitter_seconds, "time_zone": s.time_zone,
            "window_start": s.window_start, "window_end": s.window_end, "priority": s.priority}


def _target_config(t: BatchTask) -> dict[str, Any]:
    if t.target_type is TargetType.MANUAL:
        return {"targets": [{"conversation_id": x.conversation_id, "variables": x.variables or None}
                            for x in t.manual_targets]}
    if t.target_type is TargetType.FILTER and t.target_filter is not None:
        f = t.target_filter
        return {"tags": list(f.tags), "conversation_type": f.conversation_type,
                "active_since": f.active_since.isoformat() if f.active_since else None}
    return {}


def task_from_row(r: mm.BatchSendTask) -> BatchTask:
    body = dict(r.message_content or {})
    cfg = dict(r.target_config or {})
    kind = TargetType(r.target_type)
    task = BatchTask(
        id=r.id, tenant_id=r.tenant_id, creator_id=r.creator_id, task_name=r.task_name, account_id=r.account_id,
        template_id=r.template_id or "", message_type=body.get("message_type", ""),
        content=dict(body.get("content") or {}), variables=dict(body.get("variables") or {}), target_type=kind,
        send_strategy=SendStrategy(**(r.send_strategy or {})), status=BatchStatus(r.status),
        total_count=r.total_count, sent_count=r.sent_count, success_count=r.success_count,
        failed_count=r.failed_count, progress_percent=float(r.progress_percent or 0), start_time=r.start_time,
        end_time=r.end_time, estimated_duration_seconds=r.estimated_duration or 0,
        error_message=r.error_message or "", created_at=r.created_at, updated_at=r.updated_at, version=r.version,
        materialized_count=r.materialized_count or 0)
    if kind is TargetType.MANUAL:
        task.manual_targets = [BatchTarget(x["conversation_id"], dict(x.get("variables") or {}))
                               for x in cfg.get("targets", [])]
    elif kind is TargetType.FILTER:
        since = cfg.get("active_since")
        task.target_filter = TargetFilter(tuple(cfg.get("tags") or ()), cfg.get("conversation_type") or "",
                                          datetime.fromisoformat(since) if since else None)
    return task


class BatchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    # -- tasks --

    async def add(self, t: BatchTask) -> None:
        await self._s.execute(sa.insert(B).values(
            id=t.id, tenant_id=t.tenant_id, creator_id=t.creator_id, task_name=t.task_name, account_id=t.account_id,
            template_id=t.template_id or None,
            message_content={"message_type": t.message_type, "content": t.content, "variables": t.variables},
            target_type=t.target_type.value, target_config=_target_config(t),
            send_strategy=_strategy_to_json(t.send_strategy), status=t.status.value, version=t.version,
            # A MANUAL task knows its recipients from the start: Get must say so before Start.
            total_count=t.total_count, created_at=t.created_at, updated_at=t.updated_at))

    async def get(self, tenant_id: str, task_id: str, *, for_update: bool = False) -> BatchTask | None:
        stmt = sa.select(B).where(B.id == task_id, B.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else task_from_row(row)

    async def save(self, t: BatchTask) -> BatchTask:
        """Writes status, times and counters; the version goes up by one."""
        t.version += 1
        await self._s.execute(
            sa.update(B).where(B.id == t.id, B.tenant_id == t.tenant_id).values(
                status=t.status.value, total_count=t.total_count, sent_count=t.sent_count,
                success_count=t.success_count, failed_count=t.failed_count,
                progress_percent=Decimal(str(round(t.progress_percent, 2))), start_time=t.start_time,
                end_time=t.end_time, estimated_duration=t.estimated_duration_seconds,
                error_message=t.error_message or None, version=t.version, updated_at=t.updated_at,
                materialized_count=t.materialized_count))
        return t

    async def count_late_failure(self, tenant_id: str, task_id: str, now: datetime) -> bool:
        """A message of a completed or failed task failed after it was sent (a late receipt):
        one moves from success to failed in the task's stored counters, in the receipt's own
        transaction. Running and paused tasks re-read their counters when they end, and
        cancelled ones on every read, so they are left alone."""
        done = (BatchStatus.COMPLETED.value, BatchStatus.FAILED.value)
        result = await self._s.execute(
            sa.update(B).where(B.id == task_id, B.tenant_id == tenant_id, B.status.in_(done), B.success_count > 0)
            .values(success_count=B.success_count - 1, failed_count=B.failed_count + 1,
                    version=B.version + 1, updated_at=now))
        return result.rowcount == 1

    async def list_page(self, tenant_id: str, status: BatchStatus | None, account_id: str,
                        after: tuple[datetime, str] | None, limit: int) -> list[BatchTask]:
        stmt = sa.select(B).where(B.tenant_id == tenant_id)
        if status is not None:
            stmt = stmt.where(B.status == status.value)
        if account_id:
            stmt = stmt.where(B.account_id == account_id)
        if after is not None:
            stmt = stmt.where(sa.tuple_(B.created_at, B.id) < sa.tuple_(*after))
        stmt = stmt.order_by(B.created_at.desc(), B.id.desc()).limit(limit)
        return [task_from_row(r) for r in (await self._s.execute(stmt)).scalars()]

    async def active_ids(self, limit: int = 500) -> list[tuple[str, str]]:
        """(tenant_id, id) of running tasks on this shard (for the finishing sweep)."""
        rows = await self._s.execute(sa.select(B.tenant_id, B.id).where(B.status == BatchStatus.RUNNING.value)
                                     .limit(limit))
        return [(r.tenant_id, r.id) for r in rows]

    # -- counters --

    async def counts(self, tenant_id: str, task_id: str) -> Counters:
        rows = await self._s.execute(
            sa.select(M.status, sa.func.count(), sa.func.sum(sa.case((M.send_time.is_not(None), 1), else_=0)))
            .where(M.tenant_id == tenant_id, M.batch_id == task_id).group_by(M.status))
        by_status: dict[str, int] = {}
        failed_after_send = 0
        for status, n, with_send in rows:
            by_status[status] = int(n)
            if status == MS.FAILED.value:
                failed_after_send = int(with_send or 0)
        return Counters.from_status_counts(by_status, failed_after_send)

    # -- pause, resume, cancel --

    async def set_paused(self, tenant_id: str, task_id: str, paused: bool) -> int:
        result = await self._s.execute(
            sa.update(M).where(M.tenant_id == tenant_id, M.batch_id == task_id, M.status == MS.PENDING.value)
            .values(paused=paused))
        return int(result.rowcount or 0)

    async def cancel_pending(self, tenant_id: str, task_id: str, now: datetime) -> int:
        result = await self._s.execute(
            sa.update(M).where(M.tenant_id == tenant_id, M.batch_id == task_id, M.status == MS.PENDING.value)
            .values(status=MS.CANCELLED.value, updated_at=now, hold_reason=None))
        return int(result.rowcount or 0)

    # -- import staging --

    async def add_import_targets(self, task_id: str, targets: Sequence[BatchTarget]) -> None:
        if targets:
            await self._s.execute(sa.insert(I), [
                {"task_id": task_id, "conversation_id": t.conversation_id, "variables": t.variables or None}
                for t in targets])

    async def import_count(self, task_id: str) -> int:
        return int((await self._s.execute(
            sa.select(sa.func.count()).select_from(I).where(I.task_id == task_id))).scalar_one())

    async def import_targets(self, task_id: str, chunk: int = 5000) -> AsyncIterator[BatchTarget]:
        last = 0
        while True:
            rows = (await self._s.execute(sa.select(I.id, I.conversation_id, I.variables)
                                          .where(I.task_id == task_id, I.id > last).order_by(I.id)
                                          .limit(chunk))).all()
            for r in rows:
                yield BatchTarget(r.conversation_id, dict(r.variables or {}))
            if len(rows) < chunk:
                return
            last = rows[-1].id

    async def drop_import_targets(self, task_id: str) -> None:
        await self._s.execute(sa.delete(I).where(I.task_id == task_id))

    # -- materialization --

    async def materialize_task(self, task_id: str, rows: Sequence[Mapping[str, Any]], *,
                               shared: Mapping[str, Any] | None = None, writers: int = MATERIALIZE_WRITERS,
                               chunk: int = MATERIALIZE_CHUNK) -> xa.PreparedBranches | None:
        """Start's write of a task's messages (as `materialize`), with the task row locked in
        this session. On MariaDB a batch of SPLIT_MIN_ROWS or more is split over `writers`
        connections: this session writes the first share and records the attempt on the task
        (the decision), and the other shares are written in XA branches and prepared. The
        caller enlists the returned branches in its unit of work, which commits them after its
        own COMMIT; the dispatcher's sweep (`Dispatcher.resolve_prepared_batches`) settles
        branches a crash left in between."""
        conn = await self._s.connection()
        if writers <= 1 or len(rows) < SPLIT_MIN_ROWS or conn.dialect.name not in ("mysql", "mariadb"):
            await self.materialize(rows, chunk, shared=shared)
            return None
        attempt = new_id()
        await self._s.execute(sa.update(B).where(B.id == task_id).values(materialization_id=attempt))
        size = -(-len(rows) // writers)
        shares = [rows[start:start + size] for start in range(0, len(rows), size)]
        xids = [xa.Xid(_xa_prefix(conn) + task_id, f"{attempt}.{i}") for i in range(1, len(shares))]
        loader, values = _loader(shared or {})

        async def write_share(branch: AsyncConnection, i: int) -> None:
            await loader.execute(branch, shares[i + 1], values=values, max_rows=chunk, shared=shared)

        return await xa.write_in_branches(conn.engine, xids, write_share,
                                          alongside=self.materialize(shares[0], chunk, shared=shared))

    async def materialization_decisions(self, xids: Sequence[xa.Xid]) -> dict[xa.Xid, bool]:
        """For branches left prepared: True where the task records the branch's attempt (Start
        committed), False where it does not (Start rolled back or died before its COMMIT).
        A locking read: a Start still in flight holds the task row, and is waited for."""
        decisions: dict[xa.Xid, bool] = {}
        for xid in xids:
            task_id = xid.gtrid.rsplit(":", 1)[1]
            recorded = (await self._s.execute(
                sa.select(B.materialization_id).where(B.id == task_id).with_for_update())).scalar_one_or_none()
            decisions[xid] = recorded is not None and xid.bqual.startswith(recorded + ".")
        return decisions

    async def prepared_materializations(self) -> list[xa.Xid]:
        """Materialization branches prepared on this database's server and not yet finished."""
        conn = await self._s.connection()
        if conn.dialect.name not in ("mysql", "mariadb"):
            return []
        return await xa.prepared(conn, _xa_prefix(conn))

    async def finish_prepared(self, xid: xa.Xid, *, commit: bool) -> bool:
        """XA COMMIT or ROLLBACK of a prepared branch; False if another process finished it
        first. The session must be new: MariaDB finishes another connection's branch only
        outside a transaction, so this session's connection is put in autocommit mode."""
        conn = await self._s.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return await xa.finish(conn, xid, commit=commit)

    async def materialize(self, rows: Sequence[Mapping[str, Any]], chunk: int = MATERIALIZE_CHUNK, *,
                          shared: Mapping[str, Any] | None = None) -> int:
        """Writes new pending messages, `chunk` rows per statement. `shared` holds the _COLUMNS
        values every message has alike (a batch's tenant, account, type, ...); each row is a
        dict of the other _COLUMNS keys. Datetimes must be aware UTC.

        Driver-level bulk load (wework.persistence.bulk): on MariaDB `LOAD DATA LOCAL` from
        memory, which the server parses for less CPU than INSERT values (the write of a large
        batch is bound by the server's one thread for the transaction), with the shared values
        once in the statement instead of in every row; elsewhere multi-row INSERTs.
        SQLAlchemy's executemany would cost more in Python than the server's work.
        """
        loader, values = _loader(shared or {})
        return await loader.execute(self._s, rows, values=values, max_rows=chunk, shared=shared)
