"""Slow statements and unused indexes from MariaDB's own statistics (`wework-admin db-report`).

Sources, per server, best first (docs/operations-db-report.md says what each needs):

statements  performance_schema statement digests when `@@performance_schema` is on (needs a
            server restart; counts every statement since the server started or the table was
            truncated), else the slow log table (`log_output` including TABLE, `slow_query_log`,
            both settable at runtime; holds statements slower than `long_query_time` and, with
            `log_queries_not_using_indexes`, every statement that read without an index).
            Statements are grouped by fingerprint (literals replaced by `?`).
plans       `EXPLAIN FORMAT=JSON` of a sample of each top statement (the slow log keeps the full
            text; digests keep none, so a digest's plan is taken from a slow-log sample when one
            exists): table accesses, key, full scans.
indexes     performance_schema `table_io_waits_summary_by_index_usage` (since the server started)
            or `information_schema.INDEX_STATISTICS` with `userstat=1` (since userstat was turned
            on or the statistics flushed): secondary indexes no statement read.

The helpers `capture_statements`, `explain` and `plan_accesses` are also what the plan tests use
to check that the repositories' own statements keep using their indexes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

# ---- statements and plans -----------------------------------------------------------------------

_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*|#[^\n]*", re.DOTALL)
_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"(?<![\w`.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w`])", re.IGNORECASE)
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_VALUES = re.compile(r"(values\s*\(\?\+?\))(\s*,\s*\(\?\+?\))+")
_SPACE = re.compile(r"\s+")
_OWN = re.compile(r"information_schema|performance_schema|mysql\.slow_log", re.IGNORECASE)
EXPLAINABLE = ("select", "update", "delete", "insert", "replace", "with")


def fingerprint(sql: str) -> str:
    """The statement with literals as `?`, lists as `(?+)`, lower case, single spaces."""
    text = _COMMENT.sub(" ", sql)
    text = _STRING.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _SPACE.sub(" ", text).strip().lower()
    text = _LIST.sub("(?+)", text)
    return _VALUES.sub(r"\1", text)


def _match_key(text: str) -> str:
    """What a slow-log fingerprint and a performance_schema DIGEST_TEXT of one statement share:
    digests quote names, space out punctuation and write lists as `(...)`."""
    key = fingerprint(text).replace("`", "").replace("(...)", "(?+)")
    return _SPACE.sub("", key)


def digest_of(text: str) -> str:
    """Short stable id of a fingerprint (or of a performance_schema digest): a metric label."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def explain(conn: AsyncConnection, sql: str, params: Any = None) -> dict:
    """MariaDB's `EXPLAIN FORMAT=JSON` of one statement, parsed (nothing is executed)."""
    raw = (await conn.exec_driver_sql("EXPLAIN FORMAT=JSON " + sql, params)).scalar_one()
    return json.loads(raw)


def plan_accesses(plan: Any, table: str | None = None) -> list[dict]:
    """Every table access of an EXPLAIN FORMAT=JSON tree (of `table` and its partitions, if given)."""
    found = []
    if isinstance(plan, dict):
        name = str(plan.get("table_name", ""))
        if "table_name" in plan and (table is None or name == table or name.startswith(table)):
            found.append(plan)
        for value in plan.values():
            found += plan_accesses(value, table)
    elif isinstance(plan, list):
        for value in plan:
            found += plan_accesses(value, table)
    return found


