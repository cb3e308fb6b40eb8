"""The callback inbox on MariaDB, in process: a processor that died after applying an effect but
before marking the callback, retries with backoff, and replays; the webhook hook point."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from test_dispatch_claims import ADMIN, _tenant_and_account, node_factory
from wework.domain.access import Principal, PrincipalKind
from wework.domain.callbacks import ALREADY_APPLIED, parse
from wework.persistence.pagination import PageTokens
from wework.server.application.callbacks import (
    CALLBACK_DB,
    CallbackEventUseCases,
    CallbackInbox,
    CallbackProcessing,
    GuidDirectory,
    InboxSettings,
    ListQuery,
    ProcessingSettings,
)
from wework.server.application.context import utcnow
from wework.server.application.conversations import ConversationUseCases
from wework.server.providers.base import ProviderCallback
from wework.server.workers.callbacks import CallbackProcessor, ProcessorSettings

pytestmark = pytest.mark.mariadb


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    async def publish(self, uow, tenant_id, event_type, data, source_event_id):
        self.events.append((uow is not None and uow.db, tenant_id, event_type, data, source_event_id))


@pytest.fixture
async def nodes(mariadb_config, redis_server):
    async with node_factory(mariadb_config, redis_server.url) as make:
        yield make


def _incoming(guid: str, conversation: str) -> bytes:
    return json.dumps({"event_id": uuid.uuid4().hex, "guid": guid, "notify_type": 12004,
                       "data": {"conversation_id": conversation, "content": {"text": "hi"}},
                       "time": "2026-11-28T00:00:00Z"}).encode()


async def _unread(node, tenant_id: str, account_id: str, conversation: str) -> int:
    principal = Principal(PrincipalKind.API_KEY, "reader", tenant_id, frozenset({"*"}))
    convs, _ = await ConversationUseCases(node.store).list_conversations(principal, account_id, None, None, "",
                                                                          100, "")
    return next(c.unread_count for c in convs if c.conversation_id == conversation)


async def _get(node, tenant_id: str, callback_id: str):
    async with node.db.unit_of_work(CALLBACK_DB, tenant_id, read_only=True) as uow:
        return await uow.callbacks.get(callback_id, tenant_id)


QUICK = ProcessingSettings(max_attempts=3, backoff_initial_seconds=0, backoff_max_seconds=0)


def _setup(node, sink, settings=QUICK, accounts="default"):
    directory = GuidDirectory(node.db)
    inbox = CallbackInbox(node.db, node.redis, f"wwtest:{uuid.uuid4().hex[:6]}:", InboxSettings(), directory)
    router = node.provider.sink
    processing = CallbackProcessing(node.db, router.accounts if accounts == "default" else accounts,
                                    node.message_events, directory, sink, settings)
    return inbox, processing


async def test_a_processor_dying_between_effect_and_mark_leaves_one_effect(nodes):
    node = await nodes()
    tenant_id, account_id = await _tenant_and_account(node, online=False)
    guid = (await node.store.load(tenant_id, account_id)).guid
    sink = RecordingSink()
    inbox, processing = _setup(node, sink)
    stored = await inbox.store(_incoming(guid, "wm-crash"), source="test")
    shard = node.db.shard_for(tenant_id)

    # The "dead" worker: claims with a lease that is already over, applies the effect, dies.
    async with node.db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
        [claimed] = await uow.callbacks.claim("dead", utcnow(), 10, timedelta(seconds=-1))
    parsed = parse(claimed.raw_data)
    effect = await node.provider.sink.accounts.apply(
        ProviderCallback(parsed.guid, parsed.notify_type, parsed.data, parsed.event_id, utcnow()),
        tenant_id, account_id, claimed.dedupe_key)
    assert effect.outcome == "applied"
    assert await _unread(node, tenant_id, account_id, "wm-crash") == 1

    processor = CallbackProcessor(node.db, processing, ProcessorSettings(lease_seconds=30), worker_id="alive")
    assert await processor.requeue_expired(shard) == 1
    assert await processor.run_once(shard) == 1
    row = await _get(node, tenant_id, stored.callback_event_id)
    assert (row.status, row.error_message) == ("processed", None)
    assert await _unread(node, tenant_id, account_id, "wm-crash") == 1  # not 2
    # The tenant event was not published by the dead worker: it is now, once, in the marking transaction.
    assert [(db, t, e, s) for db, t, e, _, s in sink.events] == [
        ("callback", tenant_id, "message.received", stored.callback_event_id)]

    # A replay has no second effect and publishes nothing again.
    ops = CallbackEventUseCases(node.db, replay_window=timedelta(days=1), page_tokens=PageTokens.with_random_key())
    assert await ops.replay_callbacks(ADMIN, [stored.callback_event_id], None, tenant_id, 0) == [
        stored.callback_event_id]
    assert await processor.run_once(shard) == 1
    assert (await _get(node, tenant_id, stored.callback_event_id)).status == "processed"
    assert await _unread(node, tenant_id, account_id, "wm-crash") == 1
    assert len(sink.events) == 1
    again = await node.provider.sink.accounts.apply(
        ProviderCallback(parsed.guid, parsed.notify_type, parsed.data, parsed.event_id, utcnow()),
        tenant_id, account_id, claimed.dedupe_key)
    assert again.outcome == ALREADY_APPLIED


async def test_failures_are_retried_with_backoff_then_left_failed(nodes):
    node = await nodes()
    tenant_id, account_id = await _tenant_and_account(node, online=False)
    guid = (await node.store.load(tenant_id, account_id)).guid
    sink = RecordingSink()
    # A process without the account service cannot apply account callbacks: every attempt fails.
    inbox, processing = _setup(node, sink, accounts=None)
    stored = await inbox.store(_incoming(guid, "wm-fail"), source="test")
    shard = node.db.shard_for(tenant_id)
    processor = CallbackProcessor(node.db, processing, ProcessorSettings(), worker_id="w")
    statuses = []
    for _ in range(3):
        assert await processor.run_once(shard) == 1
        row = await _get(node, tenant_id, stored.callback_event_id)
        statuses.append((row.status, row.retry_count))
    assert statuses == [("received", 1), ("received", 2), ("failed", 3)]
    assert "does not build the account service" in row.error_message
    assert await processor.run_once(shard) == 0  # failed stays failed
    assert sink.events == []
    page, _ = await CallbackEventUseCases(node.db, replay_window=timedelta(days=1), page_tokens=PageTokens.with_random_key()).list_callback_events(
        ADMIN, ListQuery(tenant_id=tenant_id, status="failed"), 10, "")
    assert [c.id for c in page] == [stored.callback_event_id]


async def test_backoff_delays_the_next_attempt(nodes):
    node = await nodes()
    tenant_id, account_id = await _tenant_and_account(node, online=False)
    guid = (await node.store.load(tenant_id, account_id)).guid
    inbox, processing = _setup(node, RecordingSink(), ProcessingSettings(
        max_attempts=5, backoff_initial_seconds=3600, backoff_max_seconds=3600), accounts=None)
    await inbox.store(_incoming(guid, "wm-later"), source="test")
    shard = node.db.shard_for(tenant_id)
    processor = CallbackProcessor(node.db, processing, ProcessorSettings(), worker_id="w")
    assert await processor.run_once(shard) == 1
    assert await processor.run_once(shard) == 0  # due again only in an hour


async def test_the_inbox_on_sqlite_embedded_mode(sqlite_config):
    """The same statements on SQLite: group-committed stores with dedupe, claim, finish."""
    from wework.persistence.config import RedisConfig
    from wework.persistence.database import Database
    from wework.persistence.redis.client import create_redis

    db = Database(sqlite_config)
    await db.start()
    redis = create_redis(RedisConfig(url="memory://"))
    try:
        directory = GuidDirectory(db)
        inbox = CallbackInbox(db, redis, f"wwtest:{uuid.uuid4().hex[:6]}:", InboxSettings(), directory)
        processing = CallbackProcessing(db, None, None, directory, RecordingSink(), QUICK)
        raw = _incoming("no-such-guid", "c")
        results = await asyncio.gather(*(inbox.store(raw, source="test") for _ in range(3)),
                                       inbox.store(b"{broken", source="test"))
        assert [r.duplicate for r in results[:3]].count(False) == 1
        assert len({r.callback_event_id for r in results[:3]}) == 1
        shard = db.shard_names[0]
        processor = CallbackProcessor(db, processing, ProcessorSettings(), worker_id="w")
        assert await processor.run_once(shard) == 2
        async with db.shard_unit_of_work(CALLBACK_DB, shard, read_only=True) as uow:
            repo = uow.callbacks
            unknown = await repo.get(results[0].callback_event_id, None)
            broken = await repo.get(results[3].callback_event_id, None)
        assert (unknown.status, unknown.error_message) == ("ignored", "unknown guid 'no-such-guid'")
        assert broken.status == "failed" and "malformed" in broken.error_message
    finally:
        await db.dispose()
        await redis.aclose()
