"""Engines and sessions for every physical database of the shard map."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from wework.domain.errors import Unavailable

from . import local_infile
from .config import SERVICE_DATABASES, DatabaseConfig
from .directory_primary import install_primary_discovery
from .driver_tx import CLEAN, driver_level
from .replicas import SHARD_WIDE, ReplicaRouting
from .repositories.identity import Cipher
from .resilience import close_quietly
from .sharding import DIRECTORY, PhysicalDatabase, ShardRouter, physical_databases
from .uow import (
    UnitOfWork,
    mapped_errors,
    open_driver_unit_of_work,
    open_session,
    open_unit_of_work,
    unavailable,
)

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
    local_infile.install()
    kwargs: dict[str, Any] = {
        "echo": config.echo,
        # Pre-ping and the reset on return are done by _lean_pool's listeners (below).
        "pool_reset_on_return": None,
        # Fewer gap locks than REPEATABLE READ; nothing here depends on repeatable reads.
        "isolation_level": "READ COMMITTED",
        # local_infile: bulk loads (batch materialization) use LOAD DATA LOCAL, answered from
        # memory only, never from a file the server names (wework.persistence.local_infile).
        "connect_args": {"charset": "utf8mb4", "init_command": _MYSQL_INIT,
                         "connect_timeout": config.connect_timeout_seconds, "local_infile": True},
    }
    if pooled:
        kwargs.update(pool_size=config.pool_size, max_overflow=config.max_overflow,
                      pool_recycle=config.pool_recycle_seconds, pool_timeout=config.pool_timeout_seconds)
    else:
        kwargs["poolclass"] = NullPool
    engine = create_async_engine(url, **kwargs)
    _lean_pool(engine)
    return engine


# A pooled connection used less than this long ago is handed out without a ping.
PING_IF_IDLE_SECONDS = 1.0
_IDLE_SINCE = "wework_idle_since"  # connection record info: monotonic time of the last checkin


def _lean_pool(engine: AsyncEngine) -> None:
    """pool_pre_ping and the rollback on return, without their two round trips per transaction
    where they cannot matter (each is a full round trip through the pure-Python driver, and the
    group commit of SendMessage paid both on every batch).

    - Ping: a connection dropped by a failover or an idle timeout is still replaced, not handed
      out, when it has been idle for PING_IF_IDLE_SECONDS; one returned a moment ago was just
      working (a database lost since then fails the next statement, which invalidates the pool
      as a failed ping would).
    - Reset: the rollback on return is skipped when the connection's last act was a successful
      COMMIT (nothing is open then). Every statement runs in a transaction SQLAlchemy begins, so
      a BEGIN clears the mark; so does any error, including one raised by the COMMIT itself.
    """
    sync = engine.sync_engine
    dialect = sync.dialect

    @sa.event.listens_for(sync, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(sync, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)  # None: a fresh connection (info is cleared on reconnect)
        if idle_since is None or time.monotonic() - idle_since < PING_IF_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                # As pool_pre_ping: reconnect, and replace every connection older than this one.
                raise sa.exc.InvalidatePoolError() from exc
            raise

    @sa.event.listens_for(sync, "begin")
    def _began(conn: sa.Connection) -> None:
        conn.info[CLEAN] = False

    @sa.event.listens_for(sync, "commit")
    def _committing(conn: sa.Connection) -> None:
        conn.info[CLEAN] = True  # the COMMIT runs next; an error in it clears this (below)

    @sa.event.listens_for(sync, "handle_error")
    def _failed(ctx: sa.engine.ExceptionContext) -> None:
        conn = ctx.connection
        if conn is not None and not conn.closed and not conn.invalidated:
            conn.info[CLEAN] = False

    @sa.event.listens_for(sync, "reset")
    def _reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        committed = record.info.pop(CLEAN, False)
        # As the pool's own rollback-on-return: not outside the event loop (a connection being
        # garbage collected is terminated instead), nor after a rollback already done.
        if committed or state.transaction_was_reset or not state.asyncio_safe:
            return
        dialect.do_rollback(dbapi_connection)


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
                 on_engine_created: EngineCreated | None = None, cipher: Cipher | None = None) -> None:
        self.config = config
        # The column cipher every unit of work hands to the repositories that seal secrets.
        self.cipher = cipher
        # Called once per engine as it is created, with (engine, db, shard): the server hooks
        # tracing and pool metrics in here, so persistence needs no telemetry imports.
        self._on_engine_created = on_engine_created
        self.router = ShardRouter(config)
        self.databases = tuple(databases)
        self._targets = physical_databases(config, self.databases)
        self._engines: dict[tuple[str, str | None], AsyncEngine] = {}
        self._by_dsn: dict[str, AsyncEngine] = {}
        self._init_shard_map_state()
        # Read replicas: which may serve reads, and what each read must see (replicas.py).
        self.replicas = ReplicaRouting(config)
        self.on_shard_map_replaced.append(self._replicas_follow_map)

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
        engines = list(self._by_dsn.values()) + self._retired
        self._retired = []
        for task in list(self._retire_tasks):
            task.cancel()
        self._engines.clear()
        self._by_dsn.clear()
        await asyncio.gather(*(e.dispose() for e in engines), return_exceptions=True)
        await self.replicas.dispose()

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
                if target.db == DIRECTORY and self.config.directory_replicas:
                    install_primary_discovery(engine, [target.dsn, *self.config.directory_replicas],
                                              self.config.replica_heartbeat_schema)
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
        async with self._write_gate(tenant_id=tenant_id, read_only=read_only):
            shard = self.shard_for(tenant_id)
            async with self._open_session(db, shard, tenant_id, read_only) as s:
                yield s

    @asynccontextmanager
    async def shard_session(self, db: str, shard: str, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        async with self._write_gate(shard=shard, read_only=read_only), \
                self._open_session(db, shard, None, read_only) as s:
            yield s

    @asynccontextmanager
    async def directory_session(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """A session on the directory primary, always (the shard map and bucket moves must read
        the latest rows); lookups that may be served by a replica use directory_unit_of_work."""
        async with open_session(self._bind(self.engine(DIRECTORY), read_only), DIRECTORY, None) as s:
            yield s

    @asynccontextmanager
    async def unit_of_work(self, db: str, tenant_id: str, *, read_only: bool = False) -> AsyncIterator[UnitOfWork]:
        """One transaction on the tenant's shard: commits on normal exit, rolls back on error."""
        async with self._write_gate(tenant_id=tenant_id, read_only=read_only):
            shard = self.shard_for(tenant_id)
            async with self._open_uow(db, shard, tenant_id, read_only) as uow:
                yield uow

    @asynccontextmanager
    async def shard_unit_of_work(self, db: str, shard: str, *, read_only: bool = False,
                                 tenants: Iterable[str] = (), rendered_sql: bool = False) -> AsyncIterator[UnitOfWork]:
        """A transaction on a named shard (workers that sweep every shard).

        `tenants`: tenants whose rows the caller routed to `shard` before this call (batched
        writes); Unavailable (retryable) if one of them belongs to another shard by now.
        `rendered_sql`: the caller only runs rendered statements (bulk.MultiRowInsert), no ORM
        and no bound parameters. On MySQL/MariaDB without replicas the transaction then runs
        on the pooled driver connection (driver_tx), about 250 us of CPU cheaper; elsewhere
        (SQLite, a replicated shard whose writes are tracked) it is an ordinary one.
        """
        async with self._write_gate(shard=shard, read_only=read_only, tenants=tenants):
            if rendered_sql and not read_only and not self.replicas.has_replicas(shard) \
                    and driver_level(engine := self.engine(db, shard)):
                async with open_driver_unit_of_work(engine, db, shard, None) as uow:
                    uow.cipher = self.cipher
                    yield uow
                return
            async with self._open_uow(db, shard, None, read_only) as uow:
                yield uow

    @asynccontextmanager
    async def directory_unit_of_work(self, *, read_only: bool = False) -> AsyncIterator[UnitOfWork]:
        """A directory transaction. `read_only=True`: a lookup that a directory replica within
        the lag bound may serve, once it has applied every directory write this process (or,
        through Redis, any process) recorded lately; else the primary (docs/replicas.md)."""
        async with self._open_uow(DIRECTORY, None, None, read_only) as uow:
            yield uow

    async def for_each_shard(self, db: str, fn: Callable[[UnitOfWork], Awaitable[T]], *,
                             read_only: bool = True) -> list[T]:
        """Runs `fn(uow)`, one unit of work per shard, on every shard of `db` concurrently; results in `shard_names` order.

        For platform-level listings and sweeps. If one shard fails, the others are cancelled and
        the error propagates (Unavailable for a shard that cannot be reached): a listing that
        silently skipped a shard would look complete while missing rows.
        """
        results: dict[str, T] = {}

        async def one(shard: str) -> None:
            async with self.shard_unit_of_work(db, shard, read_only=read_only) as uow:
                results[shard] = await fn(uow)

        try:
            async with asyncio.TaskGroup() as tg:
                for shard in self.shard_names:
                    tg.create_task(one(shard))
        except ExceptionGroup as group:
            raise group.exceptions[0] from group
        return [results[name] for name in self.shard_names]

    # ---- read replicas (replicas.py) ----------------------------------------------------------

    # The directory is routed like one more shard, under the name DIRECTORY (shard=None here).

    @asynccontextmanager
    async def _replica_read(self, db: str, shard: str | None, tenant_id: str | None,
                            read_only: bool) -> AsyncIterator[AsyncConnection | None]:
        """A connection to a usable replica for a read_only call on a replicated shard (or
        directory), else None."""
        conn = None
        route = shard or DIRECTORY
        if read_only and self.replicas.has_replicas(route):
            # Directory rows belong to no tenant: a directory read waits for the directory's
            # recorded writes (kept under SHARD_WIDE), not for the primary's whole position,
            # which would cost a primary round trip per lookup.
            must_see = SHARD_WIDE if shard is None else tenant_id
            conn = await self.replicas.connect_for_read(db, route, must_see, self.engine(db, shard))
        if conn is None:
            yield None
            return
        try:
            yield conn
        finally:
            await close_quietly(conn, "connection")

    @asynccontextmanager
    async def _tracked_write(self, db: str, shard: str | None, tenant_id: str | None,
                             read_only: bool) -> AsyncIterator[AsyncConnection | None]:
        """For a write on a replicated shard (or directory): a primary connection kept past the
        commit, so that the transaction's GTID can be read and recorded for the next reads of the
        tenant (of every tenant, for a shard-wide write; of every directory lookup)."""
        if read_only or not self.replicas.has_replicas(shard or DIRECTORY):
            yield None
            return
        async with mapped_errors(db, shard):
            conn = await self.engine(db, shard).connect()
        try:
            yield conn
        finally:
            await close_quietly(conn, "connection")

    @asynccontextmanager
    async def _open_uow(self, db: str, shard: str | None, tenant_id: str | None,
                        read_only: bool) -> AsyncIterator[UnitOfWork]:
        async with self._open_uow_on(db, shard, tenant_id, read_only) as uow:
            uow.cipher = self.cipher
            yield uow

    @asynccontextmanager
    async def _open_uow_on(self, db: str, shard: str | None, tenant_id: str | None,
                           read_only: bool) -> AsyncIterator[UnitOfWork]:
        async with self._replica_read(db, shard, tenant_id, read_only) as replica:
            if replica is not None:
                async with open_unit_of_work(replica, db, shard, tenant_id) as uow:  # type: ignore[arg-type]
                    yield uow
                return
        async with self._tracked_write(db, shard, tenant_id, read_only) as conn:
            if conn is not None:
                async with open_unit_of_work(conn, db, shard, tenant_id) as uow:  # type: ignore[arg-type]
                    # First hook: recorded before any wake-up lets another reader in.
                    uow.after_commit(functools.partial(self.replicas.record_write, conn, shard or DIRECTORY,
                                                       tenant_id))
                    yield uow
                return
        async with open_unit_of_work(self._bind(self.engine(db, shard), read_only), db, shard, tenant_id) as uow:
            yield uow

    @asynccontextmanager
    async def _open_session(self, db: str, shard: str, tenant_id: str | None,
                            read_only: bool) -> AsyncIterator[AsyncSession]:
        # Sessions commit themselves (no after-commit hook): their writes are not tracked.
        async with self._replica_read(db, shard, tenant_id, read_only) as replica:
            if replica is not None:
                async with open_session(replica, db, shard) as s:  # type: ignore[arg-type]
                    yield s
                return
        async with open_session(self._bind(self.engine(db, shard), read_only), db, shard) as s:
            yield s

    def _replicas_follow_map(self, config: DatabaseConfig) -> None:
        stale = self.replicas.configure(config)
        if stale:
            self._retire_later(stale)

    # ---- runtime shard map (shardmap.py) --------------------------------------------------------

    # How long a write to a frozen bucket waits for its bucket move to switch, before UNAVAILABLE.
    freeze_wait_seconds: float = 10.0
    # Engines dropped from the map are disposed this long after the switch, so that the
    # transactions already running on them finish first.
    retire_grace_seconds: float = 30.0

    def _init_shard_map_state(self) -> None:
        self.map_version = 0  # the runtime shard map version applied; 0 = the settings' map
        self._map_changed = asyncio.Event()
        self._writes_by_bucket: Counter[int] = Counter()
        self._writes_by_shard: Counter[str] = Counter()
        self._retired: list[AsyncEngine] = []
        self._retire_tasks: set[asyncio.Task[None]] = set()
        # Called with the new config after each replace_shard_map (state derived from the map).
        self.on_shard_map_replaced: list[Callable[[DatabaseConfig], None]] = []

    def replace_shard_map(self, config: DatabaseConfig, version: int | None = None) -> None:
        """Routes all new work by `config` from now on, without a restart.

        Transactions already open finish on the engines they started on; engines whose DSN is
        no longer in the map are disposed `retire_grace_seconds` later. The bucket count and the
        directory cannot change at runtime.
        """
        if config.bucket_count != self.config.bucket_count:
            raise ValueError(f"bucket_count cannot change ({self.config.bucket_count} -> {config.bucket_count})")
        if config.directory_dsn != self.config.directory_dsn:
            raise ValueError("the directory database cannot change at runtime")
        self.config = config
        self.router = ShardRouter(config)
        self._targets = physical_databases(config, self.databases)
        self._engines.clear()  # (db, shard) -> engine is derived from the map; _by_dsn keeps pools
        if version is not None:
            self.map_version = version
        keep = {t.dsn for t in self._targets} | {config.directory_dsn}
        retired = [self._by_dsn.pop(dsn) for dsn in list(self._by_dsn) if dsn not in keep]
        if retired:
            self._retire_later(retired)
        for hook in self.on_shard_map_replaced:
            hook(config)
        changed, self._map_changed = self._map_changed, asyncio.Event()
        changed.set()

    def _retire_later(self, engines: list[AsyncEngine]) -> None:
        self._retired.extend(engines)

        async def later() -> None:
            await asyncio.sleep(self.retire_grace_seconds)
            for engine in engines:
                if engine in self._retired:
                    self._retired.remove(engine)
                    await engine.dispose()

        try:
            task = asyncio.get_running_loop().create_task(later(), name="retire-engines")
        except RuntimeError:  # no loop: nothing can be running on them; dispose() closes them
            return
        self._retire_tasks.add(task)
        task.add_done_callback(self._retire_tasks.discard)

    async def _wait_map_change(self, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            try:
                await asyncio.wait_for(self._map_changed.wait(), remaining)
                return
            except TimeoutError:
                pass
        raise Unavailable(f"{what} is being moved to another database; retry shortly",
                          metadata={"frozen": what})

    @asynccontextmanager
    async def _write_gate(self, *, tenant_id: str | None = None, shard: str | None = None,
                          read_only: bool = False, tenants: Iterable[str] = ()) -> AsyncIterator[None]:
        """Holds writes to frozen buckets (a bucket move is switching them) until the map changes.

        A tenant's write waits, then routes by the new map. A batched write for known tenants
        (`tenants`, routed to `shard` earlier) waits if one of them is frozen and is refused
        (retryable) if one of them belongs to another shard by then. A sweep (a shard-wide
        write for unknown tenants) waits while its shard holds frozen buckets. Writes that passed
        are counted, so that
        `wait_writes_drained` can tell a bucket move when none is left on the old map.
        """
        if read_only:
            yield
            return
        deadline = time.monotonic() + self.freeze_wait_seconds
        routed = [tenant_id] if tenant_id is not None else list(tenants)
        counter: Counter[Any]
        if routed:
            while frozen := [b for b in map(self.router.bucket_of, routed) if b in self.router.frozen]:
                await self._wait_map_change(deadline, f"bucket {frozen[0]}")
            # Checked after the wait and before counting: a later freeze waits for this write.
            moved = [t for t in routed if shard is not None and self.router.shard_for(t).name != shard]
            if moved:
                raise Unavailable(f"tenant {moved[0]} moved off shard {shard} before this write; retry",
                                  metadata={"shard": str(shard)})
            counter, keys = self._writes_by_bucket, sorted(set(map(self.router.bucket_of, routed)))
        else:
            # A sweep only touches rows it finds on the shard, and a move deletes the rows it
            # moved before it switches the map: after the wait, the shard holds only its own.
            assert shard is not None
            while shard in self.router.frozen_shards:
                await self._wait_map_change(deadline, f"shard {shard}")
            counter, keys = self._writes_by_shard, [shard]
        for key in keys:
            counter[key] += 1
        try:
            yield
        finally:
            for key in keys:
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]

    async def wait_writes_drained(self, timeout: float) -> bool:
        """True once no write that passed the gate is still open on a frozen bucket or on a shard
        holding one (new ones wait at the gate); False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            frozen, shards = self.router.frozen, self.router.frozen_shards
            if not any(b in frozen for b in self._writes_by_bucket) and \
                    not any(s in shards for s in self._writes_by_shard):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)


async def for_each_shard(database: Database, db: str, fn: Callable[[UnitOfWork], Awaitable[T]]) -> list[T]:
    """Module-level form of Database.for_each_shard."""
    return await database.for_each_shard(db, fn)


__all__ = ["Database", "UnitOfWork", "create_engine_for", "for_each_shard", "is_sqlite", "unavailable"]
