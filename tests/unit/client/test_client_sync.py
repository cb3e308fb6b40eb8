"""WeworkClient against a grpc_testing channel that scripts the server's answers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import grpc_testing
import pytest
from wework.client import (
    AbortedError,
    ClientOptions,
    DeadlineExceededError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    QuotaViolation,
    ResourceExhaustedError,
    Retry,
    UnauthenticatedError,
    UnavailableError,
    WeworkClient,
    WeworkError,
)
from wework.v1 import tenant_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["TenantService"]


class DeadlineRecorder:
    """Wraps the testing channel to record each call's timeout (grpc_testing drops it;
    grpc.intercept_channel cannot wrap a grpc_testing channel)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.timeouts: list[tuple[str, float | None]] = []

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        call = self.inner.unary_unary(method, *args, **kwargs)

        def record(request: Any, timeout: float | None = None, metadata: Any = None, **_: Any) -> Any:
            self.timeouts.append((method, timeout))
            return call(request, timeout=timeout, metadata=metadata)

        return record


class Harness:
    def __init__(self, **option_overrides: Any) -> None:
        self.channel = grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())
        self.recorder = DeadlineRecorder(self.channel)
        options = ClientOptions(
            "unused:0", **{"api_key": "key-1", "tenant_id": "tenant-9", "timeout": 7.5, **option_overrides}
        )
        self.client = WeworkClient(options, channel=self.recorder)  # type: ignore[arg-type]
        self.pool = ThreadPoolExecutor(max_workers=1)

    def start(self, fn: Callable[[], Any]) -> Future[Any]:
        """Runs a client call in a thread: it blocks until the test answers it."""
        return self.pool.submit(fn)

    def answer(
        self,
        method: str,
        response: Any = None,
        *,
        code: grpc.StatusCode = grpc.StatusCode.OK,
        details: str = "",
        trailing: tuple[tuple[str, Any], ...] = (),
    ) -> tuple[dict[str, str], Any]:
        """Takes the next call of `method`, ends it, returns (metadata, request)."""
        metadata, request, rpc = self.channel.take_unary_unary(SERVICE.methods_by_name[method])
        rpc.terminate(response, trailing, code, details)
        return dict(metadata), request


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.pool.shutdown(wait=False, cancel_futures=True)


def test_metadata_carries_api_key_and_tenant_and_a_deadline_is_set(h: Harness) -> None:
    fut = h.start(lambda: h.client.tenants.get_tenant("t-1"))
    md, request = h.answer("GetTenant", pb.Tenant(id="t-1", tenant_code="acme"))
    assert fut.result(timeout=5).tenant_code == "acme"
    assert request == pb.GetTenantRequest(id="t-1")
    assert md["x-api-key"] == "key-1"
    assert md["x-wework-tenant"] == "tenant-9"
    assert "authorization" not in md
    ((method, timeout),) = h.recorder.timeouts
    assert method == "/wework.v1.TenantService/GetTenant" and 7 < timeout <= 7.5


def test_per_call_timeout_and_extra_metadata(h: Harness) -> None:
    fut = h.start(lambda: h.client.tenants.get_user("u-1", timeout=2.0, metadata=[("x-trace", "abc")]))
    md, _ = h.answer("GetUser", pb.User(id="u-1"))
    fut.result(timeout=5)
    assert md["x-trace"] == "abc" and md["x-api-key"] == "key-1"
    assert 1.5 < h.recorder.timeouts[-1][1] <= 2.0


def test_bearer_token_via_with_options_replaces_the_api_key(h: Harness) -> None:
    as_user = h.client.with_options(access_token="tok-1")
    fut = h.start(lambda: as_user.tenants.list_roles(page_size=5))
    md, request = h.answer("ListRoles", pb.ListRolesResponse())
    fut.result(timeout=5)
    assert md["authorization"] == "Bearer tok-1"
    assert "x-api-key" not in md
    assert md["x-wework-tenant"] == "tenant-9"
    assert request.page_size == 5
    with pytest.raises(ValueError):
        h.client.with_options(target="elsewhere:1")


