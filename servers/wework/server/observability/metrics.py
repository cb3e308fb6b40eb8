"""The platform's Prometheus metrics: one registry, named metric objects, and the
HTTP endpoint that serves them (docs/metrics.md lists every metric with its meaning).

Code that counts something imports the object and increments or sets it; it never
creates metrics of its own at call time:

    from wework.server.observability import metrics
    metrics.MESSAGES_ACCEPTED.labels(message_type="text").inc()
    metrics.QUEUE_DEPTH.labels(queue="messages", shard="s0").set(42)

Figures that already live somewhere else (counters of an object, pool sizes) are read
at scrape time by a collector instead: `register_collector(collector)`. A collector's
`collect()` runs on the metrics server's thread, so it may only read in-memory state
(no I/O, no awaiting the event loop) and must tolerate values that change meanwhile.

Label values must come from small fixed sets (a status, a code, a shard name), never
from ids, tenants or free text: every distinct value is a new time series.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# `<name>_created` series double the output and no dashboard or alert here reads them.
disable_created_metrics()

# Our own registry rather than prometheus_client's global one: exactly what this module
# defines is served, whatever else a library registers globally.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Seconds. RPCs: a cache hit is ~1 ms, a cross-shard listing may take seconds; streams
# count their whole life (they land in the last buckets).
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Lags of queued work: from sub-second (woken by Redis) to an hour (a backlog).
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# ---- gRPC (recorded by the runtime's request-context interceptor for every call) ----------

RPC_DURATION = Histogram(
    "wework_rpc_duration_seconds",
    "Server-side duration of gRPC calls, from the first interceptor to the final status.",
    ("service", "method", "code"), buckets=RPC_BUCKETS, registry=REGISTRY)
RPC_REQUESTS = Counter(
    "wework_rpc_requests",  # exposed as wework_rpc_requests_total
    "gRPC calls finished, by final status code.",
    ("service", "method", "code"), registry=REGISTRY)

# ---- process ------------------------------------------------------------------------------

BUILD_INFO = Info(
    "wework_build",  # exposed as wework_build_info{...} 1
    "Version of the running build and the services this process serves.", registry=REGISTRY)
READINESS = Gauge(
    "wework_readiness",
    "Last result of each readiness check: 1 passed, 0 failed (the health service's input).",
    ("check",), registry=REGISTRY)

# ---- accounts (AccountService) ------------------------------------------------------------

ACCOUNTS = Gauge(
    "wework_accounts",
    "WeCom accounts by status, over every shard (set by the process that counts them).",
    ("status",), registry=REGISTRY)

# ---- messages (MessageService and its dispatcher) -----------------------------------------

MESSAGES_ACCEPTED = Counter(
    "wework_messages_accepted",
    "Messages accepted for sending (stored, queued), idempotent replays not counted.",
    ("message_type",), registry=REGISTRY)


@functools.cache
def messages_accepted(message_type: str) -> Any:
    """MESSAGES_ACCEPTED's child for `message_type` (a fixed set): counted per accepted send,
    where .labels() (a lock and a key per call) cost twice the increment."""
    return MESSAGES_ACCEPTED.labels(message_type)


MESSAGES_SENT = Counter(
    "wework_messages_sent",
    "Messages the provider accepted (each message once, however many attempts it took).",
    ("message_type",), registry=REGISTRY)
MESSAGES_FAILED = Counter(
    "wework_messages_failed",
    "Messages that ended failed; reason is a fixed code, e.g. PROVIDER_ERROR, ACCOUNT_OFFLINE.",
    ("message_type", "reason"), registry=REGISTRY)
MESSAGE_DISPATCH_LAG = Histogram(
    "wework_message_dispatch_lag_seconds",
    "From the time a message was due (created, or its scheduled time) to its hand-off to the provider.",
    ("shard",), buckets=LAG_BUCKETS, registry=REGISTRY)
PACING_HELD = Counter(
    "wework_pacing_held",
    "Sends held because the shared pacing state (Redis) could not decide; they go once it answers.",
    registry=REGISTRY)
QUEUE_DEPTH = Gauge(
    "wework_queue_depth",
    "Work items due and not yet claimed, per durable queue and shard (messages, callbacks, webhooks).",
    ("queue", "shard"), registry=REGISTRY)

# ---- callbacks and webhooks (CallbackService) ---------------------------------------------

CALLBACKS_RECEIVED = Counter(
    "wework_callbacks_received",
    "Provider callbacks received, by transport (http, grpc, or the in-process adapter: simulator, puppet_service) "
    "and outcome (accepted, duplicate, rejected).",
    ("source", "outcome"), registry=REGISTRY)
CALLBACKS_PROCESSED = Counter(
    "wework_callbacks_processed",
    "Callback events processed, by outcome (processed, ignored, retried, failed).",
    ("outcome",), registry=REGISTRY)
CALLBACK_PROCESSING_LAG = Histogram(
    "wework_callback_processing_lag_seconds",
    "From receiving a callback to finishing its processing.",
    buckets=LAG_BUCKETS, registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter(
    "wework_webhook_deliveries",
    "Webhook delivery attempts, by outcome (delivered, retrying, failed, skipped).",
    ("outcome",), registry=REGISTRY)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "wework_webhook_endpoints_disabled",
    "Webhook endpoints disabled automatically after repeated delivery failures.",
    registry=REGISTRY)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "wework_webhook_attempt_duration_seconds",
    "Duration of webhook delivery attempts, by result (success, http_error, timeout, connection_error, refused).",
    ("result",), buckets=RPC_BUCKETS, registry=REGISTRY)

# ---- reports (ReportService) --------------------------------------------------------------

REPORT_CACHE_REQUESTS = Counter(
    "wework_report_cache_requests",
    "Report reads by cache outcome (hit: served from Redis or the process cache, miss: computed).",
    ("report", "result"), registry=REGISTRY)
REPORT_CACHE_HIT_RATIO = Gauge(
    "wework_report_cache_hit_ratio",
    "Share of this process's cacheable report reads served from the cache since it started (0-1).",
    registry=REGISTRY)

# ---- authentication ---------------------------------------------------------------------------

PASSWORD_HASHES = Counter(
    "wework_password_hashes",  # exposed as wework_password_hashes_total
    "Argon2 computations by operation (hash: a new password; verify: a login, real or against the "
    "dummy hash of an unknown user, so both count alike).",
    ("operation",), registry=REGISTRY)
LOGIN_ATTEMPTS_LIMITED = Counter(
    "wework_login_attempts_limited",
    "Login calls refused by the login rate limit, by limit (source, tenant).",
    ("limit",), registry=REGISTRY)

# ---- databases (read/write split) ---------------------------------------------------------

DB_REPLICA_LAG = Gauge(
    "wework_db_replica_lag_seconds",
    "Replication delay of each replica as last measured; reads fall back to the primary past the bound.",
    ("db", "shard", "replica"), registry=REGISTRY)
DB_READS = Counter(
    "wework_db_reads",
    "Read-only transactions on replicated shards by target (replica, primary) and reason "
    "(usable, no_usable_replica, wait_timeout, replica_unreachable, writes_unknown).",
    ("shard", "target", "reason"), registry=REGISTRY)


SHARD_MAP_VERSION = Gauge(
    "wework_shard_map_version",
    "Runtime shard map version this process applied (0: the settings' map; docs/shard-map.md).",
    registry=REGISTRY)
FROZEN_BUCKETS = Gauge(
    "wework_shard_map_frozen_buckets",
    "Buckets frozen by a bucket move in the shard map this process applied (writes to them wait).",
    registry=REGISTRY)


def observe_shard_map(version: int, frozen_buckets: int) -> None:
    SHARD_MAP_VERSION.set(version)
    FROZEN_BUCKETS.set(frozen_buckets)


def observe_replica_lag(dbs: Iterable[str], shard: str, replica: str, seconds: float | None) -> None:
    """One lag measurement (ReplicaMonitor); an unreachable replica reads +Inf."""
    value = float("inf") if seconds is None else seconds
    for db in dbs:  # the replica serves every service database of the shard alike
        DB_REPLICA_LAG.labels(db, shard, replica).set(value)


def observe_db_read(shard: str, target: str, reason: str) -> None:
    DB_READS.labels(shard, target, reason).inc()


# ---- API ----------------------------------------------------------------------------------


def split_method(full_method: str) -> tuple[str, str]:
    """"/wework.v1.TenantService/GetTenant" -> ("wework.v1.TenantService", "GetTenant")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


