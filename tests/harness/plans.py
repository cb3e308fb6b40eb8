"""Plan checks of the repositories' own statements (decision 0019, 0032).

A check runs repository calls on a realistically filled MariaDB shard, captures the SQL they
send (`wework.persistence.dbreport.capture_statements`), asks MariaDB for each statement's plan
(`explain`) and asserts that every access of the watched tables uses one of the expected
indexes, never a full scan. The statements are the repositories' own, never retyped.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable

from wework.persistence.dbreport import capture_statements, explain, plan_accesses

# (name, the call, the indexes its statements may use; PRIMARY for rows addressed by key)
PlanCall = tuple[str, Callable[[], Awaitable[object]], set[str]]


async def check_plans(conn, calls: Iterable[PlanCall], tables: tuple[str, ...], *,
                      index_only: frozenset[str] = frozenset()) -> int:
    """Asserts the plans of every SELECT/UPDATE/DELETE `calls` send on `tables` (and their
    partitions); `index_only` names calls that must be answered from the index alone. Returns
    the number of table accesses checked."""

    def watched(statement: str) -> bool:
        return (any(t in statement for t in tables)
                and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")))

    checked = 0
    for name, call, expected in calls:
        with capture_statements(conn.sync_connection, watched) as captured:
            await call()
        assert captured, f"{name}: no statement on {tables} captured"
        for sql, params in captured:
            plan = await explain(conn, sql, params)
            accesses = [a for t in tables for a in plan_accesses(plan, t)]
            for access in accesses or [{}]:
                where = f"{name}:\n{sql}\n{json.dumps(plan, indent=1)}"
                assert access.get("access_type") not in (None, "ALL"), f"full scan in {where}"
                keys = _keys(access)
                assert keys and keys <= expected, f"{sorted(keys) or None} used in {where}"
                if name in index_only:
                    assert access.get("using_index") is True, f"rows read beside the index in {where}"
                checked += 1
    return checked


def _keys(access: dict) -> set[str]:
    """The index an access reads, or every index an index_merge combines."""
    if access.get("key") is not None:
        return {access["key"]}
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("key"), str):
                found.add(node["key"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(access.get("index_merge"))
    return found
