"""The messages table as the durable send queue: claim, finish, defer, hold, requeue.

Claiming is one short transaction per shard: `SELECT ... FOR UPDATE SKIP LOCKED` of due
pending messages in priority, then age order, and an UPDATE to `sending` with the worker's id
and a lease. Concurrent claimers skip each other's locked rows, so no two workers ever hold one
message. Every later change is a conditional UPDATE (`status = 'sending' AND claimed_by = me`):
a worker whose lease expired and was requeued cannot overwrite the newer owner's result, and a
provider receipt that already advanced the message is never moved backwards.

Terminal changes write message_statistics in the same transaction through
`record_terminal_status` (the message repository's trigger-without-a-trigger).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from wework.domain.messages import Message, MessageStatus, terminal_statistics_delta
from wework.persistence.models import message as mm
from wework.persistence.repositories.messages import message_from_row, record_terminal_status

MS = MessageStatus
T = mm.Message


def due_at() -> sa.ColumnElement[datetime]:
    """When a pending message is due: a retry/deferral time, else its schedule, else at once."""
    return sa.func.coalesce(T.next_attempt_at, T.scheduled_time, T.created_at)


class DispatchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    def _mine(self, m: Message, worker_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(T.id == m.id, T.created_at == m.created_at, T.status == MS.SENDING.value,
                       T.claimed_by == worker_id)

    async def claim(self, worker_id: str, now: datetime, limit: int, lease: timedelta) -> list[Message]:
        """Claims up to `limit` due messages (pending, not paused) for `worker_id`.

        Two steps, because a locking read locks every row it examines: `ORDER BY priority DESC,
        created_at` cannot be read from an ascending index, so a single `SELECT ... FOR UPDATE
        SKIP LOCKED ... LIMIT n` would sort, and lock, every due row, and the other dispatchers
        would find nothing to claim. So: pick candidates with a plain read (no locks), then lock
        those by primary key, skipping the ones another dispatcher locked meanwhile; if all were
        taken, the next candidates are tried.
        """
        seen: set[str] = set()
        for _ in range(4):
            stmt = (sa.select(T.id).where(T.status == MS.PENDING.value, T.paused == sa.false(), due_at() <= now)
                    .order_by(T.priority.desc(), T.created_at, T.id).limit(limit + len(seen)))
            candidates = [i for i in (await self._s.execute(stmt)).scalars() if i not in seen][:limit]
            if not candidates:
                return []
            seen.update(candidates)
            rows = (await self._s.execute(
                sa.select(T).where(T.id.in_(candidates), T.status == MS.PENDING.value, T.paused == sa.false())
                .with_for_update(skip_locked=True))).scalars().all()
            if rows:
                break
        else:
            return []
        rows = sorted(rows, key=lambda r: (-r.priority, r.created_at, r.id))
        ids = [r.id for r in rows]
        await self._s.execute(
            sa.update(T).where(T.id.in_(ids), T.status == MS.PENDING.value)
            .values(status=MS.SENDING.value, claimed_by=worker_id, claimed_until=now + lease, send_time=now,
                    updated_at=now)
            .execution_options(synchronize_session=False))
        out = [replace(message_from_row(r), status=MS.SENDING, send_time=now, updated_at=now) for r in rows]
        self._s.expunge_all()  # the ORM rows are stale after the bulk UPDATE
        return out

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
        hour) in one upsert each: the same deltas as record_terminal_status, summed."""
        if not sent:
            return 0
        by_id = {m.id: (m, wid) for m, wid in sent}
        mine = set((await self._s.execute(
            sa.select(T.id).where(T.id.in_(list(by_id)), T.status == MS.SENDING.value, T.claimed_by == worker_id)
            .with_for_update())).scalars())
        if not mine:
            return 0
        ids = sorted(mine)
        await self._s.execute(
            sa.update(T).where(T.id.in_(ids), T.status == MS.SENDING.value, T.claimed_by == worker_id)
            .values(status=MS.SENT.value, claimed_by=None, claimed_until=None, hold_reason=None, held_since=None,
                    updated_at=now,
                    wework_msg_id=sa.case({i: (by_id[i][1] or None) for i in ids}, value=T.id))
            .execution_options(synchronize_session=False))
        totals: dict[tuple[Any, ...], list[float]] = {}
        for i in ids:
            m, wid = by_id[i]
            d = terminal_statistics_delta(replace(m, status=MS.SENT, wework_msg_id=wid), MS.SENDING, now=now)
            if d is None:
                continue
            acc = totals.setdefault((d.tenant_id, d.account_id, d.stat_date, d.stat_hour), [0, 0, 0, 0.0, 0])
            acc[0] += d.total
            acc[1] += d.success
            acc[2] += d.failed
            if d.response_time_seconds is not None:
                acc[3] += d.response_time_seconds
                acc[4] += 1
        for key, acc in totals.items():
            await self._upsert_statistics(key, acc, now)
        return len(ids)

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
            sa.update(T).where(T.id.in_(list(until)), T.status == MS.SENDING.value, T.claimed_by == worker_id)
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
        ids = (await self._s.execute(
            sa.select(T.id).where(T.status == MS.SENDING.value, T.claimed_until < now)
            .limit(limit).with_for_update(skip_locked=True))).scalars().all()
        if not ids:
            return 0
        result = await self._s.execute(
            sa.update(T).where(T.id.in_(ids), T.status == MS.SENDING.value, T.claimed_until < now)
            .values(status=MS.PENDING.value, claimed_by=None, claimed_until=None, next_attempt_at=now,
                    updated_at=now))
        return int(result.rowcount or 0)

    async def next_due(self, now: datetime) -> datetime | None:
        """The earliest due time of a pending, unpaused message (for the idle sleep)."""
        return (await self._s.execute(
            sa.select(sa.func.min(due_at())).where(T.status == MS.PENDING.value,
                                                    T.paused == sa.false()))).scalar_one_or_none()

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
