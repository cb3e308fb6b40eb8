"""The full message flow with Redis Cluster: two wework-server processes over MariaDB shards and a
real three-node Redis Cluster (`redis.cluster: true`), one provider simulator served over HTTP.

Create a tenant, log an account in, send from both processes, every message dispatched and
delivered once; the daily quota is counted in the cluster and exact across both processes; a
tenant change made through one process reaches the other's in-process cache through pub/sub on
the cluster at once (its L1 would otherwise serve the old limit for 30 s).
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import harness
import pytest
from google.protobuf import field_mask_pb2
from serverproc import TEST_ADMIN_KEY, free_port, run_admin, settings_yaml, start_server
from simproc import start_sim_server
from wework.client import ClientOptions, ResourceExhaustedError, WeworkClient
from wework.persistence.config import RedisConfig
from wework.persistence.redis import tenant_key
from wework.v1 import account_pb2 as apb
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SERVICE = "wework.v1.MessageService"
DONE = (pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED)
SECRET = "redis-cluster-test-secret"


@pytest.fixture(scope="module")
def cluster_platform(mariadb_server, redis_cluster, tmp_path_factory):
    """Two servers sharing the database, the cluster and one provider simulator served over HTTP
    (its callbacks go to server A's ingress); (servers, key prefix, simulator)."""
    workdir = tmp_path_factory.mktemp("redis-cluster")
    prefix = harness.new_db_prefix("rc")
    config = harness.make_database_config(prefix, [mariadb_server], 1)
    ingress_port = free_port()
    sim = start_sim_server(workdir, free_port(), f"http://127.0.0.1:{ingress_port}/provider/callbacks", SECRET)
    servers = []
    try:
        common = {"redis": {"cluster": True, "key_prefix": f"{prefix}:"},
                  "provider": {"kind": "http", "base_url": sim.url},
                  "message": {"account_min_interval_seconds": 0.01, "account_jitter_seconds": 0,
                              "idle_poll_seconds": 5}}
        settings_a = settings_yaml(workdir / "a.yaml", config.model_dump(mode="json"), redis_cluster.url,
                                   callback={"http_port": ingress_port, "secret": SECRET}, **common)
        settings_b = settings_yaml(workdir / "b.yaml", config.model_dump(mode="json"), redis_cluster.url, **common)
        migrated = run_admin(settings_a, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        with ThreadPoolExecutor(2) as pool:  # both start at once: half the wait
            starting = [pool.submit(start_server, workdir, path, name=name, wait_service=SERVICE)
                        for name, path in (("a", settings_a), ("b", settings_b))]
            for future in starting:
                with contextlib.suppress(Exception):
                    servers.append(future.result())
        assert len(servers) == 2, [f.exception() for f in starting]
        yield servers, prefix, sim
    finally:
        for server in servers:
            server.stop(signal.SIGTERM)
        sim.stop()
        mariadb_server.drop_databases(prefix + "_")


def client(server, **options) -> WeworkClient:
    return WeworkClient(ClientOptions(target=server.target, **options))


def wait_done(c: WeworkClient, message_id: str, timeout: float = 30) -> pb.Message:
    deadline = time.monotonic() + timeout
    while True:
        m = c.messages.get_message(message_id)
        if m.status in DONE:
            return m
        assert m.status != pb.MESSAGE_STATUS_FAILED, m.error_message
        assert time.monotonic() < deadline, (pb.MessageStatus.Name(m.status), m.hold_reason, m.error_message)
        time.sleep(0.1)


def test_message_flow_quota_and_cache_invalidation_on_a_cluster(cluster_platform, redis_cluster):
    (a, b), prefix, sim = cluster_platform
    code = f"t{uuid.uuid4().hex[:12]}"
    with client(a, api_key=TEST_ADMIN_KEY) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code, max_daily_messages=30))
    with client(a, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id) as admin_a, \
            client(b, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id) as admin_b:
        # The account logs in through process B (account cache and events on the cluster).
        account = admin_b.accounts.create_account(apb.Account(account_name="sender"))
        admin_b.accounts.start_login(account.id)
        deadline = time.monotonic() + 20
        while admin_a.accounts.get_account(account.id).status != apb.ACCOUNT_STATUS_ONLINE:
            assert time.monotonic() < deadline, "the account did not come online"
            time.sleep(0.1)

        # 20 sends, half through each process, at once: accepted, dispatched (woken through the
        # cluster's pub/sub; the 5 s idle poll is only the fallback), delivered once each.
        def send(i: int) -> pb.Message:
            c = admin_a if i % 2 else admin_b
            return c.messages.send_message(account_id=account.id, conversation_id=f"c-{i}",
                                           content=pb.MessageContent(text=pb.TextContent(text=f"m{i}")))

        sim.clear_requests()
        with ThreadPoolExecutor(8) as pool:
            sent = list(pool.map(send, range(20)))
        done = [wait_done(admin_a, m.id) for m in sent]
        assert len({m.wework_msg_id for m in done}) == 20 and all(m.wework_msg_id for m in done)

        # Lower the limit through A. B has the tenant (limit 30) in its L1; the invalidation
        # published on the cluster drops it, so B enforces the new limit at once.
        current = admin_a.tenants.get_tenant(tpb.GetTenantRequest(id=tenant.id))
        admin_a.tenants.update_tenant(tpb.UpdateTenantRequest(
            tenant=tpb.Tenant(id=tenant.id, max_daily_messages=22, etag=current.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["max_daily_messages"])))
        extra = [send(100 + 2 * i) for i in range(2)]  # even numbers go through B
        with pytest.raises(ResourceExhaustedError) as refused:
            send(200)
        assert refused.value.reason == "QUOTA_EXCEEDED"
        for m in extra:
            wait_done(admin_b, m.id)
    assert sim.send_requests() == 22  # one provider call per message, none twice

    # The counter lives in the cluster, on the node that owns the tenant's hash slot.
    quota_key = tenant_key(RedisConfig(key_prefix=f"{prefix}:"), tenant.id, "quota", "messages",
                           datetime.now(UTC).strftime("%Y%m%d"))
    node = redis_cluster.node_for_key(quota_key)
    assert redis_cluster.cli(node, "GET", quota_key).strip() == "22"
