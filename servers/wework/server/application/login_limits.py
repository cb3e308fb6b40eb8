"""Login rate limits: attempts per source address and per tenant code, shared through Redis.

Login is the one method anyone can call, and each attempt costs an Argon2 computation (tens
of ms of CPU and 64 MiB). These limits refuse a flood before any database read or hash:
RESOURCE_EXHAUSTED (QUOTA_EXCEEDED) with a QuotaFailure naming the limit and a RetryInfo
delay until its window ends. Every attempt counts, whatever its outcome and whether the
tenant code or username exists, so the answers reveal nothing about either.

Counting: one fixed window per key (INCR, EXPIRE NX, PTTL for the delay, pipelined: one round
trip per key, also on Redis Cluster), so the limits hold across every server process. EXPIRE NX
runs with every attempt, so a window whose first EXPIRE was lost still ends. Once a window is
full, the process remembers until when: further attempts under that key are refused without a
Redis round trip (a flood's refusals are its cheapest calls; they need no counting, the window
ends at the same time anyway). While Redis cannot be
reached, each process counts on its own with the same rule (a flood then meets the limit once
per process instead of once in all), so the limit never turns into an open door.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from redis.exceptions import RedisError
from wework.domain.errors import QuotaExceeded, QuotaViolation
from wework.persistence.redis.client import RedisClient
from wework.server.observability.metrics import LOGIN_ATTEMPTS_LIMITED

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# A refusal is answered after this delay, up to MAX_HELD_REFUSALS at a time: a caller looping
# Login as fast as answers come (the usual flood) then costs the server one cheap call per
# second and connection instead of hundreds. Past the bound (an open-loop flood), at once: a
# held call costs memory, and it must never grow without bound.
REFUSAL_DELAY_SECONDS = 1.0
MAX_HELD_REFUSALS = 1000
_LOCAL_MAX_KEYS = 100_000  # the fallback's memory bound; beyond it, windows start over


@dataclass(frozen=True)
class LoginLimits:
    per_source_per_minute: int = 60
    per_tenant_per_minute: int = 300


class LoginRateLimiter:
    def __init__(self, redis: RedisClient, key_prefix: str, limits: LoginLimits) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}login:"
        self.limits = limits
        self._local: dict[str, tuple[int, float]] = {}  # key -> (count, window end on the monotonic clock)
        self._full: dict[str, float] = {}  # key -> end of its full window (monotonic clock)
        self._held = 0
        self._redis_healthy = True

    async def admit(self, tenant_code: str, source: str | None) -> None:
        """Counts one attempt; raises QuotaExceeded when the source's or the tenant's window is
        full. A refused source does not count against its tenant: one noisy address cannot use
        up a tenant's logins by itself beyond its own limit."""
        await self._take("source", source or "unknown", self.limits.per_source_per_minute,
                         f"login attempts from {source or 'this source'}")
        await self._take("tenant", tenant_code, self.limits.per_tenant_per_minute,
                         f"login attempts for tenant code {tenant_code}")

    async def _take(self, limit: str, subject: str, allowed: int, what: str) -> None:
        key = f"{self._prefix}{limit}:{subject}"
        now = time.monotonic()
        full_until = self._full.get(key, 0.0)
        if full_until <= now:
            count, retry_after = await self._count(key)
            if count <= allowed:
                return
            if len(self._full) >= _LOCAL_MAX_KEYS:
                self._full = {k: v for k, v in self._full.items() if v > now}
            full_until = self._full[key] = now + retry_after
        LOGIN_ATTEMPTS_LIMITED.labels(limit=limit).inc()
        if self._held < MAX_HELD_REFUSALS:
            self._held += 1
            try:
                await asyncio.sleep(min(REFUSAL_DELAY_SECONDS, full_until - now))
            finally:
                self._held -= 1
        retry_after = max(1, math.ceil(full_until - time.monotonic()))
        raise QuotaExceeded(
            f"too many login attempts; retry in {retry_after} s",
            [QuotaViolation(f"logins/{limit}/{subject}",
                            f"{what}: at most {allowed} per {WINDOW_SECONDS} s")],
            retry_after_seconds=retry_after)

    async def _count(self, key: str) -> tuple[int, int]:
        """(attempts in the key's current window including this one, seconds until it ends)."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS, nx=True)
            pipe.pttl(key)
            count, _, ttl_ms = await pipe.execute()
        except (RedisError, OSError) as exc:
            if self._redis_healthy:
                log.warning("login rate limit: Redis unreachable, counting in this process: %r", exc)
                self._redis_healthy = False
            return self._count_locally(key)
        if not self._redis_healthy:
            log.info("login rate limit: Redis reachable again")
            self._redis_healthy = True
        return int(count), max(1, math.ceil(max(int(ttl_ms), 0) / 1000))

    def _count_locally(self, key: str) -> tuple[int, int]:
        now = time.monotonic()
        count, ends = self._local.get(key, (0, 0.0))
        if ends <= now:
            if len(self._local) >= _LOCAL_MAX_KEYS:
                self._local = {k: v for k, v in self._local.items() if v[1] > now}
            count, ends = 0, now + WINDOW_SECONDS
        self._local[key] = (count + 1, ends)
        return count + 1, max(1, math.ceil(ends - now))
