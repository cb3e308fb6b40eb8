"""Multi-row INSERT rendering: values are processed and rendered once per distinct value (or
object) of a column, and the statement is exactly what rendering every value anew gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pymysql.converters
from sqlalchemy.dialects import mysql
from wework.persistence import bulk
from wework.persistence.repositories import messages as rm


def _naive(head, processors, escape, rows):
    return head + ", ".join("(" + ", ".join(
        bulk.sql_literal(v if p is None or v is None else p(v), escape) for v, p in zip(row, processors, strict=True))
        + ")" for row in rows)


def test_memoized_rendering_is_the_plain_rendering():
    processors, head, _row, _max, groups = rm._NEW_MESSAGE_INSERT._plan(mysql.dialect())
    escape = pymysql.converters.escape_string
    t = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    # Equal instants as distinct objects and in another zone; equal strings as distinct objects;
    # contents equal by value but not the same object; quotes and backslashes that need escaping.
    rows = []
    for i in range(6):
        same_instant = t.astimezone(timezone(timedelta(hours=8))) if i % 2 else t + timedelta(0)
        rows.append((f"id-{i}", same_instant, t, f"tenant{i - i}"[:6], "acc'ount",
                     f"conv\\{i % 2}", "text", {"text": f"hi {i % 3}"}, None if i % 3 else "tpl",
                     "pending", None, 5 + i % 2, None if i == 0 else t + timedelta(days=i % 2)))
    # The plan's memo groups: created_at, updated_at and scheduled_time share one memo.
    assert groups[1] == groups[2] == groups[12] and groups[0] is None
    (statement,) = bulk._literal_statements(head, processors, escape, rows, 100, groups)
    assert statement == _naive(head, processors, escape, rows)
    assert statement.count("'2026-12-07 08:00:00.000000'") >= 12  # both zones render as UTC
