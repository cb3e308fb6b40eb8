"""Shard maps over real servers, uniquely named so that concurrent runs never collide."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from wework.persistence.config import DatabaseConfig, ShardSpec

from .servers import MariaDBServer

# Every prefix issued in this process. The session's end drops their databases on the default
# server (tests/conftest.py), whatever a test's own teardown managed: full-suite runs left a
# two-shard stack's databases behind (a module-scoped async fixture's cleanup that did not run).
ISSUED_PREFIXES: list[str] = []


def new_db_prefix(kind: str = "t") -> str:
    """`wwt_<8 hex>` (or `wwt<kind>_...`): short, because MySQL names stop at 64 characters."""
    prefix = f"ww{kind}_{secrets.token_hex(4)}"
    ISSUED_PREFIXES.append(prefix)
    return prefix


def bucket_ranges(bucket_count: int, parts: int) -> list[str]:
    """Splits 0..bucket_count-1 into `parts` contiguous inclusive ranges of near-equal size."""
    return [f"{i * bucket_count // parts}-{(i + 1) * bucket_count // parts - 1}" for i in range(parts)]


def make_database_config(prefix: str, servers: Sequence[MariaDBServer], n_shards_per_server: int = 1,
                         *, bucket_count: int = 1024, **overrides) -> DatabaseConfig:
    """Shards s0..sN-1 spread round the servers, DSN `.../{prefix}_{db}_{i}`; directory on servers[0]."""
    if not servers:
        raise ValueError("at least one server is needed")
    total = len(servers) * n_shards_per_server
    ranges = bucket_ranges(bucket_count, total)
    shards = []
    for i in range(total):
        server = servers[i // n_shards_per_server]
        shards.append(ShardSpec(name=f"s{i}", buckets=ranges[i], dsn=server.url(f"{prefix}_{{db}}_{i}")))
    overrides.setdefault("pool_size", 2)
    overrides.setdefault("max_overflow", 5)
    return DatabaseConfig(bucket_count=bucket_count, directory_dsn=servers[0].url(f"{prefix}_directory"),
                          shards=shards, **overrides)


def make_sqlite_config(directory: Path, n_shards: int = 1, *, bucket_count: int = 1024) -> DatabaseConfig:
    """The embedded layout (one SQLite file per service db and shard) under `directory`."""
    ranges = bucket_ranges(bucket_count, n_shards)
    return DatabaseConfig(
        bucket_count=bucket_count,
        directory_dsn=f"sqlite+aiosqlite:///{directory}/directory.db",
        shards=[ShardSpec(name=f"s{i}", buckets=ranges[i], dsn=f"sqlite+aiosqlite:///{directory}/{{db}}_s{i}.db")
                for i in range(n_shards)],
    )


def physical_database_names(config: DatabaseConfig) -> dict[tuple[str, str], str]:
    """(service db, shard name) -> MySQL database name, plus ("directory", "") -> name."""
    from sqlalchemy.engine import make_url
    from wework.persistence.config import SERVICE_DATABASES

    names = {("directory", ""): make_url(config.directory_dsn).database}
    for shard in config.shards:
        for db in SERVICE_DATABASES:
            names[(db, shard.name)] = make_url(shard.dsn_for(db)).database
    return names


def create_scratch_database(server: MariaDBServer, name: str, *statements: str) -> None:
    """CREATE DATABASE `name` on `server`, then runs `statements` in it (tables, rows)."""
    admin = server.sync_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            cur.execute(f"USE `{name}`")
            for statement in statements:
                cur.execute(statement)
    finally:
        admin.close()


def single_connection_engine(server: MariaDBServer, name: str):
    """An engine on database `name` whose pool holds one connection: every checkout gets the
    same one back, so a test can tell whether the pool kept or replaced it."""
    from wework.persistence.database import create_engine_for

    return create_engine_for(server.url(name), DatabaseConfig(pool_size=1, max_overflow=0))


def kill_connection(server: MariaDBServer, connection_id: int) -> None:
    """KILL a server connection, as a failover or the server's idle timeout would."""
    admin = server.sync_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f"KILL {int(connection_id)}")
    finally:
        admin.close()
