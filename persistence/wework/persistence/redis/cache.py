"""Two-level cache: an in-process LRU (L1) over Redis (L2), L1 invalidated across processes by pub/sub.

The database is the truth; this cache only saves reads. Every Redis failure degrades to
the loader and is logged and counted, never raised.

Layout in Redis (one hash per cache key, so it always sits in one cluster slot):

    <namespace>:<key>           hash {"g": generation, "v": b"<generation>:" + (b"=" + value | b"!")}
    <namespace>:invalidate      pub/sub channel, messages b"<origin>|<key>"

`invalidate` bumps "g" and deletes "v". A load that read the hash before that bump writes
"v" stamped with the old generation, and readers ignore a "v" whose stamp is not the
current "g": a slow stale load can never resurrect an invalidated value in L2. (A Lua
compare-and-set would do the same; the stamp needs no script, is one code path for a real
and the embedded Redis alike, and costs no extra round trip, so it stays.)

L1 is used only while the invalidation subscriber is connected, and is emptied whenever
it (re)subscribes, because messages published in between are lost. Worst case (a message
lost on a connection that looked alive), an L1 entry is stale for at most `local_ttl`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from redis.exceptions import RedisError
from wework.persistence.redis.client import RedisClient
from wework.persistence.resilience import RedisBreaker, listen

from ..background import cancel_and_wait

logger = logging.getLogger(__name__)

Loader = Callable[[], Awaitable[bytes | None]]
T = TypeVar("T")

_NEGATIVE = object()  # L1 value meaning "the loader found nothing"
_POSITIVE_TAG = b"="
_NEGATIVE_TAG = b"!"
_REDIS_ERRORS = (RedisError, OSError)


@dataclass
class _Pending:
    """Reads/loads of one key in flight; `generation` moves on every local invalidation,
    so a read that started before it does not store its (maybe stale) result in L1."""

    readers: int = 0
    generation: int = 0


class _L2(NamedTuple):
    generation: int  # the hash's "g" when read; stamps what a load writes back
    hit: bool
    value: bytes | None  # None on a hit means a cached negative


class TwoLevelCache:
    """`namespace` is the Redis key prefix of this cache, e.g. key(config, "cache", "tenant").

    Call `start()` before use (it runs the invalidation subscriber; without it only L2 is
    used) and `close()` at shutdown. The Redis client stays owned by the caller.
    """

    def __init__(
        self,
        redis: RedisClient,
        namespace: str,
        *,
        local_ttl: float = 30.0,
        redis_ttl: float = 300.0,
        max_local_entries: int = 10_000,
        negative_ttl: float = 5.0,
        redis_retry_seconds: float = 1.0,
    ) -> None:
        if not namespace:
            raise ValueError("namespace must not be empty")
        if local_ttl <= 0 or redis_ttl <= 0 or negative_ttl < 0 or redis_retry_seconds < 0:
            raise ValueError("ttls must be positive (negative_ttl may be 0 to disable negative caching)")
        if max_local_entries < 0:
            raise ValueError("max_local_entries must be >= 0")
        self._redis = redis
        self.namespace = namespace
        self.local_ttl = local_ttl
        self.redis_ttl = redis_ttl
        self.max_local_entries = max_local_entries
        self.negative_ttl = negative_ttl
        self.redis_retry_seconds = redis_retry_seconds
        self.channel = f"{namespace}:invalidate"
        # Our own messages are skipped: invalidate() already dropped the entry locally,
        # and dropping it again would only evict a value reloaded since.
        self._origin = uuid.uuid4().hex.encode()

        self._l1: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self._loads: dict[str, asyncio.Task[bytes | None]] = {}
        self._listening = False
        self._task: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Event | None = None
        # After a Redis failure L2 is skipped for redis_retry_seconds (reads go to the loader).
        self._l2 = RedisBreaker(f"cache {namespace}", fallback="using the database",
                                pause_seconds=redis_retry_seconds, logger=logger)

        # Counters, read by metrics.
        self.l1_hits = 0
        self.l2_hits = 0
        self.misses = 0
        self.loads = 0
        self.invalidations_received = 0
        # Keys whose set/invalidate did not reach Redis: invalidated there once it answers again,
        # so a copy that survived the outage (a network cut, not a restart) is not served on.
        self._unsent: set[str] = set()

    # ---- public API ----------------------------------------------------------------

    @property
    def redis_errors(self) -> int:
        """Redis failures degraded around (a counter, read by metrics)."""
        return self._l2.failures

    @property
    def listening(self) -> bool:
        """True while the invalidation subscriber is connected (L1 in use)."""
        return self._listening

    async def get(self, key: str) -> bytes | None:
        """The cached value, or None on a miss (or a cached negative)."""
        hit, value = self._l1_get(key)
        if hit:
            self.l1_hits += 1
            return value
        with self._track(key) as (pending, generation):
            l2 = await self._l2_read_through(key, pending, generation)
            if l2 is not None and l2.hit:
                return l2.value
        self.misses += 1
        return None

    async def get_or_load(
        self, key: str, loader: Loader, *, negative_ttl: float | None = None
    ) -> bytes | None:
        """The cached value, else `await loader()` (stored in L2 and L1).

        A None from the loader is cached for `negative_ttl` seconds (default: the cache's;
        0 disables). Concurrent misses of one key in this process share one loader call.
        Loader exceptions propagate and nothing is cached.
        """
        hit, value = self._l1_get(key)
        if hit:
            self.l1_hits += 1
            return value
        task = self._loads.get(key)
        if task is None:
            # A task of its own, so a cancelled first caller does not cancel the others.
            task = asyncio.ensure_future(self._fill(key, loader, negative_ttl))
            task.add_done_callback(_consume_exception)
            self._loads[key] = task
            task.add_done_callback(
                lambda t, k=key: self._loads.pop(k, None) if self._loads.get(k) is t else None
            )
        return await asyncio.shield(task)

    async def set(self, key: str, value: bytes) -> None:
        """Writes a known-current value (e.g. right after a database write) and tells the
        other processes to drop their L1 copy."""
        value = _as_bytes(value)
        self._drop_local(key)
        with self._track(key) as (pending, generation):
            rkey = self._rkey(key)
            try:
                gen = int(await self._redis.hincrby(rkey, "g", 1))
                pipe = self._redis.pipeline(transaction=False)
                pipe.hset(rkey, "v", b"%d:" % gen + _POSITIVE_TAG + value)
                pipe.pexpire(rkey, _ms(self.redis_ttl))
                await pipe.execute()
                await self._publish(key)
                self._unsent.discard(key)
                self._l2_ok()
            except _REDIS_ERRORS as exc:
                self._remember_unsent(key)
                self._l2_failed("set", exc)
            self._l1_put(key, value, pending, generation)

    async def invalidate(self, key: str) -> None:
        """Drops the key here, in Redis, and (via pub/sub) in every other process's L1.

        Never raises: if Redis is unreachable the failure is logged and the invalidation is
        repeated once Redis answers again (while this process runs; at worst the Redis copy
        lives `redis_ttl` more).
        """
        self._drop_local(key)
        try:
            await self._invalidate_remote(key)
            self._l2_ok()
        except _REDIS_ERRORS as exc:
            self._remember_unsent(key)
            self._l2_failed("invalidate", exc, level=logging.ERROR)

    async def _invalidate_remote(self, key: str) -> None:
        rkey = self._rkey(key)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(rkey, "g", 1)
        pipe.hdel(rkey, "v")
        # Keep "g" as long as any value could live, so a stale write-back stays detectable.
        pipe.pexpire(rkey, _ms(self.redis_ttl))
        await pipe.execute()
        await self._publish(key)
        self._unsent.discard(key)

    def _remember_unsent(self, key: str) -> None:
        if len(self._unsent) < 100_000:  # beyond that, redis_ttl bounds the staleness anyway
            self._unsent.add(key)

    async def _flush_unsent(self) -> None:
        """Repeats the invalidations Redis missed; stops at the first failure (still down)."""
        for key in list(self._unsent):
            try:
                await self._invalidate_remote(key)
            except _REDIS_ERRORS:
                return
        logger.info("cache %s: invalidations missed during the Redis outage repeated", self.namespace)

    async def start(self, *, timeout: float = 5.0) -> None:
        """Starts the invalidation subscriber and waits (up to `timeout`) for its first
        attempt. Does not raise when Redis is down: it keeps retrying in the background."""
        if self._task is not None:
            return
        self._first_attempt = asyncio.Event()
        self._task = asyncio.create_task(self._subscribe_loop(), name=f"cache-invalidation:{self.namespace}")
        try:
            await asyncio.wait_for(self._first_attempt.wait(), timeout)
        except TimeoutError:
            logger.warning(
                "cache %s: invalidation subscriber not ready after %.1f s", self.namespace, timeout
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._listening = False
        self._clear_local()

    def clear_local(self) -> None:
        """Empties this process's L1 only."""
        self._clear_local()

    # ---- fill ----------------------------------------------------------------------

    async def _fill(self, key: str, loader: Loader, negative_ttl: float | None) -> bytes | None:
        neg_ttl = self.negative_ttl if negative_ttl is None else negative_ttl
        with self._track(key) as (pending, generation):
            l2 = await self._l2_read_through(key, pending, generation)
            if l2 is not None and l2.hit:
                return l2.value
            self.misses += 1
            self.loads += 1
            value = await loader()
            if value is not None:
                value = _as_bytes(value)
            if pending.generation != generation:
                # Invalidated while loading: the value may predate the write; serve it to
                # this caller (its read raced the write anyway) but cache nothing.
                return value
            if value is None and neg_ttl <= 0:
                return None
            if l2 is not None:
                body = _NEGATIVE_TAG if value is None else _POSITIVE_TAG + value
                await self._l2_write(
                    key, l2.generation, body, self.redis_ttl if value is not None else neg_ttl
                )
            self._l1_put(key, value, pending, generation, ttl=None if value is not None else neg_ttl)
            return value

    # ---- L1 ------------------------------------------------------------------------

    def _l1_get(self, key: str) -> tuple[bool, bytes | None]:
        if not self._listening:
            return False, None
        entry = self._l1.get(key)
        if entry is None:
            return False, None
        expires_at, value = entry
        if expires_at <= time.monotonic():
            del self._l1[key]
            return False, None
        self._l1.move_to_end(key)
        return True, None if value is _NEGATIVE else value  # type: ignore[return-value]

    def _l1_put(
        self, key: str, value: bytes | None, pending: _Pending, generation: int, *, ttl: float | None = None
    ) -> None:
        if not self._listening or self.max_local_entries == 0 or pending.generation != generation:
            return
        if value is None:
            ttl = min(self.local_ttl, ttl if ttl is not None else self.negative_ttl)
            if ttl <= 0:
                return
        else:
            ttl = self.local_ttl
        self._l1[key] = (time.monotonic() + ttl, _NEGATIVE if value is None else value)
        self._l1.move_to_end(key)
        while len(self._l1) > self.max_local_entries:
            self._l1.popitem(last=False)

    @contextmanager
    def _track(self, key: str) -> Iterator[tuple[_Pending, int]]:
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
        pending.readers += 1
        try:
            yield pending, pending.generation
        finally:
            pending.readers -= 1
            if pending.readers == 0 and self._pending.get(key) is pending:
                del self._pending[key]

    def _drop_local(self, key: str) -> None:
        self._l1.pop(key, None)
        pending = self._pending.get(key)
        if pending is not None:
            pending.generation += 1
        # Callers arriving after the invalidation must not join a load that started before it.
        self._loads.pop(key, None)

    def _clear_local(self) -> None:
        self._l1.clear()
        for pending in self._pending.values():
            pending.generation += 1
        self._loads.clear()

    # ---- L2 ------------------------------------------------------------------------

    def _rkey(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    async def _l2_read_through(self, key: str, pending: _Pending, generation: int) -> _L2 | None:
        """_l2_read; a hit is counted and kept in L1 too (unless invalidated meanwhile)."""
        l2 = await self._l2_read(key)
        if l2 is not None and l2.hit:
            self.l2_hits += 1
            self._l1_put(key, l2.value, pending, generation)
        return l2

    async def _l2_read(self, key: str) -> _L2 | None:
        """None when Redis is unavailable (or recently failed: don't pay a timeout per read)."""
        if self._l2.is_open:
            return None
        try:
            raw_gen, raw = await self._redis.hmget(self._rkey(key), "g", "v")
        except _REDIS_ERRORS as exc:
            self._l2_failed("read", exc)
            return None
        self._l2_ok()
        generation = int(raw_gen) if raw_gen is not None else 0
        if raw is None:
            return _L2(generation, False, None)
        stamp, sep, body = raw.partition(b":")
        if not sep or not stamp.isdigit() or int(stamp) != generation:
            return _L2(generation, False, None)  # written by a load that lost a race with invalidate
        if body == _NEGATIVE_TAG:
            return _L2(generation, True, None)
        if body[:1] == _POSITIVE_TAG:
            return _L2(generation, True, body[1:])
        return _L2(generation, False, None)

    async def _l2_write(self, key: str, generation: int, body: bytes, ttl: float) -> None:
        if self._l2.is_open:
            return
        rkey = self._rkey(key)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(rkey, "v", b"%d:" % generation + body)
            pipe.pexpire(rkey, _ms(ttl))
            await pipe.execute()
            self._l2_ok()
        except _REDIS_ERRORS as exc:
            self._l2_failed("write", exc)

    async def _publish(self, key: str) -> None:
        await self._redis.publish(self.channel, self._origin + b"|" + key.encode())

    def _l2_failed(self, op: str, exc: BaseException, *, level: int = logging.WARNING) -> None:
        logger.debug("cache %s: redis %s failed: %r", self.namespace, op, exc)
        self._l2.failed(exc, level=level)

    def _l2_ok(self) -> None:
        self._l2.succeeded()

    # ---- invalidation subscriber ---------------------------------------------------

    async def _subscribe_loop(self) -> None:
        await listen(self._redis, self._on_subscriber_message, what=f"cache {self.namespace}: invalidations",
                     channels=[self.channel], on_tick=self._on_subscriber_tick,
                     on_disconnect=self._on_subscriber_down)

    def _on_subscriber_message(self, message: dict) -> None:
        kind = message["type"]
        if isinstance(kind, bytes):
            kind = kind.decode()
        if kind == "subscribe":
            # First subscription, or a resubscription: whatever was published meanwhile is
            # lost, so start empty.
            self._clear_local()
            self._listening = True
            if self._first_attempt is not None:
                self._first_attempt.set()
        elif kind == "message":
            self._on_message(message["data"])

    async def _on_subscriber_tick(self) -> None:
        if self._unsent:
            await self._flush_unsent()

    def _on_subscriber_down(self) -> None:
        # L1 is off until the resubscription: invalidations are being missed.
        self._listening = False
        self._clear_local()
        if self._first_attempt is not None:
            self._first_attempt.set()

    def _on_message(self, data: bytes) -> None:
        origin, sep, raw_key = data.partition(b"|")
        if not sep or origin == self._origin:
            return
        self.invalidations_received += 1
        self._drop_local(raw_key.decode("utf-8", "replace"))


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cache values are bytes, got {type(value).__name__} (serialize first)")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _consume_exception(task: asyncio.Task) -> None:
    # The error reaches whoever awaited the load; this only keeps asyncio from logging
    # "exception was never retrieved" when every waiter was cancelled.
    if not task.cancelled():
        task.exception()


class DecodedEntries(Generic[T]):
    """What callers decoded from cache entries, kept per key while the entry's bytes stay the
    same: hot paths (every authenticated call, every send) read the same few entries over and
    over, and JSON decoding, hashing or decryption is then done once per version of an entry.
    A changed entry (invalidated and reloaded) has other bytes and is decoded again, so this
    adds no staleness to the cache's own. Bounded: emptied when `max_entries` keys are held.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._known: dict[str, tuple[bytes | None, T]] = {}

    def get(self, key: str, raw: bytes | None, decode: Callable[[bytes | None], T]) -> T:
        """decode(raw), or what it gave for the same `key` and bytes before. An exception
        from `decode` propagates and nothing is kept."""
        known = self._known.get(key)
        if known is not None and known[0] == raw:
            return known[1]
        value = decode(raw)
        if len(self._known) >= self._max_entries:
            self._known.clear()
        self._known[key] = (raw, value)
        return value

    def last(self, key: str) -> T | None:
        """The value last decoded for `key`, whatever the entry holds now."""
        known = self._known.get(key)
        return None if known is None else known[1]
