"""Shard map validation, routing arithmetic, ids and page tokens: no server needed."""

from __future__ import annotations

import zlib

import pytest
from pydantic import ValidationError
from wework.domain.errors import InvalidArgument
from wework.persistence.config import DatabaseConfig, ShardSpec
from wework.persistence.ids import is_valid_id, new_id
from wework.persistence.pagination import normalize_page_size
from wework.persistence.sharding import ShardRouter, bucket_of, physical_databases

DSN = "mysql+aiomysql://root@127.0.0.1:3306/x_{db}_"


def _config(*shards: tuple[str, str], bucket_count: int = 1024, dsn: str = DSN) -> DatabaseConfig:
    return DatabaseConfig(bucket_count=bucket_count, directory_dsn="mysql+aiomysql://root@127.0.0.1/x_dir",
                          shards=[ShardSpec(name=n, buckets=b, dsn=dsn + n) for n, b in shards])


def test_valid_map_routes_every_bucket():
    config = _config(("s0", "0-255"), ("s1", "256-511,768-1023"), ("s2", "512-767"))
    router = ShardRouter(config)
    assert router.shard_for_bucket(0).name == "s0"
    assert router.shard_for_bucket(300).name == "s1"
    assert router.shard_for_bucket(700).name == "s2"
    assert router.shard_for_bucket(1023).name == "s1"
    with pytest.raises(ValueError):
        router.shard_for_bucket(1024)


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ((("s0", "0-600"), ("s1", "500-1023")), "bucket 500 is in both s0 and s1"),
        ((("s0", "0-500"), ("s1", "502-1023")), "bucket 501 belongs to no shard"),
        ((("s0", "0-1024"),), "bucket 1024 >= bucket_count"),
        ((("s0", "0-511"), ("s0", "512-1023")), "shard names must be unique"),
        ((("s0", "10-5"),), "bad bucket range"),
    ],
)
def test_invalid_maps_are_rejected(shards, message):
    with pytest.raises(ValidationError, match=message):
        _config(*shards)


def test_dsn_without_db_placeholder_is_rejected():
    with pytest.raises(ValidationError, match=r"\{db\} placeholder"):
        ShardSpec(name="s0", buckets="0-1023", dsn="mysql+aiomysql://root@h/wework_0")


def test_two_shards_on_one_database_are_rejected():
    with pytest.raises(ValidationError, match="same database"):
        DatabaseConfig(directory_dsn="sqlite+aiosqlite:///d.db", shards=[
            ShardSpec(name="s0", buckets="0-511", dsn="mysql+aiomysql://h/w_{db}"),
            ShardSpec(name="s1", buckets="512-1023", dsn="mysql+aiomysql://h/w_{db}"),
        ])


def test_bucket_of_is_crc32_mod_bucket_count():
    for tenant in ("t1", "0193c3b6-3f1e-7a2c-9b1d-5e4f3a2b1c0d", "租户"):
        assert bucket_of(tenant, 1024) == zlib.crc32(tenant.encode()) % 1024
    assert bucket_of("t1", 1024) == bucket_of("t1", 1024)  # stable, unlike hash()


def test_physical_databases_lists_directory_first():
    config = _config(("s0", "0-511"), ("s1", "512-1023"))
    targets = physical_databases(config)
    assert targets[0].db == "directory" and targets[0].shard is None
    assert len(targets) == 1 + 4 * 2
    assert {(t.db, t.shard) for t in targets[1:]} == {(d, s) for d in ("user", "account", "message", "callback")
                                                      for s in ("s0", "s1")}


def test_ids_are_uuid7_and_time_ordered():
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 36 and i[14] == "7" and is_valid_id(i) for i in ids[:10])


def test_normalize_page_size():
    assert normalize_page_size(0) == 50
    assert normalize_page_size(None) == 50
    assert normalize_page_size(7) == 7
    assert normalize_page_size(1000) == 1000
    assert normalize_page_size(5000) == 1000
    with pytest.raises(InvalidArgument) as info:
        normalize_page_size(-1)
    assert info.value.violations[0].field == "page_size"
