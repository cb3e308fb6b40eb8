"""Multi-row INSERTs at driver level: the group commit of SendMessage and batch materialization.

SQLAlchemy's ORM/Core executemany costs ~40 us of Python per row plus ~150 us per statement
(parameter dicts, defaults, per-row type processing, the compiled-cache lookup), and the
driver's per-parameter escaping (~2 us each in pure Python) was the larger part of what was
left. Here values still go through the columns' own bind processors (UTC datetimes, JSON, enum
validation, SQLite's datetime text), taken once per dialect from the table, so the stored bytes
are SQLAlchemy's. On MySQL/MariaDB the processed values are written as SQL literals: strings
through the connection's own escaper (C-level str.translate; it honours NO_BACKSLASH_ESCAPES),
and each distinct non-scalar object (shared content, timestamps) rendered once per call. The
statements are pipelined: the next one is rendered while the server runs the current one.
SQLite binds positional parameters (its driver binds in C). Errors come wrapped by SQLAlchemy as
usual (IntegrityError for a duplicate key).

`LocalInfileLoad` writes large row sets (batch materialization) with `LOAD DATA LOCAL` from
memory instead (wework.persistence.local_infile): MariaDB parses that text for about a quarter
less CPU per row than INSERT values, and such a write is bound by the server's one thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from wework.persistence import local_infile

log = logging.getLogger(__name__)

# Positional placeholder per DBAPI paramstyle (aiomysql: format, aiosqlite: qmark).
_PLACEHOLDERS = {"format": "%s", "pyformat": "%s", "qmark": "?"}
# No parameters: the driver must not %-format a statement whose values may hold "%".
_NO_PARAMETERS = {"no_parameters": True}
_SCALARS = (str, int, bool, type(None))
# Hashable values whose processed literal depends on the value alone: memoized by value.
_BY_VALUE = frozenset({str, datetime, date, float, bytes})

Processor = Callable[[Any], Any] | None
# A MultiRowInsert's plan for one dialect: the columns' bind processors, the statement's head,
# one row's placeholders, the rows per statement and the columns' memo groups (memo_groups).
_Plan = tuple[tuple[Processor, ...], str, str, int, tuple[Any, ...]]


def sql_literal(value: Any, escape: Callable[[str], str]) -> str:
    """A bind-processed value as a MySQL literal (datetimes are naive UTC by then)."""
    kind = type(value)
    if kind is str:
        return "'" + escape(value) + "'"
    if value is None:
        return "NULL"
    if kind is bytes:
        return "X'" + value.hex() + "'"
    text = _plain_text(value, "a SQL literal")
    return "'" + text + "'" if kind is datetime or kind is date else text


def _plain_text(value: Any, what: str) -> str:
    """A bool, int, float, datetime or date as the text MariaDB reads for it, unquoted."""
    kind = type(value)
    if kind is bool:
        return "1" if value else "0"
    if kind is int:
        return str(value)
    if kind is datetime:
        return value.isoformat(sep=" ", timespec="microseconds")
    if kind is float:
        return repr(value)
    if kind is date:
        return value.isoformat()
    raise TypeError(f"cannot write {kind.__name__} as {what}")


class MultiRowInsert:
    """`INSERT INTO t (c1, ...) VALUES (...), (...)` for one table and column list."""

    CACHED_ROWS = 64  # statement texts (SQLite) cached per row count up to this many rows
    MAX_ROWS = 500  # rows per statement; SQLite's 32,766-parameter limit lowers it for wide tables

    def __init__(self, table: sa.Table, columns: Sequence[str], max_rows: int = MAX_ROWS) -> None:
        self._table = table
        self._columns = tuple(columns)
        self._max_rows = max_rows
        self._plans: dict[str, _Plan | None] = {}
        self._texts: dict[tuple[str, int], str] = {}

    def _plan(self, dialect: sa.Dialect) -> _Plan | None:
        key = dialect.name
        if key in self._plans:
            return self._plans[key]
        placeholder = _PLACEHOLDERS.get(dialect.paramstyle)
        plan = None
        if placeholder is not None:
            quote = dialect.identifier_preparer.quote
            processors = bind_processors(self._table, self._columns, dialect)
            head = f"INSERT INTO {quote(self._table.name)} ({', '.join(quote(c) for c in self._columns)}) VALUES "
            row = "(" + ", ".join([placeholder] * len(self._columns)) + ")"
            max_rows = self._max_rows if dialect.name != "sqlite" else min(self._max_rows, 32766 // len(self._columns))
            plan = (processors, head, row, max_rows, memo_groups(self._table, self._columns, processors))
        self._plans[key] = plan
        return plan

    def _text(self, dialect_name: str, head: str, row: str, n: int) -> str:
        if n > self.CACHED_ROWS:
            return head + ", ".join([row] * n)
        text = self._texts.get((dialect_name, n))
        if text is None:
            text = self._texts[(dialect_name, n)] = head + ", ".join([row] * n)
        return text

    async def execute(self, session: AsyncSession | AsyncConnection, rows: Sequence[Sequence[Any]],
                      fallback: Callable[[], Awaitable[Any]] | None = None, *, max_rows: int | None = None) -> int:
        """Inserts `rows` (values in column order) in the session's transaction; returns the count.

        `fallback()` does the same through SQLAlchemy for drivers of another paramstyle;
        `max_rows` overrides the rows per statement for this call.
        """
        if not rows:
            return 0
        conn = await session.connection() if isinstance(session, AsyncSession) else session
        dialect = conn.dialect
        plan = self._plan(dialect)
        if plan is None:
            if fallback is None:
                raise NotImplementedError(f"no multi-row INSERT for paramstyle {dialect.paramstyle}")
            await fallback()
            return len(rows)
        processors, head, row, per_statement, groups = plan
        if max_rows is not None:
            per_statement = min(max_rows, per_statement) if dialect.name == "sqlite" else max_rows
        if dialect.name in ("mysql", "mariadb"):
            escape = (await conn.get_raw_connection()).driver_connection.escape_string
            statements = _literal_statements(head, processors, escape, rows, per_statement, groups)
            if len(rows) <= per_statement:  # one statement (the group commit): nothing to overlap
                await conn.exec_driver_sql(next(statements), execution_options=_NO_PARAMETERS)
            else:
                await _pipelined(conn, statements)
            return len(rows)
        for start in range(0, len(rows), per_statement):
            part = rows[start:start + per_statement]
            params: list[Any] = []
            append = params.append
            for values in part:
                for value, process in zip(values, processors, strict=True):
                    append(value if process is None or value is None else process(value))
            await conn.exec_driver_sql(self._text(dialect.name, head, row, len(part)), tuple(params))
        return len(rows)


def bind_processors(table: sa.Table, columns: Sequence[str], dialect: sa.Dialect) -> tuple[Processor, ...]:
    """The columns' own bind processors (UTC datetimes, JSON, enum checks) for `dialect`."""
    return tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns)


