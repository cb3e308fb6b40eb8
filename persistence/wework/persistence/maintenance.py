"""Partition upkeep and retention of the time-partitioned tables: `wework-admin maintain`.

For every physical database that holds a partitioned table (account, message and callback on
every shard), on MySQL/MariaDB:

1. split the partitions of the coming periods out of `p_future` (REORGANIZE PARTITION), every
   missing period from the last named partition up to `ahead` periods after `now`;
2. drop the partitions that lie wholly before the retention cutoff (DROP PARTITION: instant, no
   undo log, no replica lag);
3. delete the rest of the expired rows (the partition that straddles the cutoff) with
   `DELETE ... LIMIT n` in short transactions until none is left.

On SQLite (the embedded mode) there are no partitions: only step 3 runs, and the report says so.

Two runs at once are safe: each database is worked on under a server-wide named lock taken
without waiting (GET_LOCK(name, 0)); a run that finds the lock taken skips that database and
reports it as skipped, since the holder is doing the same work. Every step is idempotent, so a
second run finds nothing to do. `wework-admin backup` holds the same lock while it dumps a
database, so maintenance DDL never breaks a backup's consistent snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from .config import SERVICE_DATABASES, DatabaseConfig
from .database import create_engine_for
from .models import METADATA
from .partitions import FUTURE, Interval, Partition, partition_for, partitioned_tables, planned_partitions
from .sharding import PhysicalDatabase, physical_databases

log = logging.getLogger(__name__)

Status = Literal["done", "skipped", "failed"]
Progress = Callable[["DatabaseReport"], None]


@dataclass(frozen=True)
class MaintenancePolicy:
    """Retention (days; 0 keeps rows forever), partitions to keep ready, batch size."""

    message_retention_days: int = 1095  # the design's 3 years
    status_history_retention_days: int = 1095
    callback_event_retention_days: int = 180
    partitions_ahead_years: int = 1  # yearly tables: partitions up to this many years after this one
    partitions_ahead_months: int = 3  # monthly tables
    delete_batch_size: int = 10_000
    # How long DDL waits for a table's metadata lock. A waiting ALTER blocks every later query
    # on the table, so it gives up early and the next run tries again.
    lock_wait_seconds: int = 10

    def retention_days(self, table: str) -> int:
        by_table = {"messages": self.message_retention_days,
                    "account_status_history": self.status_history_retention_days,
                    "callback_events": self.callback_event_retention_days}
        if table not in by_table:
            # A new partitioned table must get a retention rule here, not silently none.
            raise KeyError(f"no retention rule for partitioned table {table!r}")
        return by_table[table]

    def ahead(self, interval: Interval) -> int:
        return self.partitions_ahead_years if interval == "year" else self.partitions_ahead_months


@dataclass(frozen=True)
class TableRule:
    db: str
    table: str
    column: str
    interval: Interval


def table_rules(databases: tuple[str, ...] = SERVICE_DATABASES) -> list[TableRule]:
    """The partitioned tables of the models, per service database."""
    return [TableRule(db, table, column, interval)
            for db in databases
            for table, (column, interval) in partitioned_tables(METADATA[db]).items()]


@dataclass
class TableReport:
    table: str
    cutoff: datetime | None  # rows older than this are expired (None: kept forever)
    created: list[str] = field(default_factory=list)  # partitions split out of p_future
    dropped: list[str] = field(default_factory=list)  # partitions dropped whole
    dropped_rows_estimate: int = 0  # InnoDB's estimate of the rows in them
    deleted_rows: int = 0  # rows deleted in batches
    batches: int = 0


@dataclass
class DatabaseReport:
    db: str
    shard: str
    database: str  # MySQL database name or SQLite file; never credentials
    status: Status
    message: str = ""
    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.db}@{self.shard}"


# ---- partitions with their bounds -----------------------------------------------------------


@dataclass(frozen=True)
class PartitionInfo:
    name: str
    less_than: datetime | None  # None for MAXVALUE
    rows_estimate: int


async def partition_infos(conn: AsyncConnection, table: str) -> list[PartitionInfo]:
    """Partitions of `table` in the connection's database, in order, with their upper bounds."""
    rows = await conn.execute(
        sa.text("SELECT PARTITION_NAME, PARTITION_DESCRIPTION, TABLE_ROWS FROM information_schema.PARTITIONS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND PARTITION_NAME IS NOT NULL "
                "ORDER BY PARTITION_ORDINAL_POSITION"), {"t": table})
    return [PartitionInfo(name, _parse_bound(desc), int(n or 0)) for name, desc, n in rows]


