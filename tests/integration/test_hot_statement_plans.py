"""The platform's hot statements outside `messages` keep using their indexes (harness/plans.py).

Account pages and the heartbeat monitor's sweeps, status history pages, batch task pages, the
report queries and the send path's idempotency lookup run through their repositories on a shard
filled like a live one (three tenants, the one under test among many); their SQL is captured and
explained. A dropped or no longer usable index fails here. `messages`:
test_message_index_plans.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from harness.plans import check_plans
from wework.domain.accounts import AccountStatus
from wework.domain.batches import BatchStatus
from wework.persistence.ids import new_id
from wework.persistence.models import account as am
from wework.persistence.models import message as mm
from wework.persistence.repositories.accounts import AccountRepository
from wework.server.security.field_crypto import FieldCipher

STATUSES = ("online", "offline", "created", "error", "recovering")


def _tenants(n: int = 30) -> tuple[str, list[str]]:
    """The tenant under test and the others of its shard."""
    tenant = new_id()
    return tenant, [tenant] + [new_id() for _ in range(n - 1)]


async def test_account_and_report_statements_use_their_indexes(mariadb_database):
    db = mariadb_database
    tenant, tenants = _tenants()
    now = datetime.now(UTC).replace(microsecond=0)
    accounts = []
    async with db.unit_of_work("account", tenant) as uow:
        rows = []
        for i in range(1800):  # 60 accounts per tenant, most online with a recent heartbeat
            t = tenants[i % 30]
            rows.append({"id": new_id(), "tenant_id": t, "account_name": f"acc-{i}", "user_id": f"u-{i % 40}",
                         "status": STATUSES[0] if i % 10 < 7 else STATUSES[i % 5],
                         "last_heartbeat_time": now - timedelta(seconds=i % 90),
                         "next_recovery_at": now + timedelta(minutes=i % 30) if i % 5 == 4 else None,
                         "created_at": now - timedelta(minutes=i), "updated_at": now})
            if t == tenant:
                accounts.append(rows[-1]["id"])
        await uow.session.execute(sa.insert(am.WeworkAccount), rows)
        history = [{"id": new_id(), "created_at": now - timedelta(hours=i % 72, seconds=i), "tenant_id": tenants[i % 30],
                    "account_id": accounts[i % 20] if i % 30 == 0 else f"other-{i % 400}",
                    "old_status": "online", "new_status": "offline" if i % 2 else "online", "seq": i // 30 + 1}
                   for i in range(6000)]
        await uow.session.execute(sa.insert(am.AccountStatusHistory), history)
        for table in ("wework_accounts", "account_status_history"):
            await uow.session.execute(sa.text(f"ANALYZE TABLE {table}"))

    async with db.unit_of_work("account", tenant) as uow:
        conn = await uow.session.connection()
        repo = AccountRepository(uow.session, FieldCipher({"k1": b"k" * 32}, "k1", b"lookup-key"))
        history_repo, reports = uow.status_history, uow.reports

        async def pages(status: AccountStatus | None, user_id: str | None) -> None:
            page = await repo.list_page(tenant, status, user_id, None, 20)
            await repo.list_page(tenant, status, user_id, page[-1].id if page else None, 20)

        A, H = "idx_wework_accounts_", "idx_account_status_history_"
        calls = [
            ("get", lambda: repo.get(tenant, accounts[5]), {"PRIMARY"}),
            ("count", lambda: repo.count(tenant), {A + "tenant_id", A + "tenant_status_heartbeat",
                                                   A + "account_name_search", "uk_wework_accounts_tenant_account_name"}),
            ("list page", lambda: pages(None, None), {A + "tenant_id", "PRIMARY"}),
            ("list page by status", lambda: pages(AccountStatus.OFFLINE, None),
             {A + "tenant_id", A + "tenant_status_heartbeat", A + "status", "PRIMARY"}),
            ("list page by user", lambda: pages(None, "u-3"), {A + "tenant_id", A + "user_id", "PRIMARY"}),
            ("heartbeat", lambda: repo.touch_heartbeat(tenant, accounts[1], now, timedelta(seconds=10)),
             {"PRIMARY", A + "tenant_id"}),  # (tenant_id, id): the secondary index holds the key
            ("stale online sweep", lambda: repo.lock_stale_online(now - timedelta(seconds=60), 100),
             {A + "online_heartbeat", A + "last_heartbeat"}),
            ("due recoveries", lambda: repo.lock_due_recoveries(now, 100), {A + "recovery_due"}),
            ("history after", lambda: history_repo.after(tenant, 10, 150, None, 50), {H + "tenant_seq"}),
            # MariaDB 10.11 prefers idx_account_id plus a sort of the account's rows over reading
            # idx_account_seq backwards; both read one account's rows only.
            ("history page", lambda: history_repo.page_for_account(tenant, accounts[0], None, 20),
             {H + "account_seq", H + "account_id"}),
            ("report accounts", lambda: reports.accounts(tenant), {A + "tenant_id", A + "tenant_status_heartbeat",
                                                                   "uk_wework_accounts_tenant_account_name"}),
            ("report status before", lambda: reports.status_before(tenant, now - timedelta(hours=24)),
             {H + "tenant_seq", H + "account_seq", "<derived2>"}),
            ("report left online", lambda: reports.last_left_online_before(tenant, now), {H + "tenant_seq"}),
            ("report transitions", lambda: reports.transitions(tenant, now - timedelta(hours=24), now),
             {H + "tenant_seq"}),
        ]
        assert await check_plans(conn, calls, ("wework_accounts", "account_status_history")) >= 15


async def test_batch_task_report_and_send_path_statements_use_their_indexes(mariadb_database):
    db = mariadb_database
    tenant, tenants = _tenants()
    now = datetime.now(UTC).replace(microsecond=0)
    async with db.unit_of_work("message", tenant) as uow:
        tasks = [{"id": new_id(), "tenant_id": tenants[i % 30], "creator_id": f"u-{i % 10}", "task_name": f"t{i}",
                  "account_id": f"acc-{i % 20}", "message_content": {"text": "x"}, "target_type": "manual",
                  "target_config": {}, "status": "running" if i % 50 == 0 else ("completed", "failed", "created")[i % 3],
                  "created_at": now - timedelta(minutes=i), "updated_at": now} for i in range(1500)]
        await uow.session.execute(sa.insert(mm.BatchSendTask), tasks)
        stats = [{"tenant_id": tenants[t], "account_id": f"acc-{a}", "stat_date": (now - timedelta(days=d)).date(),
                  "stat_hour": h, "total_count": 10, "success_count": 9, "failed_count": 1}
                 for t in range(10) for a in range(10) for d in range(7) for h in range(0, 24, 2)]
        await uow.session.execute(sa.insert(mm.MessageStatistic), stats)
        keys = [{"tenant_id": tenants[i % 30], "operation": "SendMessage", "request_id": f"r-{i}",
                 "resource_id": new_id(), "created_at": now} for i in range(3000)]
        await uow.session.execute(sa.insert(mm.IdempotencyKey), keys)
        for table in ("batch_send_tasks", "message_statistics", "idempotency_keys"):
            await uow.session.execute(sa.text(f"ANALYZE TABLE {table}"))

    async with db.unit_of_work("message", tenant) as uow:
        conn = await uow.session.connection()
        batches, reports, messages = uow.batches, uow.reports, \
            uow.messages

        async def pages(status: BatchStatus | None, account_id: str) -> None:
            page = await batches.list_page(tenant, status, account_id, None, 20)
            if page:
                await batches.list_page(tenant, status, account_id, (page[-1].created_at, page[-1].id), 20)

        B, S = "idx_batch_send_tasks_", "idx_message_statistics_"
        mine = next(t["id"] for t in tasks if t["tenant_id"] == tenant)
        calls = [
            ("batch get", lambda: batches.get(tenant, mine), {"PRIMARY"}),
            ("batch list page", lambda: pages(None, ""), {B + "tenant_id", "PRIMARY"}),
            ("batch list by status", lambda: pages(BatchStatus.COMPLETED, ""),
             {B + "tenant_id", B + "status", "PRIMARY"}),
            ("batch list by account", lambda: pages(None, "acc-4"),
             {B + "tenant_id", B + "account_id", "PRIMARY"}),
            ("running tasks sweep", lambda: batches.active_ids(), {B + "status"}),
            ("report batch task", lambda: reports.batch_task(tenant, mine), {"PRIMARY"}),
            ("report hourly", lambda: reports.hourly_counts(tenant, now - timedelta(days=2), now),
             {S + "tenant_date", "uk_message_statistics_tenant_account_date_hour"}),
            ("report hourly of an account", lambda: reports.hourly_counts(tenant, now - timedelta(days=2), now,
                                                                          "acc-3"),
             {S + "tenant_date", "uk_message_statistics_tenant_account_date_hour"}),
            ("report per account", lambda: reports.counts_per_account(tenant, now - timedelta(days=2), now),
             {S + "tenant_date", "uk_message_statistics_tenant_account_date_hour"}),
            ("send idempotency lookup", lambda: messages.get_idempotent(tenant, "SendMessage", "r-30"), {"PRIMARY"}),
        ]
        assert await check_plans(conn, calls, ("batch_send_tasks", "message_statistics", "idempotency_keys")) >= 10
