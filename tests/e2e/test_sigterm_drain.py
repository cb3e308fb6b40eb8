"""SIGTERM under load: a drain, not a cut (docs/operations-faults.md, "Rolling restart").

A real wework-server (MariaDB, Redis) takes SendMessage from 24 threads without client retries,
so every answer is seen as the server gave it, while one thread reads the readiness probe and
one holds a WatchAccounts stream. On SIGTERM the server must
- turn NOT_SERVING first and keep serving for server.drain_delay_seconds (the probe reads
  NOT_SERVING while sends still succeed),
- then refuse new calls with UNAVAILABLE, end the stream with UNAVAILABLE, and finish the calls
  it had received: no answer is CANCELLED, INTERNAL or anything but OK and UNAVAILABLE,
- and every acknowledged message is stored exactly once.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid

import grpc
import harness
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serverproc import TEST_ADMIN_KEY, online_account, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, WeworkClient
from wework.v1 import account_pb2 as apb
from wework.v1 import account_pb2_grpc, message_pb2_grpc
from wework.v1 import message_pb2 as pb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SENDERS = 24
DRAIN_DELAY = 1.5


@pytest.fixture
def draining_platform(mariadb_server, redis_server, tmp_path):
    prefix = harness.new_db_prefix("dr")
    config = harness.make_database_config(prefix, [mariadb_server], 1)
    settings = settings_yaml(tmp_path / "server.yaml", config.model_dump(mode="json"), redis_server.url,
                             redis={"key_prefix": f"{prefix}:"},
                             server={"grace_period_seconds": 10, "drain_delay_seconds": DRAIN_DELAY,
                                     "health_check_interval_seconds": 0.5})
    migrated = run_admin(settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    server = start_server(tmp_path, settings, wait_service="wework.v1.MessageService")
    try:
        yield server, config, mariadb_server
    finally:
        server.stop(signal.SIGKILL)
        mariadb_server.drop_databases(prefix + "_")


def stored_conversations(mariadb_server, config, tenant_id: str) -> list[str]:
    from sqlalchemy.engine import make_url

    name = make_url(config.shards[0].dsn_for("message")).database
    conn = mariadb_server.sync_connect(name)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT conversation_id FROM messages WHERE tenant_id = %s", (tenant_id,))
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def test_sigterm_under_load_drains_without_cancelled_or_internal(draining_platform):
    server, config, mariadb = draining_platform
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=f"t{uuid.uuid4().hex[:12]}", tenant_name="d"))
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id)) as client:
        account = online_account(client)
    metadata = (("x-api-key", TEST_ADMIN_KEY), ("x-wework-tenant", tenant.id))

    lock = threading.Lock()
    answers: list[tuple[float, str, str]] = []  # (time answered, code, text sent)
    health: list[tuple[float, int]] = []
    stream_end: list[grpc.StatusCode] = []
    stop = threading.Event()

    def sender(i: int) -> None:
        with grpc.insecure_channel(server.target, options=[("grpc.enable_retries", 0)]) as channel:
            stub = message_pb2_grpc.MessageServiceStub(channel)
            n = 0
            while not stop.is_set():
                n += 1
                text = f"s{i}-{n}"
                try:
                    stub.SendMessage(pb.SendMessageRequest(
                        account_id=account.id, conversation_id=text, request_id=text,
                        content=pb.MessageContent(text=pb.TextContent(text=text))), metadata=metadata, timeout=30)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                    time.sleep(0.02)  # a caller pauses before trying again
                with lock:
                    answers.append((time.monotonic(), code, text))

    def prober() -> None:
        with grpc.insecure_channel(server.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not stop.is_set():
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service="wework.v1.MessageService"),
                                        timeout=1).status
                    health.append((time.monotonic(), status))
                except grpc.RpcError:
                    pass
                time.sleep(0.05)

    def watcher() -> None:
        with grpc.insecure_channel(server.target, options=[("grpc.enable_retries", 0)]) as channel:
            stub = account_pb2_grpc.AccountServiceStub(channel)
            try:
                for _ in stub.WatchAccounts(apb.WatchAccountsRequest(), metadata=metadata, timeout=60):
                    pass
                stream_end.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                stream_end.append(exc.code())

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(SENDERS)]
    threads += [threading.Thread(target=prober), threading.Thread(target=watcher)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while sum(1 for _, code, _ in answers if code == "OK") < 200:
            assert time.monotonic() < deadline, f"no load built up: {answers[-5:]}"
            time.sleep(0.05)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        exit_code = server.proc.wait(30)
        stopped = time.monotonic()
        time.sleep(0.5)  # answers to calls sent as it exited
    finally:
        stop.set()
        for t in threads:
            t.join(60)

    assert exit_code == 0, server.log()[-3000:]
    after = [(at, code) for at, code, _ in answers if at >= signalled]

    codes = {code for _, code in after}
    print(f"after SIGTERM: {len(after)} answers {sorted(codes)}; exit {stopped - signalled:.2f} s after it")
    assert codes <= {"OK", "UNAVAILABLE"}, [a for a in after if a[1] not in ("OK", "UNAVAILABLE")][:10]
    # NOT_SERVING was readable while sends still succeeded.
    not_serving = [at for at, status in health if status == health_pb2.HealthCheckResponse.NOT_SERVING]
    assert not_serving, "the probe never read NOT_SERVING"
    assert any(code == "OK" and at > not_serving[0] for at, code in after), \
        "no send succeeded after the probe read NOT_SERVING: the delay for load balancers did not happen"
    assert stopped - signalled >= DRAIN_DELAY
    assert stream_end == [grpc.StatusCode.UNAVAILABLE]
    # Every acknowledged message is stored, once (each send has its own conversation id).
    acknowledged = {text for _, code, text in answers if code == "OK"}
    stored = stored_conversations(mariadb, config, tenant.id)
    assert acknowledged <= set(stored)
    assert len(stored) == len(set(stored))
