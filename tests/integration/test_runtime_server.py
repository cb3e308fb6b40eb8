"""GrpcServer end to end over a real loopback channel: auth, permissions, rich errors,
health, reflection (real grpcurl), access logs, credential hygiene, graceful shutdown."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from wework.domain.access import Principal, PrincipalKind
from wework.domain.errors import FieldViolation, InvalidArgument, NotFound, Unauthenticated
from wework.server.runtime import (
    GrpcServer,
    ServiceRegistration,
    StopSignals,
    configure_logging,
    current_principal,
    current_trace_id,
    run_until_signal,
)
from wework.server.settings import LoggingConfig, ServerConfig
from wework.v1 import account_pb2, account_pb2_grpc, tenant_pb2, tenant_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
GRPCURL = ROOT / ".venv" / "bin" / "grpcurl"
SERVICE = "wework.v1.TenantService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
BOOM_KEY = "boom-key-s3cr3t-0042"
BEARER = "tok-s3cr3t-bearer-777"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class KeyAuthenticator:
    """x-api-key "good" -> a tenant API key principal; anything else is refused."""

    async def authenticate(self, metadata: dict[str, str], method: str) -> Principal:
        key = metadata.get("x-api-key")
        if key == "good":
            return Principal(PrincipalKind.API_KEY, "key-1", "tenant-1",
                             frozenset({"tenant.read", "platform.tenants.write"}))
        if key == BOOM_KEY:  # a broken credential store whose error quotes the credential
            raise RuntimeError(f"lookup failed for key {key}")
        raise Unauthenticated("missing or unknown credential")


class Probe:
    """State shared between a test, its servicer and its readiness check."""

    def __init__(self) -> None:
        self.ready = True
        self.server: GrpcServer | None = None
        self.slow_started = asyncio.Event()
        self.events: list[tuple[str, object]] = []

    async def readiness(self) -> None:
        if not self.ready:
            raise ConnectionError("database ping failed")


class FakeTenants(tenant_pb2_grpc.TenantServiceServicer):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def Login(self, request, context):
        return tenant_pb2.LoginResponse(access_token="t-" + request.username)

    async def GetTenant(self, request, context):
        if request.id == "missing":
            raise NotFound("tenant", request.id)
        if request.id == "boom":
            raise RuntimeError("SELECT secret_column FROM tenants -- internal detail")
        if request.id == "abort":
            await context.abort(grpc.StatusCode.NOT_FOUND, "handler's own abort")
        if request.id == "slow":
            self.probe.slow_started.set()
            await asyncio.sleep(1)
            self.probe.events.append(("handler_done", self.probe.server.health.status("")))
        principal = current_principal()
        return tenant_pb2.Tenant(id=request.id, tenant_name=principal.tenant_id,
                                 contact_person=current_trace_id())

    async def ListTenants(self, request, context):
        return tenant_pb2.ListTenantsResponse()

    async def CreateTenant(self, request, context):
        if not request.tenant.tenant_code:
            raise InvalidArgument(FieldViolation("tenant.tenant_code", "is required", "REQUIRED"))
        return request.tenant


PERMISSIONS: dict[str, str | None] = {
    "Login": None,
    "GetTenant": "tenant.read",
    "ListTenants": "platform.tenants.read",  # the "good" key lacks it
    "CreateTenant": "platform.tenants.write",
    # DeleteTenant deliberately missing: refused as a programming error.
}


def make_server(probe: Probe, **config) -> GrpcServer:
    cfg = ServerConfig(host="127.0.0.1", port=0, health_check_interval_seconds=0.1, **config)

    async def close_pools() -> None:
        probe.events.append(("on_shutdown", probe.server.health.status("")))

    server = GrpcServer(
        cfg,
        [ServiceRegistration("tenant", SERVICE, FakeTenants(probe),
                             tenant_pb2_grpc.add_TenantServiceServicer_to_server, dict(PERMISSIONS))],
        KeyAuthenticator(),
        readiness_checks=[probe.readiness],
        on_shutdown=[close_pools],
    )
    probe.server = server
    return server


@pytest.fixture(scope="module")
def log_buffer():
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(LoggingConfig(level="INFO"), stream=buf)
    yield buf
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
async def served(log_buffer):
    probe = Probe()
    server = make_server(probe)
    port = await server.start()
    yield probe, port
    await server.stop(0)


@pytest.fixture
async def channel(served):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served[1]}") as ch:
        yield ch


def log_lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


async def access_lines(buf: io.StringIO, trace_id: str, count: int = 1) -> list[dict]:
    # The server may log just after the client has its answer.
    for _ in range(100):
        lines = [r for r in log_lines(buf) if r["logger"] == "wework.access" and r.get("trace_id") == trace_id]
        if len(lines) >= count:
            await asyncio.sleep(0.05)  # would expose a duplicate line
            return [r for r in log_lines(buf) if r["logger"] == "wework.access" and r.get("trace_id") == trace_id]
        await asyncio.sleep(0.02)
    return []


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


def traceparent(trace_id: str) -> tuple[tuple[str, str], ...]:
    return (("traceparent", f"00-{trace_id}-b7ad6b7169203331-01"),)


async def test_public_method_needs_no_credential(channel):
    reply = await tenant_pb2_grpc.TenantServiceStub(channel).Login(tenant_pb2.LoginRequest(username="amy"))
    assert reply.access_token == "t-amy"


async def test_missing_credential_is_unauthenticated(channel):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(tenant_pb2.GetTenantRequest(id="t1"))
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert (error_info(err.value).reason, error_info(err.value).domain) == ("UNAUTHENTICATED", "wework.v1")


async def test_principal_and_trace_id_reach_the_handler(channel):
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    reply = await stub.GetTenant(tenant_pb2.GetTenantRequest(id="t1"),
                                 metadata=(("x-api-key", "good"), ("traceparent", TRACEPARENT)))
    assert (reply.id, reply.tenant_name) == ("t1", "tenant-1")
    assert reply.contact_person == "0af7651916cd43dd8448eb211c80319c"  # W3C trace id adopted


async def test_missing_permission_is_permission_denied(channel):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tenant_pb2_grpc.TenantServiceStub(channel).ListTenants(
            tenant_pb2.ListTenantsRequest(), metadata=(("x-api-key", "good"),))
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    info = error_info(err.value)
    assert (info.reason, info.domain, info.metadata["permission"]) == (
        "PERMISSION_DENIED", "wework.v1", "platform.tenants.read")


async def test_method_missing_from_the_table_is_refused_loudly(channel, log_buffer):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tenant_pb2_grpc.TenantServiceStub(channel).DeleteTenant(
            tenant_pb2.DeleteTenantRequest(id="t1"), metadata=(("x-api-key", "good"),))
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(err.value).metadata["method"] == f"/{SERVICE}/DeleteTenant"
    errors = [r for r in log_lines(log_buffer) if r["level"] == "ERROR" and "DeleteTenant" in r["message"]]
    assert errors  # at start-up (table check) and on the call


async def test_invalid_argument_has_bad_request_details(channel):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tenant_pb2_grpc.TenantServiceStub(channel).CreateTenant(
            tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant()), metadata=(("x-api-key", "good"),))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err.value)
    [bad] = [d for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)]
    request = error_details_pb2.BadRequest()
    bad.Unpack(request)
    assert [(v.field, v.description, v.reason) for v in request.field_violations] == [
        ("tenant.tenant_code", "is required", "REQUIRED")]
    assert error_info(err.value).reason == "INVALID_ARGUMENT"


async def test_not_found_maps_to_not_found(channel):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
            tenant_pb2.GetTenantRequest(id="missing"), metadata=(("x-api-key", "good"),))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert error_info(err.value).reason == "NOT_FOUND"


async def test_unexpected_exception_is_internal_without_its_text(channel, log_buffer):
    trace_id = "1" * 32
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
            tenant_pb2.GetTenantRequest(id="boom"), metadata=(("x-api-key", "good"), *traceparent(trace_id)))
    assert err.value.code() is grpc.StatusCode.INTERNAL
    assert err.value.details() == f"internal error (trace {trace_id})"
    assert "secret_column" not in str(err.value)
    info = error_info(err.value)
    assert (info.reason, info.metadata["trace_id"]) == ("INTERNAL", trace_id)
    [logged] = [r for r in log_lines(log_buffer) if r["level"] == "ERROR" and r.get("trace_id") == trace_id]
    assert "secret_column" in logged["exception"]  # the operator sees it, the caller does not


async def test_handlers_own_abort_passes_through(channel):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
            tenant_pb2.GetTenantRequest(id="abort"), metadata=(("x-api-key", "good"),))
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.NOT_FOUND, "handler's own abort")
    assert rpc_status.from_call(err.value) is None  # not rewritten into a rich status


async def test_one_json_access_line_per_call(channel, log_buffer):
    trace_ok, trace_denied = "2" * 32, "3" * 32
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    await stub.GetTenant(tenant_pb2.GetTenantRequest(id="t1"),
                         metadata=(("x-api-key", "good"), *traceparent(trace_ok)))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ListTenants(tenant_pb2.ListTenantsRequest(),
                               metadata=(("x-api-key", "good"), *traceparent(trace_denied)))
    [ok] = await access_lines(log_buffer, trace_ok)
    assert ok["method"] == f"/{SERVICE}/GetTenant"
    assert ok["code"] == "OK" and ok["level"] == "INFO"
    assert (ok["tenant_id"], ok["principal_kind"]) == ("tenant-1", "api_key")
    assert ok["peer"].startswith("ipv4:127.0.0.1:") and ok["duration_ms"] >= 0
    [denied] = await access_lines(log_buffer, trace_denied)
    assert (denied["method"], denied["code"]) == (f"/{SERVICE}/ListTenants", "PERMISSION_DENIED")


async def test_credentials_never_reach_the_logs(channel, log_buffer):
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    await stub.GetTenant(tenant_pb2.GetTenantRequest(id="t1"), metadata=(("x-api-key", "good"),))
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the authenticator's error quotes the key
        await stub.GetTenant(tenant_pb2.GetTenantRequest(id="t1"), metadata=(("x-api-key", BOOM_KEY),))
    assert err.value.code() is grpc.StatusCode.INTERNAL and BOOM_KEY not in str(err.value)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetTenant(tenant_pb2.GetTenantRequest(id="t1"),
                             metadata=(("authorization", f"Bearer {BEARER}"),))
    await asyncio.sleep(0.1)
    text = log_buffer.getvalue()
    assert "lookup failed for key [REDACTED]" in text  # the traceback was logged, scrubbed
    for secret in ("good", BOOM_KEY, BEARER):
        assert secret not in text


async def test_health_per_service_follows_readiness(channel, served):
    probe, _ = served
    health = health_pb2_grpc.HealthStub(channel)

    async def status(service: str) -> int:
        return (await health.Check(health_pb2.HealthCheckRequest(service=service))).status

    assert await status("") == SERVING
    assert await status(SERVICE) == SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await status("wework.v1.NoSuchService")
    assert err.value.code() is grpc.StatusCode.NOT_FOUND

    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))  # server-streaming via interceptors
    assert (await watch.read()).status == SERVING
    probe.ready = False
    try:
        assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        assert await status("") == NOT_SERVING
    finally:
        probe.ready = True
    assert (await asyncio.wait_for(watch.read(), 5)).status == SERVING
    watch.cancel()
    assert await status("") == SERVING


async def test_reflection_lists_services_with_grpcurl(served):
    async def grpcurl(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(GRPCURL), "-plaintext", f"127.0.0.1:{served[1]}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    assert set((await grpcurl("list")).split()) == {
        SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    assert "rpc CreateTenant" in await grpcurl("describe", SERVICE)


async def test_graceful_shutdown_finishes_in_flight_calls(log_buffer):
    probe = Probe()
    server = make_server(probe, grace_period_seconds=5)
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = asyncio.ensure_future(tenant_pb2_grpc.TenantServiceStub(ch).GetTenant(
            tenant_pb2.GetTenantRequest(id="slow"), metadata=(("x-api-key", "good"),)))
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == SERVING
        await asyncio.wait_for(probe.slow_started.wait(), 5)
        started = time.monotonic()
        await server.stop()  # grace 5 s from the config
        # Returned once the call was done, not after the grace: the open Watch did not hold it.
        assert time.monotonic() - started < 4
        reply = await call
        assert (await watch.read()).status == NOT_SERVING
        assert await watch.read() is grpc.aio.EOF and await watch.code() is grpc.StatusCode.OK
    assert reply.id == "slow"
    # Health went NOT_SERVING before the call ended; the pools closed only after it.
    assert probe.events == [("handler_done", NOT_SERVING), ("on_shutdown", NOT_SERVING)]
    await server.stop()  # idempotent


async def test_shutdown_serves_during_the_drain_delay_then_refuses_with_unavailable(log_buffer):
    """NOT_SERVING first while calls still succeed (drain_delay), then new calls are refused with
    UNAVAILABLE / SHUTTING_DOWN and a RetryInfo, while the call received before finishes OK."""
    probe = Probe()
    server = make_server(probe, grace_period_seconds=5, drain_delay_seconds=0.5)
    port = await server.start()
    key = (("x-api-key", "good"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_retries", 0)]) as ch:
        tenants, health = tenant_pb2_grpc.TenantServiceStub(ch), health_pb2_grpc.HealthStub(ch)
        stopping = asyncio.ensure_future(server.stop())
        await asyncio.sleep(0.1)
        # In the delay: the probe reads NOT_SERVING, yet calls are served.
        assert (await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))).status == NOT_SERVING
        slow = asyncio.ensure_future(tenants.GetTenant(tenant_pb2.GetTenantRequest(id="slow"), metadata=key))
        assert (await tenants.GetTenant(tenant_pb2.GetTenantRequest(id="t1"), metadata=key)).id == "t1"
        await asyncio.sleep(0.6)  # past the delay; the slow call is still running
        late = asyncio.ensure_future(tenants.GetTenant(tenant_pb2.GetTenantRequest(id="t2"), metadata=key))
        # Health still answers probes while the received calls drain.
        assert (await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))).status == NOT_SERVING
        assert (await slow).id == "slow"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await late
        await stopping
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert error_info(refused.value).reason == "SHUTTING_DOWN"
    assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in rpc_status.from_call(refused.value).details)
    assert probe.events == [("handler_done", NOT_SERVING), ("on_shutdown", NOT_SERVING)]


class EndlessWatch(account_pb2_grpc.AccountServiceServicer):
    """A watch that reports its start cursor and then waits for changes that never come."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def WatchAccounts(self, request, context):
        try:
            yield account_pb2.WatchAccountsResponse(cursor="c0")
            await asyncio.sleep(3600)
        finally:
            self.closed.set()