@contextmanager
def capture_statements(conn: Any, keep: Callable[[str], bool] = lambda _s: True) -> Iterator[list[tuple[str, Any]]]:
    """Collects (statement, parameters) of what runs on `conn` (a sync Connection or an
    AsyncConnection's `.sync_connection`) inside the block, for the statements `keep` accepts."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany) -> None:
        if keep(statement):
            captured.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        yield captured
    finally:
        event.remove(conn, "before_cursor_execute", capture)


@dataclass
class Access:
    table: str
    access_type: str | None
    key: str | None
    rows: int | None

    @property
    def full_scan(self) -> bool:
        return self.access_type == "ALL"


def summarize(plan: dict) -> list[Access]:
    return [Access(str(a.get("table_name")), a.get("access_type"), a.get("key"), a.get("rows"))
            for a in plan_accesses(plan)]


# ---- the report ---------------------------------------------------------------------------------


@dataclass
class StatementStat:
    digest: str
    schema: str | None
    text: str  # fingerprint (slow log) or performance_schema DIGEST_TEXT
    calls: int
    total_seconds: float
    rows_examined: int
    no_index_used: int | None = None  # performance_schema only
    sample: str | None = None
    plan: list[Access] | None = None
    plan_error: str | None = None

    @property
    def full_scan(self) -> bool:
        return any(a.full_scan for a in self.plan or [])


@dataclass
class UnusedIndex:
    schema: str
    table: str
    index: str
    unique: bool  # still enforces a constraint: dropping it changes behaviour, not only speed


@dataclass
class ServerReport:
    server: str  # host:port
    statement_source: str | None  # "performance_schema", "slow_log" or None
    index_source: str | None  # "performance_schema", "userstat" or None
    index_since: str | None  # what "unused" is counted from
    uptime_seconds: int
    statements: list[StatementStat] = field(default_factory=list)
    unused_indexes: list[UnusedIndex] | None = None  # None: no index statistics on this server
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for s, raw in zip(self.statements, out["statements"]):
            raw["full_scan"] = s.full_scan
        return out


async def _variables(conn: AsyncConnection) -> dict[str, str]:
    rows = await conn.exec_driver_sql(
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('performance_schema', 'userstat', 'slow_query_log', "
        "'log_output', 'long_query_time', 'log_queries_not_using_indexes')")
    return {name.lower(): str(value) for name, value in rows}


async def enable_statistics(conn: AsyncConnection, long_query_time: float | None = None) -> list[str]:
    """Switches on what can be switched at runtime (SET GLOBAL): userstat, the slow log into its
    table, statements without an index logged. Returns what it changed."""
    v = await _variables(conn)
    changed = []
    if v.get("userstat", "OFF").upper() != "ON":
        await conn.exec_driver_sql("SET GLOBAL userstat = 1")
        changed.append("userstat=1")
    outputs = {o.strip().upper() for o in v.get("log_output", "FILE").split(",")} - {"NONE", ""}
    if "TABLE" not in outputs:
        value = ",".join(sorted(outputs | {"TABLE"}))
        await conn.exec_driver_sql(f"SET GLOBAL log_output = '{value}'")
        changed.append(f"log_output={value}")
    if v.get("slow_query_log", "OFF").upper() != "ON":
        await conn.exec_driver_sql("SET GLOBAL slow_query_log = 1")
        changed.append("slow_query_log=1")
    if v.get("log_queries_not_using_indexes", "OFF").upper() != "ON":
        await conn.exec_driver_sql("SET GLOBAL log_queries_not_using_indexes = 1")
        changed.append("log_queries_not_using_indexes=1")
    if long_query_time is not None:
        await conn.exec_driver_sql("SET GLOBAL long_query_time = %s", (long_query_time,))
        changed.append(f"long_query_time={long_query_time:g}")
    return changed


async def server_report(conn: AsyncConnection, server: str, schemas: Sequence[str], *, top: int = 10,
                        with_plans: bool = True, slow_log_rows: int = 200_000) -> ServerReport:
    """The report of one server, limited to the platform's `schemas` on it."""
    v = await _variables(conn)
    uptime = int((await conn.exec_driver_sql("SHOW GLOBAL STATUS LIKE 'Uptime'")).one()[1])
    pfs = v.get("performance_schema", "OFF").upper() == "ON"
    slow_table = "TABLE" in v.get("log_output", "").upper() and v.get("slow_query_log", "OFF").upper() == "ON"
    report = ServerReport(server, None, None, None, uptime)
    marks = ", ".join(["%s"] * len(schemas))
    samples: dict[str, tuple[str, str]] = {}  # fingerprint -> (schema, full text)
    if slow_table:
        samples = await _slow_log(conn, report, schemas, marks, top, slow_log_rows, use=not pfs)
    if pfs:
        await _digests(conn, report, schemas, marks, top, samples)
    if report.statement_source is None:
        report.notes.append("no statement statistics: performance_schema is off and the slow log is not written "
                            "to its table (run with --enable-statistics, or see docs/operations-db-report.md)")
    elif report.statement_source == "slow_log":
        report.notes.append(f"slow log: statements slower than long_query_time={v.get('long_query_time')} s"
                            + (" or reading without an index"
                               if v.get("log_queries_not_using_indexes", "").upper() == "ON" else ""))
    if with_plans:
        for stat in report.statements:
            await _plan(conn, stat)
    await _unused_indexes(conn, report, schemas, marks, pfs, v.get("userstat", "OFF").upper() == "ON")
    return report


