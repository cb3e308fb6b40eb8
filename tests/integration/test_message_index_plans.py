"""Every statement the repositories run on `messages` is served by one of its indexes.

`messages` keeps only the secondary indexes a query reads (message migrations 0004 and 0005,
docs/decisions/0019-messages-indexes.md): each one costs every insert and every status change.
This test runs the repositories' reads and updates on a MariaDB shard holding a realistic mix
of messages (most of them finished, a few pending and in flight), captures the SQL they send,
and asks MariaDB for each statement's plan (harness/plans.py): none may scan the whole table, and
each must use the primary key or one of the kept indexes. Dropping an index a query needs fails
here. The other tables' hot statements: test_hot_statement_plans.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from harness.plans import check_plans
from wework.domain.messages import MessageStatus
from wework.persistence.ids import new_id
from wework.persistence.repositories.batches import BatchRepository
from wework.persistence.repositories.messages import MessageFilter


async def _fill(session, tenant_id: str, batch_id: str, now: datetime) -> None:
    """6,000 messages of three tenants over 20 accounts and 700 conversations, a batch of 120
    among them: most sent, the rest pending (some scheduled for tomorrow), in flight with an
    expired lease, or failed. Plans depend on the statistics, so the mix is a live shard's."""
    rows, by_status = [], {"sent": [], "sending": [], "failed": [], "scheduled": []}
    for i in range(6000):
        created = now - timedelta(minutes=6000 - i)
        rows.append({"id": new_id(), "created_at": created, "updated_at": created,
                     "tenant_id": tenant_id if i % 3 else f"other-tenant-{i % 2}",
                     "account_id": f"acc-{i % 20}", "conversation_id": f"wmchat-{i % 700}", "message_type": "text",
                     "content": {"text": f"m{i}"}, "template_id": None,
                     "batch_id": batch_id if i % 50 == 0 else None, "priority": 1 + i % 10})
        fate = "sent" if i % 10 < 9 and i < 5500 else ("sending", "failed", "scheduled", "pending")[i % 4]
        if fate != "pending":
            by_status[fate].append(rows[-1]["id"])
    await BatchRepository(session).materialize(rows)
    changes = {"sent": "status = 'sent', send_time = updated_at",
               "sending": "status = 'sending', claimed_by = 'w0', claimed_until = :t",
               "failed": "status = 'failed'", "scheduled": "scheduled_time = :later"}
    for fate, ids in by_status.items():
        for start in range(0, len(ids), 1000):
            await session.execute(
                sa.text(f"UPDATE messages SET {changes[fate]} WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)),
                {"ids": ids[start:start + 1000], "t": (now - timedelta(minutes=1)).replace(tzinfo=None),
                 "later": (now + timedelta(days=1)).replace(tzinfo=None)})
    await session.execute(sa.text("ANALYZE TABLE messages"))


CLAIM, TIME, CONVERSATION, BATCH = ("idx_messages_claim", "idx_messages_tenant_time_status",
                                    "idx_messages_conversation_time", "idx_messages_batch_counts")


# Read on every GetBatchTask, every 0.5 s per WatchBatchTask and every second per running task
# by each dispatcher: from the index alone, not one row lookup per message of the batch.
INDEX_ONLY = frozenset({"batch counts", "batch report counts"})


async def test_every_repository_statement_on_messages_uses_its_index(mariadb_database):
    db = mariadb_database
    tenant_id, batch_id = new_id(), new_id()
    now = datetime.now(UTC).replace(microsecond=0)
    async with db.unit_of_work("message", tenant_id) as uow:
        await _fill(uow.session, tenant_id, batch_id, now)

    async with db.unit_of_work("message", tenant_id) as uow:
        conn = await uow.session.connection()
        dispatch, listing, batches, reports = (uow.dispatch, uow.messages,
                                               uow.batches, uow.reports)

        async def pages(f: MessageFilter) -> None:
            _page, after = await listing.list_page(tenant_id, f, None, 20)
            if after is not None:
                await listing.list_page(tenant_id, f, after, 20)

        # (what runs, the indexes its statements may use; PRIMARY for rows addressed by key)
        calls = [
            ("claim", lambda: dispatch.claim("w1", now, 50, timedelta(seconds=30)), {CLAIM, "PRIMARY"}),
            ("requeue_expired", lambda: dispatch.requeue_expired(now), {CLAIM, "PRIMARY"}),
            ("next_due", lambda: dispatch.next_due(now), {CLAIM}),
            ("list all", lambda: pages(MessageFilter()), {TIME, "PRIMARY"}),
            ("list by account", lambda: pages(MessageFilter(account_id="acc-3")), {TIME, "PRIMARY"}),
            ("list by status", lambda: pages(MessageFilter(status=MessageStatus.FAILED)), {TIME, "PRIMARY"}),
            ("list by time", lambda: pages(MessageFilter(start_time=now - timedelta(days=1), end_time=now)),
             {TIME, "PRIMARY"}),
            ("list by conversation", lambda: pages(MessageFilter(conversation_id="wmchat-7")),
             {CONVERSATION, "PRIMARY"}),
            ("list by batch", lambda: pages(MessageFilter(batch_id=batch_id)), {BATCH, "PRIMARY"}),
            ("batch counts", lambda: batches.counts(tenant_id, batch_id), {BATCH}),
            ("batch report counts", lambda: reports.batch_status_counts(tenant_id, batch_id), {BATCH}),
            ("batch failure reasons", lambda: reports.batch_failure_reasons(tenant_id, batch_id), {BATCH}),
            ("pause", lambda: batches.set_paused(tenant_id, batch_id, True), {BATCH}),
            ("resume", lambda: batches.set_paused(tenant_id, batch_id, False), {BATCH}),
            ("cancel pending", lambda: batches.cancel_pending(tenant_id, batch_id, now), {BATCH}),
            # The send path's daily quota count and the template usage report.
            ("count accepted", lambda: listing.count_accepted(tenant_id, now.date()), {TIME}),
            ("template usage", lambda: reports.template_usage(tenant_id, now - timedelta(days=1), now), {TIME}),
        ]
        checked = await check_plans(conn, calls, ("messages",), index_only=INDEX_ONLY)
        assert checked >= 20
