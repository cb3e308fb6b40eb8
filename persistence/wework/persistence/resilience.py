"""The one set of resilience helpers: close quietly, a Redis breaker, a resubscribing pub/sub
listener, and transaction retries (tenacity). Persistence is the lowest layer every user
(persistence, application, workers) can import, so they live here (docs/decisions/0036).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import ResponseError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential
from wework.persistence.errors import is_retryable

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]


# ---- close quietly ---------------------------------------------------------------------------


async def close_quietly(resource: Any, what: str = "resource") -> None:
    """Closes a session, connection or client (its `aclose()`, else `close()`) on a path that is
    already failing or ending: the original error matters more than a close on a connection that
    may be dead, so a failure is only logged at DEBUG."""
    try:
        close = getattr(resource, "aclose", None) or resource.close
        await close()
    except Exception:
        log.debug("closing the %s failed", what, exc_info=True)


# ---- the Redis breaker -----------------------------------------------------------------------


class RedisBreaker:
    """Stops using Redis for `pause_seconds` after a failure, so that a Redis that times out
    does not add its timeout to every request, commit or wake-up meanwhile; the caller takes
    its fallback (the database, the poll, the primary) while `is_open`.

    One rule for every user (the copies it replaces differed, see decision 0036):
    - any failure opens it, except a ResponseError: Redis answered (WRONGTYPE, NOPERM), so it
      is reachable and pausing would not help; that is logged at ERROR every time instead;
    - each failure (also one that was in flight when it opened) restarts the pause;
    - once the pause is over every caller tries again (no single probe: the calls are cheap and
      a failed one re-opens it for everyone);
    - the outage is logged once when it opens, and once when a call succeeds again.
    """

    def __init__(self, what: str, *, fallback: str, pause_seconds: float = 1.0,
                 clock: Clock = time.monotonic, logger: logging.Logger | None = None) -> None:
        if pause_seconds < 0:
            raise ValueError("pause_seconds must be >= 0")
        self.what = what
        self.fallback = fallback
        self.pause_seconds = pause_seconds
        self._clock = clock
        self._log = logger or log
        self._open_until = 0.0
        self._healthy = True
        self.failures = 0

    @property
    def is_open(self) -> bool:
        """True while paused: skip Redis, use the fallback."""
        return self._clock() < self._open_until

    @property
    def healthy(self) -> bool:
        """False from a failure until the next success."""
        return self._healthy

    def failed(self, exc: BaseException, *, level: int = logging.WARNING) -> None:
        """Records a failed Redis call. `level` ERROR logs even if the outage is already known
        (for failures that lose more than a hint, e.g. an invalidation)."""
        self.failures += 1
        if isinstance(exc, ResponseError):
            self._log.error("%s: Redis refused the command: %s", self.what, exc)
            return
        self._open_until = self._clock() + self.pause_seconds
        if self._healthy or level >= logging.ERROR:
            self._log.log(level, "%s: Redis unreachable (%r); %s, retrying Redis after %.1f s",
                          self.what, exc, self.fallback, self.pause_seconds)
        self._healthy = False

    def succeeded(self) -> None:
        if not self._healthy:
            self._log.info("%s: Redis reachable again", self.what)
            self._healthy = True


# ---- the resubscribing listener --------------------------------------------------------------


async def listen(client: Any, on_message: Callable[[dict[str, Any]], None], *, what: str,
                 channels: Sequence[str] = (), patterns: Sequence[str] = (),
                 on_tick: Callable[[], Awaitable[None]] | None = None,
                 on_disconnect: Callable[[], None] | None = None,
                 poll_seconds: float = 1.0, first_delay: float = 0.1, max_delay: float = 5.0) -> None:
    """Runs until cancelled: subscribes to `channels` and `patterns` and hands every message to
    `on_message`, subscribe confirmations included (after a resubscription messages may have
    been missed: that is the user's cue to catch up).

    After any failure it calls `on_disconnect`, closes the PubSub and resubscribes with a
    backoff of `first_delay` doubling to `max_delay` (reset once subscribed). `on_tick` runs
    after every wait for a message (at least every `poll_seconds`) while connected. The outage
    is logged once when it starts and once when the subscriber is back.

    Works on a single server and on a Redis Cluster (redis.client.subscriber). For hints only:
    the users also poll or bound their staleness otherwise, so a gap loses no work.
    """
    # Imported here: the redis package imports the cache, which imports this module.
    from wework.persistence.redis.client import subscriber

    delay = first_delay
    healthy = True
    while True:
        pubsub = None
        try:
            pubsub = await subscriber(client)
            if channels:
                await pubsub.subscribe(*channels)
            if patterns:
                await pubsub.psubscribe(*patterns)
            delay = first_delay
            if not healthy:
                log.info("%s: subscriber connected again", what)
                healthy = True
            while True:
                message = await pubsub.get_message(timeout=poll_seconds)
                if on_tick is not None:
                    await on_tick()
                if message is not None:
                    on_message(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: resubscribe after a pause
            if healthy:
                log.warning("%s: subscriber down, resubscribing: %r", what, exc)
                healthy = False
        finally:
            if on_disconnect is not None:
                on_disconnect()
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)


# ---- retries ---------------------------------------------------------------------------------


async def retrying(fn: Callable[[], Awaitable[T]], attempts: int = 3, *,
                   retry_on: Callable[[BaseException], bool] = is_retryable, first_wait: float = 0.02) -> T:
    """Runs a whole transaction again after a deadlock or lock wait timeout (MySQL 1213/1205; or
    whatever `retry_on` accepts), up to `attempts` times with an exponential pause (`first_wait`,
    then doubling, at most 2 s); any other error, and the last attempt's, is raised as is."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(retry_on),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=first_wait, min=first_wait, max=2.0),
        reraise=True,
    ):
        with attempt:
            return await fn()
    raise AssertionError("unreachable")  # tenacity either returns or raises


__all__ = ["RedisBreaker", "close_quietly", "listen", "retrying"]