def _parse_bound(description: str | None) -> datetime | None:
    text = (description or "").strip().strip("'")
    if not text or text.upper() == "MAXVALUE":
        return None
    return datetime.fromisoformat(text)  # naive UTC, like the column


def missing_partitions(existing: list[PartitionInfo], interval: Interval, now: datetime,
                       ahead: int) -> list[Partition]:
    """Every period from the last named partition's bound to `ahead` periods after `now`.

    Gaps (a job that did not run for a while) get their own partitions too, so that retention
    can later drop them whole instead of deleting their rows one batch at a time.
    """
    wanted = planned_partitions(interval, now, back=0, ahead=ahead)
    end = wanted[-1].less_than
    named = [p for p in existing if p.name != FUTURE and p.less_than is not None]
    if not named:
        return wanted
    out: list[Partition] = []
    start = named[-1].less_than.date()
    while start < end:
        part = partition_for(start, interval)
        out.append(part)
        start = part.less_than
    return out


def _reorganize_sql(table: str, parts: list[Partition]) -> str:
    defs = [f"PARTITION {p.name} VALUES LESS THAN ('{p.less_than.isoformat()} 00:00:00')" for p in parts]
    defs.append(f"PARTITION {FUTURE} VALUES LESS THAN (MAXVALUE)")
    return f"ALTER TABLE `{table}` REORGANIZE PARTITION {FUTURE} INTO ({', '.join(defs)})"


# ---- one table -----------------------------------------------------------------------------


async def _maintain_table(conn: AsyncConnection, rule: TableRule, policy: MaintenancePolicy, now: datetime,
                          mysql: bool) -> TableReport:
    days = policy.retention_days(rule.table)
    cutoff = now - timedelta(days=days) if days > 0 else None
    report = TableReport(rule.table, cutoff)
    if mysql:
        parts = await partition_infos(conn, rule.table)
        if any(p.name == FUTURE for p in parts):
            new = missing_partitions(parts, rule.interval, now, policy.ahead(rule.interval))
            if new:
                await conn.execute(sa.text(_reorganize_sql(rule.table, new)))
                report.created = [p.name for p in new]
        if cutoff is not None:
            naive_cutoff = cutoff.astimezone(UTC).replace(tzinfo=None)
            parts = await partition_infos(conn, rule.table)
            # Every row of a partition is below its bound: bound <= cutoff means all expired.
            # p_future (MAXVALUE) is never dropped, so inserts always find a partition.
            doomed = [p for p in parts if p.less_than is not None and p.less_than <= naive_cutoff]
            if doomed:
                names = ", ".join(p.name for p in doomed)
                await conn.execute(sa.text(f"ALTER TABLE `{rule.table}` DROP PARTITION {names}"))
                report.dropped = [p.name for p in doomed]
                report.dropped_rows_estimate = sum(p.rows_estimate for p in doomed)
    if cutoff is not None:
        await _delete_expired(conn, rule, cutoff, policy.delete_batch_size, mysql, report)
    return report


