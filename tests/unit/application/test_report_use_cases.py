"""ReportService use cases (application/reports.py) on the in-memory units of work: range and
argument validation, tenant scoping, the message statistics series, account health, batch task
and template reports, and the answer cache.

The rows the reports read are the ones the other areas write (message_statistics by the send
and receipt paths, accounts and their status history, messages, batch tasks, templates); the
tests put them in the in-memory databases directly (harness/fakes/callbacks.py names the
tables). The SQL of the aggregations is tests/integration/test_report_stats.py.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from harness.fakes import FakeDatabase
from harness.fakes.callbacks import statistics_key
from wework.domain.access import Principal, PrincipalKind
from wework.domain.accounts import Account, AccountStatus, Operator, OperatorType, StatusChange
from wework.domain.batches import BatchStatus, BatchTask
from wework.domain.errors import InvalidArgument, NotFound
from wework.domain.messages import Message, MessageStatus, MessageType, Template
from wework.persistence.config import RedisConfig
from wework.persistence.ids import new_id
from wework.persistence.redis.cache import TwoLevelCache
from wework.persistence.redis.client import create_redis
from wework.server.application.context import AppContext
from wework.server.application.reports import ReportSettings, ReportUseCases, StatsQuery

DAY = datetime(2026, 3, 2, tzinfo=UTC)
NOW = DAY + timedelta(days=3)


class Pickled:
    """The caller's codec: the cache stores what it encodes."""

    def encode(self, result: Any) -> bytes:
        return pickle.dumps(result)

    def decode(self, raw: bytes) -> Any:
        return pickle.loads(raw)


CODEC = Pickled()


def member(tenant_id: str = "t1") -> Principal:
    return Principal(PrincipalKind.USER, "u1", tenant_id, frozenset({"reports.*"}))


def make_reports(db: FakeDatabase, cache: TwoLevelCache | None = None) -> ReportUseCases:
    ctx = AppContext(db=db, cipher=None, passwords=None, tokens=None,  # type: ignore[arg-type]
                     tenant_cache=None, credential_cache=None, admin_api_key="")  # type: ignore[arg-type]
    return ReportUseCases(ctx, cache, ReportSettings(max_range_days=31, max_export_range_days=62),
                          clock=lambda: NOW)


def add_hour(db: FakeDatabase, tenant_id: str, account_id: str, hour: datetime, total: int, success: int,
             failed: int, avg_response_time: float | None = None) -> None:
    tables = db.tables("message", db.shard_for(tenant_id))
    tables["message_statistics"][statistics_key(tenant_id, account_id, hour)] = {
        "total": total, "success": success, "failed": failed, "avg_response_time": avg_response_time}


def add_account(db: FakeDatabase, tenant_id: str, account_id: str, name: str, status: str,
                created_at: datetime = DAY - timedelta(days=30)) -> None:
    db.tables("account", db.shard_for(tenant_id))["wework_accounts"][account_id] = Account(
        id=account_id, tenant_id=tenant_id, account_name=name, status=AccountStatus(status), created_at=created_at)


def add_change(db: FakeDatabase, tenant_id: str, account_id: str, old: str | None, new: str, at: datetime) -> None:
    history = db.tables("account", db.shard_for(tenant_id))["account_status_history"]
    change_id = new_id()
    history[change_id] = StatusChange(tenant_id, account_id, old, new, "test", Operator(OperatorType.SYSTEM), at,
                                      id=change_id, seq=len(history) + 1)


def add_message(db: FakeDatabase, tenant_id: str, status: str, *, batch_id: str | None = None,
                error_code: str | None = None, error_message: str | None = None) -> None:
    m = Message(id=new_id(), tenant_id=tenant_id, account_id="a1", conversation_id="c1", message_type=MessageType.TEXT,
                content={"text": "hi"}, created_at=DAY, updated_at=DAY, status=MessageStatus(status),
                batch_id=batch_id, error_code=error_code, error_message=error_message)
    db.tables("message", db.shard_for(tenant_id))["messages"][m.id] = m


@pytest.fixture
def db() -> FakeDatabase:
    db = FakeDatabase(shards=("s0", "s1"))
    db.place("t1", "s0")
    db.place("t2", "s0")  # the same shard: only the tenant filter keeps them apart
    return db


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "fields"), [
    (StatsQuery(None, None), ["start_time", "end_time"]),
    (StatsQuery(DAY, DAY), ["end_time"]),
    (StatsQuery(DAY, DAY + timedelta(days=32)), ["end_time"]),
    (StatsQuery(DAY, DAY + timedelta(days=1), granularity="weekly"), ["granularity"]),
    (StatsQuery(DAY, DAY + timedelta(days=1), time_zone="Mars/Olympus"), ["time_zone"]),
])
async def test_a_bad_range_or_argument_names_its_fields_and_reads_nothing(db, query, fields):
    db.failing = AssertionError("no unit of work may open for a refused request")
    with pytest.raises(InvalidArgument) as refused:
        await make_reports(db).message_stats(member(), query, CODEC)
    assert [v.field for v in refused.value.violations] == fields


