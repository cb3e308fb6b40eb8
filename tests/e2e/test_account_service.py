"""AccountService end to end: real wework-server processes over MariaDB shards and Redis, with
the provider simulator in the server (short delays set in the settings YAML and per account
under config.simulator), driven through the client facade."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable

import harness
import pytest
from serverproc import (
    BIN,
    TEST_ADMIN_KEY,
    ServerProcess,
    run_admin,
    settings_yaml,
    start_server,
    wait_serving,
)
from wework.client import (
    AbortedError,
    AlreadyExistsError,
    AsyncWeworkClient,
    ClientOptions,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    WeworkClient,
)
from wework.v1 import account_pb2 as pb
from wework.v1 import common_pb2
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SERVICE = "wework.v1.AccountService"
SETTINGS = {
    "provider": {"simulator": {"scan_delay_seconds": 0.2, "confirm_delay_seconds": 0.2,
                               "heartbeat_interval_seconds": 0.2}},
    "account": {"heartbeat_timeout_seconds": 1.0, "monitor_interval_seconds": 0.2,
                "recovery_backoff_initial_seconds": 0.2, "recovery_backoff_max_seconds": 0.4,
                "recovery_max_attempts": 2, "recovery_lease_seconds": 5, "login_max_qr_refreshes": 1,
                "watch_poll_seconds": 0.5},
}


def status_name(value: int) -> str:
    return pb.AccountStatus.Name(value).removeprefix("ACCOUNT_STATUS_").lower()


class AccountPlatform:
    def __init__(self, mariadb_server, redis_server, workdir) -> None:
        self.workdir = workdir
        self.prefix = harness.new_db_prefix("e")
        self.config = harness.make_database_config(self.prefix, [mariadb_server], 2)
        self.redis_url = redis_server.url
        self.servers: list[ServerProcess] = []

    def settings(self, name: str):
        # One file per server: each gets its own free metrics port.
        return settings_yaml(self.workdir / f"{name}.yaml", self.config.model_dump(mode="json"), self.redis_url,
                             redis={"key_prefix": f"{self.prefix}:"}, **SETTINGS)

    def start(self, name: str = "server", port: int | None = None) -> ServerProcess:
        if port is None:
            server = start_server(self.workdir, self.settings(name), name=name, wait_service=SERVICE)
        else:  # a restart on the port a client still dials
            log_path = self.workdir / f"{name}-{port}.log"
            proc = subprocess.Popen([str(BIN / "wework-server"), "--port", str(port)], cwd=self.workdir,
                                    env={**os.environ, "WEWORK_CONFIG_FILE": str(self.settings(name))},
                                    stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
            server = ServerProcess(proc, port, log_path)
            wait_serving(server, SERVICE, 60)
        self.servers.append(server)
        return server

    @property
    def server(self) -> ServerProcess:
        return self.servers[0]

    def client(self, server: ServerProcess | None = None, **options) -> WeworkClient:
        return WeworkClient(ClientOptions(target=(server or self.server).target, **options))

    def new_tenant(self, **fields) -> tuple[tpb.Tenant, str, dict[str, str]]:
        """A tenant, an API key of its admin role, and its role ids by code."""
        code = f"t{uuid.uuid4().hex[:12]}"
        with self.client(api_key=TEST_ADMIN_KEY) as admin:
            tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code, **fields))
        with self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant.id) as admin:
            roles = {r.role_code: r.id for r in admin.tenants.iter_roles()}
            key = admin.tenants.create_api_key(tpb.ApiKey(display_name="e2e", role_id=roles["admin"])).secret
        return tenant, key, roles

    def key_for_role(self, tenant_id: str, role_id: str) -> str:
        with self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant_id) as admin:
            return admin.tenants.create_api_key(tpb.ApiKey(display_name="role", role_id=role_id)).secret


@pytest.fixture(scope="module")
def accounts_platform(mariadb_server, redis_server, tmp_path_factory):
    p = AccountPlatform(mariadb_server, redis_server, tmp_path_factory.mktemp("accounts"))
    migrated = run_admin(p.settings("migrate"), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    p.start()
    yield p
    for server in p.servers:
        server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(p.prefix + "_")


@pytest.fixture
def tenant(accounts_platform):
    """(tenant, a client with the tenant's admin key, role ids)."""
    t, key, roles = accounts_platform.new_tenant()
    with accounts_platform.client(api_key=key) as client:
        yield t, client, roles


def _metric(server, series: str, ok, timeout: float = 20.0) -> float:
    """Polls the server's /metrics until `series` satisfies ok(value); returns the value."""
    from harness import httpcall

    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        for line in httpcall.get(server.metrics_url, timeout=5).text.splitlines():
            if line.startswith(series + " "):
                value = float(line.split()[-1])
        if value is not None and ok(value):
            return value
        time.sleep(0.2)
    raise AssertionError(f"{series} is {value} after {timeout} s")


class Watcher:
    """A watch_accounts iterator read by a thread into a queue. close() ends it (closing its
    channel cancels the stream)."""

    def __init__(self, client: WeworkClient, **request) -> None:
        self.client = client
        self.items: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, kwargs=request, daemon=True)
        self._thread.start()
        self.start_cursor = self.next().cursor

    def _run(self, **request) -> None:
        try:
            for response in self.client.accounts.watch_accounts(max_reconnect_delay=0.5, **request):
                self.items.put(response)
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            self.items.put(exc)

    def next(self, timeout: float = 15) -> pb.WatchAccountsResponse:
        item = self.items.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        return item

    def changes(self, n: int, timeout: float = 15) -> list[pb.AccountStatusChange]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            response = self.next(max(0.01, deadline - time.monotonic()))
            assert response.HasField("change"), "only the first response of a stream is cursor-only"
            out.append(response.change)
        return out

    def until(self, account_id: str, status: str, timeout: float = 15) -> list[pb.AccountStatusChange]:
        """Changes of `account_id` up to and including its first change to `status`."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            change = self.next(max(0.01, deadline - time.monotonic())).change
            if change.account_id == account_id:
                out.append(change)
                if status_name(change.new_status) == status:
                    return out

    def quiet(self, seconds: float) -> bool:
        try:
            self.items.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.close()
        self._thread.join(10)


def _statuses(changes) -> list[str]:
    return [status_name(c.new_status) for c in changes]


def _watch(accounts_platform, key: str, **request) -> Watcher:
    return Watcher(accounts_platform.client(api_key=key, timeout=None), **request)


# ---- login flows --------------------------------------------------------------------------------------


def test_qr_login_end_to_end_seen_through_watch(accounts_platform, tenant):
    _, client, _ = tenant
    account = client.accounts.create_account(pb.Account(account_name="sales-1", phone="+8613800000001"))
    assert account.status == pb.ACCOUNT_STATUS_CREATED and account.guid and account.etag
    watcher = Watcher(accounts_platform.client(api_key=client.options.api_key, timeout=None),
                      account_ids=[account.id])
    try:
        state = client.accounts.start_login(account.id)
        assert state.status == pb.ACCOUNT_STATUS_WAITING_SCAN and state.qr_payload and state.qr_code_url
        assert state.qr_expire_time.seconds > time.time()
        changes = watcher.until(account.id, "online")
    finally:
        watcher.close()
    assert _statuses(changes) == ["logging_in", "waiting_scan", "waiting_confirm", "online"]
    assert [c.sequence for c in changes] == list(range(changes[0].sequence, changes[0].sequence + 4))
    assert changes[0].operator_type == common_pb2.OPERATOR_TYPE_USER and changes[0].reason == "start_login"
    assert {c.operator_type for c in changes[1:]} == {common_pb2.OPERATOR_TYPE_SYSTEM}
    online = client.accounts.get_account(account.id)
    assert online.status == pb.ACCOUNT_STATUS_ONLINE and online.user_info["name"].startswith("Sim User")
    assert online.last_login_time.seconds and online.last_heartbeat_time.seconds
    assert online.phone == "+8613800000001" and online.login_retry_count == 0
    state = client.accounts.get_login_state(account.id)
    assert state.status == pb.ACCOUNT_STATUS_ONLINE and not state.qr_payload
    # Operators see it too: the monitor publishes accounts per status on /metrics.
    assert _metric(accounts_platform.servers[0], 'wework_accounts{status="online"}', lambda v: v >= 1)
    history = list(client.accounts.iter_status_history(account.id, page_size=2))
    assert _statuses(history) == ["online", "waiting_confirm", "waiting_scan", "logging_in", "created"]
    # StartLogin again while online: an illegal transition, nothing changes.
    with pytest.raises(FailedPreconditionError) as err:
        client.accounts.start_login(account.id)
    (violation,) = err.value.precondition_violations
    assert (violation.type, violation.subject) == ("STATUS", f"accounts/{account.id}")
    assert client.accounts.get_account(account.id).etag == online.etag


def test_need_verify_path_with_a_wrong_then_the_right_code(accounts_platform, tenant):
    _, client, _ = tenant
    account = client.accounts.create_account(pb.Account(
        account_name="verify", config={"simulator": {"require_verification": True}}))
    with pytest.raises(FailedPreconditionError) as err:  # no code is asked for yet
        client.accounts.submit_verification_code(account.id, code="123456")
    assert err.value.precondition_violations[0].type == "STATUS"
    watcher = _watch(accounts_platform, client.options.api_key, account_ids=[account.id])
    try:
        client.accounts.start_login(account.id)
        assert _statuses(watcher.until(account.id, "need_verify")) == [
            "logging_in", "waiting_scan", "waiting_confirm", "need_verify"]
        with pytest.raises(InvalidArgumentError) as err:
            client.accounts.submit_verification_code(account.id, code="000000")
        assert [v.field for v in err.value.field_violations] == ["code"]
        failed = watcher.until(account.id, "error")
        assert failed[-1].reason == "login_failed" and "verification" in failed[-1].error_message
        client.accounts.start_login(account.id)  # from ERROR, a new login
        watcher.until(account.id, "need_verify")
        state = client.accounts.submit_verification_code(account.id, code="123456")
        assert state.status in (pb.ACCOUNT_STATUS_NEED_VERIFY, pb.ACCOUNT_STATUS_ONLINE)
        assert _statuses(watcher.until(account.id, "online")) == ["online"]
    finally:
        watcher.close()


def test_qr_expiry_fetches_a_new_code_then_gives_up(accounts_platform, tenant):
    _, client, _ = tenant
    account = client.accounts.create_account(pb.Account(
        account_name="nobody-scans", config={"simulator": {"auto_scan": False, "qr_ttl_seconds": 0.5}}))
    watcher = _watch(accounts_platform, client.options.api_key, account_ids=[account.id])
    try:
        first = client.accounts.start_login(account.id)
        changes = watcher.until(account.id, "error")
    finally:
        watcher.close()
    # login_max_qr_refreshes is 1: one new code, then the login ends.
    assert _statuses(changes) == ["logging_in", "waiting_scan", "logging_in", "waiting_scan", "error"]
    assert [c.reason for c in changes[2:]] == ["qr_expired", "qr_ready", "qr_expired"]
    state = client.accounts.get_login_state(account.id)
    assert state.status == pb.ACCOUNT_STATUS_ERROR and "expired" in state.error_message
    assert state.login_retry_count == 1 and not state.qr_payload and first.qr_payload


def test_heartbeat_loss_goes_offline_then_recovers(accounts_platform, tenant):
    _, client, _ = tenant
    # The simulator stays online but sends no heartbeat within the 1 s timeout.
    account = client.accounts.create_account(pb.Account(
        account_name="silent", config={"simulator": {"heartbeat_interval_seconds": 60}}))
    watcher = _watch(accounts_platform, client.options.api_key, account_ids=[account.id])
    try:
        client.accounts.start_login(account.id)
        watcher.until(account.id, "online")
        changes = watcher.until(account.id, "online", timeout=20)
    finally:
        watcher.close()
    assert _statuses(changes) == ["offline", "recovering", "online"]
    offline, recovering, online = changes
    assert (offline.reason, offline.operator_type) == ("heartbeat_timeout", common_pb2.OPERATOR_TYPE_SYSTEM)
    assert (recovering.reason, recovering.operator_type) == ("recovery_started", common_pb2.OPERATOR_TYPE_AUTO)
    assert online.reason in ("recovered", "reconnected") and online.extra_data["reconnected"]
    client.accounts.logout(account.id)  # stops the cycle: no heartbeats will ever come


def test_lost_connection_recovers_after_a_failed_attempt(accounts_platform, tenant):
    _, client, _ = tenant
    account = client.accounts.create_account(pb.Account(account_name="flaky", config={"simulator": {
        "disconnect_after_seconds": 0.5, "recover_after_attempts": 2}}))
    watcher = _watch(accounts_platform, client.options.api_key, account_ids=[account.id])
    try:
        client.accounts.start_login(account.id)
        watcher.until(account.id, "online")
        changes = watcher.until(account.id, "online", timeout=20)
    finally:
        watcher.close()
    assert _statuses(changes) == ["offline", "recovering", "online"]
    assert changes[0].reason == "connection_lost" and changes[0].extra_data["provider_reason"] == "connection_lost"
    # Recovered by the monitor's second attempt, or by the provider's own reconnect callback
    # winning the race (then extra_data has no "attempt": test the reason first).
    assert changes[2].reason == "reconnected" or changes[2].extra_data["attempt"] == 2
    history = _statuses(client.accounts.iter_status_history(account.id))
    assert history[:3] == ["online", "recovering", "offline"]  # the failed attempt wrote no row


@pytest.mark.parametrize(("sim", "reason"), [
    ({"recover_after_attempts": 5}, "recovery_exhausted"),  # recovery_max_attempts is 2
    ({"recover": False}, "recovery_refused"),
])
def test_recovery_that_fails_ends_in_error_with_the_reason(accounts_platform, tenant, sim, reason):
    _, client, _ = tenant
    account = client.accounts.create_account(pb.Account(account_name=f"lost-{reason}", config={"simulator": {
        "disconnect_after_seconds": 0.3, **sim}}))
    watcher = _watch(accounts_platform, client.options.api_key, account_ids=[account.id])
    try:
        client.accounts.start_login(account.id)
        watcher.until(account.id, "online")
        changes = watcher.until(account.id, "error", timeout=20)
    finally:
        watcher.close()
    assert _statuses(changes) == ["offline", "recovering", "error"]
    assert changes[-1].reason == reason and changes[-1].operator_type == common_pb2.OPERATOR_TYPE_AUTO
    failed = client.accounts.get_account(account.id)
    assert failed.status == pb.ACCOUNT_STATUS_ERROR and failed.error_message
    assert not failed.HasField("next_recovery_time")


def test_logout_and_delete(accounts_platform, tenant):
    _, client, _ = tenant
    account = client.accounts.create_account(pb.Account(account_name="short-lived"))
    with pytest.raises(FailedPreconditionError):  # never logged in
        client.accounts.logout(account.id)
    watcher = _watch(accounts_platform, client.options.api_key, account_ids=[account.id])
    try:
        client.accounts.start_login(account.id)
        watcher.until(account.id, "online")
        out = client.accounts.logout(account.id)
        assert out.status == pb.ACCOUNT_STATUS_OFFLINE and not out.HasField("next_recovery_time")
        (change,) = watcher.changes(1)
        assert (status_name(change.new_status), change.reason, change.operator_type) == (
            "offline", "logout", common_pb2.OPERATOR_TYPE_USER)
        assert client.accounts.logout(account.id).status == pb.ACCOUNT_STATUS_OFFLINE  # repeat: no change
        assert watcher.quiet(1.5)  # the provider's LOGGED_OUT callback changed nothing either
        with pytest.raises(AbortedError):
            client.accounts.delete_account(account.id, etag="v1")
        client.accounts.delete_account(account.id)
        (deleted,) = watcher.changes(1)
        assert deleted.new_status == pb.ACCOUNT_STATUS_DELETED and deleted.old_status == pb.ACCOUNT_STATUS_OFFLINE
    finally:
        watcher.close()
    with pytest.raises(NotFoundError):
        client.accounts.get_account(account.id)
    assert _statuses(client.accounts.iter_status_history(account.id))[:2] == ["deleted", "offline"]


# ---- the watch stream ------------------------------------------------------------------------------------


def test_watch_resumes_from_a_cursor_with_exactly_the_missed_changes(accounts_platform, tenant):
    _, client, _ = tenant
    key = client.options.api_key
    first = client.accounts.create_account(pb.Account(account_name="w1"))
    watcher = _watch(accounts_platform, key, resume=False)
    client.accounts.start_login(first.id)
    seen = watcher.until(first.id, "online")
    cursor = watcher.start_cursor
    with accounts_platform.client(api_key=key) as raw:  # the cursor of the last change received
        stream = raw.accounts.watch_accounts(cursor=cursor, resume=False)
        next(stream)
        responses = [next(stream) for _ in seen]
        stream.close()
    assert [r.change.id for r in responses] == [c.id for c in seen]
    cursor = responses[-1].cursor
    watcher.close()  # disconnected

    second = client.accounts.create_account(pb.Account(account_name="w2"))  # changes while away
    client.accounts.start_login(second.id)
    client.accounts.update_account(pb.Account(id=first.id, account_name="w1-renamed"),
                                   update_mask=["account_name"])  # not a status change
    client.accounts.logout(first.id)
    deadline = time.monotonic() + 15
    while client.accounts.get_account(second.id).status != pb.ACCOUNT_STATUS_ONLINE:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    expected = sorted((c for a in (first, second) for c in client.accounts.iter_status_history(a.id)
                       if c.sequence > seen[-1].sequence), key=lambda c: c.sequence)
    assert len(expected) == 6  # w2: created, logging_in, waiting_scan, waiting_confirm, online; w1: offline

    again = _watch(accounts_platform, key, cursor=cursor, resume=False)
    try:
        replayed = again.changes(len(expected))
        assert [c.id for c in replayed] == [c.id for c in expected]
        assert again.quiet(1.5)  # nothing twice, nothing extra
    finally:
        again.close()
    with pytest.raises(InvalidArgumentError) as err:
        next(client.accounts.watch_accounts(cursor="not-a-cursor", resume=False))
    assert err.value.field_violations[0].field == "cursor"


def test_watch_resumes_transparently_when_its_server_dies(accounts_platform, tenant):
    """Two replicas on one database: the watched one is killed and restarted while changes are
    made through the other; the facade reconnects and misses nothing."""
    _, client, _ = tenant
    key = client.options.api_key
    replica = accounts_platform.start("replica-b")
    victim = accounts_platform.start("replica-a")
    watcher = _watch_on(accounts_platform, victim, key)
    try:
        with accounts_platform.client(replica, api_key=key) as other:
            first = other.accounts.create_account(pb.Account(account_name="r1"))
            (created,) = watcher.changes(1)  # a change made in the other process reaches this stream
            assert created.account_id == first.id
            victim.stop(signal.SIGKILL)
            second = other.accounts.create_account(pb.Account(account_name="r2"))
            other.accounts.start_login(second.id)
            deadline = time.monotonic() + 15
            while other.accounts.get_account(second.id).status != pb.ACCOUNT_STATUS_ONLINE:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            restarted = accounts_platform.start("replica-a2", port=victim.port)
            got = watcher.until(second.id, "online", timeout=30)
            expected = sorted(other.accounts.iter_status_history(second.id), key=lambda c: c.sequence)
        assert [c.id for c in got] == [c.id for c in expected]
        assert watcher.quiet(1.0)
        restarted.stop()
    finally:
        watcher.close()
        replica.stop()


def _watch_on(accounts_platform, server, key) -> Watcher:
    return Watcher(accounts_platform.client(server, api_key=key, timeout=None))


# ---- access, quota, input ------------------------------------------------------------------------------


def test_tenant_isolation_on_every_rpc(accounts_platform):
    _, key_a, _ = accounts_platform.new_tenant()
    _, key_b, _ = accounts_platform.new_tenant()
    with accounts_platform.client(api_key=key_a) as a, accounts_platform.client(api_key=key_b) as b:
        mine = a.accounts.create_account(pb.Account(account_name="same-name"))
        theirs = b.accounts.create_account(pb.Account(account_name="same-name"))  # names are per tenant
        watcher = _watch(accounts_platform, key_b, account_ids=[mine.id])
        try:
            calls: dict[str, Callable[[], object]] = {
                "GetAccount": lambda: b.accounts.get_account(mine.id),
                "UpdateAccount": lambda: b.accounts.update_account(
                    pb.Account(id=mine.id, account_name="x"), update_mask=["account_name"]),
                "DeleteAccount": lambda: b.accounts.delete_account(mine.id),
                "StartLogin": lambda: b.accounts.start_login(mine.id),
                "SubmitVerificationCode": lambda: b.accounts.submit_verification_code(mine.id, code="1"),
                "Logout": lambda: b.accounts.logout(mine.id),
                "GetLoginState": lambda: b.accounts.get_login_state(mine.id),
                "ListStatusHistory": lambda: b.accounts.list_status_history(mine.id),
                "ListConversations": lambda: b.accounts.list_conversations(mine.id),
                "GetConversation": lambda: b.accounts.get_conversation(mine.id),
                "UpdateConversation": lambda: b.accounts.update_conversation(
                    pb.Conversation(id=mine.id, is_pinned=True), update_mask=["is_pinned"]),
            }
            for name, call in calls.items():
                with pytest.raises(NotFoundError):
                    call()
                    pytest.fail(f"{name} reached another tenant's account")
            assert [x.id for x in b.accounts.iter_accounts()] == [theirs.id]
            assert a.accounts.get_account(mine.id).account_name == "same-name"  # untouched
            a.accounts.start_login(mine.id)
            assert watcher.quiet(2.0)  # B's stream never shows A's changes
        finally:
            watcher.close()


def test_permissions_viewer_reads_but_cannot_write(accounts_platform):
    t, key, roles = accounts_platform.new_tenant()
    viewer = accounts_platform.key_for_role(t.id, roles["viewer"])
    with accounts_platform.client(api_key=key) as admin, accounts_platform.client(api_key=viewer) as v:
        account = admin.accounts.create_account(pb.Account(account_name="ro"))
        assert v.accounts.get_account(account.id).id == account.id
        assert [x.id for x in v.accounts.iter_accounts()] == [account.id]
        for call in (lambda: v.accounts.create_account(pb.Account(account_name="no")),
                     lambda: v.accounts.start_login(account.id),
                     lambda: v.accounts.delete_account(account.id)):
            with pytest.raises(PermissionDeniedError) as err:
                call()
            assert err.value.metadata["permission"] == "accounts.write"


def test_quota_is_enforced_with_a_quota_failure(accounts_platform):
    t, key, _ = accounts_platform.new_tenant(max_accounts=2)
    with accounts_platform.client(api_key=key) as client:
        first = client.accounts.create_account(pb.Account(account_name="q1"))
        client.accounts.create_account(pb.Account(account_name="q2"))
        with pytest.raises(ResourceExhaustedError) as err:
            client.accounts.create_account(pb.Account(account_name="q3"))
        assert err.value.reason == "QUOTA_EXCEEDED"
        assert err.value.quota_violations[0].subject == f"tenants/{t.id}"
        assert sorted(a.account_name for a in client.accounts.iter_accounts()) == ["q1", "q2"]
        client.accounts.delete_account(first.id)
        assert client.accounts.create_account(pb.Account(account_name="q3")).account_name == "q3"


@pytest.mark.parametrize(("fields", "paths"), [
    ({"account_name": ""}, ["account.account_name"]),
    ({"account_name": "x" * 101}, ["account.account_name"]),
    ({"account_name": "ok", "phone": "12ab"}, ["account.phone"]),
    ({"account_name": "ok", "email": "not-an-email"}, ["account.email"]),
    ({"account_name": "ok", "config": {"simulator": 5}}, ["account.config"]),
    ({"account_name": "ok", "config": {"simulator": {"qr_ttl_seconds": -1}}}, ["account.config"]),
    ({"account_name": "", "phone": "x", "email": "y"}, ["account.account_name", "account.phone",
                                                         "account.email"]),
])
def test_bad_input_names_each_field_and_creates_nothing(tenant, fields, paths):
    _, client, _ = tenant
    with pytest.raises(InvalidArgumentError) as err:
        client.accounts.create_account(pb.Account(**fields))
    assert [v.field for v in err.value.field_violations] == paths
    assert list(client.accounts.iter_accounts()) == []


def test_bad_input_on_other_rpcs(tenant):
    _, client, _ = tenant
    account = client.accounts.create_account(pb.Account(account_name="valid"))
    cases = [
        (lambda: client.accounts.update_account(pb.Account(id=account.id, guid="x"), update_mask=["guid"]),
         "update_mask"),
        (lambda: client.accounts.update_account(pb.Account(id=account.id), update_mask=[]), "update_mask"),
        (lambda: client.accounts.list_accounts(page_token="garbage"), "page_token"),
        (lambda: client.accounts.list_accounts(page_size=-1), "page_size"),
        (lambda: client.accounts.submit_verification_code(account.id, code=""), "code"),
        (lambda: client.accounts.get_account(""), "id"),
        (lambda: next(client.accounts.watch_accounts(account_ids=["x"] * 101, resume=False)), "account_ids"),
        (lambda: client.accounts.update_conversation(pb.Conversation(id="c", unread_count=3),
                                                     update_mask=["unread_count"]), "conversation.unread_count"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidArgumentError) as err:
            call()
        assert field in [v.field for v in err.value.field_violations]


def test_create_is_idempotent_and_update_uses_mask_and_etag(tenant):
    _, client, _ = tenant
    request_id = str(uuid.uuid4())
    request = pb.CreateAccountRequest(account=pb.Account(account_name="idem"), request_id=request_id)
    first = client.accounts.create_account(request)
    again = client.accounts.create_account(request)
    assert (again.id, again.guid, again.etag) == (first.id, first.guid, first.etag)
    assert [a.id for a in client.accounts.iter_accounts()] == [first.id]
    with pytest.raises(AlreadyExistsError) as err:
        client.accounts.create_account(pb.Account(account_name="idem"))
    assert err.value.metadata["field"] == "account_name"

    updated = client.accounts.update_account(
        pb.Account(id=first.id, account_name="ignored", email="ops@example.com", etag=first.etag,
                   config={"simulator": {"auto_scan": False}}), update_mask=["email", "config"])
    assert (updated.account_name, updated.email, updated.etag != first.etag) == ("idem", "ops@example.com", True)
    assert updated.config["simulator"]["auto_scan"] is False
    with pytest.raises(AbortedError) as err:  # the first etag is stale now
        client.accounts.update_account(pb.Account(id=first.id, email="x@example.com", etag=first.etag),
                                       update_mask=["email"])
    assert err.value.reason == "ETAG_MISMATCH"
    assert client.accounts.get_account(first.id).email == "ops@example.com"
    by_status = client.accounts.list_accounts(status=pb.ACCOUNT_STATUS_ONLINE)
    assert list(by_status.accounts) == []


async def test_asyncio_client_watches_a_login(accounts_platform):
    _, key, _ = accounts_platform.new_tenant()
    async with AsyncWeworkClient(ClientOptions(accounts_platform.server.target, api_key=key, timeout=None)) as c:
        account = await c.accounts.create_account(pb.Account(account_name="aio"))
        stream = c.accounts.watch_accounts(account_ids=[account.id])
        start = await anext(stream)
        assert start.cursor and not start.HasField("change")
        state = await c.accounts.start_login(account.id)
        assert state.status == pb.ACCOUNT_STATUS_WAITING_SCAN
        seen = []
        async with asyncio.timeout(15):
            while not seen or seen[-1] != "online":
                seen.append(status_name((await anext(stream)).change.new_status))
        await stream.aclose()
        assert seen == ["logging_in", "waiting_scan", "waiting_confirm", "online"]
        assert [a.id async for a in c.accounts.iter_accounts(status=pb.ACCOUNT_STATUS_ONLINE)] == [account.id]
        assert len([h async for h in c.accounts.iter_status_history(account.id, page_size=1)]) == 5
