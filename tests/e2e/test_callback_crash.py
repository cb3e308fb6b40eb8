"""Crash safety of callback processing: kill -9 a `wework-worker callbacks` process in the
middle of a burst of callbacks; after a restart every callback has had exactly one effect.

A wework-server stores the callbacks (HTTP ingress; no processor of its own) while a worker
processes them. The burst: 500 incoming messages over 10 conversations and a DELIVERED receipt
for each of 50 sent messages. The first worker is killed with SIGKILL while it works; the
second one re-queues the dead worker's claimed callbacks once their lease expires and finishes.
The effect ledger turns a callback whose effect committed before the kill into "applied
before": unread counts equal the incoming messages, and each message is counted once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import harness
import pytest
import sqlalchemy as sa
from serverproc import BIN, TEST_ADMIN_KEY, free_port, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, WeworkClient
from wework.domain.callbacks import sign
from wework.persistence.database import Database
from wework.v1 import account_pb2 as apb
from wework.v1 import message_pb2 as mpb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]
SECRET = "callback-crash-secret"
INCOMING, CONVERSATIONS, SENT = 500, 10, 50


def _worker(config, log_path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen([str(BIN / "wework-worker"), "callbacks"],
                            env={**os.environ, "WEWORK_CONFIG_FILE": str(config)}, stdout=log,
                            stderr=subprocess.STDOUT)


@pytest.fixture
def crash_platform(mariadb_server, redis_server, tmp_path):
    prefix = harness.new_db_prefix("k")
    # The production pool size: the harness' 2 connections would make the burst crawl.
    config = harness.make_database_config(prefix, [mariadb_server], 2, pool_size=10, max_overflow=10)
    ingress_port = free_port()
    settings = settings_yaml(
        tmp_path / "server.yaml", config.model_dump(mode="json"), redis_server.url,
        redis={"key_prefix": f"{prefix}:"},
        callback={"http_port": ingress_port, "secret": SECRET, "run_processor_in_server": False,
                  "lease_seconds": 2, "batch_size": 50, "max_in_flight": 8, "idle_poll_seconds": 0.2})
    assert run_admin(settings, "migrate").returncode == 0
    server = start_server(tmp_path, settings, name="server", wait_service="wework.v1.CallbackService")
    workers: list[subprocess.Popen] = []
    yield {"server": server, "settings": settings, "config": config, "workers": workers, "tmp": tmp_path,
           "url": f"http://127.0.0.1:{ingress_port}/provider/callbacks"}
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
            w.wait(20)
    server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(prefix + "_")


def _sql(config, db_name: str, tenant_id: str, statement: str, **params):
    async def q():
        db = Database(config, [db_name])
        try:
            async with db.unit_of_work(db_name, tenant_id, read_only=True) as uow:
                return (await uow.session.execute(sa.text(statement), params)).all()
        finally:
            await db.dispose()
    return asyncio.run(q())


def _statuses(config, tenant_id: str) -> dict[str, int]:
    rows = _sql(config, "callback", tenant_id,
                "SELECT status, COUNT(*) FROM callback_events WHERE tenant_id = :t GROUP BY status", t=tenant_id)
    return {s: n for s, n in rows}


async def _post_all(url: str, bodies: list[bytes]) -> list[int]:
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async def one(raw: bytes) -> int:
            async with sem:
                ts = str(int(time.time()))
                async with http.post(url, data=raw, headers={
                        "Content-Type": "application/json", "X-Provider-Timestamp": ts,
                        "X-Provider-Signature": sign(SECRET, ts, raw)}) as r:
                    return r.status
        return await asyncio.gather(*(one(b) for b in bodies))


def _callback(guid: str, notify_type: int, data: dict) -> bytes:
    return json.dumps({"event_id": uuid.uuid4().hex, "guid": guid, "notify_type": notify_type, "data": data,
                       "time": datetime.now(UTC).isoformat()}).encode()


def test_kill_9_mid_burst_every_callback_has_exactly_one_effect(crash_platform):
    p = crash_platform
    code = f"t{uuid.uuid4().hex[:12]}"
    with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code))
    with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id)) as client:
        account = client.accounts.create_account(apb.Account(account_name="burst"))
        # Not online: the messages wait in the queue; their receipts come anyway (a lost ack).
        sent = [client.messages.send_message(account_id=account.id, conversation_id=f"out-{i}",
                                             content=mpb.MessageContent(text=mpb.TextContent(text=f"m{i}")))
                for i in range(SENT)]
        bodies = [_callback(account.guid, 12004, {"conversation_id": f"c-{i % CONVERSATIONS}", "sender": "s",
                                                  "content": {"text": f"in {i}"}}) for i in range(INCOMING)]
        bodies += [_callback(account.guid, 12002, {"msg_id": m.id, "wework_msg_id": f"wx-{m.id}"}) for m in sent]
        codes = asyncio.run(_post_all(p["url"], bodies))
        assert codes == [200] * len(bodies)
        assert _statuses(p["config"], tenant.id) == {"received": len(bodies)}  # stored, nothing processed

        first = _worker(p["settings"], p["tmp"] / "worker1.log")
        p["workers"].append(first)
        deadline = time.monotonic() + 60
        while _statuses(p["config"], tenant.id).get("processed", 0) < len(bodies) // 3:
            assert time.monotonic() < deadline and first.poll() is None, (p["tmp"] / "worker1.log").read_text()
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        at_kill = _statuses(p["config"], tenant.id)
        assert at_kill.get("processed", 0) < len(bodies), "the burst ended before the kill: nothing was tested"

        second = _worker(p["settings"], p["tmp"] / "worker2.log")
        p["workers"].append(second)
        deadline = time.monotonic() + 120
        while _statuses(p["config"], tenant.id) != {"processed": len(bodies)}:
            assert time.monotonic() < deadline and second.poll() is None, (
                _statuses(p["config"], tenant.id), (p["tmp"] / "worker2.log").read_text()[-3000:])
            time.sleep(0.2)

        convs = {c.conversation_id: c.unread_count
                 for c in client.accounts.iter_conversations(apb.ListConversationsRequest(account_id=account.id))}
        assert convs == {f"c-{i}": INCOMING // CONVERSATIONS for i in range(CONVERSATIONS)}
        assert {client.messages.get_message(m.id).status for m in sent} == {mpb.MESSAGE_STATUS_DELIVERED}
        [(total, success)] = _sql(p["config"], "message", tenant.id,
                                  "SELECT SUM(total_count), SUM(success_count) FROM message_statistics "
                                  "WHERE tenant_id = :t", t=tenant.id)
        assert (int(total), int(success)) == (SENT, SENT)
        [(ledger,)] = _sql(p["config"], "account", tenant.id, "SELECT COUNT(*) FROM applied_callbacks")
        assert ledger == INCOMING
    log2 = (p["tmp"] / "worker2.log").read_text()
    if at_kill.get("processing"):
        assert "re-queued after their processor's lease expired" in log2
