"""Backup and restore of every physical database: `wework-admin backup` / `restore`.

A backup is a directory with one gzipped file per physical database (the directory and every
(service db, shard)) and a `manifest.json` written last: a directory without a manifest is an
unfinished backup. See docs/backup-restore.md for the runbook.

MySQL/MariaDB databases are dumped by this module over PyMySQL (no client binaries needed): one
connection per database runs `START TRANSACTION WITH CONSISTENT SNAPSHOT` at REPEATABLE READ and
writes `CREATE TABLE` (as SHOW CREATE TABLE gives it, partitions included) and multi-row
`INSERT`s. The same pass counts the rows and checksums them, so the manifest describes exactly
the rows in the file, and a restore is verified against it. The binlog position of the snapshot
(MariaDB's Binlog_snapshot_file/position, and its GTID) is recorded for point-in-time recovery.
SQLite files (the embedded mode) are copied with SQLite's online backup API.

Consistency across databases: each database is consistent in itself; a transaction never spans
databases (ARCHITECTURE.md). The shards' snapshots are all taken before the directory's, so every
tenant or account found on a shard has its directory row in the backup (the directory is written
first by the application); the reverse leftover, a directory reservation without its shard row,
is the same state a crash between the two writes leaves, which the application already handles.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

import pymysql
import pymysql.cursors
from pydantic import BaseModel, Field
from pymysql import converters
from sqlalchemy.engine import make_url

from .config import SERVICE_DATABASES, DatabaseConfig
from .maintenance import lock_name as maintenance_lock_name
from .migrate import _lock_name as migrate_lock_name
from .sharding import DIRECTORY, PhysicalDatabase, physical_databases

log = logging.getLogger(__name__)

FORMAT = "wework-backup/1"
MANIFEST = "manifest.json"
# Row checksum: SHA-256 of each row's canonical encoding (typed, length-prefixed values), summed
# modulo 2**256. Independent of row order, so no ORDER BY (sort) is needed on either side.
CHECKSUM_ALGORITHM = "sha256-rowsum/1"
Engine = Literal["mysql", "sqlite"]

# Session settings of a dump and a restore. Without NO_BACKSLASH_ESCAPES, so that the
# backslash escapes written by the dumper mean the same when read back.
_SQL_MODE = "NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"
_HEADER = (
    "SET NAMES utf8mb4;\n"
    "SET time_zone = '+00:00';\n"
    f"SET sql_mode = '{_SQL_MODE}';\n"
    "SET foreign_key_checks = 0;\n"
    "SET unique_checks = 0;\n"
)
_FOOTER = "-- end of dump\n"
_INSERT_BYTES = 1 << 20  # one INSERT carries about this much (well under max_allowed_packet)
_FETCH_ROWS = 1000


class BackupError(RuntimeError):
    """A backup cannot be taken or read; nothing was restored."""


class RestoreError(RuntimeError):
    """A restore was refused or failed."""


class VerificationError(RestoreError):
    """The restored databases differ from the manifest (row counts or checksums)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("restored data does not match the backup:\n  " + "\n  ".join(problems))
        self.problems = problems


class Progress(Protocol):
    """What the CLI's progress bars need; every method is called from worker threads."""

    def start(self, label: str, total: int | None, unit: str) -> None: ...
    def advance(self, label: str, amount: int) -> None: ...
    def done(self, label: str, summary: str) -> None: ...


class _NoProgress:
    def start(self, label: str, total: int | None, unit: str) -> None:
        pass

    def advance(self, label: str, amount: int) -> None:
        pass

    def done(self, label: str, summary: str) -> None:
        pass


# ---- manifest -------------------------------------------------------------------------------


class BinlogPosition(BaseModel):
    enabled: bool = False  # false: binary logging was off, no point-in-time recovery
    file: str | None = None
    position: int | None = None
    gtid: str | None = None  # MariaDB GTID of the same position (BINLOG_GTID_POS)
    # True when the position is the snapshot's own (MariaDB); false when read beside it.
    exact: bool = False


class TableEntry(BaseModel):
    rows: int
    checksum: str
    partitioned: bool = False
    partitions: list[str] = Field(default_factory=list)


class DatabaseEntry(BaseModel):
    db: str  # "directory" or a service database
    shard: str | None  # None for the directory
    database: str  # MySQL database name or SQLite file name
    engine: Engine
    server: str  # host:port (MySQL) or the file path (SQLite); never credentials
    server_version: str = ""
    server_id: int | None = None
    charset: str | None = None
    collation: str | None = None
    snapshot_at: datetime  # the server's UTC clock when the snapshot was taken
    binlog: BinlogPosition = Field(default_factory=BinlogPosition)
    file: str
    bytes: int
    sha256: str
    tables: dict[str, TableEntry]

    @property
    def label(self) -> str:
        return self.db if self.shard is None else f"{self.db}@{self.shard}"

    @property
    def key(self) -> tuple[str, str | None]:
        return self.db, self.shard


class ShardEntry(BaseModel):
    name: str
    buckets: str
    dsn: str  # redacted
    replicas: int = 0


