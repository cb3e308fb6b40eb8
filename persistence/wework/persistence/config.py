"""Configuration of the databases and Redis, as plain pydantic models.

The server's settings embed these; persistence code takes them as arguments and
never reads the environment itself.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy.engine import make_url

# The service databases. Each physical shard holds one database of each; each
# service owns its own and never reads another's tables.
SERVICE_DATABASES: tuple[str, ...] = ("user", "account", "message", "callback")


def parse_bucket_ranges(spec: str) -> list[tuple[int, int]]:
    """Parses "0-511,768-1023" (inclusive ranges) into [(0, 511), (768, 1023)]."""
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo_s, sep, hi_s = part.partition("-")
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo
        if lo < 0 or hi < lo:
            raise ValueError(f"bad bucket range {part!r}")
        ranges.append((lo, hi))
    if not ranges:
        raise ValueError("empty bucket range")
    return ranges


class ShardSpec(BaseModel):
    """One physical shard: a DSN template and the virtual buckets it holds.

    `dsn` contains the placeholder `{db}`, replaced by the service database name
    (user, account, message, callback), e.g.
    `mysql+aiomysql://wework:pw@db-0:3306/wework_{db}_0` or
    `sqlite+aiosqlite:///var/data/{db}_s0.db`.
    """

    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")
    buckets: str
    dsn: str
    replicas: list[str] = Field(default_factory=list)

    @field_validator("buckets")
    @classmethod
    def _valid_buckets(cls, value: str) -> str:
        parse_bucket_ranges(value)
        return value

    @field_validator("dsn")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{db}" not in value:
            raise ValueError("the shard DSN must contain the {db} placeholder")
        return value

    def dsn_for(self, db: str) -> str:
        return self.dsn.replace("{db}", db)


class DatabaseConfig(BaseModel):
    """The shard map: crc32(tenant_id) % bucket_count picks a bucket; bucket ranges pick a shard."""

    bucket_count: int = Field(default=1024, ge=1, le=65536)
    directory_dsn: str = "sqlite+aiosqlite:///var/data/directory.db"
    # Replicas of the directory (MariaDB, semi-sync like a shard's, docs/failover.md). With any,
    # each new directory connection goes to whichever of directory_dsn and these is writable
    # (the highest failover epoch wins), so `wework-admin failover --directory` needs no restart.
    # Directory lookups (account guids, tenant codes) read from them within the lag bound, like
    # shard reads (docs/replicas.md).
    directory_replicas: list[str] = Field(default_factory=list)
    shards: list[ShardSpec] = Field(
        default_factory=lambda: [
            ShardSpec(name="s0", buckets="0-1023", dsn="sqlite+aiosqlite:///var/data/{db}_s0.db")
        ]
    )
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int = Field(default=20, ge=0)
    pool_recycle_seconds: int = Field(default=1800, ge=1)
    # How long a caller waits for a pooled connection, and for a new MySQL connection, before
    # the request fails as UNAVAILABLE instead of hanging.
    pool_timeout_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # SQLite (embedded mode): how long a writer waits for another writer's lock.
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)
    echo: bool = False
    # Read replicas (docs/replicas.md). A replica serves reads while its measured lag is at most
    # replica_max_lag_seconds; the lag comes from a heartbeat row written on the primary every
    # replica_heartbeat_interval_seconds (in the schema replica_heartbeat_schema).
    replica_max_lag_seconds: float = Field(default=1.0, gt=0)
    replica_heartbeat_interval_seconds: float = Field(default=0.25, gt=0)
    replica_heartbeat_schema: str = Field(default="wework_meta", pattern=r"^[A-Za-z0-9_]+$")
    # How long a read waits for the replica to apply the caller's own last write (MASTER_GTID_WAIT)
    # before it reads from the primary instead.
    replica_wait_seconds: float = Field(default=0.05, ge=0, le=5)
    # Buckets whose writes are held while a bucket move switches them to another shard
    # (shardmap.py, bucket_move.py); "" = none. Set only in published runtime shard maps.
    frozen_buckets: str = ""
    # How often each process polls the directory for a newer runtime shard map (the fallback
    # when the Redis nudge is lost); see docs/shard-map.md.
    shard_map_poll_seconds: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _buckets_cover_exactly_once(self) -> DatabaseConfig:
        names = [s.name for s in self.shards]
        if len(set(names)) != len(names):
            raise ValueError("shard names must be unique")
        if "directory" in names:  # the directory's name in replica routing, metrics and heartbeats
            raise ValueError("no shard may be named 'directory'")
        if not self.shards:
            raise ValueError("at least one shard is needed")
        owner: dict[int, str] = {}
        for shard in self.shards:
            for lo, hi in parse_bucket_ranges(shard.buckets):
                if hi >= self.bucket_count:
                    raise ValueError(f"shard {shard.name}: bucket {hi} >= bucket_count {self.bucket_count}")
                for b in range(lo, hi + 1):
                    if b in owner:
                        raise ValueError(f"bucket {b} is in both {owner[b]} and {shard.name}")
                    owner[b] = shard.name
        if self.frozen_buckets:
            for lo, hi in parse_bucket_ranges(self.frozen_buckets):
                if hi >= self.bucket_count:
                    raise ValueError(f"frozen bucket {hi} >= bucket_count {self.bucket_count}")
        if len(owner) != self.bucket_count:
            missing = next(b for b in range(self.bucket_count) if b not in owner)
            raise ValueError(f"bucket {missing} belongs to no shard")
        # Two shards on one physical database would silently merge their tenants' rows.
        seen: dict[str, str] = {self.directory_dsn: "the directory"}
        for dsn in self.directory_replicas:
            if dsn in seen or "{db}" in dsn:
                raise ValueError("a directory replica must be a database of its own, without {db}")
            if make_url(dsn).get_backend_name() != make_url(self.directory_dsn).get_backend_name() or \
                    make_url(dsn).get_backend_name() == "sqlite":
                raise ValueError("directory replicas need a MariaDB directory_dsn and MariaDB replicas")
            seen[dsn] = "a directory replica"
        for shard in self.shards:
            for db in SERVICE_DATABASES:
                dsn = shard.dsn_for(db)
                if dsn in seen:
                    raise ValueError(f"shard {shard.name} ({db}) uses the same database as {seen[dsn]}")
                seen[dsn] = f"shard {shard.name}"
        return self


class RedisConfig(BaseModel):
    """Redis: `memory://` is the embedded in-process Redis (fakeredis) of the default mode."""

    url: str = "memory://"
    cluster: bool = False
    key_prefix: str = "wework:"
    socket_timeout_seconds: float = Field(default=2.0, gt=0)
