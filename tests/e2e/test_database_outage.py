"""The shard's MariaDB killed under a running wework-server: callers get UNAVAILABLE with a
RetryInfo on every path (docs/operations-faults.md), never INTERNAL.

A private mariadbd started by the harness (never the shared one) holds the directory and the
shard; the test kills it with SIGKILL. SendMessage goes through the group commit, whose
transaction runs on a raw driver connection (uow.open_driver_unit_of_work): its failure to
connect is pymysql's own error, not SQLAlchemy's, and used to answer INTERNAL.
"""

from __future__ import annotations

import signal

import grpc
import harness
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from serverproc import TEST_ADMIN_KEY, online_account, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, WeworkClient
from wework.v1 import message_pb2 as pb
from wework.v1 import message_pb2_grpc, tenant_pb2_grpc
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]


@pytest.fixture
def platform_on_a_private_mariadb(redis_server, tmp_path):
    mariadb = harness.start_private_mariadb()
    prefix = harness.new_db_prefix("do")
    server = None
    try:
        config = harness.make_database_config(prefix, [mariadb], 1, connect_timeout_seconds=2)
        settings = settings_yaml(tmp_path / "server.yaml", config.model_dump(mode="json"), redis_server.url,
                                 redis={"key_prefix": f"{prefix}:"})
        migrated = run_admin(settings, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        server = start_server(tmp_path, settings, wait_service="wework.v1.MessageService")
        yield server, mariadb
    finally:
        if server is not None:
            server.stop(signal.SIGTERM)
        harness.servers.forget(mariadb)


def status_of(error: grpc.RpcError):
    status = rpc_status.from_call(error)
    assert status is not None, f"no rich status: {error.code()} {error.details()}"
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    return error.code(), status.message, retry


def test_every_path_answers_unavailable_with_retry_info_while_the_database_is_down(platform_on_a_private_mariadb):
    server, mariadb = platform_on_a_private_mariadb
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code="outage", tenant_name="outage"))
    with WeworkClient(ClientOptions(target=server.target, api_key=TEST_ADMIN_KEY, tenant_id=tenant.id)) as client:
        account = online_account(client)
        # Warm: the quota counter, the caches and the pool hold what a send needs but the rows.
        first = client.messages.send_message(account_id=account.id, conversation_id="c-0",
                                             content=pb.MessageContent(text=pb.TextContent(text="before")))

    mariadb.process.send_signal(signal.SIGKILL)
    mariadb.process.wait(10)

    metadata = (("x-api-key", TEST_ADMIN_KEY), ("x-wework-tenant", tenant.id))
    # No retries: each answer is seen as the server gave it.
    with grpc.insecure_channel(server.target, options=[("grpc.enable_retries", 0)]) as channel:
        messages = message_pb2_grpc.MessageServiceStub(channel)
        tenants = tenant_pb2_grpc.TenantServiceStub(channel)
        calls = {
            # the group commit on a raw driver connection
            "SendMessage": lambda: messages.SendMessage(pb.SendMessageRequest(
                account_id=account.id, conversation_id="c-1", request_id="down-1",
                content=pb.MessageContent(text=pb.TextContent(text="during"))), metadata=metadata, timeout=20),
            # an ORM read on the shard
            "GetMessage": lambda: messages.GetMessage(pb.GetMessageRequest(id=first.id), metadata=metadata,
                                                      timeout=20),
            # the directory (a tenant code nobody cached)
            "CreateTenant": lambda: tenants.CreateTenant(tpb.CreateTenantRequest(
                tenant=tpb.Tenant(tenant_code="during", tenant_name="during")), metadata=metadata, timeout=20),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as failed:
                call()
            code, message, retry = status_of(failed.value)
            assert code == grpc.StatusCode.UNAVAILABLE, (name, code, message)
            assert retry, f"{name}: UNAVAILABLE without RetryInfo"
            assert "Error" not in message and "pymysql" not in message, (name, message)
