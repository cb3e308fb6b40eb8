"""Drill: a Redis Cluster master killed while a batch is being sent (docs/redis.md, "Node failover").

A private cluster of three masters with one replica each (tests/harness/redis_cluster.py), one
wework-server with its dispatcher over MariaDB, the provider simulator over HTTP. While the
batch is sent, the master that holds the sending account's pacing keys is killed with SIGKILL.
Its replica takes over after cluster-node-timeout; meanwhile the account's sends hold (pacing
cannot decide, docs/pacing.md) and then resume. Every message is sent exactly once (one provider
call per message), no two sends of the account come closer than its interval, and the time to
recover (the kill to the replica's promotion, and to the first send after it) is printed.
"""

from __future__ import annotations

import signal
import time
import uuid

import harness
import pytest
from harness import httpcall
from harness.redis_cluster import start_redis_cluster
from serverproc import TEST_ADMIN_KEY, free_port, online_account, run_admin, settings_yaml, start_server
from simproc import start_sim_server
from test_pacing_across_workers import assert_paced
from wework.client import ClientOptions, WeworkClient
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SERVICE = "wework.v1.MessageService"
SECRET = "redis-cluster-failover-secret"
BATCH = 40
INTERVAL = 0.2


@pytest.fixture
def failover_platform(mariadb_server, tmp_path):
    try:
        cluster = start_redis_cluster(3, replicas=1)
    except harness.ServerUnavailable as exc:
        pytest.fail(f"cannot start a Redis Cluster with replicas: {exc}", pytrace=False)
    prefix = harness.new_db_prefix("rf")
    config = harness.make_database_config(prefix, [mariadb_server], 1)
    ingress_port = free_port()
    sim = start_sim_server(tmp_path, free_port(), f"http://127.0.0.1:{ingress_port}/provider/callbacks", SECRET)
    server = None
    try:
        settings = settings_yaml(
            tmp_path / "server.yaml", config.model_dump(mode="json"), cluster.url,
            redis={"cluster": True, "key_prefix": f"{prefix}:", "socket_timeout_seconds": 0.5},
            provider={"kind": "http", "base_url": sim.url},
            callback={"http_port": ingress_port, "secret": SECRET},
            message={"account_min_interval_seconds": INTERVAL, "account_jitter_seconds": 0,
                     "idle_poll_seconds": 0.5, "pacing_hold_seconds": 0.25})
        migrated = run_admin(settings, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        server = start_server(tmp_path, settings, name="server", wait_service=SERVICE)
        yield server, cluster, sim, prefix
    finally:
        if server is not None:
            server.stop(signal.SIGTERM)
        sim.stop()
        cluster.stop()
        mariadb_server.drop_databases(prefix + "_")


def _send_times(sim) -> list[dict]:
    return [r for r in httpcall.get(sim.url + "/_requests").json() if r["path"].endswith("/messages")]


def test_a_killed_cluster_master_loses_and_duplicates_nothing(failover_platform):
    server, cluster, sim, prefix = failover_platform
    code = f"t{uuid.uuid4().hex[:12]}"
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code))
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id)) as client:
        account = online_account(client, "sender")
        sim.clear_requests()
        task = client.messages.create_batch_task(pb.BatchSendTask(
            task_name="failover", account_id=account.id,
            message_content=pb.MessageContent(text=pb.TextContent(text="through the failover")),
            manual=pb.ManualTargets(targets=[pb.BatchTarget(conversation_id=f"c-{i}") for i in range(BATCH)])))
        client.messages.start_batch_task(task.id)
        deadline = time.monotonic() + 30
        while sim.send_requests() < BATCH // 4:
            assert time.monotonic() < deadline, "the batch did not start sending"
            time.sleep(0.05)

        # The master that decides this account's pacing.
        victim = cluster.node_for_key(f"{prefix}:pace:{{{account.id}}}:next")
        masters_before = cluster.masters()
        cluster.kill(victim)
        killed_at, at_kill = time.monotonic(), sim.send_requests()
        assert at_kill < BATCH, "the batch ended before the kill: nothing was tested"
        survivor = next(p for p in masters_before if p != victim)

        promoted = resumed = None
        deadline = time.monotonic() + 60
        while promoted is None or resumed is None:
            assert time.monotonic() < deadline, (promoted, resumed, cluster.cluster_info(survivor))
            if promoted is None and cluster.cluster_info(survivor).get("cluster_state") == "ok" \
                    and victim not in cluster.masters(via=survivor):
                promoted = time.monotonic() - killed_at
            # +2: a send whose slot was taken just before the kill may still arrive after it.
            if resumed is None and sim.send_requests() >= at_kill + 2:
                resumed = time.monotonic() - killed_at
            time.sleep(0.05)
        print(f"redis cluster failover: replica promoted {promoted:.1f} s, sends resumed {resumed:.1f} s "
              f"after the master was killed; provider calls {at_kill} at the kill, batch {BATCH}")

        final = list(client.messages.watch_batch_task(task.id, timeout=120))[-1].task
        assert final.status == pb.BATCH_TASK_STATUS_COMPLETED, final
        messages = [m for m in client.messages.iter_messages() if m.batch_id == task.id]

    # Nothing lost, nothing sent twice: every message sent, one provider call each.
    assert len(messages) == BATCH
    assert all(m.status in (pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED) for m in messages)
    assert len({m.wework_msg_id for m in messages}) == BATCH
    requests = _send_times(sim)
    assert len(requests) == BATCH and len({r["idempotency_key"] for r in requests}) == BATCH
    # The account's interval held through the failover (arrival times; HTTP latency may shrink a gap).
    assert_paced([r["at"] for r in requests], INTERVAL)