def memo_groups(table: sa.Table, columns: Sequence[str], processors: tuple[Processor, ...]) -> tuple[Any, ...]:
    """Per column, the key of the memo its literals share: columns without a bind processor
    share one (a literal then depends on the value alone), and so do columns of one type (a
    message's created_at and updated_at are the same datetime: rendered once, not twice)."""
    return tuple(None if process is None else (type(table.c[c].type), repr(table.c[c].type))
                 for c, process in zip(columns, processors, strict=True))


def _literal_statements(head: str, processors: tuple[Processor, ...], escape: Callable[[str], str],
                        rows: Sequence[Sequence[Any]], per_statement: int, groups: Sequence[Any] | None = None):
    """The statements, rendered lazily. A column's value is processed and rendered once per
    distinct value when it is hashable (a batch's rows repeat their tenant, account, enum values
    and timestamps: escaping, enum checks and datetime formatting were half the rendering), in
    the memo its column shares with the others of its `groups` key (default: its own), and once
    per object otherwise (JSON content): safe because the caller holds `rows` (so no id is
    reused) until the last statement is made."""
    shared: dict[Any, dict[Any, str]] = {}
    columns = tuple(zip((shared.setdefault(g, {}) for g in (groups or range(len(processors)))),
                        ({} for _ in processors), processors, strict=True))

    def render(values: Sequence[Any]) -> str:
        # One loop over the columns with the cases inline: a function call per value cost
        # about a fifth of the rendering (SendMessage pays it per message).
        out: list[str] = []
        append = out.append
        # Not strict: every row has the plan's columns, and the check cost a tenth of the loop.
        for value, (by_value, by_object, process) in zip(values, columns):
            if value is None:
                append("NULL")
                continue
            kind = type(value)
            if kind is int or kind is bool:
                append(sql_literal(value if process is None else process(value), escape))
                continue
            if kind in _BY_VALUE:
                memo, key = by_value, value
            else:
                memo, key = by_object, id(value)
            text = memo.get(key)
            if text is None:
                text = memo[key] = sql_literal(value if process is None else process(value), escape)
            append(text)
        return "(" + ", ".join(out) + ")"

    for start in range(0, len(rows), per_statement):
        yield head + ", ".join([render(values) for values in rows[start:start + per_statement]])


