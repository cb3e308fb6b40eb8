"""Pure parts of bucket moves: range arithmetic, the switched map, table ownership rules."""

from __future__ import annotations

import pytest
from wework.persistence.bucket_move import MoveError, ranges_of, switched_map, tables_in_copy_order
from wework.persistence.config import SERVICE_DATABASES, DatabaseConfig, ShardSpec
from wework.persistence.sharding import ShardRouter


def two_shards() -> DatabaseConfig:
    return DatabaseConfig(bucket_count=1024, directory_dsn="sqlite+aiosqlite:///d/directory.db", shards=[
        ShardSpec(name="s0", buckets="0-511", dsn="sqlite+aiosqlite:///d/{db}_0.db"),
        ShardSpec(name="s1", buckets="512-1023", dsn="sqlite+aiosqlite:///d/{db}_1.db")])


def test_ranges_of_compresses_sorted_runs():
    assert ranges_of([5, 0, 1, 2, 9, 10]) == "0-2,5,9-10"
    assert ranges_of(range(768, 1024)) == "768-1023"


def test_switched_map_moves_a_range_spanning_two_shards_to_a_new_shard():
    target = ShardSpec(name="s2", buckets="0", dsn="sqlite+aiosqlite:///d/{db}_2.db")
    new = switched_map(two_shards().model_copy(update={"frozen_buckets": "400-600"}),
                       frozenset(range(400, 601)), target)
    assert [(s.name, s.buckets) for s in new.shards] == [("s0", "0-399"), ("s1", "601-1023"), ("s2", "400-600")]
    assert new.frozen_buckets == ""
    router = ShardRouter(new)
    assert router.shard_for_bucket(400).name == "s2" and router.shard_for_bucket(601).name == "s1"


def test_switched_map_refuses_to_empty_a_shard():
    target = ShardSpec(name="s2", buckets="0", dsn="sqlite+aiosqlite:///d/{db}_2.db")
    with pytest.raises(MoveError, match="without buckets"):
        switched_map(two_shards(), frozenset(range(512, 1024)), target)


def test_frozen_buckets_are_validated_and_known_to_the_router():
    router = ShardRouter(two_shards().model_copy(update={"frozen_buckets": "510-513"}))
    assert router.frozen == frozenset({510, 511, 512, 513}) and router.frozen_shards == {"s0", "s1"}
    with pytest.raises(ValueError, match="frozen bucket"):
        DatabaseConfig.model_validate({**two_shards().model_dump(), "frozen_buckets": "1000-1024"})


@pytest.mark.parametrize("db", SERVICE_DATABASES)
def test_every_table_has_an_ownership_rule(db):
    """A table added without tenant_id must get a rule in bucket_move.py, or moves would skip it."""
    kinds = {table.name: kind for table, kind in tables_in_copy_order(db)}
    assert kinds
    order = list(kinds.values())
    assert order == sorted(order, key=["tenant", "child", "shared"].index)
