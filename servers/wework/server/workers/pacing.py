"""Send pacing shared by every dispatcher: per-account interval and per-recipient limits.

A dispatcher asks for a reservation before each send. The answer is how long to wait; when the
wait is short enough to sleep through, the slot is taken at once (the account's next allowed
time moves on, the recipient's window counts the send), so two dispatchers asking for one
account get two different slots. The Redis version does this in one Lua script on the Redis
clock, so the limits hold across any number of dispatcher processes and hosts; the local
version keeps the same state in memory for the embedded mode and as the fallback while Redis
is unreachable (then each process paces on its own, and an account may send up to P times as
often with P dispatchers until Redis is back).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

from wework.domain.dispatch import AccountPacer, RecipientLimiter
from wework.persistence.redis.client import hash_tag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reservation:
    wait: float  # seconds from now until the send may go
    reserved: bool  # False: the wait was longer than the horizon and nothing was taken
    account_bound: bool  # the account's interval (not the recipient's limit) set the time


class Pacing(Protocol):
    async def reserve(self, account_id: str, conversation_id: str, token: str, *, horizon: float,
                      min_interval: float | None = None, jitter: float | None = None) -> Reservation:
        """A slot for one send, or how long until there is one (see Reservation).

        `min_interval`/`jitter` of a batch task only slow an account down (the larger of task
        and account settings wins). `token` names the send (the message id).
        """
        ...


class LocalPacing:
    """One process's view: the domain's AccountPacer and RecipientLimiter on the monotonic clock."""

    def __init__(self, min_interval: float, jitter: float, per_minute: int, per_hour: int,
                 rnd: random.Random | None = None) -> None:
        self._accounts = AccountPacer(min_interval, jitter)
        self._recipients = RecipientLimiter(per_minute, per_hour)
        self._rnd = rnd or random.Random()

    async def reserve(self, account_id: str, conversation_id: str, token: str, *, horizon: float,
                      min_interval: float | None = None, jitter: float | None = None) -> Reservation:
        now = time.monotonic()
        account_ready = self._accounts.ready_at(account_id)
        ready = max(now, account_ready, self._recipients.ready_at(account_id, conversation_id, now))
        bound = account_ready >= ready > now
        if ready - now > horizon:
            return Reservation(ready - now, False, bound)
        self._accounts.record(account_id, ready, self._rnd, min_interval, jitter)
        self._recipients.record(account_id, conversation_id, ready)
        return Reservation(max(0.0, ready - now), True, bound)


# KEYS[1]: the account's next allowed send time; KEYS[2]: the recipient's sends of the last hour
# (sorted set, score = send time). Both carry the account's hash tag: one cluster slot.
# ARGV: gap (interval + this send's jitter), per_minute, per_hour, horizon, token.
# Times are the Redis server's clock in seconds; numbers go back as strings (Lua numbers would
# be truncated to integers).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local gap, per_minute, per_hour, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local account_ready = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - 3600))
local ready = math.max(now, account_ready)
local n = redis.call('ZCARD', KEYS[2])
if n >= per_hour then
  local s = redis.call('ZRANGE', KEYS[2], n - per_hour, n - per_hour, 'WITHSCORES')
  ready = math.max(ready, tonumber(s[2]) + 3600)
end
if redis.call('ZCOUNT', KEYS[2], '(' .. (now - 60), '+inf') >= per_minute then
  local s = redis.call('ZRANGE', KEYS[2], n - per_minute, n - per_minute, 'WITHSCORES')
  ready = math.max(ready, tonumber(s[2]) + 60)
end
local bound = 0
if account_ready >= ready and ready > now then bound = 1 end
if ready - now > horizon then
  return {tostring(ready - now), 0, bound}
end
redis.call('SET', KEYS[1], tostring(ready + gap), 'PX', math.ceil((ready - now + gap + 60) * 1000))
redis.call('ZADD', KEYS[2], ready, ARGV[5])
redis.call('EXPIRE', KEYS[2], math.ceil(ready - now + 3660))
return {tostring(ready - now), 1, bound}
"""

# After a Redis error, pace locally this long before trying Redis again.
_FALLBACK_SECONDS = 5.0


class RedisPacing:
    """Pacing state in Redis, shared by every dispatcher of the deployment."""

    def __init__(self, redis: Any, key_prefix: str, min_interval: float, jitter: float,
                 per_minute: int, per_hour: int, rnd: random.Random | None = None) -> None:
        self._redis, self._prefix = redis, key_prefix
        self._min_interval, self._jitter = min_interval, jitter
        self._per_minute, self._per_hour = per_minute, per_hour
        self._rnd = rnd or random.Random()
        self._script = redis.register_script(_RESERVE)
        self._local = LocalPacing(min_interval, jitter, per_minute, per_hour, self._rnd)
        self._local_until = 0.0

    def keys(self, account_id: str, conversation_id: str) -> list[str]:
        tag = hash_tag(account_id)
        return [f"{self._prefix}pace:{tag}:next", f"{self._prefix}pace:{tag}:to:{conversation_id}"]

    async def reserve(self, account_id: str, conversation_id: str, token: str, *, horizon: float,
                      min_interval: float | None = None, jitter: float | None = None) -> Reservation:
        if time.monotonic() < self._local_until:
            return await self._local.reserve(account_id, conversation_id, token, horizon=horizon,
                                             min_interval=min_interval, jitter=jitter)
        interval = self._min_interval if min_interval is None else max(min_interval, self._min_interval)
        spread = self._jitter if jitter is None else max(jitter, self._jitter)
        gap = interval + (self._rnd.uniform(0, spread) if spread > 0 else 0.0)
        try:
            wait, reserved, bound = await self._script(
                keys=self.keys(account_id, conversation_id),
                args=[repr(gap), self._per_minute, self._per_hour, repr(horizon), token])
        except Exception as exc:  # noqa: BLE001 - pacing must not stop sending; fall back, say so
            log.warning("shared pacing unavailable, pacing in this process for %.0f s: %r", _FALLBACK_SECONDS, exc)
            self._local_until = time.monotonic() + _FALLBACK_SECONDS
            return await self._local.reserve(account_id, conversation_id, token, horizon=horizon,
                                             min_interval=min_interval, jitter=jitter)
        return Reservation(max(0.0, float(wait)), bool(int(reserved)), bool(int(bound)))
