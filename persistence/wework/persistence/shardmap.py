"""The runtime shard map: versions in the directory database, picked up by running processes.

Settings give the shard map a process starts with. Once a version has been published
(`ShardMapStore.publish`, by `wework-admin move-buckets` or `failover`), the highest stored
version wins over the settings, at start and while running:

- `ShardMapStore` reads and writes the versions (table `shard_map_versions`). A version stores
  the layout only (bucket_count, shards with their DSNs and replicas, frozen_buckets); pool
  sizes, timeouts and the directory DSN stay those of each process's settings.
- `ShardMapWatcher` runs in every server and worker process: a Redis pub/sub nudge on
  `<prefix>shardmap` plus a poll of the directory every `poll_seconds` (the fallback when a
  nudge is lost) apply a newer version with `Database.replace_shard_map`. After applying a
  version that freezes buckets it waits until the writes already running on them have ended,
  then acknowledges the version in the Redis hash `<prefix>shardmap:acks`
  (field: process id, value: JSON {"version", "at"}); it refreshes that entry every poll,
  which is how `wait_for_acks` tells live processes from dead ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from .background import cancel_and_wait
from .config import DatabaseConfig
from .database import Database
from .models.base import utcnow
from .models.directory import ShardMapVersion

log = logging.getLogger(__name__)

LAYOUT_FIELDS = ("bucket_count", "shards", "frozen_buckets")


def channel(key_prefix: str) -> str:
    return f"{key_prefix}shardmap"


def acks_key(key_prefix: str) -> str:
    return f"{key_prefix}shardmap:acks"


def layout_of(config: DatabaseConfig) -> dict[str, Any]:
    """The part of a DatabaseConfig that a shard map version stores."""
    return config.model_dump(include=set(LAYOUT_FIELDS), mode="json")


def with_layout(base: DatabaseConfig, layout: dict[str, Any]) -> DatabaseConfig:
    """`base` (a process's settings) with a stored layout; validated (buckets covered once)."""
    unknown = set(layout) - set(LAYOUT_FIELDS)
    if unknown:
        raise ValueError(f"unknown shard map fields {sorted(unknown)}")
    return DatabaseConfig.model_validate({**base.model_dump(mode="json"), **layout})


class ShardMapConflict(RuntimeError):
    """Another version was published since the one the caller based its change on."""


class ShardMapStore:
    """Versions of the shard map in the directory database of `db`.

    `base` supplies what a version does not store (pools, timeouts, the directory DSN);
    it defaults to the map `db` was built with.
    """

    def __init__(self, db: Database, *, base: DatabaseConfig | None = None, redis: Any = None,
                 key_prefix: str = "wework:") -> None:
        self._db = db
        self.base = base or db.config
        self._redis = redis
        self._prefix = key_prefix

    async def current_version(self) -> int:
        """The highest published version; 0 when none has been published."""
        async with self._db.directory_session(read_only=True) as s:
            return int(await s.scalar(sa.select(sa.func.max(ShardMapVersion.version))) or 0)

    async def get(self, version: int) -> DatabaseConfig:
        async with self._db.directory_session(read_only=True) as s:
            row = await s.get(ShardMapVersion, version)
        if row is None:
            raise KeyError(f"no shard map version {version}")
        return with_layout(self.base, json.loads(row.layout))

    async def current(self) -> tuple[int, DatabaseConfig] | None:
        """(version, config) of the highest published version, or None (settings rule)."""
        async with self._db.directory_session(read_only=True) as s:
            row = (await s.execute(sa.select(ShardMapVersion).order_by(ShardMapVersion.version.desc())
                                   .limit(1))).scalars().first()
        if row is None:
            return None
        return row.version, with_layout(self.base, json.loads(row.layout))

    async def effective(self) -> tuple[int, DatabaseConfig]:
        """The map in force: the current version, else the settings' map as version 0."""
        current = await self.current()
        return current if current is not None else (0, self.base)

    async def history(self, limit: int = 20) -> list[tuple[int, str, datetime]]:
        async with self._db.directory_session(read_only=True) as s:
            rows = (await s.execute(sa.select(ShardMapVersion.version, ShardMapVersion.reason,
                                              ShardMapVersion.created_at)
                                    .order_by(ShardMapVersion.version.desc()).limit(limit))).all()
        return [(r[0], r[1], r[2]) for r in rows]

    async def publish(self, config: DatabaseConfig, reason: str, *, expected_version: int | None = None) -> int:
        """Stores `config`'s layout as the next version and nudges the running processes.

        `expected_version`: the version the change was computed from; when another version was
        published since, ShardMapConflict is raised and nothing is stored (compare-and-set).
        """
        config = with_layout(self.base, layout_of(config))  # re-validates a hand-built config
        layout = json.dumps(layout_of(config), sort_keys=True)
        try:
            async with self._db.directory_unit_of_work() as uow:
                s = uow.session
                latest = int(await s.scalar(sa.select(sa.func.max(ShardMapVersion.version))) or 0)
                if expected_version is not None and latest != expected_version:
                    raise ShardMapConflict(f"shard map is at version {latest}, not {expected_version}")
                if latest:
                    prev = await s.get(ShardMapVersion, latest)
                    assert prev is not None
                    count = json.loads(prev.layout)["bucket_count"]
                else:
                    count = self.base.bucket_count
                if count != config.bucket_count:
                    raise ValueError(f"bucket_count is fixed for a deployment ({count}), "
                                     f"got {config.bucket_count}")
                version = latest + 1
                s.add(ShardMapVersion(version=version, layout=layout, reason=reason[:255], created_at=utcnow()))
        except sa_exc.IntegrityError as exc:  # two publishers took the same number
            raise ShardMapConflict("another shard map version was published at the same time") from exc
        log.info("published shard map version %d: %s", version, reason)
        await self.notify(version)
        return version

    async def notify(self, version: int) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.publish(channel(self._prefix), str(version).encode())
        except Exception as exc:  # noqa: BLE001 - the watchers' poll picks the version up
            log.warning("shard map nudge not published: %r", exc)


class ShardMapWatcher:
    """Applies newer shard map versions to `db` in a running process, and acknowledges them."""

    def __init__(self, store: ShardMapStore, db: Database, redis: Any = None, *, key_prefix: str = "wework:",
                 poll_seconds: float = 2.0, drain_timeout_seconds: float = 10.0,
                 instance_id: str | None = None) -> None:
        self._store, self._db, self._redis = store, db, redis
        self._prefix = key_prefix
        self.poll_seconds = poll_seconds
        self.drain_timeout_seconds = drain_timeout_seconds
        self.instance_id = instance_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.applied = db.map_version
        self.acked = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Applies the stored version now (it wins over the settings), then watches."""
        try:
            await self.check_once()
        except Exception as exc:  # noqa: BLE001 - e.g. directory not migrated yet; the poll retries
            log.warning("runtime shard map not read at start (settings' map in use): %s", exc)
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="shardmap-poll"))
        if self._redis is not None:
            self._tasks.append(asyncio.create_task(self._nudge_loop(), name="shardmap-nudge"))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)
        if self._redis is not None:
            try:
                await self._redis.hdel(acks_key(self._prefix), self.instance_id)
            except Exception as exc:  # noqa: BLE001 - the entry goes stale and is ignored
                log.debug("shard map ack not removed: %r", exc)

    async def check_once(self) -> bool:
        """Applies the current version if it is newer than the applied one; True if it did."""
        async with self._lock:
            version = await self._store.current_version()
            changed = False
            if version > self.applied:
                config = await self._store.get(version)
                self._db.replace_shard_map(config, version)
                log.info("shard map version %d applied (%d shards%s)", version, len(config.shards),
                         f", frozen buckets {config.frozen_buckets}" if config.frozen_buckets else "")
                self.applied, changed = version, True
                if config.frozen_buckets and not await self._db.wait_writes_drained(self.drain_timeout_seconds):
                    # Unacknowledged, the move waiting for us times out and unfreezes.
                    log.warning("writes on frozen buckets still running after %.1f s; "
                                "shard map version %d not acknowledged", self.drain_timeout_seconds, version)
                    return changed
            await self._ack(self.applied)
            return changed

    async def _ack(self, version: int) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.hset(acks_key(self._prefix), self.instance_id,
                                   json.dumps({"version": version, "at": time.time()}).encode())
            self.acked = version
        except Exception as exc:  # noqa: BLE001 - a move waits for the next poll's ack
            log.warning("shard map ack not written: %r", exc)

    async def _poll_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("shard map check failed; retrying")

    async def _nudge_loop(self) -> None:
        from .redis.client import as_text
        from .resilience import listen

        def on_message(message: dict) -> None:
            if as_text(message["type"]) == "message":
                self._wake.set()

        await listen(self._redis, on_message, what="shard map nudges", channels=[channel(self._prefix)])


async def live_acks(redis: Any, key_prefix: str, *, stale_after_seconds: float) -> dict[str, int]:
    """instance -> acknowledged version, for processes whose entry was refreshed recently."""
    raw = await redis.hgetall(acks_key(key_prefix))
    now, out = time.time(), {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        try:
            entry = json.loads(value)
        except ValueError:
            continue
        if now - float(entry.get("at", 0)) <= stale_after_seconds:
            out[name] = int(entry.get("version", 0))
        elif now - float(entry.get("at", 0)) > 10 * stale_after_seconds:
            await redis.hdel(acks_key(key_prefix), field)  # long dead: tidy up
    return out


async def wait_for_acks(redis: Any, key_prefix: str, version: int, *, timeout: float,
                        stale_after_seconds: float = 10.0) -> dict[str, int]:
    """Waits until every live process acknowledged `version` (or later).

    Returns {} on success, else the live processes still behind when `timeout` ran out.
    A process whose entry is older than `stale_after_seconds` counts as gone.
    """
    deadline = time.monotonic() + timeout
    while True:
        behind = {k: v for k, v in (await live_acks(redis, key_prefix, stale_after_seconds=stale_after_seconds)
                                    ).items() if v < version}
        if not behind or time.monotonic() >= deadline:
            return behind
        await asyncio.sleep(0.05)


__all__ = ["ShardMapConflict", "ShardMapStore", "ShardMapWatcher", "acks_key", "channel", "layout_of",
           "live_acks", "wait_for_acks", "with_layout"]
