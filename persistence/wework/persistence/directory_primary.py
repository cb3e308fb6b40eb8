"""Which server is the directory's primary: the writable one with the highest failover epoch.

The shards' primaries are named in the runtime shard map, which lives in the directory; the
directory cannot name its own primary that way. With `database.directory_replicas` set, every
new connection of a process's directory engine asks each candidate (directory_dsn and its
replicas) for `@@read_only` and the epoch that `wework-admin failover --directory` writes on the
server it promotes (`<heartbeat schema>.directory_epoch`), and keeps the writable one with the
highest epoch. After a failover the pooled connections to the dead primary fail, are dropped,
and the next ones go to the promoted replica: no restart, no settings change needed at once.
An old primary that comes back writable (it should be rebuilt as a replica, docs/failover.md)
has a lower epoch and is not chosen while the promoted one answers.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .replicas import replica_label

log = logging.getLogger(__name__)
EPOCH_TABLE = "directory_epoch"


def _epoch_sql(schema: str) -> str:
    return f"SELECT epoch FROM `{schema}`.`{EPOCH_TABLE}` WHERE id = 1"


def install_primary_discovery(engine: AsyncEngine, candidates: list[str], schema: str) -> None:
    """Makes each new connection of `engine` go to the current directory primary (see above)."""
    dialect = engine.sync_engine.dialect
    targets = [(dsn, dialect.create_connect_args(make_url(dsn))) for dsn in candidates]

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect_to_the_primary(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        # Runs inside SQLAlchemy's greenlet: the driver calls look synchronous here.
        best: tuple[int, Any, str] | None = None
        errors = []
        for dsn, (_args, params) in targets:
            try:
                conn = dialect.connect(*cargs, **{**cparams, **params})
            except Exception as exc:  # noqa: BLE001 - an unreachable candidate is not the primary
                errors.append(f"{replica_label(dsn)}: {type(exc).__name__}")
                continue
            try:
                cur = conn.cursor()
                cur.execute("SELECT @@read_only")
                read_only = int(cur.fetchone()[0])
                epoch = 0
                if not read_only:
                    try:
                        cur.execute(_epoch_sql(schema))
                        row = cur.fetchone()
                        epoch = int(row[0]) if row else 0
                    except Exception:  # noqa: BLE001 - no failover yet: no table
                        epoch = 0
                cur.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{replica_label(dsn)}: {type(exc).__name__}")
                conn.close()
                continue
            if read_only or (best is not None and best[0] >= epoch):
                conn.close()
                continue
            if best is not None:
                best[1].close()
            best = (epoch, conn, dsn)
        if best is None:
            # The driver's own "cannot connect" error (2003): it reaches callers as any lost
            # database does (UNAVAILABLE, retried), between a crash and the failover.
            raise dialect.loaded_dbapi.OperationalError(
                2003, "no writable directory server among "
                      f"{[replica_label(d) for d in candidates]} ({'; '.join(errors) or 'all read-only'})")
        return best[1]


async def bump_epoch(conn: AsyncConnection, schema: str, label: str) -> int:
    """On a newly promoted directory primary: its epoch becomes higher than any before."""
    await conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{schema}`"))
    await conn.execute(sa.text(
        f"CREATE TABLE IF NOT EXISTS `{schema}`.`{EPOCH_TABLE}` (id TINYINT PRIMARY KEY, epoch BIGINT NOT NULL, "
        "primary_label VARCHAR(255) NOT NULL, promoted_at DATETIME(6) NOT NULL)"))
    await conn.execute(sa.text(
        f"INSERT INTO `{schema}`.`{EPOCH_TABLE}` VALUES (1, 1, :l, UTC_TIMESTAMP(6)) "
        "ON DUPLICATE KEY UPDATE epoch = epoch + 1, primary_label = :l, promoted_at = UTC_TIMESTAMP(6)"),
        {"l": label})
    if conn.in_transaction():
        await conn.commit()
    return int(await conn.scalar(sa.text(_epoch_sql(schema))))
