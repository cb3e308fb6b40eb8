"""AsyncWeworkClient against a real in-process grpc.aio server (127.0.0.1, port 0) that
serves a small scripted TenantService. grpc_testing has no asyncio support; the
real channel also exercises the service config (round_robin, retries)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from wework.client import (
    AsyncWeworkClient,
    ClientOptions,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    QuotaViolation,
    ResourceExhaustedError,
    UnavailableError,
)
from wework.v1 import tenant_pb2 as pb
from wework.v1 import tenant_pb2_grpc


class ScriptedTenantService(tenant_pb2_grpc.TenantServiceServicer):
    """Answers from fixed data; errors come from `errors` (id -> (code, message, trailer))."""

    def __init__(self) -> None:
        self.tenants = [pb.Tenant(id=f"t-{i}") for i in range(5)]
        self.errors: dict[str, tuple[grpc.StatusCode, str, Any]] = {}
        self.unavailable_before_success = 0
        self.calls: list[tuple[str, Any, dict[str, str], float | None]] = []

    def _record(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.calls.append((name, request, dict(context.invocation_metadata()), context.time_remaining()))

    async def GetTenant(self, request: pb.GetTenantRequest, context: grpc.aio.ServicerContext) -> pb.Tenant:
        self._record("GetTenant", request, context)
        if request.id in self.errors:
            code, message, trailer = self.errors[request.id]
            await context.abort(code, message, trailing_metadata=trailer)
        return pb.Tenant(id=request.id)

    async def ListTenants(self, request: pb.ListTenantsRequest, context: grpc.aio.ServicerContext) -> Any:
        self._record("ListTenants", request, context)
        start = int(request.page_token or 0)
        end = start + request.page_size
        token = str(end) if end < len(self.tenants) else ""
        return pb.ListTenantsResponse(tenants=self.tenants[start:end], next_page_token=token)

    async def CreateTenant(self, request: pb.CreateTenantRequest, context: grpc.aio.ServicerContext) -> pb.Tenant:
        self._record("CreateTenant", request, context)
        if self.unavailable_before_success > 0:
            self.unavailable_before_success -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable")
        return pb.Tenant(id="t-new", tenant_code=request.tenant.tenant_code)


@pytest.fixture
async def served() -> AsyncIterator[tuple[ScriptedTenantService, str]]:
    servicer = ScriptedTenantService()
    server = grpc.aio.server()
    tenant_pb2_grpc.add_TenantServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def options(target: str) -> ClientOptions:
    return ClientOptions(target, api_key="key-1", tenant_id="tenant-9", timeout=7.5)


async def test_metadata_deadline_and_request_id(served: tuple[ScriptedTenantService, str]) -> None:
    servicer, target = served
    async with AsyncWeworkClient(options(target)) as client:
        tenant = await client.tenants.create_tenant(pb.Tenant(tenant_code="acme"))
    assert tenant.tenant_code == "acme"
    (_, request, md, remaining), = servicer.calls
    assert uuid.UUID(request.request_id).version == 4
    assert md["x-api-key"] == "key-1" and md["x-wework-tenant"] == "tenant-9"
    assert md["user-agent"].startswith("wework-client-python/")
    assert remaining is not None and 0 < remaining <= 7.5 + 0.1  # deadline clocks differ slightly


async def test_unavailable_is_retried_by_the_client_with_the_same_request_id(
    served: tuple[ScriptedTenantService, str],
) -> None:
    servicer, target = served
    servicer.unavailable_before_success = 2
    async with AsyncWeworkClient(options(target)) as client:
        tenant = await client.tenants.create_tenant(tenant=pb.Tenant(tenant_code="acme"))
    assert tenant.id == "t-new"
    ids = [request.request_id for _, request, _, _ in servicer.calls]
    assert len(ids) == 3 and len(set(ids)) == 1


async def test_retries_stop_after_four_attempts(served: tuple[ScriptedTenantService, str]) -> None:
    servicer, target = served
    servicer.unavailable_before_success = 10
    async with AsyncWeworkClient(options(target)) as client:
        with pytest.raises(UnavailableError) as caught:
            await client.tenants.create_tenant(pb.Tenant(tenant_code="acme"))
    assert caught.value.message == "database unavailable"
    assert len(servicer.calls) == 4


async def test_rich_errors_are_converted(served: tuple[ScriptedTenantService, str], rich: Any) -> None:
    servicer, target = served
    servicer.errors["bad"] = (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid id",
        rich.trailer(grpc.StatusCode.INVALID_ARGUMENT, "invalid id", rich.error_info("INVALID_ARGUMENT"),
                     rich.bad_request(("id", "not a UUID"))),
    )
    servicer.errors["full"] = (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "quota",
        rich.trailer(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", rich.error_info("QUOTA_EXCEEDED"),
                     rich.quota_failure("tenants/t-1", "max_accounts"), rich.retry_info(2)),
    )
    servicer.errors["gone"] = (
        grpc.StatusCode.NOT_FOUND,
        "tenant 'gone' not found",
        rich.trailer(grpc.StatusCode.NOT_FOUND, "tenant 'gone' not found", rich.error_info("NOT_FOUND")),
    )
    async with AsyncWeworkClient(options(target)) as client:
        with pytest.raises(InvalidArgumentError) as bad:
            await client.tenants.get_tenant("bad")
        with pytest.raises(ResourceExhaustedError) as full:
            await client.tenants.get_tenant("full")
        with pytest.raises(NotFoundError) as gone:
            await client.tenants.get_tenant("gone")
    assert bad.value.field_violations == [FieldViolation("id", "not a UUID", "INVALID_FIELD")]
    assert full.value.quota_violations == [QuotaViolation("tenants/t-1", "max_accounts")]
    assert (full.value.reason, full.value.retry_delay) == ("QUOTA_EXCEEDED", 2.0)
    assert gone.value.reason == "NOT_FOUND" and gone.value.domain == "wework.v1"


async def test_async_iterator_follows_page_tokens(served: tuple[ScriptedTenantService, str]) -> None:
    servicer, target = served
    async with AsyncWeworkClient(options(target)) as client:
        ids = [t.id async for t in client.tenants.iter_tenants(page_size=2)]
        page = await client.tenants.list_tenants(page_size=10)
    assert ids == [f"t-{i}" for i in range(5)]
    tokens = [request.page_token for name, request, _, _ in servicer.calls if name == "ListTenants"]
    assert tokens == ["", "2", "4", ""]  # three pages, then the single list_tenants call
    assert page.next_page_token == "" and len(page.tenants) == 5


async def test_async_pager_pages_and_items(served: tuple[ScriptedTenantService, str]) -> None:
    servicer, target = served
    async with AsyncWeworkClient(options(target)) as client:
        pager = await client.tenants.list_tenants(page_size=2)
        assert pager.next_page_token == "2" and [t.id for t in pager.tenants] == ["t-0", "t-1"]
        sizes = []
        async for page in pager.pages:
            sizes.append(len(page.tenants))
            await asyncio.sleep(0.3)  # the caller's time between pages counts too
        ids = [t.id async for t in pager]
    assert sizes == [2, 2, 1]
    assert ids == [f"t-{i}" for i in range(5)]
    # One deadline for every page, not one per page.
    first, second, third = [left for name, _, _, left in servicer.calls if name == "ListTenants"][:3]
    assert first - second > 0.25 and second - third > 0.25


async def test_with_options_shares_the_channel(served: tuple[ScriptedTenantService, str]) -> None:
    servicer, target = served
    async with AsyncWeworkClient(options(target)) as client:
        as_user = client.with_options(access_token="tok", tenant_id=None)
        await as_user.tenants.get_tenant("t-1")
        await as_user.close()  # not the owner: the channel stays open
        await client.tenants.get_tenant("t-2")
    first, second = servicer.calls[0][2], servicer.calls[1][2]
    assert first["authorization"] == "Bearer tok" and "x-api-key" not in first and "x-wework-tenant" not in first
    assert second["x-api-key"] == "key-1"
