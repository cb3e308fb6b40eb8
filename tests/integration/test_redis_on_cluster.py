"""Every Redis user of the platform against a real three-node Redis Cluster (`redis_cluster`).

Each "process" is its own RedisCluster client, created fresh (no command run before), as a new
server or worker process would have: the pub/sub users must find their node by themselves.
Keys use a unique prefix and are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date

import pytest
from redis.exceptions import RedisClusterException, ResponseError
from wework.domain.errors import QuotaExceeded
from wework.persistence.config import RedisConfig
from wework.persistence.redis import TwoLevelCache, create_redis, ping, tenant_key
from wework.server.application.accounts import AccountEventBus
from wework.server.application.messages import DailyQuota
from wework.server.workers.dispatch import DispatchWaker

pytestmark = [pytest.mark.redis]

BOUND = 3.0  # seconds a pub/sub message may take to arrive in these tests


@pytest.fixture
async def cluster_env(redis_cluster):
    """(new_client(), prefix, config): fresh cluster clients; everything under prefix deleted after."""
    prefix = f"wwtc{uuid.uuid4().hex[:8]}:"
    config = RedisConfig(url=redis_cluster.url, cluster=True, key_prefix=prefix)
    clients = []

    def new_client():
        client = create_redis(config)
        clients.append(client)
        return client

    yield new_client, prefix, config
    admin = create_redis(config)
    for node in (await admin.initialize()).get_primaries():
        async for k in admin.scan_iter(match=f"{prefix}*", target_nodes=node):
            await admin.delete(k)
    await admin.aclose()
    for client in clients:
        await client.aclose()


async def wait_until(predicate, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_the_fixture_is_a_healthy_three_master_cluster(redis_cluster):
    info = redis_cluster.cluster_info()
    assert info["cluster_state"] == "ok"
    assert info["cluster_known_nodes"] == "3" and info["cluster_size"] == "3"
    assert info["cluster_slots_assigned"] == "16384"


async def test_keys_of_one_tenant_share_a_slot_and_tenants_spread_over_nodes(cluster_env, redis_cluster):
    new_client, _, config = cluster_env
    client = new_client()
    await ping(client)
    tenant = uuid.uuid4().hex
    keys = [tenant_key(config, tenant, "quota", "messages", "20260101"), tenant_key(config, tenant, "x"),
            tenant_key(config, tenant, "y", "z")]
    assert len({client.keyslot(k) for k in keys}) == 1
    # A multi-key command over them is accepted: they sit in one slot on one node.
    await client.execute_command("MSET", *(v for k in keys for v in (k, b"1")))
    assert await client.execute_command("DEL", *keys) == 3
    # Without the tag the same command is refused: the test above could fail.
    with pytest.raises((RedisClusterException, ResponseError)):
        await client.execute_command("MSET", f"{keys[0]}-a-{uuid.uuid4().hex}", b"1", f"untagged-{uuid.uuid4().hex}", b"2")
    nodes = {redis_cluster.node_for_key(tenant_key(config, uuid.uuid4().hex, "q")) for _ in range(30)}
    assert len(nodes) == 3, "tenants' keys should spread over every node"


async def test_two_level_cache_invalidation_reaches_another_process(cluster_env, redis_cluster):
    new_client, prefix, _ = cluster_env
    namespace = f"{prefix}cache:tenant"
    a, b = TwoLevelCache(new_client(), namespace), TwoLevelCache(new_client(), namespace)
    await a.start()
    await b.start()
    try:
        assert a.listening and b.listening
        loads = {"n": 0}
        value = {"v": b"v1"}

        async def loader():
            loads["n"] += 1
            return value["v"]

        keys = [f"k{i}" for i in range(12)]
        for k in keys:
            assert await a.get_or_load(k, loader) == b"v1"
            assert await b.get_or_load(k, loader) == b"v1"  # L2 hit: loaded once per key
        assert loads["n"] == len(keys)
        assert len({redis_cluster.node_for_key(f"{namespace}:{k}") for k in keys}) > 1  # L2 spans nodes
        assert await b.get("k0") == b"v1" and b.l1_hits >= 1

        # A write in process A drops B's L1 copy; B then reads the new value from L2.
        await a.set("k0", b"v2")
        await wait_until(lambda: b.invalidations_received >= 1)
        assert await b.get("k0") == b"v2"
        # An invalidation: B loads from the "database" again.
        value["v"] = b"v3"
        before = loads["n"]
        await a.invalidate("k1")
        await wait_until(lambda: b.invalidations_received >= 2)
        assert await b.get_or_load("k1", loader) == b"v3" and loads["n"] == before + 1
    finally:
        await a.close()
        await b.close()


async def test_daily_quota_is_exact_under_concurrency_across_processes(cluster_env):
    new_client, _, config = cluster_env
    seeded = []

    async def count_accepted(tenant_id: str, day: date) -> int:
        seeded.append(tenant_id)
        return 3  # the database already holds 3 accepted messages today

    quotas = [DailyQuota(new_client(), config, 3600, count_accepted) for _ in range(2)]
    tenant, day, limit = uuid.uuid4().hex, date(2026, 11, 28), 40

    async def one(q: DailyQuota) -> bool:
        try:
            await q.acquire(tenant, limit, day)
            return True
        except QuotaExceeded:
            return False

    results = await asyncio.gather(*(one(quotas[i % 2]) for i in range(150)))
    assert sum(results) == limit - 3
    raw = await new_client().get(quotas[0].key(tenant, day))
    assert int(raw) == limit  # refused units were given back
    await quotas[1].release(tenant, day, 2)
    assert sum(await asyncio.gather(*(one(q) for q in quotas * 3))) == 2


async def test_dispatch_wake_up_reaches_a_fresh_process(cluster_env):
    new_client, prefix, _ = cluster_env
    sender, receiver = DispatchWaker(new_client(), prefix), DispatchWaker(new_client(), prefix)
    await receiver.start()
    try:
        event = receiver.event()
        await asyncio.sleep(0.3)  # the subscription is made in the background
        for _ in range(int(BOUND / 0.3)):  # the subscriber may connect a little later
            await sender.wake("s0")
            try:
                await asyncio.wait_for(event.wait(), 0.3)
                break
            except TimeoutError:
                continue
        assert event.is_set(), "no wake-up arrived through the cluster"
    finally:
        await receiver.close()


async def test_account_events_reach_watchers_of_that_tenant_only(cluster_env):
    new_client, prefix, _ = cluster_env
    publisher, bus = AccountEventBus(new_client(), prefix), AccountEventBus(new_client(), prefix)
    await bus.start()
    try:
        t1, t2 = uuid.uuid4().hex, uuid.uuid4().hex
        l1, l2 = bus.listen(t1), bus.listen(t2)
        await wait_until(lambda: l1.event.is_set())  # set once the pattern subscription is made
        l1.clear()
        l2.clear()
        await publisher.publish(t1)
        await wait_until(lambda: l1.event.is_set())
        assert bus.messages_received >= 1 and not l2.event.is_set()
    finally:
        await bus.close()
