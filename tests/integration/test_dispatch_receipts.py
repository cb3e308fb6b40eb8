"""Provider receipts through the HTTP callback ingress into MessageEvents (MariaDB).

Signed callbacks are applied, unsigned or forged ones refused; receipts never move a message
backwards (a late SENT after DELIVERED changes nothing) and statistics count a message once.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import aiohttp
import pytest
import sqlalchemy as sa
from test_dispatch_claims import _insert, _statuses, _tenant_and_account, node_factory
from wework.persistence.models import message as mm
from wework.server.application.context import utcnow
from wework.server.application.message_events import ProviderEventRouter
from wework.server.ingress.http import PATH, CallbackIngress
from wework.server.providers.base import NotifyType, ProviderCallback
from wework.server.providers.sinks import HttpCallbackSink

pytestmark = pytest.mark.mariadb
SECRET = "receipt-secret"


@pytest.fixture
async def nodes(mariadb_config, redis_server):
    async with node_factory(mariadb_config, redis_server.url) as make:
        yield make


def _cb(msg_id: str, kind: NotifyType, **data) -> ProviderCallback:
    return ProviderCallback(guid="g", notify_type=int(kind), data={"msg_id": msg_id, **data},
                            event_id=uuid.uuid4().hex, time=utcnow())


async def test_signed_receipts_apply_in_order_and_never_go_backwards(nodes):
    node = await nodes()
    tenant_id, account_id = await _tenant_and_account(node, online=False)
    [m] = await _insert(node, tenant_id, account_id, 1)
    shard = node.db.shard_for(tenant_id)
    async with node.db.shard_unit_of_work("message", shard) as uow:  # a worker handed it over
        claimed = await uow.dispatch.claim("w", utcnow(), 1000, timedelta(seconds=60))
    assert m.id in {c.id for c in claimed}
    ingress = CallbackIngress(ProviderEventRouter(None, node.message_events), secret=SECRET)
    port = await ingress.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}{PATH}"
    signed = HttpCallbackSink(url, secret=SECRET)
    forged = HttpCallbackSink(url, secret="wrong")
    try:
        with pytest.raises(aiohttp.ClientResponseError) as refused:
            await forged.deliver(_cb(m.id, NotifyType.MESSAGE_DELIVERED, wework_msg_id="w-1"))
        assert refused.value.status == 401
        async with aiohttp.ClientSession() as http, http.post(url, data=b"{}") as unsigned:
            assert unsigned.status == 401
        assert (await _statuses(node, tenant_id))[m.id].status == "sending"

        await signed.deliver(_cb(m.id, NotifyType.MESSAGE_DELIVERED, wework_msg_id="w-1"))
        await signed.deliver(_cb(m.id, NotifyType.MESSAGE_SENT, wework_msg_id="w-1"))  # late, stale
        row = (await _statuses(node, tenant_id))[m.id]
        assert (row.status, row.wework_msg_id) == ("delivered", "w-1") and row.callback_time is not None
        assert row.claimed_by is None
        await signed.deliver(_cb(m.id, NotifyType.MESSAGE_FAILED, error_code="X"))  # after delivered: ignored
        assert (await _statuses(node, tenant_id))[m.id].status == "delivered"
        async with node.db.unit_of_work("message", tenant_id, read_only=True) as uow:
            s = mm.MessageStatistic
            stats = (await uow.session.execute(sa.select(sa.func.sum(s.total_count), sa.func.sum(s.success_count))
                                               .where(s.tenant_id == tenant_id))).one()
        assert tuple(stats) == (1, 1)
    finally:
        await signed.close()
        await forged.close()
        await ingress.close()
