"""The Grafana dashboards shipped with the chart: generated files up to date, rendered as
ConfigMaps for the Grafana sidecar, and every query parsed with a real PromQL parser
(promql-parser) and checked against the /metrics of a running wework-server after real traffic
(sends, a failure, callbacks over HTTP, webhooks, reports, a replica): a renamed metric, label
or label value fails here instead of leaving a panel empty."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import chartkit
import grpc
import harness
import promql_parser as pq
import pytest
from chartkit import values_files
from harness import httpcall

DASHBOARDS = chartkit.CHART / "dashboards"
GENERATOR = chartkit.ROOT / "scripts" / "generate-dashboards.py"
# Labels Prometheus adds from the scrape target, not exported by the server itself.
TARGET_LABELS = {"namespace", "pod", "instance", "job", "container", "endpoint", "service"}
# Grafana's range variables, as Prometheus would see them after interpolation.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
RANGE_FUNCTIONS = {"rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes"}
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}


# ---- the dashboards as files and as rendered ConfigMaps -------------------------------------


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Query:
    where: str  # "<file>: <panel title>" for messages
    expr: str


def queries() -> list[Query]:
    out = []
    for path in dashboard_files():
        board = load(path)
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append(Query(f"{path.name}: {panel['title']}", target["expr"]))
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                # label_values(<metric>, <label>): the metric must exist and carry the label (as a
                # target label here).
                metric, label = re.fullmatch(r"label_values\((\w+), *(\w+)\)", var["definition"]).groups()
                out.append(Query(f"{path.name}: variable {var['name']}", f"count by ({label}) ({metric})"))
    return out


def test_generated_dashboards_are_up_to_date():
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert len(dashboard_files()) >= 7


def test_dashboards_are_well_formed():
    uids = set()
    for path in dashboard_files():
        board = load(path)
        assert board["uid"] == path.stem and board["uid"] not in uids and len(board["uid"]) <= 40
        uids.add(board["uid"])
        variables = {v["name"] for v in board["templating"]["list"]}
        assert variables == {"datasource", "namespace"}
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and panel["description"], panel["title"]
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_dashboards_render_for_the_grafana_sidecar(helm, rendered):
    assert not [o for o in rendered("default") if "grafana_dashboard" in o["metadata"].get("labels", {})]
    objects = rendered("everything")
    maps = {o["metadata"]["name"]: o for o in objects
            if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"}
    assert sorted(maps) == sorted(f"wework-dashboard-{p.stem}" for p in dashboard_files())
    for path in dashboard_files():
        cm = maps[f"wework-dashboard-{path.stem}"]
        assert cm["metadata"]["namespace"] == "wework"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "WeWork"}
        assert cm["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # dashboards.labels
        assert json.loads(cm["data"][path.name]) == load(path)
        chartkit.validate_k8s(cm)
    # The sidecar's label and folder annotation are values; the ConfigMaps may live elsewhere.
    moved = helm.template(values_files("everything"), {
        "dashboards.label": "grafana_dashboard_wework", "dashboards.labelValue": "yes", "dashboards.folder": "",
        "dashboards.namespace": "grafana"})
    maps = [o for o in moved if o["metadata"]["labels"].get("grafana_dashboard_wework") == "yes"]
    assert len(maps) == len(dashboard_files())
    for cm in maps:
        assert cm["metadata"]["namespace"] == "grafana" and "annotations" not in cm["metadata"]


# ---- PromQL ---------------------------------------------------------------------------------


def parse(expr: str) -> pq.Expr:
    for variable, value in GRAFANA_RANGES.items():
        expr = expr.replace(f"[{variable}]", f"[{value}]")
    assert not re.search(r"\[\$", expr), f"unknown Grafana range variable in {expr}"
    return pq.parse(expr)


@dataclass
class Selector:
    name: str | None
    matchers: list[tuple[str, str, str]]  # (label, op, value)
    functions: tuple[str, ...]  # enclosing function names, innermost last


@dataclass
class Aggregation:
    by: list[str]
    selectors: list[Selector] = field(default_factory=list)


def analyse(expr: pq.Expr) -> tuple[list[Selector], list[Aggregation]]:
    """Every vector selector with the functions around it, and every `by` aggregation with the
    selectors under it."""
    selectors: list[Selector] = []
    aggregations: list[Aggregation] = []

    def visit(node, functions: tuple[str, ...], open_aggs: list[Aggregation]) -> None:
        if isinstance(node, pq.VectorSelector):
            sel = Selector(node.name, [(m.name, str(m.op).rsplit(".", 1)[-1], m.value)
                                       for m in node.matchers.matchers], functions)
            selectors.append(sel)
            for agg in open_aggs:
                agg.selectors.append(sel)
        elif isinstance(node, pq.MatrixSelector):
            visit(node.vector_selector, functions, open_aggs)
        elif isinstance(node, pq.Call):
            for arg in node.args:
                visit(arg, (*functions, node.func.name), open_aggs)
        elif isinstance(node, pq.AggregateExpr):
            inner = open_aggs
            if node.modifier is not None and node.modifier.type == pq.AggModifierType.By:
                agg = Aggregation(list(node.modifier.labels))
                aggregations.append(agg)
                inner = [*open_aggs, agg]
            visit(node.expr, functions, inner)
        elif isinstance(node, pq.BinaryExpr):
            visit(node.lhs, functions, open_aggs)
            visit(node.rhs, functions, open_aggs)
        elif isinstance(node, (pq.ParenExpr, pq.UnaryExpr, pq.SubqueryExpr)):
            visit(node.expr, functions, open_aggs)
        elif not isinstance(node, (pq.NumberLiteral, pq.StringLiteral)):
            raise TypeError(f"unexpected PromQL node {type(node).__name__}")

    visit(expr, (), [])
    return selectors, aggregations


def test_every_query_parses_and_filters_by_namespace():
    found = queries()
    assert len(found) > 40
    for q in found:
        selectors, _ = analyse(parse(q.expr))
        assert selectors, q
        for sel in selectors:
            assert sel.name and sel.name.startswith("wework_"), (q, sel)
            if "variable" not in q.where:
                assert ("namespace", "Re", "$namespace") in sel.matchers, (q, sel)


def test_the_parser_refuses_broken_queries():
    for broken in ("sum(rate(wework_rpc_requests_total[5m])", "rate(wework_rpc_requests_total)",
                   "histogram_quantile(0.9 sum by (le) (x))"):
        with pytest.raises(ValueError):
            parse(broken)


# ---- what a running server exports ------------------------------------------------------------


@dataclass
class Series:
    family_type: str  # counter, gauge, histogram, info, ...
    labels: dict[str, set[str]] = field(default_factory=dict)  # label -> values seen


def exported(text: str) -> dict[str, Series]:
    """Sample name -> its family's type and the labels seen, from a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Series] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series = out.setdefault(sample.name, Series(family.type))
            for label, value in sample.labels.items():
                series.labels.setdefault(label, set()).add(value)
    return out


