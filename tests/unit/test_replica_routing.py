"""Replica routing decisions that need no server: usability, GTID order, replica choice."""

from __future__ import annotations

import time

import pytest
from wework.persistence.config import DatabaseConfig, ShardSpec
from wework.persistence.failover import FailoverError, pick_replica
from wework.persistence.replicas import ReplicaRouting, gtid_seq, later_gtid, replica_label

PRIMARY = "mysql+aiomysql://app:secret@db-0a:3306/w_{db}_0"
R1 = "mysql+aiomysql://ro:secret@db-0b:3307/w_{db}_0"
R2 = "mysql+aiomysql://ro:secret@db-0c/w_{db}_0"


def _config(**overrides) -> DatabaseConfig:
    return DatabaseConfig(directory_dsn="mysql+aiomysql://app@db-dir/w_directory",
                          shards=[ShardSpec(name="s0", buckets="0-511", dsn=PRIMARY, replicas=[R1, R2]),
                                  ShardSpec(name="s1", buckets="512-1023", dsn=PRIMARY.replace("_0", "_1"))],
                          **overrides)


def test_gtids_compare_by_sequence_within_a_domain():
    assert gtid_seq("0-1-42") == (0, 42)
    assert gtid_seq("not a gtid") is None
    assert later_gtid("0-1-10", "0-2-9") == "0-1-10"  # server id does not matter, seq_no does
    assert later_gtid("0-1-10", "0-2-11") == "0-2-11"
    assert later_gtid(None, "0-1-1") == "0-1-1"
    assert later_gtid("1-1-5", "0-1-9") == "0-1-9"  # other domain: the newer write wins


def test_replica_labels_carry_no_credentials():
    assert replica_label(R1) == "db-0b:3307"
    assert replica_label(R2) == "db-0c:3306"
    assert "secret" not in replica_label(R1)


def test_a_replica_serves_reads_only_with_a_fresh_lag_within_the_bound():
    routing = ReplicaRouting(_config(replica_max_lag_seconds=1.0, replica_heartbeat_interval_seconds=0.25))
    assert routing.has_replicas("s0") and not routing.has_replicas("s1")
    r1, r2 = routing.states["s0"]
    now = time.monotonic()
    r1.lag, r1.measured_at = 0.2, now
    r2.lag, r2.measured_at = 3.0, now
    assert routing.usable("s0") == []  # no monitor in this process: lag figures are not trusted
    routing.monitored = True
    assert routing.usable("s0") == [r1]
    r2.lag = 0.5
    assert routing.usable("s0") == [r1, r2]
    r2.error = "OperationalError: refused"
    assert routing.usable("s0") == [r1]
    r1.measured_at = now - 5  # the monitor stopped measuring
    assert routing.usable("s0") == []


def test_a_new_shard_map_keeps_measurements_of_replicas_that_stay():
    routing = ReplicaRouting(_config())
    routing.states["s0"][1].lag = 0.1
    shards = [ShardSpec(name="s0", buckets="0-511", dsn=R1, replicas=[R2]),
              ShardSpec(name="s1", buckets="512-1023", dsn=PRIMARY.replace("_0", "_1"))]
    routing.configure(_config().model_copy(update={"shards": shards}))
    assert [s.dsn for s in routing.states["s0"]] == [R2]
    assert routing.states["s0"][0].lag == 0.1


def test_the_failover_replica_is_named_by_index_dsn_or_address():
    spec = _config().shards[0]
    assert pick_replica(spec, None) is None
    assert pick_replica(spec, "1") == R2
    assert pick_replica(spec, R1) == R1
    assert pick_replica(spec, "db-0c:3306") == R2
    with pytest.raises(FailoverError, match="no index 2"):
        pick_replica(spec, "2")
    with pytest.raises(FailoverError, match="not a replica"):
        pick_replica(spec, "db-9:3306")


async def test_a_tenant_read_waits_for_its_own_and_for_shard_wide_writes():
    from wework.persistence.replicas import WriteTracker

    tracker = WriteTracker(ttl=5)
    await tracker.record("s0", "t", "0-1-10")
    assert await tracker.get("s0", "t") == "0-1-10"
    assert await tracker.get("s0", "other") is None
    await tracker.record("s0", None, "0-1-20")  # e.g. the dispatcher changed statuses of many tenants
    assert await tracker.get("s0", "t") == "0-1-20"
    assert await tracker.get("s0", "other") == "0-1-20"
    assert await tracker.get("s1", "t") is None


async def test_an_unreachable_redis_sends_reads_to_the_primary_without_slowing_every_commit():
    import socket

    import redis.asyncio as aioredis
    from wework.persistence.replicas import RedisWriteTracker, WritesUnknown

    with socket.socket() as s:  # a port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    tracker = RedisWriteTracker(client, "t:", ttl=5)
    try:
        await tracker.record("s0", "t", "0-1-10")  # the commit is not failed by the routing hint
        with pytest.raises(WritesUnknown):
            await tracker.get("s0", "t")
        # Paused: no further connection attempts until the pause ends.
        attempts = 0
        original = client.execute_command

        async def counting(*args, **kwargs):
            nonlocal attempts
            attempts += 1
            return await original(*args, **kwargs)

        client.execute_command = counting
        await tracker.record("s0", "t", "0-1-11")
        with pytest.raises(WritesUnknown):
            await tracker.get("s0", "t")
        assert attempts == 0
    finally:
        await client.aclose()