class ShardMapEntry(BaseModel):
    bucket_count: int
    directory_dsn: str  # redacted
    shards: list[ShardEntry]


class Manifest(BaseModel):
    format: str = FORMAT
    checksum_algorithm: str = CHECKSUM_ALGORITHM
    started_at: datetime
    finished_at: datetime
    shard_map: ShardMapEntry
    databases: list[DatabaseEntry]

    def entry(self, db: str, shard: str | None) -> DatabaseEntry | None:
        return next((e for e in self.databases if e.key == (db, shard)), None)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for e in self.databases for t in e.tables.values())


def redact_dsn(dsn: str) -> str:
    """A DSN without its password (kept for operators: host, port, database)."""
    try:
        return make_url(dsn.replace("{db}", "__db__")).render_as_string(hide_password=True).replace(
            "__db__", "{db}")
    except Exception:  # noqa: BLE001 - a malformed DSN is shown without its secret part
        return dsn.split("@")[-1]


def _shard_map(config: DatabaseConfig) -> ShardMapEntry:
    return ShardMapEntry(
        bucket_count=config.bucket_count, directory_dsn=redact_dsn(config.directory_dsn),
        shards=[ShardEntry(name=s.name, buckets=s.buckets, dsn=redact_dsn(s.dsn), replicas=len(s.replicas))
                for s in config.shards])


def load_manifest(path: Path) -> Manifest:
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise BackupError(f"{path} holds no {MANIFEST}: not a backup, or an unfinished one")
    try:
        manifest = Manifest.model_validate_json(file.read_text())
    except ValueError as exc:
        raise BackupError(f"{file} is not a valid manifest: {exc}") from None
    if manifest.format != FORMAT or manifest.checksum_algorithm != CHECKSUM_ALGORITHM:
        raise BackupError(f"{file}: unsupported format {manifest.format} / {manifest.checksum_algorithm}")
    return manifest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_files(path: Path, manifest: Manifest) -> None:
    """Checks every file of the backup against the manifest's size and SHA-256."""
    problems = []
    for entry in manifest.databases:
        file = Path(path) / entry.file
        if not file.is_file():
            problems.append(f"{entry.label}: {entry.file} is missing")
        elif file.stat().st_size != entry.bytes or sha256_file(file) != entry.sha256:
            problems.append(f"{entry.label}: {entry.file} is damaged (size or SHA-256 differs)")
    if problems:
        raise BackupError("backup files do not match the manifest:\n  " + "\n  ".join(problems))


# ---- row checksums --------------------------------------------------------------------------