def test_token_provider_is_asked_per_call_and_its_own_login_goes_without_credential() -> None:
    h = Harness(api_key=None)
    tokens = iter(["tok-1", "tok-2"])
    provided: list[str] = []

    def provider() -> str:
        # A provider that logs in through the very client it serves: no credential, no recursion.
        login = client.tenants.login(tenant_code="acme", username="ann", password="pw-123456")
        provided.append(login.access_token)
        return login.access_token

    client = WeworkClient(ClientOptions("unused:0", token_provider=provider, tenant_id="tenant-9"),
                          channel=h.recorder)  # type: ignore[arg-type]
    for expected in ("tok-1", "tok-2"):
        fut = h.start(lambda: client.tenants.get_tenant("t-1"))
        login_md, login = h.answer("Login", pb.LoginResponse(access_token=next(tokens)))
        md, _ = h.answer("GetTenant", pb.Tenant(id="t-1"))
        fut.result(timeout=5)
        assert login == pb.LoginRequest(tenant_code="acme", username="ann", password="pw-123456")
        assert "authorization" not in login_md and "x-api-key" not in login_md
        assert md["authorization"] == f"Bearer {expected}" and md["x-wework-tenant"] == "tenant-9"
    assert provided == ["tok-1", "tok-2"]
    h.pool.shutdown(wait=False, cancel_futures=True)


def test_unauthenticated_asks_the_provider_again_and_repeats_with_a_new_token() -> None:
    h = Harness(api_key=None)
    tokens = iter(["expired", "fresh", "fresh"])
    client = WeworkClient(ClientOptions("unused:0", token_provider=lambda: next(tokens)),
                          channel=h.recorder)  # type: ignore[arg-type]
    fut = h.start(lambda: client.tenants.suspend_tenant("t-1"))  # not retry-safe: only the refresh repeats it
    first, _ = h.answer("SuspendTenant", code=grpc.StatusCode.UNAUTHENTICATED, details="token expired")
    second, _ = h.answer("SuspendTenant", pb.Tenant(id="t-1"))
    assert fut.result(timeout=5).id == "t-1"
    assert (first["authorization"], second["authorization"]) == ("Bearer expired", "Bearer fresh")
    h.pool.shutdown(wait=False, cancel_futures=True)


@pytest.mark.parametrize(
    ("call", "method", "resource_field"),
    [
        (lambda t: t.create_tenant(pb.Tenant(tenant_code="acme")), "CreateTenant", "tenant"),
        (lambda t: t.create_user(pb.User(username="ann")), "CreateUser", "user"),
        (lambda t: t.create_role(role=pb.Role(role_code="ops")), "CreateRole", "role"),
        (lambda t: t.create_api_key(pb.CreateApiKeyRequest(api_key=pb.ApiKey(role_id="r"))), "CreateApiKey",
         "api_key"),
    ],
)
def test_create_gets_a_fresh_request_id_when_missing(
    h: Harness, call: Callable[[Any], Any], method: str, resource_field: str
) -> None:
    fut = h.start(lambda: call(h.client.tenants))
    _, request = h.answer(method, SERVICE.methods_by_name[method].output_type._concrete_class())
    fut.result(timeout=5)
    assert uuid.UUID(request.request_id).version == 4
    assert request.HasField(resource_field)


def test_create_keeps_a_given_request_id_and_does_not_mutate_the_callers_message(h: Harness) -> None:
    given = pb.CreateTenantRequest(tenant=pb.Tenant(tenant_code="acme"), request_id="my-id")
    fut = h.start(lambda: h.client.tenants.create_tenant(given))
    _, request = h.answer("CreateTenant", pb.Tenant(id="t-1"))
    fut.result(timeout=5)
    assert request.request_id == "my-id"

    template = pb.CreateTenantRequest(tenant=pb.Tenant(tenant_code="acme"))
    ids = []
    for _ in range(2):
        fut = h.start(lambda: h.client.tenants.create_tenant(template))
        ids.append(h.answer("CreateTenant", pb.Tenant(id="t-1"))[1].request_id)
        fut.result(timeout=5)
    assert template.request_id == ""  # a template reused for two creates must not share an id
    assert ids[0] and ids[1] and ids[0] != ids[1]


