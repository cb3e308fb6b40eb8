"""Scrape-time collectors over figures other objects already keep: the two-level caches'
hit counters, the SQLAlchemy connection pools, and a readiness-check wrapper.

They run on the metrics server's thread and only read plain attributes, so nothing
here touches the event loop.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from wework.server.observability import metrics


class CacheStats(Protocol):
    """What TwoLevelCache exposes (read, never changed, by the collector)."""

    l1_hits: int
    l2_hits: int
    misses: int
    redis_errors: int


class CacheCollector(Collector):
    """wework_cache_requests_total{cache,result}, wework_cache_hit_ratio{cache} and
    wework_cache_redis_errors_total{cache} from the caches added to it."""

    def __init__(self) -> None:
        self._caches: dict[str, CacheStats] = {}
        self._lock = threading.Lock()

    def add(self, name: str, cache: CacheStats) -> Callable[[], None]:
        with self._lock:
            if name in self._caches:
                raise ValueError(f"a cache named {name!r} is already collected")
            self._caches[name] = cache

        def remove() -> None:
            with self._lock:
                if self._caches.get(name) is cache:
                    del self._caches[name]

        return remove

    def collect(self) -> Iterator[Any]:
        with self._lock:
            caches = sorted(self._caches.items())
        requests = CounterMetricFamily(
            "wework_cache_requests", "Two-level cache lookups by result: l1_hit, l2_hit (Redis), miss.",
            labels=("cache", "result"))
        ratio = GaugeMetricFamily(
            "wework_cache_hit_ratio", "Share of lookups answered by L1 or L2 since the process started.",
            labels=("cache",))
        errors = CounterMetricFamily(
            "wework_cache_redis_errors", "Redis failures the cache degraded around (served from the loader).",
            labels=("cache",))
        for name, cache in caches:
            l1, l2, miss = cache.l1_hits, cache.l2_hits, cache.misses
            requests.add_metric((name, "l1_hit"), l1)
            requests.add_metric((name, "l2_hit"), l2)
            requests.add_metric((name, "miss"), miss)
            total = l1 + l2 + miss
            if total:  # no lookups yet: no ratio rather than a misleading 0 or NaN
                ratio.add_metric((name,), (l1 + l2) / total)
            errors.add_metric((name,), cache.redis_errors)
        yield requests
        yield ratio
        yield errors


class PoolCollector(Collector):
    """wework_db_pool_connections{db,shard,state} and wework_db_pool_max_connections{db,shard}
    over the connection pools of the engines added to it (NullPool engines report nothing)."""

    def __init__(self) -> None:
        self._engines: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def add(self, engine: Any, db: str, shard: str | None) -> Callable[[], None]:
        """`engine`: an AsyncEngine or Engine; `shard` None (the directory) is reported as ""."""
        key = (db, shard or "")
        with self._lock:
            self._engines[key] = engine

        def remove() -> None:
            with self._lock:
                if self._engines.get(key) is engine:
                    del self._engines[key]

        return remove

    def collect(self) -> Iterator[Any]:
        with self._lock:
            engines = sorted(self._engines.items())
        connections = GaugeMetricFamily(
            "wework_db_pool_connections",
            "Connections of each database's pool: checked_out (in use), idle (open, in the pool), "
            "overflow (open beyond pool_size).", labels=("db", "shard", "state"))
        limits = GaugeMetricFamily(
            "wework_db_pool_max_connections", "pool_size + max_overflow of each database's pool.",
            labels=("db", "shard"))
        for (db, shard), engine in engines:
            pool = engine.pool  # a disposed engine has a fresh, empty pool: reads as zeros
            if not all(hasattr(pool, m) for m in ("checkedout", "checkedin", "overflow", "size")):
                continue  # NullPool/StaticPool: nothing pooled to report
            connections.add_metric((db, shard, "checked_out"), max(pool.checkedout(), 0))
            connections.add_metric((db, shard, "idle"), max(pool.checkedin(), 0))
            connections.add_metric((db, shard, "overflow"), max(pool.overflow(), 0))
            max_overflow = getattr(pool, "_max_overflow", 0)
            if max_overflow >= 0:  # -1: unbounded
                limits.add_metric((db, shard), pool.size() + max_overflow)
        yield connections
        yield limits


# One of each for the process; the Observability of a running server adds its sources.
CACHES = CacheCollector()
DB_POOLS = PoolCollector()
metrics.register_collector(CACHES)
metrics.register_collector(DB_POOLS)


ReadinessCheck = Callable[[], Awaitable[None]]


def observed_readiness(checks: Iterable[ReadinessCheck]) -> list[ReadinessCheck]:
    """The same checks, each setting wework_readiness{check=<its __name__>} to 1 or 0.

    A timeout (the health reporter cancels the check) counts as a failure.
    """
    out: list[ReadinessCheck] = []
    for check in checks:
        name = getattr(check, "__name__", None) or type(check).__name__

        async def wrapped(check: ReadinessCheck = check, name: str = name) -> None:
            gauge = metrics.READINESS.labels(check=name)
            try:
                await check()
            except BaseException:
                gauge.set(0)
                raise
            gauge.set(1)

        functools.update_wrapper(wrapped, check)
        # The health reporter names failing checks by __qualname__: keep it short.
        wrapped.__qualname__ = name
        out.append(wrapped)
    return out
