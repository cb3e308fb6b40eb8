"""Pacing shared through Redis: the per-account interval and ceilings and the per-recipient limits
hold across dispatchers (each with its own Redis client, as separate processes have), on a real
Redis; an unreachable Redis holds sends instead of pacing per process."""

from __future__ import annotations

import secrets
from itertools import pairwise

import pytest
from harness.servers import free_port
from wework.domain.dispatch import PacingLimits
from wework.persistence.config import RedisConfig
from wework.persistence.ids import new_id
from wework.persistence.redis.client import create_redis
from wework.server.workers.pacing import LocalPacing, PacingUnavailable, RedisPacing


@pytest.fixture
async def clients(redis_server):
    made = [create_redis(RedisConfig(url=redis_server.url)) for _ in range(3)]
    yield made
    for c in made:
        await c.aclose()


class _Paced:
    """A dispatcher's view: its RedisPacing and the limits it asks with."""

    def __init__(self, pacing, limits: PacingLimits) -> None:
        self.pacing, self.limits = pacing, limits

    def keys(self, account_id: str, conversation_id: str) -> list[str]:
        return self.pacing.keys(account_id, conversation_id)

    async def reserve(self, account_id: str, conversation_id: str, token: str, *, horizon: float):
        return await self.pacing.reserve(account_id, conversation_id, token, horizon=horizon, limits=self.limits)


def _pacing(client, prefix: str, *, interval: float = 0.0, jitter: float = 0.0, per_minute: int = 10**6,
            per_hour: int = 10**6, account_per_minute: int | None = None,
            account_per_hour: int | None = None) -> _Paced:
    return _Paced(RedisPacing(client, prefix), PacingLimits(interval, jitter, account_per_minute, account_per_hour,
                                                             per_minute, per_hour))


async def test_two_dispatchers_never_share_an_account_slot(clients):
    prefix = f"wwt-{secrets.token_hex(4)}:"
    a, b = _pacing(clients[0], prefix, interval=0.5), _pacing(clients[1], prefix, interval=0.5)
    account = new_id()
    for i in range(8):  # alternately, as two processes taking messages of one account would
        assert (await (a if i % 2 else b).reserve(account, "member", f"m{i}", horizon=60)).reserved
    # The slots taken (the recipient's window holds them): one interval apart, whoever asked.
    slots = [score for _member, score in await clients[2].zrange(a.keys(account, "member")[2], 0, -1,
                                                                  withscores=True)]
    assert len(slots) == 8
    # (Lua prints times with 14 significant digits: 10 us resolution.)
    assert [round(later - earlier, 3) for earlier, later in pairwise(slots)] == [0.5] * 7
    # Another account is not slowed down.
    assert (await a.reserve(new_id(), "conv-0", new_id(), horizon=60)).wait == 0


async def test_a_wait_beyond_the_horizon_takes_nothing(clients):
    prefix = f"wwt-{secrets.token_hex(4)}:"
    pacing = _pacing(clients[0], prefix, interval=5.0)
    account = new_id()
    assert (await pacing.reserve(account, "c", new_id(), horizon=1)).wait == 0
    refused = await pacing.reserve(account, "c", new_id(), horizon=1)
    assert not refused.reserved and refused.account_bound and 4.5 < refused.wait <= 5.0
    again = await pacing.reserve(account, "c", new_id(), horizon=1)  # the slot was not taken
    assert not again.reserved and abs(again.wait - refused.wait) < 0.5


async def test_recipient_limits_count_sends_from_every_dispatcher(clients):
    prefix = f"wwt-{secrets.token_hex(4)}:"
    pacers = [_pacing(c, prefix, per_minute=3, per_hour=5) for c in clients]
    account = new_id()
    for i in range(3):
        assert (await pacers[i].reserve(account, "member-1", new_id(), horizon=1)).reserved
    fourth = await pacers[0].reserve(account, "member-1", new_id(), horizon=1)
    assert not fourth.reserved and not fourth.account_bound and 59 < fourth.wait <= 60
    assert (await pacers[1].reserve(account, "member-2", new_id(), horizon=1)).reserved  # other member
    # With the minute's limit out of the way the hour's applies: 5 an hour, the 6th waits ~1 h.
    for i in range(2):
        assert (await pacers[2].reserve(account, "member-1", new_id(), horizon=120)).reserved
    sixth = await pacers[0].reserve(account, "member-1", new_id(), horizon=7200)
    assert sixth.reserved and 3590 < sixth.wait <= 3600


async def test_account_ceilings_count_every_recipient_and_every_dispatcher(clients):
    prefix = f"wwt-{secrets.token_hex(4)}:"
    pacers = [_pacing(c, prefix, account_per_minute=4, account_per_hour=5) for c in clients]
    account = new_id()
    for i in range(4):  # four members, from three dispatchers
        assert (await pacers[i % 3].reserve(account, f"member-{i}", new_id(), horizon=1)).reserved
    fifth = await pacers[1].reserve(account, "member-new", new_id(), horizon=1)
    assert not fifth.reserved and fifth.account_bound and 59 < fifth.wait <= 60
    assert (await pacers[2].reserve(new_id(), "member-new", new_id(), horizon=1)).reserved  # another account
    assert (await pacers[0].reserve(account, "member-5", new_id(), horizon=120)).reserved  # the 5th, a minute on
    sixth = await pacers[1].reserve(account, "member-6", new_id(), horizon=7200)  # the hour's ceiling
    assert sixth.reserved and sixth.account_bound and 3590 < sixth.wait <= 3600


async def test_an_unreachable_redis_holds_instead_of_pacing_per_process():
    client = create_redis(RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0", socket_timeout_seconds=0.5))
    try:
        pacing = _pacing(client, "wwt:", interval=2.0)
        with pytest.raises(PacingUnavailable) as exc:
            await pacing.reserve("acc", "c", new_id(), horizon=1)
    finally:
        await client.aclose()
    assert "127.0.0.1" not in str(exc.value)  # says what, not where


async def test_local_pacing_follows_the_same_rules():
    pacing, limits = LocalPacing(), PacingLimits(0.5, 0.0, None, None, 2, 100)
    assert (await pacing.reserve("acc", "m", "1", horizon=10, limits=limits)).wait == 0
    second = await pacing.reserve("acc", "m", "2", horizon=10, limits=limits)
    assert second.reserved and second.account_bound and 0.45 < second.wait <= 0.5
    third = await pacing.reserve("acc", "m", "3", horizon=10, limits=limits)  # 2 a minute for this member
    assert not third.reserved and not third.account_bound and 59 < third.wait <= 60