def _canonical(value: Any) -> bytes:
    """A typed, unambiguous encoding of one column value as the driver returns it."""
    if value is None:
        return b"N"
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return b"i" + str(value).encode()
    if isinstance(value, float):
        return b"f" + repr(value).encode()
    if isinstance(value, Decimal):
        return b"d" + str(value).encode()
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b"b" + bytes(value)
    if isinstance(value, datetime):
        return b"t" + value.isoformat().encode()
    if isinstance(value, date):
        return b"D" + value.isoformat().encode()
    if isinstance(value, timedelta):
        return b"T" + str(value // timedelta(microseconds=1)).encode()
    return b"?" + repr(value).encode()


class RowDigest:
    """Row count and order-independent checksum of a table (see CHECKSUM_ALGORITHM)."""

    def __init__(self) -> None:
        self.rows = 0
        self._sum = 0

    def add(self, row: tuple[Any, ...]) -> None:
        h = hashlib.sha256()
        for value in row:
            enc = _canonical(value)
            h.update(len(enc).to_bytes(8, "big"))
            h.update(enc)
        self._sum = (self._sum + int.from_bytes(h.digest(), "big")) % (1 << 256)
        self.rows += 1

    @property
    def checksum(self) -> str:
        return f"{self._sum:064x}"


# ---- MySQL / MariaDB ------------------------------------------------------------------------


def engine_of(dsn: str) -> Engine:
    backend = make_url(dsn).get_backend_name()
    if backend == "sqlite":
        return "sqlite"
    if backend in ("mysql", "mariadb"):
        return "mysql"
    raise BackupError(f"unsupported database backend {backend!r}")


_KEEP = object()


def _mysql_connect(dsn: str, database: Any = _KEEP, **extra: Any) -> pymysql.Connection:
    """A PyMySQL connection from one of our (async-driver) DSNs, with the URL's options."""
    url = make_url(dsn).set(drivername="mysql+pymysql")
    _, kwargs = url.get_dialect()().create_connect_args(url)
    if database is not _KEEP:
        kwargs["database"] = database  # None: the server only (to create the database)
    kwargs.update(charset="utf8mb4", autocommit=True, connect_timeout=10,
                  init_command=f"SET time_zone = '+00:00', sql_mode = '{_SQL_MODE}'")
    kwargs.update(extra)
    return pymysql.connect(**kwargs)


def _server_label(dsn: str) -> str:
    url = make_url(dsn)
    if url.get_backend_name() == "sqlite":
        return url.database or ""
    return f"{url.host or 'localhost'}:{url.port or 3306}"


def sql_literal(value: Any) -> str:
    """A MySQL literal for a value as PyMySQL returns it (backslash escapes; binary as hex)."""
    if isinstance(value, str):
        return "'" + converters.escape_string(value) + "'"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "X'" + bytes(value).hex() + "'"
    return converters.escape_item(value, "utf8mb4")


@dataclass
class _Table:
    name: str
    columns: list[str]
    create_sql: str = ""
    partitions: list[str] = field(default_factory=list)
    rows_estimate: int = 0


def _mysql_tables(cur: pymysql.cursors.Cursor, *, with_create: bool) -> list[_Table]:
    """Base tables of the connection's database with their insertable columns."""
    cur.execute("SELECT TABLE_NAME, TABLE_TYPE, TABLE_ROWS FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME")
    rows = cur.fetchall()
    others = [f"{name} ({kind})" for name, kind, _ in rows if kind != "BASE TABLE"]
    cur.execute("SELECT (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()),"
                " (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()),"
                " (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE())")
    triggers, routines, events = cur.fetchone()
    if others or triggers or routines or events:
        # The schema has none of these; a dump that silently left them out would restore less.
        raise BackupError(f"database holds objects this backup does not handle: views/sequences {others}, "
                          f"{triggers} trigger(s), {routines} routine(s), {events} event(s)")
    tables = {name: _Table(name, [], rows_estimate=int(n or 0)) for name, _, n in rows}
    cur.execute("SELECT TABLE_NAME, COLUMN_NAME, EXTRA FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION")
    for table, column, extra in cur.fetchall():
        # Generated columns are computed again on insert; they cannot be given values.
        if table in tables and "GENERATED" not in (extra or "").upper():
            tables[table].columns.append(column)
    cur.execute("SELECT TABLE_NAME, PARTITION_NAME FROM information_schema.PARTITIONS "
                "WHERE TABLE_SCHEMA = DATABASE() AND PARTITION_NAME IS NOT NULL "
                "ORDER BY TABLE_NAME, PARTITION_ORDINAL_POSITION")
    for table, partition in cur.fetchall():
        if table in tables:
            tables[table].partitions.append(partition)
    if with_create:
        for t in tables.values():
            cur.execute(f"SHOW CREATE TABLE `{t.name}`")
            t.create_sql = cur.fetchone()[1]
            # The restore splits statements at lines ending in ';' (INSERT values never hold a
            # raw newline); refuse a CREATE TABLE that would be split in the middle.
            if any(line.rstrip().endswith(";") for line in t.create_sql.splitlines()):
                raise BackupError(f"table {t.name}: its CREATE TABLE has a line ending in ';'")
    return list(tables.values())


def _binlog_position(cur: pymysql.cursors.Cursor) -> BinlogPosition:
    """The binlog position of the open snapshot (MariaDB), or beside it (MySQL)."""
    cur.execute("SELECT @@log_bin")
    if not int(cur.fetchone()[0] or 0):
        return BinlogPosition(enabled=False)
    cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
    status = {k.lower(): v for k, v in cur.fetchall()}
    file = status.get("binlog_snapshot_file")
    if file:
        pos = int(status["binlog_snapshot_position"])
        cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        gtid = cur.fetchone()[0]
        return BinlogPosition(enabled=True, file=file, position=pos, gtid=gtid or None, exact=True)
    # MySQL has no snapshot position; the current one is an upper bound taken right after.
    for statement in ("SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"):
        try:
            cur.execute(statement)
        except pymysql.MySQLError:
            continue
        row = cur.fetchone()
        if row:
            return BinlogPosition(enabled=True, file=row[0], position=int(row[1]),
                                  gtid=(row[4] if len(row) > 4 else None) or None, exact=False)
    return BinlogPosition(enabled=True)


@dataclass
class _Snapshot:
    """An open consistent-snapshot transaction on one database, ready to be dumped."""

    target: PhysicalDatabase
    conn: pymysql.Connection
    tables: list[_Table]
    entry: dict[str, Any]


def _open_mysql_snapshot(target: PhysicalDatabase, lock_timeout: float) -> _Snapshot:
    name = make_url(target.dsn).database or ""
    conn = _mysql_connect(target.dsn)
    try:
        with conn.cursor() as cur:
            # No migration and no maintenance DDL may change a table under the snapshot (it
            # would fail with "table definition has changed"): hold both of their locks.
            for lock in (migrate_lock_name(name), maintenance_lock_name(name)):
                cur.execute("SELECT GET_LOCK(%s, %s)", (lock, lock_timeout))
                if cur.fetchone()[0] != 1:
                    raise BackupError(f"{target.label}: lock {lock!r} is held by a migration or maintenance "
                                      f"run for more than {lock_timeout:.0f} s")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            binlog = _binlog_position(cur)
            cur.execute("SELECT UTC_TIMESTAMP(6), VERSION(), @@server_id")
            snapshot_at, version, server_id = cur.fetchone()
            cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                        "WHERE SCHEMA_NAME = DATABASE()")
            charset, collation = cur.fetchone()
            tables = _mysql_tables(cur, with_create=True)
    except BaseException:
        conn.close()
        raise
    entry = {"db": target.db, "shard": target.shard, "database": name, "engine": "mysql",
             "server": _server_label(target.dsn), "server_version": version, "server_id": server_id,
             "charset": charset, "collation": collation, "snapshot_at": snapshot_at.replace(tzinfo=UTC),
             "binlog": binlog}
    return _Snapshot(target, conn, tables, entry)


