"""`maintain`: partitions ahead and retention on real MariaDB, with a clock passed in.

The migrations partition the tables around the real current year (Y): p{Y-1} .. p{Y+1} for the
yearly tables, the previous month to a year ahead for callback_events. The maintenance clock is
put three years later, so that future partitions must be created and old rows removed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from harness import make_database_config, make_sqlite_config
from harness.admin_cli import admin_document, run_admin, write_settings
from wework.persistence.database import Database, create_engine_for
from wework.persistence.ids import new_id
from wework.persistence.maintenance import DatabaseReport, MaintenancePolicy, lock_name, maintain_all
from wework.persistence.migrate import migrate_all
from wework.persistence.models import AccountStatusHistory, CallbackEvent, Message
from wework.persistence.partitions import list_partitions, partition_for, planned_partitions

pytestmark = pytest.mark.mariadb

Y = datetime.now(UTC).year
NOW = datetime(Y + 3, 3, 15, 12, 0, tzinfo=UTC)
POLICY = MaintenancePolicy(message_retention_days=1095, status_history_retention_days=1095,
                           callback_event_retention_days=180, partitions_ahead_years=1,
                           partitions_ahead_months=3, delete_batch_size=2)
MSG_CUTOFF = NOW - timedelta(days=1095)
CB_CUTOFF = NOW - timedelta(days=180)


def _months(first: datetime, last: datetime) -> list[str]:
    """Monthly partition names from the month of `first` to the month of `last`, inclusive."""
    out, d = [], first.date().replace(day=1)
    while d <= last.date():
        out.append(partition_for(d, "month").name)
        d = partition_for(d, "month").less_than
    return out


def _message(tenant: str, at: datetime) -> Message:
    return Message(id=new_id(), created_at=at, tenant_id=tenant, account_id=new_id(), conversation_id="c1",
                   message_type="text", content={"text": "hi"})


async def _seed(db: Database, tenant: str) -> dict[str, dict[str, list[str]]]:
    """Rows on both sides of the cutoffs; returns table -> {"expired": ids, "kept": ids}."""
    messages = {
        "expired": [(datetime(Y - 5, 6, 1, tzinfo=UTC)), datetime(Y - 1, 12, 31, 23, 59, tzinfo=UTC)]
        + [MSG_CUTOFF - timedelta(days=k) for k in range(1, 6)],  # 5 in the straddling partition
        "kept": [MSG_CUTOFF + timedelta(days=1), datetime(Y + 2, 7, 1, tzinfo=UTC), NOW],
    }
    events = {
        "expired": [datetime(Y - 1, 6, 1, tzinfo=UTC), CB_CUTOFF - timedelta(hours=1)],
        "kept": [CB_CUTOFF + timedelta(hours=1), NOW],
    }
    ids: dict[str, dict[str, list[str]]] = {"messages": {}, "account_status_history": {}, "callback_events": {}}
    async with db.unit_of_work("message", tenant) as uow:
        for kind, times in messages.items():
            rows = [_message(tenant, t) for t in times]
            uow.session.add_all(rows)
            ids["messages"][kind] = [r.id for r in rows]
    async with db.unit_of_work("account", tenant) as uow:
        for kind, times in messages.items():
            rows = [AccountStatusHistory(id=new_id(), created_at=t, tenant_id=tenant, account_id=new_id(),
                                         new_status="online") for t in times]
            uow.session.add_all(rows)
            ids["account_status_history"][kind] = [r.id for r in rows]
    async with db.unit_of_work("callback", tenant) as uow:
        for kind, times in events.items():
            rows = [CallbackEvent(id=new_id(), received_time=t, tenant_id=tenant, guid="g", notify_type=1,
                                  event_type="message", raw_data="{}") for t in times]
            uow.session.add_all(rows)
            ids["callback_events"][kind] = [r.id for r in rows]
    return ids


async def _state(config, db: str, table: str) -> tuple[list[str], set[str]]:
    engine = create_engine_for(config.shards[0].dsn_for(db), config, pooled=False)
    try:
        async with engine.connect() as conn:
            parts = await conn.run_sync(list_partitions, table)
            ids = {r[0] for r in await conn.execute(sa.text(f"SELECT id FROM `{table}`"))}
            return parts, ids
    finally:
        await engine.dispose()


@pytest.fixture
async def seeded(mariadb_server, unique_db_prefix):
    config = make_database_config(unique_db_prefix, [mariadb_server], 1)
    await migrate_all(config)
    db = Database(config)
    await db.start()
    ids = await _seed(db, new_id())
    yield config, ids
    await db.dispose()


def _by_table(reports: list[DatabaseReport]):
    return {t.table: t for r in reports for t in r.tables}


async def test_two_runs_at_once_then_again(seeded):
    config, ids = seeded
    first, second = await asyncio.gather(maintain_all(config, POLICY, now=NOW),
                                         maintain_all(config, POLICY, now=NOW))

    for a, b in zip(first, second, strict=True):
        assert (a.db, a.shard) == (b.db, b.shard)
        assert {a.status, b.status} <= {"done", "skipped"}, (a.message, b.message)
        assert "done" in (a.status, b.status)
    tables = {}
    for reports in (first, second):
        for name, report in _by_table(reports).items():
            tables.setdefault(name, []).append(report)

    yearly = [f"p{Y}", f"p{Y + 1}", f"p{Y + 2}", f"p{Y + 3}", f"p{Y + 4}", "p_future"]
    for table, db in (("messages", "message"), ("account_status_history", "account")):
        created = [p for r in tables[table] for p in r.created]
        assert created == [f"p{Y + 2}", f"p{Y + 3}", f"p{Y + 4}"]  # each made once, by one run
        assert [p for r in tables[table] for p in r.dropped] == [f"p{Y - 1}"]
        assert sum(r.deleted_rows for r in tables[table]) == 5  # the straddling partition's rows
        assert max(r.batches for r in tables[table]) == 3  # 2 + 2 + 1 with batches of 2
        parts, present = await _state(config, db, table)
        assert parts == yearly
        assert present == set(ids[table]["kept"])

    # callback_events: months up to 3 ahead of the clock; everything before the cutoff's month gone.
    migrated_until = planned_partitions("month")[-1].less_than  # what the migration made
    created = [p for r in tables["callback_events"] for p in r.created]
    assert created == _months(datetime(migrated_until.year, migrated_until.month, 1),
                              datetime(Y + 3, 6, 1))
    parts, present = await _state(config, "callback", "callback_events")
    assert parts == _months(CB_CUTOFF, datetime(Y + 3, 6, 1)) + ["p_future"]
    dropped = [p for r in tables["callback_events"] for p in r.dropped]
    assert dropped and set(dropped).isdisjoint(parts) and dropped[-1] < parts[0]
    assert present == set(ids["callback_events"]["kept"])
    assert sum(r.deleted_rows for r in tables["callback_events"]) == 1

    # A row that waited in p_future now sits in its year's partition.
    engine = create_engine_for(config.shards[0].dsn_for("message"), config, pooled=False)
    try:
        async with engine.connect() as conn:
            n = await conn.scalar(sa.text(f"SELECT COUNT(*) FROM messages PARTITION (p{Y + 2})"))
            assert n == 1
    finally:
        await engine.dispose()

    # Twice: nothing left to do.
    again = await maintain_all(config, POLICY, now=NOW)
    assert [r.status for r in again] == ["done"] * 3
    for report in _by_table(again).values():
        assert (report.created, report.dropped, report.deleted_rows) == ([], [], 0)


async def test_a_database_locked_by_another_run_is_skipped(mariadb_server, seeded, tmp_path):
    config, ids = seeded
    name = sa.engine.make_url(config.shards[0].dsn_for("message")).database
    holder = mariadb_server.sync_connect()
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(name),))
            assert cur.fetchone()[0] == 1
        reports = {r.db: r for r in await maintain_all(config, POLICY, now=NOW)}
        assert reports["message"].status == "skipped"
        assert lock_name(name) in reports["message"].message
        assert reports["account"].status == reports["callback"].status == "done"
        _, present = await _state(config, "message", "messages")
        assert present == set(ids["messages"]["expired"] + ids["messages"]["kept"])  # untouched
    finally:
        holder.close()  # releases the lock
    reports = {r.db: r for r in await maintain_all(config, POLICY, now=NOW)}
    assert reports["message"].status == "done"
    assert _by_table(list(reports.values()))["messages"].deleted_rows == 5

    # The command, with the real clock: partitions made by the migration already reach far enough.
    settings = tmp_path / "settings.yaml"
    write_settings(settings, config)
    code, out, err = await run_admin(settings, "maintain", "--json", timeout=120)
    assert code == 0, err
    assert "3 done, 0 skipped" in err
    report = admin_document("maintain", code, out, err)
    assert (report["done"], report["skipped"], report["failed"]) == (3, 0, 0)
    assert {d["db"] for d in report["databases"]} == {"account", "message", "callback"}


async def test_sqlite_deletes_by_retention_only(tmp_path):
    config = make_sqlite_config(tmp_path / "data")
    await migrate_all(config)
    db = Database(config)
    await db.start()
    try:
        ids = await _seed(db, new_id())
        reports = await maintain_all(config, POLICY, now=NOW)
        assert [r.status for r in reports] == ["done"] * 3
        assert all("SQLite: no partitions" in r.message for r in reports)
        tables = _by_table(reports)
        assert tables["messages"].created == tables["messages"].dropped == []
        assert tables["messages"].deleted_rows == 7
        assert tables["callback_events"].deleted_rows == 2
        for table, model in (("messages", Message), ("callback_events", CallbackEvent),
                             ("account_status_history", AccountStatusHistory)):
            db_name = {"messages": "message", "callback_events": "callback"}.get(table, "account")
            async with db.shard_session(db_name, "s0", read_only=True) as session:
                present = set((await session.execute(sa.select(model.id))).scalars())
            assert present == set(ids[table]["kept"]), table
    finally:
        await db.dispose()