async def _pipelined(conn: AsyncConnection, statements: Iterable[Any] | AsyncIterator[Any], *,
                     before: Callable[[Any], str] | None = None,
                     after: Callable[[Any, Any], None] | None = None) -> None:
    """Runs the statements one at a time on `conn`, rendering the next one while the server
    executes the current one, so the client's CPU and the server's overlap. With `before`, the
    items are not SQL: `before(item)` prepares one and returns its SQL, just before it runs;
    `after(item, result)` checks each result before the next statement starts. An async
    iterator of statements lets the running one make progress while the next is rendered."""
    conn = await conn.execution_options(**_NO_PARAMETERS)
    in_flight: asyncio.Task | None = None
    current: Any = None
    items = statements if isinstance(statements, AsyncIterator) else _async_iter(statements)
    try:
        async for item in items:
            if in_flight is not None:
                result = await in_flight
                if after is not None:
                    after(current, result)
            current = item
            in_flight = asyncio.ensure_future(conn.exec_driver_sql(before(item) if before else item))
            await asyncio.sleep(0)  # let it write the statement before rendering the next one
        if in_flight is not None:
            result = await in_flight
            if after is not None:
                after(current, result)
    except BaseException:
        # Never leave a statement running on the connection the caller is about to roll back.
        if in_flight is not None and not in_flight.done():
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)
        raise


# LOAD DATA's default text format: a tab between fields, a newline after each row, backslash
# escapes, \N for NULL.
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
# MariaDB's error when the server or the connection has the local infile capability off.
_LOCAL_INFILE_REFUSED = 4166


_TSV_SPECIAL = re.compile("[\\\\\t\n\r\0]")


def tsv_field(value: Any) -> str:
    """A bind-processed value as a field of LOAD DATA's default format."""
    if type(value) is str:
        return value.translate(_TSV_ESCAPES) if _TSV_SPECIAL.search(value) else value
    if value is None:
        return "\\N"
    return _plain_text(value, "a LOAD DATA field")


class BulkLoadIncomplete(RuntimeError):
    """LOAD DATA LOCAL skipped or altered rows (it treats duplicate keys and bad values as
    warnings): the caller's transaction must be rolled back."""