# (full method, code) -> the two labelled children: .labels() takes a lock and builds a key on
# every call. Methods are the served ones and codes a fixed set, so this stays small.
_RPC_CHILDREN: dict[tuple[str, str], tuple[Any, Any]] = {}


def observe_rpc(full_method: str, code: str, seconds: float) -> None:
    """Records one finished call (called by the runtime for every RPC)."""
    children = _RPC_CHILDREN.get((full_method, code))
    if children is None:
        service, method = split_method(full_method)
        children = (RPC_DURATION.labels(service, method, code), RPC_REQUESTS.labels(service, method, code))
        if len(_RPC_CHILDREN) < 10_000:
            _RPC_CHILDREN[(full_method, code)] = children
    children[0].observe(seconds)
    children[1].inc()


def register_collector(collector: Collector) -> Callable[[], None]:
    """Adds a collector (an object with `collect()` yielding metric families) to the
    served registry; returns the function that removes it again (call it at shutdown)."""
    REGISTRY.register(collector)
    done = threading.Event()

    def unregister() -> None:
        if not done.is_set():
            done.set()
            REGISTRY.unregister(collector)

    return unregister


@dataclass
class MetricsServer:
    """The /metrics endpoint: prometheus_client's HTTP server on a daemon thread."""

    host: str
    port: int
    _httpd: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def start_metrics_server(host: str, port: int) -> MetricsServer:
    """Serves REGISTRY on host:port (0 picks a free port; see .port). Raises OSError if
    the port cannot be bound."""
    httpd, thread = start_http_server(port, addr=host, registry=REGISTRY)
    bound = httpd.server_address[1]
    return MetricsServer(host, bound, httpd, thread)