async def test_shutdown_ends_watch_streams_at_once_with_shutting_down(log_buffer):
    probe, watcher = Probe(), EndlessWatch()
    server = GrpcServer(
        ServerConfig(host="127.0.0.1", port=0, grace_period_seconds=20),
        [ServiceRegistration("account", "wework.v1.AccountService", watcher,
                             account_pb2_grpc.add_AccountServiceServicer_to_server, {"WatchAccounts": None})],
        KeyAuthenticator())
    probe.server = server
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        watch = account_pb2_grpc.AccountServiceStub(ch).WatchAccounts(account_pb2.WatchAccountsRequest())
        assert (await watch.read()).cursor == "c0"
        started = time.monotonic()
        await server.stop()
        # Not held for the 20 s grace: the stream ended as the shutdown began.
        assert time.monotonic() - started < 10
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await watch.read()
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert error_info(err.value).reason == "SHUTTING_DOWN"
    assert watcher.closed.is_set()  # the handler's generator was closed (its cleanup ran)


async def test_run_until_signal_stops_gracefully_on_sigterm(log_buffer):
    probe = Probe()
    server = make_server(probe)
    runner = asyncio.ensure_future(run_until_signal(server))
    for _ in range(200):
        if server.port:
            break
        await asyncio.sleep(0.01)
    assert server.port and server.health.status("") == SERVING
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(runner, 10)
    assert probe.events == [("on_shutdown", NOT_SERVING)]