def _file_name(target: PhysicalDatabase, engine: Engine) -> str:
    base = target.db if target.shard is None else f"{target.db}.{target.shard}"
    return f"{base}.{'sql' if engine == 'mysql' else 'sqlite'}.gz"


def _dump_mysql(snap: _Snapshot, out_dir: Path, progress: Progress) -> DatabaseEntry:
    label = snap.target.label
    file = out_dir / _file_name(snap.target, "mysql")
    total = sum(t.rows_estimate for t in snap.tables)
    progress.start(label, total or None, "rows")
    table_entries: dict[str, TableEntry] = {}
    conn = snap.conn
    try:
        with gzip.open(file, "wt", encoding="utf-8", newline="\n", compresslevel=6) as out:
            out.write(f"-- {FORMAT}: {label} ({snap.entry['database']}), snapshot at "
                      f"{snap.entry['snapshot_at'].isoformat()}\n")
            out.write(_HEADER)
            for table in snap.tables:
                out.write(f"\n-- table {table.name}\n{table.create_sql};\n")
                digest = RowDigest()
                cols = ", ".join(f"`{c}`" for c in table.columns)
                prefix = f"INSERT INTO `{table.name}` ({cols}) VALUES "
                with conn.cursor(pymysql.cursors.SSCursor) as cur:
                    cur.execute(f"SELECT {cols} FROM `{table.name}`")
                    values: list[str] = []
                    size = 0
                    while rows := cur.fetchmany(_FETCH_ROWS):
                        for row in rows:
                            digest.add(row)
                            literal = "(" + ",".join(sql_literal(v) for v in row) + ")"
                            values.append(literal)
                            size += len(literal) + 1
                            if size >= _INSERT_BYTES:
                                out.write(prefix + ",".join(values) + ";\n")
                                values, size = [], 0
                        progress.advance(label, len(rows))
                    if values:
                        out.write(prefix + ",".join(values) + ";\n")
                table_entries[table.name] = TableEntry(rows=digest.rows, checksum=digest.checksum,
                                                       partitioned=bool(table.partitions),
                                                       partitions=table.partitions)
            out.write(_FOOTER)
        conn.rollback()  # ends the read-only snapshot
    finally:
        conn.close()  # also releases the named locks
    rows = sum(t.rows for t in table_entries.values())
    entry = DatabaseEntry(**snap.entry, file=file.name, bytes=file.stat().st_size, sha256=sha256_file(file),
                          tables=table_entries)
    progress.done(label, f"{rows} rows, {len(table_entries)} tables, {entry.bytes} bytes")
    return entry


def mysql_table_digests(dsn: str, tables: list[str] | None = None) -> dict[str, RowDigest]:
    """Row count and checksum of every table (or of `tables`) of a MySQL database, as of now."""
    conn = _mysql_connect(dsn)
    try:
        with conn.cursor() as cur:
            found = {t.name: t for t in _mysql_tables(cur, with_create=False)}
        out: dict[str, RowDigest] = {}
        for name in tables if tables is not None else sorted(found):
            if name not in found:
                continue
            digest = RowDigest()
            cols = ", ".join(f"`{c}`" for c in found[name].columns)
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(f"SELECT {cols} FROM `{name}`")
                while rows := cur.fetchmany(_FETCH_ROWS):
                    for row in rows:
                        digest.add(row)
            out[name] = digest
        return out
    finally:
        conn.close()


# ---- SQLite ---------------------------------------------------------------------------------


def _sqlite_path(dsn: str) -> Path:
    database = make_url(dsn).database
    if not database or database == ":memory:":
        raise BackupError(f"SQLite DSN {redact_dsn(dsn)} names no file")
    return Path(database).expanduser()


def _sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def sqlite_table_digests(path: Path) -> dict[str, RowDigest]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out: dict[str, RowDigest] = {}
        for table in _sqlite_tables(conn):
            digest = RowDigest()
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                digest.add(row)
            out[table] = digest
        return out
    finally:
        conn.close()


