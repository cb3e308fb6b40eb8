"""Reports on the embedded default (SQLite): the same queries give the same figures.

Statistics are written with the write path's own upsert (record_terminal_status), history rows
as the account service writes them; each report is checked against what was written.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from wework.domain.access import Principal, PrincipalKind
from wework.domain.messages import Message, MessageStatus, MessageType
from wework.persistence.ids import new_id
from wework.persistence.models import account as am
from wework.persistence.models import message as mm
from wework.persistence.repositories.messages import MessageRepository, record_terminal_status
from wework.server.application.reports import ReportUseCases, StatsQuery
from wework.server.handlers.report import BATCH, HEALTH, STATS, TEMPLATES

MS = MessageStatus
BASE = datetime(2026, 3, 1, tzinfo=UTC)


class Ctx:
    def __init__(self, db) -> None:
        self.db = db


async def test_reports_on_sqlite(sqlite_database):
    db = sqlite_database
    tenant_id, account_id, task_id, template_id = (str(uuid.uuid4()) for _ in range(4))
    p = Principal(PrincipalKind.API_KEY, "k", tenant_id, frozenset({"*"}))
    # 15:30 and 16:30 UTC on 1 March: one UTC day, two Shanghai days.
    outcomes = [(BASE + timedelta(hours=15, minutes=30), MS.SENT, None),
                (BASE + timedelta(hours=15, minutes=40), MS.FAILED, "E1"),
                (BASE + timedelta(hours=16, minutes=30), MS.DELIVERED, None),
                (BASE + timedelta(hours=16, minutes=31), MS.FAILED, "E1"),
                (BASE + timedelta(hours=16, minutes=32), MS.FAILED, "E2")]
    async with db.unit_of_work("message", tenant_id) as uow:
        s = uow.session
        s.add(mm.BatchSendTask(id=task_id, tenant_id=tenant_id, creator_id="u", task_name="t", account_id=account_id,
                               message_content={}, target_type="manual", target_config={}, status="completed",
                               total_count=5, sent_count=5, success_count=2, failed_count=3,
                               start_time=BASE + timedelta(hours=15), end_time=BASE + timedelta(hours=17),
                               created_at=BASE, updated_at=BASE, version=1))
        s.add(mm.MessageTemplate(id=template_id, tenant_id=tenant_id, creator_id="u", template_name="greet",
                                 template_type="text", template_content={"text": "hi"}, usage_count=9,
                                 created_at=BASE, updated_at=BASE, version=1))
        repo = MessageRepository(s)
        for created, status, code in outcomes:
            m = Message(id=new_id(), tenant_id=tenant_id, account_id=account_id, conversation_id="c",
                        message_type=MessageType.TEXT, content={"text": "x"}, created_at=created, updated_at=created,
                        batch_id=task_id, template_id=template_id, send_time=created)
            await repo.add(replace(m, status=status, error_code=code, error_message=code and f"{code} happened"))
            await record_terminal_status(s, replace(m, status=status), MS.SENDING, created + timedelta(seconds=2))
    async with db.unit_of_work("account", tenant_id) as uow:
        uow.session.add(am.WeworkAccount(id=account_id, tenant_id=tenant_id, account_name="a", status="online",
                                         created_at=BASE - timedelta(days=1), updated_at=BASE, version=1))
        for seq, (at, old, new) in enumerate([(BASE - timedelta(days=1), None, "online"),
                                              (BASE + timedelta(hours=6), "online", "offline"),
                                              (BASE + timedelta(hours=12), "offline", "online")], start=1):
            uow.session.add(am.AccountStatusHistory(tenant_id=tenant_id, account_id=account_id, old_status=old,
                                                    new_status=new, created_at=at, seq=seq, operator_type="system"))

    reports = ReportUseCases(Ctx(db))
    day = (BASE, BASE + timedelta(days=1))
    utc = await reports.message_stats(p, StatsQuery(*day, "daily"), STATS)
    assert [(b.total_count, b.success_count, b.failed_count) for b in utc.buckets] == [(5, 2, 3)]
    assert utc.total.avg_response_seconds == pytest.approx(2.0)
    shanghai = await reports.message_stats(p, StatsQuery(*day, "daily", "Asia/Shanghai"), STATS)
    assert [(b.local_start[:10], b.total_count) for b in shanghai.buckets] == [
        ("2026-03-01", 2), ("2026-03-02", 3)]
    hourly = await reports.message_stats(p, StatsQuery(*day, "hourly", account_id=account_id), STATS)
    assert [(b.start_time.ToDatetime().hour, b.failed_count) for b in hourly.buckets if b.total_count] == [
        (15, 1), (16, 2)]

    health = await reports.account_health(p, *day, 0, HEALTH)
    assert health.online_rate == pytest.approx(18 / 24) and health.recoveries == 1
    assert health.mean_time_to_recover.ToTimedelta() == timedelta(hours=6)
    assert [(e.account_id, e.failed_messages) for e in health.top_failing_accounts] == [(account_id, 3)]

    batch = await reports.batch_task_report(p, task_id, BATCH)
    assert (batch.messages.total, batch.messages.failed, batch.messages.sent, batch.messages.delivered) == (5, 3, 1, 1)
    assert [(r.error_code, r.count) for r in batch.failure_reasons] == [("E1", 2), ("E2", 1)]
    assert batch.duration.ToTimedelta() == timedelta(hours=2) and batch.throughput_per_minute == pytest.approx(5 / 120)

    usage = await reports.template_usage(p, *day, 0, TEMPLATES)
    assert [(t.template_id, t.message_count, t.success_count, t.failed_count, t.lifetime_usage_count)
            for t in usage.templates] == [(template_id, 5, 2, 3, 9)]
