"""Consistency checks (`wework-admin verify`, docs/operations-verify.md, decision 0032).

Two comparisons, both by table and primary-key chunk, narrowed down to rows when a chunk differs:

replicas   each shard's primary against each of its replicas, the pt-table-checksum way adapted
           to MariaDB GTIDs: the chunk checksum is an `INSERT ... SELECT` into a checksum table
           written with `binlog_format=STATEMENT`, so every replica re-runs the same statement at
           exactly the same point of the replication stream; the primary's figures follow in a
           replicated UPDATE. Once the replica applied the primary's @@gtid_binlog_pos
           (MASTER_GTID_WAIT), its table holds, per chunk, its own checksum beside the
           primary's. Live writes cannot cause a false difference: both sides computed the
           chunk at the same transaction boundary. A differing chunk is narrowed the same way
           (per-row hashes replicated into `row_checksums`) and compared row by row.
move       the rows of a bucket range on a move's source shard against its target (different
           servers, no common stream): the same chunk checksums read directly on both sides;
           rows found different are read again after `settle_seconds` and reported only if they
           still differ (a move's target catches up with live writes; see the operator page).

Load is bounded by `chunk_size` rows per statement and `sleep_seconds` between chunks; the chunk
statements take shared locks on at most one chunk, for at most `lock_wait_seconds`; every
`throttle_every_chunks` chunks the primary waits for its replicas to apply them. Progress
(the next chunk of each table) is stored on each primary in `<checksum_db>.progress`, so an
interrupted run resumes with `--resume` where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .bucket_move import bucket_set
from .config import SERVICE_DATABASES, DatabaseConfig, ShardSpec
from .database import create_engine_for
from .replicas import replica_label
from .resilience import retrying
from .sharding import bucket_of

Progress = Callable[[str], None]

DEFAULT_CHECKSUM_DB = "wework_verify"
# Alembic's bookkeeping, the same on both sides by construction.
SKIPPED_TABLES = {"alembic_version"}
LOCK_WAIT_TIMEOUT = 1205


class VerifyError(RuntimeError):
    """The check could not be made (a replica does not catch up, a privilege is missing)."""


@dataclass
class VerifyOptions:
    chunk_size: int = 1000  # rows per checksum statement
    sleep_seconds: float = 0.0  # pause after each chunk (bounds the load on a busy primary)
    lock_wait_seconds: int = 2  # a chunk statement gives up (and is retried) past this
    replica_wait_seconds: float = 60.0  # MASTER_GTID_WAIT per table
    # Every this many chunks the primary waits until its replicas applied them, so that the
    # checks never pile up replication lag (the replicas re-run every chunk statement).
    throttle_every_chunks: int = 20
    settle_seconds: float = 1.0  # move check: re-read differing rows after this pause
    checksum_db: str = DEFAULT_CHECKSUM_DB
    max_rows_reported: int = 100  # per differing chunk
    resume: bool = False
    tables: frozenset[str] = frozenset()  # "db.table" or "table"; empty: all


@dataclass
class RowDifference:
    key: dict[str, Any]
    problem: str  # "differs", "missing" (on the replica / target), "extra" (only there)


@dataclass
class ChunkDifference:
    kind: str  # "replica" or "move"
    shard: str
    target: str  # replica host:port, or the move's target shard
    db: str  # service database (user, account, message, ...)
    table: str
    chunk: int
    lower: list | None  # key range (lower, upper]; None: open end
    upper: list | None
    source_rows: int
    target_rows: int
    rows: list[RowDifference] = field(default_factory=list)


@dataclass
class TableResult:
    kind: str
    shard: str
    target: str
    db: str
    table: str
    chunks: int = 0
    rows: int = 0
    differing_chunks: int = 0
    differing_rows: int = 0


@dataclass
class VerifyReport:
    tables: list[TableResult] = field(default_factory=list)
    differences: list[ChunkDifference] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences and not self.errors

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"ok": self.ok, "seconds": round(self.seconds, 3), "errors": self.errors,
                "tables": [asdict(t) for t in self.tables],
                "differences": [asdict(d) for d in self.differences]}


# ---- SQL building -------------------------------------------------------------------------------


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass
class TableShape:
    schema: str
    name: str
    columns: list[str]
    pk: list[str]

    @property
    def ref(self) -> str:
        return f"{_q(self.schema)}.{_q(self.name)}"

    def row_hash(self) -> str:
        """MD5 of every column; NULL and '' told apart by the ISNULL flags (CONCAT_WS skips NULLs)."""
        cols = ", ".join(_q(c) for c in self.columns)
        nulls = ", ".join(f"ISNULL({_q(c)})" for c in self.columns)
        return f"MD5(CONCAT_WS('#', {cols}, CONCAT({nulls})))"

    def key_json(self) -> str:
        return "JSON_ARRAY(" + ", ".join(_q(c) for c in self.pk) + ")"

    def range_where(self, lower: Sequence | None, upper: Sequence | None) -> tuple[str, list]:
        """`key > lower AND key <= upper` (either side open when None), lexicographic over the key's
        columns, spelled with OR/AND rather than row constructors so that the range optimizer
        reads only the chunk of the primary key."""
        parts, params = ["1=1"], []
        for bound, op in ((lower, ">"), (upper, "<=")):
            if bound is not None:
                sql, values = self._compare(op, list(bound))
                parts.append(sql)
                params += values
        return " AND ".join(parts), params

    def _compare(self, op: str, bound: list) -> tuple[str, list]:
        strict = "<" if op.startswith("<") else ">"
        last = len(self.pk) - 1
        ors, params = [], []
        for i, col in enumerate(self.pk):
            eqs = [f"{_q(c)} = %s" for c in self.pk[:i]]
            ors.append("(" + " AND ".join([*eqs, f"{_q(col)} {op if i == last else strict} %s"]) + ")")
            params += bound[:i + 1]
        return "(" + " OR ".join(ors) + ")", params


# Order-independent 128-bit chunk checksum: BIT_XOR of the two halves of every row's MD5.
def _chunk_checksum_sql(shape: TableShape, where: str) -> str:
    return (f"SELECT COUNT(*), COALESCE(LOWER(CONCAT("
            f"LPAD(CONV(BIT_XOR(CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS UNSIGNED)), 10, 16), 16, '0'), "
            f"LPAD(CONV(BIT_XOR(CAST(CONV(SUBSTRING(h, 17, 16), 16, 10) AS UNSIGNED)), 10, 16), 16, '0'))), '0') "
            f"FROM (SELECT {shape.row_hash()} AS h FROM {shape.ref} WHERE {where}) AS chunk_rows")


async def table_shapes(conn: AsyncConnection, schema: str) -> list[TableShape]:
    """The base tables of `schema` with their columns and primary keys (tables without one are skipped)."""
    cols = await conn.exec_driver_sql(
        "SELECT c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.COLUMNS c JOIN information_schema.TABLES t "
        "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME AND t.TABLE_TYPE = 'BASE TABLE' "
        "WHERE c.TABLE_SCHEMA = %s ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION", (schema,))
    columns: dict[str, list[str]] = {}
    for table, column in cols:
        columns.setdefault(table, []).append(column)
    pks: dict[str, list[str]] = {}
    for table, column in await conn.exec_driver_sql(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
            "AND INDEX_NAME = 'PRIMARY' ORDER BY TABLE_NAME, SEQ_IN_INDEX", (schema,)):
        pks.setdefault(table, []).append(column)
    return [TableShape(schema, t, c, pks[t]) for t, c in sorted(columns.items())
            if t in pks and t not in SKIPPED_TABLES]


def _wanted(options: VerifyOptions, db: str, table: str) -> bool:
    return not options.tables or table in options.tables or f"{db}.{table}" in options.tables


def _schema_of(dsn: str) -> str:
    return make_url(dsn).database or ""


def _key_dict(shape: TableShape, key: Sequence) -> dict[str, Any]:
    return {c: (v if isinstance(v, (int, float, str)) or v is None else str(v)) for c, v in zip(shape.pk, key)}


def _jsonable(key: Sequence | None) -> list | None:
    return None if key is None else [v if isinstance(v, (int, float, str)) or v is None else str(v) for v in key]


async def _next_upper(conn: AsyncConnection, shape: TableShape, lower: Sequence | None,
                      chunk_size: int) -> list | None:
    """The key closing a chunk of `chunk_size` rows after `lower`; None: the rest of the table is one chunk."""
    where, params = shape.range_where(lower, None)
    cols = ", ".join(_q(c) for c in shape.pk)
    row = (await conn.exec_driver_sql(
        f"SELECT {cols} FROM {shape.ref} WHERE {where} ORDER BY {cols} LIMIT 1 OFFSET {chunk_size - 1}",
        tuple(params))).first()
    return None if row is None else list(row)


# ---- replicas -----------------------------------------------------------------------------------


_SETUP = (
    "CREATE DATABASE IF NOT EXISTS {db}",
    ("CREATE TABLE IF NOT EXISTS {db}.checksums (db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, "
     "chunk INT NOT NULL, lower_boundary TEXT NULL, upper_boundary TEXT NULL, this_crc CHAR(32) NOT NULL, "
     "this_cnt INT NOT NULL, master_crc CHAR(32) NULL, master_cnt INT NULL, "
     "ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (db, tbl, chunk)) "
     "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"),
    ("CREATE TABLE IF NOT EXISTS {db}.row_checksums (db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, "
     "chunk INT NOT NULL, row_key VARCHAR(500) NOT NULL, row_crc CHAR(32) NOT NULL, "
     "PRIMARY KEY (db, tbl, chunk, row_key)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"),
    ("CREATE TABLE IF NOT EXISTS {db}.progress (db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, "
     "run_id CHAR(36) NOT NULL, next_chunk INT NOT NULL, last_upper TEXT NULL, finished TINYINT NOT NULL, "
     "updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (db, tbl)) "
     "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"),
)


class _Engines:
    def __init__(self, config: DatabaseConfig) -> None:
        self._config = config
        self._engines: dict[str, AsyncEngine] = {}

    def get(self, dsn: str) -> AsyncEngine:
        engine = self._engines.get(dsn)
        if engine is None:
            engine = self._engines[dsn] = create_engine_for(dsn, self._config, pooled=False)
        return engine

    async def dispose(self) -> None:
        for engine in self._engines.values():
            await engine.dispose()


async def _statement_session(engine: AsyncEngine, lock_wait: int) -> AsyncConnection:
    """An autocommit connection logging its writes as statements (replicas re-run them).

    REPEATABLE READ: InnoDB refuses statement logging under READ COMMITTED (the engine default)."""
    conn = await engine.connect()
    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        await conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await conn.exec_driver_sql(f"SET SESSION binlog_format = 'STATEMENT', innodb_lock_wait_timeout = {lock_wait}")
    except Exception as exc:
        await conn.close()
        raise VerifyError(f"cannot log checksums as statements ({exc}); the verify user needs the "
                          "BINLOG ADMIN (or SUPER) privilege") from exc
    return conn


def _lock_wait_timeout(exc: BaseException) -> bool:
    return isinstance(exc, sa.exc.OperationalError) and getattr(exc.orig, "args", [None])[0] == LOCK_WAIT_TIMEOUT


async def _retry_locked(call: Callable[[], Any]) -> Any:
    # Only the statement waited out a lock (not a deadlock, which rolls back the transaction).
    return await retrying(call, attempts=5, retry_on=_lock_wait_timeout, first_wait=0.2)


class ReplicaVerifier:
    """Checks every replica of every shard of `config` against its primary."""

    def __init__(self, config: DatabaseConfig, options: VerifyOptions | None = None,
                 progress: Progress | None = None, shards: Iterable[str] = ()) -> None:
        self.config = config
        self.options = options or VerifyOptions()
        self._say = progress or (lambda _line: None)
        self._shards = set(shards)
        self._engines = _Engines(config)
        self._cdb = _q(self.options.checksum_db)

    async def run(self) -> VerifyReport:
        report, started = VerifyReport(), time.monotonic()
        try:
            for shard in self.config.shards:
                if self._shards and shard.name not in self._shards:
                    continue
                if not shard.replicas:
                    self._say(f"{shard.name}: no replicas listed, skipped")
                    continue
                await self._verify_shard(shard, report)
        finally:
            await self._engines.dispose()
        report.seconds = time.monotonic() - started
        return report

    async def _verify_shard(self, shard: ShardSpec, report: VerifyReport) -> None:
        o = self.options
        run_id = str(uuid.uuid4())
        for db in SERVICE_DATABASES:
            primary_dsn = shard.dsn_for(db)
            schema = _schema_of(primary_dsn)
            conn = await _statement_session(self._engines.get(primary_dsn), o.lock_wait_seconds)
            followers = await self._followers(shard, db)
            try:
                for statement in _SETUP:
                    await conn.exec_driver_sql(statement.format(db=self._cdb))
                shapes = [s for s in await table_shapes(conn, schema) if _wanted(o, db, s.name)]
                for shape in shapes:
                    results = [TableResult("replica", shard.name, replica_label(r), db, shape.name)
                               for r in shard.replicas]
                    chunks, rows = await self._checksum_table(conn, shape, run_id, followers)
                    position = (await conn.exec_driver_sql("SELECT @@gtid_binlog_pos")).scalar_one()
                    for replica_dsn, result in zip(shard.replicas, results):
                        result.chunks, result.rows = chunks, rows
                        try:
                            await self._compare_replica(conn, shard, db, shape, replica_dsn.replace("{db}", db),
                                                        position, result, report)
                        except VerifyError as exc:
                            report.errors.append(f"{shard.name} {result.target} {db}.{shape.name}: {exc}")
                            self._say(f"[red]{report.errors[-1]}[/red]")
                        report.tables.append(result)
            finally:
                await conn.close()
                for follower in followers:
                    await follower.close()

    async def _followers(self, shard: ShardSpec, db: str) -> list[AsyncConnection]:
        """Connections to the reachable replicas, for throttling (an unreachable one is reported later)."""
        out = []
        for dsn in shard.replicas:
            try:
                conn = await self._engines.get(dsn.replace("{db}", db)).connect()
                out.append(await conn.execution_options(isolation_level="AUTOCOMMIT"))
            except Exception as exc:  # noqa: BLE001 - its comparison reports it as an error
                self._say(f"[yellow]{shard.name}: replica {replica_label(dsn)} unreachable "
                          f"({type(exc).__name__}); not throttled on[/yellow]")
        return out

    async def _throttle(self, conn: AsyncConnection, followers: list[AsyncConnection]) -> None:
        position = (await conn.exec_driver_sql("SELECT @@gtid_binlog_pos")).scalar_one()
        for follower in followers:
            try:
                await self._wait_for(follower, position)
            except (VerifyError, sa.exc.DBAPIError) as exc:
                self._say(f"[yellow]a replica does not keep up ({exc}); going on[/yellow]")

    async def _checksum_table(self, conn: AsyncConnection, shape: TableShape, run_id: str,
                              followers: Sequence[AsyncConnection] = ()) -> tuple[int, int]:
        """Writes the chunk checksums of one table (replicated); returns (chunks, rows) checked."""
        o, cdb = self.options, self._cdb
        chunk, lower = 0, None
        saved = (await conn.exec_driver_sql(
            f"SELECT run_id, next_chunk, last_upper, finished FROM {cdb}.progress WHERE db = %s AND tbl = %s",
            (shape.schema, shape.name))).first()
        if o.resume and saved is not None and not saved[3]:
            run_id, chunk, lower = saved[0], saved[1], json.loads(saved[2]) if saved[2] else None
            self._say(f"  {shape.schema}.{shape.name}: resuming at chunk {chunk}")
        else:
            await conn.exec_driver_sql(f"DELETE FROM {cdb}.checksums WHERE db = %s AND tbl = %s",
                                       (shape.schema, shape.name))
        rows = 0
        while True:
            upper = await _next_upper(conn, shape, lower, o.chunk_size)
            where, params = shape.range_where(lower, upper)
            select = _chunk_checksum_sql(shape, where).replace("SELECT COUNT(*)", "SELECT %s, %s, %s, %s, %s, COUNT(*)", 1)
            key = (shape.schema, shape.name, chunk)

            insert = ((f"INSERT INTO {cdb}.checksums (db, tbl, chunk, lower_boundary, upper_boundary, this_cnt, "
                       f"this_crc) {select}"), (*key, json.dumps(_jsonable(lower)), json.dumps(_jsonable(upper)), *params))

            async def checksum(key: tuple = key, insert: tuple = insert) -> None:
                await conn.exec_driver_sql(f"DELETE FROM {cdb}.checksums WHERE db = %s AND tbl = %s AND chunk = %s", key)
                await conn.exec_driver_sql(*insert)

            await _retry_locked(checksum)
            cnt, crc = (await conn.exec_driver_sql(
                f"SELECT this_cnt, this_crc FROM {cdb}.checksums WHERE db = %s AND tbl = %s AND chunk = %s", key)).one()
            # Replicated too: the replica's row then holds its own figures beside the primary's.
            await conn.exec_driver_sql(
                f"UPDATE {cdb}.checksums SET master_cnt = %s, master_crc = %s WHERE db = %s AND tbl = %s AND chunk = %s",
                (cnt, crc, *key))
            rows += cnt
            chunk += 1
            await conn.exec_driver_sql(
                f"REPLACE INTO {cdb}.progress (db, tbl, run_id, next_chunk, last_upper, finished) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (shape.schema, shape.name, run_id, chunk, json.dumps(_jsonable(upper)) if upper else None,
                 int(upper is None)))
            if upper is None:
                return chunk, rows
            lower = upper
            if followers and o.throttle_every_chunks and chunk % o.throttle_every_chunks == 0:
                await self._throttle(conn, list(followers))
            if o.sleep_seconds:
                await asyncio.sleep(o.sleep_seconds)

    async def _wait_for(self, replica: AsyncConnection, position: str) -> None:
        if not position:
            return
        got = (await replica.exec_driver_sql("SELECT MASTER_GTID_WAIT(%s, %s)",
                                             (position, self.options.replica_wait_seconds))).scalar()
        if got != 0:
            raise VerifyError(f"the replica did not reach GTID {position} within "
                              f"{self.options.replica_wait_seconds:g} s (replication stopped or lagging)")

    async def _compare_replica(self, primary: AsyncConnection, shard: ShardSpec, db: str, shape: TableShape,
                               replica_dsn: str, position: str, result: TableResult, report: VerifyReport) -> None:
        try:
            replica = await self._engines.get(replica_dsn).connect()
        except Exception as exc:
            raise VerifyError(f"replica unreachable: {exc.__class__.__name__}") from exc
        replica = await replica.execution_options(isolation_level="AUTOCOMMIT")
        try:
            await self._compare_chunks(primary, replica, shard, db, shape, position, result, report)
        except sa.exc.DBAPIError as exc:  # e.g. the checksum table never reached this replica
            raise VerifyError(f"replica cannot be compared: {exc.orig}") from exc
        finally:
            await replica.close()

    async def _compare_chunks(self, primary: AsyncConnection, replica: AsyncConnection, shard: ShardSpec, db: str,
                              shape: TableShape, position: str, result: TableResult, report: VerifyReport) -> None:
        cdb = self._cdb
        await self._wait_for(replica, position)
        bad = (await replica.exec_driver_sql(
            f"SELECT chunk, lower_boundary, upper_boundary, this_cnt, this_crc, master_cnt, master_crc "
            f"FROM {cdb}.checksums WHERE db = %s AND tbl = %s AND (master_cnt IS NULL "
            "OR this_cnt <> master_cnt OR this_crc <> master_crc) ORDER BY chunk",
            (shape.schema, shape.name))).all()
        for chunk, lo, hi, cnt, _crc, mcnt, _mcrc in bad:
            lower, upper = json.loads(lo) if lo else None, json.loads(hi) if hi else None
            diff = ChunkDifference("replica", shard.name, result.target, db, shape.name, chunk, lower, upper,
                                   mcnt or 0, cnt)
            diff.rows = await self._narrow(primary, replica, shape, chunk, lower, upper)
            result.differing_chunks += 1
            result.differing_rows += len(diff.rows)
            report.differences.append(diff)
            self._say(f"[red]{shard.name} {result.target} {db}.{shape.name} chunk {chunk} "
                      f"({lower}, {upper}]: {len(diff.rows)} row(s) differ[/red]")

    async def _narrow(self, primary: AsyncConnection, replica: AsyncConnection, shape: TableShape, chunk: int,
                      lower: list | None, upper: list | None) -> list[RowDifference]:
        """Per-row hashes of one chunk, replicated like the chunk checksum, compared row by row."""
        cdb, key = self._cdb, (shape.schema, shape.name, chunk)
        where, params = shape.range_where(lower, upper)

        async def rows_hashed() -> None:
            await primary.exec_driver_sql(
                f"DELETE FROM {cdb}.row_checksums WHERE db = %s AND tbl = %s AND chunk = %s", key)
            await primary.exec_driver_sql(
                f"INSERT INTO {cdb}.row_checksums (db, tbl, chunk, row_key, row_crc) SELECT %s, %s, %s, "
                f"{shape.key_json()}, {shape.row_hash()} FROM {shape.ref} WHERE {where}", (*key, *params))

        await _retry_locked(rows_hashed)
        position = (await primary.exec_driver_sql("SELECT @@gtid_binlog_pos")).scalar_one()
        read = f"SELECT row_key, row_crc FROM {cdb}.row_checksums WHERE db = %s AND tbl = %s AND chunk = %s"
        mine = dict((await primary.exec_driver_sql(read, key)).all())
        await self._wait_for(replica, position)
        theirs = dict((await replica.exec_driver_sql(read, key)).all())
        await primary.exec_driver_sql(f"DELETE FROM {cdb}.row_checksums WHERE db = %s AND tbl = %s AND chunk = %s",
                                      key)
        return _row_differences(shape, mine, theirs, self.options.max_rows_reported)


def _row_differences(shape: TableShape, source: dict[str, str], target: dict[str, str],
                     limit: int) -> list[RowDifference]:
    out = []
    for row_key in sorted(set(source) | set(target)):
        a, b = source.get(row_key), target.get(row_key)
        if a == b:
            continue
        problem = "missing" if b is None else "extra" if a is None else "differs"
        out.append(RowDifference(_key_dict(shape, json.loads(row_key)), problem))
        if len(out) >= limit:
            break
    return out


# ---- bucket moves -------------------------------------------------------------------------------


class MoveVerifier:
    """Compares the rows of a bucket range on `source` (a shard spec or DSN template) with `target`.

    Rows are those of the tenants whose bucket is in the range; tables without a tenant_id are
    compared through their owner as the move copies them (bucket_move.OWNED_VIA); shard-wide
    ledgers are not compared (a move copies them as a superset)."""

    def __init__(self, config: DatabaseConfig, buckets: str, source_dsn: str, target_dsn: str, *,
                 source_name: str = "source", target_name: str = "target", options: VerifyOptions | None = None,
                 progress: Progress | None = None) -> None:
        self.config = config
        self.buckets = bucket_set(buckets)
        self.source_dsn, self.target_dsn = source_dsn, target_dsn
        self.source_name, self.target_name = source_name, target_name
        self.options = options or VerifyOptions()
        self._say = progress or (lambda _line: None)
        self._engines = _Engines(config)

    async def run(self) -> VerifyReport:
        from .bucket_move import OWNED_VIA, SHARED, TENANT_ROW

        report, started = VerifyReport(), time.monotonic()
        try:
            for db in SERVICE_DATABASES:
                src = await self._engines.get(self.source_dsn.replace("{db}", db)).connect()
                dst = await self._engines.get(self.target_dsn.replace("{db}", db)).connect()
                try:
                    src = await src.execution_options(isolation_level="AUTOCOMMIT")
                    dst = await dst.execution_options(isolation_level="AUTOCOMMIT")
                    shapes = {s.name: s for s in await table_shapes(src, _schema_of(self.source_dsn.replace("{db}", db)))}
                    tenants = await self._tenants(src, shapes, db, TENANT_ROW)
                    for shape in shapes.values():
                        if (db, shape.name) in SHARED or not _wanted(self.options, db, shape.name):
                            continue
                        owner = self._owner_sql(db, shape, shapes, TENANT_ROW, OWNED_VIA)
                        if owner is None:
                            report.errors.append(f"{db}.{shape.name}: no tenant column and no owner rule")
                            continue
                        result = TableResult("move", self.source_name, self.target_name, db, shape.name)
                        for start in range(0, len(tenants), 500):
                            group = tenants[start:start + 500]
                            await self._compare(src, dst, db, shape, owner, group, result, report)
                        report.tables.append(result)
                finally:
                    await src.close()
                    await dst.close()
        finally:
            await self._engines.dispose()
        report.seconds = time.monotonic() - started
        return report

    async def _tenants(self, conn: AsyncConnection, shapes: dict[str, TableShape], db: str,
                       tenant_row: dict) -> list[str]:
        found: set[str] = set()
        for shape in shapes.values():
            col = tenant_row.get((db, shape.name), "tenant_id" if "tenant_id" in shape.columns else None)
            if col is None:
                continue
            found |= {t for (t,) in await conn.exec_driver_sql(
                f"SELECT DISTINCT {_q(col)} FROM {shape.ref} WHERE {_q(col)} IS NOT NULL")}
        count = self.config.bucket_count
        return sorted(t for t in found if bucket_of(t, count) in self.buckets)

    @staticmethod
    def _owner_sql(db: str, shape: TableShape, shapes: dict[str, TableShape], tenant_row: dict,
                   owned_via: dict) -> str | None:
        """A WHERE fragment with one `{tenants}` placeholder selecting the rows of a tenant list."""
        if (db, shape.name) in tenant_row:
            return f"{_q(tenant_row[(db, shape.name)])} IN ({{tenants}})"
        if "tenant_id" in shape.columns:
            return "`tenant_id` IN ({tenants})"
        if (db, shape.name) in owned_via:
            parent, column = owned_via[(db, shape.name)]
            return (f"{_q(column)} IN (SELECT `id` FROM {_q(shape.schema)}.{_q(parent)} "
                    "WHERE `tenant_id` IN ({tenants}))")
        return None

    async def _compare(self, src: AsyncConnection, dst: AsyncConnection, db: str, shape: TableShape, owner: str,
                       tenants: list[str], result: TableResult, report: VerifyReport) -> None:
        if not tenants:
            return
        o = self.options
        marks = ", ".join(["%s"] * len(tenants))
        owned = owner.format(tenants=marks)
        dst_shape = TableShape(_schema_of(self.target_dsn.replace("{db}", db)), shape.name, shape.columns, shape.pk)
        dst_owned = owned.replace(f"{_q(shape.schema)}.", f"{_q(dst_shape.schema)}.")
        chunk, lower = 0, None
        while True:
            upper = await self._upper(src, dst, shape, dst_shape, owned, dst_owned, tenants, lower)
            where, params = shape.range_where(lower, upper)
            a = (await src.exec_driver_sql(_chunk_checksum_sql(shape, f"{where} AND {owned}"),
                                           (*params, *tenants))).one()
            b = (await dst.exec_driver_sql(_chunk_checksum_sql(dst_shape, f"{where} AND {dst_owned}"),
                                           (*params, *tenants))).one()
            result.chunks += 1
            result.rows += a[0]
            if tuple(a) != tuple(b):
                rows = await self._narrow(src, dst, shape, dst_shape, f"{where} AND {owned}",
                                          f"{where} AND {dst_owned}", (*params, *tenants))
                if rows:
                    diff = ChunkDifference("move", self.source_name, self.target_name, db, shape.name, chunk,
                                           _jsonable(lower), _jsonable(upper), a[0], b[0], rows)
                    result.differing_chunks += 1
                    result.differing_rows += len(rows)
                    report.differences.append(diff)
                    self._say(f"[red]{self.source_name} -> {self.target_name} {db}.{shape.name} chunk {chunk}: "
                              f"{len(rows)} row(s) differ[/red]")
            chunk += 1
            if upper is None:
                return
            lower = upper
            if o.sleep_seconds:
                await asyncio.sleep(o.sleep_seconds)

    async def _upper(self, src: AsyncConnection, dst: AsyncConnection, shape: TableShape, dst_shape: TableShape,
                     owned: str, dst_owned: str, tenants: list[str], lower: Sequence | None) -> list | None:
        """Chunk end: the chunk_size-th key after `lower` on the source (or the target, if it has more)."""
        ends = []
        for conn, s, own in ((src, shape, owned), (dst, dst_shape, dst_owned)):
            where, params = s.range_where(lower, None)
            cols = ", ".join(_q(c) for c in s.pk)
            row = (await conn.exec_driver_sql(
                f"SELECT {cols} FROM {s.ref} WHERE {where} AND {own} ORDER BY {cols} "
                f"LIMIT 1 OFFSET {self.options.chunk_size - 1}", (*params, *tenants))).first()
            if row is not None:
                ends.append(list(row))
        return min(ends) if ends else None

    async def _narrow(self, src: AsyncConnection, dst: AsyncConnection, shape: TableShape, dst_shape: TableShape,
                      where: str, dst_where: str, params: tuple) -> list[RowDifference]:
        async def hashes(conn: AsyncConnection, s: TableShape, w: str) -> dict[str, str]:
            rows = await conn.exec_driver_sql(
                f"SELECT {s.key_json()}, {s.row_hash()} FROM {s.ref} WHERE {w}", params)
            return dict(rows.all())

        first = _row_differences(shape, await hashes(src, shape, where), await hashes(dst, dst_shape, dst_where),
                                 1 << 30)
        if not first:
            return []
        # A live write between the two reads differs once; a real difference stays.
        await asyncio.sleep(self.options.settle_seconds)
        again = _row_differences(shape, await hashes(src, shape, where), await hashes(dst, dst_shape, dst_where),
                                 1 << 30)
        seen = {json.dumps(d.key, sort_keys=True) for d in first}
        return [d for d in again if json.dumps(d.key, sort_keys=True) in seen][:self.options.max_rows_reported]