def _dump_sqlite(target: PhysicalDatabase, out_dir: Path, progress: Progress) -> DatabaseEntry:
    label = target.label
    progress.start(label, None, "rows")
    src_path = _sqlite_path(target.dsn)
    if not src_path.is_file():
        raise BackupError(f"{label}: {src_path} does not exist")
    file = out_dir / _file_name(target, "sqlite")
    tmp = out_dir / (file.name + ".tmp")
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(tmp)
        try:
            snapshot_at = datetime.now(UTC)
            src.backup(dst)  # a consistent copy, even while the server writes (WAL)
            # One self-contained file: no -wal/-shm beside the copy (the server turns WAL on again).
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()
    digests = sqlite_table_digests(tmp)
    with open(tmp, "rb") as fin, gzip.open(file, "wb", compresslevel=6) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    tmp.unlink()
    tables = {name: TableEntry(rows=d.rows, checksum=d.checksum) for name, d in digests.items()}
    entry = DatabaseEntry(db=target.db, shard=target.shard, database=src_path.name, engine="sqlite",
                          server=str(src_path), server_version=sqlite3.sqlite_version, snapshot_at=snapshot_at,
                          file=file.name, bytes=file.stat().st_size, sha256=sha256_file(file), tables=tables)
    rows = sum(d.rows for d in digests.values())
    progress.advance(label, rows)
    progress.done(label, f"{rows} rows, {len(tables)} tables, {entry.bytes} bytes")
    return entry


# ---- backup ---------------------------------------------------------------------------------


@dataclass
class BackupResult:
    path: Path
    manifest: Manifest
    seconds: float


def _output_dir(output: Path, started: datetime) -> tuple[Path, bool]:
    """`output` itself when it is new or empty, else a new timestamped directory inside it.

    So a CronJob can pass the same volume every night and keep every backup. Also returns
    whether the directory was created here (removed again if the backup fails).
    """
    output = Path(output)
    if (output / MANIFEST).exists():
        raise BackupError(f"{output} already holds a backup; choose another --output")
    if output.exists() and not output.is_dir():
        raise BackupError(f"{output} is not a directory")
    if output.exists() and any(output.iterdir()):
        output = output / f"wework-backup-{started:%Y%m%dT%H%M%SZ}"
        if output.exists():
            raise BackupError(f"{output} already exists")
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    return output, created


def backup_all(config: DatabaseConfig, output: Path, *, parallel: int = 4, lock_timeout: float = 600,
               progress: Progress | None = None,
               databases: tuple[str, ...] = SERVICE_DATABASES) -> BackupResult:
    """Dumps the directory and every (service db, shard) into `output`; writes the manifest last."""
    progress = progress or _NoProgress()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    targets = physical_databases(config, databases)
    out_dir, created = _output_dir(output, started)
    written_before = set(out_dir.iterdir())
    snapshots: list[_Snapshot] = []
    try:
        # Shards before the directory (see the module docstring).
        ordered = [t for t in targets if t.db != DIRECTORY] + [t for t in targets if t.db == DIRECTORY]
        # A MySQL snapshot stays open until its dump is written; SQLite copies are their own
        # snapshot, taken one after the other in the same order.
        for target in ordered:
            if engine_of(target.dsn) == "mysql":
                snapshots.append(_open_mysql_snapshot(target, lock_timeout))
        errors: list[Exception] = []
        entries: list[DatabaseEntry] = []
        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="backup") as pool:
            futures = [pool.submit(_dump_mysql, s, out_dir, progress) for s in snapshots]
            for target in ordered:
                if engine_of(target.dsn) == "sqlite":
                    entries.append(_dump_sqlite(target, out_dir, progress))
            for f in futures:
                try:
                    entries.append(f.result())
                except Exception as exc:  # noqa: BLE001 - collect all: the operator sees every failure
                    errors.append(exc)
        if errors:
            raise BackupError("backup failed: " + "; ".join(f"{type(e).__name__}: {e}" for e in errors)) \
                from errors[0]
        order = {(t.db, t.shard): i for i, t in enumerate(targets)}
        entries.sort(key=lambda e: order[e.key])
        manifest = Manifest(started_at=started, finished_at=datetime.now(UTC), shard_map=_shard_map(config),
                            databases=entries)
        tmp = out_dir / (MANIFEST + ".tmp")
        tmp.write_text(manifest.model_dump_json(indent=2))
        os.replace(tmp, out_dir / MANIFEST)  # its presence marks a complete backup
    except BaseException:
        for s in snapshots:
            with contextlib.suppress(Exception):
                s.conn.close()
        for path in set(out_dir.iterdir()) - written_before:
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    return BackupResult(out_dir, manifest, time.monotonic() - t0)


# ---- restore --------------------------------------------------------------------------------


@dataclass
class RestoredDatabase:
    label: str
    database: str
    rows: int
    seconds: float
    replayed_bytes: int | None = None  # binlog SQL applied after the dump (point-in-time recovery)


@dataclass
class RestoreResult:
    manifest: Manifest
    databases: list[RestoredDatabase]
    seconds: float
    dry_run: bool = False
    until: datetime | None = None


@dataclass
class _Plan:
    entry: DatabaseEntry
    target: PhysicalDatabase