async def test_a_sigterm_during_start_up_stops_the_server_once_it_has_started(log_buffer):
    """A SIGTERM between the process's first step and run_until_signal (was the default action:
    the process died with -15 right after "gRPC server listening", a `--workers` parent then
    failed) is kept and stops the server gracefully as soon as it has started."""
    probe = Probe()
    server = make_server(probe)
    stop = StopSignals()  # what serve() and wework-worker do first
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)  # the loop reads the signal while start-up goes on
        assert stop.requested.is_set()
        await server.start()
        await asyncio.wait_for(run_until_signal(server, stop=stop), 10)
    finally:
        stop.remove()
    assert probe.events == [("on_shutdown", NOT_SERVING)]
    assert "received SIGTERM" in log_buffer.getvalue()


@pytest.mark.parametrize(("event_loop", "loop_class"), [("uvloop", "Loop"), ("asyncio", "_UnixSelectorEventLoop")])
def test_server_runs_on_the_configured_event_loop(tmp_path, event_loop, loop_class):
    """server.event_loop picks the loop through asyncio.Runner(loop_factory=...), without the
    deprecated event-loop policy API (the policy stays asyncio's own)."""
    script = tmp_path / "uv.py"
    script.write_text(
        "import asyncio, sys, grpc\n"
        "sys.path.insert(0, TEST_DIR)\n"
        "import test_runtime_server as t\n"
        "from wework.server.runtime import run_on_loop\n"
        "from wework.v1 import account_pb2, account_pb2_grpc, tenant_pb2, tenant_pb2_grpc\n"
        "async def main():\n"
        "    print(type(asyncio.get_running_loop()).__name__)\n"
        "    server = t.make_server(t.Probe())\n"
        "    port = await server.start()\n"
        "    async with grpc.aio.insecure_channel(f'127.0.0.1:{port}') as ch:\n"
        "        r = await tenant_pb2_grpc.TenantServiceStub(ch).GetTenant(\n"
        "            tenant_pb2.GetTenantRequest(id='u'), metadata=(('x-api-key', 'good'),))\n"
        "    await server.stop(0)\n"
        "    return r.tenant_name\n"
        "print('ok', run_on_loop(main(), EVENT_LOOP))\n"
        "print(type(asyncio.get_event_loop_policy()).__module__)\n"
        .replace("TEST_DIR", repr(str(Path(__file__).parent))).replace("EVENT_LOOP", repr(event_loop))
    )
    done = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == [loop_class, "ok tenant-1", "asyncio.unix_events"]


