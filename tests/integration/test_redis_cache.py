"""TwoLevelCache against a real Redis (`redis_server`) and the embedded memory:// Redis.

Each "process" is a TwoLevelCache with its own Redis client (own connections), as two
server replicas would have. Every test uses its own key namespace and deletes it after.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest
from wework.persistence.config import RedisConfig
from wework.persistence.redis import TwoLevelCache, create_redis, ping

# How long an invalidation may take to reach another process's L1 in these tests.
PROPAGATION_BOUND = 2.0


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "memory"])
def redis_url(request) -> str:
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue("redis_server").url


@pytest.fixture
async def env(redis_url):
    """Makes caches over separate clients in one namespace; closes and cleans up after."""
    namespace = f"wwtest:cache:{uuid.uuid4().hex}"
    clients = []
    caches: list[TwoLevelCache] = []

    async def make_cache(*, start: bool = True, **kwargs) -> TwoLevelCache:
        client = create_redis(RedisConfig(url=redis_url))
        clients.append(client)
        cache = TwoLevelCache(client, namespace, **kwargs)
        caches.append(cache)
        if start:
            await cache.start()
            assert cache.listening
        return cache

    admin = create_redis(RedisConfig(url=redis_url))
    await ping(admin)
    yield make_cache, admin, namespace
    for cache in caches:
        await cache.close()
    async for k in admin.scan_iter(match=f"{namespace}:*"):
        await admin.delete(k)
    for client in clients:
        await client.aclose()
    await admin.aclose()


class Source:
    """The "database": a value and a count of loader calls."""

    def __init__(self, value: bytes | None) -> None:
        self.value = value
        self.calls = 0

    async def load(self) -> bytes | None:
        self.calls += 1
        return self.value


async def wait_for(predicate, timeout: float = PROPAGATION_BOUND) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def test_l1_l2_hits_and_misses(env):
    make_cache, _, _ = env
    a = await make_cache()
    b = await make_cache()
    db = Source(b"v1")

    assert await a.get("t1") is None
    assert (a.l1_hits, a.l2_hits, a.misses) == (0, 0, 1)

    assert await a.get_or_load("t1", db.load) == b"v1"  # miss -> loader -> L2 + L1
    assert await a.get_or_load("t1", db.load) == b"v1"  # L1
    assert db.calls == 1
    assert (a.l1_hits, a.l2_hits, a.misses) == (1, 0, 2)

    assert await b.get_or_load("t1", db.load) == b"v1"  # other process: L2
    assert await b.get("t1") == b"v1"  # now its L1
    assert db.calls == 1
    assert (b.l1_hits, b.l2_hits, b.misses) == (1, 1, 0)


async def test_negative_results_are_cached_briefly(env):
    make_cache, _, _ = env
    a = await make_cache()
    db = Source(None)
    assert await a.get_or_load("missing", db.load, negative_ttl=0.3) is None
    assert await a.get_or_load("missing", db.load, negative_ttl=0.3) is None
    assert db.calls == 1
    await asyncio.sleep(0.4)
    db.value = b"now-there"
    assert await a.get_or_load("missing", db.load) == b"now-there"
    assert db.calls == 2
    # negative_ttl=0 caches nothing
    db2 = Source(None)
    await a.get_or_load("other", db2.load, negative_ttl=0)
    await a.get_or_load("other", db2.load, negative_ttl=0)
    assert db2.calls == 2


async def test_invalidate_clears_l1_of_another_process(env):
    make_cache, _, _ = env
    a = await make_cache()
    b = await make_cache()
    db = Source(b"old")
    assert await a.get_or_load("k", db.load) == b"old"
    assert await b.get_or_load("k", db.load) == b"old"
    assert await b.get_or_load("k", db.load) == b"old"
    assert b.l1_hits == 1

    db.value = b"new"  # the write, then the invalidation, as a use case would do
    await a.invalidate("k")
    elapsed = await wait_for(lambda: b.invalidations_received >= 1)
    assert elapsed < PROPAGATION_BOUND
    assert await b.get_or_load("k", db.load) == b"new"
    assert await a.get_or_load("k", db.load) == b"new"


async def test_set_replaces_value_everywhere(env):
    make_cache, _, _ = env
    a = await make_cache()
    b = await make_cache()
    db = Source(b"old")
    await b.get_or_load("k", db.load)
    await a.set("k", b"written")
    assert await a.get("k") == b"written"
    await wait_for(lambda: b.invalidations_received >= 1)
    assert await b.get("k") == b"written"
    assert db.calls == 1


async def test_invalidation_during_load_is_not_cached(env):
    """A load that started before a write must not put its old value in L1 or L2."""
    make_cache, _, _ = env
    a = await make_cache()
    b = await make_cache()
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_old_load() -> bytes:
        entered.set()
        await release.wait()
        return b"old"

    inflight = asyncio.create_task(a.get_or_load("k", slow_old_load))
    await entered.wait()
    await b.invalidate("k")  # another process writes and invalidates meanwhile
    await wait_for(lambda: a.invalidations_received >= 1)

    # A caller arriving after the invalidation does not join the stale load.
    db = Source(b"new")
    assert await asyncio.wait_for(a.get_or_load("k", db.load), 2) == b"new"
    release.set()
    assert await inflight == b"old"  # the racing caller gets what it read...
    assert await a.get_or_load("k", db.load) == b"new"  # ...but it was not cached
    assert await b.get("k") == b"new"


async def test_stale_write_back_ignored_even_if_message_is_late(env):
    """The L2 generation stamp: a process that never hears the invalidation (no subscriber)
    still cannot leave its stale load in Redis."""
    make_cache, _, _ = env
    deaf = await make_cache(start=False)
    other = await make_cache()
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_old_load() -> bytes:
        entered.set()
        await release.wait()
        return b"old"

    inflight = asyncio.create_task(deaf.get_or_load("k", slow_old_load))
    await entered.wait()
    await other.invalidate("k")
    release.set()
    assert await inflight == b"old"
    assert await other.get("k") is None  # the stale write-back is ignored
    db = Source(b"new")
    assert await other.get_or_load("k", db.load) == b"new"
    assert await deaf.get("k") == b"new"


async def test_invalidation_during_l2_read_is_not_cached(env):
    """get(): the Redis answer predates an invalidation that is handled before the answer
    is used; it is returned but must not land in L1."""
    make_cache, _, _ = env
    a = await make_cache()
    b = await make_cache()
    await a.set("k", b"old")
    a.clear_local()
    real_hmget = a._redis.hmget
    fetched, release = asyncio.Event(), asyncio.Event()

    async def delayed_hmget(*args):
        result = await real_hmget(*args)
        fetched.set()
        await release.wait()
        return result

    a._redis.hmget = delayed_hmget
    reading = asyncio.create_task(a.get("k"))
    await fetched.wait()
    await b.invalidate("k")
    await wait_for(lambda: a.invalidations_received >= 1)
    release.set()
    assert await reading == b"old"
    a._redis.hmget = real_hmget
    assert await a.get("k") is None  # not served from L1


async def test_same_process_invalidate_during_load(env):
    make_cache, _, _ = env
    a = await make_cache()
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_old_load() -> bytes:
        entered.set()
        await release.wait()
        return b"old"

    inflight = asyncio.create_task(a.get_or_load("k", slow_old_load))
    await entered.wait()
    await a.invalidate("k")
    release.set()
    assert await inflight == b"old"
    assert await a.get("k") is None


async def test_concurrent_misses_share_one_load(env):
    make_cache, _, _ = env
    a = await make_cache()
    db = Source(b"v")

    async def slow() -> bytes:
        await asyncio.sleep(0.05)
        return await db.load()

    results = await asyncio.gather(*(a.get_or_load("k", slow) for _ in range(10)))
    assert results == [b"v"] * 10
    assert db.calls == 1


async def test_loader_error_propagates_and_caches_nothing(env):
    make_cache, _, _ = env
    a = await make_cache()

    async def boom() -> bytes:
        raise RuntimeError("db down")

    with pytest.raises(RuntimeError, match="db down"):
        await a.get_or_load("k", boom)
    assert await a.get("k") is None


async def test_non_bytes_values_rejected(env):
    make_cache, _, _ = env
    a = await make_cache()
    with pytest.raises(TypeError):
        await a.set("k", "text")  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: nothing listens there


async def test_redis_down_falls_back_to_loader():
    client = create_redis(
        RedisConfig(url=f"redis://127.0.0.1:{_closed_port()}/0", socket_timeout_seconds=0.5)
    )
    cache = TwoLevelCache(client, f"wwtest:cache:{uuid.uuid4().hex}", redis_retry_seconds=0.2)
    db = Source(b"from-db")
    started = time.monotonic()
    try:
        await cache.start(timeout=2.0)  # logs, does not raise
        assert not cache.listening
        for _ in range(3):
            assert await cache.get_or_load("k", db.load) == b"from-db"
        assert db.calls == 3  # no L1 without the invalidation subscriber: the database answers
        assert await cache.get("k") is None
        await cache.set("k", b"x")  # cache-only failures never raise
        await cache.invalidate("k")
        await asyncio.sleep(0.25)  # past the retry pause: Redis is tried (and fails) again
        assert await cache.get_or_load("k", db.load) == b"from-db"
        assert cache.redis_errors >= 3
        assert time.monotonic() - started < 10
    finally:
        await cache.close()
        await client.aclose()


@pytest.mark.redis
async def test_subscriber_reconnect_clears_l1_and_keeps_invalidating(redis_server):
    """Kill the subscriber's connection: redis-py resubscribes, the cache empties its L1
    (messages may have been missed) and later invalidations arrive again."""
    namespace = f"wwtest:cache:{uuid.uuid4().hex}"
    name = "wwt-" + uuid.uuid4().hex[:12]
    sub_client = create_redis(RedisConfig(url=f"{redis_server.url}?client_name={name}"))
    pub_client = create_redis(RedisConfig(url=redis_server.url))
    b = TwoLevelCache(sub_client, namespace)
    a = TwoLevelCache(pub_client, namespace)
    await a.start()
    await b.start()
    db = Source(b"v1")
    try:
        await b.get_or_load("k", db.load)
        assert await b.get("k") == b"v1" and b.l1_hits == 1

        clients = await pub_client.client_list()
        ids = [c["id"] for c in clients if c.get("name") == name and c.get("sub") not in (None, "0")]
        assert len(ids) == 1, clients
        await pub_client.execute_command("CLIENT", "KILL", "ID", ids[0])

        # After the reconnect the L1 entry is gone (answered from L2, not L1).
        async def answered_by_l2() -> bool:
            before = b.l2_hits
            await b.get("k")
            return b.l2_hits > before

        deadline = time.monotonic() + 5
        while not await answered_by_l2():
            assert time.monotonic() < deadline, "L1 was not cleared after the reconnect"
            await asyncio.sleep(0.05)
        await wait_for(lambda: b.listening, timeout=5)

        db.value = b"v2"
        await a.invalidate("k")
        await wait_for(lambda: b.invalidations_received >= 1, timeout=5)
        assert await b.get_or_load("k", db.load) == b"v2"
    finally:
        await a.close()
        await b.close()
        async for k in pub_client.scan_iter(match=f"{namespace}:*"):
            await pub_client.delete(k)
        await sub_client.aclose()
        await pub_client.aclose()


async def test_memory_clients_share_one_embedded_server():
    one = create_redis(RedisConfig(url="memory://"))
    two = create_redis(RedisConfig(url="memory://"))
    k = f"wwtest:shared:{uuid.uuid4().hex}"
    try:
        await one.set(k, b"x")
        assert await two.get(k) == b"x"
    finally:
        await one.delete(k)
        await one.aclose()
        await two.aclose()


def test_memory_url_rejects_cluster_flag():
    with pytest.raises(ValueError, match="cluster"):
        create_redis(RedisConfig(url="memory://", cluster=True))
