"""Report queries: read-only aggregations over one tenant's shard (message and account DBs).

The caller opens the session with read_only=True (a replica when one is usable). Message
counts come from the hourly message_statistics rows (stat_hour NOT NULL), never the daily
ones, which nothing keeps consistent (models/message.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import account as am
from ..models import message as mm

SUCCESS_STATUSES = ("sent", "delivered")


@dataclass(frozen=True)
class HourCounts:
    """One UTC hour (or a sum of them): rt_weighted = sum(avg_response_time * success_count)
    over rows with a mean, rt_samples the success_count of those rows."""

    total: int
    success: int
    failed: int
    rt_weighted: float
    rt_samples: int


def _hour_window(start: datetime, end: datetime) -> Any:
    """(stat_date, stat_hour) of hourly rows in the whole UTC hours [start, end)."""
    s = mm.MessageStatistic
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    last = end - timedelta(hours=1)
    d0, h0, d1, h1 = start.date(), start.hour, last.date(), last.hour
    # The date range uses idx_tenant_date; the hour bounds only trim the two edge days.
    return sa.and_(s.stat_hour.is_not(None), s.stat_date >= d0, s.stat_date <= d1,
                   sa.or_(s.stat_date > d0, s.stat_hour >= h0),
                   sa.or_(s.stat_date < d1, s.stat_hour <= h1))


def _sums() -> list[Any]:
    s = mm.MessageStatistic
    # SUM skips the NULL products of rows without a mean.
    return [sa.func.sum(s.total_count), sa.func.sum(s.success_count), sa.func.sum(s.failed_count),
            sa.func.sum(s.avg_response_time * s.success_count),
            sa.func.sum(sa.case((s.avg_response_time.is_not(None), s.success_count), else_=0))]


def _counts(row: Any, offset: int) -> HourCounts:
    total, success, failed, rtw, rtn = row[offset:offset + 5]
    return HourCounts(int(total or 0), int(success or 0), int(failed or 0), float(rtw or 0), int(rtn or 0))


class ReportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    # ---- messages (message DB) ---------------------------------------------------------------

    async def hourly_counts(self, tenant_id: str, start: datetime, end: datetime,
                            account_id: str | None = None) -> dict[datetime, HourCounts]:
        """Counts per UTC hour in [start, end) (whole hours), summed over the accounts."""
        s = mm.MessageStatistic
        where = [s.tenant_id == tenant_id, _hour_window(start, end)]
        if account_id:
            where.append(s.account_id == account_id)
        # ORDER BY NULL: MariaDB would sort the groups otherwise; the caller files them by hour.
        rows = await self._s.execute(sa.select(s.stat_date, s.stat_hour, *_sums()).where(*where)
                                     .group_by(s.stat_date, s.stat_hour).order_by(sa.null()))
        out: dict[datetime, HourCounts] = {}
        for row in rows:
            day: date = row[0]
            out[datetime(day.year, day.month, day.day, int(row[1]), tzinfo=UTC)] = _counts(row, 2)
        return out

    async def counts_per_account(self, tenant_id: str, start: datetime, end: datetime) -> dict[str, HourCounts]:
        s = mm.MessageStatistic
        rows = await self._s.execute(sa.select(s.account_id, *_sums())
                                     .where(s.tenant_id == tenant_id, _hour_window(start, end))
                                     .group_by(s.account_id))
        return {r[0]: _counts(r, 1) for r in rows}

    async def batch_task(self, tenant_id: str, task_id: str) -> mm.BatchSendTask | None:
        t = mm.BatchSendTask
        return (await self._s.execute(sa.select(t).where(t.tenant_id == tenant_id, t.id == task_id))).scalars().first()

    async def batch_status_counts(self, tenant_id: str, task_id: str) -> dict[str, int]:
        m = mm.Message
        rows = await self._s.execute(sa.select(m.status, sa.func.count()).where(m.batch_id == task_id,
                                                                                m.tenant_id == tenant_id)
                                     .group_by(m.status))
        return {str(r[0]): int(r[1]) for r in rows}

    async def batch_failure_reasons(self, tenant_id: str, task_id: str) -> list[tuple[str, int, str]]:
        """(error_code or "", count, an example error_message), most frequent first."""
        m = mm.Message
        code = sa.func.coalesce(m.error_code, "")
        rows = await self._s.execute(
            sa.select(code, sa.func.count(), sa.func.max(m.error_message))
            .where(m.batch_id == task_id, m.tenant_id == tenant_id, m.status == "failed")
            .group_by(code).order_by(sa.func.count().desc(), code))
        return [(str(r[0]), int(r[1]), str(r[2] or "")) for r in rows]

    async def template_usage(self, tenant_id: str, start: datetime, end: datetime) -> dict[str, tuple[int, int, int]]:
        """template_id -> (messages, successes, failures) of messages created in [start, end)."""
        m = mm.Message
        rows = await self._s.execute(
            sa.select(m.template_id, sa.func.count(),
                      sa.func.sum(sa.case((m.status.in_(SUCCESS_STATUSES), 1), else_=0)),
                      sa.func.sum(sa.case((m.status == "failed", 1), else_=0)))
            .where(m.tenant_id == tenant_id, m.created_at >= start, m.created_at < end, m.template_id.is_not(None))
            .group_by(m.template_id))
        return {r[0]: (int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows}

    async def templates(self, tenant_id: str) -> list[tuple[str, str, int, datetime | None]]:
        """(id, name, usage_count, last_used_time) of the tenant's templates."""
        t = mm.MessageTemplate
        rows = await self._s.execute(sa.select(t.id, t.template_name, t.usage_count, t.last_used_time)
                                     .where(t.tenant_id == tenant_id))
        return [(r[0], r[1], int(r[2] or 0), r[3]) for r in rows]

    # ---- accounts (account DB) ---------------------------------------------------------------

    async def accounts(self, tenant_id: str) -> list[tuple[str, str, str, datetime]]:
        """(id, name, status, created_at) of the tenant's accounts now."""
        a = am.WeworkAccount
        rows = await self._s.execute(sa.select(a.id, a.account_name, a.status, a.created_at)
                                     .where(a.tenant_id == tenant_id))
        return [(r[0], r[1], str(r[2]), r[3]) for r in rows]

    async def status_before(self, tenant_id: str, at: datetime) -> dict[str, str]:
        """account_id -> its status just before `at` (the last history row before it)."""
        h = am.AccountStatusHistory
        last = (sa.select(h.account_id, sa.func.max(h.seq).label("seq"))
                .where(h.tenant_id == tenant_id, h.created_at < at).group_by(h.account_id).subquery())
        rows = await self._s.execute(sa.select(h.account_id, h.new_status).join(
            last, sa.and_(h.account_id == last.c.account_id, h.seq == last.c.seq))
            .where(h.tenant_id == tenant_id))
        return {r[0]: str(r[1]) for r in rows}

    async def last_left_online_before(self, tenant_id: str, at: datetime) -> dict[str, datetime]:
        """account_id -> when it last left ONLINE before `at`."""
        h = am.AccountStatusHistory
        rows = await self._s.execute(
            sa.select(h.account_id, sa.func.max(h.created_at))
            .where(h.tenant_id == tenant_id, h.created_at < at, h.old_status == "online", h.new_status != "online")
            .group_by(h.account_id))
        out = {}
        for account_id, when in rows:
            if isinstance(when, str):  # SQLite returns max() of the column as text
                when = datetime.fromisoformat(when)
            out[account_id] = when if when.tzinfo else when.replace(tzinfo=UTC)
        return out

    async def transitions(self, tenant_id: str, start: datetime, end: datetime
                          ) -> list[tuple[str, datetime, str | None, str]]:
        """(account_id, at, old_status, new_status) in [start, end), by account then order."""
        h = am.AccountStatusHistory
        rows = await self._s.execute(
            sa.select(h.account_id, h.created_at, h.old_status, h.new_status)
            .where(h.tenant_id == tenant_id, h.created_at >= start, h.created_at < end)
            .order_by(h.account_id, h.seq))
        return [(r[0], r[1], r[2], str(r[3])) for r in rows]
