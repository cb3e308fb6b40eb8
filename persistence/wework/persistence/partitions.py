"""Time partitions of the queue and log tables on MySQL/MariaDB.

RANGE COLUMNS on a DATETIME column is valid on MariaDB 10.11 and MySQL 8 alike (YEAR() of a
TIMESTAMP is not: error 1486), and lets the optimizer prune partitions for plain range
predicates such as `created_at >= ?`. Every table keeps a `p_future` catch-all partition so an
insert never fails for lack of a partition; the maintenance job splits new partitions out of
it ahead of time with REORGANIZE PARTITION, which is cheap while p_future is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import sqlalchemy as sa

Interval = Literal["year", "month"]

FUTURE = "p_future"


@dataclass(frozen=True)
class Partition:
    name: str  # p2025 or p202501
    less_than: date  # exclusive upper bound: the first day of the next period


def _period_start(d: date, interval: Interval) -> date:
    return date(d.year, 1, 1) if interval == "year" else date(d.year, d.month, 1)


def _shift(d: date, interval: Interval, n: int) -> date:
    if interval == "year":
        return date(d.year + n, 1, 1)
    months = d.year * 12 + (d.month - 1) + n
    return date(months // 12, months % 12 + 1, 1)


def partition_for(start: date, interval: Interval) -> Partition:
    name = f"p{start.year}" if interval == "year" else f"p{start.year}{start.month:02d}"
    return Partition(name, _shift(start, interval, 1))


def planned_partitions(interval: Interval, now: datetime | None = None, *, back: int = 1,
                       ahead: int | None = None) -> list[Partition]:
    """Periods from `back` before the current one to `ahead` after it (default: one year ahead)."""
    today = (now or datetime.now(UTC)).date()
    if ahead is None:
        ahead = 1 if interval == "year" else 12
    current = _period_start(today, interval)
    return [partition_for(_shift(current, interval, n), interval) for n in range(-back, ahead + 1)]


def _definitions(parts: list[Partition]) -> str:
    defs = [f"PARTITION {p.name} VALUES LESS THAN ('{p.less_than.isoformat()} 00:00:00')" for p in parts]
    defs.append(f"PARTITION {FUTURE} VALUES LESS THAN (MAXVALUE)")
    return ",\n  ".join(defs)


def partition_table_sql(table: str, column: str, interval: Interval, now: datetime | None = None) -> str:
    """ALTER TABLE that partitions a (new, empty) table by `interval` of `column`."""
    parts = planned_partitions(interval, now)
    return f"ALTER TABLE `{table}` PARTITION BY RANGE COLUMNS(`{column}`) (\n  {_definitions(parts)}\n)"


def list_partitions(conn: sa.Connection, table: str) -> list[str]:
    """Partition names of `table` in the connection's database, in order ([] if unpartitioned)."""
    rows = conn.execute(
        sa.text("SELECT PARTITION_NAME FROM information_schema.PARTITIONS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND PARTITION_NAME IS NOT NULL "
                "ORDER BY PARTITION_ORDINAL_POSITION"),
        {"t": table},
    )
    return [r[0] for r in rows]


def ensure_future_partitions(conn: sa.Connection, table: str, interval: Interval,
                             now: datetime | None = None, *, ahead: int | None = None) -> list[str]:
    """Splits missing partitions up to `ahead` periods from now out of p_future; returns new names.

    Idempotent; a no-op on SQLite and on unpartitioned tables. Call it from the maintenance job
    (e.g. monthly) so p_future stays empty and the split moves no rows.
    """
    if conn.dialect.name not in ("mysql", "mariadb"):
        return []
    existing = list_partitions(conn, table)
    if FUTURE not in existing:
        return []
    wanted = planned_partitions(interval, now, back=0, ahead=ahead)
    have = set(existing)
    # Only periods after the last named partition: RANGE bounds must keep increasing.
    named = [n for n in existing if n != FUTURE]
    last = max(named) if named else ""
    missing = [p for p in wanted if p.name not in have and p.name > last]
    if missing:
        conn.execute(sa.text(f"ALTER TABLE `{table}` REORGANIZE PARTITION {FUTURE} INTO (\n  "
                             f"{_definitions(missing)}\n)"))
    return [p.name for p in missing]


def partitioned_tables(metadata: sa.MetaData) -> dict[str, tuple[str, Interval]]:
    """table name -> (column, interval) for the tables the models mark as partitioned."""
    out: dict[str, Any] = {}
    for table in metadata.tables.values():
        spec = table.info.get("partition")
        if spec:
            out[table.name] = (spec[0], spec[1])
    return out
