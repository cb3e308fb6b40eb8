"""ReportService use cases: message statistics, account health, batch task reports, template usage.

Every read opens its session with read_only=True: the shard router sends it to a replica of the
tenant's shard when the shard map lists one that is not lagging, else to the primary
(docs/reports.md). Answers are cached for `cache_ttl_seconds` under a hash of (report, tenant,
normalized query); nothing invalidates them, so a report is at most that much behind.

The cache holds the answer as the caller's `Codec` encodes it (the gRPC handler uses the
response proto), so a hit costs one decode and no conversion.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from wework.domain.access import Principal
from wework.domain.errors import FieldViolation, InvalidArgument, NotFound, must_exist
from wework.domain.reports import (
    AccountTimeline,
    Counts,
    Granularity,
    Range,
    StatsRow,
    Transition,
    account_timeline,
    fill_series,
    make_range,
    parse_time_zone,
    split_range,
    total_of,
    validate_range,
)
from wework.persistence.redis.cache import TwoLevelCache
from wework.persistence.repositories.reports import HourCounts
from wework.server.application.context import AppContext, utcnow
from wework.server.observability import metrics

MESSAGE_DB = "message"
ACCOUNT_DB = "account"
T = TypeVar("T")
R = TypeVar("R")


class Codec(Protocol[R, T]):
    def encode(self, result: R) -> bytes: ...
    def decode(self, raw: bytes) -> T: ...


# Named in a refusal of a range that is too long: the settings that set the limits.
RANGE_SETTING = "report.max_range_days (env WEWORK_REPORT__MAX_RANGE_DAYS)"
EXPORT_RANGE_SETTING = "report.max_export_range_days (env WEWORK_REPORT__MAX_EXPORT_RANGE_DAYS)"


@dataclass(frozen=True)
class ReportSettings:
    max_range_days: int = 93
    max_export_range_days: int = 367
    cache_ttl_seconds: float = 30.0
    export_chunk_rows: int = 500


@dataclass(frozen=True)
class StatsQuery:
    start: datetime | None
    end: datetime | None
    granularity: str | None = None  # "hourly", "daily"; None or "" means daily
    time_zone: str = ""
    account_id: str = ""


@dataclass
class MessageStats:
    range: Range
    rows: list[StatsRow]
    total: StatsRow


@dataclass
class AccountHealthEntry:
    account_id: str
    account_name: str
    status: str
    failed_messages: int
    total_messages: int
    error_transitions: int
    online_rate: float


@dataclass
class AccountHealth:
    status_counts: dict[str, int]
    total_accounts: int
    online_rate: float
    recoveries: int
    mean_time_to_recover_seconds: float
    open_outages: int
    top_failing_accounts: list[AccountHealthEntry]


@dataclass
class BatchTaskReport:
    task_id: str
    task_name: str
    status: str
    total_count: int
    sent_count: int
    success_count: int
    failed_count: int
    message_counts: dict[str, int]
    start_time: datetime | None
    end_time: datetime | None
    duration_seconds: float
    throughput_per_minute: float
    failure_reasons: list[tuple[str, int, str]]


@dataclass
class TemplateUsageRow:
    template_id: str
    template_name: str
    message_count: int
    success_count: int
    failed_count: int
    lifetime_usage_count: int
    last_used_time: datetime | None


@dataclass
class _HitCounter:
    hits: int = 0
    requests: int = 0
    _children: dict = field(default_factory=dict)  # labels() costs more than the cache hit itself

    def record(self, report: str, hit: bool) -> None:
        self.requests += 1
        self.hits += hit
        child = self._children.get((report, hit))
        if child is None:
            child = self._children[(report, hit)] = metrics.REPORT_CACHE_REQUESTS.labels(
                report, "hit" if hit else "miss")
        child.inc()
        metrics.REPORT_CACHE_HIT_RATIO.set(self.hits / self.requests)


def _granularity(value: str | None) -> Granularity:
    if not value:
        return Granularity.DAILY
    try:
        return Granularity(value.lower())
    except ValueError:
        raise InvalidArgument(FieldViolation("granularity", f"unknown granularity {value!r}; use HOURLY or DAILY",
                                             "UNKNOWN_GRANULARITY")) from None


def _counts(c: HourCounts) -> Counts:
    return Counts(c.total, c.success, c.failed, c.rt_weighted, c.rt_samples)


@dataclass
class ReportUseCases(Generic[T]):
    ctx: AppContext
    cache: TwoLevelCache | None = None
    settings: ReportSettings = field(default_factory=ReportSettings)
    clock: Callable[[], datetime] = utcnow
    hit_counter: _HitCounter = field(default_factory=_HitCounter)

    # ---- cache ---------------------------------------------------------------------------------

    async def _cached(self, report: str, tenant_id: str, params: dict, compute: Callable[[], Awaitable[R]],
                      codec: Codec[R, T]) -> T:
        if self.cache is None:
            return codec.decode(codec.encode(await compute()))
        digest = hashlib.sha256(json.dumps([report, tenant_id, params], sort_keys=True, default=str)
                                .encode()).hexdigest()
        loaded = False

        async def load() -> bytes:
            nonlocal loaded
            loaded = True
            return codec.encode(await compute())

        raw = await self.cache.get_or_load(f"{tenant_id}:{report}:{digest}", load, negative_ttl=0)
        self.hit_counter.record(report, not loaded)
        assert raw is not None
        return codec.decode(raw)

    def _range(self, q: StatsQuery, max_days: int, limit_setting: str) -> Range:
        granularity = _granularity(q.granularity)  # checked first: its own field
        tz = parse_time_zone(q.time_zone)
        start, end = validate_range(q.start, q.end, max_days=max_days, limit_setting=limit_setting)
        return make_range(start, end, granularity, tz)

    async def _require_account(self, tenant_id: str, account_id: str) -> None:
        async with self.ctx.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
            ids = {a[0] for a in await uow.reports.accounts(tenant_id)}
        if account_id not in ids:
            raise NotFound("account", account_id)

    # ---- message statistics --------------------------------------------------------------------

    async def message_stats(self, principal: Principal, q: StatsQuery, codec: Codec[MessageStats, T]) -> T:
        tenant_id = principal.require_tenant()
        r = self._range(q, self.settings.max_range_days, RANGE_SETTING)
        params = {"start": r.start.isoformat(), "end": r.end.isoformat(), "g": r.granularity.value,
                  "tz": r.time_zone, "account": q.account_id}
        return await self._cached("message_stats", tenant_id, params,
                                  lambda: self._compute_stats(tenant_id, r, q.account_id), codec)

    async def _compute_stats(self, tenant_id: str, r: Range, account_id: str) -> MessageStats:
        if account_id:
            await self._require_account(tenant_id, account_id)
        rows = await self._series(tenant_id, r, account_id)
        return MessageStats(r, rows, total_of(rows, r))

    async def _series(self, tenant_id: str, r: Range, account_id: str) -> list[StatsRow]:
        async with self.ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            hourly = await uow.reports.hourly_counts(tenant_id, r.start, r.end, account_id or None)
        return fill_series(r, {h: _counts(c) for h, c in hourly.items()})

    async def export_message_stats(self, principal: Principal, q: StatsQuery,
                                   chunk_size: int) -> AsyncIterator[list[StatsRow]]:
        """The series in chunks of at most `chunk_size` buckets (capped by export_chunk_rows),
        each read in its own short transaction; not cached."""
        tenant_id = principal.require_tenant()
        r = self._range(q, self.settings.max_export_range_days, EXPORT_RANGE_SETTING)
        if chunk_size < 0:
            raise InvalidArgument(FieldViolation("chunk_size", "must not be negative"))
        size = min(chunk_size or self.settings.export_chunk_rows, self.settings.export_chunk_rows)
        if q.account_id:
            await self._require_account(tenant_id, q.account_id)
        return self._export(tenant_id, r, q.account_id, size)

    async def _export(self, tenant_id: str, r: Range, account_id: str, size: int) -> AsyncIterator[list[StatsRow]]:
        for part in split_range(r, size):
            yield await self._series(tenant_id, part, account_id)

    # ---- account health ------------------------------------------------------------------------

    async def account_health(self, principal: Principal, start: datetime | None, end: datetime | None,
                             top_n: int, codec: Codec[AccountHealth, T]) -> T:
        tenant_id = principal.require_tenant()
        start, end = validate_range(start, end, max_days=self.settings.max_range_days, limit_setting=RANGE_SETTING)
        if top_n < 0 or top_n > 100:
            raise InvalidArgument(FieldViolation("top_n", "must be between 0 and 100"))
        top_n = top_n or 10
        params = {"start": start.isoformat(), "end": end.isoformat(), "top": top_n}
        return await self._cached("account_health", tenant_id, params,
                                  lambda: self._compute_health(tenant_id, start, end, top_n), codec)

    async def _compute_health(self, tenant_id: str, start: datetime, end: datetime, top_n: int) -> AccountHealth:
        end = min(end, self.clock())  # the future has no history yet
        async with self.ctx.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
            repo = uow.reports
            accounts = await repo.accounts(tenant_id)
            before = await repo.status_before(tenant_id, start)
            left_online = await repo.last_left_online_before(tenant_id, start)
            history = await repo.transitions(tenant_id, start, end) if end > start else []
        hour_start = start.replace(minute=0, second=0, microsecond=0)
        hour_end = end if end == end.replace(minute=0, second=0, microsecond=0) else \
            end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        per_account: dict[str, HourCounts] = {}
        if hour_end > hour_start:
            async with self.ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
                per_account = await uow.reports.counts_per_account(tenant_id, hour_start, hour_end)
        by_account: dict[str, list[Transition]] = {}
        for account_id, at, old, new in history:
            by_account.setdefault(account_id, []).append(Transition(at, old, new))
        names = {a[0]: (a[1], a[2]) for a in accounts}
        # An account older than the range without history before it lost that history to
        # retention (maintenance): it is taken to have been in its current status.
        purged = {a[0]: a[2] for a in accounts if a[3] < start and a[0] not in before and a[0] not in by_account}
        timelines: dict[str, AccountTimeline] = {}
        for account_id in set(names) | set(before) | set(by_account):
            timelines[account_id] = account_timeline(
                before.get(account_id) or purged.get(account_id), left_online.get(account_id),
                by_account.get(account_id, []), start, max(end, start))
        observed = sum(t.observed_seconds for t in timelines.values())
        online = sum(t.online_seconds for t in timelines.values())
        recoveries = [d for t in timelines.values() for d in t.recoveries]
        status_counts: dict[str, int] = {}
        for _, _, status, _ in accounts:
            status_counts[status] = status_counts.get(status, 0) + 1
        entries = []
        for account_id, tl in timelines.items():
            c = per_account.get(account_id)
            failed = c.failed if c else 0
            if not failed and not tl.error_transitions:
                continue
            name, status = names.get(account_id, ("", "deleted"))
            entries.append(AccountHealthEntry(
                account_id, name, status, failed, c.total if c else 0, tl.error_transitions,
                tl.online_seconds / tl.observed_seconds if tl.observed_seconds else 0.0))
        entries.sort(key=lambda e: (-e.failed_messages, -e.error_transitions, e.account_name, e.account_id))
        return AccountHealth(
            status_counts=status_counts, total_accounts=len(accounts),
            online_rate=online / observed if observed else 0.0, recoveries=len(recoveries),
            mean_time_to_recover_seconds=sum(recoveries) / len(recoveries) if recoveries else 0.0,
            open_outages=sum(1 for t in timelines.values() if t.open_outage),
            top_failing_accounts=entries[:top_n])

    # ---- batch tasks ---------------------------------------------------------------------------

    async def batch_task_report(self, principal: Principal, task_id: str, codec: Codec[BatchTaskReport, T]) -> T:
        tenant_id = principal.require_tenant()
        if not task_id:
            raise InvalidArgument(FieldViolation("task_id", "required", "REQUIRED"))
        return await self._cached("batch_task", tenant_id, {"task": task_id},
                                  lambda: self._compute_batch(tenant_id, task_id), codec)

    async def _compute_batch(self, tenant_id: str, task_id: str) -> BatchTaskReport:
        async with self.ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            repo = uow.reports
            task = must_exist(await repo.batch_task(tenant_id, task_id), "batch task", task_id)
            counts = await repo.batch_status_counts(tenant_id, task_id)
            reasons = await repo.batch_failure_reasons(tenant_id, task_id)
        duration = 0.0
        if task.start_time is not None:
            duration = max(0.0, ((task.end_time or self.clock()) - task.start_time).total_seconds())
        done = counts.get("sent", 0) + counts.get("delivered", 0) + counts.get("failed", 0)
        return BatchTaskReport(
            task_id=task.id, task_name=task.task_name, status=str(task.status), total_count=task.total_count,
            sent_count=task.sent_count, success_count=task.success_count, failed_count=task.failed_count,
            message_counts=counts, start_time=task.start_time, end_time=task.end_time,
            duration_seconds=duration, throughput_per_minute=done / (duration / 60) if duration else 0.0,
            failure_reasons=reasons)

    # ---- templates -----------------------------------------------------------------------------

    async def template_usage(self, principal: Principal, start: datetime | None, end: datetime | None,
                             page_size: int, codec: Codec[list[TemplateUsageRow], T]) -> T:
        tenant_id = principal.require_tenant()
        start, end = validate_range(start, end, max_days=self.settings.max_range_days, limit_setting=RANGE_SETTING)
        if page_size < 0 or page_size > 1000:
            raise InvalidArgument(FieldViolation("page_size", "must be between 0 and 1000"))
        limit = page_size or 100
        params = {"start": start.isoformat(), "end": end.isoformat(), "limit": limit}
        return await self._cached("template_usage", tenant_id, params,
                                  lambda: self._compute_templates(tenant_id, start, end, limit), codec)

    async def _compute_templates(self, tenant_id: str, start: datetime, end: datetime,
                                 limit: int) -> list[TemplateUsageRow]:
        async with self.ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            repo = uow.reports
            usage = await repo.template_usage(tenant_id, start, end)
            templates = {t[0]: t for t in await repo.templates(tenant_id)}
        rows = []
        for template_id in set(templates) | set(usage):
            n, ok, bad = usage.get(template_id, (0, 0, 0))
            _, name, lifetime, last_used = templates.get(template_id, (template_id, "", 0, None))
            rows.append(TemplateUsageRow(template_id, name, n, ok, bad, lifetime, last_used))
        rows.sort(key=lambda t: (-t.message_count, t.template_name, t.template_id))
        return rows[:limit]
