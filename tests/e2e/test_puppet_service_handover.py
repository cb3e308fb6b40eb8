"""Account ownership across processes: two wework-server processes share the puppet_service
accounts through Redis leases (workers/puppet_ownership.py). The one consuming the account's
event stream is killed with SIGKILL: the other takes the stream over within the documented
bound (lease + tick + the stream's opening), the account stays ONLINE without a new QR, and
every incoming message sent before the kill and after the handover is stored exactly once.
Over plaintext (an `insecure_` token, the reference server's tls.disable)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import harness
import pytest
import redis.asyncio as aioredis
from harness.puppet_service import ReferenceServer
from puppetproc import Api, eventually, settings, tenant_api
from serverproc import run_admin, settings_yaml, start_server
from wework.v1 import account_pb2 as apb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SERVICE = "wework.v1.AccountService"
# Plaintext here (the other module runs TLS): an "insecure_" token and a server without TLS.
TOKEN = f"insecure_{uuid.uuid4().hex}"
LEASE, TICK = 3.0, 0.5


async def test_sigkill_of_the_consuming_process_hands_the_stream_over(mariadb_server, redis_server, tmp_path):
    puppet = await ReferenceServer(TOKEN, tls=False).start()
    prefix = harness.new_db_prefix("e")
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    values = settings(puppet.endpoint)
    values["provider"]["puppet_service"].update(ownership_lease_seconds=LEASE, ownership_tick_seconds=TICK,
                                                server_name=None)
    values["account"]["heartbeat_timeout_seconds"] = 30  # a handover must not look like an outage
    path = settings_yaml(tmp_path / "server.yaml", config.model_dump(mode="json"), redis_server.url,
                         redis={"key_prefix": f"{prefix}:"}, **values)
    assert (await asyncio.to_thread(run_admin, path, "migrate")).returncode == 0
    servers = [await asyncio.to_thread(start_server, tmp_path, path, name=name, wait_service=SERVICE)
               for name in ("a", "b")]
    redis = aioredis.from_url(redis_server.url)
    try:
        api = await tenant_api(servers[0].target)
        account = await api(api.accounts.CreateAccount, apb.CreateAccountRequest(
            account=apb.Account(account_name="shared", provider_token=TOKEN)))
        await api(api.accounts.StartLogin, apb.StartLoginRequest(id=account.id))
        user = await puppet.command("login", name="Zhang San")

        async def online():
            got = await api(api.accounts.GetAccount, apb.GetAccountRequest(id=account.id))
            return got.status == apb.ACCOUNT_STATUS_ONLINE

        await eventually(online, what="online")
        lease_key = f"{prefix}:puppet:lease:{account.guid}"
        owner_member = (await redis.get(lease_key)).decode()
        owner = next(s for s in servers if f"{owner_member} consumes account {account.guid}" in s.log())
        other = next(s for s in servers if s is not owner)
        api = Api(other.target, api.md[0][1])  # the survivor answers from now on (same API key)
        friend = await puppet.command("contact", name="Li Si")

        async def stored(n: int):
            page = await api(api.accounts.ListConversations, apb.ListConversationsRequest(account_id=account.id))
            conv = next((c for c in page.conversations if c.conversation_id == friend), None)
            return conv if conv is not None and conv.unread_count >= n else None

        for i in range(3):
            await puppet.command("say", **{"from": friend, "to": user, "text": f"before {i}"})
        await eventually(lambda: stored(3), what="messages before the kill")

        owner.stop(signal.SIGKILL)
        killed_at = time.monotonic()

        async def taken_over():
            holder = await redis.get(lease_key)
            return holder is not None and holder.decode() != owner_member and \
                f"consumes account {account.guid}" in other.log()

        await eventually(taken_over, timeout=LEASE + 10, what="the survivor's lease")
        handover = time.monotonic() - killed_at
        assert handover <= LEASE + TICK + 5, f"handover took {handover:.1f}s"

        await asyncio.sleep(1.0)  # the stream opening (the puppet replays LOGIN to the new stream)
        for i in range(3):
            await puppet.command("say", **{"from": friend, "to": user, "text": f"after {i}"})
        conv = await eventually(lambda: stored(6), timeout=30, what="messages after the handover")
        await asyncio.sleep(1.0)
        conv = await stored(6)
        assert conv.unread_count == 6  # every message once: none lost, none twice
        assert conv.last_msg_content == "after 2"
        got = await api(api.accounts.GetAccount, apb.GetAccountRequest(id=account.id))
        assert got.status == apb.ACCOUNT_STATUS_ONLINE
        history = await api(api.accounts.ListStatusHistory, apb.ListStatusHistoryRequest(account_id=account.id))
        assert history.status_changes[0].new_status == apb.ACCOUNT_STATUS_ONLINE
        assert sum(c.new_status == apb.ACCOUNT_STATUS_WAITING_SCAN for c in history.status_changes) == 1
    finally:
        await redis.aclose()
        for s in servers:
            s.stop(signal.SIGTERM)
        await puppet.stop()
        mariadb_server.drop_databases(prefix + "_")