async def _slow_log(conn: AsyncConnection, report: ServerReport, schemas: Sequence[str], marks: str, top: int,
                    limit: int, *, use: bool) -> dict[str, tuple[str, str]]:
    rows = await conn.exec_driver_sql(
        f"SELECT db, sql_text, query_time, rows_examined FROM mysql.slow_log WHERE db IN ({marks}) "
        f"ORDER BY start_time DESC LIMIT {int(limit)}", tuple(schemas))
    groups: dict[str, StatementStat] = {}
    samples: dict[str, tuple[str, str]] = {}
    for db, sql_text, query_time, rows_examined in rows:
        text = sql_text.decode() if isinstance(sql_text, bytes) else str(sql_text)
        if not text.lstrip().lower().startswith(EXPLAINABLE) or _OWN.search(text):
            continue  # SET, COMMIT, SHOW, statistics reads (db-report's own): not the platform's work
        fp = fingerprint(text)
        seconds = query_time.total_seconds() if isinstance(query_time, timedelta) else float(query_time or 0)
        stat = groups.get(fp)
        if stat is None:
            stat = groups[fp] = StatementStat(digest_of(fp), db, fp, 0, 0.0, 0, sample=text)
            samples[fp] = (db, text)
        stat.calls += 1
        stat.total_seconds += seconds
        stat.rows_examined += int(rows_examined or 0)
    if use:
        report.statement_source = "slow_log"
        report.statements = sorted(groups.values(), key=lambda s: (-s.total_seconds, -s.rows_examined))[:top]
    return samples


async def _digests(conn: AsyncConnection, report: ServerReport, schemas: Sequence[str], marks: str, top: int,
                   samples: dict[str, tuple[str, str]]) -> None:
    rows = await conn.exec_driver_sql(
        "SELECT SCHEMA_NAME, DIGEST, DIGEST_TEXT, COUNT_STAR, SUM_TIMER_WAIT / 1e12, SUM_ROWS_EXAMINED, "
        "SUM_NO_INDEX_USED + SUM_NO_GOOD_INDEX_USED FROM performance_schema.events_statements_summary_by_digest "
        f"WHERE SCHEMA_NAME IN ({marks}) AND DIGEST_TEXT IS NOT NULL "
        "AND LOWER(LTRIM(DIGEST_TEXT)) REGEXP '^(select|update|delete|insert|replace|with)' "
        f"ORDER BY SUM_TIMER_WAIT DESC LIMIT {int(top)}", tuple(schemas))
    report.statement_source = "performance_schema"
    report.statements = []
    by_key = {_match_key(text): (db, text) for db, text in samples.values()}
    for schema, digest, text, calls, seconds, examined, no_index in rows:
        stat = StatementStat(str(digest)[:16], schema, text, int(calls), float(seconds), int(examined or 0),
                             int(no_index or 0))
        sample = by_key.get(_match_key(text))
        stat.sample = sample[1] if sample else None
        report.statements.append(stat)


async def _plan(conn: AsyncConnection, stat: StatementStat) -> None:
    if stat.sample is None:
        stat.plan_error = "no sample text to explain (only the slow log keeps statements' text)"
        return
    try:
        if stat.schema:
            await conn.exec_driver_sql(f"USE `{stat.schema.replace('`', '``')}`")
        # The sample is the server's own text: literal, no parameters (a % is not a placeholder).
        raw = (await conn.exec_driver_sql("EXPLAIN FORMAT=JSON " + stat.sample.replace("%", "%%"))).scalar_one()
        stat.plan = summarize(json.loads(raw))
    except Exception as exc:  # noqa: BLE001 - a truncated or vanished statement: said, not fatal
        stat.plan_error = str(getattr(exc, "orig", exc))[:200]


async def _unused_indexes(conn: AsyncConnection, report: ServerReport, schemas: Sequence[str], marks: str,
                          pfs: bool, userstat: bool) -> None:
    indexes = {(s, t, i): not int(non_unique) for s, t, i, non_unique in await conn.exec_driver_sql(
        "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, MIN(NON_UNIQUE) FROM information_schema.STATISTICS "
        f"WHERE TABLE_SCHEMA IN ({marks}) AND INDEX_NAME <> 'PRIMARY' GROUP BY 1, 2, 3", tuple(schemas))}
    if pfs:
        used = {(s, t, i) for s, t, i in await conn.exec_driver_sql(
            "SELECT OBJECT_SCHEMA, OBJECT_NAME, INDEX_NAME FROM performance_schema.table_io_waits_summary_by_index_usage "
            f"WHERE OBJECT_SCHEMA IN ({marks}) AND INDEX_NAME IS NOT NULL AND COUNT_STAR > 0", tuple(schemas))}
        report.index_source, report.index_since = "performance_schema", f"server start ({report.uptime_seconds} s ago)"
    elif userstat:
        used = {(s, t, i) for s, t, i in await conn.exec_driver_sql(
            "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME FROM information_schema.INDEX_STATISTICS "
            f"WHERE TABLE_SCHEMA IN ({marks})", tuple(schemas))}
        report.index_source = "userstat"
        report.index_since = "userstat was switched on (or FLUSH INDEX_STATISTICS), not the server start"
    else:
        report.notes.append("no index statistics: set userstat=1 (runtime) or performance_schema=ON (restart)")
        return
    report.unused_indexes = [UnusedIndex(s, t, i, unique) for (s, t, i), unique in sorted(indexes.items())
                             if (s, t, i) not in used]