def problems(q: Query, metrics: dict[str, Series]) -> list[str]:
    """What would make this query's panel empty or wrong against `metrics`."""
    found: list[str] = []
    selectors, aggregations = analyse(parse(q.expr))
    for sel in selectors:
        series = metrics.get(sel.name)
        if series is None:
            found.append(f"{sel.name} is not exported")
            continue
        kind = series.family_type
        in_range = [f for f in sel.functions if f in RANGE_FUNCTIONS]
        if kind == "counter" and not set(in_range) & COUNTER_FUNCTIONS:
            found.append(f"counter {sel.name} is read without rate()/increase()")
        if in_range and set(in_range) & COUNTER_FUNCTIONS and kind not in ("counter", "histogram"):
            found.append(f"{in_range[-1]}() over {sel.name}, a {kind}")
        if kind == "histogram" and not sel.name.endswith(("_bucket", "_sum", "_count")):
            found.append(f"{sel.name} names a histogram without _bucket/_sum/_count")
        if "histogram_quantile" in sel.functions and not (kind == "histogram" and sel.name.endswith("_bucket")):
            found.append(f"histogram_quantile() over {sel.name}, not a histogram's _bucket series")
        for label, op, value in sel.matchers:
            if label in TARGET_LABELS and label not in series.labels:
                continue
            if label not in series.labels:
                found.append(f"{sel.name} has no label {label!r}")
            elif op == "Equal" and value not in series.labels[label]:
                found.append(f"{sel.name}{{{label}={value!r}}} was never exported "
                             f"(seen: {sorted(series.labels[label])})")
    for agg in aggregations:
        known = set(TARGET_LABELS) | {label for sel in agg.selectors if sel.name in metrics
                                      for label in metrics[sel.name].labels}
        missing = [label for label in agg.by if label not in known]
        if missing:
            found.append(f"by ({', '.join(agg.by)}): {missing} on none of {[s.name for s in agg.selectors]}")
        if any("histogram_quantile" in s.functions for s in agg.selectors) and "le" not in agg.by:
            found.append(f"histogram_quantile() over an aggregation without le: by ({', '.join(agg.by)})")
    return [f"{q.where}: {p}" for p in found]


