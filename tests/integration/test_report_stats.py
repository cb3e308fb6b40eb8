"""Report figures reconcile with the raw messages (MariaDB, Redis, the real dispatch path).

Messages of two accounts, created across 30 past hours (over a UTC day boundary), go through the
real dispatcher and the simulator, which fails some at once (a transient error with one attempt
allowed) and some after accepting them (a MESSAGE_FAILED receipt). message_statistics is written
by that path only; every figure of the report is then checked against a SQL count over messages.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from test_dispatch_claims import FAST, Node, node_factory
from wework.domain.access import Principal, PrincipalKind
from wework.domain.accounts import AccountStatus
from wework.domain.errors import InvalidArgument, NotFound
from wework.domain.identity import Tenant
from wework.domain.messages import Message, MessageType
from wework.persistence.ids import new_id
from wework.persistence.models import account as am
from wework.persistence.redis import TwoLevelCache
from wework.server.application.context import utcnow
from wework.server.application.reports import ReportSettings, ReportUseCases, StatsQuery
from wework.server.handlers.report import HEALTH, STATS
from wework.server.observability import metrics
from wework.server.providers.simulator import SimulatorConfig
from wework.server.workers.dispatch import DispatchSettings

pytestmark = [pytest.mark.mariadb, pytest.mark.redis]

ADMIN = Principal(PrincipalKind.PLATFORM_ADMIN, "platform-admin", None, frozenset({"*"}))
HOURS = 30


def principal(tenant_id: str) -> Principal:
    return Principal(PrincipalKind.API_KEY, tenant_id[-12:], tenant_id, frozenset({"*"}))


async def new_tenant(node: Node, accounts: int) -> tuple[str, list[str]]:
    code = f"t{uuid.uuid4().hex[:12]}"
    tenant = await node.tenants.create_tenant(ADMIN, Tenant(id="", tenant_code=code, tenant_name=code), "")
    ids = []
    for i in range(accounts):
        account = await node.accounts.create_account(principal(tenant.id), {"account_name": f"sender-{i}"}, "")
        await node.accounts.start_login(principal(tenant.id), account.id)
        async with asyncio.timeout(10):
            while (await node.store.load(tenant.id, account.id)).status is not AccountStatus.ONLINE:
                await asyncio.sleep(0.02)
        await node.store.cache.invalidate(node.store.cache_key(tenant.id, account.id))
        ids.append(account.id)
    return tenant.id, ids


async def insert_spread(node: Node, tenant_id: str, account_ids: list[str], base: datetime) -> int:
    """Messages created in each of the HOURS hours before `base`, 0-4 per hour and account."""
    msgs = []
    for h in range(HOURS):
        for a, account_id in enumerate(account_ids):
            for i in range((h * 7 + a * 3) % 5):
                created = base - timedelta(hours=HOURS - h) + timedelta(minutes=7 * i + a, seconds=i)
                msgs.append(Message(id=new_id(), tenant_id=tenant_id, account_id=account_id,
                                    conversation_id=f"conv-{h}-{i}", message_type=MessageType.TEXT,
                                    content={"text": "x"}, created_at=created, updated_at=utcnow()))
    async with node.db.unit_of_work("message", tenant_id) as uow:
        repo = uow.messages
        for m in msgs:
            await repo.add(m)
    return len(msgs)


async def wait_final(node: Node, tenant_id: str, n: int) -> None:
    async with asyncio.timeout(60):
        while True:
            rows = await sql(node, tenant_id, "SELECT status, COUNT(*) FROM messages WHERE tenant_id = :t "
                                              "GROUP BY status", t=tenant_id)
            counts = dict(rows)
            if sum(counts.values()) == n and set(counts) <= {"delivered", "failed"}:
                return
            await asyncio.sleep(0.1)


async def sql(node: Node, tenant_id: str, statement: str, **params) -> list:
    async with node.db.unit_of_work("message", tenant_id, read_only=True) as uow:
        return [tuple(r) for r in (await uow.session.execute(sa.text(statement), params)).all()]


async def expected_by(node: Node, tenant_id: str, key_sql: str, account_id: str | None = None) -> dict:
    """{bucket key: (total, success, failed)} counted over the messages table."""
    where = "tenant_id = :t AND status IN ('sent', 'delivered', 'failed')"
    if account_id:
        where += " AND account_id = :a"
    rows = await sql(node, tenant_id, f"SELECT {key_sql} AS k, COUNT(*), "
                                      "SUM(status IN ('sent', 'delivered')), SUM(status = 'failed') "
                                      f"FROM messages WHERE {where} GROUP BY k", t=tenant_id, a=account_id)
    return {str(k): (int(n), int(ok), int(bad)) for k, n, ok, bad in rows}


def figures(resp, key) -> dict:
    return {key(b): (b.total_count, b.success_count, b.failed_count) for b in resp.buckets if b.total_count}


def ts(b) -> datetime:
    return b.start_time.ToDatetime(tzinfo=UTC)


@pytest.fixture(scope="module")
async def world(mariadb_config, redis_server):
    """One node with a failing simulator, a reconciled tenant (2 accounts) and a second tenant."""
    sim = SimulatorConfig(scan_delay_seconds=0, confirm_delay_seconds=0, heartbeat_interval_seconds=3600,
                          delivery_delay_seconds=0.01, send_failure_rate=0.25, transient_failure_rate=0.2, seed=11)
    async with node_factory(mariadb_config, redis_server.url) as make:
        node = await make(sim)
        base = utcnow().replace(minute=0, second=0, microsecond=0)
        tenant_id, accounts = await new_tenant(node, 2)
        other_id, other_accounts = await new_tenant(node, 1)
        n = await insert_spread(node, tenant_id, accounts, base)
        n_other = await insert_spread(node, other_id, other_accounts, base)
        await node.dispatcher(DispatchSettings(**{**FAST.__dict__, "max_attempts": 1})).start()
        await wait_final(node, tenant_id, n)
        await wait_final(node, other_id, n_other)
        cache = TwoLevelCache(node.redis, f"wwtest:{uuid.uuid4().hex[:8]}:report", local_ttl=30, redis_ttl=30)
        await cache.start()
        reports = ReportUseCases(node.ctx, cache, ReportSettings(max_range_days=31, export_chunk_rows=50))
        try:
            yield node, reports, base, tenant_id, accounts, other_id
        finally:
            await cache.close()


async def test_every_figure_reconciles_with_the_messages_table(world):
    node, reports, base, tenant_id, accounts, _ = world
    start, end = base - timedelta(hours=HOURS + 2), base + timedelta(hours=1)
    p = principal(tenant_id)
    statuses = dict(await sql(node, tenant_id, "SELECT status, COUNT(*) FROM messages WHERE tenant_id = :t "
                                               "GROUP BY status", t=tenant_id))
    assert statuses.get("failed", 0) >= 5 and statuses.get("delivered", 0) >= 20  # a real mix

    hour_sql = "DATE_FORMAT(created_at, '%Y-%m-%dT%H')"
    hourly = await reports.message_stats(p, StatsQuery(start, end, "hourly"), STATS)
    assert len(hourly.buckets) == HOURS + 3  # every hour present, zeros included
    assert figures(hourly, lambda b: ts(b).strftime("%Y-%m-%dT%H")) == await expected_by(node, tenant_id, hour_sql)

    daily_utc = await reports.message_stats(p, StatsQuery(start, end, "daily"), STATS)
    assert figures(daily_utc, lambda b: b.local_start[:10]) == await expected_by(
        node, tenant_id, "DATE(created_at)")
    # Shanghai days start at 16:00 UTC: the same messages fall into other buckets.
    daily_sh = await reports.message_stats(p, StatsQuery(start, end, "daily", "Asia/Shanghai"), STATS)
    assert daily_sh.time_zone == "Asia/Shanghai"
    assert all(b.local_start.endswith("T00:00:00+08:00") for b in daily_sh.buckets)
    assert figures(daily_sh, lambda b: b.local_start[:10]) == await expected_by(
        node, tenant_id, "DATE(created_at + INTERVAL 8 HOUR)")

    for account_id in accounts:
        one = await reports.message_stats(p, StatsQuery(start, end, "hourly", account_id=account_id), STATS)
        assert figures(one, lambda b: ts(b).strftime("%Y-%m-%dT%H")) == await expected_by(
            node, tenant_id, hour_sql, account_id)

    [(n, ok, bad)] = (await expected_by(node, tenant_id, "'all'")).values()
    for resp in (hourly, daily_utc, daily_sh):
        t = resp.total
        assert (t.total_count, t.success_count, t.failed_count) == (n, ok, bad)
        assert t.success_rate == pytest.approx(ok / n)
        assert 0 <= t.avg_response_seconds < 60
        for b in resp.buckets:
            assert b.success_rate == (pytest.approx(b.success_count / b.total_count) if b.total_count else 0)


async def test_tenants_are_isolated(world):
    node, reports, base, tenant_id, accounts, other_id = world
    start, end = base - timedelta(hours=HOURS + 2), base + timedelta(hours=1)
    mine = await reports.message_stats(principal(tenant_id), StatsQuery(start, end, "daily"), STATS)
    theirs = await reports.message_stats(principal(other_id), StatsQuery(start, end, "daily"), STATS)
    [(n_other, _, _)] = (await expected_by(node, other_id, "'all'")).values()
    [(n_mine, _, _)] = (await expected_by(node, tenant_id, "'all'")).values()
    assert theirs.total.total_count == n_other and mine.total.total_count == n_mine
    with pytest.raises(NotFound):  # another tenant's account
        await reports.message_stats(principal(other_id), StatsQuery(start, end, "daily", account_id=accounts[0]),
                                    STATS)


async def test_empty_range_is_all_zero_buckets(world):
    _, reports, base, tenant_id, _, _ = world
    start = base - timedelta(days=20)
    resp = await reports.message_stats(principal(tenant_id), StatsQuery(start, start + timedelta(days=2),
                                                                        "hourly", "Europe/Berlin"), STATS)
    assert len(resp.buckets) == 48 and not any(b.total_count or b.success_rate for b in resp.buckets)
    assert resp.total.total_count == 0


async def test_bad_input_names_the_field(world):
    _, reports, base, tenant_id, _, _ = world
    p = principal(tenant_id)
    cases = [(StatsQuery(base, base - timedelta(hours=1)), "end_time"),
             (StatsQuery(base - timedelta(days=40), base), "end_time"),
             (StatsQuery(base - timedelta(days=1), base, "weekly"), "granularity"),
             (StatsQuery(base - timedelta(days=1), base, "daily", "Nowhere/City"), "time_zone"),
             (StatsQuery(base - timedelta(days=1), base, "hourly", "Asia/Kolkata"), "time_zone"),
             (StatsQuery(None, base), "start_time")]
    for query, field in cases:
        with pytest.raises(InvalidArgument) as e:
            await reports.message_stats(p, query, STATS)
        assert [v.field for v in e.value.violations] == [field], query


async def test_export_pages_through_the_range_in_chunks(world):
    _, reports, base, tenant_id, _, _ = world
    p = principal(tenant_id)
    start, end = base - timedelta(days=3), base + timedelta(hours=1)
    whole = await reports.message_stats(p, StatsQuery(start, end, "hourly"), STATS)
    chunks = [c async for c in await reports.export_message_stats(p, StatsQuery(start, end, "hourly"), 7)]
    assert [len(c) for c in chunks[:-1]] == [7] * (len(chunks) - 1) and 1 <= len(chunks[-1]) <= 7
    flat = [r for c in chunks for r in c]
    assert [(r.bucket.start, r.counts.total, r.counts.failed) for r in flat] == [
        (ts(b), b.total_count, b.failed_count) for b in whole.buckets]
    # The server's chunk limit caps what a caller asks for.
    capped = [c async for c in await reports.export_message_stats(p, StatsQuery(start, end, "hourly"), 10_000)]
    assert max(len(c) for c in capped) == 50


async def test_second_identical_read_is_a_cache_hit(world):
    _, reports, base, tenant_id, _, _ = world
    p = principal(tenant_id)
    q = StatsQuery(base - timedelta(days=2, minutes=uuid.uuid4().int % 60), base, "hourly")

    def count(result: str) -> float:
        return metrics.REGISTRY.get_sample_value("wework_report_cache_requests_total",
                                                 {"report": "message_stats", "result": result}) or 0.0

    hits, misses = count("hit"), count("miss")
    first = await reports.message_stats(p, q, STATS)
    assert (count("hit"), count("miss")) == (hits, misses + 1)
    second = await reports.message_stats(p, q, STATS)
    assert (count("hit"), count("miss")) == (hits + 1, misses + 1)
    assert second == first
    ratio = metrics.REGISTRY.get_sample_value("wework_report_cache_hit_ratio")
    assert ratio == pytest.approx(reports.hit_counter.hits / reports.hit_counter.requests) and 0 < ratio < 1


async def test_account_health_from_history_and_failures(world):
    node, reports, base, tenant_id, accounts, _ = world
    a, b = accounts
    # A made-up day one week ago: A online 06:00, offline 10:00-10:30 then back; B enters ERROR at
    # 12:00 and stays there. Before the day both were ONLINE (their logins, written above).
    day = base - timedelta(days=7)
    day = day.replace(hour=0)
    rows = [(a, day + timedelta(hours=10), "online", "offline"),
            (a, day + timedelta(hours=10, minutes=10), "offline", "recovering"),
            (a, day + timedelta(hours=10, minutes=30), "recovering", "online"),
            (b, day + timedelta(hours=12), "online", "error")]
    # The login rows are stamped now; move them before the day so the day starts ONLINE.
    async with node.db.unit_of_work("account", tenant_id) as uow:
        h = am.AccountStatusHistory
        await uow.session.execute(sa.update(h).where(h.tenant_id == tenant_id)
                                  .values(created_at=day - timedelta(days=1)))
        seq = (await uow.session.execute(sa.select(sa.func.max(h.seq)).where(h.tenant_id == tenant_id))).scalar()
        for i, (account_id, at, old, new) in enumerate(rows, start=1):
            uow.session.add(h(tenant_id=tenant_id, account_id=account_id, old_status=old, new_status=new,
                              created_at=at, seq=seq + i, operator_type="system"))
    health = await reports.account_health(principal(tenant_id), day, day + timedelta(days=1), 0, HEALTH)
    assert health.total_accounts == 2 and {c.status: c.count for c in health.status_counts} == {"ACCOUNT_STATUS_ONLINE": 2}
    # A: 24 h minus 30 min online; B: 12 h online.
    assert health.online_rate == pytest.approx((24 * 60 - 30 + 12 * 60) / (48 * 60))
    assert health.recoveries == 1 and health.mean_time_to_recover.ToTimedelta() == timedelta(minutes=30)
    assert health.open_outages == 1
    assert [(e.account_id, e.error_transitions) for e in health.top_failing_accounts] == [(b, 1)]
    # Over the hours the messages were created in, failures rank the accounts (from the statistics).
    recent = await reports.account_health(principal(tenant_id), base - timedelta(hours=HOURS + 1), base, 5, HEALTH)
    failed = Counter(dict(await sql(node, tenant_id, "SELECT account_id, COUNT(*) FROM messages WHERE "
                                                     "tenant_id = :t AND status = 'failed' GROUP BY account_id",
                                    t=tenant_id)))
    assert {e.account_id: e.failed_messages for e in recent.top_failing_accounts} == dict(failed)
    assert [e.failed_messages for e in recent.top_failing_accounts] == sorted(failed.values(), reverse=True)
