#!/usr/bin/env python3
"""Writes the Grafana dashboards of the chart (charts/wework/dashboards/*.json) from the panel
definitions below. The chart ships them as ConfigMaps for the Grafana sidecar (dashboards.*
values); tests/chart/test_dashboards.py parses every query and checks each metric it names
against a running server, so edit the queries here, regenerate, and run that test.

    scripts/generate-dashboards.py           # rewrite the JSON files
    scripts/generate-dashboards.py --check   # exit 1 if a file is missing or not up to date (CI)

Queries use two dashboard variables: $datasource (a Prometheus data source) and $namespace (the
namespaces whose pods are scraped, from wework_build_info). Every selector carries
`{namespace=~"$namespace"}`, written here as `NS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "charts" / "wework" / "dashboards"
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"
# The gRPC codes that mean the server failed (the WeworkHighErrorRate alert's set).
SERVER_ERRORS = 'code=~"INTERNAL|UNKNOWN|UNAVAILABLE|DEADLINE_EXCEEDED|DATA_LOSS"'


@dataclass
class Panel:
    title: str
    description: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    stacked: bool = False


@dataclass
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    rows: list[Row]


def rate(metric: str, by: str = "", matchers: str = "") -> str:
    sel = f"{metric}{{{NS}{', ' + matchers if matchers else ''}}}"
    return f"sum by ({by}) (rate({sel}[{RATE}]))" if by else f"sum(rate({sel}[{RATE}]))"


def ratio(numerator: str, denominator: str) -> str:
    """A share that stays empty rather than NaN while nothing happens."""
    return f"{numerator} / clamp_min({denominator}, 1e-9)"


def quantile(q: float, metric: str, by: str = "", matchers: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, {rate(metric + '_bucket', labels, matchers)})"


MESSAGES = Dashboard("wework-messages", "WeWork / Sends and dispatch",
                     "Messages accepted by SendMessage and batches, what the dispatcher hands to the provider, "
                     "failures and how long due messages wait (docs/metrics.md).", [
    Row("Sends", [
        Panel("Accepted per second", "Messages accepted and queued, by type (idempotent replays not counted).",
              [(rate("wework_messages_accepted_total", "message_type"), "{{message_type}}")], "ops", stacked=True),
        Panel("SendMessage calls per second", "SendMessage calls by final gRPC code.",
              [(rate("wework_rpc_requests_total", "code",
                     'service="wework.v1.MessageService", method="SendMessage"'), "{{code}}")], "ops", stacked=True),
        Panel("SendMessage latency", "Server-side duration of SendMessage (p50, p99).",
              [(quantile(0.5, "wework_rpc_duration_seconds", "",
                         'service="wework.v1.MessageService", method="SendMessage"'), "p50"),
               (quantile(0.99, "wework_rpc_duration_seconds", "",
                         'service="wework.v1.MessageService", method="SendMessage"'), "p99")], "s"),
    ]),
    Row("Dispatch", [
        Panel("Sent per second", "Messages the provider accepted, by type (once per message).",
              [(rate("wework_messages_sent_total", "message_type"), "{{message_type}}")], "ops", stacked=True),
        Panel("Failed per second", "Messages that ended failed, by reason code.",
              [(rate("wework_messages_failed_total", "reason"), "{{reason}}")], "ops", stacked=True),
        Panel("Failure share", "Failed / (sent + failed) over the range.",
              [(ratio(rate("wework_messages_failed_total"),
                      rate("wework_messages_sent_total") + " + " + rate("wework_messages_failed_total")),
                "failed share")], "percentunit"),
        Panel("Dispatch lag", "From due (created or scheduled) to the hand-off to the provider: p50, p95, p99.",
              [(quantile(q, "wework_message_dispatch_lag_seconds"), f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
              "s"),
        Panel("Dispatch lag p95 by shard", "Where due messages wait: p95 per shard.",
              [(quantile(0.95, "wework_message_dispatch_lag_seconds", "shard"), "{{shard}}")], "s"),
    ]),
])

CALLBACKS = Dashboard("wework-callbacks", "WeWork / Provider callbacks",
                      "Provider callbacks received over HTTP and gRPC, their processing, lag and backlog "
                      "(docs/callbacks.md).", [
    Row("Ingest", [
        Panel("Received per second", "Callbacks ingested by transport and outcome (accepted, duplicate, rejected).",
              [(rate("wework_callbacks_received_total", "source, outcome"), "{{source}} {{outcome}}")], "ops",
              stacked=True),
        Panel("Rejected share", "Rejected (bad signature, malformed) / all received.",
              [(ratio(rate("wework_callbacks_received_total", "", 'outcome="rejected"'),
                      rate("wework_callbacks_received_total")), "rejected share")], "percentunit"),
    ]),
    Row("Processing", [
        Panel("Processed per second", "Callback events by outcome (processed, ignored, retried, failed).",
              [(rate("wework_callbacks_processed_total", "outcome"), "{{outcome}}")], "ops", stacked=True),
        Panel("Processing lag", "From receipt to the end of processing: p50, p95, p99.",
              [(quantile(q, "wework_callback_processing_lag_seconds"), f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
              "s"),
        Panel("Backlog", "Callback events due and not yet claimed, per shard.",
              [(f'max by (shard) (wework_queue_depth{{{NS}, queue="callbacks"}})', "{{shard}}")], "short"),
    ]),
])

WEBHOOKS = Dashboard("wework-webhooks", "WeWork / Tenant webhooks",
                     "Deliveries to tenants' webhook endpoints: outcomes, attempt durations, backlog and "
                     "endpoints disabled after repeated failures (docs/webhooks.md).", [
    Row("Deliveries", [
        Panel("Attempts per second", "Delivery attempts by outcome (delivered, retrying, failed, skipped).",
              [(rate("wework_webhook_deliveries_total", "outcome"), "{{outcome}}")], "ops", stacked=True),
        Panel("Attempt duration p95", "Duration of each POST by result (success, http_error, timeout, ...).",
              [(quantile(0.95, "wework_webhook_attempt_duration_seconds", "result"), "{{result}}")], "s"),
        Panel("Backlog", "Webhook deliveries due and not yet claimed, per shard.",
              [(f'max by (shard) (wework_queue_depth{{{NS}, queue="webhooks"}})', "{{shard}}")], "short"),
        Panel("Endpoints disabled", "Endpoints disabled automatically over the last hour.",
              [(f"sum(increase(wework_webhook_endpoints_disabled_total{{{NS}}}[1h]))", "disabled")], "short",
              kind="stat"),
    ]),
])

ACCOUNTS = Dashboard("wework-accounts", "WeWork / Accounts",
                     "WeCom accounts by status over every shard (docs/accounts.md). Every process serving "
                     "AccountService reports the same totals, hence max.", [
    Row("Statuses", [
        Panel("Accounts by status", "Accounts in each status.",
              [(f"max by (status) (wework_accounts{{{NS}}})", "{{status}}")], "short", stacked=True),
        Panel("Online share", "Online accounts / all accounts.",
              [((f'max(wework_accounts{{{NS}, status="online"}}) / clamp_min(sum(max by (status) '
                 f"(wework_accounts{{{NS}}})), 1)"), "online")], "percentunit"),
        Panel("Offline or in error", "Accounts that cannot send now.",
              [(f'max by (status) (wework_accounts{{{NS}, status=~"offline|error|need_verify"}})', "{{status}}")],
              "short"),
    ]),
])

DATABASES = Dashboard("wework-databases", "WeWork / Databases",
                      "Connection pools, read replicas and the runtime shard map (docs/replicas.md, "
                      "docs/shard-map.md).", [
    Row("Connection pools", [
        Panel("Pool use", "Checked-out connections / pool_size + max_overflow, per database and shard (1 = full: "
              "calls wait for pool_timeout).",
              # ignoring(state): the limit has no state label, so the two sides match per pool.
              [((f'max by (db, shard) (wework_db_pool_connections{{{NS}, state="checked_out"}} '
                 f"/ ignoring(state) wework_db_pool_max_connections{{{NS}}})"), "{{db}} {{shard}}")], "percentunit"),
        Panel("Connections by state", "Open connections of every pool: in use, idle, beyond pool_size.",
              [(f"sum by (state) (wework_db_pool_connections{{{NS}}})", "{{state}}")], "short", stacked=True),
    ]),
    Row("Replicas", [
        Panel("Replica lag", "Replication delay as last measured; reads go to the primary past "
              "database.replica_max_lag_seconds (+Inf: unreachable).",
              [(f"max by (shard, replica) (wework_db_replica_lag_seconds{{{NS}}})", "{{shard}} {{replica}}")], "s"),
        Panel("Reads by target", "Read-only transactions on replicated shards by where they went and why.",
              [(rate("wework_db_reads_total", "target, reason"), "{{target}} {{reason}}")], "ops", stacked=True),
    ]),
    Row("Shard map", [
        Panel("Shard map version", "Runtime shard map version each process applied; they should agree.",
              [(f"min(wework_shard_map_version{{{NS}}})", "min"), (f"max(wework_shard_map_version{{{NS}}})", "max")],
              "short"),
        Panel("Frozen buckets", "Buckets frozen by a running bucket move; non-zero for minutes: a move died frozen.",
              [(f"max(wework_shard_map_frozen_buckets{{{NS}}})", "frozen")], "short"),
    ]),
])

REDIS = Dashboard("wework-redis", "WeWork / Redis and caches",
                  "Redis as the processes see it: the readiness check, the two-level caches (L1 in process, L2 "
                  "Redis) and the report cache (docs/redis.md).", [
    Row("Redis", [
        Panel("Redis check", "Processes whose last Redis readiness check failed (the pods keep serving).",
              [(f'count(wework_readiness{{{NS}, check="redis"}} == 0) or vector(0)', "failing")], "short",
              kind="stat"),
        Panel("Redis errors per second", "Redis failures the caches degraded around (answered from the database).",
              [(rate("wework_cache_redis_errors_total", "cache"), "{{cache}}")], "ops"),
    ]),
    Row("Caches", [
        Panel("Cache lookups per second", "Two-level cache lookups by cache and result (l1_hit, l2_hit, miss).",
              [(rate("wework_cache_requests_total", "cache, result"), "{{cache}} {{result}}")], "ops", stacked=True),
        Panel("Cache hit ratio", "(L1 + L2 hits) / lookups over the range.",
              [(ratio(rate("wework_cache_requests_total", "cache", 'result!="miss"'),
                      rate("wework_cache_requests_total", "cache")), "{{cache}}")], "percentunit"),
        Panel("Report cache hit ratio", "ReportService reads served from the cache, per report.",
              [(ratio(rate("wework_report_cache_requests_total", "report", 'result="hit"'),
                      rate("wework_report_cache_requests_total", "report")), "{{report}}")], "percentunit"),
    ]),
])

GRPC = Dashboard("wework-grpc", "WeWork / gRPC overview",
                 "Every gRPC call the servers finish: rate, server-side errors, latency, readiness and versions "
                 "(docs/metrics.md).", [
    Row("Calls", [
        Panel("Calls per second by service", "Finished calls per service.",
              [(rate("wework_rpc_requests_total", "service"), "{{service}}")], "ops", stacked=True),
        Panel("Server-side error share", "INTERNAL, UNKNOWN, UNAVAILABLE, DEADLINE_EXCEEDED, DATA_LOSS / all calls.",
              [(ratio(rate("wework_rpc_requests_total", "service", SERVER_ERRORS),
                      rate("wework_rpc_requests_total", "service")), "{{service}}")], "percentunit"),
        Panel("p99 latency by method", "Server-side p99 per method (streams count their whole life).",
              [(quantile(0.99, "wework_rpc_duration_seconds", "service, method"), "{{method}}")], "s"),
    ]),
    Row("Processes", [
        Panel("Readiness", "Processes whose last readiness check failed, per check (database, redis).",
              [(f"sum by (check) (1 - wework_readiness{{{NS}}})", "{{check}}")], "short"),
        Panel("Versions", "Processes per running version.",
              [(f"count by (version) (wework_build_info{{{NS}}})", "{{version}}")], "short", kind="stat"),
    ]),
])

DASHBOARDS = (GRPC, MESSAGES, CALLBACKS, WEBHOOKS, ACCOUNTS, DATABASES, REDIS)


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    custom = {"fillOpacity": 20 if panel.stacked else 10, "lineWidth": 1, "showPoints": "never",
              "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"}}
    out = {
        "id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": datasource, "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, **({"custom": custom} if panel.kind == "timeseries" else {})},
                        "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "datasource": datasource, "expr": expr, "legendFormat": legend,
                     "range": True}
                    for i, (expr, legend) in enumerate(panel.targets)],
    }
    if panel.kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    else:
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    return out


def dashboard_json(d: Dashboard) -> dict:
    panels, panel_id, y = [], 1, 0
    for row in d.rows:
        panels.append({"id": panel_id, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        panel_id, y = panel_id + 1, y + 1
        for i, panel in enumerate(row.panels):
            panels.append(panel_json(panel, panel_id, 12 * (i % 2), y + 8 * (i // 2)))
            panel_id += 1
        y += 8 * ((len(row.panels) + 1) // 2)
    return {
        "uid": d.uid, "title": d.title, "description": d.description, "tags": ["wework"],
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "timezone": "browser",
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["wework"], "asDropdown": True, "title": "WeWork",
                   "includeVars": True, "keepTime": True}],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            {"name": "namespace", "label": "Namespace", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(wework_build_info, namespace)", "refId": "namespaces"},
             "definition": "label_values(wework_build_info, namespace)",
             "multi": True, "includeAll": True, "current": {}, "hide": 0, "refresh": 2, "sort": 1},
        ]},
        "panels": panels,
    }


def rendered() -> dict[str, str]:
    return {f"{d.uid}.json": json.dumps(dashboard_json(d), indent=2, ensure_ascii=False) + "\n"
            for d in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a dashboard file is not up to date")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    wanted = rendered()
    present = {p.name for p in args.out.glob("*.json")} if args.out.exists() else set()
    stale = sorted(name for name, text in wanted.items()
                   if name not in present or (args.out / name).read_text() != text)
    extra = sorted(present - set(wanted))
    if args.check:
        if stale or extra:
            print(f"dashboards out of date: {stale + extra}; run scripts/generate-dashboards.py", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out / name).write_text(wanted[name])
    for name in extra:
        (args.out / name).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