def test_shortcuts_build_the_request(h: Harness) -> None:
    fut = h.start(
        lambda: h.client.tenants.update_tenant(pb.Tenant(id="t-1", tenant_name="New"), update_mask=["tenant_name"])
    )
    _, request = h.answer("UpdateTenant", pb.Tenant(id="t-1"))
    fut.result(timeout=5)
    assert request.tenant.tenant_name == "New"
    assert list(request.update_mask.paths) == ["tenant_name"]

    fut = h.start(lambda: h.client.tenants.suspend_tenant("t-1", etag="e1"))
    _, request = h.answer("SuspendTenant", pb.Tenant(id="t-1"))
    fut.result(timeout=5)
    assert request == pb.SuspendTenantRequest(id="t-1", etag="e1")

    with pytest.raises(TypeError):
        h.client.tenants.get_tenant(pb.GetTenantRequest(id="x"), id="y")
    with pytest.raises(TypeError):
        h.client.tenants.list_tenants("not-a-request")


def test_rich_error_becomes_invalid_argument_with_field_violations(h: Harness, rich: Any) -> None:
    fut = h.start(lambda: h.client.tenants.create_tenant(pb.Tenant(tenant_code="1bad")))
    message = "invalid request field(s): tenant.tenant_code"
    h.answer(
        "CreateTenant",
        code=grpc.StatusCode.INVALID_ARGUMENT,
        details=message,
        trailing=rich.trailer(
            grpc.StatusCode.INVALID_ARGUMENT,
            message,
            rich.error_info("INVALID_ARGUMENT"),
            rich.bad_request(("tenant.tenant_code", "must start with a letter")),
        ),
    )
    with pytest.raises(InvalidArgumentError) as caught:
        fut.result(timeout=5)
    err = caught.value
    assert err.grpc_code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_ARGUMENT" and err.domain == "wework.v1"
    assert err.field_violations == [
        FieldViolation("tenant.tenant_code", "must start with a letter", "INVALID_FIELD")
    ]
    assert isinstance(err.__cause__, grpc.RpcError)
    assert "tenant.tenant_code" in str(err)


def test_quota_error_with_retry_info(h: Harness, rich: Any) -> None:
    fut = h.start(lambda: h.client.tenants.create_user(pb.User(username="ann")))
    h.answer(
        "CreateUser",
        code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        details="quota",
        trailing=rich.trailer(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "quota",
            rich.error_info("QUOTA_EXCEEDED", limit="10"),
            rich.quota_failure("tenants/t-1", "max_accounts reached"),
            rich.retry_info(1.5),
        ),
    )
    with pytest.raises(ResourceExhaustedError) as caught:
        fut.result(timeout=5)
    err = caught.value
    assert err.reason == "QUOTA_EXCEEDED"
    assert err.metadata == {"limit": "10"}
    assert err.quota_violations == [QuotaViolation("tenants/t-1", "max_accounts reached")]
    assert err.retry_delay == pytest.approx(1.5)


def test_etag_mismatch_is_aborted_with_precondition_violation(h: Harness, rich: Any) -> None:
    fut = h.start(lambda: h.client.tenants.suspend_tenant("t-1", etag="old"))
    h.answer(
        "SuspendTenant",
        code=grpc.StatusCode.ABORTED,
        details="etag",
        trailing=rich.trailer(
            grpc.StatusCode.ABORTED,
            "etag",
            rich.error_info("ETAG_MISMATCH"),
            rich.precondition_failure("ETAG", "tenants/t-1", "etag mismatch"),
        ),
    )
    with pytest.raises(AbortedError) as caught:
        fut.result(timeout=5)
    assert caught.value.reason == "ETAG_MISMATCH"
    assert caught.value.precondition_violations[0].type == "ETAG"


def test_error_without_details_still_maps_by_code(h: Harness) -> None:
    fut = h.start(lambda: h.client.tenants.get_tenant("nope"))
    h.answer("GetTenant", code=grpc.StatusCode.NOT_FOUND, details="tenant 'nope' not found")
    with pytest.raises(NotFoundError) as caught:
        fut.result(timeout=5)
    assert caught.value.reason == "" and caught.value.message == "tenant 'nope' not found"
    assert isinstance(caught.value, WeworkError)


