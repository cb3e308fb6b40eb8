"""Traces in process: the real application (embedded SQLite + in-process Redis) behind the
real gRPC runtime, spans collected by the SDK's in-memory exporter, JSON logs captured."""

from __future__ import annotations

import io
import json
import logging
import secrets
import uuid

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from wework.client import AsyncWeworkClient, ClientOptions, NotFoundError
from wework.persistence.migrate import migrate_all
from wework.server.app import build_application
from wework.server.observability import Observability
from wework.server.observability.tracing import NoOrphanClientSpans, RpcSpan, configure_tracing, traces_url
from wework.server.runtime.logging import configure_logging
from wework.server.runtime.server import GrpcServer
from wework.server.settings import LoggingConfig, ObservabilityConfig, load_settings
from wework.v1 import tenant_pb2 as pb


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


class Stack:
    def __init__(self, port: int, admin_key: str, exporter: InMemorySpanExporter, buf: io.StringIO) -> None:
        self.target, self.admin_key, self.exporter, self._buf = f"127.0.0.1:{port}", admin_key, exporter, buf

    def client(self, **options) -> AsyncWeworkClient:
        return AsyncWeworkClient(ClientOptions(self.target, **options))

    def logs(self) -> list[dict]:
        return [json.loads(line) for line in self._buf.getvalue().splitlines()]

    def spans(self, trace_id: int | None = None):
        return [s for s in self.exporter.get_finished_spans() if trace_id is None or s.context.trace_id == trace_id]

    def server_span(self, method: str, trace_id: int | None = None):
        found = [s for s in self.spans(trace_id) if s.kind is SpanKind.SERVER and s.name == method]
        assert found, f"no server span {method}"
        return found[-1]

    async def tenant_and_key(self) -> tuple[pb.Tenant, str]:
        async with self.client(api_key=self.admin_key) as admin:
            tenant = await admin.tenants.create_tenant(pb.Tenant(tenant_code=f"t{uuid.uuid4().hex[:12]}",
                                                                 tenant_name="Obs"))
        async with self.client(api_key=self.admin_key, tenant_id=tenant.id) as admin:
            roles = [r async for r in admin.tenants.iter_roles()]
            admin_role = next(r.id for r in roles if r.role_code == "admin")
            created = await admin.tenants.create_api_key(pb.ApiKey(display_name="obs", role_id=admin_role))
        return tenant, created.secret


@pytest.fixture(scope="module")
async def stack(tmp_path_factory):
    settings = load_settings(None, data_dir=str(tmp_path_factory.mktemp("obs-stack")))
    settings.server.host, settings.server.port = "127.0.0.1", 0
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(LoggingConfig(level="INFO"), stream=buf)
    exporter = InMemorySpanExporter()
    obs = Observability(ObservabilityConfig(metrics_enabled=False), exporters=[exporter], install_global=False)
    obs.start(services=settings.server.services)
    await migrate_all(settings.database_config)
    app = await build_application(settings, on_engine_created=obs.on_engine_created)
    obs.attach(app)
    server = GrpcServer(settings.server, app.registrations, app.authenticator,
                        readiness_checks=obs.readiness(await app.readiness_checks()),
                        on_shutdown=[app.close, obs.close])
    port = await server.start()
    try:
        yield Stack(port, settings.security.admin_api_key.get_secret_value(), exporter, buf)
    finally:
        await server.stop(0)
        root.removeHandler(handler)
        root.setLevel(level)


def parent_chain_reaches(span, ancestor, by_id) -> bool:
    while span.parent is not None:
        if span.parent.span_id == ancestor.context.span_id:
            return True
        span = by_id.get(span.parent.span_id)
        if span is None:
            return False
    return False


async def test_call_span_is_the_parent_of_its_sql_and_redis_spans(stack):
    tenant, key = await stack.tenant_and_key()
    async with stack.client(api_key=key) as client:
        await client.tenants.get_tenant(tenant.id)
    server = stack.server_span("wework.v1.TenantService/GetTenant")
    attrs = dict(server.attributes)
    assert (attrs["rpc.system"], attrs["rpc.service"], attrs["rpc.method"]) == (
        "grpc", "wework.v1.TenantService", "GetTenant")
    assert attrs["rpc.grpc.status_code"] == 0 and attrs["wework.tenant_id"] == tenant.id
    assert server.status.status_code is StatusCode.UNSET
    in_trace = stack.spans(server.context.trace_id)
    by_id = {s.context.span_id: s for s in in_trace}
    sql = [s for s in in_trace if s.instrumentation_scope.name == "opentelemetry.instrumentation.sqlalchemy"]
    redis = [s for s in in_trace if s.instrumentation_scope.name == "opentelemetry.instrumentation.redis"]
    assert sql and redis  # the credential lookup goes through the two-level cache to Redis
    for child in sql + redis:
        assert child.kind is SpanKind.CLIENT and parent_chain_reaches(child, server, by_id)
    # Statements carry placeholders, Redis commands "?" for their arguments: no values.
    statements = " ".join(str(s.attributes.get("db.statement", "")) for s in sql + redis)
    assert key not in statements and key.split("_", 3)[3] not in statements


