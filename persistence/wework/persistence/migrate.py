"""Applies the Alembic migrations of every database of a shard map: `migrate_all(config)`.

Order: the directory first (services rely on it), then every (service db, shard). Missing MySQL
databases are created; SQLite files get their parent directories. Each database is migrated
under a server-wide named lock (GET_LOCK), so two runs at once (say, a Helm hook and an operator)
queue up instead of both issuing the same DDL. Running it again is a no-op.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from .config import SERVICE_DATABASES, DatabaseConfig
from .database import create_engine_for
from .migrations import script_location
from .sharding import PhysicalDatabase, physical_databases

log = logging.getLogger(__name__)

Progress = Callable[[str, str, str], None]  # (db, shard or "", message)

LOCK_TIMEOUT_SECONDS = 300


# alembic's `op` and `context` are process-global proxies: two migrations interleaved on one
# event loop (two migrate_all calls at once) would run each other's DDL. This lock serializes
# them within the loop; GET_LOCK serializes them across processes. It is taken after GET_LOCK,
# and its holder waits for nothing else, so the two cannot deadlock.
_ALEMBIC_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _alembic_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _ALEMBIC_LOCKS.get(loop)
    if lock is None:
        lock = _ALEMBIC_LOCKS[loop] = asyncio.Lock()
    return lock


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class MigrationResult:
    db: str  # "directory" or a service database
    shard: str  # "" for the directory
    database: str  # MySQL database name or SQLite file; never credentials
    before: str | None  # revision before the run (None: empty database)
    after: str | None  # revision after the run
    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(db: str, url: str | None = None) -> Config:
    """An alembic Config for one database's history, without an alembic.ini.

    For a new revision: `command.revision(alembic_config("user", url), "add x", autogenerate=True)`
    with `url` pointing at a database migrated to head.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location(db)))
    cfg.set_main_option("path_separator", "os")
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision(db: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(db)).get_current_head()


def _database_name(dsn: str) -> str:
    url = make_url(dsn)
    return url.database or ""


def _lock_name(database: str) -> str:
    name = f"wework_migrate:{database}"
    # MySQL lock names are limited to 64 characters.
    return name if len(name) <= 64 else "wework_migrate:" + hashlib.sha1(database.encode()).hexdigest()


async def _create_databases(config: DatabaseConfig, targets: list[PhysicalDatabase], progress: Progress) -> None:
    by_server: dict[str, list[PhysicalDatabase]] = {}
    for t in targets:
        url = make_url(t.dsn)
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            continue
        if not url.database:
            raise MigrationError(f"{t.label}: the DSN names no database")
        server = url.set(database="").render_as_string(hide_password=False)
        by_server.setdefault(server, []).append(t)
    for server, group in by_server.items():
        engine = create_engine_for(server, config, pooled=False)
        try:
            async with engine.connect() as conn:
                existing = {r[0] for r in await conn.execute(sa.text("SHOW DATABASES"))}
                for t in group:
                    name = _database_name(t.dsn)
                    if name in existing:
                        continue
                    progress(t.db, t.shard or "", f"creating database {name}")
                    # IF NOT EXISTS: a concurrent run may have created it since SHOW DATABASES.
                    await conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{name}` "
                                               "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
                    existing.add(name)
        finally:
            await engine.dispose()


def _upgrade_sync(conn: sa.Connection, db: str, target: str) -> tuple[str | None, str | None]:
    before = MigrationContext.configure(conn).get_current_revision()
    # End the implicit transaction of that read, so that alembic runs its own transactions
    # (an open one would make it treat the whole run as the caller's transaction).
    conn.commit()
    cfg = alembic_config(db)
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, target)
    conn.commit()
    after = MigrationContext.configure(conn).get_current_revision()
    conn.commit()
    return before, after


async def _migrate_one(config: DatabaseConfig, t: PhysicalDatabase, target: str, progress: Progress,
                       lock_timeout: float) -> MigrationResult:
    shard = t.shard or ""
    name = _database_name(t.dsn)
    engine = create_engine_for(t.dsn, config, pooled=False)
    mysql = engine.dialect.name in ("mysql", "mariadb")
    try:
        async with engine.connect() as conn:
            if mysql:
                lock = _lock_name(name)
                got = await conn.scalar(sa.text("SELECT GET_LOCK(:n, :t)"), {"n": lock, "t": lock_timeout})
                await conn.commit()  # the lock belongs to the session, not the transaction
                if got != 1:
                    raise MigrationError(f"{t.label}: another migration holds lock {lock!r} "
                                         f"for more than {lock_timeout:.0f} s")
            try:
                head = head_revision(t.db)
                progress(t.db, shard, f"upgrading {name} to {target} ({head})")
                async with _alembic_lock():
                    before, after = await conn.run_sync(_upgrade_sync, t.db, target)
            finally:
                if mysql:
                    await conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": _lock_name(name)})
                    await conn.commit()
    finally:
        await engine.dispose()
    result = MigrationResult(t.db, shard, name, before, after)
    progress(t.db, shard, f"{before or 'empty'} -> {after}" if result.changed else f"already at {after}")
    return result


async def migrate_all(config: DatabaseConfig, progress: Progress | None = None, *,
                      databases: tuple[str, ...] = SERVICE_DATABASES, target: str = "head",
                      lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS) -> list[MigrationResult]:
    """Migrates the directory, then every service database on every shard; idempotent."""

    def report(db: str, shard: str, message: str) -> None:
        log.info("migrate %s%s: %s", db, f"@{shard}" if shard else "", message)
        if progress is not None:
            progress(db, shard, message)

    targets = physical_databases(config, databases)
    await _create_databases(config, targets, report)
    # One at a time, directory first (see _ALEMBIC_LOCKS for why not in parallel).
    return [await _migrate_one(config, t, target, report, lock_timeout_seconds) for t in targets]


async def schema_status(config: DatabaseConfig, databases: tuple[str, ...] = SERVICE_DATABASES
                        ) -> list[MigrationResult]:
    """Current revision of every database without changing anything (before == after == current).

    A server can refuse to start, or report NOT_SERVING, when some `after` differs from
    `head_revision(db)`.
    """
    out: list[MigrationResult] = []
    for t in physical_databases(config, databases):
        engine = create_engine_for(t.dsn, config, pooled=False)
        try:
            async with engine.connect() as conn:
                rev = await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
        finally:
            await engine.dispose()
        out.append(MigrationResult(t.db, t.shard or "", _database_name(t.dsn), rev, rev))
    return out
