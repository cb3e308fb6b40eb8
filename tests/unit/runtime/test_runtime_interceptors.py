"""Interceptors without a server: a fake servicer context drives the wrapped behaviours."""

from __future__ import annotations

import inspect
import json
import logging

import grpc
import pytest
from grpc.aio import AbortError
from wework.domain.access import Principal, PrincipalKind
from wework.domain.errors import NotFound, Unauthenticated
from wework.server.runtime.context import current_principal, current_trace_id, trace_id_from_traceparent
from wework.server.runtime.interceptors import build_interceptors
from wework.server.runtime.registry import Access, ServiceRegistration, ServiceRegistry

SERVICE = "wework.v1.TenantService"


class FakeContext:
    def __init__(self, metadata=()):
        self._metadata = tuple(metadata)
        self._code = None
        self.aborted = None

    def invocation_metadata(self):
        return self._metadata

    def peer(self):
        return "ipv4:127.0.0.1:5555"

    def code(self):
        return self._code

    def time_remaining(self):
        return None

    def add_done_callback(self, callback):
        self.done_callbacks = [*getattr(self, "done_callbacks", []), callback]

    async def abort(self, code, details="", trailing_metadata=()):
        self._code = code
        self.aborted = (code, details, dict(trailing_metadata))
        raise AbortError("aborted")


class Details:
    def __init__(self, method):
        self.method = method
        self.invocation_metadata = ()


class KeyAuth:
    async def authenticate(self, metadata, method):
        if metadata.get("x-api-key") == "good":
            return Principal(PrincipalKind.API_KEY, "k1", "tenant-1", frozenset({"tenant.read"}))
        raise Unauthenticated("no credential")


REGISTRY = ServiceRegistry([ServiceRegistration("tenant", SERVICE, object(), lambda s, srv: None,
                                                {"Login": None, "GetTenant": "tenant.read",
                                                 "ListTenants": "platform.tenants.read"})])


async def intercepted(handler, method):
    """Runs the handler through the whole chain like grpc.aio does (first = outermost)."""
    interceptors = build_interceptors(REGISTRY, KeyAuth())

    async def run(i, details):
        if i == len(interceptors):
            return handler
        return await interceptors[i].intercept_service(lambda d: run(i + 1, d), details)

    return await run(0, Details(f"/{SERVICE}/{method}"))


@pytest.fixture
def access_log(caplog):
    caplog.set_level(logging.INFO, logger="wework.access")
    return lambda: [r for r in caplog.records if r.name == "wework.access"]


def test_registry_rules():
    assert REGISTRY.rule(f"/{SERVICE}/Login").access is Access.PUBLIC
    assert REGISTRY.rule(f"/{SERVICE}/GetTenant").permission == "tenant.read"
    assert REGISTRY.rule(f"/{SERVICE}/DeleteTenant").access is Access.UNDECLARED
    assert REGISTRY.rule("/wework.v1.OtherService/Get").access is Access.UNDECLARED
    assert REGISTRY.rule("/grpc.health.v1.Health/Check").access is Access.PUBLIC
    assert REGISTRY.rule("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").access is Access.PUBLIC


@pytest.mark.parametrize(("header", "expected"), [
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),  # all-zero trace id is invalid
    ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),  # forbidden version
    ("garbage", None),
    (None, None),
])
def test_traceparent(header, expected):
    assert trace_id_from_traceparent(header) == expected


async def test_unary_unary_sees_principal_and_trace_id(access_log):
    seen = {}

    async def get(request, context):
        seen.update(principal=current_principal(), trace=current_trace_id())
        return "tenant"

    handler = await intercepted(grpc.unary_unary_rpc_method_handler(get), "GetTenant")
    assert await handler.unary_unary("req", FakeContext([("x-api-key", "good")])) == "tenant"
    assert seen["principal"].tenant_id == "tenant-1" and len(seen["trace"]) == 32
    assert current_principal() is None  # the contextvar does not outlive the call
    [line] = access_log()
    assert (line.code, line.tenant_id, line.principal_kind, line.trace_id) == ("OK", "tenant-1", "api_key",
                                                                                  seen["trace"])


async def test_domain_error_becomes_rich_abort(access_log):
    async def get(request, context):
        raise NotFound("tenant", "t1")

    handler = await intercepted(grpc.unary_unary_rpc_method_handler(get), "GetTenant")
    context = FakeContext([("x-api-key", "good")])
    with pytest.raises(AbortError):
        await handler.unary_unary("req", context)
    code, _, trailers = context.aborted
    assert code is grpc.StatusCode.NOT_FOUND and "grpc-status-details-bin" in trailers
    assert [r.code for r in access_log()] == ["NOT_FOUND"]


async def test_unauthenticated_before_the_handler_runs(access_log):
    async def get(request, context):
        raise AssertionError("must not run")

    handler = await intercepted(grpc.unary_unary_rpc_method_handler(get), "GetTenant")
    context = FakeContext()
    with pytest.raises(AbortError):
        await handler.unary_unary("req", context)
    assert context.aborted[0] is grpc.StatusCode.UNAUTHENTICATED
    assert [r.code for r in access_log()] == ["UNAUTHENTICATED"]


