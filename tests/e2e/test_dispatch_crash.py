"""Crash safety: kill -9 a `wework-worker dispatch` process in the middle of a batch.

Three kinds of process, as in production: the provider simulator served over HTTP
(`python -m wework.server.providers.sim_server`), a wework-server with the HTTP provider and the
callback ingress (and no dispatcher of its own), and dispatch workers. The first worker is
killed with SIGKILL while it sends; a second one finishes the batch after the dead worker's
leases expire. Every message reaches a final status, and the provider accepted each exactly
once: a message the dead worker had already handed over is sent again with the same
idempotency key and answered from the provider's record instead of going out twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import harness
import pytest
import sqlalchemy as sa
from harness import httpcall
from serverproc import (
    BIN,
    TEST_ADMIN_KEY,
    free_port,
    online_account,
    run_admin,
    settings_yaml,
    start_server,
    wait_http,
)
from wework.client import ClientOptions, WeworkClient
from wework.persistence.database import Database
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]
N = 300
SECRET = "crash-test-secret"



def _worker(config, log_path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen([str(BIN / "wework-worker"), "dispatch"], env={**os.environ, "WEWORK_CONFIG_FILE": str(config)},
                            stdout=log, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def split_platform(mariadb_server, redis_server, tmp_path, **message_settings):
    """The simulator over HTTP, a wework-server without a dispatcher, and room for workers."""
    prefix = harness.new_db_prefix("k")
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    sim_port, ingress_port = free_port(), free_port()
    sim_log = open(tmp_path / "sim.log", "wb")  # noqa: SIM115
    sim = subprocess.Popen(
        [sys.executable, "-m", "wework.server.providers.sim_server", "--port", str(sim_port),
         "--callback-url", f"http://127.0.0.1:{ingress_port}/provider/callbacks", "--callback-secret", SECRET,
         "--config", json.dumps({"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                                 "heartbeat_interval_seconds": 1, "delivery_delay_seconds": 0.01,
                                 "send_latency_seconds": 0.002})],
        stdout=sim_log, stderr=subprocess.STDOUT)
    sim_url = f"http://127.0.0.1:{sim_port}"
    wait_http(sim_url + "/_requests")
    settings = settings_yaml(
        tmp_path / "server.yaml", config.model_dump(mode="json"), redis_server.url,
        redis={"key_prefix": f"{prefix}:"},
        provider={"kind": "http", "base_url": sim_url},
        callback={"http_port": ingress_port, "secret": SECRET},
        message={"run_dispatcher_in_server": False, "claim_lease_seconds": 2, "claim_batch_size": 20,
                 "account_min_interval_seconds": 0.004, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2,
                 **message_settings})
    assert run_admin(settings, "migrate").returncode == 0
    server = start_server(tmp_path, settings, name="server", wait_service="wework.v1.MessageService")
    workers: list[subprocess.Popen] = []
    try:
        yield {"server": server, "settings": settings, "sim_url": sim_url, "config": config, "workers": workers,
               "tmp": tmp_path}
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
                w.wait(20)
        server.stop(signal.SIGTERM)
        sim.send_signal(signal.SIGTERM)
        sim.wait(10)
        mariadb_server.drop_databases(prefix + "_")


@pytest.fixture
def crash_platform(mariadb_server, redis_server, tmp_path):
    with split_platform(mariadb_server, redis_server, tmp_path) as p:
        yield p


def online_tenant_account(p) -> tuple[str, str]:
    """A new tenant with an account logged in through the simulator: (tenant_id, account_id)."""
    code = f"t{uuid.uuid4().hex[:12]}"
    with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code))
    with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id)) as client:
        account = online_account(client, "sender")
    return tenant.id, account.id


def _message_rows(config, tenant_id: str, task_id: str):
    async def q():
        db = Database(config, ["message"])
        try:
            async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
                return (await uow.session.execute(sa.text(
                    "SELECT id, status, wework_msg_id FROM messages WHERE batch_id = :b"), {"b": task_id})).all()
        finally:
            await db.dispose()
    return asyncio.run(q())


def test_kill_9_mid_batch_sends_every_message_exactly_once(crash_platform):
    p = crash_platform
    tenant_id, account_id = online_tenant_account(p)
    with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY, tenant_id=tenant_id)) as client:
        httpcall.delete(p["sim_url"] + "/_requests")
        task = client.messages.create_batch_task(pb.BatchSendTask(
            task_name="crash", account_id=account_id,
            message_content=pb.MessageContent(text=pb.TextContent(text="survive")),
            manual=pb.ManualTargets(targets=[pb.BatchTarget(conversation_id=f"c-{i}") for i in range(N)])))
        client.messages.start_batch_task(task.id)

        first = _worker(p["settings"], p["tmp"] / "worker1.log")
        p["workers"].append(first)
        deadline = time.monotonic() + 30
        while True:
            sends = [r for r in httpcall.get(p["sim_url"] + "/_requests").json() if r["path"].endswith("/messages")]
            if len(sends) >= N // 3:
                break
            assert time.monotonic() < deadline and first.poll() is None, (p["tmp"] / "worker1.log").read_text()
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        rows = _message_rows(p["config"], tenant_id, task.id)
        assert any(r.status == "pending" for r in rows), "the batch ended before the kill: nothing was tested"

        second = _worker(p["settings"], p["tmp"] / "worker2.log")
        p["workers"].append(second)
        final = list(client.messages.watch_batch_task(task.id, timeout=90))[-1].task
        assert final.status == pb.BATCH_TASK_STATUS_COMPLETED, final

    rows = _message_rows(p["config"], tenant_id, task.id)
    assert len(rows) == N
    # Every message final, each with its own provider message id. Re-sends after the kill carry
    # the message id as idempotency key; the provider answers them from its record (the
    # simulator mints one wework_msg_id per key), so nothing went out twice.
    assert {r.status for r in rows} <= {"sent", "delivered"}
    ids = [r.wework_msg_id for r in rows]
    assert all(ids) and len(set(ids)) == N
    sends = [r for r in httpcall.get(p["sim_url"] + "/_requests").json() if r["path"].endswith("/messages")]
    resent = len(sends) - N  # HTTP requests answered from the provider's idempotency record
    print(f"send requests: {len(sends)} for {N} messages ({resent} idempotent re-sends after the kill)")
    assert 0 <= resent <= 20 * 2  # at most what the dead worker held (claim_batch_size per shard)


@pytest.fixture
def long_lease_platform(mariadb_server, redis_server, tmp_path):
    # A lease far longer than the test: a claim left `sending` would show as a stalled batch.
    with split_platform(mariadb_server, redis_server, tmp_path, claim_lease_seconds=120, claim_batch_size=50,
                        account_min_interval_seconds=0.01) as p:
        yield p


def test_sigterm_mid_batch_hands_the_claim_back_for_another_worker_at_once(long_lease_platform):
    """A rolling update: SIGTERM (not kill -9) to a dispatch worker in the middle of a batch. It
    finishes the sends in flight, records them and hands back every message it claimed but did
    not send, so a second worker sends the rest at once instead of after the 120 s lease; and
    since nothing was cut off mid-send, the provider got exactly one request per message."""
    p = long_lease_platform
    tenant_id, account_id = online_tenant_account(p)
    with WeworkClient(ClientOptions(target=p["server"].target, api_key=TEST_ADMIN_KEY, tenant_id=tenant_id)) as client:
        httpcall.delete(p["sim_url"] + "/_requests")
        task = client.messages.create_batch_task(pb.BatchSendTask(
            task_name="rolling", account_id=account_id,
            message_content=pb.MessageContent(text=pb.TextContent(text="hand over")),
            manual=pb.ManualTargets(targets=[pb.BatchTarget(conversation_id=f"c-{i}") for i in range(N)])))
        client.messages.start_batch_task(task.id)

        first = _worker(p["settings"], p["tmp"] / "worker1.log")
        p["workers"].append(first)
        deadline = time.monotonic() + 30
        while len([r for r in httpcall.get(p["sim_url"] + "/_requests").json() if r["path"].endswith("/messages")]) < N // 4:
            assert time.monotonic() < deadline and first.poll() is None, (p["tmp"] / "worker1.log").read_text()
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, (p["tmp"] / "worker1.log").read_text()[-3000:]
        rows = _message_rows(p["config"], tenant_id, task.id)
        assert not [r for r in rows if r.status == "sending"], "claims left to their lease"
        assert any(r.status == "pending" for r in rows), "the batch ended before the stop: nothing was tested"

        handed_over = time.monotonic()
        second = _worker(p["settings"], p["tmp"] / "worker2.log")
        p["workers"].append(second)
        final = list(client.messages.watch_batch_task(task.id, timeout=60))[-1].task
        assert final.status == pb.BATCH_TASK_STATUS_COMPLETED, final
        print(f"the second worker finished the batch {time.monotonic() - handed_over:.1f} s after the hand-over "
              "(lease: 120 s)")

    rows = _message_rows(p["config"], tenant_id, task.id)
    assert len(rows) == N and {r.status for r in rows} <= {"sent", "delivered"}
    sends = [r for r in httpcall.get(p["sim_url"] + "/_requests").json() if r["path"].endswith("/messages")]
    assert len(sends) == N, f"{len(sends)} send requests for {N} messages: something was sent twice"