def test_iterator_follows_page_tokens_and_stops_on_empty_token(h: Harness) -> None:
    fut = h.start(lambda: list(h.client.tenants.iter_tenants(page_size=2, status=pb.TENANT_STATUS_ACTIVE)))
    pages = [(["a", "b"], "p2"), (["c", "d"], "p3"), (["e"], "")]
    requests = []
    for ids, token in pages:
        _, request = h.answer(
            "ListTenants", pb.ListTenantsResponse(tenants=[pb.Tenant(id=i) for i in ids], next_page_token=token)
        )
        requests.append(request)
    # Had the iterator asked for a 4th page it would block: result() would time out.
    assert [t.id for t in fut.result(timeout=5)] == ["a", "b", "c", "d", "e"]
    assert [r.page_token for r in requests] == ["", "p2", "p3"]
    assert all(r.page_size == 2 and r.status == pb.TENANT_STATUS_ACTIVE for r in requests)
    # One deadline for the whole iteration: each page gets what is left of it.
    timeouts = [t for _, t in h.recorder.timeouts]
    assert 7 < timeouts[0] <= 7.5 and timeouts[0] > timeouts[1] > timeouts[2]


@pytest.mark.parametrize(
    ("iterate", "method", "response"),
    [
        (lambda t: t.iter_users(), "ListUsers", lambda tok: pb.ListUsersResponse(
            users=[pb.User(id="x")], next_page_token=tok)),
        (lambda t: t.iter_roles(), "ListRoles", lambda tok: pb.ListRolesResponse(
            roles=[pb.Role(id="x")], next_page_token=tok)),
        (lambda t: t.iter_api_keys(show_revoked=True), "ListApiKeys", lambda tok: pb.ListApiKeysResponse(
            api_keys=[pb.ApiKey(id="x")], next_page_token=tok)),
    ],
)
def test_other_iterators(h: Harness, iterate: Callable[[Any], Any], method: str,
                         response: Callable[[str], Any]) -> None:
    fut = h.start(lambda: list(iterate(h.client.tenants)))
    _, first = h.answer(method, response("next"))
    _, second = h.answer(method, response(""))
    assert len(fut.result(timeout=5)) == 2
    assert (first.page_token, second.page_token) == ("", "next")


def test_iterator_refuses_a_repeated_page_token(h: Harness) -> None:
    fut = h.start(lambda: list(h.client.tenants.iter_roles()))
    h.answer("ListRoles", pb.ListRolesResponse(next_page_token="same"))
    h.answer("ListRoles", pb.ListRolesResponse(next_page_token="same"))
    with pytest.raises(RuntimeError, match="twice"):
        fut.result(timeout=5)


def test_client_closes_only_a_channel_it_created(h: Harness) -> None:
    with WeworkClient(ClientOptions("unused:0"), channel=h.recorder):  # type: ignore[arg-type]
        pass  # the recorder has no close(): calling it would fail here
    client = WeworkClient(ClientOptions("127.0.0.1:1"))
    with client:
        pass
    with pytest.raises(ValueError):  # a closed grpc channel refuses new calls
        client.channel.unary_unary("/x/y")(b"", timeout=0.1)


def test_list_returns_a_pager_with_pages_items_and_the_first_response_fields(h: Harness) -> None:
    fut = h.start(lambda: h.client.tenants.list_tenants(page_size=2))
    h.answer("ListTenants", pb.ListTenantsResponse(tenants=[pb.Tenant(id="a"), pb.Tenant(id="b")],
                                                   next_page_token="p2"))
    pager = fut.result(timeout=5)
    assert pager.next_page_token == "p2" and [t.id for t in pager.tenants] == ["a", "b"]
    fut = h.start(lambda: [[t.id for t in page.tenants] for page in pager.pages])
    h.answer("ListTenants", pb.ListTenantsResponse(tenants=[pb.Tenant(id="c")]))
    assert fut.result(timeout=5) == [["a", "b"], ["c"]]
    fut = h.start(lambda: [t.id for t in pager])  # iterating fetches the pages again
    h.answer("ListTenants", pb.ListTenantsResponse(tenants=[pb.Tenant(id="c")]))
    assert fut.result(timeout=5) == ["a", "b", "c"]


def test_a_safe_method_is_retried_after_the_servers_retry_delay_with_the_same_request_id(
    h: Harness, rich: Any
) -> None:
    fut = h.start(lambda: h.client.tenants.create_tenant(pb.Tenant(tenant_code="acme")))
    _, first = h.answer("CreateTenant", code=grpc.StatusCode.UNAVAILABLE, details="database unavailable",
                        trailing=rich.trailer(grpc.StatusCode.UNAVAILABLE, "database unavailable",
                                              rich.retry_info(0.3)))
    failed_at = time.monotonic()
    _, second = h.answer("CreateTenant", pb.Tenant(id="t-1"))
    assert time.monotonic() - failed_at >= 0.25  # the server's RetryInfo, not the 0.1 s backoff
    assert fut.result(timeout=5).id == "t-1"
    assert first.request_id and first.request_id == second.request_id


