"""Issue 21 item 4: the webhook contract holds in any receipt order. Every order of a message's
SENT and DELIVERED receipts, each sent twice (distinct provider event ids), for a message the
dispatcher left `sending` and one it already recorded `sent`, goes through the real inbox, the
processor and the webhook outbox (MariaDB): exactly one message.sent and one message.delivered
delivery per message, and a replay adds nothing."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_callback_inbox import QUICK, _setup
from test_dispatch_claims import ADMIN, _insert, _tenant_and_account, node_factory
from wework.domain.access import Principal, PrincipalKind
from wework.domain.webhooks import parse_networks
from wework.persistence.models import message as mm
from wework.persistence.models import webhook as wm
from wework.persistence.pagination import PageTokens
from wework.server.application.callbacks import CallbackEventUseCases, ListQuery
from wework.server.application.context import utcnow
from wework.server.application.webhooks import TargetGuard, WebhookOutbox, WebhookPolicy, WebhookUseCases
from wework.server.workers.callbacks import CallbackProcessor, ProcessorSettings

pytestmark = [pytest.mark.mariadb, pytest.mark.redis]
SENT, DELIVERED = 12001, 12002
# Every distinct order of two SENT and two DELIVERED receipts (6), which covers both orders of
# the first two and every place for the repeats.
ORDERS = sorted(set(itertools.permutations((SENT, SENT, DELIVERED, DELIVERED))))


@pytest.fixture
async def nodes(mariadb_config, redis_server):
    async with node_factory(mariadb_config, redis_server.url) as make:
        yield make


def _receipt(guid: str, kind: int, msg_id: str) -> bytes:
    return json.dumps({"event_id": uuid.uuid4().hex, "guid": guid, "notify_type": kind,
                       "data": {"msg_id": msg_id, "wework_msg_id": f"w-{msg_id}"},
                       "time": "2026-12-07T00:00:00Z"}).encode()


async def test_one_sent_and_one_delivered_event_per_message_in_any_receipt_order(nodes):
    node = await nodes()
    tenant_id, account_id = await _tenant_and_account(node, online=False)
    guid = (await node.store.load(tenant_id, account_id)).guid
    policy = WebhookPolicy(allowed_networks=tuple(parse_networks(["127.0.0.0/8"])))
    endpoint = await WebhookUseCases(node.ctx, policy, TargetGuard(policy)).create_endpoint(
        Principal(PrincipalKind.API_KEY, "k", tenant_id, frozenset({"*"})), "http://127.0.0.1:9/hook", "", [], "")
    inbox, processing = _setup(node, WebhookOutbox(node.ctx, policy), QUICK)
    cases = [(order, recorded) for order in ORDERS for recorded in (False, True)]
    messages = await _insert(node, tenant_id, account_id, len(cases))
    now = utcnow()
    async with node.db.unit_of_work("message", tenant_id) as uow:
        for m, (_, recorded) in zip(messages, cases, strict=True):
            # The dispatcher handed each to the provider; for half it also recorded SENT from the answer.
            await uow.session.execute(sa.update(mm.Message).where(mm.Message.id == m.id).values(
                status="sent" if recorded else "sending", send_time=now if recorded else None,
                wework_msg_id=f"w-{m.id}" if recorded else None))
    shard = node.db.shard_for(tenant_id)
    processor = CallbackProcessor(node.db, processing, ProcessorSettings(lease_seconds=30), worker_id="w")
    # Round by round, so that each message's receipts are processed in exactly its order.
    for step in range(4):
        for m, (order, _) in zip(messages, cases, strict=True):
            await inbox.store(_receipt(guid, order[step], m.id), source="test")
        while await processor.run_once(shard):
            pass

    async def events() -> dict[tuple[str, str], int]:
        async with node.db.unit_of_work("callback", tenant_id, read_only=True) as uow:
            rows = (await uow.session.execute(sa.select(wm.WebhookDelivery.event_type, wm.WebhookDelivery.payload)
                                              .where(wm.WebhookDelivery.endpoint_id == endpoint.id))).all()
        counts: dict[tuple[str, str], int] = {}
        for event_type, payload in rows:
            key = (json.loads(payload)["data"]["message_id"], event_type)
            counts[key] = counts.get(key, 0) + 1
        return counts

    counts = await events()
    for m, case in zip(messages, cases, strict=True):
        got = {t: counts.get((m.id, t), 0) for t in ("message.sent", "message.delivered")}
        assert got == {"message.sent": 1, "message.delivered": 1}, case
    assert set(counts) == {(m.id, t) for m in messages for t in ("message.sent", "message.delivered")}
    async with node.db.unit_of_work("message", tenant_id, read_only=True) as uow:
        statuses = set((await uow.session.execute(sa.select(mm.Message.status).where(
            mm.Message.tenant_id == tenant_id))).scalars())
    assert statuses == {"delivered"}

    # A replay of every receipt applies nothing and publishes nothing again.
    ops = CallbackEventUseCases(node.db, replay_window=timedelta(days=1), page_tokens=PageTokens.with_random_key())
    replayed = await ops.replay_callbacks(ADMIN, [], ListQuery(
        tenant_id=tenant_id, received_after=now - timedelta(minutes=5), received_before=utcnow() + timedelta(minutes=5)),
        tenant_id, 0)
    assert len(replayed) == 4 * len(cases)
    while await processor.run_once(shard):
        pass
    assert await events() == counts
