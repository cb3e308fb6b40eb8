"""Classifies driver errors so that callers see domain errors, not MySQL or SQLite codes."""

from __future__ import annotations

import asyncio
import re

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

# MySQL/MariaDB client and server codes that mean "cannot talk to the database right now".
_MYSQL_UNAVAILABLE = {
    1040,  # too many connections
    1045,  # access denied (wrong credentials: the database is unusable, not the request)
    1049,  # unknown database (not created/migrated yet)
    1053,  # server shutdown in progress
    1927,  # connection killed (MariaDB)
    2002, 2003, 2005, 2006, 2013, 2026, 2055,  # cannot connect / gone away / lost connection
    4031,  # disconnected by the server because of inactivity (MySQL 8)
}
_MYSQL_DUPLICATE = {1062, 1586}
_MYSQL_RETRYABLE = {1205, 1213}  # lock wait timeout, deadlock
_SQLITE_UNAVAILABLE = ("unable to open database file", "disk i/o error", "database is locked")


def _mysql_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", None)
    if args and isinstance(args[0], int):
        return args[0]
    return None


def is_unavailable(exc: BaseException) -> bool:
    """True when the failure is the database's (down, unreachable, overloaded), not the request's."""
    if isinstance(exc, (sa_exc.TimeoutError, ConnectionError, asyncio.TimeoutError, TimeoutError)):
        return True  # pool exhausted, or the driver's own connect/read timeouts
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        code = _mysql_code(exc)
        if code is not None:
            return code in _MYSQL_UNAVAILABLE
        if isinstance(exc, sa_exc.OperationalError):
            msg = str(exc.orig).lower()
            return any(m in msg for m in _SQLITE_UNAVAILABLE)
        if isinstance(exc, sa_exc.InterfaceError):
            return True  # a closed or broken connection object
    return False


def is_retryable(exc: BaseException) -> bool:
    """Deadlock or lock wait timeout: the whole transaction may simply be run again."""
    return isinstance(exc, sa_exc.DBAPIError) and _mysql_code(exc) in _MYSQL_RETRYABLE


def is_duplicate_key(exc: BaseException) -> bool:
    if not isinstance(exc, sa_exc.IntegrityError):
        return False
    code = _mysql_code(exc)
    if code is not None:
        return code in _MYSQL_DUPLICATE
    return "unique constraint failed" in str(exc.orig).lower()


_MYSQL_KEY = re.compile(r"for key '(?:[^'.]*\.)?([^'.]+)'")
_SQLITE_COLUMNS = re.compile(r"unique constraint failed: (.+)$", re.IGNORECASE)


def duplicate_key_name(exc: BaseException, metadata: sa.MetaData | None = None) -> str | None:
    """The unique key that a duplicate-key IntegrityError violated, e.g. "uk_tenants_tenant_code".

    MySQL names the key ("PRIMARY" for the primary key); SQLite names the columns, which are
    mapped back to the key's name through `metadata` (the models' MetaData of that database).
    """
    if not is_duplicate_key(exc):
        return None
    text = str(getattr(exc, "orig", exc))
    m = _MYSQL_KEY.search(text)
    if m:
        return m.group(1)
    m = _SQLITE_COLUMNS.search(text.strip())
    if not m:
        return None
    cols = [c.strip() for c in m.group(1).split(",")]
    table_name = cols[0].split(".")[0]
    names = [c.split(".", 1)[1] for c in cols]
    if metadata is not None and table_name in metadata.tables:
        table = metadata.tables[table_name]
        if [c.name for c in table.primary_key.columns] == names:
            return "PRIMARY"
        for idx in table.indexes:
            if idx.unique and [c.name for c in idx.columns] == names:
                return idx.name
    return f"{table_name}({', '.join(names)})"