async def _delete_expired(conn: AsyncConnection, rule: TableRule, cutoff: datetime, batch: int, mysql: bool,
                          report: TableReport) -> None:
    table = METADATA[rule.db].tables[rule.table]
    column = table.c[rule.column]
    if mysql:
        # LIMIT keeps each transaction (locks, undo, the replicas' apply) small; the range on
        # the partition column is pruned to the partitions that straddle the cutoff.
        stmt = sa.delete(table).where(column < cutoff).with_dialect_options(mysql_limit=batch)
    else:
        # SQLite has no DELETE ... LIMIT unless compiled with it; a rowid subquery does the same.
        rowid = sa.literal_column("rowid")
        stmt = sa.delete(table).where(rowid.in_(
            sa.select(rowid).select_from(table).where(column < cutoff).limit(batch).scalar_subquery()))
    while True:
        result = await conn.execute(stmt)
        await conn.commit()  # one short transaction per batch
        report.batches += 1
        report.deleted_rows += max(result.rowcount, 0)
        if result.rowcount < batch:
            return


# ---- one database ---------------------------------------------------------------------------


def lock_name(database: str) -> str:
    """The named lock of a database's maintenance (also taken by backups)."""
    name = f"wework_maintain:{database}"
    # MySQL lock names are limited to 64 characters.
    return name if len(name) <= 64 else "wework_maintain:" + hashlib.sha1(database.encode()).hexdigest()


async def maintain_database(config: DatabaseConfig, target: PhysicalDatabase, policy: MaintenancePolicy,
                            now: datetime, rules: list[TableRule]) -> DatabaseReport:
    url = make_url(target.dsn)
    name = url.database or ""
    report = DatabaseReport(target.db, target.shard or "", name, "done")
    started = time.monotonic()
    engine = create_engine_for(target.dsn, config, pooled=False)
    mysql = engine.dialect.name in ("mysql", "mariadb")
    try:
        async with engine.connect() as raw:
            # MySQL: every statement its own transaction. SQLite: our engine opens transactions
            # itself (BEGIN IMMEDIATE), so each batch is committed explicitly instead.
            conn = await raw.execution_options(isolation_level="AUTOCOMMIT") if mysql else raw
            if mysql:
                lock = lock_name(name)
                if await conn.scalar(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": lock}) != 1:
                    report.status = "skipped"
                    report.message = f"another maintenance run or a backup holds lock {lock!r}"
                    return report
                await conn.execute(sa.text(f"SET SESSION lock_wait_timeout = {int(policy.lock_wait_seconds)}"))
            else:
                report.message = "SQLite: no partitions; expired rows deleted in batches only"
            try:
                for rule in rules:
                    report.tables.append(await _maintain_table(conn, rule, policy, now, mysql))
            finally:
                if mysql:
                    # A dead connection has released its locks already; keep the first error.
                    with contextlib.suppress(Exception):
                        await conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": lock_name(name)})
    except Exception as exc:  # one database failing must not stop the others
        log.exception("maintenance of %s failed", target.label)
        report.status = "failed"
        report.message = f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()
        report.seconds = time.monotonic() - started
    return report


async def maintain_all(config: DatabaseConfig, policy: MaintenancePolicy | None = None, *,
                       now: datetime | None = None, progress: Progress | None = None,
                       databases: tuple[str, ...] = SERVICE_DATABASES) -> list[DatabaseReport]:
    """Maintains every physical database that holds a partitioned table; one report each.

    `now` is the clock (aware UTC; default the real one): tests and drills pass another.
    Databases are done one after the other, to keep the DDL and delete load on the servers low.
    """
    policy = policy or MaintenancePolicy()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    rules = table_rules(databases)
    by_db: dict[str, list[TableRule]] = {}
    for rule in rules:
        by_db.setdefault(rule.db, []).append(rule)
    reports: list[DatabaseReport] = []
    for target in physical_databases(config, tuple(by_db), directory=False):
        report = await maintain_database(config, target, policy, now, by_db[target.db])
        log.info("maintain %s: %s %s", target.label, report.status, report.message)
        if progress is not None:
            progress(report)
        reports.append(report)
    return reports
