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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

# Positional placeholder per DBAPI paramstyle (aiomysql: format, aiosqlite: qmark).
_PLACEHOLDERS = {"format": "%s", "pyformat": "%s", "qmark": "?"}
# No parameters: the driver must not %-format a statement whose values may hold "%".
_NO_PARAMETERS = {"no_parameters": True}
_SCALARS = (str, int, bool, type(None))

Processor = Callable[[Any], Any] | None


def sql_literal(value: Any, escape: Callable[[str], str]) -> str:
    """A bind-processed value as a MySQL literal (datetimes are naive UTC by then)."""
    kind = type(value)
    if kind is str:
        return "'" + escape(value) + "'"
    if value is None:
        return "NULL"
    if kind is bool:
        return "1" if value else "0"
    if kind is int:
        return str(value)
    if kind is datetime:
        return "'" + value.isoformat(sep=" ", timespec="microseconds") + "'"
    if kind is float:
        return repr(value)
    if kind is date:
        return "'" + value.isoformat() + "'"
    if kind is bytes:
        return "X'" + value.hex() + "'"
    raise TypeError(f"cannot write {kind.__name__} as a SQL literal")


class MultiRowInsert:
    """`INSERT INTO t (c1, ...) VALUES (...), (...)` for one table and column list."""

    CACHED_ROWS = 64  # statement texts (SQLite) cached per row count up to this many rows
    MAX_ROWS = 500  # rows per statement; SQLite's 32,766-parameter limit lowers it for wide tables

    def __init__(self, table: sa.Table, columns: Sequence[str], max_rows: int = MAX_ROWS) -> None:
        self._table = table
        self._columns = tuple(columns)
        self._max_rows = max_rows
        self._plans: dict[str, tuple[tuple[Processor, ...], str, str, int] | None] = {}
        self._texts: dict[tuple[str, int], str] = {}

    def _plan(self, dialect: sa.Dialect) -> tuple[tuple[Processor, ...], str, str, int] | None:
        key = dialect.name
        if key in self._plans:
            return self._plans[key]
        placeholder = _PLACEHOLDERS.get(dialect.paramstyle)
        plan = None
        if placeholder is not None:
            quote = dialect.identifier_preparer.quote
            processors = tuple(self._table.c[c].type.dialect_impl(dialect).bind_processor(dialect)
                               for c in self._columns)
            head = f"INSERT INTO {quote(self._table.name)} ({', '.join(quote(c) for c in self._columns)}) VALUES "
            row = "(" + ", ".join([placeholder] * len(self._columns)) + ")"
            max_rows = self._max_rows if dialect.name != "sqlite" else min(self._max_rows, 32766 // len(self._columns))
            plan = (processors, head, row, max_rows)
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
        processors, head, row, per_statement = plan
        if max_rows is not None:
            per_statement = min(max_rows, per_statement) if dialect.name == "sqlite" else max_rows
        if dialect.name in ("mysql", "mariadb"):
            escape = (await conn.get_raw_connection()).driver_connection.escape_string
            statements = _literal_statements(head, processors, escape, rows, per_statement)
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


def _literal_statements(head: str, processors: tuple[Processor, ...], escape: Callable[[str], str],
                        rows: Sequence[Sequence[Any]], per_statement: int):
    """The statements, rendered lazily. Non-scalar values are rendered once per object: safe
    because the caller holds `rows` (so no id is reused) until the last statement is made."""
    rendered: dict[tuple[int, int], str] = {}

    def literal(value: Any, column: int, process: Processor) -> str:
        if type(value) in _SCALARS:
            return sql_literal(value if process is None or value is None else process(value), escape)
        key = (id(value), column)
        text = rendered.get(key)
        if text is None:
            text = rendered[key] = sql_literal(value if process is None else process(value), escape)
        return text

    columns = tuple(enumerate(processors))
    for start in range(0, len(rows), per_statement):
        yield head + ", ".join(["(" + ", ".join([literal(values[i], i, process) for i, process in columns]) + ")"
                                for values in rows[start:start + per_statement]])


async def _pipelined(conn: AsyncConnection, statements) -> None:
    """Runs the statements one at a time on `conn`, rendering the next one while the server
    executes the current one, so the client's CPU and the server's overlap."""
    conn = await conn.execution_options(**_NO_PARAMETERS)
    in_flight: asyncio.Task | None = None
    try:
        for sql in statements:
            if in_flight is not None:
                await in_flight
            in_flight = asyncio.ensure_future(conn.exec_driver_sql(sql))
            await asyncio.sleep(0)  # let it write the statement before rendering the next one
        if in_flight is not None:
            await in_flight
    except BaseException:
        # Never leave a statement running on the connection the caller is about to roll back.
        if in_flight is not None and not in_flight.done():
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)
        raise
