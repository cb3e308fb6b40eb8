"""Read replicas: which replica may serve a read, how far behind each one is, read-your-writes.

Reads marked `read_only=True` go to a replica of their shard when one is *usable*: reachable, its
lag measured recently and at most `replica_max_lag_seconds`. Otherwise, or when it cannot show the
read's writes in time, the read goes to the primary. See docs/replicas.md.

- Lag: `ReplicaMonitor` upserts a heartbeat row (a sequence number per writer) on each primary
  every `replica_heartbeat_interval_seconds`, reads it back on every replica, and takes the age of
  the oldest heartbeat the replica has not applied yet as its lag (0 when it has them all). Only
  this process's monotonic clock is involved, so clock skew between machines does not matter.
- Read-your-writes: a write of a tenant (a tenant-scoped unit of work) records the GTID of its
  transaction per (shard, tenant) in the `WriteTracker` (this process, and Redis for the other
  processes). A tenant's replica read first waits, bounded by `replica_wait_seconds`, until the
  replica has applied that GTID (MASTER_GTID_WAIT); a shard-wide read waits for the primary's whole
  binlog position. A wait that times out sends the read to the primary.

The directory (`database.directory_replicas`) is routed the same way, as one more database
under the name DIRECTORY: its lookups wait for the directory writes recorded lately (its rows
belong to no tenant, so all of them are kept under SHARD_WIDE).

MariaDB only (GTIDs, MASTER_GTID_WAIT); SQLite shards never list replicas.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .background import cancel_and_wait
from .config import DatabaseConfig
from .resilience import RedisBreaker, close_quietly
from .sharding import DIRECTORY

if TYPE_CHECKING:
    from .database import Database

log = logging.getLogger(__name__)

ReadRouted = Callable[[str, str, str], None]  # (shard, "replica" | "primary", reason)
LagMeasured = Callable[[str, str, float | None], None]  # (shard, replica label, seconds or None)

# What a database that is down, unreachable or failing raises (driver errors come wrapped).
_DB_ERRORS = (sa.exc.SQLAlchemyError, OSError, TimeoutError)

_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def gtid_seq(gtid: str) -> tuple[int, int] | None:
    """(domain, seq_no) of one GTID `domain-server-seq`, None if it is not one."""
    found = _GTID.match(gtid.strip())
    return (int(found.group(1)), int(found.group(3))) if found else None


def later_gtid(a: str | None, b: str | None) -> str | None:
    """The later of two GTIDs of one domain; on different domains, the second (the newer write)."""
    if not a or not b:
        return a or b
    sa_, sb = gtid_seq(a), gtid_seq(b)
    if sa_ is None or sb is None or sa_[0] != sb[0]:
        return b
    return a if sa_[1] >= sb[1] else b


def replica_label(dsn: str) -> str:
    """host:port of a replica DSN: a metric label and log name that carries no password."""
    url = make_url(dsn.replace("{db}", "x"))
    return f"{url.host or 'localhost'}:{url.port or 3306}"


# ---- read-your-writes ----------------------------------------------------------------------------


# The tracker's name for writes made for no single tenant (shard_unit_of_work: dispatch, sweeps).
SHARD_WIDE = "*"


class WriteTracker:
    """The last write (GTID) of each (shard, tenant), kept for `ttl` seconds, in this process.

    Writes made for no single tenant are kept under (shard, SHARD_WIDE); a tenant's read must see
    the later of its own and those (the platform changes tenants' rows: statuses, receipts, and a
    stale read of them could be cached). After `ttl` a usable replica has applied the write anyway
    (its lag is bounded), so the entry is no longer needed.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._local: dict[tuple[str, str], tuple[str, float]] = {}

    def _local_get(self, shard: str, tenant_id: str) -> str | None:
        hit = self._local.get((shard, tenant_id))
        if hit is None:
            return None
        if hit[1] < time.monotonic():
            self._local.pop((shard, tenant_id), None)
            return None
        return hit[0]

    def _local_record(self, shard: str, tenant_id: str, gtid: str) -> None:
        if len(self._local) > 100_000:  # expired entries are dropped on read; bound the rest
            now = time.monotonic()
            self._local = {k: v for k, v in self._local.items() if v[1] >= now}
        best = later_gtid(self._local_get(shard, tenant_id), gtid) or gtid
        self._local[(shard, tenant_id)] = (best, time.monotonic() + self.ttl)

    async def record(self, shard: str, tenant_id: str | None, gtid: str) -> None:
        self._local_record(shard, tenant_id or SHARD_WIDE, gtid)

    async def get(self, shard: str, tenant_id: str) -> str | None:
        """The GTID a read of the tenant must wait for; raises when that cannot be known."""
        return later_gtid(self._local_get(shard, tenant_id), self._local_get(shard, SHARD_WIDE))


