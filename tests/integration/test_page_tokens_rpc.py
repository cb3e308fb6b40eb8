"""Page tokens over the API (issue 17, item 5): every listing refuses a token it did not issue
for the caller's tenant with INVALID_ARGUMENT on page_token; found by reflection, so a new List
RPC is covered too."""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from harness.embedded import embedded_stack
from harness.rpcs import call_raw, methods_of, path_of, request_class
from wework.v1 import account_pb2, tenant_pb2, tenant_pb2_grpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
async def stack(tmp_path_factory):
    async with embedded_stack(tmp_path_factory.mktemp("page-tokens")) as stack:
        yield stack


@pytest.fixture(scope="module")
async def channel(stack):
    async with grpc.aio.insecure_channel(stack.target) as channel:
        yield channel


def unsigned(payload: dict) -> str:
    """A token in the old format (unsigned base64 JSON), as a forger would write it."""
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


def listings(stack):
    return [m for m in methods_of(r.service_full_name for r in stack.app.registrations)
            if "page_token" in m.input_type.fields_by_name]


@pytest.mark.parametrize("token", [
    unsigned({"k": "users", "v": 1}),  # a listing's kind without its keys: was a KeyError (INTERNAL)
    unsigned({"k": "messages", "v": 1, "t": "x", "id": 5}),  # wrong types
    "not-a-token", "a.b",
])
async def test_every_listing_refuses_a_forged_token(stack, channel, token):
    metadata = (*stack.admin_metadata(), ("x-wework-tenant", stack.tenant_id))
    found = listings(stack)
    assert len(found) >= 12
    for m in found:
        request = request_class(m)(page_token=token)
        for field in m.input_type.fields:  # ids some listings require (of the parent resource)
            if field.name.endswith("_id") and field.type == field.TYPE_STRING and not field.is_repeated:
                setattr(request, field.name, "x1")
        outcome = await call_raw(channel, m, [request.SerializeToString()], metadata)
        assert outcome.code is INVALID and outcome.violations == ["page_token"], (path_of(m), str(outcome))


async def test_a_page_token_of_tenant_a_is_refused_in_tenant_b(stack, channel):
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    first = await stub.ListRoles(tenant_pb2.ListRolesRequest(page_size=1), metadata=stack.tenant_metadata())
    assert first.next_page_token  # a new tenant has several system roles
    second = await stub.ListRoles(tenant_pb2.ListRolesRequest(page_size=1, page_token=first.next_page_token),
                                  metadata=stack.tenant_metadata())
    assert second.roles[0].id != first.roles[0].id
    _, other_key = await stack.new_tenant()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListRoles(tenant_pb2.ListRolesRequest(page_size=1, page_token=first.next_page_token),
                             metadata=(("x-api-key", other_key),))
    assert info.value.code() is INVALID


async def test_a_watch_cursor_of_tenant_a_is_refused_in_tenant_b(stack, channel):
    from wework.v1 import account_pb2_grpc
    stub = account_pb2_grpc.AccountServiceStub(channel)
    call = stub.WatchAccounts(account_pb2.WatchAccountsRequest(), metadata=stack.tenant_metadata(), timeout=5)
    cursor = (await call.read()).cursor
    call.cancel()
    _, other_key = await stack.new_tenant()
    call = stub.WatchAccounts(account_pb2.WatchAccountsRequest(cursor=cursor), metadata=(("x-api-key", other_key),),
                              timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() is INVALID