async def test_a_range_too_long_names_the_setting_that_sets_the_limit(db):
    with pytest.raises(InvalidArgument) as refused:
        await make_reports(db).message_stats(member(), StatsQuery(DAY, DAY + timedelta(days=40)), CODEC)
    assert "report.max_range_days" in refused.value.violations[0].description
    # The export allows its own, longer range.
    chunks = await make_reports(db).export_message_stats(member(), StatsQuery(DAY, DAY + timedelta(days=40)), 0)
    assert sum([len(c) async for c in chunks]) == 40


@pytest.mark.parametrize(("call", "field"), [
    (lambda r: r.account_health(member(), DAY, NOW, 101, CODEC), "top_n"),
    (lambda r: r.template_usage(member(), DAY, NOW, 1001, CODEC), "page_size"),
    (lambda r: r.batch_task_report(member(), "", CODEC), "task_id"),
    (lambda r: r.export_message_stats(member(), StatsQuery(DAY, NOW), -1), "chunk_size"),
])
async def test_other_bad_arguments_name_their_field(db, call, field):
    with pytest.raises(InvalidArgument) as refused:
        await call(make_reports(db))
    assert refused.value.violations[0].field == field


async def test_a_platform_admin_must_name_a_tenant(db):
    admin = Principal(PrincipalKind.PLATFORM_ADMIN, "platform-admin", None)
    with pytest.raises(NotFound):
        await make_reports(db).message_stats(admin, StatsQuery(DAY, NOW), CODEC)


# ---- message statistics -------------------------------------------------------------------------


async def test_daily_stats_sum_the_tenants_hours_and_fill_empty_days(db):
    add_hour(db, "t1", "a1", DAY + timedelta(hours=9), 10, 8, 2, avg_response_time=1.0)
    add_hour(db, "t1", "a2", DAY + timedelta(hours=23), 5, 5, 0, avg_response_time=4.0)
    add_hour(db, "t1", "a1", DAY + timedelta(days=2, hours=1), 3, 1, 2)
    add_hour(db, "t2", "b1", DAY + timedelta(hours=9), 100, 100, 0)  # another tenant on the same shard
    add_hour(db, "t1", "a1", DAY - timedelta(hours=1), 7, 7, 0)  # before the range

    stats = await make_reports(db).message_stats(member(), StatsQuery(DAY, DAY + timedelta(days=3)), CODEC)

    assert [(r.bucket.start, r.counts.total, r.counts.success, r.counts.failed) for r in stats.rows] == [
        (DAY, 15, 13, 2), (DAY + timedelta(days=1), 0, 0, 0), (DAY + timedelta(days=2), 3, 1, 2)]
    assert (stats.total.counts.total, stats.total.counts.success) == (18, 14)
    # The mean response time is weighted by the successes of the hours that have one.
    assert stats.rows[0].counts.avg_response_seconds == pytest.approx((8 * 1.0 + 5 * 4.0) / 13)


async def test_hourly_stats_of_one_account_in_a_time_zone(db):
    add_account(db, "t1", "a1", "Ann", "online")
    add_hour(db, "t1", "a1", DAY + timedelta(hours=9), 10, 8, 2)
    add_hour(db, "t1", "a2", DAY + timedelta(hours=9), 5, 5, 0)
    q = StatsQuery(DAY + timedelta(hours=8), DAY + timedelta(hours=11), granularity="HOURLY",
                   time_zone="Asia/Shanghai", account_id="a1")

    stats = await make_reports(db).message_stats(member(), q, CODEC)

    assert [(r.bucket.local_start, r.counts.total) for r in stats.rows] == [
        ("2026-03-02T16:00:00+08:00", 0), ("2026-03-02T17:00:00+08:00", 10), ("2026-03-02T18:00:00+08:00", 0)]


async def test_stats_of_an_account_of_another_tenant_are_not_found(db):
    add_account(db, "t2", "b1", "Bob", "online")
    with pytest.raises(NotFound):
        await make_reports(db).message_stats(member("t1"), StatsQuery(DAY, NOW, account_id="b1"), CODEC)


async def test_answers_are_cached_for_the_ttl_per_tenant_and_query(db):
    cache = TwoLevelCache(create_redis(RedisConfig(url="memory://")), f"reports-{new_id()}", local_ttl=30,
                          redis_ttl=30)
    reports = make_reports(db, cache)
    add_hour(db, "t1", "a1", DAY, 1, 1, 0)
    q = StatsQuery(DAY, DAY + timedelta(days=1))
    first = await reports.message_stats(member(), q, CODEC)

    add_hour(db, "t1", "a1", DAY + timedelta(hours=1), 5, 5, 0)  # written after the first answer
    assert (await reports.message_stats(member(), q, CODEC)).total.counts.total == first.total.counts.total == 1
    assert (reports.hit_counter.requests, reports.hit_counter.hits) == (2, 1)
    # Keyed on the normalized query: "" and "UTC" are one zone, hence one entry.
    same = await reports.message_stats(member(), StatsQuery(DAY, DAY + timedelta(days=1), time_zone="UTC"), CODEC)
    assert same.total.counts.total == 1
    fresh = await reports.message_stats(member(), StatsQuery(DAY, DAY + timedelta(days=1), granularity="hourly"),
                                        CODEC)
    assert fresh.total.counts.total == 6  # another query, another entry
    assert (await reports.message_stats(member("t2"), q, CODEC)).total.counts.total == 0


