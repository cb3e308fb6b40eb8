"""Moving a bucket range to another physical database while the platform runs (`wework-admin move-buckets`).

Phases (the `bucket_moves` row of the directory records the phase and a checkpoint, so a run
that died is resumed by running the command again):

1. copy      migrate the target databases (the same Alembic chains), then copy every row of the
             tenants of the range, table by table, while writes continue on the source.
2. catchup   diff passes (keyed, paged by primary key) that copy what changed since, delete what
             was deleted, until a pass changes little. A diff rather than `updated_at` because
             half of the tables have no `updated_at` and deletes leave no trace.
3. frozen    publish a shard map with the range in `frozen_buckets`; every live server applies it,
             waits for its in-flight writes on those buckets to end, and acknowledges; new writes
             to the range wait (Database write gate). Then a final diff pass, verification (row
             counts and checksums, source vs target, per table), and -
4. deleting  - the source rows are deleted in bounded batches, still frozen: a copy left on the
             source would be seen by the shard-wide sweeps (dispatch, receipts, listings) of the
             source shard and sent or listed twice. Then the switch is published: the range
             belongs to the target shard, nothing is frozen.
5. done

Only one move runs at a time (a lease row in the directory). Tables whose rows carry no
tenant_id are found through their parent (OWNED_VIA) or are shard-wide ledgers (SHARED: copied
as a superset, never deleted); a new table that is neither stops the move instead of being
skipped. Primary keys are copied as they are (AUTO_INCREMENT ids included); a key at the
target that belongs to a row outside the range is a collision and stops the move.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from .background import cancel_and_wait
from .config import SERVICE_DATABASES, DatabaseConfig, ShardSpec, parse_bucket_ranges
from .database import Database, create_engine_for
from .models import METADATA
from .models.base import utcnow
from .models.directory import BucketMove, Lease, TenantCode
from .sharding import ShardRouter, bucket_of
from .shardmap import ShardMapConflict, ShardMapStore, wait_for_acks

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

LEASE_NAME = "bucket-move"
ACTIVE_PHASES = ("copy", "catchup", "frozen", "deleting")

# Tables without tenant_id whose rows belong to the tenant of a parent row: (parent table, column).
OWNED_VIA: dict[tuple[str, str], tuple[str, str]] = {
    ("message", "batch_import_targets"): ("batch_send_tasks", "task_id"),
    ("callback", "webhook_attempts"): ("webhook_deliveries", "delivery_id"),
}
# Tables whose id column is the tenant id.
TENANT_ROW: dict[tuple[str, str], str] = {("user", "tenants"): "id"}
# Shard-wide idempotency ledgers keyed by a global key: every source row is copied (a superset
# is harmless: a key belongs to one callback), none is deleted from the source.
SHARED: set[tuple[str, str]] = {("account", "applied_callbacks"), ("message", "applied_callbacks"),
                                ("callback", "callback_dedupe")}


class MoveError(RuntimeError):
    pass


class MoveAlreadyRunning(MoveError):
    pass


@dataclass
class MoveOptions:
    batch_size: int = 500  # rows per page and per delete transaction
    tenant_chunk: int = 200  # tenants per IN (...) list
    catchup_rounds: int = 5  # diff passes before freezing at most
    catchup_threshold: int = 100  # freeze once a pass changed fewer rows than this
    ack_timeout_seconds: float = 15.0  # for every live server to apply a version
    stale_after_seconds: float = 10.0  # a server that has not refreshed its ack this long is gone
    max_freeze_seconds: float = 30.0  # final catch-up + verify beyond this: unfreeze, retry later
    lease_seconds: float = 30.0


@dataclass
class TableCheck:
    db: str
    table: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str
    shared: bool = False

    @property
    def ok(self) -> bool:
        if self.shared:  # the target holds at least every source row
            return self.source_checksum == self.target_checksum
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass
class MoveResult:
    move_id: str
    buckets: str
    target_shard: str
    version: int  # the shard map version that switched the range
    freeze_seconds: float
    checks: list[TableCheck] = field(default_factory=list)
    rows_deleted: int = 0
    resumed: bool = False


def ranges_of(buckets: Iterable[int]) -> str:
    """{0,1,2,5} -> "0-2,5"."""
    out, run = [], None
    for b in sorted(set(buckets)):
        if run is not None and b == run[1] + 1:
            run[1] = b
            continue
        if run is not None:
            out.append(run)
        run = [b, b]
    if run is not None:
        out.append(run)
    return ",".join(f"{lo}-{hi}" if hi > lo else f"{lo}" for lo, hi in out)


def bucket_set(spec: str) -> frozenset[int]:
    return frozenset(b for lo, hi in parse_bucket_ranges(spec) for b in range(lo, hi + 1))


def switched_map(config: DatabaseConfig, buckets: frozenset[int], target: ShardSpec) -> DatabaseConfig:
    """`config` with `buckets` moved to `target` (appended as a new shard) and nothing frozen."""
    shards = []
    for s in config.shards:
        left = bucket_set(s.buckets) - buckets
        if not left:
            raise MoveError(f"moving {ranges_of(buckets)} would leave shard {s.name} without buckets")
        shards.append(s.model_copy(update={"buckets": ranges_of(left)}))
    shards.append(target.model_copy(update={"buckets": ranges_of(buckets)}))
    return config.model_copy(update={"shards": shards, "frozen_buckets": ""})


# ---- table ownership --------------------------------------------------------------------------


def _kind(db: str, table: sa.Table) -> str:
    if (db, table.name) in SHARED:
        return "shared"
    if (db, table.name) in TENANT_ROW or "tenant_id" in table.c:
        return "tenant"
    if (db, table.name) in OWNED_VIA:
        return "child"
    raise MoveError(f"table {db}.{table.name} has no tenant_id and no ownership rule in bucket_move.py; "
                    "add one before moving buckets")


def tables_in_copy_order(db: str) -> list[tuple[sa.Table, str]]:
    """Tenant tables (dependency order), then tables owned through a parent, then ledgers."""
    tables = [(t, _kind(db, t)) for t in METADATA[db].sorted_tables]
    order = {"tenant": 0, "child": 1, "shared": 2}
    return sorted(tables, key=lambda tk: order[tk[1]])


def _owner_filter(db: str, table: sa.Table, tenants: list[str]) -> Any:
    if (db, table.name) in TENANT_ROW:
        return table.c[TENANT_ROW[(db, table.name)]].in_(tenants)
    if "tenant_id" in table.c:
        return table.c.tenant_id.in_(tenants)
    parent_name, column = OWNED_VIA[(db, table.name)]
    parent = METADATA[db].tables[parent_name]
    return table.c[column].in_(sa.select(parent.c.id).where(parent.c.tenant_id.in_(tenants)))


def _pk(table: sa.Table) -> list[sa.Column]:
    return list(table.primary_key.columns)


def _key(row: Any, pk: list[sa.Column]) -> tuple:
    m = row._mapping
    return tuple(m[c.name] for c in pk)


def _after(pk: list[sa.Column], key: tuple) -> Any:
    return pk[0] > key[0] if len(pk) == 1 else sa.tuple_(*pk) > sa.tuple_(*key)


def _at_most(pk: list[sa.Column], key: tuple) -> Any:
    return pk[0] <= key[0] if len(pk) == 1 else sa.tuple_(*pk) <= sa.tuple_(*key)


def _in_keys(pk: list[sa.Column], keys: list[tuple]) -> Any:
    return pk[0].in_([k[0] for k in keys]) if len(pk) == 1 else sa.tuple_(*pk).in_(keys)


def _row_hash(values: tuple) -> int:
    return int.from_bytes(hashlib.sha256(repr(values).encode()).digest()[:8], "big")


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


# ---- the move ---------------------------------------------------------------------------------


class BucketMover:
    """Runs, resumes or aborts the one bucket move of a deployment.

    `config` is the process's settings map (pools, directory); the map in force is read from
    the runtime shard map store. `redis` is the one the servers use: acknowledgements of the
    freeze are read there.
    """

    def __init__(self, config: DatabaseConfig, redis: Any, key_prefix: str, *,
                 options: MoveOptions | None = None, progress: Progress | None = None) -> None:
        self.options = options or MoveOptions()
        self._progress = progress or (lambda line: None)
        self._db = Database(config, databases=())
        self._store = ShardMapStore(self._db, base=config, redis=redis, key_prefix=key_prefix)
        self._redis, self._prefix = redis, key_prefix
        self._holder = f"{uuid.uuid4()}"
        self._lease_task: asyncio.Task[None] | None = None
        self._lease_lost = False
        self._engines: dict[str, AsyncEngine] = {}

    # -- public --

    async def move(self, buckets: str, to_dsn: str, shard_name: str | None = None) -> MoveResult:
        """Starts a move, or resumes the unfinished one if it is the same move."""
        await self._acquire_lease()
        try:
            row = await self._unfinished()
            if row is not None:
                if bucket_set(row.buckets) != bucket_set(buckets) or row.target_dsn != to_dsn:
                    raise MoveError(f"an unfinished move of buckets {row.buckets} to shard {row.target_shard} "
                                    f"exists (phase {row.phase}); resume it (--resume) or abort it (--abort)")
                return await self._run(row, resumed=True)
            row = await self._plan(buckets, to_dsn, shard_name)
            return await self._run(row, resumed=False)
        finally:
            await self._release()

    async def resume(self) -> MoveResult:
        await self._acquire_lease()
        try:
            row = await self._unfinished()
            if row is None:
                raise MoveError("no unfinished bucket move to resume")
            return await self._run(row, resumed=True)
        finally:
            await self._release()

    async def abort(self) -> str:
        """Abandons an unfinished move before its deleting phase; unfreezes the range."""
        await self._acquire_lease()
        try:
            row = await self._unfinished()
            if row is None:
                raise MoveError("no unfinished bucket move to abort")
            if row.phase == "deleting":
                raise MoveError("the move is deleting source rows (its target is verified); resume it instead")
            await self._unfreeze(row, "abort")
            await self._set_phase(row, "aborted")
            return row.id
        finally:
            await self._release()

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.dispose()
        self._engines.clear()
        await self._db.dispose()

    # -- planning --

    async def _plan(self, buckets: str, to_dsn: str, shard_name: str | None) -> BucketMove:
        _, current = await self._store.effective()
        moving = bucket_set(buckets)
        if max(moving) >= current.bucket_count:
            raise MoveError(f"bucket {max(moving)} >= bucket_count {current.bucket_count}")
        if current.frozen_buckets:
            raise MoveError(f"buckets {current.frozen_buckets} are frozen already (another move?)")
        used = {current.directory_dsn} | {s.dsn_for(db) for s in current.shards for db in SERVICE_DATABASES} | \
            {r.replace("{db}", db) for s in current.shards for r in s.replicas for db in SERVICE_DATABASES}
        name = shard_name or next(f"s{i}" for i in range(len(current.shards) + 1, 10_000)
                                  if f"s{i}" not in {s.name for s in current.shards})
        if name in {s.name for s in current.shards}:
            raise MoveError(f"shard {name} exists; name a new shard (a move fills a new database)")
        target = ShardSpec(name=name, buckets="0", dsn=to_dsn)  # validates name and {db}
        if any(target.dsn_for(db) in used for db in SERVICE_DATABASES):
            raise MoveError("the target DSN is a database of the current shard map; move to new databases")
        switched_map(current, moving, target)  # refuses to empty a shard
        router = ShardRouter(current)
        sources = sorted({router.shard_for_bucket(b).name for b in moving})
        row = BucketMove(id=str(uuid.uuid4()), buckets=ranges_of(moving), source_shards=",".join(sources),
                         target_shard=name, target_dsn=to_dsn, phase="copy", checkpoint="{}")
        async with self._db.directory_unit_of_work() as uow:
            uow.session.add(row)
        self._say(f"move {row.id}: buckets {row.buckets} from {row.source_shards} to new shard {name}")
        return row

    # -- phases --

    async def _run(self, row: BucketMove, *, resumed: bool) -> MoveResult:
        if resumed:
            self._say(f"resuming move {row.id} (buckets {row.buckets} -> {row.target_shard}) at phase {row.phase}")
        moving = bucket_set(row.buckets)
        target = ShardSpec(name=row.target_shard, buckets="0", dsn=row.target_dsn)
        if row.phase in ("copy", "catchup"):
            if resumed:  # died between publishing a freeze and recording it: writes first
                await self._unfreeze(row, "resumed before the freeze was recorded")
            await self._migrate_target(target)
            await self._copy_and_catch_up(row, moving, target)
            await self._freeze(row)
        if row.phase == "frozen":
            try:
                checks = await self._final_sync_and_verify(row, moving, target)
            except MoveError:
                raise
            except Exception:
                # Nothing deleted yet: give the range its writes back rather than leave it frozen.
                await self._unfreeze(row, "the move failed")
                await self._set_phase(row, "catchup")
                raise
            await self._set_phase(row, "deleting", checks=[c.__dict__ for c in checks])
        checks = [TableCheck(**c) for c in self._checkpoint(row).get("checks", [])]
        deleted = await self._delete_source(row, moving)
        version, freeze_seconds = await self._switch(row, moving, target)
        await self._set_phase(row, "done", version=version, freeze_seconds=freeze_seconds, deleted=deleted)
        self._say(f"done: buckets {row.buckets} now on {row.target_shard} (shard map version {version}); "
                  f"writes to the range were frozen {freeze_seconds:.2f} s")
        return MoveResult(row.id, row.buckets, row.target_shard, version, freeze_seconds, checks, deleted, resumed)

    async def _migrate_target(self, target: ShardSpec) -> None:
        from .migrate import migrate_all

        config = self._store.base.model_copy(update={
            "shards": [target.model_copy(update={"buckets": f"0-{self._store.base.bucket_count - 1}"})],
            "frozen_buckets": ""})
        self._say(f"migrating the target databases of {target.name}")
        await migrate_all(config, lambda db, shard, msg: self._say(f"  {db}@{shard or '-'}: {msg}"))

    async def _copy_and_catch_up(self, row: BucketMove, moving: frozenset[int], target: ShardSpec) -> None:
        _, current = await self._store.effective()
        # A target that holds rows of tenants outside the range is not the fresh database it must be.
        foreign = [t for t in await self._tenants_at(target.dsn, None) if bucket_of(t, current.bucket_count)
                   not in moving]
        if foreign:
            raise MoveError(f"the target databases hold rows of {len(foreign)} tenant(s) outside the range")
        rounds = self.options.catchup_rounds
        for n in range(1, rounds + 2):
            self._check_lease()
            started = time.monotonic()
            changed = await self._sync_all(current, moving, target, label="copy" if n == 1 else f"catch-up {n - 1}")
            self._say(f"{'copy' if n == 1 else f'catch-up {n - 1}'}: {changed} row(s) written or deleted "
                      f"in {time.monotonic() - started:.2f} s")
            if n == 1 and row.phase == "copy":
                await self._set_phase(row, "catchup")
            if n > 1 and changed < self.options.catchup_threshold:
                break

    async def _freeze(self, row: BucketMove) -> None:
        version, current = await self._store.effective()
        started = time.time()
        if current.frozen_buckets and bucket_set(current.frozen_buckets) == bucket_set(row.buckets):
            # Published by this move before it died: adopt it.
            await self._set_phase(row, "frozen", frozen_version=version, freeze_started=started)
            return
        if current.frozen_buckets:
            raise MoveError(f"buckets {current.frozen_buckets} are frozen already")
        try:
            frozen = await self._store.publish(current.model_copy(update={"frozen_buckets": row.buckets}),
                                               f"move {row.id}: freeze {row.buckets}", expected_version=version)
        except ShardMapConflict as exc:
            raise MoveError(f"the shard map changed meanwhile ({exc}); run the move again") from exc
        await self._set_phase(row, "frozen", frozen_version=frozen, freeze_started=started)
        self._say(f"freeze: shard map version {frozen} freezes buckets {row.buckets}; waiting for the servers")
        behind = await wait_for_acks(self._redis, self._prefix, frozen, timeout=self.options.ack_timeout_seconds,
                                     stale_after_seconds=self.options.stale_after_seconds)
        if behind:
            await self._unfreeze(row, "servers did not acknowledge")
            await self._set_phase(row, "catchup")
            raise MoveError(f"{len(behind)} server(s) did not apply the freeze in "
                            f"{self.options.ack_timeout_seconds:g} s ({', '.join(sorted(behind))}); "
                            "the range is unfrozen again, run the move again")
        self._say(f"freeze acknowledged by every live server after {time.time() - started:.2f} s")

    async def _final_sync_and_verify(self, row: BucketMove, moving: frozenset[int],
                                     target: ShardSpec) -> list[TableCheck]:
        cp = self._checkpoint(row)
        version, current = await self._store.effective()
        if not current.frozen_buckets or bucket_set(current.frozen_buckets) != moving:
            # Resumed after someone unfroze by hand: start the freeze again.
            await self._set_phase(row, "catchup")
            raise MoveError("the range is no longer frozen; run the move again")
        # Resumed: servers started since must have applied the freeze too.
        behind = await wait_for_acks(self._redis, self._prefix, version, timeout=self.options.ack_timeout_seconds,
                                     stale_after_seconds=self.options.stale_after_seconds)
        if behind:
            raise MoveError(f"server(s) {sorted(behind)} have not applied the freeze; the move stays frozen - "
                            "resume it once they have, or abort it")
        # Frozen: the tenants found now are all there will be until the switch.
        groups = await self._owner_groups(current, moving, include_target=target)
        changed = await self._sync_all(current, moving, target, label="final catch-up", groups=groups)
        self._say(f"final catch-up (frozen): {changed} row(s)")
        checks = await self._verify(current, groups, target)
        bad = [c for c in checks if not c.ok]
        for c in checks:
            self._say(f"  verify {c.db}.{c.table}: {c.source_rows} -> {c.target_rows} rows, "
                      f"checksum {c.source_checksum} / {c.target_checksum}{'' if c.ok else '  MISMATCH'}")
        elapsed = time.time() - float(cp.get("freeze_started", time.time()))
        if bad or elapsed > self.options.max_freeze_seconds:
            await self._unfreeze(row, "verification failed" if bad else "freeze too long")
            await self._set_phase(row, "catchup")
            if bad:
                raise MoveError(f"verification failed for {[f'{c.db}.{c.table}' for c in bad]}; unfrozen")
            raise MoveError(f"the final catch-up took {elapsed:.1f} s (> {self.options.max_freeze_seconds:g} s); "
                            "unfrozen - run the move again (the catch-up passes shrink the final one) or "
                            "move a smaller range")
        return checks

    async def _delete_source(self, row: BucketMove, moving: frozenset[int]) -> int:
        _, current = await self._store.effective()
        total = int(self._checkpoint(row).get("deleted_so_far", 0))
        if row.target_shard in {s.name for s in current.shards}:
            return total  # switched before a crash: the range's owner is the target now
        groups = await self._owner_groups(current, moving, include_target=None)
        for shard, tenants in groups.items():
            spec = next(s for s in current.shards if s.name == shard)
            for db in SERVICE_DATABASES:
                engine = self._engine(spec.dsn_for(db))
                # Children before parents (their filter reads the parent rows).
                for table, kind in reversed(tables_in_copy_order(db)):
                    if kind == "shared":
                        continue
                    for chunk in _chunks(tenants, self.options.tenant_chunk):
                        n = await self._delete_rows(engine, db, table, chunk)
                        if n:
                            total += n
                            self._say(f"  deleted {n} {db}.{table.name} row(s) on {shard}")
            await self._save(row, deleted_so_far=total)
        self._say(f"source rows deleted: {total}")
        return total

    async def _switch(self, row: BucketMove, moving: frozenset[int], target: ShardSpec) -> tuple[int, float]:
        version, current = await self._store.effective()
        if row.target_shard in {s.name for s in current.shards}:  # switched before a crash
            return version, float(self._checkpoint(row).get("freeze_seconds", 0.0))
        switched = switched_map(current, moving, target)
        version = await self._store.publish(switched, f"move {row.id}: buckets {row.buckets} -> {row.target_shard}",
                                            expected_version=version)
        behind = await wait_for_acks(self._redis, self._prefix, version, timeout=self.options.ack_timeout_seconds,
                                     stale_after_seconds=self.options.stale_after_seconds)
        freeze_seconds = time.time() - float(self._checkpoint(row).get("freeze_started", time.time()))
        if behind:
            self._say(f"warning: {sorted(behind)} have not applied version {version} yet (their poll will)")
        return version, freeze_seconds

    async def _unfreeze(self, row: BucketMove, why: str) -> None:
        version, current = await self._store.effective()
        if current.frozen_buckets and bucket_set(current.frozen_buckets) == bucket_set(row.buckets):
            await self._store.publish(current.model_copy(update={"frozen_buckets": ""}),
                                      f"move {row.id}: unfreeze ({why})", expected_version=version)
            self._say(f"unfroze buckets {row.buckets} ({why})")

    # -- copying --

    async def _owner_groups(self, current: DatabaseConfig, moving: frozenset[int],
                            include_target: ShardSpec | None) -> dict[str, list[str]]:
        """Source shard -> the tenants of the range that have rows there (or at the target)."""
        router = ShardRouter(current)
        found: set[str] = set()
        sources = {router.shard_for_bucket(b).name for b in moving}
        if include_target is not None and include_target.name in sources:
            raise MoveError(f"the range already belongs to {include_target.name}")
        for shard in sources:
            spec = router.shard(shard)
            found |= set(await self._tenants_at(spec.dsn, moving))
        if include_target is not None:
            found |= set(await self._tenants_at(include_target.dsn, moving))
        async with self._db.directory_session(read_only=True) as s:
            found |= {t for (t,) in await s.execute(sa.select(TenantCode.tenant_id))
                      if bucket_of(t, current.bucket_count) in moving}
        groups: dict[str, list[str]] = {}
        for t in sorted(found):
            groups.setdefault(router.shard_for(t).name, []).append(t)
        return groups

    async def _tenants_at(self, dsn_template: str, moving: frozenset[int] | None) -> list[str]:
        """Distinct tenant ids with rows in the databases of `dsn_template` (in `moving` if given)."""
        count = self._store.base.bucket_count
        out: set[str] = set()
        for db in SERVICE_DATABASES:
            engine = self._engine(dsn_template.replace("{db}", db))
            async with engine.connect() as conn:
                for table, kind in tables_in_copy_order(db):
                    if kind != "tenant":
                        continue
                    col = table.c[TENANT_ROW.get((db, table.name), "tenant_id")]
                    # NULL: rows of no tenant (e.g. an unroutable callback) stay on their shard.
                    out |= {t for (t,) in await conn.execute(sa.select(col).where(col.is_not(None)).distinct())}
        return sorted(t for t in out if moving is None or bucket_of(t, count) in moving)

    async def _sync_all(self, current: DatabaseConfig, moving: frozenset[int], target: ShardSpec, *,
                        label: str, groups: dict[str, list[str]] | None = None) -> int:
        if groups is None:
            groups = await self._owner_groups(current, moving, include_target=target)
        changed = 0
        for shard, tenants in groups.items():
            spec = next(s for s in current.shards if s.name == shard)
            for db in SERVICE_DATABASES:
                src, dst = self._engine(spec.dsn_for(db)), self._engine(target.dsn_for(db))
                for table, kind in tables_in_copy_order(db):
                    self._check_lease()
                    n = 0
                    if kind == "shared":
                        n = await self._sync_range(src, dst, table, None, delete_extra=False)
                    else:
                        for chunk in _chunks(tenants, self.options.tenant_chunk):
                            n += await self._sync_range(src, dst, table, _owner_filter(db, table, chunk),
                                                        delete_extra=True)
                    if n:
                        self._say(f"  {label}: {db}.{table.name} {n} row(s) from {shard}")
                    changed += n
        return changed

    async def _sync_range(self, src: AsyncEngine, dst: AsyncEngine, table: sa.Table, where: Any, *,
                          delete_extra: bool) -> int:
        """Makes the target rows matching `where` equal to the source's, one primary-key page at a time."""
        pk, batch = _pk(table), self.options.batch_size
        last: tuple | None = None
        changed = 0
        while True:
            q = sa.select(table)
            if where is not None:
                q = q.where(where)
            if last is not None:
                q = q.where(_after(pk, last))
            async with src.connect() as conn:
                src_rows = (await conn.execute(q.order_by(*pk).limit(batch))).all()
            hi = _key(src_rows[-1], pk) if len(src_rows) == batch else None
            dq = sa.select(table)
            if where is not None:
                dq = dq.where(where)
            if last is not None:
                dq = dq.where(_after(pk, last))
            if hi is not None:
                dq = dq.where(_at_most(pk, hi))
            async with dst.connect() as conn:
                dst_rows = (await conn.execute(dq)).all()
            source = {_key(r, pk): r for r in src_rows}
            target = {_key(r, pk): tuple(r) for r in dst_rows}
            upsert = [r for k, r in source.items() if target.get(k) != tuple(r)]
            stale = [k for k in target if k not in source] if delete_extra else []
            replace = [_key(r, pk) for r in upsert if _key(r, pk) in target]
            if upsert or stale:
                await self._check_collisions(dst, table, [_key(r, pk) for r in upsert if _key(r, pk) not in target])
                async with dst.begin() as conn:
                    for keys in (stale, replace):
                        for i in range(0, len(keys), batch):
                            await conn.execute(table.delete().where(_in_keys(pk, keys[i:i + batch])))
                    if upsert:
                        await conn.execute(table.insert(), [dict(r._mapping) for r in upsert])
                changed += len(upsert) + len(stale)
            if hi is None:
                return changed
            last = hi

    async def _check_collisions(self, dst: AsyncEngine, table: sa.Table, new_keys: list[tuple]) -> None:
        """A key new to the range that exists at the target belongs to another tenant's row."""
        if not new_keys:
            return
        pk = _pk(table)
        async with dst.connect() as conn:
            clash = (await conn.execute(sa.select(*pk).where(_in_keys(pk, new_keys)).limit(5))).all()
        if clash:
            raise MoveError(f"primary key collision in {table.name} at the target: {[tuple(c) for c in clash]} "
                            "(ids from two source shards?)")

    async def _delete_rows(self, engine: AsyncEngine, db: str, table: sa.Table, tenants: list[str]) -> int:
        pk, total = _pk(table), 0
        where = _owner_filter(db, table, tenants)
        while True:
            async with engine.begin() as conn:
                keys = [tuple(r) for r in await conn.execute(sa.select(*pk).where(where).limit(self.options.batch_size))]
                if not keys:
                    return total
                await conn.execute(table.delete().where(_in_keys(pk, keys)))
            total += len(keys)

    # -- verification --

    async def _verify(self, current: DatabaseConfig, groups: dict[str, list[str]],
                      target: ShardSpec) -> list[TableCheck]:
        checks: list[TableCheck] = []
        for db in SERVICE_DATABASES:
            dst = self._engine(target.dsn_for(db))
            for table, kind in tables_in_copy_order(db):
                s_rows = t_rows = s_sum = t_sum = 0
                if kind == "shared":
                    for shard in groups:
                        spec = next(s for s in current.shards if s.name == shard)
                        n, missing = await self._missing_at(self._engine(spec.dsn_for(db)), dst, table)
                        s_rows += n
                        t_sum += missing
                    t_rows = await self._count(dst, table, None)
                    checks.append(TableCheck(db, table.name, s_rows, t_rows, "0 missing",
                                             f"{t_sum} missing", shared=True))
                    continue
                for shard, tenants in groups.items():
                    spec = next(s for s in current.shards if s.name == shard)
                    src = self._engine(spec.dsn_for(db))
                    for chunk in _chunks(tenants, self.options.tenant_chunk):
                        where = _owner_filter(db, table, chunk)
                        n, h = await self._checksum(src, table, where)
                        s_rows, s_sum = s_rows + n, (s_sum + h) % (1 << 64)
                        n, h = await self._checksum(dst, table, where)
                        t_rows, t_sum = t_rows + n, (t_sum + h) % (1 << 64)
                checks.append(TableCheck(db, table.name, s_rows, t_rows, f"{s_sum:016x}", f"{t_sum:016x}"))
        return checks

    async def _checksum(self, engine: AsyncEngine, table: sa.Table, where: Any) -> tuple[int, int]:
        """(rows, order-independent sum of row hashes) of the rows matching `where`."""
        pk, count, total, last = _pk(table), 0, 0, None
        while True:
            q = sa.select(table).where(where)
            if last is not None:
                q = q.where(_after(pk, last))
            async with engine.connect() as conn:
                rows = (await conn.execute(q.order_by(*pk).limit(self.options.batch_size * 4))).all()
            for r in rows:
                total = (total + _row_hash(tuple(r))) % (1 << 64)
            count += len(rows)
            if len(rows) < self.options.batch_size * 4:
                return count, total
            last = _key(rows[-1], pk)

    async def _missing_at(self, src: AsyncEngine, dst: AsyncEngine, table: sa.Table) -> tuple[int, int]:
        pk, count, missing, last = _pk(table), 0, 0, None
        while True:
            q = sa.select(*pk)
            if last is not None:
                q = q.where(_after(pk, last))
            async with src.connect() as conn:
                keys = [tuple(r) for r in await conn.execute(q.order_by(*pk).limit(self.options.batch_size))]
            if keys:
                async with dst.connect() as conn:
                    found = {tuple(r) for r in await conn.execute(sa.select(*pk).where(_in_keys(pk, keys)))}
                missing += len([k for k in keys if k not in found])
            count += len(keys)
            if len(keys) < self.options.batch_size:
                return count, missing
            last = keys[-1]

    async def _count(self, engine: AsyncEngine, table: sa.Table, where: Any) -> int:
        q = sa.select(sa.func.count()).select_from(table)
        if where is not None:
            q = q.where(where)
        async with engine.connect() as conn:
            return int(await conn.scalar(q) or 0)

    # -- state, lease, engines --

    def _engine(self, dsn: str) -> AsyncEngine:
        engine = self._engines.get(dsn)
        if engine is None:
            engine = self._engines[dsn] = create_engine_for(dsn, self._store.base)
        return engine

    async def _unfinished(self) -> BucketMove | None:
        async with self._db.directory_session(read_only=True) as s:
            return (await s.execute(sa.select(BucketMove).where(BucketMove.phase.in_(ACTIVE_PHASES))
                                    .order_by(BucketMove.created_at).limit(1))).scalars().first()

    def _checkpoint(self, row: BucketMove) -> dict[str, Any]:
        return json.loads(row.checkpoint or "{}")

    async def _save(self, row: BucketMove, **checkpoint: Any) -> None:
        await self._set_phase(row, row.phase, **checkpoint)

    async def _set_phase(self, row: BucketMove, phase: str, **checkpoint: Any) -> None:
        cp = {**self._checkpoint(row), **checkpoint}
        async with self._db.directory_unit_of_work() as uow:
            await uow.session.execute(sa.update(BucketMove).where(BucketMove.id == row.id).values(
                phase=phase, checkpoint=json.dumps(cp), updated_at=utcnow()))
        row.phase, row.checkpoint = phase, json.dumps(cp)

    async def _acquire_lease(self) -> None:
        now = utcnow()
        until = now + timedelta(seconds=self.options.lease_seconds)
        try:
            async with self._db.directory_unit_of_work() as uow:
                s = uow.session
                lease = (await s.execute(sa.select(Lease).where(Lease.name == LEASE_NAME).with_for_update())
                         ).scalars().first()
                if lease is None:
                    s.add(Lease(name=LEASE_NAME, holder=self._holder, expires_at=until))
                elif lease.expires_at > now and lease.holder != self._holder:
                    raise MoveAlreadyRunning(
                        f"another bucket move is running (lease held until {lease.expires_at:%H:%M:%S} UTC)")
                else:
                    lease.holder, lease.expires_at = self._holder, until
        except sa_exc.IntegrityError as exc:
            raise MoveAlreadyRunning("another bucket move started at the same moment") from exc
        self._lease_lost = False
        self._lease_task = asyncio.create_task(self._renew_lease(), name="bucket-move-lease")

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(self.options.lease_seconds / 3)
            try:
                async with self._db.directory_unit_of_work() as uow:
                    result = await uow.session.execute(
                        sa.update(Lease).where(Lease.name == LEASE_NAME, Lease.holder == self._holder)
                        .values(expires_at=utcnow() + timedelta(seconds=self.options.lease_seconds)))
                if result.rowcount == 0:
                    self._lease_lost = True
                    return
            except Exception as exc:  # noqa: BLE001 - retried; the lease outlives one missed renewal
                log.warning("bucket move lease not renewed: %r", exc)

    def _check_lease(self) -> None:
        if self._lease_lost:
            raise MoveError("the move lease was lost (another run took over?); stopping")

    async def _release(self) -> None:
        task, self._lease_task = self._lease_task, None
        await cancel_and_wait(task)
        async with self._db.directory_unit_of_work() as uow:
            await uow.session.execute(sa.delete(Lease).where(Lease.name == LEASE_NAME, Lease.holder == self._holder))

    def _say(self, line: str) -> None:
        self._progress(line)


__all__ = ["BucketMover", "MoveAlreadyRunning", "MoveError", "MoveOptions", "MoveResult", "TableCheck",
           "ranges_of", "switched_map"]
