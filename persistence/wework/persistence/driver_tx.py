"""A transaction straight on a pooled driver connection: the group commit's hot path.

SQLAlchemy's asyncio layer costs about 250 us of CPU per transaction on top of the driver: a
greenlet for every awaited call, the session's and the connection's state machines, the
proxies around the DBAPI connection. With the group commit's own statements (the idempotency
keys, the messages, COMMIT) one transaction took 466 us of CPU through a session and 218 us on
the driver connection the pool hands out; 577 against 285 us for a batch of nine. SendMessage
runs one such transaction per batch, so at small batches this was the largest cost of a send
after gRPC itself (docs/decisions/0022-group-commit-on-the-driver-connection.md).

The group commit's statements are rendered SQL already (bulk.MultiRowInsert), so here they go
to the DBAPI connection as text. What stays SQLAlchemy's:
- the pool: checkout pings a connection idle for a while, checkin skips the reset of a
  connection that committed or rolled back (database._lean_pool);
- the dialect's disconnect detection: a dead connection is invalidated, never returned;
- the exception wrapping: callers see sa.exc.IntegrityError and the rest as on the general
  path, so mapped_errors() turns a lost database into Unavailable.
Not seen here: the engine's execution events (per-statement tracing, `echo`); the call's span
still covers the transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import PoolProxiedConnection
from sqlalchemy.ext.asyncio import AsyncEngine

# Connection record info: True while nothing is open on the connection, from a COMMIT (or, here,
# a ROLLBACK) that succeeded until the next BEGIN or error. database._lean_pool skips the pool's
# rollback on return then.
CLEAN = "wework_committed"

T = TypeVar("T")


class DriverTransaction:
    """One transaction on a pooled DBAPI connection of MySQL/MariaDB (aiomysql).

    It offers the part of AsyncConnection that rendered statements need (`dialect`,
    `get_raw_connection`, `exec_driver_sql` without parameters, `execution_options`), so
    bulk.MultiRowInsert and the repositories built on it run on it unchanged, and commit /
    rollback / close like an AsyncSession, so the unit of work drives it (uow.open_driver_unit_of_work).
    """

    def __init__(self, connection: PoolProxiedConnection, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self._connection = connection
        self._driver = connection.driver_connection
        self._error = dialect.loaded_dbapi.Error

    async def get_raw_connection(self) -> PoolProxiedConnection:
        return self._connection

    async def execution_options(self, **_options: Any) -> DriverTransaction:
        return self  # statements are never %-formatted here: there are no parameters

    async def exec_driver_sql(self, statement: str, parameters: None = None,
                              execution_options: Any = None) -> int:
        """Runs one rendered statement; returns the affected row count."""
        if parameters is not None:
            raise TypeError("a DriverTransaction runs rendered statements only, without parameters")
        return await self._run(statement, self._driver.query(statement))

    async def commit(self) -> None:
        await self._run("COMMIT", self._driver.commit())
        self._connection.info[CLEAN] = True

    async def rollback(self) -> None:
        if not self._connection.is_valid:
            return  # invalidated by a lost connection: nothing is left to roll back
        await self._run("ROLLBACK", self._driver.rollback())
        self._connection.info[CLEAN] = True

    async def close(self) -> None:
        """Returns the connection to the pool. One left with something open (a statement
        cancelled half-way, a failed ROLLBACK) is closed instead: its state is unknown."""
        if self._connection.info.get(CLEAN) is not True and self._connection.is_valid:
            self._connection.invalidate()
        self._connection.close()

    async def _run(self, statement: str, step: Awaitable[T]) -> T:
        self._connection.info[CLEAN] = False
        try:
            return await step
        except self._error as exc:
            invalidated = self.dialect.is_disconnect(exc, self._connection.dbapi_connection, None)
            if invalidated and self._connection.is_valid:
                self._connection.invalidate(exc)
            raise sa.exc.DBAPIError.instance(_head(statement), None, exc, self._error, dialect=self.dialect,
                                             connection_invalidated=invalidated) from exc


def _head(statement: str, limit: int = 120) -> str:
    # The values are rendered into the statement: an error (and its log line) names the
    # statement, not the content of a few hundred messages.
    return statement if len(statement) <= limit else statement[:limit] + " ..."


def driver_level(engine: AsyncEngine) -> bool:
    """Whether transactions of rendered SQL can run on this engine's driver connections."""
    return engine.dialect.name in ("mysql", "mariadb") and engine.dialect.driver == "aiomysql"
