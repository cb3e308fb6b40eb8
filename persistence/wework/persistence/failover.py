"""Failover: promote a replica of a shard to primary and publish the new shard map.

`wework-admin failover --shard NAME [--replica DSN|INDEX|HOST:PORT] [--force]` (docs/failover.md):

1. Reads the shard map in force (the published version, else the settings').
2. Refuses while the current primary still answers, unless forced: two writable primaries would
   split the shard's writes. Forced, the old primary is set read-only first and the replica is
   given time to receive everything it has.
3. On the chosen replica (default: the one that has received the most): stops the IO thread,
   lets the SQL thread apply everything already received (relay log), stops replication, forgets
   its primary, turns read_only off, and waits for the primary's semi-sync ACK only when other
   replicas remain to give one.
4. Points the remaining replicas at the new primary (GTID, slave_pos).
5. Publishes the new shard map (the replica is the shard's `dsn`; the old primary is gone from
   it) through ShardMapStore; running processes switch without a restart.

With semi-synchronous replication every acknowledged commit reached the replica before the
client saw it, so promoting a replica that applied all it received loses no acknowledged write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .config import DatabaseConfig, ShardSpec
from .database import create_engine_for
from .directory_primary import bump_epoch
from .replicas import gtid_seq, replica_label
from .shardmap import ShardMapStore

log = logging.getLogger(__name__)

# Any service database of the shard: server-level statements need a connection, not a schema.
_PROBE_DB = "message"


class FailoverError(RuntimeError):
    """The failover cannot proceed; nothing was changed unless the message says so."""


@dataclass
class FailoverResult:
    shard: str
    old_primary: str
    new_primary: str
    version: int
    applied_position: str
    remaining_replicas: list[str] = field(default_factory=list)
    repointed: list[str] = field(default_factory=list)


async def _connect(dsn: str, config: DatabaseConfig, timeout: float) -> AsyncConnection:
    engine = create_engine_for(dsn, config.model_copy(update={"connect_timeout_seconds": timeout}), pooled=False)
    try:
        return await asyncio.wait_for(engine.connect(), timeout + 1)
    except BaseException:
        await engine.dispose()
        raise


async def _close(conn: AsyncConnection) -> None:
    engine = conn.engine
    try:
        await conn.close()
    finally:
        await engine.dispose()


async def _slave_status(conn: AsyncConnection) -> dict[str, Any]:
    row = (await conn.execute(sa.text("SHOW SLAVE STATUS"))).mappings().first()
    return dict(row) if row else {}


async def _gtid_reached(replica: AsyncConnection, position: str, timeout: float) -> bool:
    """Whether the replica has applied up to the GTID `position` within `timeout` seconds."""
    return await replica.scalar(sa.text("SELECT MASTER_GTID_WAIT(:p, :t)"), {"p": position, "t": timeout}) == 0


def pick_replica(spec: ShardSpec, choice: str | None) -> str | None:
    """The replica DSN named by `choice`: its index, its DSN template, or its host:port."""
    return _pick(spec.replicas, choice, f"shard {spec.name}")


def _pick(replicas: list[str], choice: str | None, what: str) -> str | None:
    if choice is None:
        return None
    if choice.isdigit():
        index = int(choice)
        if index >= len(replicas):
            raise FailoverError(f"{what} has {len(replicas)} replica(s); no index {index}")
        return replicas[index]
    for dsn in replicas:
        if choice in (dsn, replica_label(dsn)):
            return dsn
    raise FailoverError(f"{choice!r} is not a replica of {what} "
                        f"(replicas: {[replica_label(d) for d in replicas]})")


async def _received(dsn: str, config: DatabaseConfig, timeout: float) -> int:
    """How far a replica has received (the seq_no of its Gtid_IO_Pos), -1 when unreachable."""
    try:
        conn = await _connect(dsn.replace("{db}", _PROBE_DB), config, timeout)
    except Exception:  # noqa: BLE001 - an unreachable replica is simply not a candidate
        return -1
    try:
        status = await _slave_status(conn)
    finally:
        await _close(conn)
    seqs = [gtid_seq(g) for g in str(status.get("Gtid_IO_Pos") or "").split(",") if g]
    return max((s[1] for s in seqs if s), default=0)


async def failover(store: ShardMapStore, shard: str, replica: str | None = None, *, force: bool = False,
                   apply_timeout: float = 60.0, connect_timeout: float = 3.0,
                   progress: Callable[[str], None] = lambda _line: None) -> FailoverResult:
    """Promotes a replica of `shard` and publishes the map; see the module docstring."""
    version, config = await store.effective()
    spec = next((s for s in config.shards if s.name == shard), None)
    if spec is None:
        raise FailoverError(f"no shard named {shard!r} in shard map version {version}")
    if not spec.replicas:
        raise FailoverError(f"shard {shard} lists no replica to promote")
    old_label = replica_label(spec.dsn)
    chosen, applied, rest, repointed = await _promote(
        config, spec.dsn_for(_PROBE_DB), spec.replicas, replica, f"shard {shard}", f"map version {version}",
        force=force, apply_timeout=apply_timeout, connect_timeout=connect_timeout, progress=progress)
    new_label = replica_label(chosen)

    # 5. Publish: the promoted replica is the shard's primary; the old primary leaves the map.
    shards = [s.model_copy(update={"dsn": chosen, "replicas": rest}) if s.name == shard else s
              for s in config.shards]
    new_version = await store.publish(config.model_copy(update={"shards": shards}),
                                      f"failover {shard}: {old_label} -> {new_label}", expected_version=version)
    progress(f"published shard map version {new_version}")
    return FailoverResult(shard, old_label, new_label, new_version, applied,
                          [replica_label(d) for d in rest], repointed)


async def failover_directory(config: DatabaseConfig, replica: str | None = None, *, force: bool = False,
                             apply_timeout: float = 60.0, connect_timeout: float = 3.0,
                             progress: Callable[[str], None] = lambda _line: None) -> FailoverResult:
    """Promotes a replica of the directory (`database.directory_replicas`) the way `failover`
    promotes a shard's, then raises the promoted server's epoch so that every process's new
    directory connections go there (directory_primary.py). Nothing is published: the shard map
    lives in the directory itself. The result's `version` is the new epoch."""
    if not config.directory_replicas:
        raise FailoverError("database.directory_replicas lists no replica of the directory to promote")
    old_label = replica_label(config.directory_dsn)
    chosen, applied, rest, repointed = await _promote(
        config, config.directory_dsn, config.directory_replicas, replica, "the directory", "directory",
        force=force, apply_timeout=apply_timeout, connect_timeout=connect_timeout, progress=progress)
    conn = await _connect(chosen, config, connect_timeout)
    try:
        epoch = await bump_epoch(conn, config.replica_heartbeat_schema, replica_label(chosen))
    finally:
        await _close(conn)
    progress(f"directory epoch {epoch} on {replica_label(chosen)}; new connections go there")
    return FailoverResult("directory", old_label, replica_label(chosen), epoch, applied,
                          [replica_label(d) for d in rest], repointed)


