"""Engines and sessions for every physical database of the shard map."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from .config import SERVICE_DATABASES, DatabaseConfig
from .sharding import DIRECTORY, PhysicalDatabase, ShardRouter, physical_databases
from .uow import UnitOfWork, mapped_errors, open_session, open_unit_of_work, unavailable

T = TypeVar("T")
EngineCreated = Callable[[AsyncEngine, str, str | None], None]  # (engine, db, shard or None)

# Strict mode turns silent truncation into errors; UTC makes NOW()/CURRENT_TIMESTAMP agree with
# the application's clock (the columns themselves are DATETIME and never converted).
_MYSQL_INIT = ("SET time_zone = '+00:00', sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
               "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'")

# Execution option that makes a SQLite transaction take the write lock at BEGIN.
_SQLITE_WRITE = "wework_sqlite_write"


def is_sqlite(dsn: str) -> bool:
    return make_url(dsn).get_backend_name() == "sqlite"


def create_engine_for(dsn: str, config: DatabaseConfig | None = None, *, pooled: bool = True) -> AsyncEngine:
    """An AsyncEngine with the session settings the schema relies on (both engines)."""
    config = config or DatabaseConfig()
    url = make_url(dsn)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(dsn, config, pooled)
    kwargs: dict[str, Any] = {
        "echo": config.echo,
        # A connection dropped by a failover or an idle timeout is replaced, not handed out.
        "pool_pre_ping": True,
        # Fewer gap locks than REPEATABLE READ; nothing here depends on repeatable reads.
        "isolation_level": "READ COMMITTED",
        "connect_args": {"charset": "utf8mb4", "init_command": _MYSQL_INIT,
                         "connect_timeout": config.connect_timeout_seconds},
    }
    if pooled:
        kwargs.update(pool_size=config.pool_size, max_overflow=config.max_overflow,
                      pool_recycle=config.pool_recycle_seconds, pool_timeout=config.pool_timeout_seconds)
    else:
        kwargs["poolclass"] = NullPool
    return create_async_engine(url, **kwargs)


def _sqlite_engine(dsn: str, config: DatabaseConfig, pooled: bool) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": config.echo,
                              "connect_args": {"timeout": config.sqlite_busy_timeout_ms / 1000}}
    if not pooled:
        kwargs["poolclass"] = NullPool
    engine = create_async_engine(dsn, **kwargs)
    busy = config.sqlite_busy_timeout_ms

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of the driver's implicit, deferred one.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        cur.execute(f"PRAGMA busy_timeout={int(busy)}")
        cur.execute("PRAGMA foreign_keys=ON")  # as MySQL enforces them
        cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
        cur.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with "database is
        # locked" when another writer got in between; IMMEDIATE waits for the lock instead.
        if conn.get_execution_options().get(_SQLITE_WRITE, True):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


class Database:
    """One AsyncEngine per physical database: the directory and each (service db, shard).

    `databases` limits the service databases this process opens (a process serving only
    MessageService needs no pools to the user databases); the directory is always open.
    """

    def __init__(self, config: DatabaseConfig, databases: Iterable[str] = SERVICE_DATABASES, *,
                 on_engine_created: EngineCreated | None = None) -> None:
        self.config = config
        # Called once per engine as it is created, with (engine, db, shard): the server hooks
        # tracing and pool metrics in here, so persistence needs no telemetry imports.
        self._on_engine_created = on_engine_created
        self.router = ShardRouter(config)
        self.databases = tuple(databases)
        self._targets = physical_databases(config, self.databases)
        self._engines: dict[tuple[str, str | None], AsyncEngine] = {}
        self._by_dsn: dict[str, AsyncEngine] = {}

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Creates the engines (connections open lazily, on first use)."""
        for target in self._targets:
            self._engine_for_target(target)

    async def ping(self) -> None:
        """SELECT 1 on every engine; raises Unavailable naming the first database that fails."""
        await self.start()

        async def one(target: PhysicalDatabase) -> None:
            engine = self._engine_for_target(target)
            async with mapped_errors(target.db, target.shard), engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        await asyncio.gather(*(one(t) for t in self._targets))

    async def dispose(self) -> None:
        engines = list(self._by_dsn.values())
        self._engines.clear()
        self._by_dsn.clear()
        await asyncio.gather(*(e.dispose() for e in engines), return_exceptions=True)

    # ---- engines ------------------------------------------------------------------------------

    @property
    def shard_names(self) -> list[str]:
        return self.router.shard_names

    def _engine_for_target(self, target: PhysicalDatabase) -> AsyncEngine:
        key = (target.db, target.shard)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._by_dsn.get(target.dsn)
            if engine is None:
                engine = create_engine_for(target.dsn, self.config)
                self._by_dsn[target.dsn] = engine
                if self._on_engine_created is not None:
                    self._on_engine_created(engine, target.db, target.shard)
            self._engines[key] = engine
        return engine

    def engine(self, db: str, shard: str | None = None) -> AsyncEngine:
        """The engine of a service database on a shard, or of the directory (db="directory")."""
        if db == DIRECTORY:
            return self._engine_for_target(PhysicalDatabase(DIRECTORY, None, self.config.directory_dsn))
        if db not in self.databases:
            raise ValueError(f"database {db!r} is not open in this process (open: {self.databases})")
        if shard is None:
            raise ValueError("a shard name is needed for a service database")
        spec = self.router.shard(shard)
        return self._engine_for_target(PhysicalDatabase(db, spec.name, spec.dsn_for(db)))

    def _bind(self, engine: AsyncEngine, read_only: bool) -> AsyncEngine:
        if read_only and engine.dialect.name == "sqlite":
            return engine.execution_options(**{_SQLITE_WRITE: False})
        return engine

    # ---- sessions -----------------------------------------------------------------------------

    def shard_for(self, tenant_id: str) -> str:
        return self.router.shard_for(tenant_id).name

    @asynccontextmanager
    async def session(self, db: str, tenant_id: str, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """A session on the tenant's shard primary; the caller commits. Rolled back on exit."""
        shard = self.shard_for(tenant_id)
        async with open_session(self._bind(self.engine(db, shard), read_only), db, shard) as s:
            yield s

    @asynccontextmanager
    async def shard_session(self, db: str, shard: str, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        async with open_session(self._bind(self.engine(db, shard), read_only), db, shard) as s:
            yield s

    @asynccontextmanager
    async def directory_session(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        async with open_session(self._bind(self.engine(DIRECTORY), read_only), DIRECTORY, None) as s:
            yield s

    @asynccontextmanager
    async def unit_of_work(self, db: str, tenant_id: str, *, read_only: bool = False) -> AsyncIterator[UnitOfWork]:
        """One transaction on the tenant's shard: commits on normal exit, rolls back on error."""
        shard = self.shard_for(tenant_id)
        async with open_unit_of_work(self._bind(self.engine(db, shard), read_only), db, shard, tenant_id) as uow:
            yield uow

    @asynccontextmanager
    async def shard_unit_of_work(self, db: str, shard: str, *, read_only: bool = False) -> AsyncIterator[UnitOfWork]:
        """A transaction on a named shard (workers that sweep every shard)."""
        async with open_unit_of_work(self._bind(self.engine(db, shard), read_only), db, shard, None) as uow:
            yield uow

    @asynccontextmanager
    async def directory_unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        async with open_unit_of_work(self.engine(DIRECTORY), DIRECTORY, None, None) as uow:
            yield uow

    async def for_each_shard(self, db: str, fn: Callable[[AsyncSession], Awaitable[T]], *,
                             read_only: bool = True) -> list[T]:
        """Runs `fn(session)` on every shard of `db` concurrently; results in `shard_names` order.

        For platform-level listings and sweeps. If one shard fails, the others are cancelled and
        the error propagates (Unavailable for a shard that cannot be reached): a listing that
        silently skipped a shard would look complete while missing rows.
        """
        results: dict[str, T] = {}

        async def one(shard: str) -> None:
            async with self.shard_session(db, shard, read_only=read_only) as session:
                results[shard] = await fn(session)
                await session.commit()

        try:
            async with asyncio.TaskGroup() as tg:
                for shard in self.shard_names:
                    tg.create_task(one(shard))
        except ExceptionGroup as group:
            raise group.exceptions[0] from group
        return [results[name] for name in self.shard_names]


async def for_each_shard(database: Database, db: str, fn: Callable[[AsyncSession], Awaitable[T]]) -> list[T]:
    """Module-level form of Database.for_each_shard."""
    return await database.for_each_shard(db, fn)


__all__ = ["Database", "UnitOfWork", "create_engine_for", "for_each_shard", "is_sqlite", "unavailable"]