def test_aborted_is_retried_on_a_read_but_not_an_etag_mismatch(h: Harness, rich: Any) -> None:
    fut = h.start(lambda: h.client.tenants.get_tenant("t-1"))
    h.answer("GetTenant", code=grpc.StatusCode.ABORTED, details="conflict")
    h.answer("GetTenant", pb.Tenant(id="t-1"))
    assert fut.result(timeout=5).id == "t-1"

    fut = h.start(lambda: h.client.tenants.get_tenant("t-1"))
    h.answer("GetTenant", code=grpc.StatusCode.ABORTED, details="etag",
             trailing=rich.trailer(grpc.StatusCode.ABORTED, "etag", rich.error_info("ETAG_MISMATCH")))
    with pytest.raises(AbortedError):
        fut.result(timeout=5)


def test_unsafe_methods_are_not_retried_unless_the_caller_asks(h: Harness) -> None:
    # SuspendTenant has no request_id and is no read: a repeat could act twice.
    fut = h.start(lambda: h.client.tenants.suspend_tenant("t-1"))
    h.answer("SuspendTenant", code=grpc.StatusCode.UNAVAILABLE, details="down")
    with pytest.raises(UnavailableError):
        fut.result(timeout=5)
    fut = h.start(lambda: h.client.tenants.suspend_tenant("t-1", retry=Retry(initial=0.01)))
    h.answer("SuspendTenant", code=grpc.StatusCode.UNAVAILABLE, details="down")
    h.answer("SuspendTenant", pb.Tenant(id="t-1"))
    assert fut.result(timeout=5).id == "t-1"
    fut = h.start(lambda: h.client.tenants.create_tenant(pb.Tenant(tenant_code="acme"), retry=None))
    h.answer("CreateTenant", code=grpc.StatusCode.UNAVAILABLE, details="down")
    with pytest.raises(UnavailableError):
        fut.result(timeout=5)


def test_retries_stop_when_the_wait_would_cross_the_deadline(h: Harness, rich: Any) -> None:
    fut = h.start(lambda: h.client.tenants.get_tenant("t-1", timeout=1.0))
    h.answer("GetTenant", code=grpc.StatusCode.UNAVAILABLE, details="down",
             trailing=rich.trailer(grpc.StatusCode.UNAVAILABLE, "down", rich.retry_info(5)))
    with pytest.raises(UnavailableError) as caught:
        fut.result(timeout=5)
    assert caught.value.retry_delay == 5  # given up at once: the caller sees when to come back
    assert len(h.recorder.timeouts) == 1


def test_unauthenticated_with_the_same_token_is_raised_after_one_more_ask() -> None:
    h = Harness(api_key=None)
    asked = []
    client = WeworkClient(ClientOptions("unused:0", token_provider=lambda: asked.append(1) or "revoked"),
                          channel=h.recorder)  # type: ignore[arg-type]
    fut = h.start(lambda: client.tenants.get_tenant("t-1"))
    h.answer("GetTenant", code=grpc.StatusCode.UNAUTHENTICATED, details="revoked")
    with pytest.raises(UnauthenticatedError):
        fut.result(timeout=5)
    assert len(asked) == 2 and len(h.recorder.timeouts) == 1
    h.pool.shutdown(wait=False, cancel_futures=True)


def test_a_page_fetched_after_the_deadline_is_not_sent(h: Harness) -> None:
    fut = h.start(lambda: h.client.tenants.list_tenants(timeout=0.3))
    h.answer("ListTenants", pb.ListTenantsResponse(tenants=[pb.Tenant(id="a")], next_page_token="p2"))
    pager = fut.result(timeout=5)
    time.sleep(0.4)
    with pytest.raises(DeadlineExceededError):
        list(pager)
    assert len(h.recorder.timeouts) == 1  # the second page was never asked for


def test_a_blocking_client_refuses_a_coroutine_token_provider() -> None:
    async def provider() -> str:
        return "tok"

    client = WeworkClient(ClientOptions("unused:0", token_provider=provider),
                          channel=Harness().recorder)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="coroutine"):
        client.tenants.get_tenant("t-1")
