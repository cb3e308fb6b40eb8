"""Failover without losing acknowledged writes: kill -9 a shard's primary under a stream of sends.

The shard lives on a private primary/replica pair (semi-sync, GTID; harness/replication.py); the
directory sits on the default MariaDB, so the platform still knows its tenants and its shard map
once the primary is gone. A wework-server (dispatcher in process, provider simulator over HTTP)
takes a steady stream of SendMessage calls; the primary is killed with SIGKILL, `wework-admin
failover` promotes the replica and publishes the new shard map, the running server picks it up,
and the stream goes on. Every message acknowledged before (and after) the kill exists on the new
primary, reaches a final status, and was accepted by the provider exactly once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import uuid

import grpc
import harness
import pytest
import sqlalchemy as sa
from harness import httpcall
from harness.admin_cli import admin_document
from harness.replication import start_replicated_pair
from serverproc import (
    TEST_ADMIN_KEY,
    free_port,
    online_account,
    run_admin,
    settings_yaml,
    start_server,
    wait_http,
)
from wework.client import ClientOptions, WeworkClient
from wework.client.errors import WeworkError
from wework.persistence.config import DatabaseConfig, ShardSpec
from wework.persistence.database import Database
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]
SECRET = "failover-test-secret"
BEFORE_KILL = 40
AFTER_FAILOVER = 40



@pytest.fixture
def failover_platform(mariadb_server, redis_server, tmp_path):
    pair = start_replicated_pair()
    prefix = harness.new_db_prefix("f")
    config = DatabaseConfig(
        directory_dsn=mariadb_server.url(f"{prefix}_directory"),
        shards=[ShardSpec(name="s0", buckets="0-1023", dsn=pair.primary.url(f"{prefix}_{{db}}_0"),
                          replicas=[pair.replica.url(f"{prefix}_{{db}}_0")])],
        pool_size=4, max_overflow=8, connect_timeout_seconds=2, replica_heartbeat_interval_seconds=0.1,
        shard_map_poll_seconds=0.5)
    sim_port, ingress_port = free_port(), free_port()
    sim_log = open(tmp_path / "sim.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    sim = subprocess.Popen(
        [sys.executable, "-m", "wework.server.providers.sim_server", "--port", str(sim_port),
         "--callback-url", f"http://127.0.0.1:{ingress_port}/provider/callbacks", "--callback-secret", SECRET,
         "--config", json.dumps({"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                                 "heartbeat_interval_seconds": 1, "delivery_delay_seconds": 0.01,
                                 "send_latency_seconds": 0.002})],
        stdout=sim_log, stderr=subprocess.STDOUT)
    sim_url = f"http://127.0.0.1:{sim_port}"
    server = None
    try:
        wait_http(sim_url + "/_requests")
        settings = settings_yaml(
            tmp_path / "server.yaml", config.model_dump(mode="json"), redis_server.url,
            redis={"key_prefix": f"{prefix}:"},
            provider={"kind": "http", "base_url": sim_url},
            callback={"http_port": ingress_port, "secret": SECRET},
            message={"claim_lease_seconds": 2, "account_min_interval_seconds": 0.004,
                     "account_jitter_seconds": 0, "idle_poll_seconds": 0.2})
        migrated = run_admin(settings, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        server = start_server(tmp_path, settings, name="server", wait_service="wework.v1.MessageService")
        yield {"server": server, "settings": settings, "sim_url": sim_url, "pair": pair, "prefix": prefix,
               "config": config}
    finally:
        if server is not None:
            server.stop(signal.SIGTERM)
        sim.send_signal(signal.SIGTERM)
        sim.wait(10)
        pair.stop()
        mariadb_server.drop_databases(prefix + "_")


class Sender(threading.Thread):
    """SendMessage in a loop; remembers the ids of the acknowledged messages, counts the refusals."""

    def __init__(self, client: WeworkClient, account_id: str) -> None:
        super().__init__(daemon=True)
        self.client, self.account_id = client, account_id
        self.acked: list[str] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                m = self.client.messages.send_message(account_id=self.account_id, conversation_id=f"c-{i}",
                                                      content=pb.MessageContent(text=pb.TextContent(text=f"m{i}")))
                self.acked.append(m.id)
            except (WeworkError, grpc.RpcError):
                self.refused += 1  # not acknowledged: it may or may not exist, both are correct
                time.sleep(0.05)
            time.sleep(0.01)

    def wait_acked(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            assert time.monotonic() < deadline, f"only {len(self.acked)} of {n} sends acknowledged"
            time.sleep(0.05)


def _messages(config: DatabaseConfig, tenant_id: str, ids: list[str]):
    async def q():
        db = Database(config, ["message"])
        try:
            async with db.unit_of_work("message", tenant_id) as uow:
                rows = (await uow.session.execute(
                    sa.text("SELECT id, status, wework_msg_id FROM messages WHERE id IN :ids").bindparams(
                        sa.bindparam("ids", expanding=True)), {"ids": ids})).all()
                return {r.id: r for r in rows}
        finally:
            await db.dispose()
    return asyncio.run(q())


def test_kill_9_the_primary_fail_over_and_lose_no_acknowledged_message(failover_platform):
    p = failover_platform
    target = p["server"].target
    with WeworkClient(ClientOptions(target=target, api_key=TEST_ADMIN_KEY)) as admin:
        code = f"t{uuid.uuid4().hex[:12]}"
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code))
    client = WeworkClient(ClientOptions(target=target, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id, timeout=5))
    with client:
        account = online_account(client, "sender")
        # The server measures the replica's lag and exports it, and listings read the replica.
        metrics = httpcall.get(p["server"].metrics_url).text
        assert 'wework_db_replica_lag_seconds{db="message",replica=' in metrics
        deadline = time.monotonic() + 10
        while 'wework_db_reads_total{reason="usable",shard="s0",target="replica"}' not in metrics:
            assert time.monotonic() < deadline, "no read went to the replica"
            client.messages.list_messages(pb.ListMessagesRequest(account_id=account.id))
            metrics = httpcall.get(p["server"].metrics_url).text

        sender = Sender(client, account.id)
        sender.start()
        try:
            sender.wait_acked(BEFORE_KILL, 30)
            p["pair"].primary.process.send_signal(signal.SIGKILL)  # kill -9: no clean shutdown
            p["pair"].primary.process.wait(10)
            acked_before_kill = list(sender.acked)  # a superset of what was acknowledged before the kill
            time.sleep(0.5)

            started = time.monotonic()
            result = run_admin(p["settings"], "failover", "--shard", "s0", "--json", timeout=120)
            print(f"failover took {time.monotonic() - started:.1f} s:\n{result.stderr}{result.stdout}")
            assert result.returncode == 0, result.stderr + result.stdout
            report = admin_document("failover", result.returncode, result.stdout, result.stderr)
            assert (report["shard"], report["version"]) == ("s0", 1)

            sender.wait_acked(len(sender.acked) + AFTER_FAILOVER, 60)
        finally:
            sender.stop.set()
            sender.join(15)
        acked = sender.acked
        print(f"{len(acked)} acknowledged ({len(acked_before_kill)} before the kill), {sender.refused} refused")

        # The new map: the replica is the primary, the dead server is gone from it.
        replica_url = p["pair"].replica.url(f"{p['prefix']}_{{db}}_0")
        new_config = p["config"].model_copy(update={"shards": [p["config"].shards[0].model_copy(
            update={"dsn": replica_url, "replicas": []})]})
        deadline = time.monotonic() + 60
        while True:
            rows = _messages(new_config, tenant.id, acked)
            done = {i for i, r in rows.items() if r.status in ("sent", "delivered")}
            if len(done) == len(acked) or time.monotonic() > deadline:
                break
            time.sleep(0.5)

    missing = [i for i in acked if i not in rows]
    assert not missing, f"{len(missing)} acknowledged message(s) lost, e.g. {missing[:3]}"
    assert set(acked_before_kill) <= set(rows)
    not_final = {i: rows[i].status for i in acked if i not in done}
    assert not not_final, f"not sent: {list(not_final.items())[:5]}"
    provider_ids = [rows[i].wework_msg_id for i in acked]
    assert all(provider_ids) and len(set(provider_ids)) == len(acked)  # one provider message each
    sends = [r for r in httpcall.get(p["sim_url"] + "/_requests").json() if r["path"].endswith("/messages")]
    keys = [r["idempotency_key"] for r in sends]
    assert set(acked) <= set(keys)
    # Nothing the provider sent is missing from the new primary: the dispatcher only ever saw
    # commits the replica had received (AFTER_SYNC), including those whose caller got an error.
    sent_rows = _messages(new_config, tenant.id, sorted(set(keys)))
    assert set(keys) == set(sent_rows), set(keys) - set(sent_rows)
    # A message sent again after the failover (its claim lease ran out on the new primary) carries
    # the same idempotency key and is answered from the provider's record: never delivered twice.
    print(f"send requests: {len(sends)} for {len(set(keys))} messages")