class LocalInfileLoad:
    """`LOAD DATA LOCAL` of rows held in memory into one table, on MariaDB/MySQL; elsewhere, or
    where the server refuses local infile, the same rows go through `MultiRowInsert`.

    LOAD DATA LOCAL never stops on a duplicate key or a value it cannot convert: it skips or
    converts the row and counts a warning. Each statement's affected rows and warnings are
    checked, and any difference raises BulkLoadIncomplete, so the load is all or nothing in
    the caller's transaction like an INSERT.
    """

    MAX_ROWS = 10_000  # rows per statement: the server parses while the next chunk is rendered

    def __init__(self, table: sa.Table, columns: Sequence[str], max_rows: int = MAX_ROWS) -> None:
        self._table = table
        self._columns = tuple(columns)
        self._max_rows = max_rows
        self._insert = MultiRowInsert(table, columns, max_rows=1000)
        self._processors: dict[str, tuple[Processor, ...]] = {}
        self._refused = False  # the server refused local infile once: INSERT from then on

    def _statement(self, dialect: sa.Dialect, shared: Mapping[str, Any], escape: Callable[[str], str]) -> str:
        quote = dialect.identifier_preparer.quote
        # The file name is never opened: wework.persistence.local_infile sends the served bytes.
        sql = (f"LOAD DATA LOCAL INFILE 'wework-bulk-load' INTO TABLE {quote(self._table.name)} "
               f"CHARACTER SET utf8mb4 ({', '.join(quote(c) for c in self._columns)})")
        if not shared:
            return sql
        processors = bind_processors(self._table, tuple(shared), dialect)
        return sql + " SET " + ", ".join(
            f"{quote(column)} = {sql_literal(value if process is None or value is None else process(value), escape)}"
            for (column, value), process in zip(shared.items(), processors, strict=True))

    async def execute(self, session: AsyncSession | AsyncConnection, rows: Sequence[Any], *,
                      values: Callable[[Any], Sequence[Any]] | None = None, max_rows: int | None = None,
                      shared: Mapping[str, Any] | None = None) -> int:
        """Writes `rows` in the session's transaction; returns the count. Each row is its values
        in column order, or `values(row)` is. The values are taken chunk by chunk while the
        server loads the previous chunk: building 100,000 tuples up front cost ~150 ms before
        the first statement, most of it in the garbage collector walking the caller's rows.
        `max_rows` overrides the rows per statement for this call. `shared` holds other
        columns' values that are the same in every row: they are written once, in the
        statement's SET clause, so neither side renders or parses them per row."""
        if not rows:
            return 0
        shared = dict(shared or {})
        conn = await session.connection() if isinstance(session, AsyncSession) else session
        dialect = conn.dialect
        if dialect.name not in ("mysql", "mariadb") or self._refused:
            return await self._insert_rows(conn, rows, values, shared)
        processors = self._processors.get(dialect.name)
        if processors is None:
            processors = self._processors[dialect.name] = bind_processors(self._table, self._columns, dialect)
        driver = (await conn.get_raw_connection()).driver_connection
        sql = self._statement(dialect, shared, driver.escape_string)

        def serve(chunk: tuple[bytes, int]) -> str:
            local_infile.serve(driver, chunk[0])
            return sql

        def check(chunk: tuple[bytes, int], result: Any) -> None:
            warnings = driver._result.warning_count if driver._result is not None else 0
            if result.rowcount != chunk[1] or warnings:
                raise BulkLoadIncomplete(f"LOAD DATA into {self._table.name} wrote {result.rowcount} of "
                                         f"{chunk[1]} rows with {warnings} warning(s)")

        try:
            await _pipelined(conn, _tsv_chunks(processors, rows, values, max_rows or self._max_rows),
                             before=serve, after=check)
        except sa.exc.OperationalError as exc:
            code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
            if code != _LOCAL_INFILE_REFUSED:
                raise
            # Refused before any row was read (it is the first statement's answer): INSERT instead.
            log.warning("the database refuses LOAD DATA LOCAL (local_infile is off); bulk writes use INSERT")
            self._refused = True
            return await self._insert_rows(conn, rows, values, shared)
        finally:
            local_infile.withdraw(driver)
        return len(rows)

    async def _insert_rows(self, conn: AsyncConnection, rows: Sequence[Any],
                           values: Callable[[Any], Sequence[Any]] | None, shared: dict[str, Any]) -> int:
        """The same rows by multi-row INSERT (another database, or local infile refused)."""
        tuples = [tuple(r) for r in rows] if values is None else [tuple(values(r)) for r in rows]
        if not shared:
            return await self._insert.execute(conn, tuples)
        extra = tuple(shared.values())
        insert = MultiRowInsert(self._table, self._columns + tuple(shared), max_rows=1000)
        return await insert.execute(conn, [t + extra for t in tuples])


async def _async_iter(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


# Rows rendered between two turns of the event loop while a LOAD DATA runs: the server asks
# for its data after reading the statement, and waits until the loop lets the answer out.
_RENDER_SLICE = 100
_FIRST_ROWS = 1000


async def _tsv_chunks(processors: tuple[Processor, ...], rows: Sequence[Any],
                      values_of: Callable[[Any], Sequence[Any]] | None,
                      per_statement: int) -> AsyncIterator[tuple[bytes, int]]:
    """(payload, row count) per statement, rendered lazily; non-scalar values once per object."""
    renderers = [_tsv_renderer(process) for process in processors]
    # The first statement is short: the server idles until it arrives.
    bounds = [0, *range(min(_FIRST_ROWS, per_statement), len(rows), per_statement), len(rows)]
    for start, end in itertools.pairwise(bounds):
        part = rows[start:end]
        lines: list[str] = []
        for piece in range(0, len(part), _RENDER_SLICE):
            some = part[piece:piece + _RENDER_SLICE]
            lines += ["\t".join([render(value) for render, value in zip(renderers, values, strict=True)])
                      for values in (some if values_of is None else map(values_of, some))]
            await asyncio.sleep(0)
        lines.append("")
        yield "\n".join(lines).encode("utf-8"), len(part)


def _tsv_renderer(process: Processor) -> Callable[[Any], str]:
    """value -> field text for one column. A non-scalar value (shared content, timestamps) is
    processed and rendered once per object: safe because the caller holds the rows (so no id is
    reused) until the last chunk is rendered."""
    if process is None:
        return tsv_field
    memo: dict[int, str] = {}

    def render(value: Any) -> str:
        if value is None:
            return "\\N"
        if type(value) in _SCALARS:
            return tsv_field(process(value))
        text = memo.get(id(value))
        if text is None:
            text = memo[id(value)] = tsv_field(process(value))
        return text

    return render