async def test_missing_permission_is_refused():
    handler = await intercepted(grpc.unary_unary_rpc_method_handler(lambda r, c: "x"), "ListTenants")
    context = FakeContext([("x-api-key", "good")])
    with pytest.raises(AbortError):
        await handler.unary_unary("req", context)
    assert context.aborted[0] is grpc.StatusCode.PERMISSION_DENIED


async def test_public_method_runs_without_credential_even_if_sync():
    handler = await intercepted(grpc.unary_unary_rpc_method_handler(lambda r, c: ("sync", current_principal())),
                                "Login")
    assert await handler.unary_unary("req", FakeContext()) == ("sync", None)


async def test_handler_abort_passes_untouched(access_log):
    async def get(request, context):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "mine")

    handler = await intercepted(grpc.unary_unary_rpc_method_handler(get), "GetTenant")
    context = FakeContext([("x-api-key", "good")])
    with pytest.raises(AbortError):
        await handler.unary_unary("req", context)
    assert context.aborted == (grpc.StatusCode.FAILED_PRECONDITION, "mine", {})
    assert [r.code for r in access_log()] == ["FAILED_PRECONDITION"]


async def test_unary_stream_async_generator_keeps_its_kind():
    async def watch(request, context):
        yield current_principal().tenant_id
        yield "b"

    handler = await intercepted(grpc.unary_stream_rpc_method_handler(watch), "GetTenant")
    out = [m async for m in handler.unary_stream("req", FakeContext([("x-api-key", "good")]))]
    assert out == ["tenant-1", "b"]


async def test_unary_stream_writer_coroutine_keeps_its_kind():
    written = []

    async def watch(request, context):
        written.append("w")

    handler = await intercepted(grpc.unary_stream_rpc_method_handler(watch), "GetTenant")
    assert inspect.iscoroutinefunction(handler.unary_stream)
    await handler.unary_stream("req", FakeContext([("x-api-key", "good")]))
    assert written == ["w"]


async def test_stream_stream_sync_generator_and_error_mid_stream():
    def chat(request_iterator, context):
        yield 1
        raise NotFound("tenant", "t1")

    async def requests():
        yield "r"

    handler = await intercepted(grpc.stream_stream_rpc_method_handler(chat), "GetTenant")
    context = FakeContext([("x-api-key", "good")])
    got = []
    with pytest.raises(AbortError):
        async for m in handler.stream_stream(requests(), context):
            got.append(m)
    assert got == [1] and context.aborted[0] is grpc.StatusCode.NOT_FOUND


async def test_stream_unary():
    async def upload(request_iterator, context):
        return [r async for r in request_iterator]

    async def requests():
        yield "a"
        yield "b"

    handler = await intercepted(grpc.stream_unary_rpc_method_handler(upload), "GetTenant")
    assert await handler.stream_unary(requests(), FakeContext([("x-api-key", "good")])) == ["a", "b"]


async def test_access_line_is_json_with_the_fields(caplog):
    from wework.server.runtime.logging import JsonFormatter

    caplog.set_level(logging.INFO, logger="wework.access")
    handler = await intercepted(grpc.unary_unary_rpc_method_handler(lambda r, c: "x"), "Login")
    await handler.unary_unary("req", FakeContext())
    [record] = [r for r in caplog.records if r.name == "wework.access"]
    line = json.loads(JsonFormatter().format(record))
    assert {"time", "level", "logger", "message", "method", "code", "duration_ms", "tenant_id",
            "principal_kind", "peer", "trace_id"} <= line.keys()
    assert (line["method"], line["code"], line["level"]) == (f"/{SERVICE}/Login", "OK", "INFO")


async def test_the_wrapped_handler_is_made_once_per_method_and_calls_stay_apart(access_log):
    from wework.server.runtime.interceptors import CallInterceptor

    seen = []

    async def get(request, context):
        seen.append((current_principal(), current_trace_id()))
        return "tenant"

    original = grpc.unary_unary_rpc_method_handler(get)
    interceptor = CallInterceptor(REGISTRY, KeyAuth())

    async def continuation(details):
        return original

    details = Details(f"/{SERVICE}/GetTenant")
    first = await interceptor.intercept_service(continuation, details)
    assert await interceptor.intercept_service(continuation, details) is first
    assert await first.unary_unary("r", FakeContext([("x-api-key", "good")])) == "tenant"
    context = FakeContext()
    with pytest.raises(AbortError):  # the cached handler still authenticates every call
        await first.unary_unary("r", context)
    assert context.aborted[0] is grpc.StatusCode.UNAUTHENTICATED
    assert await first.unary_unary("r", FakeContext([("x-api-key", "good")])) == "tenant"
    assert len(seen) == 2 and seen[0][1] != seen[1][1]  # a trace id per call
    assert [r.code for r in access_log()] == ["OK", "UNAUTHENTICATED", "OK"]


async def test_an_undeclared_method_is_refused_after_authentication():
    handler = await intercepted(grpc.unary_unary_rpc_method_handler(lambda r, c: "x"), "DeleteTenant")
    context = FakeContext()
    with pytest.raises(AbortError):
        await handler.unary_unary("req", context)
    assert context.aborted[0] is grpc.StatusCode.UNAUTHENTICATED
    context = FakeContext([("x-api-key", "good")])
    with pytest.raises(AbortError):
        await handler.unary_unary("req", context)
    assert context.aborted[0] is grpc.StatusCode.PERMISSION_DENIED