# ---- operator jobs (wework-admin verify / db-report) ----------------------------------------
# These run as short-lived commands (a CronJob), not in a served process: their figures live in a
# registry of their own, written for node_exporter's textfile collector or pushed to a
# Pushgateway (export_job_metrics), never mixed into a server's /metrics.
JOB_REGISTRY = CollectorRegistry()

VERIFY_CHUNKS = Counter(
    "wework_verify_chunks_checked",
    "Chunks checksummed by wework-admin verify (kind: replica or move).",
    ("kind", "shard", "target"), registry=JOB_REGISTRY)
VERIFY_ROWS = Counter(
    "wework_verify_rows_checked",
    "Rows covered by the checksums of wework-admin verify.",
    ("kind", "shard", "target"), registry=JOB_REGISTRY)
VERIFY_DIFFERING_CHUNKS = Gauge(
    "wework_verify_differing_chunks",
    "Chunks whose checksum differs between primary and replica (or a move's source and target) in the last run.",
    ("kind", "shard", "target", "db", "table"), registry=JOB_REGISTRY)
VERIFY_DIFFERING_ROWS = Gauge(
    "wework_verify_differing_rows",
    "Rows found different, missing or extra in the last run (narrowed from the differing chunks).",
    ("kind", "shard", "target", "db", "table"), registry=JOB_REGISTRY)
VERIFY_ERRORS = Gauge(
    "wework_verify_errors",
    "Comparisons the last run could not make (a replica unreachable or not catching up).",
    ("kind",), registry=JOB_REGISTRY)
VERIFY_LAST_RUN = Gauge(
    "wework_verify_last_run_timestamp_seconds",
    "When the last wework-admin verify run ended (Unix time).",
    ("kind",), registry=JOB_REGISTRY)
VERIFY_DURATION = Gauge(
    "wework_verify_duration_seconds",
    "How long the last wework-admin verify run took.",
    ("kind",), registry=JOB_REGISTRY)

DB_REPORT_STATEMENT_SECONDS = Gauge(
    "wework_db_report_statement_seconds",
    "Total execution time of a top statement (by digest) since the server's statistics began.",
    ("server", "digest"), registry=JOB_REGISTRY)
DB_REPORT_STATEMENT_CALLS = Gauge(
    "wework_db_report_statement_calls",
    "Executions of a top statement (by digest) since the server's statistics began.",
    ("server", "digest"), registry=JOB_REGISTRY)
DB_REPORT_FULL_SCANS = Gauge(
    "wework_db_report_statement_full_scan",
    "1 if the plan of a top statement reads a whole table (EXPLAIN access type ALL), else 0.",
    ("server", "digest"), registry=JOB_REGISTRY)
DB_REPORT_UNUSED_INDEXES = Gauge(
    "wework_db_report_unused_indexes",
    "Secondary indexes of a database that no statement read since the statistics began.",
    ("server", "db"), registry=JOB_REGISTRY)
DB_REPORT_SOURCE = Gauge(
    "wework_db_report_source",
    "1 for each statistics source db-report read on a server (performance_schema, slow_log, userstat).",
    ("server", "source"), registry=JOB_REGISTRY)


def export_job_metrics(job: str, *, textfile: str | None = None, pushgateway: str | None = None) -> None:
    """Writes JOB_REGISTRY for node_exporter's textfile collector (atomically) and/or pushes it
    to a Pushgateway under `job` (replacing that job's previous figures)."""
    from prometheus_client import push_to_gateway, write_to_textfile

    if textfile:
        write_to_textfile(textfile, JOB_REGISTRY)
    if pushgateway:
        push_to_gateway(pushgateway, job=job, registry=JOB_REGISTRY)
