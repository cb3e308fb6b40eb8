"""Login under attack (issue 17, items 2 and 7), end to end on a real server: every refusal
answers alike after one Argon2 verify, rate limits per source and per tenant answer
RESOURCE_EXHAUSTED precisely, and a flood waits for the hashing limiter without holding
database connections or taking the server's health down."""

from __future__ import annotations

import re
import threading
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import httpcall
from serverproc import settings_yaml, start_server
from tenant_rpc import TenantApi, login, refused
from wework.v1 import tenant_pb2 as pb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

PASSWORD = "correct horse"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def _metric(server, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in httpcall.get(server.metrics_url, timeout=5).text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def _verifies(server) -> float:
    return _metric(server, "wework_password_hashes_total", operation="verify")


def _new_user(admin: TenantApi, *role_ids: str) -> pb.User:
    user = admin.CreateUser(pb.CreateUserRequest(user=pb.User(
        username=f"u{uuid.uuid4().hex[:10]}", email=f"{uuid.uuid4().hex[:10]}@example.com", password=PASSWORD)))
    for role_id in role_ids:
        admin.AssignRole(pb.AssignRoleRequest(user_id=user.id, role_id=role_id))
    return user


def _limited_server(platform, redis_server, name: str, **security):
    """Another server process on the platform's databases with its own Redis key prefix (so its
    own login counters) and the given security settings. Readiness checks at the default pace
    (timeout 5 s): the tests' 0.5 s would turn a busy shared CI machine into NOT_SERVING."""
    config = settings_yaml(platform.workdir / f"{name}.yaml", platform.config.model_dump(mode="json"),
                           redis_server.url, redis={"key_prefix": f"{platform.prefix}{name}:"}, security=security,
                           server={"health_check_interval_seconds": 5})
    return start_server(platform.workdir, config, name=name)


def test_every_refused_login_answers_alike_after_one_password_verify(platform):
    tenant, key, roles = platform.new_tenant()
    with grpc.insecure_channel(platform.server.target) as channel:
        admin = TenantApi(channel, key=key)
        known, locked, disabled = (_new_user(admin, roles["viewer"]) for _ in range(3))
        for _ in range(5):  # security.max_failed_logins
            refused(login, channel, tenant.tenant_code, locked.username, "wrong password")
        assert admin.GetUser(pb.GetUserRequest(id=locked.id)).status == pb.USER_STATUS_LOCKED
        admin.DisableUser(pb.DisableUserRequest(id=disabled.id))
        deleted, _, _ = platform.new_tenant()
        with platform.admin() as operator:
            operator.tenants.delete_tenant(pb.DeleteTenantRequest(id=deleted.id))

        attempts = {
            "unknown tenant": ("nosuchtenant", known.username, PASSWORD),
            "deleted tenant": (deleted.tenant_code, "anyone", PASSWORD),
            "unknown user": (tenant.tenant_code, "nosuchuser", PASSWORD),
            "wrong password": (tenant.tenant_code, known.username, "wrong password"),
            "locked user, right password": (tenant.tenant_code, locked.username, PASSWORD),
            "disabled user, right password": (tenant.tenant_code, disabled.username, PASSWORD),
        }
        answers = {}
        for case, (code, username, password) in attempts.items():
            before = _verifies(platform.server)
            failure = refused(login, channel, code, username, password)
            assert _verifies(platform.server) - before == 1, f"{case}: not exactly one Argon2 verify"
            failure.metadata.pop("trace_id")
            answers[case] = (failure.code, failure.message, failure.reason, failure.metadata, failure.detail_types)
        assert len(set(map(repr, answers.values()))) == 1, answers
        assert answers["unknown user"][0] == UNAUTHENTICATED
        assert login(channel, tenant.tenant_code, known.username, PASSWORD).access_token


def test_login_rate_limits_answer_precisely_per_tenant_then_per_source(platform, redis_server):
    tenant, _, _ = platform.new_tenant()
    server = _limited_server(platform, redis_server, "limited", login_attempts_per_tenant_per_minute=3,
                             login_attempts_per_source_per_minute=9)
    try:
        with grpc.insecure_channel(server.target) as channel:
            # A tenant's window: an existing code and an unknown one are counted alike.
            for code in (tenant.tenant_code, "nosuchtenant"):
                for _ in range(3):
                    assert refused(login, channel, code, "someone", "a guess").code == UNAUTHENTICATED
                before = _verifies(server)
                limited = refused(login, channel, code, "someone", "a guess")
                assert _verifies(server) == before  # refused before any hashing
                assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED and limited.reason == "QUOTA_EXCEEDED"
                assert limited.quota_subjects == [f"logins/tenant/{code}"]
                assert limited.retry_seconds is not None and 1 <= limited.retry_seconds <= 60
            # Eight attempts from this address so far: the ninth passes, the tenth is refused.
            assert refused(login, channel, "othertenant", "someone", "a guess").code == UNAUTHENTICATED
            limited = refused(login, channel, "yetanother", "someone", "a guess")
            assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert limited.quota_subjects == ["logins/source/127.0.0.1"] and 1 <= limited.retry_seconds <= 60
        assert _metric(server, "wework_login_attempts_limited_total", limit="tenant") == 2
        assert _metric(server, "wework_login_attempts_limited_total", limit="source") == 1
    finally:
        server.stop()


def test_a_login_flood_waits_for_the_hasher_without_holding_connections(platform, redis_server):
    tenant, key, _ = platform.new_tenant()
    server = _limited_server(platform, redis_server, "flood", password_hash_concurrency=1,
                             login_attempts_per_source_per_minute=1000)
    flood = 40
    samples: list[tuple[float, float]] = []  # (verifies done, user-database connections in use)
    health_answers: list[int] = []
    flooding = threading.Event()
    try:
        with grpc.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            start = _verifies(server)

            def watch() -> None:
                while flooding.is_set():
                    in_use = _metric(server, "wework_db_pool_connections", db="user", state="checked_out")
                    samples.append((_verifies(server) - start, in_use))
                    health_answers.append(health.Check(health_pb2.HealthCheckRequest(), timeout=10).status)

            stub = TenantApi(channel)
            flooding.set()
            watcher = threading.Thread(target=watch)
            watcher.start()
            calls = [stub._stub.Login.future(pb.LoginRequest(tenant_code=tenant.tenant_code,
                                                             username=f"bogus{i}", password="x" * 20), timeout=120)
                     for i in range(flood)]
            codes = [call.exception().code() if call.exception() else grpc.StatusCode.OK for call in calls]
            flooding.clear()
            watcher.join()
            assert set(codes) == {UNAUTHENTICATED}
            # Another tenant's calls are still answered.
            assert TenantApi(channel, key=key).ListUsers(pb.ListUsersRequest()) is not None
        # Mid-flood, dozens of logins wait for the one hashing slot. Holding a connection while
        # waiting or hashing would keep about as many in use as logins in flight; what remains
        # is the short reads of late arrivals (a slow machine accepts the calls over time).
        mid_flood = sorted(in_use for done, in_use in samples if 8 <= done <= flood - 5)
        assert mid_flood and mid_flood[len(mid_flood) // 2] == 0 and mid_flood[-1] <= 3, samples
        assert set(health_answers) == {health_pb2.HealthCheckResponse.SERVING}
    finally:
        server.stop()