def _plan(config: DatabaseConfig, manifest: Manifest, databases: tuple[str, ...]) -> list[_Plan]:
    problems = []
    if manifest.shard_map.bucket_count != config.bucket_count:
        problems.append(f"bucket_count is {config.bucket_count}, the backup has {manifest.shard_map.bucket_count}")
    backed = {s.name: s.buckets for s in manifest.shard_map.shards}
    current = {s.name: s.buckets for s in config.shards}
    if backed != current:
        # Restoring into another layout would put tenants on shards the router does not pick.
        problems.append(f"the shard map differs from the backup's (backup {backed}, settings {current}); "
                        "restore with the backup's shard map, then move buckets")
    plans = []
    for target in physical_databases(config, databases):
        entry = manifest.entry(target.db, target.shard)
        if entry is None:
            problems.append(f"{target.label}: not in the backup")
            continue
        if engine_of(target.dsn) != entry.engine:
            problems.append(f"{target.label}: the backup is {entry.engine}, the target is {engine_of(target.dsn)}")
            continue
        plans.append(_Plan(entry, target))
    if problems:
        raise RestoreError("cannot restore into the current settings:\n  " + "\n  ".join(problems))
    return plans


def _existing_tables(plan: _Plan) -> list[str]:
    """Tables already in the target database ([] when it is missing or empty)."""
    if plan.entry.engine == "sqlite":
        path = _sqlite_path(plan.target.dsn)
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return _sqlite_tables(conn)
        finally:
            conn.close()
    name = make_url(plan.target.dsn).database
    conn = _mysql_connect(plan.target.dsn, database=None)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                        "ORDER BY TABLE_NAME", (name,))
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def _statements(text: io.TextIOBase) -> Iterator[str]:
    """The statements of a dump: comment lines skipped, a statement ends at a line ending in ';'."""
    buf: list[str] = []
    saw_footer = False
    for line in text:
        if not buf:
            if line == _FOOTER:
                saw_footer = True
                continue
            if line.startswith("--") or not line.strip():
                continue
        buf.append(line)
        if line.rstrip("\r\n").endswith(";"):
            yield "".join(buf).rstrip("\r\n")
            buf = []
    if buf or not saw_footer:
        raise RestoreError("the dump file ends in the middle (truncated)")


def _restore_mysql(plan: _Plan, in_dir: Path, force: bool, progress: Progress) -> int:
    entry, label = plan.entry, plan.target.label
    name = make_url(plan.target.dsn).database
    server = _mysql_connect(plan.target.dsn, database=None)
    try:
        with server.cursor() as cur:
            charset = entry.charset or "utf8mb4"
            collation = entry.collation or "utf8mb4_unicode_ci"
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET {charset} COLLATE {collation}")
    finally:
        server.close()
    file = in_dir / entry.file
    progress.start(label, file.stat().st_size, "bytes")
    conn = _mysql_connect(plan.target.dsn, autocommit=False)
    try:
        with conn.cursor() as cur:
            if force:
                cur.execute("SET foreign_key_checks = 0")
                cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")
                for (table,) in cur.fetchall():
                    cur.execute(f"DROP TABLE `{table}`")
            with open(file, "rb") as raw:
                text = io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", newline="\n")
                done = 0
                pending = 0
                for statement in _statements(text):
                    cur.execute(statement)
                    pending += len(statement)
                    if pending >= 16 * _INSERT_BYTES:  # commit every ~16 MB of INSERTs
                        conn.commit()
                        pending = 0
                    pos = raw.tell()
                    if pos > done:
                        progress.advance(label, pos - done)
                        done = pos
        conn.commit()
    finally:
        conn.close()
    rows = sum(t.rows for t in entry.tables.values())
    progress.done(label, f"{rows} rows into {name}")
    return rows