async def test_the_callers_traceparent_is_the_parent_and_the_access_log_carries_the_ids(stack):
    trace_id, parent_span = secrets.token_hex(16), secrets.token_hex(8)
    async with stack.client(api_key=stack.admin_key) as admin:
        with pytest.raises(NotFoundError):
            await admin.tenants.get_tenant("no-such-tenant",
                                           metadata=(("traceparent", f"00-{trace_id}-{parent_span}-01"),))
    server = stack.server_span("wework.v1.TenantService/GetTenant", int(trace_id, 16))
    assert hex_id(server.parent.span_id, 16) == parent_span and server.parent.is_remote
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert server.status.status_code is StatusCode.UNSET  # the caller's error, not the server's
    [line] = [r for r in stack.logs() if r["logger"] == "wework.access" and r.get("trace_id") == trace_id]
    assert line["span_id"] == hex_id(server.context.span_id, 16) != parent_span
    assert line["code"] == "NOT_FOUND"


async def test_the_client_facade_propagates_the_callers_active_span(stack):
    caller = TracerProvider()  # the calling application's own tracing, not the server's
    async with stack.client(api_key=stack.admin_key) as admin:
        with caller.get_tracer("caller").start_as_current_span("calling") as outer:
            page = await admin.tenants.list_tenants(page_size=1)
    assert page is not None
    ctx = outer.get_span_context()
    server = stack.server_span("wework.v1.TenantService/ListTenants", ctx.trace_id)
    assert server.parent.span_id == ctx.span_id


async def test_an_unsampled_caller_gets_ids_in_the_log_but_no_exported_span(stack):
    trace_id = secrets.token_hex(16)
    async with stack.client(api_key=stack.admin_key) as admin:
        await admin.tenants.list_tenants(page_size=1,
                                         metadata=(("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-00"),))
    assert stack.spans(int(trace_id, 16)) == []
    [line] = [r for r in stack.logs() if r["logger"] == "wework.access" and r.get("trace_id") == trace_id]
    assert len(line["span_id"]) == 16


async def test_readiness_pings_leave_no_orphan_client_spans(stack):
    await stack.tenant_and_key()
    client_spans = [s for s in stack.spans() if s.kind is SpanKind.CLIENT]
    assert client_spans and all(s.parent is not None for s in client_spans)


async def test_health_checks_are_counted_but_not_traced(stack):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(stack.target) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert not [s for s in stack.spans() if s.name.startswith("grpc.health.v1.Health")]
    assert [r for r in stack.logs() if r.get("method") == "/grpc.health.v1.Health/Check"]


async def test_log_lines_carry_ids_only_inside_a_span(stack):
    log = logging.getLogger("wework.test.observability")
    log.info("outside-any-span")
    with TracerProvider().get_tracer("t").start_as_current_span("job") as span:
        log.info("inside-a-span")
    lines = {r["message"]: r for r in stack.logs() if r["logger"] == "wework.test.observability"}
    assert "trace_id" not in lines["outside-any-span"] and "span_id" not in lines["outside-any-span"]
    ctx = span.get_span_context()
    assert (lines["inside-a-span"]["trace_id"], lines["inside-a-span"]["span_id"]) == (
        hex_id(ctx.trace_id, 32), hex_id(ctx.span_id, 16))


# ---- without the stack ---------------------------------------------------------------------


def test_server_failures_mark_the_span_as_error_without_the_message():
    exporter = InMemorySpanExporter()
    tracing = configure_tracing("wework-test", exporters=[exporter], install_global=False)
    try:
        span = RpcSpan.start("/wework.v1.TenantService/GetTenant", {})
        assert len(span.trace_id) == 32 and len(span.span_id) == 16
        span.finish("INTERNAL")
        [done] = exporter.get_finished_spans()
        assert done.status.status_code is StatusCode.ERROR and done.status.description == "INTERNAL"
        assert done.events == ()  # no exception event: its message could quote a credential
        assert done.resource.attributes["service.name"] == "wework-test"
    finally:
        tracing.shutdown()


