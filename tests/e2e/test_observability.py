"""Observability of a real wework-server process: the /metrics endpoint moves with traffic,
log lines carry the caller's trace, no secret reaches the output, spans reach an OTLP
receiver."""

from __future__ import annotations

import gzip
import json
import secrets
import signal
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness
import pytest
from harness import httpcall
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.parser import text_string_to_metric_families
from serverproc import TEST_ADMIN_KEY, ServerProcess, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, NotFoundError, UnauthenticatedError, WeworkClient
from wework.server.settings import ALL_SERVICES
from wework.v1 import tenant_pb2 as pb

pytestmark = [pytest.mark.e2e]

TENANT_SERVICE = "wework.v1.TenantService"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Observed:
    def __init__(self, server: ServerProcess, config) -> None:
        self.server, self.config = server, config

    def client(self, **options) -> WeworkClient:
        return WeworkClient(ClientOptions(target=self.server.target, **options))

    def admin(self, tenant_id: str | None = None) -> WeworkClient:
        return self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant_id)

    def new_tenant(self) -> tuple[pb.Tenant, str, dict[str, str]]:
        code = f"t{uuid.uuid4().hex[:12]}"
        with self.admin() as admin:
            tenant = admin.tenants.create_tenant(pb.Tenant(tenant_code=code, tenant_name=code))
        with self.admin(tenant.id) as admin:
            roles = {r.role_code: r.id for r in admin.tenants.iter_roles()}
            key = admin.tenants.create_api_key(pb.ApiKey(display_name="obs", role_id=roles["admin"])).secret
        return tenant, key, roles

    def scrape(self) -> Samples:
        text = httpcall.get(self.server.metrics_url, timeout=10).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.server.log().splitlines() if line.startswith("{")]

    def access_line(self, trace_id: str, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            lines = [r for r in self.log_lines() if r["logger"] == "wework.access" and r.get("trace_id") == trace_id]
            if lines or time.monotonic() > deadline:
                assert len(lines) == 1, lines
                return lines[0]
            time.sleep(0.05)


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= set(lbls))


