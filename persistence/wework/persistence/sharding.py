"""Tenant -> shard routing: crc32(tenant_id) picks a virtual bucket, the shard map picks a shard.

Buckets decouple the hash from the number of physical databases: growing from 2 to 4 shards
moves bucket ranges (and their tenants' rows) instead of rehashing every tenant. The bucket
count is therefore fixed for the life of a deployment; see docs/shard-map.md.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .config import SERVICE_DATABASES, DatabaseConfig, ShardSpec, parse_bucket_ranges

DIRECTORY = "directory"


def bucket_of(tenant_id: str, bucket_count: int) -> int:
    # crc32 is stable across processes and languages (Python's hash() is salted per process).
    return zlib.crc32(tenant_id.encode("utf-8")) % bucket_count


class ShardRouter:
    def __init__(self, config: DatabaseConfig) -> None:
        self._config = config
        self._by_bucket: list[ShardSpec | None] = [None] * config.bucket_count
        self._by_name: dict[str, ShardSpec] = {}
        for shard in config.shards:
            self._by_name[shard.name] = shard
            for lo, hi in parse_bucket_ranges(shard.buckets):
                for b in range(lo, hi + 1):
                    self._by_bucket[b] = shard
        # DatabaseConfig validated full coverage; this guards against configs built unvalidated.
        if any(s is None for s in self._by_bucket):
            raise ValueError("the shard map leaves buckets unassigned")
        # Buckets being switched by a bucket move: their writes wait (Database write gate).
        self.frozen: frozenset[int] = frozenset(
            b for lo, hi in (parse_bucket_ranges(config.frozen_buckets) if config.frozen_buckets else [])
            for b in range(lo, hi + 1))
        self.frozen_shards: frozenset[str] = frozenset(self._by_bucket[b].name for b in self.frozen)  # type: ignore[union-attr]

    @property
    def bucket_count(self) -> int:
        return self._config.bucket_count

    @property
    def shards(self) -> list[ShardSpec]:
        return list(self._config.shards)

    @property
    def shard_names(self) -> list[str]:
        return [s.name for s in self._config.shards]

    def bucket_of(self, tenant_id: str) -> int:
        return bucket_of(tenant_id, self._config.bucket_count)

    def shard_for(self, tenant_id: str) -> ShardSpec:
        return self.shard_for_bucket(self.bucket_of(tenant_id))

    def shard_for_bucket(self, bucket: int) -> ShardSpec:
        if not 0 <= bucket < self._config.bucket_count:
            raise ValueError(f"bucket {bucket} outside 0..{self._config.bucket_count - 1}")
        shard = self._by_bucket[bucket]
        assert shard is not None
        return shard

    def shard(self, name: str) -> ShardSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no shard named {name!r}; shards: {self.shard_names}") from None

    def dsn_for(self, db: str, tenant_id: str) -> str:
        return self.shard_for(tenant_id).dsn_for(db)


@dataclass(frozen=True)
class PhysicalDatabase:
    """One database to connect to or migrate: a service db on one shard, or the directory."""

    db: str  # "directory" or one of SERVICE_DATABASES
    shard: str | None  # None for the directory
    dsn: str

    @property
    def label(self) -> str:
        return self.db if self.shard is None else f"{self.db}@{self.shard}"


def physical_databases(config: DatabaseConfig, databases: tuple[str, ...] | list[str] = SERVICE_DATABASES,
                       *, directory: bool = True) -> list[PhysicalDatabase]:
    """The directory (first) and every (service db, shard) pair, in shard-map order."""
    unknown = [d for d in databases if d not in SERVICE_DATABASES]
    if unknown:
        raise ValueError(f"unknown service database(s) {unknown}; expected {SERVICE_DATABASES}")
    out = [PhysicalDatabase(DIRECTORY, None, config.directory_dsn)] if directory else []
    for db in databases:
        for shard in config.shards:
            out.append(PhysicalDatabase(db, shard.name, shard.dsn_for(db)))
    return out