# ---- account health -----------------------------------------------------------------------------


async def test_account_health_counts_outages_recoveries_and_failing_accounts(db):
    start, end = DAY, DAY + timedelta(days=1)
    add_account(db, "t1", "a1", "Ann", "online")
    add_account(db, "t1", "a2", "Bea", "error")
    add_account(db, "t2", "b1", "Bob", "error")
    add_change(db, "t1", "a1", "created", "online", start - timedelta(days=2))
    add_change(db, "t1", "a2", "created", "online", start - timedelta(days=2))
    add_change(db, "t1", "a1", "online", "error", start + timedelta(hours=6))
    add_change(db, "t1", "a1", "error", "online", start + timedelta(hours=8))  # a 2-hour outage, recovered
    add_change(db, "t1", "a2", "online", "error", start + timedelta(hours=12))  # still out at the end
    add_hour(db, "t1", "a1", start + timedelta(hours=7), 4, 1, 3)

    health = await make_reports(db).account_health(member(), start, end, 0, CODEC)

    assert (health.total_accounts, health.status_counts) == (2, {"online": 1, "error": 1})
    assert (health.recoveries, health.mean_time_to_recover_seconds, health.open_outages) == (1, 7200.0, 1)
    assert health.online_rate == pytest.approx((22 + 12) / 48)
    assert [(e.account_id, e.failed_messages, e.total_messages, e.error_transitions)
            for e in health.top_failing_accounts] == [("a1", 3, 4, 1), ("a2", 0, 0, 1)]
    assert health.top_failing_accounts[0].online_rate == pytest.approx(22 / 24)


# ---- batch tasks and templates ------------------------------------------------------------------


async def test_a_batch_task_report_counts_its_messages_and_failure_reasons(db):
    task = BatchTask(tenant_id="t1", task_name="March promo", id="task-1", status=BatchStatus.COMPLETED,
                     total_count=4, sent_count=4, success_count=2, failed_count=2, start_time=DAY,
                     end_time=DAY + timedelta(minutes=2))
    db.tables("message", "s0")["batch_send_tasks"][task.id] = task
    for status, code, text in (("delivered", None, None), ("sent", None, None), ("failed", "E1", "blocked"),
                               ("failed", "E1", "blocked"), ("failed", None, "timeout")):
        add_message(db, "t1", status, batch_id="task-1", error_code=code, error_message=text)
    add_message(db, "t2", "failed", batch_id="task-1", error_code="E9", error_message="other tenant")

    report = await make_reports(db).batch_task_report(member(), "task-1", CODEC)

    assert (report.task_name, report.status, report.duration_seconds) == ("March promo", "completed", 120.0)
    assert report.message_counts == {"delivered": 1, "sent": 1, "failed": 3}
    assert report.throughput_per_minute == pytest.approx(5 / 2)
    assert report.failure_reasons == [("E1", 2, "blocked"), ("", 1, "timeout")]
    with pytest.raises(NotFound):
        await make_reports(db).batch_task_report(member("t2"), "task-1", CODEC)


async def test_template_usage_ranks_the_tenants_templates_by_messages_in_the_range(db):
    tables = db.tables("message", "s0")
    for tid, tenant, name, lifetime in (("tp-1", "t1", "Welcome", 40), ("tp-2", "t1", "Promo", 7),
                                        ("tp-3", "t2", "Other", 99)):
        tables["message_templates"][tid] = Template(
            id=tid, tenant_id=tenant, creator_id="u1", template_name=name, template_type=MessageType.TEXT,
            template_content={"text": "hi"}, created_at=DAY, updated_at=DAY, usage_count=lifetime)
    for status in ("delivered", "failed", "sent"):
        add_message(db, "t1", status)
    for m in list(tables["messages"].values()):
        m.template_id = "tp-2"
    add_message(db, "t1", "sent")
    next(m for m in tables["messages"].values() if m.template_id is None).template_id = "tp-1"

    rows = await make_reports(db).template_usage(member(), DAY, DAY + timedelta(days=1), 0, CODEC)

    assert [(r.template_id, r.template_name, r.message_count, r.success_count, r.failed_count,
             r.lifetime_usage_count) for r in rows] == [("tp-2", "Promo", 3, 2, 1, 7), ("tp-1", "Welcome", 1, 1, 0, 40)]
    # Messages created outside the range do not count; the templates are still listed.
    later = await make_reports(db).template_usage(member(), DAY + timedelta(days=1), NOW, 0, CODEC)
    assert [(r.template_id, r.message_count) for r in later] == [("tp-2", 0), ("tp-1", 0)]
