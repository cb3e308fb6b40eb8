"""The metrics registry, the /metrics endpoint and the scrape-time collectors, over the
real cache (embedded Redis) and real SQLite pools."""

from __future__ import annotations

import asyncio
import uuid

import harness
import pytest
import sqlalchemy as sa
from harness import httpcall
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from wework.persistence.config import RedisConfig
from wework.persistence.database import Database
from wework.persistence.redis.cache import TwoLevelCache
from wework.persistence.redis.client import create_redis
from wework.server.observability import collectors, metrics
from wework.server.observability.metrics import REGISTRY, register_collector, start_metrics_server


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpcall.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_observe_rpc_counts_per_service_method_and_code():
    method = f"/wework.v1.TestService/M{uuid.uuid4().hex[:8]}"
    service, name = metrics.split_method(method)
    assert service == "wework.v1.TestService"
    metrics.observe_rpc(method, "OK", 0.003)
    metrics.observe_rpc(method, "OK", 0.2)
    metrics.observe_rpc(method, "NOT_FOUND", 0.001)
    labels = {"service": service, "method": name}
    assert value("wework_rpc_requests_total", **labels, code="OK") == 2
    assert value("wework_rpc_requests_total", **labels, code="NOT_FOUND") == 1
    assert value("wework_rpc_duration_seconds_count", **labels, code="OK") == 2
    assert value("wework_rpc_duration_seconds_sum", **labels, code="OK") == pytest.approx(0.203)
    assert value("wework_rpc_duration_seconds_bucket", **labels, code="OK", le="0.005") == 1
    assert value("wework_rpc_duration_seconds_bucket", **labels, code="OK", le="0.25") == 2


def test_metrics_endpoint_serves_the_registry_and_closes():
    server = start_metrics_server("127.0.0.1", 0)
    try:
        assert server.port > 0
        metrics.QUEUE_DEPTH.labels(queue="messages", shard="s-test").set(7)
        samples = scrape(server.port)
        assert samples[("wework_queue_depth", (("queue", "messages"), ("shard", "s-test")))] == 7
        assert any(name == "process_cpu_seconds_total" for name, _ in samples)  # process collector
    finally:
        server.close()
    with pytest.raises(httpcall.TRANSPORT_ERRORS):
        httpcall.get(f"http://127.0.0.1:{server.port}/metrics", timeout=2)


def test_a_taken_port_raises():
    server = start_metrics_server("127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            start_metrics_server("127.0.0.1", server.port)
    finally:
        server.close()


def test_register_collector_adds_and_removes():
    class Custom:
        def collect(self):
            family = GaugeMetricFamily("wework_test_custom", "test", labels=("x",))
            family.add_metric(("a",), 3)
            yield family

    unregister = register_collector(Custom())
    try:
        assert value("wework_test_custom", x="a") == 3
    finally:
        unregister()
    unregister()  # idempotent
    assert REGISTRY.get_sample_value("wework_test_custom", {"x": "a"}) is None


async def test_cache_collector_reads_the_cache_counters():
    redis = create_redis(RedisConfig(url="memory://"))
    cache = TwoLevelCache(redis, f"obs-test-{uuid.uuid4().hex[:8]}")
    await cache.start()
    name = f"c{uuid.uuid4().hex[:6]}"
    remove = collectors.CACHES.add(name, cache)
    try:
        assert REGISTRY.get_sample_value("wework_cache_hit_ratio", {"cache": name}) is None  # no lookups yet

        async def load() -> bytes:
            return b"v"

        await cache.get_or_load("k", load)  # miss, loaded
        await cache.get_or_load("k", load)  # L1 hit
        cache.clear_local()
        await cache.get("k")  # L2 hit
        assert value("wework_cache_requests_total", cache=name, result="miss") == 1
        assert value("wework_cache_requests_total", cache=name, result="l1_hit") == 1
        assert value("wework_cache_requests_total", cache=name, result="l2_hit") == 1
        assert value("wework_cache_hit_ratio", cache=name) == pytest.approx(2 / 3)
        assert value("wework_cache_redis_errors_total", cache=name) == 0
        with pytest.raises(ValueError):
            collectors.CACHES.add(name, cache)
    finally:
        remove()
        await cache.close()
        await redis.aclose()
    assert REGISTRY.get_sample_value("wework_cache_requests_total", {"cache": name, "result": "miss"}) is None


async def test_pool_collector_follows_checkouts_through_the_engine_hook(tmp_path):
    config = harness.make_sqlite_config(tmp_path)
    created: list[tuple[str, str | None]] = []
    removers = []

    def hook(engine, db, shard):
        created.append((db, shard))
        removers.append(collectors.DB_POOLS.add(engine, db, shard))

    db = Database(config, ("user",), on_engine_created=hook)
    await db.start()
    try:
        assert sorted(created, key=str) == [("directory", None), ("user", "s0")]
        labels = {"db": "user", "shard": "s0"}
        assert value("wework_db_pool_connections", **labels, state="checked_out") == 0
        # SQLite engines keep SQLAlchemy's pool defaults: 5 + 10 overflow.
        assert value("wework_db_pool_max_connections", **labels) == 15
        async with db.engine("user", "s0").connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
            assert value("wework_db_pool_connections", **labels, state="checked_out") == 1
        assert value("wework_db_pool_connections", **labels, state="checked_out") == 0
        assert value("wework_db_pool_connections", **labels, state="idle") == 1
        assert value("wework_db_pool_connections", **labels, state="overflow") == 0
        # The directory has no shard: reported with shard="".
        assert REGISTRY.get_sample_value("wework_db_pool_connections",
                                         {"db": "directory", "shard": "", "state": "idle"}) is not None
    finally:
        for remove in removers:
            remove()
        await db.dispose()
    assert REGISTRY.get_sample_value("wework_db_pool_connections",
                                     {"db": "user", "shard": "s0", "state": "idle"}) is None


async def test_observed_readiness_reports_each_check():
    suffix = uuid.uuid4().hex[:6]
    state = {"ok": True}

    async def fine() -> None:
        pass

    async def flaky() -> None:
        if not state["ok"]:
            raise ConnectionError("down")

    async def slow() -> None:
        await asyncio.sleep(10)

    fine.__name__, flaky.__name__, slow.__name__ = f"fine{suffix}", f"flaky{suffix}", f"slow{suffix}"
    wrapped = collectors.observed_readiness([fine, flaky, slow])
    assert [w.__qualname__ for w in wrapped] == [f"fine{suffix}", f"flaky{suffix}", f"slow{suffix}"]
    await wrapped[0]()
    await wrapped[1]()
    assert value("wework_readiness", check=f"fine{suffix}") == 1
    assert value("wework_readiness", check=f"flaky{suffix}") == 1
    state["ok"] = False
    with pytest.raises(ConnectionError):
        await wrapped[1]()
    assert value("wework_readiness", check=f"flaky{suffix}") == 0
    with pytest.raises(TimeoutError):  # the health reporter's timeout cancels the check
        await asyncio.wait_for(wrapped[2](), 0.05)
    assert value("wework_readiness", check=f"slow{suffix}") == 0