# Keeps the later GTID of one domain (two writes of a tenant may record out of order).
_RECORD_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local d, s = string.match(cur, '^(%d+)%-%d+%-(%d+)$')
  if d == ARGV[2] and tonumber(s) >= tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
return 1
"""


class WritesUnknown(Exception):
    """The writes a read must see cannot be looked up (Redis unreachable): read the primary."""


class RedisWriteTracker(WriteTracker):
    """Also shares the writes through Redis, so that a tenant's write made by one server process
    is waited for by a read in any other (requests of one client are spread over processes).

    After a Redis failure it stops asking Redis for PAUSE_SECONDS (a RedisBreaker): every commit
    and every read would otherwise wait out the socket timeout. Meanwhile reads go to the primary."""

    PAUSE_SECONDS = 1.0

    def __init__(self, redis: Any, key_prefix: str, ttl: float) -> None:
        super().__init__(ttl)
        self._redis = redis
        self._prefix = f"{key_prefix}ryw:"
        self._breaker = RedisBreaker("read-your-writes", fallback="replica reads go to the primary",
                                     pause_seconds=self.PAUSE_SECONDS, logger=log)

    def _key(self, shard: str, tenant_id: str) -> str:
        # The {shard} hash tag keeps a tenant's key and its shard's key in one Redis Cluster slot
        # (one MGET reads both).
        return f"{self._prefix}{{{shard}}}:{tenant_id}"

    async def record(self, shard: str, tenant_id: str | None, gtid: str) -> None:
        key = tenant_id or SHARD_WIDE
        self._local_record(shard, key, gtid)
        seq = gtid_seq(gtid)
        if seq is None:
            return
        if self._breaker.is_open:
            return  # reads go to the primary meanwhile (get raises WritesUnknown)
        try:
            await self._redis.eval(_RECORD_SCRIPT, 1, self._key(shard, key), gtid, str(seq[0]), str(seq[1]),
                                   str(int(self.ttl * 1000)))
        except Exception as exc:  # noqa: BLE001 - the commit is done; only the routing hint is lost
            self._breaker.failed(exc)
        else:
            self._breaker.succeeded()

    async def get(self, shard: str, tenant_id: str) -> str | None:
        # Without knowing the tenant's writes the read goes to the primary.
        if self._breaker.is_open:
            raise WritesUnknown("Redis is unreachable")
        try:
            raw = await self._redis.mget([self._key(shard, tenant_id), self._key(shard, SHARD_WIDE)])
        except Exception as exc:
            self._breaker.failed(exc)
            raise WritesUnknown(str(exc)) from exc
        self._breaker.succeeded()
        best = await super().get(shard, tenant_id)
        for value in raw:
            best = later_gtid(best, value.decode() if isinstance(value, bytes) else value)
        return best


# ---- replica state and routing ------------------------------------------------------------------


@dataclass
class ReplicaState:
    shard: str
    dsn: str  # template with {db}
    label: str
    lag: float | None = None  # seconds; None until measured
    measured_at: float = 0.0  # monotonic time of the last measurement
    error: str | None = None  # set while unreachable
    # @@read_only is 0: promoted (a directory failover keeps it listed) or misconfigured. Not a
    # replica to read from: MASTER_GTID_WAIT there would wait for writes it never applies.
    writable: bool = False
    applied_seq: int = 0  # the last heartbeat of this process seen applied

    def dsn_for(self, db: str) -> str:
        return self.dsn.replace("{db}", db)


@dataclass
class ReplicaRouting:
    """Replica states of the shard map and the directory, and the choice of a connection for
    each read. States are keyed by shard name, the directory's by DIRECTORY."""

    config: DatabaseConfig
    tracker: WriteTracker = field(default=None)  # type: ignore[assignment]
    on_read: ReadRouted | None = None
    # False until a ReplicaMonitor runs in this process: without lag figures replicas are not used.
    monitored: bool = False
    states: dict[str, list[ReplicaState]] = field(default_factory=dict)
    _engines: dict[str, AsyncEngine] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tracker is None:
            self.tracker = WriteTracker(self.tracker_ttl(self.config))
        self.configure(self.config)

    @staticmethod
    def tracker_ttl(config: DatabaseConfig) -> float:
        # A write older than the lag bound plus the measurement's age is on every usable replica.
        return max(5.0, 2 * (config.replica_max_lag_seconds + 2 * ReplicaRouting.stale_after(config)))

    @staticmethod
    def stale_after(config: DatabaseConfig) -> float:
        """A lag measured longer ago than this no longer counts (the monitor is stuck)."""
        return max(1.0, 4 * config.replica_heartbeat_interval_seconds)

    def configure(self, config: DatabaseConfig) -> list[AsyncEngine]:
        """Adopts a (new) shard map; returns the engines of replicas no longer in it."""
        self.config = config
        old = {(s.shard, s.dsn): s for states in self.states.values() for s in states}
        self.states = {
            shard.name: [old.get((shard.name, dsn)) or ReplicaState(shard.name, dsn, replica_label(dsn))
                         for dsn in shard.replicas]
            for shard in config.shards if shard.replicas
        }
        if config.directory_replicas:
            self.states[DIRECTORY] = [old.get((DIRECTORY, dsn)) or ReplicaState(DIRECTORY, dsn, replica_label(dsn))
                                      for dsn in config.directory_replicas]
        keep = {s.dsn_for(db) for states in self.states.values() for s in states
                for db in ("user", "account", "message", "callback", DIRECTORY)}
        return [self._engines.pop(dsn) for dsn in list(self._engines) if dsn not in keep]

    def has_replicas(self, shard: str) -> bool:
        return bool(self.states.get(shard))

    def usable(self, shard: str) -> list[ReplicaState]:
        if not self.monitored:
            return []
        now, stale = time.monotonic(), self.stale_after(self.config)
        bound = self.config.replica_max_lag_seconds
        return [s for s in self.states.get(shard, ()) if s.error is None and not s.writable
                and s.lag is not None and s.lag <= bound and now - s.measured_at <= stale]

    def routed(self) -> list[tuple[str, str]]:
        """(name, primary DSN) of each database with replicas: shards, then the directory."""
        out = [(s.name, s.dsn) for s in self.config.shards if s.replicas]
        if self.config.directory_replicas:
            out.append((DIRECTORY, self.config.directory_dsn))
        return out

    def engine(self, state: ReplicaState, db: str) -> AsyncEngine:
        from .database import create_engine_for

        dsn = state.dsn_for(db)
        engine = self._engines.get(dsn)
        if engine is None:
            engine = self._engines[dsn] = create_engine_for(dsn, self.config)
        return engine

    async def dispose(self) -> None:
        engines, self._engines = list(self._engines.values()), {}
        await asyncio.gather(*(e.dispose() for e in engines), return_exceptions=True)

    def _routed(self, shard: str, target: str, reason: str) -> None:
        if self.on_read is not None:
            self.on_read(shard, target, reason)

    async def connect_for_read(self, db: str, shard: str, tenant_id: str | None,
                               primary: AsyncEngine) -> AsyncConnection | None:
        """A connection to a usable replica that shows what the read must see, else None (primary)."""
        candidates = self.usable(shard)
        if not candidates:
            self._routed(shard, "primary", "no_usable_replica")
            return None
        try:
            if tenant_id is not None:
                must_see = await self.tracker.get(shard, tenant_id)
            else:
                must_see = await _primary_position(primary)
        except WritesUnknown:  # already logged by the tracker
            self._routed(shard, "primary", "writes_unknown")
            return None
        except Exception:
            log.warning("cannot tell which writes a read on shard %s must see; reading the primary", shard,
                        exc_info=True)
            self._routed(shard, "primary", "writes_unknown")
            return None
        random.shuffle(candidates)
        for state in candidates:
            try:
                conn = await self.engine(state, db).connect()
            except _DB_ERRORS as exc:
                state.error, state.lag = f"{type(exc).__name__}: {exc}", None
                log.warning("replica %s of shard %s unreachable: %s", state.label, shard, state.error)
                continue
            try:
                if must_see:
                    waited = await conn.scalar(sa.text("SELECT MASTER_GTID_WAIT(:gtid, :timeout)"),
                                               {"gtid": must_see, "timeout": self.config.replica_wait_seconds})
                    await conn.rollback()
                    if waited != 0:
                        await conn.close()
                        self._routed(shard, "primary", "wait_timeout")
                        return None
            except _DB_ERRORS as exc:
                await close_quietly(conn, "replica connection")
                state.error, state.lag = f"{type(exc).__name__}: {exc}", None
                continue
            self._routed(shard, "replica", "usable")
            return conn
        self._routed(shard, "primary", "replica_unreachable")
        return None

    async def record_write(self, conn: AsyncConnection, shard: str, tenant_id: str | None) -> None:
        """After a commit on `conn`: remember its GTID for the next reads of the tenant (of every
        tenant of the shard when `tenant_id` is None)."""
        gtid = await conn.scalar(sa.text("SELECT @@last_gtid"))
        await conn.rollback()
        if not gtid:
            return
        info = conn.info  # per DBAPI connection: @@last_gtid survives into the next checkout
        if info.get("wework_last_gtid") == gtid:
            return  # the transaction wrote nothing
        info["wework_last_gtid"] = gtid
        await self.tracker.record(shard, tenant_id, gtid)


