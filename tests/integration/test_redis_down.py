"""What each Redis user does while Redis is down, and after it comes back empty (docs/redis.md).

A private redis-server that the test stops and starts again on the same port (never the
machine's shared one); it restarts without data, as a Redis without persistence would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date

import pytest
from harness.redis_cluster import start_restartable_redis
from wework.domain.errors import QuotaExceeded, Unavailable
from wework.persistence.config import RedisConfig
from wework.persistence.redis import TwoLevelCache, create_redis
from wework.server.application.messages import DailyQuota
from wework.server.workers.dispatch import DispatchWaker

pytestmark = [pytest.mark.redis]

RECONNECT_BOUND = 10.0  # subscribers retry with a backoff capped at 5 s


@pytest.fixture
async def outage():
    server = start_restartable_redis()
    config = RedisConfig(url=server.url, key_prefix=f"wwto{uuid.uuid4().hex[:6]}:", socket_timeout_seconds=0.5)
    clients = []

    def new_client():
        client = create_redis(config)
        clients.append(client)
        return client

    yield server, new_client, config
    for client in clients:
        await client.aclose()
    server.remove()


async def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_quota_refuses_while_down_and_reseeds_from_the_database_after(outage):
    server, new_client, config = outage
    accepted_in_db = {"n": 0}

    async def count_accepted(tenant_id: str, day: date) -> int:
        return accepted_in_db["n"]

    quota = DailyQuota(new_client(), config, 3600, count_accepted)
    tenant, day = uuid.uuid4().hex, date(2026, 11, 28)
    await quota.acquire(tenant, 6, day)
    server.stop()
    with pytest.raises(Unavailable) as refused:
        await quota.acquire(tenant, 6, day)
    assert refused.value.metadata == {"dependency": "redis"}
    # Redis returns without the counter; the database (the truth) says 5 were accepted today.
    server.start()
    accepted_in_db["n"] = 5
    await quota.acquire(tenant, 6, day)
    with pytest.raises(QuotaExceeded):
        await quota.acquire(tenant, 6, day)


async def test_cache_serves_from_the_loader_while_down_and_uses_redis_again_after(outage):
    server, new_client, config = outage
    namespace = f"{config.key_prefix}cache"
    a = TwoLevelCache(new_client(), namespace, redis_retry_seconds=0.2)
    b = TwoLevelCache(new_client(), namespace, redis_retry_seconds=0.2)
    await a.start()
    await b.start()
    try:
        calls = {"n": 0}

        async def loader():
            calls["n"] += 1
            return b"row"

        assert await a.get_or_load("k", loader) == b"row"
        server.stop()
        await wait_until(lambda: not a.listening, RECONNECT_BOUND)  # L1 off: invalidations could be missed
        for _ in range(3):
            assert await a.get_or_load("k", loader) == b"row"  # from the database, no error
        assert calls["n"] == 4 and a.redis_errors >= 1
        await a.invalidate("k")  # logged, never raised

        server.start()
        await wait_until(lambda: a.listening and b.listening, RECONNECT_BOUND)
        await asyncio.sleep(0.3)  # past redis_retry_seconds
        assert await a.get_or_load("k", loader) == b"row"
        before = calls["n"]
        assert await b.get_or_load("k", loader) == b"row" and calls["n"] == before  # L2 hit again
        seen = b.invalidations_received  # (A also repeats the invalidation it missed)
        await a.set("k", b"new")
        await wait_until(lambda: b.invalidations_received > seen, RECONNECT_BOUND)
        assert await b.get("k") == b"new"
    finally:
        await a.close()
        await b.close()


async def test_dispatch_wake_ups_degrade_to_local_and_come_back(outage):
    server, new_client, config = outage
    sender, receiver = DispatchWaker(new_client(), config.key_prefix), DispatchWaker(new_client(), config.key_prefix)
    await receiver.start()
    try:
        local, remote = sender.event(), receiver.event()
        server.stop()
        for _ in range(20):
            await sender.wake("s0")  # never raises; this process's dispatchers still wake
        assert local.is_set()
        server.start()
        await asyncio.sleep(DispatchWaker.PUBLISH_PAUSE_SECONDS)
        remote.clear()
        deadline = time.monotonic() + RECONNECT_BOUND
        while not remote.is_set():
            assert time.monotonic() < deadline, "wake-ups did not come back after Redis returned"
            await sender.wake("s0")
            await asyncio.sleep(0.2)
    finally:
        await receiver.close()



async def test_an_invalidation_redis_missed_is_repeated_when_it_answers_again(outage):
    # A network cut rather than a restart: Redis keeps its data, so the stale copy would be
    # served from Redis (and the other process's L1) unless the invalidation is repeated.
    # CLIENT PAUSE WRITE makes Redis hold every write (and PUBLISH) for a while: ours time out.
    _, new_client, config = outage
    namespace = f"{config.key_prefix}cache"
    a, b = TwoLevelCache(new_client(), namespace), TwoLevelCache(new_client(), namespace)
    await a.start()
    await b.start()
    admin = new_client()
    try:
        value = {"v": b"old"}

        async def loader():
            return value["v"]

        assert await b.get_or_load("k", loader) == b"old"  # in Redis and in B's L1
        await admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
        try:
            value["v"] = b"new"  # the database changes...
            await a.invalidate("k")  # ...and the invalidation cannot reach Redis
            assert a.redis_errors >= 1
            assert await b.get_or_load("k", loader) == b"old"  # stale, as expected meanwhile
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")
        await wait_until(lambda: b.invalidations_received >= 1, RECONNECT_BOUND)
        assert await b.get_or_load("k", loader) == b"new"
    finally:
        await a.close()
        await b.close()
