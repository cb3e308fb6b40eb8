"""A withdrawn BatchSendMessages call (its caller went away while its items were still queued
for the group commit) gives every unit back, in one DECRBY per tenant and day: one Redis round
trip per item (2,000 for a 1,000-item call, on the event loop) stalled the server (issue 20)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
from wework.domain.messages import Message, MessageType
from wework.persistence.config import RedisConfig
from wework.persistence.redis import create_redis
from wework.server.application.messages import DailyQuota, MessageWriter

pytestmark = [pytest.mark.redis]


class CountingQuota(DailyQuota):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.releases: list[int] = []

    async def release(self, tenant_id: str, day: date, n: int = 1) -> None:
        self.releases.append(n)
        await super().release(tenant_id, day, n)


@dataclass
class _Db:
    def shard_for(self, tenant_id: str) -> str:
        return "s0"


@dataclass
class _Ctx:
    db: _Db


async def test_withdrawn_charged_items_give_their_units_back_at_once(redis_server):
    config = RedisConfig(url=redis_server.url, key_prefix=f"wwrf{uuid.uuid4().hex[:6]}:")
    client = create_redis(config)

    async def nothing_accepted(tenant_id: str, day: date) -> int:
        return 0

    try:
        quota = CountingQuota(client, config, 3600, nothing_accepted)
        writer = MessageWriter(_Ctx(_Db()), quota, [])  # type: ignore[arg-type]
        tenant, day, now = uuid.uuid4().hex, date(2026, 12, 7), datetime(2026, 12, 7, tzinfo=UTC)
        assert await quota.take(tenant, day, [(1000, 1000)]) == [None]  # the call's units, at once
        items = [writer.pending(Message(id=f"m{i}", tenant_id=tenant, account_id="a", conversation_id="c",
                                        message_type=MessageType.TEXT, content={"text": "x"}, created_at=now,
                                        updated_at=now), "", 1000, day, None) for i in range(1000)]
        # Queued, and withdrawn before the shard's writer runs (it starts at the next await).
        writer.submit_charged(items)
        await writer.withdraw_charged(items)
        assert writer._batcher._queues["s0"] == []
        assert quota.releases == [1000]  # one DECRBY, not 1,000
        assert int(await client.get(quota.key(tenant, day))) == 0  # every unit back
        await asyncio.sleep(0.01)
        assert not any(item.future.done() for item in items)  # nothing written, nobody answered
    finally:
        await client.aclose()
