"""Send pacing shared by every dispatcher: the account's interval and its per-minute and per-hour
ceilings, and the per-recipient limits (domain/dispatch.py PacingLimits; docs/pacing.md).

A dispatcher asks for a reservation before each send. The answer is how long to wait; when the
wait is short enough to sleep through, the slot is taken at once (the account's next allowed
time moves on, the windows count the send), so two dispatchers asking for one account get two
different slots. The Redis version does this in one Lua script on the Redis clock, so the limits
hold across any number of dispatcher processes and hosts. When Redis cannot answer, it raises
PacingUnavailable and the dispatcher holds the send: pacing never falls back to a per-process
view, which with P dispatchers would let an account send P times too often. The local version
is the embedded mode's (one process, `memory://` Redis).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from wework.domain.dispatch import PacingLimits, PacingState
from wework.persistence.redis.client import hash_tag


@dataclass(frozen=True)
class Reservation:
    wait: float  # seconds from now until the send may go
    reserved: bool  # False: the wait was longer than the horizon and nothing was taken
    account_bound: bool  # the account (interval or its ceilings), not a recipient's limit, set the time


class PacingUnavailable(Exception):
    """The shared pacing state cannot be read: the send must wait (hold), never go unpaced."""


class Pacing(Protocol):
    async def reserve(self, account_id: str, conversation_id: str, token: str, *, horizon: float,
                      limits: PacingLimits) -> Reservation:
        """A slot for one send, or how long until there is one (see Reservation). `limits` are
        the account's (overrides and a batch task's slower rate applied); `token` names the send
        (the message id). Raises PacingUnavailable when no decision can be made."""
        ...


class LocalPacing:
    """One process's view (domain PacingState on the monotonic clock): the embedded mode."""

    def __init__(self, rnd: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._state = PacingState()
        self._rnd = rnd or random.Random()
        self._clock = clock  # seconds; a test may read slots on the wall clock

    async def reserve(self, account_id: str, conversation_id: str, token: str, *, horizon: float,
                      limits: PacingLimits) -> Reservation:
        now = self._clock()
        ready, bound = self._state.ready_at(account_id, conversation_id, now, limits)
        if ready - now > horizon:
            return Reservation(ready - now, False, bound)
        self._state.record(account_id, conversation_id, ready, limits.gap(self._rnd))
        return Reservation(max(0.0, ready - now), True, bound)


# KEYS[1]: the account's next allowed send time; KEYS[2]: the account's sends of the last hour;
# KEYS[3]: the recipient's sends of the last hour (sorted sets, score = send time). All carry the
# account's hash tag: one cluster slot, so one script decides atomically.
# ARGV: gap (interval + this send's jitter), account per_minute, per_hour, recipient per_minute,
# per_hour (0: no ceiling), horizon, token.
# Slots of one account only grow (each is at or after the account's next allowed time), so the
# n-th latest send of a window decides when the next may go. Times are the Redis server's clock
# in seconds; numbers go back as strings (Lua numbers would be truncated to integers).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local gap, horizon = tonumber(ARGV[1]), tonumber(ARGV[6])
local function window_ready(key, per_minute, per_hour, at)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (now - 3600))
  local n = redis.call('ZCARD', key)
  if per_hour > 0 and n >= per_hour then
    local s = redis.call('ZRANGE', key, n - per_hour, n - per_hour, 'WITHSCORES')
    at = math.max(at, tonumber(s[2]) + 3600)
  end
  if per_minute > 0 and n >= per_minute then
    local s = redis.call('ZRANGE', key, n - per_minute, n - per_minute, 'WITHSCORES')
    at = math.max(at, tonumber(s[2]) + 60)
  end
  return at
end
local account = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
account = window_ready(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]), account)
local ready = window_ready(KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]), account)
local bound = 0
if account >= ready and ready > now then bound = 1 end
if ready - now > horizon then
  return {tostring(ready - now), 0, bound}
end
redis.call('SET', KEYS[1], tostring(ready + gap), 'PX', math.ceil((ready - now + gap + 60) * 1000))
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], ready, ARGV[7])
  redis.call('EXPIRE', KEYS[i], math.ceil(ready - now + 3660))
end
return {tostring(ready - now), 1, bound}
"""


class RedisPacing:
    """Pacing state in Redis, shared by every dispatcher of the deployment."""

    # Decisions in flight at once per process: a dispatcher runs up to max_in_flight lanes, and
    # one Redis connection each would exhaust the client's pool (which the caches share) - an
    # error that would hold sends for nothing. Each decision is one short script.
    MAX_CONCURRENT = 16

    def __init__(self, redis: Any, key_prefix: str, rnd: random.Random | None = None) -> None:
        self._redis, self._prefix = redis, key_prefix
        self._rnd = rnd or random.Random()
        self._script = redis.register_script(_RESERVE)
        self._slots = asyncio.Semaphore(self.MAX_CONCURRENT)

    def keys(self, account_id: str, conversation_id: str) -> list[str]:
        """The account's next time, its window and the recipient's window (one hash tag)."""
        tag = hash_tag(account_id)
        return [f"{self._prefix}pace:{tag}:next", f"{self._prefix}pace:{tag}:sent",
                f"{self._prefix}pace:{tag}:to:{conversation_id}"]

    async def reserve(self, account_id: str, conversation_id: str, token: str, *, horizon: float,
                      limits: PacingLimits) -> Reservation:
        try:
            async with self._slots:
                wait, reserved, bound = await self._script(
                    keys=self.keys(account_id, conversation_id),
                    args=[repr(limits.gap(self._rnd)), limits.account_per_minute or 0, limits.account_per_hour or 0,
                          limits.recipient_per_minute, limits.recipient_per_hour, repr(horizon), token])
        except Exception as exc:  # any Redis failure means: no decision, so hold
            raise PacingUnavailable(f"shared pacing unavailable: {type(exc).__name__}") from exc
        return Reservation(max(0.0, float(wait)), bool(int(reserved)), bool(int(bound)))
