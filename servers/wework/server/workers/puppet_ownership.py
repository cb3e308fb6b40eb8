"""Which process consumes which account's puppet-service event stream (docs/puppet-service.md).

Every process that runs the puppet_service provider (wework-server, wework-worker) is a member:
it keeps `<prefix>puppet:members` (a sorted set, score = the time its membership expires)
refreshed. Each account is wanted by the live member that rendezvous hashing (highest
sha256(member, guid)) picks, so every member computes the same split from the same member set,
and a member joining or leaving moves only its share of the accounts.

A member consumes an account's stream only while it holds the account's lease
(`<prefix>puppet:lease:<guid>` = member id, PX lease_seconds): acquired when free, renewed every
tick, released (stream detached first) when the account is no longer its to consume (a member
joined, or the account no longer needs a stream). A member that dies stops renewing: its
membership and leases expire after lease_seconds, and the next tick of the new owner takes the
account. A dead member's accounts are therefore streamed again within
lease_seconds + tick_seconds + the stream's opening.

The owner also publishes each account's session state (`<prefix>puppet:session:<guid>`: the
current QR code, the logged-in user), which a non-owner's StartLogin or recovery reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from wework.persistence.background import cancel_and_wait
from wework.persistence.redis.client import RedisClient, as_text
from wework.server.providers.base import ProviderError

log = logging.getLogger(__name__)

# Renews the lease if it is ours, takes it if it is free; 1 when we hold it afterwards.
_ACQUIRE = """
local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
# Deletes the lease only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
SESSION_STATE_TTL_SECONDS = 86400


def rendezvous_owner(members: list[str], guid: str) -> str | None:
    """The member that consumes `guid` (highest random weight)."""
    if not members:
        return None
    return max(members, key=lambda m: hashlib.sha256(f"{m}\n{guid}".encode()).digest())


class PuppetOwnership:
    """The member loop of one process; also the adapter's SessionBoard (owns / publish / read)."""

    def __init__(self, provider: Any, redis: RedisClient, key_prefix: str,
                 wanted: Callable[[], Awaitable[list[str]]], *, lease_seconds: float = 15.0,
                 tick_seconds: float = 2.0, member_id: str | None = None) -> None:
        self._provider = provider
        self._redis = redis
        self._prefix = f"{key_prefix}puppet:"
        self._wanted = wanted
        self.lease_ms = int(lease_seconds * 1000)
        self.tick_seconds = tick_seconds
        self.member_id = member_id or f"m-{uuid.uuid4().hex[:12]}"
        self.held: set[str] = set()
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._task: asyncio.Task[None] | None = None
        self._members: list[str] = [self.member_id]

    # ---- SessionBoard ------------------------------------------------------------------------

    def owns(self, guid: str) -> bool:
        return guid in self.held

    async def claim(self, guid: str) -> bool:
        """Decides `guid` now instead of at the next tick (a login just started): True if this
        member holds it afterwards."""
        await self._decide(guid, await self._live_members())
        return guid in self.held

    async def publish(self, guid: str, state: dict[str, Any]) -> None:
        try:
            await self._redis.set(f"{self._prefix}session:{guid}", json.dumps(state, separators=(",", ":")),
                                  ex=SESSION_STATE_TTL_SECONDS)
        except (RedisError, OSError) as exc:
            log.warning("puppet ownership: publishing the session state of %s failed: %r", guid, exc)

    async def read(self, guid: str) -> dict[str, Any] | None:
        raw = await self._redis.get(f"{self._prefix}session:{guid}")
        return None if raw is None else json.loads(raw)

    # ---- the member loop -----------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="puppet-ownership")

    async def close(self) -> None:
        """Leaves: streams detached and leases given back, so the others take over at once."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for guid in list(self.held):
            with contextlib.suppress(Exception):
                await self._give_back(guid)
        with contextlib.suppress(RedisError, OSError):
            await self._redis.zrem(self._prefix + "members", self.member_id)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis or a database down: keep the leases we can, try again
                log.exception("puppet ownership tick failed")
            await asyncio.sleep(self.tick_seconds)

    async def tick(self) -> None:
        members = await self._live_members()
        wanted = set(await self._wanted())
        for guid in sorted(wanted | self.held):
            if guid in wanted:
                await self._decide(guid, members)
            else:
                await self._give_back(guid)  # logged out, deleted, failed: no stream needed

    async def _live_members(self) -> list[str]:
        key = self._prefix + "members"
        now = time.time() * 1000
        await self._redis.zadd(key, {self.member_id: now + self.lease_ms})
        await self._redis.zremrangebyscore(key, "-inf", now)
        self._members = sorted(as_text(m) for m in await self._redis.zrangebyscore(key, now, "+inf"))
        return self._members

    async def _decide(self, guid: str, members: list[str]) -> None:
        if rendezvous_owner(members, guid) != self.member_id:
            if guid in self.held:
                log.info("puppet ownership: handing account %s over to %s", guid, rendezvous_owner(members, guid))
                await self._give_back(guid)
            return
        lease = f"{self._prefix}lease:{guid}"
        if not await self._acquire(keys=[lease], args=[self.member_id, self.lease_ms]):
            if guid in self.held:  # our lease expired and someone took it: stop at once
                await self._provider.detach(guid)
                self.held.discard(guid)
            return
        if guid not in self.held:
            self.held.add(guid)
            log.info("puppet ownership: %s consumes account %s", self.member_id, guid)
        if not self._provider.streaming(guid):
            try:
                await self._provider.attach(guid)
            except ProviderError as exc:  # the old consumer still holds the stream, or a bad token
                log.info("puppet ownership: stream of %s not opened yet (%s); next tick", guid, exc.code)

    async def _give_back(self, guid: str) -> None:
        await self._provider.detach(guid)
        self.held.discard(guid)
        await self._release(keys=[f"{self._prefix}lease:{guid}"], args=[self.member_id])