class Receiver(BaseHTTPRequestHandler):
    """A tenant's webhook endpoint: 200 for every post."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@dataclass
class Traffic:
    """Sends, a failure, callbacks, webhooks and reports through the generated stubs."""

    target: str
    callback_url: str
    callback_secret: str
    webhook_url: str

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.target)

    def stub(self, module: str, service: str):
        import importlib

        return getattr(importlib.import_module(f"wework.v1.{module}_pb2_grpc"), f"{service}Stub")(self.channel)

    def run(self) -> None:
        from google.protobuf import timestamp_pb2
        from serverproc import TEST_ADMIN_KEY
        from wework.domain.callbacks import sign
        from wework.v1 import account_pb2 as apb
        from wework.v1 import callback_pb2 as cpb
        from wework.v1 import message_pb2 as mpb
        from wework.v1 import report_pb2 as rpb
        from wework.v1 import tenant_pb2 as tpb

        tenants = self.stub("tenant", "TenantService")
        admin = (("x-api-key", TEST_ADMIN_KEY),)
        code = f"d{uuid.uuid4().hex[:12]}"
        tenant = tenants.CreateTenant(tpb.CreateTenantRequest(tenant=tpb.Tenant(tenant_code=code, tenant_name=code)),
                                      metadata=admin, timeout=10)
        in_tenant = (*admin, ("x-wework-tenant", tenant.id))
        roles = {r.role_code: r.id for r in tenants.ListRoles(tpb.ListRolesRequest(), metadata=in_tenant,
                                                               timeout=10).roles}
        key = tenants.CreateApiKey(tpb.CreateApiKeyRequest(api_key=tpb.ApiKey(display_name="dash",
                                                                              role_id=roles["admin"])),
                                   metadata=in_tenant, timeout=10).secret
        md = (("x-api-key", key),)

        callbacks = self.stub("callback", "CallbackService")
        callbacks.CreateWebhookEndpoint(cpb.CreateWebhookEndpointRequest(url=self.webhook_url), metadata=md,
                                        timeout=10)
        accounts = self.stub("account", "AccountService")
        online = accounts.CreateAccount(apb.CreateAccountRequest(account=apb.Account(account_name="dash")),
                                        metadata=md, timeout=10)
        accounts.StartLogin(apb.StartLoginRequest(id=online.id), metadata=md, timeout=10)
        deadline = time.monotonic() + 30
        while accounts.GetAccount(apb.GetAccountRequest(id=online.id), metadata=md,
                                  timeout=10).status != apb.ACCOUNT_STATUS_ONLINE:
            assert time.monotonic() < deadline, "the account did not come online"
            time.sleep(0.1)
        # Never logged in: its message is held, then fails (message.hold_timeout_seconds).
        offline = accounts.CreateAccount(apb.CreateAccountRequest(account=apb.Account(account_name="idle")),
                                         metadata=md, timeout=10)

        messages = self.stub("message", "MessageService")
        for account, n in ((online, 3), (offline, 1)):
            for i in range(n):
                messages.SendMessage(mpb.SendMessageRequest(
                    account_id=account.id, conversation_id=f"wm-dash-{i}",
                    content=mpb.MessageContent(text=mpb.TextContent(text=f"dashboard {i}"))), metadata=md, timeout=10)

        # The provider's HTTP ingress: one good callback, one with a wrong signature.
        raw = json.dumps({"guid": "unknown-guid", "notify_type": 1, "data": {}, "event_id": uuid.uuid4().hex,
                          "time": datetime.now(UTC).isoformat()}).encode()
        ts = int(time.time())
        for secret, status in ((self.callback_secret, 200), ("not-the-secret", 401)):
            response = httpcall.post(self.callback_url, content=raw, timeout=10, headers={
                "Content-Type": "application/json", "X-Provider-Timestamp": str(ts),
                "X-Provider-Signature": sign(secret, ts, raw)})
            assert response.status_code == status, response.text

        # A closed range: cacheable, so the second read is a hit.
        reports = self.stub("report", "ReportService")
        end = timestamp_pb2.Timestamp()
        end.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
        start = timestamp_pb2.Timestamp()
        start.FromDatetime(datetime.now(UTC) - timedelta(days=1))
        for _ in range(2):
            reports.GetAccountHealth(rpb.GetAccountHealthRequest(start_time=start, end_time=end), metadata=md,
                                     timeout=10)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(scope="module")
def scraped(mariadb_server, redis_server, tmp_path_factory) -> Iterator[dict[str, Series]]:
    """A wework-server on two MariaDB shards (s0 with a read replica: the primary itself, which is
    enough for the lag monitor and the read routing to report) and Redis, after traffic."""
    from serverproc import free_port, run_admin, settings_yaml, start_server

    workdir = tmp_path_factory.mktemp("dashboards")
    prefix = harness.new_db_prefix("g")
    config = harness.make_database_config(prefix, [mariadb_server], 2, replica_heartbeat_interval_seconds=0.2,
                                          replica_heartbeat_schema=f"{prefix}_meta")
    database = config.model_dump(mode="json")
    database["shards"][0]["replicas"] = [database["shards"][0]["dsn"]]
    http_port, secret = free_port(), "dashboard-callback-secret"
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    settings = settings_yaml(
        workdir / "settings.yaml", database, redis_server.url, redis={"key_prefix": f"{prefix}:"},
        callback={"http_port": http_port, "secret": secret, "idle_poll_seconds": 0.2},
        provider={"simulator": {"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                                "heartbeat_interval_seconds": 0.5, "delivery_delay_seconds": 0.05}},
        message={"account_min_interval_seconds": 0, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2,
                 "hold_recheck_seconds": 0.2, "hold_timeout_seconds": 0.5},
        webhooks={"allowed_target_cidrs": ["127.0.0.0/8"], "idle_poll_seconds": 0.2})
    migrated = run_admin(settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    server = start_server(workdir, settings, name="dashboards", wait_service="wework.v1.CallbackService")
    traffic = Traffic(server.target, f"http://127.0.0.1:{http_port}/provider/callbacks", secret,
                      f"http://127.0.0.1:{receiver.server_address[1]}/hooks")
    try:
        traffic.run()
        # The dispatcher, the callback and webhook workers and the account monitor run on their
        # own schedules (labelled series appear once something was counted): scrape until every
        # query is satisfied or a minute has passed; the tests then report what is still missing.
        deadline = time.monotonic() + 60
        while True:
            metrics = exported(httpcall.get(server.metrics_url, timeout=10).text)
            if time.monotonic() > deadline or not [p for q in queries() for p in problems(q, metrics)]:
                break
            time.sleep(0.5)
        yield metrics
    finally:
        traffic.close()
        server.stop(signal.SIGTERM)
        receiver.shutdown()
        mariadb_server.drop_databases(prefix + "_")




@pytest.mark.e2e
@pytest.mark.mariadb
@pytest.mark.redis
def test_every_dashboard_query_names_what_a_running_server_exports(scraped):
    found = [p for q in queries() for p in problems(q, scraped)]
    assert not found, "\n".join(found)


@pytest.mark.e2e
@pytest.mark.mariadb
@pytest.mark.redis
def test_the_check_catches_renames_and_misused_types(scraped):
    """The check above must fail for the mistakes it exists for."""
    cases = {
        'sum(rate(wework_messages_sent{namespace=~"$namespace"}[5m]))': "not exported",  # counter without _total
        'histogram_quantile(0.9, sum by (le) (rate(wework_message_dispatch_lag_seconds{namespace=~"x"}[5m])))':
            "not exported",  # histogram family name
        'sum(rate(wework_rpc_duration_seconds_count{namespace=~"x"}[5m]))': None,
        'histogram_quantile(0.9, sum by (shard) (rate(wework_message_dispatch_lag_seconds_bucket[5m])))': "without le",
        'histogram_quantile(0.9, sum by (le) (rate(wework_rpc_requests_total[5m])))': "not a histogram",
        "sum(wework_messages_sent_total)": "without rate",
        "sum(rate(wework_accounts[5m]))": "over wework_accounts, a gauge",
        'max(wework_queue_depth{queue="dispatch"})': "never exported",
        'max(wework_queue_depth{queues="callbacks"})': "no label 'queues'",
        "max by (tenant) (wework_accounts)": "['tenant']",
        'sum by (le) (rate(wework_rpc_duration_seconds{namespace=~"x"}[5m]))': "not exported",
    }
    for expr, expected in cases.items():
        found = problems(Query("case", expr), scraped)
        if expected is None:
            assert not found, (expr, found)
        else:
            assert any(expected in p for p in found), (expr, found)
