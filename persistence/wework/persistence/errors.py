"""Classifies driver errors so that callers see domain errors, not MySQL, SQLite or Redis codes."""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3

import pymysql
import sqlalchemy as sa
from redis import exceptions as redis_exc
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError
from wework.domain.errors import AlreadyExists, EtagMismatch

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


# Redis answers that mean "this server or cluster cannot serve right now", not "bad command":
# a replica being promoted (READONLY), a cluster without a quorum or with uncovered slots
# (CLUSTERDOWN, TRYAGAIN, MASTERDOWN), or a client that gave up redirecting (ClusterError).
_REDIS_UNAVAILABLE = (redis_exc.ConnectionError, redis_exc.TimeoutError, redis_exc.ClusterError,
                      redis_exc.TryAgainError, redis_exc.ReadOnlyError, redis_exc.SlotNotCoveredError)

DATABASE = "database"
REDIS = "redis"
NETWORK = "network"  # a socket-level failure whose peer the exception does not name


def _mysql_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", None)
    if args and isinstance(args[0], int):
        return args[0]
    return None


def unavailable_dependency(exc: BaseException) -> str | None:
    """DATABASE, REDIS or NETWORK when `exc` says a dependency is down, unreachable or
    overloaded (not that the request was wrong); None otherwise.

    The one classification of connection failures, for every path: SQLAlchemy's wrapped errors
    (ORM sessions, replicas, the directory), the driver's own (pymysql's, raised unwrapped by
    `engine.raw_connection()` on the group commit's path, driver_tx), and redis-py's, single
    server and cluster. uow.mapped_errors and runtime/errors.py (the last line before INTERNAL)
    both ask here, so a new path cannot forget one of them.
    """
    if isinstance(exc, _REDIS_UNAVAILABLE):
        return REDIS
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return DATABASE
        code = _mysql_code(exc)
        if code is not None:
            return DATABASE if code in _MYSQL_UNAVAILABLE else None
        if isinstance(exc, sa_exc.OperationalError):
            msg = str(exc.orig).lower()
            return DATABASE if any(m in msg for m in _SQLITE_UNAVAILABLE) else None
        if isinstance(exc, sa_exc.InterfaceError):
            return DATABASE  # a closed or broken connection object
        return None
    if isinstance(exc, pymysql.err.MySQLError):  # unwrapped: a raw connection's checkout
        if isinstance(exc, pymysql.err.InterfaceError):
            return DATABASE  # the connection object is closed or broken
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        return DATABASE if code in _MYSQL_UNAVAILABLE else None
    if isinstance(exc, sqlite3.OperationalError):
        return DATABASE if any(m in str(exc).lower() for m in _SQLITE_UNAVAILABLE) else None
    if isinstance(exc, sa_exc.TimeoutError):
        return DATABASE  # the pool had no connection to give within its timeout
    if isinstance(exc, (ConnectionError, socket.gaierror, asyncio.TimeoutError, TimeoutError)):
        return NETWORK  # a driver's own connect/read timeout or refused connection
    return None


def is_unavailable(exc: BaseException) -> bool:
    """True when the failure is a dependency's (down, unreachable, overloaded), not the request's."""
    return unavailable_dependency(exc) is not None


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


async def checked_flush(session: AsyncSession, subject: str, duplicates: dict[str, tuple[str, str, str]],
                        metadata: sa.MetaData) -> None:
    """Flushes, turning a lost optimistic-lock race into EtagMismatch(subject) and a duplicate
    key into AlreadyExists (duplicates: key name -> (resource type, field, value); `metadata`
    of the session's database names SQLite's keys). Other integrity errors stay as they are."""
    try:
        await session.flush()
    except StaleDataError as exc:
        raise EtagMismatch(subject) from exc
    except sa.exc.IntegrityError as exc:
        key = duplicate_key_name(exc, metadata)
        if key in duplicates:
            raise AlreadyExists(*duplicates[key]) from exc
        raise