async def _promote(config: DatabaseConfig, old_dsn: str, replicas: list[str], replica: str | None, what: str,
                   where: str, *, force: bool, apply_timeout: float, connect_timeout: float,
                   progress: Callable[[str], None]) -> tuple[str, str, list[str], list[str]]:
    """Steps 2-4 for the primary `old_dsn` (a concrete DSN) and its `replicas` (DSNs or templates):
    (the promoted replica, its applied position, the other replicas, those re-pointed)."""
    old_label = replica_label(old_dsn)
    chosen = _pick(replicas, replica, what)
    if chosen is None:
        received = {dsn: await _received(dsn, config, connect_timeout) for dsn in replicas}
        chosen = max(replicas, key=lambda d: received[d])
        if received[chosen] < 0:
            raise FailoverError(f"no replica of {what} is reachable")
    new_label = replica_label(chosen)
    progress(f"{what}: promoting replica {new_label} (primary {old_label}, {where})")

    # 2. The old primary must be gone: writes still landing there after the switch would be lost.
    try:
        old = await _connect(old_dsn, config, connect_timeout)
    except Exception:  # noqa: BLE001 - unreachable is what a failover expects
        old = None
    replica_conn = await _connect(chosen.replace("{db}", _PROBE_DB), config, connect_timeout)
    try:
        if old is not None:
            try:
                if not force:
                    raise FailoverError(
                        f"the primary {old_label} of {what} still answers; stop it first (or pass "
                        "--force to fence it read-only and switch over: writes of clients with admin "
                        "privileges could still reach it)")
                await old.execute(sa.text("SET GLOBAL read_only = 1"))
                position = await old.scalar(sa.text("SELECT @@gtid_binlog_pos"))
                progress(f"old primary set read-only at {position}; waiting for the replica to receive it")
                if position and not await _gtid_reached(replica_conn, position, apply_timeout):
                    raise FailoverError(f"the replica did not reach {position} in {apply_timeout} s; "
                                        "the old primary stays read-only, nothing else changed")
            finally:
                await _close(old)

        # 3. Apply everything received, then stop being a replica. A replica promoted by an
        # earlier run that could not publish has no replication left: nothing to apply.
        if await _slave_status(replica_conn):
            await replica_conn.execute(sa.text("STOP SLAVE IO_THREAD"))
            await replica_conn.execute(sa.text("START SLAVE SQL_THREAD"))  # a stopped one would never catch up
            status = await _slave_status(replica_conn)
            received_pos = str(status.get("Gtid_IO_Pos") or "")
            progress(f"received up to {received_pos or '(nothing)'}; applying the relay log")
            if received_pos and not await _gtid_reached(replica_conn, received_pos, apply_timeout):
                raise FailoverError(f"the replica did not apply its relay log up to {received_pos} in "
                                    f"{apply_timeout} s (its IO thread is stopped; START SLAVE to undo)")
            await replica_conn.execute(sa.text("STOP SLAVE"))
            await replica_conn.execute(sa.text("RESET SLAVE ALL"))
        applied = await replica_conn.scalar(sa.text("SELECT @@gtid_current_pos")) or ""
        rest = [d for d in replicas if d != chosen]
        await replica_conn.execute(sa.text(f"SET GLOBAL rpl_semi_sync_master_enabled = {1 if rest else 0}"))
        await replica_conn.execute(sa.text("SET GLOBAL read_only = 0"))
        progress(f"{new_label} is writable at {applied}")
    finally:
        await _close(replica_conn)

    # 4. The other replicas follow the new primary.
    repointed = await _repoint(rest, chosen, config, connect_timeout, progress)
    return chosen, applied, rest, repointed


async def _repoint(replicas: list[str], primary: str, config: DatabaseConfig, timeout: float,
                   progress: Callable[[str], None]) -> list[str]:
    from sqlalchemy.engine import make_url

    target = make_url(primary.replace("{db}", _PROBE_DB))
    done = []
    for dsn in replicas:
        label = replica_label(dsn)
        try:
            conn = await _connect(dsn.replace("{db}", _PROBE_DB), config, timeout)
        except Exception as exc:  # noqa: BLE001 - reported; the operator re-points it by hand
            progress(f"replica {label} unreachable, not re-pointed: {exc}")
            continue
        try:
            await conn.execute(sa.text("STOP SLAVE"))
            # Credentials and the other settings of CHANGE MASTER are kept.
            await conn.execute(sa.text("CHANGE MASTER TO MASTER_HOST = :h, MASTER_PORT = :p, "
                                       "MASTER_USE_GTID = slave_pos"),
                               {"h": target.host or "localhost", "p": target.port or 3306})
            await conn.execute(sa.text("START SLAVE"))
            done.append(label)
            progress(f"replica {label} now follows {replica_label(primary)}")
        finally:
            await _close(conn)
    return done