def test_without_a_configured_provider_span_id_is_never_the_callers():
    parent_trace, parent_span = secrets.token_hex(16), secrets.token_hex(8)
    span = RpcSpan.start("/wework.v1.TenantService/GetTenant", {"traceparent": f"00-{parent_trace}-{parent_span}-01"})
    try:
        assert (span.trace_id, span.span_id) == (parent_trace, None)
    finally:
        span.finish("OK")
    span = RpcSpan.start("/wework.v1.TenantService/GetTenant", {})
    span.finish("OK")
    assert len(span.trace_id) == 32 and span.span_id is None


def test_sampler_keeps_parents_decisions_and_drops_orphan_client_spans():
    tracer = TracerProvider(sampler=NoOrphanClientSpans(0.0)).get_tracer("t")
    unsampled = tracer.start_span("root", kind=SpanKind.SERVER)
    assert not unsampled.is_recording() and unsampled.get_span_context().is_valid  # ids for the logs
    tracer = TracerProvider(sampler=NoOrphanClientSpans(1.0)).get_tracer("t")
    assert not tracer.start_span("SELECT 1", kind=SpanKind.CLIENT).is_recording()
    with tracer.start_as_current_span("work", kind=SpanKind.INTERNAL) as work:
        assert work.is_recording()
        assert tracer.start_span("SELECT 1", kind=SpanKind.CLIENT).is_recording()


@pytest.mark.parametrize(("endpoint", "url"), [
    ("http://collector:4318", "http://collector:4318/v1/traces"),
    ("http://collector:4318/", "http://collector:4318/v1/traces"),
    ("https://c.example/otlp/v1/traces", "https://c.example/otlp/v1/traces"),
])
def test_traces_url(endpoint, url):
    assert traces_url(endpoint) == url


async def test_a_taken_metrics_port_is_logged_and_serving_goes_on(caplog):
    first = Observability(ObservabilityConfig(metrics_host="127.0.0.1", metrics_port=0), install_global=False)
    first.start()
    try:
        second = Observability(ObservabilityConfig(metrics_host="127.0.0.1", metrics_port=first.metrics_port),
                               install_global=False)
        with caplog.at_level(logging.ERROR, logger="wework.server.observability"):
            second.start()
        assert second.metrics_port is None
        assert any("WEWORK_OBSERVABILITY__METRICS_PORT" in r.getMessage() for r in caplog.records)
        await second.close()
    finally:
        await first.close()


def test_the_logged_otlp_endpoint_drops_credentials():
    from wework.server.observability import _without_userinfo

    assert _without_userinfo("https://user:pw@collector:4318/x") == "https://collector:4318/x"
    assert _without_userinfo("http://collector:4318") == "http://collector:4318"


def test_without_an_exporter_call_spans_have_ids_and_sampling_but_record_nothing():
    from opentelemetry import trace as otel_trace
    from wework.server.observability.tracing import current_ids

    tracing = configure_tracing("wework-test", sample_ratio=1.0, install_global=False)
    try:
        assert not tracing.exporting
        span = RpcSpan.start("/wework.v1.TenantService/GetTenant", {})
        try:
            current = otel_trace.get_current_span()
            assert not current.is_recording() and current.get_span_context().trace_flags.sampled
            assert current_ids() == (span.trace_id, span.span_id)  # what the log lines carry
            assert len(span.trace_id) == 32 and len(span.span_id) == 16
        finally:
            span.finish("OK")
        assert current_ids() is None
        # The caller's trace and sampling decision are kept; the span id is our own.
        parent_trace, parent_span = secrets.token_hex(16), secrets.token_hex(8)
        span = RpcSpan.start("/wework.v1.TenantService/GetTenant",
                             {"traceparent": f"00-{parent_trace}-{parent_span}-00"})
        try:
            sc = otel_trace.get_current_span().get_span_context()
            assert span.trace_id == parent_trace and span.span_id not in (None, parent_span)
            assert not sc.trace_flags.sampled and not sc.is_remote
        finally:
            span.finish("OK")
    finally:
        tracing.shutdown()
    unsampled = configure_tracing("wework-test", sample_ratio=0.0, install_global=False)
    try:
        span = RpcSpan.start("/wework.v1.TenantService/GetTenant", {})
        try:
            assert not otel_trace.get_current_span().get_span_context().trace_flags.sampled
        finally:
            span.finish("OK")
    finally:
        unsampled.shutdown()