async def _primary_position(primary: AsyncEngine) -> str | None:
    """The primary's binlog position (every committed write), None when it cannot be asked."""
    try:
        async with primary.connect() as conn:
            return await conn.scalar(sa.text("SELECT @@gtid_binlog_pos")) or None
    except Exception:
        # The primary is down: the replica is all there is; it has every acknowledged write
        # (semi-sync) and serves what it applied.
        log.debug("primary position unknown", exc_info=True)
        return None


# ---- lag measurement -----------------------------------------------------------------------------


class ReplicaMonitor:
    """Writes the heartbeat on every primary with replicas and measures each replica's lag.

    Runs in every server process (each one measures with its own heartbeat row). `on_lag(shard,
    replica, seconds)` reports each measurement, None when the replica is unreachable.
    """

    def __init__(self, database: Database, *, on_lag: LagMeasured | None = None) -> None:
        self._db = database
        self._routing = database.replicas
        self._on_lag = on_lag
        self.writer = uuid.uuid4().hex[:16]
        self._seq: dict[str, int] = {}
        self._written: dict[str, dict[int, float]] = {}  # shard -> seq -> monotonic send time
        self._ready: set[tuple[str, str]] = set()  # (shard, primary dsn) whose table exists
        self._task: asyncio.Task | None = None
        self._beat_failing: set[str] = set()

    @property
    def _schema(self) -> str:
        return self._routing.config.replica_heartbeat_schema

    async def start(self) -> None:
        self._routing.monitored = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name="replica-monitor")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self._routing.monitored = False

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("replica monitor tick failed")
            interval = self._routing.config.replica_heartbeat_interval_seconds
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def tick(self) -> None:
        await asyncio.gather(*(self._shard_tick(name, dsn) for name, dsn in self._routing.routed()))

    def _probe_db(self, shard: str) -> str:
        # Any service database this process opens lives on the shard's server; the heartbeat
        # table sits in a schema of its own beside them. The directory's DSNs name one database.
        return DIRECTORY if shard == DIRECTORY else self._db.databases[0]

    def _primary(self, shard: str) -> AsyncEngine:
        if shard == DIRECTORY:  # the engine that finds the current directory primary itself
            return self._db.engine(DIRECTORY)
        return self._db.engine(self._probe_db(shard), shard)

    async def _shard_tick(self, shard: str, dsn: str) -> None:
        try:
            await self._beat(shard, dsn)
            if shard in self._beat_failing:
                self._beat_failing.discard(shard)
                log.info("heartbeat on the primary of shard %s written again", shard)
        except _DB_ERRORS as exc:
            # Replicas are still measured against the beats written so far: a replica that had
            # applied them all keeps serving reads while the primary is down.
            if shard not in self._beat_failing:  # once per outage, not every tick
                self._beat_failing.add(shard)
                log.warning("heartbeat on the primary of shard %s failed: %s", shard, exc)
        states = self._routing.states.get(shard, [])
        await asyncio.gather(*(self._measure(shard, state) for state in states))
        self._prune(shard)

    async def _beat(self, shard: str, dsn: str) -> None:
        engine = self._primary(shard)
        table = f"`{self._schema}`.replication_heartbeat"
        async with engine.connect() as conn:
            if (shard, dsn) not in self._ready:
                await conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{self._schema}`"))
                await conn.execute(sa.text(
                    f"CREATE TABLE IF NOT EXISTS {table} (shard VARCHAR(32) NOT NULL, writer VARCHAR(32) NOT NULL, "
                    "seq BIGINT NOT NULL, ts DATETIME(6) NOT NULL, PRIMARY KEY (shard, writer)) ENGINE=InnoDB"))
                # Rows of writers (processes) long gone.
                await conn.execute(sa.text(f"DELETE FROM {table} WHERE ts < UTC_TIMESTAMP(6) - INTERVAL 1 DAY"))
                await conn.commit()
                self._ready.add((shard, dsn))
            seq = self._seq.get(shard, 0) + 1
            sent = time.monotonic()
            await conn.execute(sa.text(
                f"INSERT INTO {table} (shard, writer, seq, ts) VALUES (:s, :w, :q, UTC_TIMESTAMP(6)) "
                "ON DUPLICATE KEY UPDATE seq = VALUES(seq), ts = VALUES(ts)"),
                {"s": shard, "w": self.writer, "q": seq})
            await conn.commit()
        self._seq[shard] = seq
        self._written.setdefault(shard, {})[seq] = sent

    async def _measure(self, shard: str, state: ReplicaState) -> None:
        engine = self._routing.engine(state, self._probe_db(shard))
        table = f"`{self._schema}`.replication_heartbeat"
        try:
            async with asyncio.timeout(max(1.0, self._routing.config.replica_max_lag_seconds)):
                async with engine.connect() as conn:
                    writable = not await conn.scalar(sa.text("SELECT @@read_only"))
                    try:
                        applied = await conn.scalar(
                            sa.text(f"SELECT seq FROM {table} WHERE shard = :s AND writer = :w"),
                            {"s": shard, "w": self.writer})
                    except sa.exc.ProgrammingError:
                        applied = None  # the table itself has not reached the replica yet
        except _DB_ERRORS as exc:
            if state.error is None:
                log.warning("replica %s of shard %s is unreachable: %s", state.label, shard, exc)
            state.error, state.lag, state.measured_at = f"{type(exc).__name__}: {exc}", None, time.monotonic()
            self._report(shard, state)
            return
        now = time.monotonic()
        pending = [t for seq, t in self._written.get(shard, {}).items() if seq > (applied or 0)]
        lag = max(0.0, now - min(pending)) if pending else 0.0
        if state.error is not None:
            log.info("replica %s of shard %s is reachable again", state.label, shard)
        bound = self._routing.config.replica_max_lag_seconds
        was_usable, usable = state.lag is not None and state.lag <= bound, lag <= bound
        if was_usable != usable:
            log.log(logging.INFO if usable else logging.WARNING, "replica %s of shard %s %s reads (lag %.3f s, "
                    "bound %.3f s)", state.label, shard, "serves" if usable else "is taken out of", lag, bound)
        if writable and not state.writable:
            log.warning("replica %s of shard %s is writable (promoted?): no reads go to it", state.label, shard)
        state.error, state.lag, state.measured_at, state.writable = None, lag, now, writable
        state.applied_seq = applied or 0
        self._report(shard, state)

    def _report(self, shard: str, state: ReplicaState) -> None:
        if self._on_lag is not None:
            self._on_lag(shard, state.label, state.lag)

    def _prune(self, shard: str) -> None:
        written = self._written.get(shard)
        if not written:
            return
        states = self._routing.states.get(shard, [])
        applied = [s.applied_seq for s in states]
        floor = min(applied) if applied else max(written)
        for seq in [q for q in written if q < floor]:
            del written[seq]
        if len(written) > 100_000:  # a replica stuck for hours: keep the oldest pending beats
            for seq in sorted(written)[1000:-50_000]:
                del written[seq]
