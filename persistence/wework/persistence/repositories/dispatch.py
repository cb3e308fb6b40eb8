"""The messages table as the durable send queue: claim, finish, defer, hold, requeue.

Claiming is one short transaction per shard: `SELECT ... FOR UPDATE SKIP LOCKED` of due
pending messages in priority, then age order, and an UPDATE to `sending` with the worker's id
and a lease. Concurrent claimers skip each other's locked rows, so no two workers ever hold one
message. Every later change is a conditional UPDATE (`status = 'sending' AND claimed_by = me`):
a worker whose lease expired and was requeued cannot overwrite the newer owner's result, and a
provider receipt that already advanced the message is never moved backwards.

Terminal changes write message_statistics in the same transaction through
`record_terminal_status` (the message repository's trigger-without-a-trigger); a recorded batch
adds the same deltas summed per (tenant, account, hour), in one statement.

Rows are addressed by their whole primary key, `(id, created_at) IN (...)`: MariaDB turns an
`id IN (...)` of 1,000 or more values into a subquery, and a single-table UPDATE with that
subquery scans the whole table. The batch paths (claim, mark_sent_many) write on MariaDB with
few statements per batch, whatever its size; see docs/benchmarks.md for the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from wework.domain.messages import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    Message,
    MessageStatus,
    MessageType,
    terminal_statistics_delta,
)
from wework.persistence.models import message as mm
from wework.persistence.models.base import UtcDateTime
from wework.persistence.repositories.messages import record_terminal_status

MS = MessageStatus
T = mm.Message
StatsKey = tuple[str, str, Any, int]  # tenant_id, account_id, stat_date, stat_hour

# What a claim reads of each row: the Message fields, nothing of the queue bookkeeping. The
# message type as plain text: Message converts it (the column's Enum type would convert it first).
_CLAIM_COLUMNS = (T.id, T.tenant_id, T.account_id, T.conversation_id,
                  sa.type_coerce(T.message_type, sa.String).label("message_type"), T.content, T.created_at,
                  T.template_id, T.wework_msg_id, T.callback_time, T.error_code, T.error_message, T.retry_count,
                  T.batch_id, T.priority, T.scheduled_time, T.hold_reason)
# The primary key (id, created_at) with created_at bound as text, the way both databases store
# and compare it (see _utc_text): formatting thousands of datetimes is a hot spot of a batch.
_PK = sa.tuple_(T.id, sa.type_coerce(T.created_at, sa.String))
_CLAIM_INDEX = "idx_messages_claim"  # (status, paused, priority, created_at)


def due_at() -> sa.ColumnElement[datetime]:
    """When a pending message is due: a retry/deferral time, else its schedule, else at once."""
    return sa.func.coalesce(T.next_attempt_at, T.scheduled_time, T.created_at)


def _claim_bands() -> list[sa.ColumnElement[bool]]:
    """The claim order in bands: each valid priority, highest first; then the priorities outside
    the valid range (never written, but read last rather than never)."""
    bands: list[sa.ColumnElement[bool]] = [T.priority == p for p in range(PRIORITY_MAX, PRIORITY_MIN - 1, -1)]
    bands.append(sa.or_(T.priority > PRIORITY_MAX, T.priority < PRIORITY_MIN))
    return bands


def _due_in(band: sa.ColumnElement[bool]) -> sa.Select[Any]:
    stmt = sa.select(T.id).where(T.status == MS.PENDING.value, T.paused == sa.false(), band,
                                 due_at() <= sa.bindparam("now", type_=UtcDateTime()))
    for dialect in ("mysql", "mariadb"):
        stmt = stmt.with_hint(T, f"FORCE INDEX ({_CLAIM_INDEX})", dialect)
    return stmt


# Statements built once (the claim runs every poll): which bands have a due message (a plain
# read), the locking read of one band in claim order, and the UPDATE of what was locked.
_DUE_BANDS = sa.union_all(*(
    sa.select(sa.literal(i).label("band")).select_from(_due_in(band).limit(1).subquery())
    for i, band in enumerate(_claim_bands())))
_CLAIM_BANDS = [
    _due_in(band).with_only_columns(*_CLAIM_COLUMNS)
    .order_by(*((T.created_at,) if i < PRIORITY_MAX - PRIORITY_MIN + 1 else (T.priority.desc(), T.created_at)))
    .limit(sa.bindparam("n")).with_for_update(skip_locked=True)
    for i, band in enumerate(_claim_bands())]
_CLAIM_UPDATE = (
    sa.update(T).where(_PK.in_(sa.bindparam("keys", expanding=True)),
                       T.status == MS.PENDING.value)
    .values(status=MS.SENDING.value, claimed_by=sa.bindparam("worker_id"),
            claimed_until=sa.bindparam("until", type_=UtcDateTime()),
            send_time=sa.bindparam("now", type_=UtcDateTime()), updated_at=sa.bindparam("now", type_=UtcDateTime())))


def _utc_text(t: datetime) -> str:
    """A UtcDateTime value as the text the databases compare it with: naive UTC with six digits
    of microseconds (MariaDB reads it as a DATETIME(6) literal, the very text the driver would
    send for the datetime; SQLite stores DATETIME in this form)."""
    if t.tzinfo is not UTC:
        if t.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use an aware datetime")
        t = t.astimezone(UTC)
    return t.replace(tzinfo=None).isoformat(" ", "microseconds")


def _keys_in(messages: Sequence[Message]) -> sa.ColumnElement[bool]:
    return _PK.in_([(m.id, _utc_text(m.created_at)) for m in messages])


@lru_cache(maxsize=64)
def _mark_sent_sql(n: int) -> str:
    """sending -> sent for n messages, each with its own wework_msg_id, in one statement: a join
    with the (id, created_at, wework_msg_id) triples (a CASE over n ids costs n comparisons a row)."""
    rows = " UNION ALL ".join(["SELECT %s AS id, CAST(%s AS DATETIME(6)) AS created_at, %s AS wework_msg_id"] * n)
    return (f"UPDATE {T.__tablename__} m JOIN (" + rows + ") v ON m.id = v.id AND m.created_at = v.created_at "
            "SET m.status = 'sent', m.wework_msg_id = v.wework_msg_id, m.claimed_by = NULL, m.claimed_until = NULL, "
            "m.hold_reason = NULL, m.held_since = NULL, m.updated_at = %s "
            "WHERE m.status = 'sending' AND m.claimed_by = %s")


@lru_cache(maxsize=64)
def _statistics_sql(n: int) -> str:
    """Adds n summed deltas to their message_statistics rows in one statement; the same
    arithmetic as upsert_statistics: counts never below zero, the mean weighted by the number of
    new response-time samples (rt_n, summing to rt_sum), computed before success_count changes."""
    row = ("SELECT %s AS tenant_id, %s AS account_id, CAST(%s AS DATE) AS stat_date, %s AS stat_hour, %s AS total, "
           "%s AS success, %s AS failed, %s AS rt_sum, %s AS rt_n")
    rows = " UNION ALL ".join([row] * n)
    return (f"INSERT INTO {mm.MessageStatistic.__tablename__} (tenant_id, account_id, stat_date, stat_hour, "
            "total_count, success_count, failed_count, avg_response_time, created_at, updated_at) "
            "SELECT v.tenant_id, v.account_id, v.stat_date, v.stat_hour, GREATEST(v.total, 0), GREATEST(v.success, 0), "
            "GREATEST(v.failed, 0), IF(v.rt_n > 0, v.rt_sum / v.rt_n, NULL), %s, %s FROM (" + rows + ") v "
            "ON DUPLICATE KEY UPDATE "
            "avg_response_time = IF(v.rt_n > 0, (COALESCE(avg_response_time, 0) * success_count + v.rt_sum) "
            "/ (success_count + v.rt_n), avg_response_time), "
            "total_count = GREATEST(total_count + v.total, 0), success_count = GREATEST(success_count + v.success, 0), "
            "failed_count = GREATEST(failed_count + v.failed, 0), updated_at = VALUES(updated_at)")


class DispatchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    def _mine(self, m: Message, worker_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(T.id == m.id, T.created_at == m.created_at, T.status == MS.SENDING.value,
                       T.claimed_by == worker_id)

    async def claim(self, worker_id: str, now: datetime, limit: int, lease: timedelta) -> list[Message]:
        """Claims up to `limit` due messages (pending, not paused) for `worker_id`, in priority,
        then age order.

        A locking read locks every row it examines, so it must read rows in the order it claims
        them: `ORDER BY priority DESC, created_at` cannot come from the ascending claim index and
        would sort, and lock, every due row. So one locking read per priority, highest first,
        each an index range `(status, paused, priority)` read in created_at order that stops
        after the rows it needs; rows another dispatcher holds are skipped (SKIP LOCKED) and the
        read goes on past them. On MariaDB a plain read first finds the priorities that have due
        messages (one round trip instead of one per priority). Then one UPDATE marks the locked
        rows `sending`.
        """
        conn = await self._s.connection()
        sqlite = conn.dialect.name == "sqlite"
        bands = range(len(_CLAIM_BANDS))
        if not sqlite:
            bands = sorted((await conn.execute(_DUE_BANDS, {"now": now})).scalars())
        rows: list[Any] = []
        for band in bands:
            # Sorted again only for ties of created_at (the index orders them by id already).
            rows.extend(sorted(await conn.execute(_CLAIM_BANDS[band], {"now": now, "n": limit - len(rows)}),
                               key=lambda r: (-r.priority, r.created_at, r.id)))
            if len(rows) >= limit:
                break
        if not rows:
            return []
        await conn.execute(_CLAIM_UPDATE, {"keys": [(r.id, _utc_text(r.created_at)) for r in rows],
                                           "worker_id": worker_id,
                                           "until": now + lease, "now": now})
        return [Message(id=r.id, tenant_id=r.tenant_id, account_id=r.account_id, conversation_id=r.conversation_id,
                        message_type=MessageType(r.message_type), content=r.content or {}, created_at=r.created_at,
                        updated_at=now, status=MS.SENDING, template_id=r.template_id, wework_msg_id=r.wework_msg_id,
                        send_time=now, callback_time=r.callback_time, error_code=r.error_code,
                        error_message=r.error_message, retry_count=r.retry_count, batch_id=r.batch_id,
                        priority=r.priority, scheduled_time=r.scheduled_time, hold_reason=r.hold_reason)
                for r in rows]

    async def release(self, messages: Sequence[Message], worker_id: str, now: datetime) -> int:
        """sending -> pending, unchanged otherwise (due as before), for claimed messages this
        worker will not send after all (it is shutting down)."""
        if not messages:
            return 0
        result = await self._s.execute(
            sa.update(T).where(_keys_in(messages), T.status == MS.SENDING.value, T.claimed_by == worker_id)
            .values(status=MS.PENDING.value, claimed_by=None, claimed_until=None, send_time=None, updated_at=now)
            .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)

    async def mark_sent(self, m: Message, worker_id: str, wework_msg_id: str, now: datetime) -> bool:
        """sending -> sent (the provider accepted it). False if the message moved on meanwhile."""
        result = await self._s.execute(
            sa.update(T).where(self._mine(m, worker_id))
            .values(status=MS.SENT.value, wework_msg_id=wework_msg_id or None, claimed_by=None,
                    claimed_until=None, hold_reason=None, held_since=None, updated_at=now))
        if result.rowcount != 1:
            return False
        await record_terminal_status(self._s, replace(m, status=MS.SENT, wework_msg_id=wework_msg_id),
                                     MS.SENDING, now)
        return True

    async def mark_sent_many(self, sent: Sequence[tuple[Message, str]], worker_id: str, now: datetime) -> int:
        """sending -> sent for many messages in this transaction: the ones this worker still owns
        (a receipt may have advanced some already). Statistics are added per (tenant, account,
        hour): the same deltas as record_terminal_status, summed.

        On MariaDB the common case is one UPDATE inside a savepoint: if it matched every message,
        all were still this worker's; if not (a receipt or a requeue got in between), it is
        rolled back and the messages still owned are locked and read first."""
        by_id = {m.id: (m, wid) for m, wid in sent}
        if not by_id:
            return 0
        if self._s.bind.dialect.name == "sqlite":
            mine = await self._owned(list(by_id.values()), worker_id)
            if not mine:  # receipts advanced them all meanwhile (an empty CASE is not SQL)
                return 0
            await self._s.execute(
                sa.update(T).where(_keys_in([m for m, _ in mine]), T.status == MS.SENDING.value,
                                   T.claimed_by == worker_id)
                .values(status=MS.SENT.value, claimed_by=None, claimed_until=None, hold_reason=None, held_since=None,
                        updated_at=now, wework_msg_id=sa.case({m.id: (wid or None) for m, wid in mine}, value=T.id))
                .execution_options(synchronize_session=False))
        else:
            mine = list(by_id.values())
            savepoint = await self._s.begin_nested()
            if await self._update_sent(mine, worker_id, now) == len(mine):
                await savepoint.commit()
            else:
                await savepoint.rollback()
                mine = await self._owned(mine, worker_id)
                await self._update_sent(mine, worker_id, now)
        await self._add_statistics(self._sent_statistics([m for m, _ in mine], now), now)
        return len(mine)

    async def _owned(self, sent: list[tuple[Message, str]], worker_id: str) -> list[tuple[Message, str]]:
        """The ones of `sent` this worker still holds, locked until the end of the transaction."""
        if not sent:
            return []
        ids = set((await self._s.execute(
            sa.select(T.id).where(_keys_in([m for m, _ in sent]), T.status == MS.SENDING.value,
                                  T.claimed_by == worker_id)
            .with_for_update())).scalars())
        return [(m, wid) for m, wid in sent if m.id in ids]

    async def _update_sent(self, sent: list[tuple[Message, str]], worker_id: str, now: datetime) -> int:
        if not sent:
            return 0
        params: list[Any] = []
        for m, wid in sent:
            params += (m.id, _utc_text(m.created_at), wid or None)
        params += (_utc_text(now), worker_id)
        conn = await self._s.connection()
        result = await conn.exec_driver_sql(_mark_sent_sql(len(sent)), tuple(params))
        return int(result.rowcount or 0)

    @staticmethod
    def _sent_statistics(messages: list[Message], now: datetime) -> dict[StatsKey, list[float]]:
        """The statistics deltas of `messages` going sending -> sent, summed per row key. The
        counts of the change come from terminal_statistics_delta (once per key: they depend on
        the statuses only); each message adds its own response-time sample."""
        groups: dict[StatsKey, list[Message]] = {}
        for m in messages:
            c = m.created_at
            groups.setdefault((m.tenant_id, m.account_id, c.date(), c.hour), []).append(m)
        totals: dict[StatsKey, list[float]] = {}
        for key, group in groups.items():
            d = terminal_statistics_delta(replace(group[0], status=MS.SENT), MS.SENDING, now=now)
            if d is None:
                continue
            n = len(group)
            samples = [max(0.0, (now - m.send_time).total_seconds()) for m in group
                       if m.send_time is not None] if d.success > 0 else []
            totals[key] = [d.total * n, d.success * n, d.failed * n, sum(samples), len(samples)]
        return totals

    async def _add_statistics(self, totals: dict[StatsKey, list[float]], now: datetime) -> None:
        if not totals:
            return
        if self._s.bind.dialect.name == "sqlite":
            for key, acc in totals.items():
                await self._upsert_statistics(key, acc, now)
            return
        params: list[Any] = [_utc_text(now), _utc_text(now)]
        # In key order: concurrent writers of overlapping rows then lock them in the same order.
        for key in sorted(totals):
            total, success, failed, rt_sum, rt_n = totals[key]
            params += (*key, int(total), int(success), int(failed), float(rt_sum), int(rt_n))
        conn = await self._s.connection()
        await conn.exec_driver_sql(_statistics_sql(len(totals)), tuple(params))

    async def _upsert_statistics(self, key: tuple[Any, ...], acc: list[float], now: datetime) -> None:
        """Adds summed counts to one message_statistics row; the mean response time is weighted
        by the number of new samples (record_terminal_status adds them one at a time)."""
        t = mm.MessageStatistic.__table__
        tenant_id, account_id, stat_date, stat_hour = key
        total, success, failed, rt_sum, rt_n = acc
        mean = rt_sum / rt_n if rt_n else None
        values = {"tenant_id": tenant_id, "account_id": account_id, "stat_date": stat_date, "stat_hour": stat_hour,
                  "total_count": max(int(total), 0), "success_count": max(int(success), 0),
                  "failed_count": max(int(failed), 0), "avg_response_time": mean, "created_at": now,
                  "updated_at": now}
        sqlite = self._s.bind.dialect.name == "sqlite"
        greatest = sa.func.max if sqlite else sa.func.greatest
        new_avg: Any = t.c.avg_response_time if not rt_n else (
            (sa.func.coalesce(t.c.avg_response_time, 0) * t.c.success_count + rt_sum) / (t.c.success_count + rt_n))
        updates = [("avg_response_time", new_avg),  # before success_count changes (left to right)
                   ("total_count", greatest(t.c.total_count + int(total), 0)),
                   ("success_count", greatest(t.c.success_count + int(success), 0)),
                   ("failed_count", greatest(t.c.failed_count + int(failed), 0)),
                   ("updated_at", now)]
        if sqlite:
            stmt = sqlite_insert(t).values(**values).on_conflict_do_update(
                index_elements=["tenant_id", "account_id", "stat_date", "stat_hour"], set_=dict(updates))
        else:
            stmt = mysql_insert(t).values(**values).on_duplicate_key_update(updates)
        await self._s.execute(stmt)

    async def mark_failed(self, m: Message, worker_id: str | None, error_code: str, error_message: str,
                          now: datetime, *, retry_count: int | None = None) -> bool:
        """sending -> failed (worker_id given) or pending -> failed (hold expired, worker_id None)."""
        where = (self._mine(m, worker_id) if worker_id is not None else
                 sa.and_(T.id == m.id, T.created_at == m.created_at, T.status == MS.PENDING.value))
        rc = m.retry_count if retry_count is None else retry_count
        result = await self._s.execute(
            sa.update(T).where(where)
            .values(status=MS.FAILED.value, error_code=error_code, error_message=error_message[:2000],
                    retry_count=rc, callback_time=now, claimed_by=None, claimed_until=None,
                    next_attempt_at=None, updated_at=now))
        if result.rowcount != 1:
            return False
        old = MS.SENDING if worker_id is not None else MS.PENDING
        await record_terminal_status(
            self._s, replace(m, status=MS.FAILED, error_code=error_code, error_message=error_message,
                             retry_count=rc), old, now)
        return True

    async def defer(self, m: Message, worker_id: str, until: datetime, now: datetime, *,
                    retry_count: int | None = None, error_code: str | None = None,
                    error_message: str | None = None, hold_reason: str | None = None,
                    held_since: datetime | None = None) -> bool:
        """sending -> pending, due again at `until` (retry backoff, pacing, hold re-check).

        A hold keeps its first `held_since` so that the hold timeout counts from the start.
        """
        values: dict[str, object] = {
            "status": MS.PENDING.value, "next_attempt_at": until, "claimed_by": None, "claimed_until": None,
            "send_time": None, "updated_at": now, "hold_reason": hold_reason,
            "held_since": sa.func.coalesce(T.held_since, held_since) if hold_reason else None,
        }
        if retry_count is not None:
            values["retry_count"] = retry_count
        if error_code is not None:
            values.update(error_code=error_code, error_message=(error_message or "")[:2000])
        result = await self._s.execute(sa.update(T).where(self._mine(m, worker_id)).values(**values))
        return result.rowcount == 1

    async def defer_many(self, items: Sequence[tuple[Message, datetime]], worker_id: str, now: datetime) -> int:
        """sending -> pending for many messages, each due again at its own time (pacing)."""
        if not items:
            return 0
        until = {m.id: at for m, at in items}
        result = await self._s.execute(
            sa.update(T).where(_keys_in([m for m, _ in items]), T.status == MS.SENDING.value,
                               T.claimed_by == worker_id)
            .values(status=MS.PENDING.value, claimed_by=None, claimed_until=None, send_time=None, updated_at=now,
                    next_attempt_at=sa.case(until, value=T.id))
            .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)

    async def held_since(self, m: Message) -> datetime | None:
        return (await self._s.execute(
            sa.select(T.held_since).where(T.id == m.id, T.created_at == m.created_at))).scalar_one_or_none()

    async def requeue_expired(self, now: datetime, limit: int = 1000) -> int:
        """Expired leases (a worker died between claim and result) go back to pending.

        The message keeps its id, which is the provider's idempotency key: a resend of a message
        the provider already accepted is answered from its record instead of sent again.
        """
        keys = [(i, _utc_text(c)) for i, c in (await self._s.execute(
            sa.select(T.id, T.created_at).where(T.status == MS.SENDING.value, T.claimed_until < now)
            .limit(limit).with_for_update(skip_locked=True))).all()]
        if not keys:
            return 0
        result = await self._s.execute(
            sa.update(T).where(_PK.in_(keys), T.status == MS.SENDING.value, T.claimed_until < now)
            .values(status=MS.PENDING.value, claimed_by=None, claimed_until=None, next_attempt_at=now,
                    updated_at=now))
        return int(result.rowcount or 0)

    async def next_due(self, now: datetime) -> datetime | None:
        """The earliest due time of a pending, unpaused message (for the idle sleep).

        Forced onto the claim index: the due time is an expression no index holds, and without
        the hint MariaDB may scan the whole table when pending rows are not rare enough."""
        stmt = sa.select(sa.func.min(due_at())).where(T.status == MS.PENDING.value, T.paused == sa.false())
        for dialect in ("mysql", "mariadb"):
            stmt = stmt.with_hint(T, f"FORCE INDEX ({_CLAIM_INDEX})", dialect)
        return (await self._s.execute(stmt)).scalar_one_or_none()

    async def due_count(self, now: datetime, examined: int) -> int:
        """The dispatch queue's depth: pending, unpaused messages due by `now`, among the first
        `examined` pending ones in claim-index order.

        The due time is an expression no index holds, so every pending row read costs a row
        lookup; reading at most `examined` of them bounds a sample's cost whatever the backlog.
        Exact while fewer messages are pending, a lower bound beyond."""
        pending = sa.select(due_at().label("due")).where(T.status == MS.PENDING.value, T.paused == sa.false())
        for dialect in ("mysql", "mariadb"):
            pending = pending.with_hint(T, f"FORCE INDEX ({_CLAIM_INDEX})", dialect)
        first = pending.limit(examined).subquery()
        return (await self._s.execute(sa.select(sa.func.count()).select_from(first).where(
            first.c.due <= sa.bindparam("now", now, type_=UtcDateTime())))).scalar_one()

    async def put_back_paused(self, m: Message, worker_id: str, now: datetime) -> bool:
        """A claimed message of a paused (or no longer running) batch goes back, marked paused."""
        result = await self._s.execute(
            sa.update(T).where(self._mine(m, worker_id))
            .values(status=MS.PENDING.value, paused=True, claimed_by=None, claimed_until=None, send_time=None,
                    updated_at=now))
        return result.rowcount == 1

    async def cancel_claimed(self, m: Message, worker_id: str, now: datetime) -> bool:
        """A claimed message of a cancelled batch is cancelled, not sent."""
        result = await self._s.execute(
            sa.update(T).where(self._mine(m, worker_id))
            .values(status=MS.CANCELLED.value, claimed_by=None, claimed_until=None, send_time=None, updated_at=now))
        return result.rowcount == 1
