"""Priority order end to end: messages that become due together go out highest priority first,
then oldest first.

The provider is the simulator served over HTTP, so the order in which it received the sends
(its request log, with each send's Idempotency-Key = our message id) is what is checked: that is
the order a recipient would see them in.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import harness
import pytest
from google.protobuf import timestamp_pb2
from harness import httpcall
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
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]
SECRET = "priority-test-secret"



@pytest.fixture
def http_provider_platform(mariadb_server, redis_server, tmp_path):
    prefix = harness.new_db_prefix("q")
    config = harness.make_database_config(prefix, [mariadb_server], 1)
    sim_port, ingress_port = free_port(), free_port()
    sim_log = open(tmp_path / "sim.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    sim = subprocess.Popen(
        [sys.executable, "-m", "wework.server.providers.sim_server", "--port", str(sim_port),
         "--callback-url", f"http://127.0.0.1:{ingress_port}/provider/callbacks", "--callback-secret", SECRET,
         "--config", json.dumps({"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                                 "heartbeat_interval_seconds": 1, "delivery_delay_seconds": 0.01})],
        stdout=sim_log, stderr=subprocess.STDOUT)
    sim_url = f"http://127.0.0.1:{sim_port}"
    wait_http(sim_url + "/_requests")
    settings = settings_yaml(
        tmp_path / "server.yaml", config.model_dump(mode="json"), redis_server.url,
        redis={"key_prefix": f"{prefix}:"},
        provider={"kind": "http", "base_url": sim_url},
        callback={"http_port": ingress_port, "secret": SECRET},
        message={"account_min_interval_seconds": 0.01, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2})
    assert run_admin(settings, "migrate").returncode == 0
    server = start_server(tmp_path, settings, name="server", wait_service="wework.v1.MessageService")
    yield server, sim_url
    server.stop(signal.SIGTERM)
    sim.send_signal(signal.SIGTERM)
    sim.wait(10)
    mariadb_server.drop_databases(prefix + "_")


def test_messages_due_together_are_sent_by_priority_then_age(http_provider_platform):
    server, sim_url = http_provider_platform
    code = f"t{uuid.uuid4().hex[:12]}"
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code))
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id)) as client:
        account = online_account(client, "ordered")

        # All due at the same instant, accepted in an order that is neither priority nor reverse.
        due = timestamp_pb2.Timestamp()
        due.FromDatetime(datetime.now(UTC) + timedelta(seconds=3))
        priorities = [3, 10, 1, 5, 10, 7, 1, 5, 3, 7]
        accepted = [client.messages.send_message(
            account_id=account.id, conversation_id=f"c-{i}", priority=p, scheduled_time=due,
            content=pb.MessageContent(text=pb.TextContent(text=f"#{i} p{p}"))) for i, p in enumerate(priorities)]
        ids = {m.id for m in accepted}

        deadline = time.monotonic() + 30
        while True:
            statuses = {client.messages.get_message(m.id).status for m in accepted}
            if statuses <= {pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED}:
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.2)

    sends = [r["idempotency_key"] for r in httpcall.get(sim_url + "/_requests").json()
             if r["path"].endswith("/messages") and r["idempotency_key"] in ids]
    assert len(sends) == len(accepted), "each message sent exactly once"
    # Expected: priority descending; equal priorities in acceptance order.
    expected = [m.id for _, m in sorted(enumerate(accepted), key=lambda im: (-im[1].priority, im[0]))]
    assert sends == expected, ([next(m.priority for m in accepted if m.id == k) for k in sends])