async def test_deadline_exceeded_call_is_logged_once(channel, log_buffer, served):
    trace_id = "4" * 32
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
            tenant_pb2.GetTenantRequest(id="slow"), timeout=0.2,
            metadata=(("x-api-key", "good"), *traceparent(trace_id)))
    assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    [line] = await access_lines(log_buffer, trace_id)
    assert line["code"] == "DEADLINE_EXCEEDED"


async def test_methods_are_served_through_generic_handlers_only(channel, monkeypatch):
    """Services are registered without grpc's registered-method handlers: grpc.aio keeps one
    call request pending per registered method and awaits all of them on every call
    (docs/decisions/0021). Each call now waits on the few that health and reflection register,
    not on one per method of the services; the methods still answer, and a method a service
    does not have is UNIMPLEMENTED."""
    waited_on: list[int] = []
    wait = asyncio.wait

    async def recording_wait(fs, *args, **kwargs):
        waited_on.append(len(fs))
        return await wait(fs, *args, **kwargs)

    monkeypatch.setattr(asyncio, "wait", recording_wait)  # grpc's Cython looks it up per call
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    for _ in range(3):
        reply = await stub.GetTenant(tenant_pb2.GetTenantRequest(id="t1"), metadata=(("x-api-key", "good"),))
        assert reply.id == "t1"
    # Health, reflection and the generic request: 5 here, against 30 with the services registered.
    assert waited_on and max(waited_on) <= 6, waited_on
    unknown = channel.unary_unary(f"/{SERVICE}/NoSuchMethod", request_serializer=lambda m: b"",
                                  response_deserializer=lambda b: b)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await unknown(None, metadata=(("x-api-key", "good"),))
    assert err.value.code() is grpc.StatusCode.UNIMPLEMENTED
