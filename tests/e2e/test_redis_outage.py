"""Redis stopped in the middle of a batch (docs/redis.md, "When Redis is down").

A wework-server over MariaDB and a private redis-server that the test stops and starts again
(never the machine's shared Redis), the provider simulator served over HTTP. A batch task is
being dispatched when Redis stops. While it is down: the batch holds (the account's pacing is
shared through Redis and a send is never paced per process, docs/pacing.md), reads and logins
keep working (caches fall back to the database), and SendMessage is refused with UNAVAILABLE
(the daily quota cannot be checked atomically). Redis comes back empty: the quota counter is
re-seeded from the database, so it is still exact, and the batch resumes. In the end every
accepted message was sent exactly once, no two sends of the account came closer than its
interval at the provider, and nothing refused was stored.
"""

from __future__ import annotations

import signal
import time
import uuid

import harness
import pytest
from harness import httpcall
from harness.redis_cluster import start_restartable_redis
from serverproc import TEST_ADMIN_KEY, free_port, online_account, run_admin, settings_yaml, start_server
from simproc import start_sim_server
from test_pacing_across_workers import assert_paced
from wework.client import ClientOptions, ResourceExhaustedError, UnavailableError, WeworkClient
from wework.v1 import account_pb2 as apb
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SERVICE = "wework.v1.MessageService"
SECRET = "redis-outage-test-secret"
BATCH = 40
EXTRA = 3  # the quota's room left after the batch
INTERVAL = 0.2


@pytest.fixture
def outage_platform(mariadb_server, tmp_path):
    redis = start_restartable_redis()
    prefix = harness.new_db_prefix("ro")
    config = harness.make_database_config(prefix, [mariadb_server], 1)
    ingress_port = free_port()
    sim = start_sim_server(tmp_path, free_port(), f"http://127.0.0.1:{ingress_port}/provider/callbacks", SECRET)
    server = None
    try:
        settings = settings_yaml(
            tmp_path / "server.yaml", config.model_dump(mode="json"), redis.url,
            redis={"key_prefix": f"{prefix}:", "socket_timeout_seconds": 0.5},
            provider={"kind": "http", "base_url": sim.url},
            callback={"http_port": ingress_port, "secret": SECRET},
            # 0.2 s between two sends of the account: the batch takes ~8 s, long enough to stop
            # Redis in its middle and start it again before the end.
            message={"account_min_interval_seconds": INTERVAL, "account_jitter_seconds": 0, "idle_poll_seconds": 0.5,
                     "pacing_hold_seconds": 0.5})
        migrated = run_admin(settings, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        server = start_server(tmp_path, settings, name="server", wait_service=SERVICE)
        yield server, redis, sim
    finally:
        if server is not None:
            server.stop(signal.SIGTERM)
        sim.stop()
        redis.remove()
        mariadb_server.drop_databases(prefix + "_")


def text(value: str) -> pb.MessageContent:
    return pb.MessageContent(text=pb.TextContent(text=value))


def test_redis_stopped_mid_batch_loses_nothing_and_sends_nothing_twice(outage_platform):
    server, redis, sim = outage_platform
    code = f"t{uuid.uuid4().hex[:12]}"
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code,
                                                        max_daily_messages=BATCH + EXTRA))
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id)) as client:
        account = online_account(client, "sender")
        sim.clear_requests()
        task = client.messages.create_batch_task(pb.BatchSendTask(
            task_name="outage", account_id=account.id, message_content=text("through the outage"),
            manual=pb.ManualTargets(targets=[pb.BatchTarget(conversation_id=f"c-{i}") for i in range(BATCH)])))
        client.messages.start_batch_task(task.id)

        deadline = time.monotonic() + 30
        while sim.send_requests() < BATCH // 4:
            assert time.monotonic() < deadline, "the batch did not start sending"
            time.sleep(0.05)
        redis.stop()
        at_stop = sim.send_requests()
        assert at_stop < BATCH, "the batch ended before Redis stopped: nothing was tested"

        # Down: sends are refused (and not stored), the batch goes on, reads work.
        refused, outage_started = 0, time.monotonic()
        for i in range(3):
            with pytest.raises(UnavailableError) as err:
                # retry=None: each refusal is seen at once (by default the client retries a
                # SendMessage after the server's RetryInfo delay, 1 s).
                client.messages.send_message(account_id=account.id, conversation_id=f"down-{i}",
                                             content=text("no"), retry=None)
            assert err.value.reason == "DEPENDENCY_UNAVAILABLE"
            refused += 1
        assert client.accounts.get_account(account.id).status == apb.ACCOUNT_STATUS_ONLINE
        # Held: at most the one send the account had reserved before the stop goes out.
        time.sleep(max(0.0, 3.0 - (time.monotonic() - outage_started)))
        during = sim.send_requests()
        print(f"outage: {time.monotonic() - outage_started:.1f} s, provider calls {at_stop} -> {during} of {BATCH}")
        assert during <= at_stop + 1, "sends went out unpaced while the shared pacing was down"
        redis.start()

        # Back, empty: the counter is re-seeded from the database (the batch's 40 accepted), so
        # exactly EXTRA more are accepted. (The client retries UNAVAILABLE a few times; the
        # server may need a moment to see Redis again.)
        accepted = []
        deadline = time.monotonic() + 20
        while len(accepted) < EXTRA:
            try:
                accepted.append(client.messages.send_message(
                    account_id=account.id, conversation_id=f"up-{len(accepted)}", content=text("yes")))
            except UnavailableError:
                assert time.monotonic() < deadline, "sends still refused after Redis came back"
                time.sleep(0.2)
        with pytest.raises(ResourceExhaustedError) as err:
            client.messages.send_message(account_id=account.id, conversation_id="over", content=text("over"))
        assert err.value.reason == "QUOTA_EXCEEDED"

        final = list(client.messages.watch_batch_task(task.id, timeout=60))[-1].task
        assert final.status == pb.BATCH_TASK_STATUS_COMPLETED, final
        done = [m for m in client.messages.iter_messages() if m.status in
                (pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED)]
        deadline = time.monotonic() + 20
        while len(done) < BATCH + EXTRA:
            assert time.monotonic() < deadline, f"only {len(done)} of {BATCH + EXTRA} messages sent"
            time.sleep(0.2)
            done = [m for m in client.messages.iter_messages() if m.status in
                    (pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED)]
        everything = list(client.messages.iter_messages())

    # Nothing lost, nothing refused stored, each sent once: one provider call per message.
    assert refused == 3
    assert len(everything) == BATCH + EXTRA
    assert not [m for m in everything if m.conversation_id.startswith(("down-", "over"))]
    assert len({m.wework_msg_id for m in everything}) == BATCH + EXTRA
    assert sim.send_requests() == BATCH + EXTRA
    # Never faster than the account's interval, across the outage too.
    assert_paced([r["at"] for r in httpcall.get(sim.url + "/_requests").json() if r["path"].endswith("/messages")],
                 INTERVAL)