@pytest.fixture(scope="module")
def observed(mariadb_server, redis_server, tmp_path_factory) -> Iterator[Observed]:
    """Two MariaDB shards, the real Redis, one server with DEBUG logs and a free metrics port."""
    workdir = tmp_path_factory.mktemp("observed")
    prefix = harness.new_db_prefix("o")
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    config_path = settings_yaml(workdir / "settings.yaml", config.model_dump(mode="json"), redis_server.url,
                                redis={"key_prefix": f"{prefix}:"}, logging={"level": "DEBUG"})
    migrated = run_admin(config_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    server = start_server(workdir, config_path, name="observed")
    try:
        yield Observed(server, config)
    finally:
        server.stop(signal.SIGTERM)
        mariadb_server.drop_databases(prefix + "_")


def test_the_server_freezes_its_start_up_objects_once_it_serves(observed):
    # Full collections would otherwise walk them all, stopping the event loop for ~120 ms
    # (wework.server.runtime.gc_tuning).
    lines = [r for r in observed.log_lines() if r["logger"] == "wework.server.runtime.gc_tuning"]
    assert len(lines) == 1, lines
    frozen = int(lines[0]["message"].split()[2])
    assert frozen > 10_000 and "every 10000 allocations" in lines[0]["message"]


# ---- metrics ----------------------------------------------------------------------------------


@pytest.mark.mariadb
@pytest.mark.redis
def test_metrics_move_by_exactly_the_calls_made(observed):
    tenant, key, _ = observed.new_tenant()
    before = observed.scrape()
    with observed.client(api_key=key) as client:
        for _ in range(3):
            client.tenants.get_tenant(tenant.id)
        for _ in range(2):
            with pytest.raises(NotFoundError):
                client.tenants.get_tenant(str(uuid.uuid4()))
        list(client.tenants.iter_users(page_size=10))  # one page: one ListUsers call
    with observed.client(api_key="wwk_not_a_real_key") as stranger, pytest.raises(UnauthenticatedError):
        stranger.tenants.get_tenant(tenant.id)
    after = observed.scrape()

    expected = {("GetTenant", "OK"): 3, ("GetTenant", "NOT_FOUND"): 2, ("GetTenant", "UNAUTHENTICATED"): 1,
                ("ListUsers", "OK"): 1}
    for (method, code), count in expected.items():
        labels = {"service": TENANT_SERVICE, "method": method, "code": code}
        for name in ("wework_rpc_requests_total", "wework_rpc_duration_seconds_count"):
            assert sample(after, name, **labels) - sample(before, name, **labels) == count, (name, labels)
        assert sample(after, "wework_rpc_duration_seconds_sum", **labels) > sample(
            before, "wework_rpc_duration_seconds_sum", **labels)
        assert sample(after, "wework_rpc_duration_seconds_bucket", **labels, le="+Inf") - sample(
            before, "wework_rpc_duration_seconds_bucket", **labels, le="+Inf") == count
    # Nothing else of TenantService was called in between.
    assert total(after, "wework_rpc_requests_total", service=TENANT_SERVICE) - total(
        before, "wework_rpc_requests_total", service=TENANT_SERVICE) == sum(expected.values())

    # Every API-key call looked its credential up in the two-level cache.
    assert total(after, "wework_cache_requests_total", cache="cred") - total(
        before, "wework_cache_requests_total", cache="cred") >= 6
    assert 0 < sample(after, "wework_cache_hit_ratio", cache="cred") <= 1

    # Pools of the directory and of each shard of the user database, within their limits.
    limit = observed.config.pool_size + observed.config.max_overflow
    for db, shard in (("directory", ""), ("user", "s0"), ("user", "s1")):
        assert sample(after, "wework_db_pool_max_connections", db=db, shard=shard) == limit
        assert ("wework_db_pool_connections", (("db", db), ("shard", shard), ("state", "idle"))) in after
    assert total(after, "wework_db_pool_connections", db="user", state="idle") >= 1  # the calls used them

    assert sample(after, "wework_readiness", check="database") == 1
    assert sample(after, "wework_readiness", check="redis") == 1
    [(_, info_labels)] = [k for k in after if k[0] == "wework_build_info"]
    assert dict(info_labels)["services"] == ",".join(ALL_SERVICES)  # the default: every service


# ---- logs ---------------------------------------------------------------------------------------


@pytest.mark.mariadb
@pytest.mark.redis
def test_access_log_carries_the_trace_the_client_sent(observed):
    tenant, key, _ = observed.new_tenant()
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    with observed.client(api_key=key) as client:
        client.tenants.get_tenant(tenant.id, metadata=(("traceparent", f"00-{trace_id}-{client_span}-01"),))
    line = observed.access_line(trace_id)
    assert line["method"] == f"/{TENANT_SERVICE}/GetTenant" and line["code"] == "OK"
    # The server's own span, a child of the client's: a new span id.
    assert len(line["span_id"]) == 16 and line["span_id"] != client_span

    # The facade sends the trace of the caller's active OpenTelemetry span by itself.
    tracer = TracerProvider().get_tracer("e2e")
    with observed.client(api_key=key) as client, tracer.start_as_current_span("caller") as span:
        client.tenants.get_tenant(tenant.id)
    line = observed.access_line(format(span.get_span_context().trace_id, "032x"))
    assert line["span_id"] != format(span.get_span_context().span_id, "016x")

    # Lines written outside any call carry no ids at all.
    startup = [r for r in observed.log_lines() if r["message"] in ("gRPC server listening",
                                                                    "metrics endpoint listening")]
    assert len(startup) == 2 and all("trace_id" not in r and "span_id" not in r for r in startup)


@pytest.mark.mariadb
@pytest.mark.redis
def test_no_secret_reaches_the_output_at_debug_level(observed):
    tenant, key, roles = observed.new_tenant()
    password, wrong_password = "Pw-" + secrets.token_urlsafe(12), "Wrong-" + secrets.token_urlsafe(12)
    email, phone = f"u{secrets.token_hex(6)}@secret-mail.example", "139" + str(secrets.randbelow(10**8)).zfill(8)
    with observed.client(api_key=key) as client:
        user = client.tenants.create_user(pb.User(username="carol", email=email, phone=phone, password=password))
        client.tenants.assign_role(user_id=user.id, role_id=roles["viewer"])
    with observed.client() as anonymous:
        login = anonymous.tenants.login(tenant_code=tenant.tenant_code, username="carol", password=password)
        with pytest.raises(UnauthenticatedError):
            anonymous.tenants.login(tenant_code=tenant.tenant_code, username="carol", password=wrong_password)
    with observed.client(access_token=login.access_token) as carol:
        carol.tenants.get_user(user.id)
    with observed.client(access_token=login.access_token + "x") as forged, pytest.raises(UnauthenticatedError):
        forged.tenants.get_user(user.id)
    with observed.client(api_key=key[:-4] + "AAAA") as wrong_key, pytest.raises(UnauthenticatedError):
        wrong_key.tenants.get_tenant(tenant.id)

    log = observed.server.log()
    assert '"level": "DEBUG"' in log  # DEBUG logging is really on
    assert f'"method": "/{TENANT_SERVICE}/Login"' in log
    secret_values = {
        "admin key": TEST_ADMIN_KEY,
        "api key": key, "api key secret part": key.split("_", 3)[3],
        "password": password, "wrong password": wrong_password,
        "e-mail": email, "phone": phone,
        "access token": login.access_token, "token signature": login.access_token.rsplit(".", 1)[-1],
    }
    leaked = [name for name, value in secret_values.items() if value in log]
    assert leaked == [], f"secrets in the server output: {leaked}"


# ---- traces over OTLP --------------------------------------------------------------------------


class OtlpReceiver:
    """A minimal OTLP/HTTP collector on loopback: keeps every POST /v1/traces body."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path == "/v1/traces":
                    message = ExportTraceServiceRequest()
                    message.ParseFromString(body)
                    receiver.requests.append(message)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def spans(self) -> list[tuple[dict, Span]]:
        """(resource attributes, span) of everything received."""
        out = []
        for request in list(self.requests):
            for rs in request.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                out.extend((resource, span) for ss in rs.scope_spans for span in ss.spans)
        return out

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def test_spans_reach_an_otlp_receiver(tmp_path):
    receiver = OtlpReceiver()
    config = settings_yaml(tmp_path / "settings.yaml", None, "memory://", data_dir=str(tmp_path / "var"),
                           observability={"otlp_endpoint": f"http://127.0.0.1:{receiver.port}",
                                          "service_name": "wework-e2e"})
    # Export batches every 100 ms instead of 5 s.
    server = start_server(tmp_path, config, env={"OTEL_BSP_SCHEDULE_DELAY": "100"}, name="otlp")
    try:
        trace_id = secrets.token_hex(16)
        with WeworkClient(ClientOptions(server.target, api_key=TEST_ADMIN_KEY)) as admin:
            admin.tenants.create_tenant(pb.Tenant(tenant_code=f"t{uuid.uuid4().hex[:12]}", tenant_name="Otlp"),
                                        metadata=(("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),))
        wanted = bytes.fromhex(trace_id)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            spans = [(res, s) for res, s in receiver.spans() if s.trace_id == wanted]
            if any(s.kind == Span.SPAN_KIND_SERVER for _, s in spans) and any(
                    s.kind == Span.SPAN_KIND_CLIENT for _, s in spans):
                break
            time.sleep(0.1)
        [(resource, server_span)] = [(r, s) for r, s in spans if s.kind == Span.SPAN_KIND_SERVER]
        assert server_span.name == f"{TENANT_SERVICE}/CreateTenant"
        assert resource["service.name"] == "wework-e2e"
        attrs = {a.key: a.value for a in server_span.attributes}
        assert attrs["rpc.system"].string_value == "grpc" and attrs["rpc.grpc.status_code"].int_value == 0
        db_spans = [s for _, s in spans if s.kind == Span.SPAN_KIND_CLIENT
                    and any(a.key in ("db.system", "db.system.name") and a.value.string_value == "sqlite"
                            for a in s.attributes)]
        assert db_spans, [s.name for _, s in spans]
        by_id = {s.span_id: s for _, s in spans}
        for span in db_spans:  # each hangs below the call's span
            while span.parent_span_id != server_span.span_id:
                span = by_id[span.parent_span_id]
        # The call's access log line names the same trace.
        assert any(r.get("trace_id") == trace_id and r["logger"] == "wework.access"
                   for r in (json.loads(x) for x in server.log().splitlines() if x.startswith("{")))
    finally:
        assert server.stop() == 0
        receiver.close()
