"""The client facade propagates the caller's trace (W3C traceparent) when OpenTelemetry is
installed, and works unchanged with only grpcio + protobuf + grpcio-status.

The far end is a plain gRPC server that answers with the `traceparent` it received.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent import futures

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from wework.client import AsyncWeworkClient, ClientOptions, WeworkClient
from wework.client import tracing as client_tracing
from wework.v1 import tenant_pb2 as pb

STREAM_METHOD = "/wework.test.Echo/Stream"


def traceparent_of(span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _traceparent(context) -> str:
    return dict(context.invocation_metadata()).get("traceparent", "")


@pytest.fixture(scope="module")
def echo_target():
    def get_tenant(request, context):
        return pb.Tenant(id=request.id, contact_person=_traceparent(context))

    def stream(request, context):
        yield _traceparent(context).encode()
        yield b"end"

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("wework.v1.TenantService", {
            "GetTenant": grpc.unary_unary_rpc_method_handler(
                get_tenant, request_deserializer=pb.GetTenantRequest.FromString,
                response_serializer=pb.Tenant.SerializeToString)}),
        grpc.method_handlers_generic_handler("wework.test.Echo", {
            "Stream": grpc.unary_stream_rpc_method_handler(stream)}),
    ])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture
def caller_span():
    """A span of the calling application (its own provider; the global one is not touched)."""
    with TracerProvider().get_tracer("caller").start_as_current_span("calling") as span:
        yield traceparent_of(span)


def test_sync_calls_carry_the_active_span(echo_target, caller_span):
    with WeworkClient(ClientOptions(echo_target)) as client:
        assert client.tenants.get_tenant("t1").contact_person == caller_span
        # Streams too (through the channel the facade made).
        stream = client.channel.unary_stream(STREAM_METHOD)(b"", timeout=5)
        assert next(iter(stream)).decode() == caller_span


def test_sync_calls_outside_a_span_carry_none(echo_target):
    with WeworkClient(ClientOptions(echo_target)) as client:
        assert client.tenants.get_tenant("t1").contact_person == ""


def test_an_explicit_traceparent_wins(echo_target, caller_span):
    mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with WeworkClient(ClientOptions(echo_target)) as client:
        assert client.tenants.get_tenant("t1", metadata=(("traceparent", mine),)).contact_person == mine


async def test_aio_calls_carry_the_active_span(echo_target):
    async with AsyncWeworkClient(ClientOptions(echo_target)) as client:
        assert (await client.tenants.get_tenant("t1")).contact_person == ""
        with TracerProvider().get_tracer("caller").start_as_current_span("calling") as span:
            expected = traceparent_of(span)
            assert (await client.tenants.get_tenant("t1")).contact_person == expected
            call = client.channel.unary_stream(STREAM_METHOD)(b"", timeout=5)
            assert [m async for m in call] == [expected.encode(), b"end"]


def test_the_client_works_without_opentelemetry(echo_target):
    # A fresh interpreter in which `import opentelemetry` fails, as for a consumer that
    # installed only the client's own dependencies.
    script = textwrap.dedent(f"""
        import sys
        sys.modules["opentelemetry"] = None
        from wework.client import ClientOptions, WeworkClient, AsyncWeworkClient
        from wework.client import tracing
        assert not tracing.available() and tracing.sync_interceptors() == [] and tracing.aio_interceptors() == []
        with WeworkClient(ClientOptions({echo_target!r})) as client:
            print("sync", repr(client.tenants.get_tenant("t1").contact_person))
        import asyncio
        async def main():
            async with AsyncWeworkClient(ClientOptions({echo_target!r})) as client:
                print("aio", repr((await client.tenants.get_tenant("t1")).contact_person))
        asyncio.run(main())
        print("opentelemetry loaded:", any(m.startswith("opentelemetry.") for m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["sync ''", "aio ''", "opentelemetry loaded: False"]


def test_trace_headers_follow_the_active_span():
    assert client_tracing.trace_headers() == []
    with TracerProvider().get_tracer("t").start_as_current_span("s") as span:
        headers = dict(client_tracing.trace_headers())
    assert headers["traceparent"].split("-")[1] == f"{span.get_span_context().trace_id:032x}"
