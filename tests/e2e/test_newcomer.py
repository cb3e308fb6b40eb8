"""A newcomer's tour of the embedded mode (`make run`): the banner's commands, the quickstart,
users with roles, suspend reasons, heartbeat-free callback listings, report status names and the
simulator's API. One embedded server (SQLite, in-process Redis) serves the whole module."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from harness.admin_cli import admin_document
from serverproc import BIN, ServerProcess, start_server
from wework.v1 import account_pb2 as apb
from wework.v1 import account_pb2_grpc as apb_grpc
from wework.v1 import callback_pb2 as cpb
from wework.v1 import callback_pb2_grpc as cpb_grpc
from wework.v1 import report_pb2 as rpb
from wework.v1 import report_pb2_grpc as rpb_grpc
from wework.v1 import simulator_pb2 as spb
from wework.v1 import simulator_pb2_grpc as spb_grpc
from wework.v1 import tenant_pb2 as tpb
from wework.v1 import tenant_pb2_grpc as tpb_grpc

pytestmark = [pytest.mark.e2e]


def _no_wework_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WEWORK_")}


class Embedded:
    def __init__(self, server: ServerProcess, workdir: Path) -> None:
        self.server, self.workdir = server, workdir
        self.admin_key = json.loads((workdir / "var" / "secrets.json").read_text())["admin_api_key"]
        self.channel = grpc.insecure_channel(server.target)
        self.tenants = tpb_grpc.TenantServiceStub(self.channel)
        self.accounts = apb_grpc.AccountServiceStub(self.channel)
        self.callbacks = cpb_grpc.CallbackServiceStub(self.channel)
        self.reports = rpb_grpc.ReportServiceStub(self.channel)
        self.simulator = spb_grpc.SimulatorServiceStub(self.channel)

    def admin(self, tenant_id: str | None = None) -> list[tuple[str, str]]:
        return [("x-api-key", self.admin_key)] + ([("x-wework-tenant", tenant_id)] if tenant_id else [])

    def new_tenant(self) -> tuple[tpb.Tenant, dict[str, str], list[tuple[str, str]]]:
        """A tenant, its system role ids by code, and the metadata of an admin-role key."""
        code = f"n{uuid.uuid4().hex[:10]}"
        tenant = self.tenants.CreateTenant(tpb.CreateTenantRequest(tenant=tpb.Tenant(
            tenant_code=code, tenant_name=code)), metadata=self.admin())
        roles = {r.role_code: r.id for r in self.tenants.ListRoles(
            tpb.ListRolesRequest(), metadata=self.admin(tenant.id)).roles}
        return tenant, roles, self.key(tenant.id, roles["admin"])

    def key(self, tenant_id: str, role_id: str) -> list[tuple[str, str]]:
        created = self.tenants.CreateApiKey(tpb.CreateApiKeyRequest(api_key=tpb.ApiKey(
            display_name="newcomer", role_id=role_id)), metadata=self.admin(tenant_id))
        return [("x-api-key", created.secret)]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("embedded")
    env = {"WEWORK_PROVIDER__SIMULATOR__AUTO_SCAN": "false",
           "WEWORK_PROVIDER__SIMULATOR__HEARTBEAT_INTERVAL_SECONDS": "0.2",
           "WEWORK_WEBHOOKS__MAX_ENDPOINTS_PER_TENANT": "1"}
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("WEWORK_")]}
    try:
        server = start_server(workdir, env=env)
    finally:
        os.environ.update(saved)
    platform = Embedded(server, workdir)
    yield platform
    platform.channel.close()
    assert server.stop() == 0


def _eventually(check: Callable[[], object], what: str, timeout: float = 20) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout:g} s")
        time.sleep(0.1)


def _status(embedded: Embedded, key, account_id: str) -> int:
    return embedded.accounts.GetAccount(apb.GetAccountRequest(id=account_id), metadata=key).status


def _online_account(embedded: Embedded, key) -> apb.Account:
    """Created, logged in by a simulated scan (the fixture turns the automatic scan off)."""
    account = embedded.accounts.CreateAccount(apb.CreateAccountRequest(
        account=apb.Account(account_name=f"a{uuid.uuid4().hex[:8]}")), metadata=key)
    embedded.accounts.StartLogin(apb.StartLoginRequest(id=account.id), metadata=key)
    _eventually(lambda: _status(embedded, key, account.id) == apb.ACCOUNT_STATUS_WAITING_SCAN, "the QR code")
    embedded.simulator.SimulateScan(spb.SimulateScanRequest(account_id=account.id), metadata=key)
    _eventually(lambda: _status(embedded, key, account.id) == apb.ACCOUNT_STATUS_ONLINE, "login")
    return account


# ---- start-up -----------------------------------------------------------------------------------


def test_the_banner_commands_work_as_written_from_anywhere(embedded, tmp_path):
    log = embedded.server.log()
    assert f"listening on 127.0.0.1:{embedded.server.port}" in log  # loopback in the embedded mode
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("try "))
    commands = [line.strip() for line in lines[start + 1:start + 4]]
    assert commands and all("grpcurl" in c or "quickstart" in c for c in commands)
    # Another directory and a PATH without the virtualenv: what a new shell has.
    env = {**_no_wework_env(), "PATH": "/usr/bin:/bin"}
    for command in commands:
        out = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                             check=False, timeout=60)
        assert out.returncode == 0, f"{command}\n{out.stderr}"
    assert "wework.v1.SimulatorService" in subprocess.run(
        ["bash", "-c", commands[0]], cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60).stdout


def test_quickstart_prints_exports_that_work(embedded, tmp_path):
    code = f"q{uuid.uuid4().hex[:8]}"
    out = subprocess.run([str(BIN / "wework-admin"), "--data-dir", str(embedded.workdir / "var"), "quickstart",
                          "--target", embedded.server.target, "--tenant-code", code],
                         env=_no_wework_env(), cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    exports = dict(shlex.split(line)[1].split("=", 1) for line in out.stdout.splitlines())
    assert set(exports) >= {"WEWORK_TARGET", "WEWORK_TENANT_ID", "WEWORK_API_KEY", "WEWORK_ACCESS_TOKEN",
                            "WEWORK_USERNAME", "WEWORK_PASSWORD"}
    # The key (admin role) and the user's token (operator role) both work inside the tenant.
    for metadata in ([("x-api-key", exports["WEWORK_API_KEY"])],
                     [("authorization", f"Bearer {exports['WEWORK_ACCESS_TOKEN']}")]):
        embedded.accounts.ListAccounts(apb.ListAccountsRequest(), metadata=metadata)
    tenant = embedded.tenants.GetTenant(tpb.GetTenantRequest(id=exports["WEWORK_TENANT_ID"]),
                                        metadata=[("x-api-key", exports["WEWORK_API_KEY"])])
    assert tenant.tenant_code == code
    again = subprocess.run([str(BIN / "wework-admin"), "--data-dir", str(embedded.workdir / "var"), "quickstart",
                            "--target", embedded.server.target, "--tenant-code", code, "--json"],
                           env=_no_wework_env(), cwd=tmp_path, capture_output=True, text=True, check=False,
                           timeout=60)
    assert again.returncode == 1 and "ALREADY_EXISTS" in again.stderr and "--tenant-code" in again.stderr
    assert "ALREADY_EXISTS" in admin_document("quickstart", again.returncode, again.stdout, again.stderr)["error"]
    # For automation: the same exports in one JSON document.
    other = subprocess.run([str(BIN / "wework-admin"), "--data-dir", str(embedded.workdir / "var"), "quickstart",
                            "--target", embedded.server.target, "--tenant-code", f"{code}j", "--json"],
                           env=_no_wework_env(), cwd=tmp_path, capture_output=True, text=True, check=False,
                           timeout=60)
    report = admin_document("quickstart", other.returncode, other.stdout, other.stderr)
    assert report["tenant_code"] == f"{code}j" and report["exports"]["WEWORK_TENANT_ID"] == report["tenant_id"]
    embedded.accounts.ListAccounts(apb.ListAccountsRequest(),
                                   metadata=[("x-api-key", report["exports"]["WEWORK_API_KEY"])])


# ---- users with roles ------------------------------------------------------------------------------


def test_create_user_with_a_role_gives_a_token_that_works(embedded):
    tenant, roles, key = embedded.new_tenant()
    user = embedded.tenants.CreateUser(tpb.CreateUserRequest(user=tpb.User(
        username="olga", email="olga@example.com", password="correct horse battery",
        role_ids=[roles["viewer"]])), metadata=key)
    assert list(user.role_ids) == [roles["viewer"]]
    login = embedded.tenants.Login(tpb.LoginRequest(tenant_code=tenant.tenant_code, username="olga",
                                                    password="correct horse battery"))
    bearer = [("authorization", f"Bearer {login.access_token}")]
    embedded.accounts.ListAccounts(apb.ListAccountsRequest(), metadata=bearer)
    with pytest.raises(grpc.RpcError) as denied:  # a viewer cannot write
        embedded.accounts.CreateAccount(apb.CreateAccountRequest(account=apb.Account(account_name="x")),
                                        metadata=bearer)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_create_user_with_roles_needs_the_right_to_grant_them_and_leaves_nothing(embedded):
    tenant, roles, key = embedded.new_tenant()
    hr = embedded.tenants.CreateRole(tpb.CreateRoleRequest(role=tpb.Role(
        role_code="hr", role_name="HR", permissions=["users.read", "users.write"])), metadata=key)
    hr_key = embedded.key(tenant.id, hr.id)
    with pytest.raises(grpc.RpcError) as denied:
        embedded.tenants.CreateUser(tpb.CreateUserRequest(user=tpb.User(
            username="mallory", email="m@example.com", password="correct horse battery",
            role_ids=[roles["admin"]])), metadata=hr_key)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED and "roles.write" in denied.value.details()
    with pytest.raises(grpc.RpcError) as missing:  # an unknown role: NOT_FOUND, and no user either
        embedded.tenants.CreateUser(tpb.CreateUserRequest(user=tpb.User(
            username="mallory", email="m@example.com", password="correct horse battery",
            role_ids=[str(uuid.uuid4())])), metadata=key)
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    users = embedded.tenants.ListUsers(tpb.ListUsersRequest(), metadata=key).users
    assert "mallory" not in {u.username for u in users}
    # Without roles, users.write is enough, as before.
    embedded.tenants.CreateUser(tpb.CreateUserRequest(user=tpb.User(
        username="mallory", email="m@example.com", password="correct horse battery")), metadata=hr_key)


# ---- tenants --------------------------------------------------------------------------------------


def test_suspend_reason_is_stored_shown_and_cleared_on_resume(embedded):
    tenant, _, _ = embedded.new_tenant()
    with pytest.raises(grpc.RpcError) as too_long:
        embedded.tenants.SuspendTenant(tpb.SuspendTenantRequest(id=tenant.id, reason="x" * 501),
                                       metadata=embedded.admin())
    assert too_long.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    suspended = embedded.tenants.SuspendTenant(tpb.SuspendTenantRequest(id=tenant.id, reason="unpaid invoice 42"),
                                               metadata=embedded.admin())
    assert suspended.suspend_reason == "unpaid invoice 42"
    got = embedded.tenants.GetTenant(tpb.GetTenantRequest(id=tenant.id), metadata=embedded.admin())
    assert got.status == tpb.TENANT_STATUS_SUSPENDED and got.suspend_reason == "unpaid invoice 42"
    resumed = embedded.tenants.ResumeTenant(tpb.ResumeTenantRequest(id=tenant.id), metadata=embedded.admin())
    assert resumed.status == tpb.TENANT_STATUS_ACTIVE and resumed.suspend_reason == ""


# ---- the simulator, callbacks and reports -------------------------------------------------------


def test_the_simulator_makes_logins_conversations_and_outages_through_the_api(embedded):
    tenant, roles, key = embedded.new_tenant()
    account = _online_account(embedded, key)
    sent = embedded.simulator.SimulateIncomingMessage(spb.SimulateIncomingMessageRequest(
        account_id=account.id, conversation_id="wm-alice", text="hello there", sender_name="Alice",
        conversation_name="Alice"), metadata=key)
    assert sent.wework_msg_id

    def conversations() -> list[str]:
        return [c.conversation_id for c in embedded.accounts.ListConversations(
            apb.ListConversationsRequest(account_id=account.id), metadata=key).conversations]

    _eventually(lambda: "wm-alice" in conversations(), "the conversation")
    embedded.simulator.SimulateDisconnect(spb.SimulateDisconnectRequest(account_id=account.id), metadata=key)

    def left_online() -> bool:
        history = embedded.accounts.ListStatusHistory(apb.ListStatusHistoryRequest(account_id=account.id),
                                                      metadata=key).status_changes
        return any(c.old_status == apb.ACCOUNT_STATUS_ONLINE for c in history)

    _eventually(left_online, "the outage")
    # A message needs an ONLINE account... once it recovered; a wrong state is FAILED_PRECONDITION.
    fresh = embedded.accounts.CreateAccount(apb.CreateAccountRequest(account=apb.Account(account_name="idle")),
                                            metadata=key)
    with pytest.raises(grpc.RpcError) as not_online:
        embedded.simulator.SimulateIncomingMessage(spb.SimulateIncomingMessageRequest(
            account_id=fresh.id, conversation_id="c", text="t"), metadata=key)
    assert not_online.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    # Its own permission: a viewer may not, another tenant's account is NOT_FOUND.
    with pytest.raises(grpc.RpcError) as denied:
        embedded.simulator.SimulateDisconnect(spb.SimulateDisconnectRequest(account_id=account.id),
                                              metadata=embedded.key(tenant.id, roles["viewer"]))
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED and "simulator.control" in denied.value.details()
    _, _, other_key = embedded.new_tenant()
    with pytest.raises(grpc.RpcError) as hidden:
        embedded.simulator.SimulateDisconnect(spb.SimulateDisconnectRequest(account_id=account.id),
                                              metadata=other_key)
    assert hidden.value.code() is grpc.StatusCode.NOT_FOUND


def test_heartbeats_are_listed_only_when_asked_for(embedded):
    _, _, key = embedded.new_tenant()
    _online_account(embedded, key)
    heartbeats = cpb.ListCallbackEventsRequest(filter=cpb.CallbackEventFilter(event_type="account.heartbeat"))
    _eventually(lambda: len(embedded.callbacks.ListCallbackEvents(heartbeats, metadata=key).callback_events) >= 3,
                "heartbeats")
    listed = embedded.callbacks.ListCallbackEvents(cpb.ListCallbackEventsRequest(page_size=1000), metadata=key)
    types = {e.event_type for e in listed.callback_events}
    assert "account.heartbeat" not in types and "account.online" in types
    by_number = cpb.ListCallbackEventsRequest(filter=cpb.CallbackEventFilter(notify_type=11010))
    assert embedded.callbacks.ListCallbackEvents(by_number, metadata=key).callback_events


def test_reports_name_statuses_by_their_enum_values(embedded):
    _, _, key = embedded.new_tenant()
    _online_account(embedded, key)
    now = int(time.time())
    health = embedded.reports.GetAccountHealth(rpb.GetAccountHealthRequest(
        start_time=timestamp_pb2.Timestamp(seconds=now - 3600), end_time=timestamp_pb2.Timestamp(seconds=now + 60)),
        metadata=key)
    assert {c.status: c.count for c in health.status_counts} == {"ACCOUNT_STATUS_ONLINE": 1}


def test_simulator_calls_name_the_setting_when_the_provider_is_not_the_simulator(tmp_path):
    env = {"WEWORK_PROVIDER__KIND": "http", "WEWORK_PROVIDER__BASE_URL": "http://127.0.0.1:9"}
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("WEWORK_")]}
    try:
        server = start_server(tmp_path, env=env)
    finally:
        os.environ.update(saved)
    try:
        platform = Embedded(server, tmp_path)
        _, _, key = platform.new_tenant()
        with pytest.raises(grpc.RpcError) as refused:
            platform.simulator.SimulateScan(spb.SimulateScanRequest(account_id=str(uuid.uuid4())), metadata=key)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "provider.kind" in refused.value.details() and "WEWORK_PROVIDER__KIND" in refused.value.details()
        platform.channel.close()
    finally:
        assert server.stop() == 0


def test_a_refused_webhook_target_names_the_setting_that_allows_it(embedded):
    _, _, key = embedded.new_tenant()
    with pytest.raises(grpc.RpcError) as refused:
        embedded.callbacks.CreateWebhookEndpoint(cpb.CreateWebhookEndpointRequest(url="http://127.0.0.1:9/hook"),
                                                 metadata=key)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    [violation] = _field_violations(refused.value)
    assert violation.field == "url"
    assert "webhooks.allowed_target_cidrs" in violation.description
    assert "WEWORK_WEBHOOKS__ALLOW_PRIVATE_TARGETS" in violation.description


def test_limits_set_by_settings_name_the_setting(embedded):
    _, _, key = embedded.new_tenant()
    now = int(time.time())
    with pytest.raises(grpc.RpcError) as too_long:
        embedded.reports.GetMessageStats(rpb.GetMessageStatsRequest(
            start_time=timestamp_pb2.Timestamp(seconds=now - 200 * 86400), end_time=timestamp_pb2.Timestamp(seconds=now)),
            metadata=key)
    [violation] = _field_violations(too_long.value)
    assert violation.field == "end_time" and "WEWORK_REPORT__MAX_RANGE_DAYS" in violation.description
    embedded.callbacks.CreateWebhookEndpoint(cpb.CreateWebhookEndpointRequest(url="https://hooks.example.invalid/a"),
                                             metadata=key)
    with pytest.raises(grpc.RpcError) as quota:
        embedded.callbacks.CreateWebhookEndpoint(cpb.CreateWebhookEndpointRequest(
            url="https://hooks.example.invalid/b"), metadata=key)
    assert quota.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "webhooks.max_endpoints_per_tenant" in _quota_descriptions(quota.value)


def _quota_descriptions(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)
    found = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            found.extend(v.description for v in quota.violations)
    return " ".join(found)


def _field_violations(err: grpc.RpcError) -> list:
    status = rpc_status.from_call(err)
    found = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(bad.field_violations)
    return found


ROOT = Path(__file__).resolve().parents[2]


def _sh_block_after(document: Path, marker: str) -> str:
    text = document.read_text()
    return text[text.index(marker):].split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readme_tour_runs_as_written(embedded):
    if not (ROOT / ".venv" / "bin" / "grpcurl").exists():
        pytest.skip("the README's PATH step expects the project's .venv (make bootstrap)")
    script = _sh_block_after(ROOT / "README.md", "<!-- readme-tour:")
    script = script.replace("127.0.0.1:50051", embedded.server.target)  # the test server's free port
    # As after `make run` in the repository root: its data dir and port, a PATH without .venv.
    env = {**_no_wework_env(), "PATH": "/usr/bin:/bin", "WEWORK_DATA_DIR": str(embedded.workdir / "var"),
           "WEWORK_PORT": str(embedded.server.port)}
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=False, timeout=120)
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
    assert '"account_name": "sales-1"' in out.stdout