def _restore_sqlite(plan: _Plan, in_dir: Path, force: bool, progress: Progress) -> int:
    entry, label = plan.entry, plan.target.label
    path = _sqlite_path(plan.target.dsn)
    file = in_dir / entry.file
    progress.start(label, file.stat().st_size, "bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".restore")
    with gzip.open(file, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    if force:
        for suffix in ("-wal", "-shm", "-journal"):  # they belong to the replaced file
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    os.replace(tmp, path)
    progress.advance(label, file.stat().st_size)
    rows = sum(t.rows for t in entry.tables.values())
    progress.done(label, f"{rows} rows into {path}")
    return rows


def verify_restored(plan: _Plan) -> list[str]:
    """Differences between a restored database and its manifest entry ([] when identical)."""
    entry, label = plan.entry, plan.target.label
    problems = []
    if entry.engine == "sqlite":
        digests = sqlite_table_digests(_sqlite_path(plan.target.dsn))
        partitions: dict[str, list[str]] = {}
    else:
        digests = mysql_table_digests(plan.target.dsn)
        conn = _mysql_connect(plan.target.dsn)
        try:
            with conn.cursor() as cur:
                partitions = {t.name: t.partitions for t in _mysql_tables(cur, with_create=False)}
        finally:
            conn.close()
    missing = sorted(set(entry.tables) - set(digests))
    extra = sorted(set(digests) - set(entry.tables))
    if missing:
        problems.append(f"{label}: tables missing after restore: {missing}")
    if extra:
        problems.append(f"{label}: tables not in the backup: {extra}")
    for table, expected in entry.tables.items():
        got = digests.get(table)
        if got is None:
            continue
        if got.rows != expected.rows:
            problems.append(f"{label}.{table}: {got.rows} rows, the backup has {expected.rows}")
        elif got.checksum != expected.checksum:
            problems.append(f"{label}.{table}: checksum differs from the backup's")
        if expected.partitioned and partitions.get(table) != expected.partitions:
            problems.append(f"{label}.{table}: partitions {partitions.get(table)}, the backup has "
                            f"{expected.partitions}")
    return problems


def restore_all(config: DatabaseConfig, input_dir: Path, *, force: bool = False, parallel: int = 4,
                progress: Progress | None = None, dry_run: bool = False, until: datetime | None = None,
                binlog_dir: Path | None = None,
                databases: tuple[str, ...] = SERVICE_DATABASES) -> RestoreResult:
    """Restores a backup into the databases the current shard map names, then verifies them.

    Refuses (before writing anything) when a file is damaged, the shard map differs from the
    backup's, or a target database already has tables and `force` is not set. Raises
    VerificationError when a restored table's row count or checksum differs from the manifest.

    With `until` (point-in-time recovery), each verified database then replays its binlog from
    its snapshot's position up to `until`: read from the server itself, or from the archived
    binlog files in `binlog_dir` when the backup's server is gone.
    """
    progress = progress or _NoProgress()
    t0 = time.monotonic()
    in_dir = Path(input_dir)
    manifest = load_manifest(in_dir)
    verify_files(in_dir, manifest)
    plans = _plan(config, manifest, databases)
    if until is not None:
        until = _check_point_in_time(plans, until, binlog_dir)
    if not force:
        busy = [f"{p.target.label} ({len(tables)} tables: {', '.join(tables[:3])}...)"
                for p in plans if (tables := _existing_tables(p))]
        if busy:
            raise RestoreError("refusing to overwrite databases that are not empty (use --force):\n  "
                               + "\n  ".join(busy))
    if dry_run:
        return RestoreResult(manifest, [], time.monotonic() - t0, dry_run=True, until=until)

    def one(plan: _Plan) -> RestoredDatabase:
        started = time.monotonic()
        restore = _restore_mysql if plan.entry.engine == "mysql" else _restore_sqlite
        rows = restore(plan, in_dir, force, progress)
        return RestoredDatabase(plan.target.label, plan.entry.database, rows, time.monotonic() - started)

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="restore") as pool:
        restored = list(pool.map(one, plans))
        problems = [p for found in pool.map(verify_restored, plans) for p in found]
        if problems:
            raise VerificationError(problems)
        if until is not None:
            replayed = list(pool.map(lambda p: _replay_binlog(p, until, binlog_dir, progress), plans))
            for r, n in zip(restored, replayed, strict=True):
                r.replayed_bytes = n
    return RestoreResult(manifest, restored, time.monotonic() - t0, until=until)


# ---- point-in-time recovery -----------------------------------------------------------------

# The session settings mariadb-binlog writes before each transaction to give it its original
# GTID. They are left out: replayed history is new history on the restored server, and the
# old sequence numbers would be logged out of order (an error under gtid_strict_mode).
_GTID_SETTING = re.compile(rb"^/\*M?!\d+ SET @@session\.(gtid_seq_no|gtid_domain_id|server_id)=\d+\*/"
                           rb"(/\*!\*/;)?\s*$")


def _tool(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise RestoreError(f"point-in-time recovery needs the MariaDB client tools ({' or '.join(names)}); "
                       "install mariadb-client")


def _client_args(dsn: str) -> tuple[list[str], dict[str, str]]:
    """Command-line options of the MariaDB client tools for a DSN; the password goes in the env."""
    url = make_url(dsn)
    args = ["--no-defaults", f"--user={url.username or ''}"]
    if socket := url.query.get("unix_socket"):
        args.append(f"--socket={socket}")
    else:
        args += ["--protocol=TCP", f"--host={url.host or 'localhost'}", f"--port={url.port or 3306}"]
    for key in ("ssl_ca", "ssl_cert", "ssl_key"):
        if value := url.query.get(key):
            args.append(f"--{key.replace('_', '-')}={value}")
    # MYSQL_PWD keeps the password off the command line (visible to every user in `ps`).
    return args, ({"MYSQL_PWD": url.password} if url.password else {})


def _binlog_files(binlog_dir: Path, first: str) -> list[Path]:
    """`first` and the files after it in `binlog_dir` (same base name, numbered suffix)."""
    base, _, number = first.rpartition(".")
    files = sorted(f for f in Path(binlog_dir).iterdir()
                   if f.name.startswith(base + ".") and f.name.rpartition(".")[2].isdigit()
                   and f.name.rpartition(".")[2] >= number and len(f.name) == len(first))
    if not files or files[0].name != first:
        raise RestoreError(f"{binlog_dir} does not hold binlog {first}")
    return files


def _check_point_in_time(plans: list[_Plan], until: datetime, binlog_dir: Path | None) -> datetime:
    if until.tzinfo is None:
        raise RestoreError("--until needs a time zone (e.g. 2026-11-28T15:40:00Z)")
    until = until.astimezone(UTC)
    # The restore writes into the binlog too; a replay must stop before those events.
    if until > datetime.now(UTC) - timedelta(seconds=1):
        raise RestoreError(f"--until {until:%Y-%m-%d %H:%M:%S} UTC is not in the past")
    _tool("mariadb-binlog", "mysqlbinlog")
    _tool("mariadb", "mysql")
    problems = []
    for plan in plans:
        entry, b = plan.entry, plan.entry.binlog
        if entry.engine != "mysql":
            problems.append(f"{entry.label}: SQLite has no binlog")
        elif not (b.enabled and b.file and b.position):
            problems.append(f"{entry.label}: binary logging was off on {entry.server} when the backup was "
                            "taken; the backup itself is the newest point")
        elif until < entry.snapshot_at:
            problems.append(f"{entry.label}: --until is before the backup's snapshot "
                            f"({entry.snapshot_at:%Y-%m-%d %H:%M:%S} UTC); restore an older backup")
        elif binlog_dir is not None:
            try:
                _binlog_files(binlog_dir, b.file)
            except (RestoreError, OSError) as exc:
                problems.append(f"{entry.label}: {exc}")
        elif _server_label(plan.target.dsn) != entry.server:
            problems.append(f"{entry.label}: the backup came from {entry.server}, the target is "
                            f"{_server_label(plan.target.dsn)}: pass --binlog-dir with that server's binlogs")
        else:
            conn = _mysql_connect(plan.target.dsn, database=None)
            try:
                with conn.cursor() as cur:
                    cur.execute("SHOW BINARY LOGS")
                    if b.file not in {r[0] for r in cur.fetchall()}:
                        problems.append(f"{entry.label}: binlog {b.file} is no longer on {entry.server} "
                                        "(purged); pass --binlog-dir with the archived files")
            finally:
                conn.close()
    if problems:
        raise RestoreError("point-in-time recovery is not possible:\n  " + "\n  ".join(problems))
    return until


def _replay_binlog(plan: _Plan, until: datetime, binlog_dir: Path | None, progress: Progress) -> int:
    """Applies the binlog events of one database from its snapshot position to `until`."""
    entry, b = plan.entry, plan.entry.binlog
    label = f"{plan.target.label} binlog"
    target_db = make_url(plan.target.dsn).database or ""
    args, env = _client_args(plan.target.dsn)
    reader = [_tool("mariadb-binlog", "mysqlbinlog"), *args[:1], f"--database={entry.database}",
              "--skip-gtid-strict-mode", f"--start-position={b.position}",
              f"--stop-datetime={until:%Y-%m-%d %H:%M:%S}"]
    if entry.database != target_db:
        reader.append(f"--rewrite-db={entry.database}->{target_db}")  # the filter keeps the old name
    if binlog_dir is not None:
        reader += [str(f) for f in _binlog_files(binlog_dir, b.file or "")]
    else:
        reader += ["--read-from-remote-server", *args[1:], "--to-last-log", b.file or ""]
    applier = [_tool("mariadb", "mysql"), *args, "--binary-mode", f"--database={target_db}"]
    # --stop-datetime is read in the tool's local time zone.
    full_env = {**os.environ, **env, "TZ": "UTC"}
    progress.start(label, None, "bytes")
    applied = reported = 0
    with tempfile.TemporaryFile() as reader_err, tempfile.TemporaryFile() as applier_err:
        read = subprocess.Popen(reader, stdout=subprocess.PIPE, stderr=reader_err, env=full_env)
        apply = subprocess.Popen(applier, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=applier_err,
                                 env=full_env)
        assert read.stdout is not None and apply.stdin is not None
        try:
            for line in read.stdout:
                if _GTID_SETTING.match(line):
                    continue
                apply.stdin.write(line)
                applied += len(line)
                if applied - reported >= (1 << 20):
                    progress.advance(label, applied - reported)
                    reported = applied
        except BrokenPipeError:
            pass  # the client died; its error is reported below
        finally:
            with contextlib.suppress(BrokenPipeError):
                apply.stdin.close()
            read.stdout.close()
        read_rc, apply_rc = read.wait(), apply.wait()
        if read_rc or apply_rc:
            reader_err.seek(0)
            applier_err.seek(0)
            raise RestoreError(f"{plan.target.label}: binlog replay failed (mariadb-binlog {read_rc}, mariadb "
                               f"{apply_rc}): {reader_err.read().decode(errors='replace')[-1000:]} "
                               f"{applier_err.read().decode(errors='replace')[-1000:]}")
    progress.done(label, f"replayed {applied} bytes of binlog SQL from {b.file}:{b.position} to "
                         f"{until:%Y-%m-%d %H:%M:%S} UTC")
    return applied


__all__ = [
    "CHECKSUM_ALGORITHM", "FORMAT", "MANIFEST", "BackupError", "BackupResult", "DatabaseEntry", "Manifest",
    "Progress", "RestoreError", "RestoreResult", "RowDigest", "VerificationError", "backup_all", "load_manifest",
    "mysql_table_digests", "redact_dsn", "restore_all", "sqlite_table_digests", "verify_files",
    "verify_restored",
]

