"""OpenTelemetry tracing of the server: the TracerProvider, the span of each gRPC call,
and the SQLAlchemy and Redis instrumentation.

Every call gets a SERVER span whose parent is the caller's W3C `traceparent` (if any),
so the trace id in the logs is the caller's. Spans are exported over OTLP/HTTP only
when `observability.otlp_endpoint` is set; without it the call span is a non-recording
span with ids of its own (trace and span ids reach the logs and the error details) and
costs no more than those ids.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as _metadata
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    format_span_id,
    format_trace_id,
)

logger = logging.getLogger(__name__)

TRACER_NAME = "wework.server"

# Probes and tooling: counted and logged like any call, but a trace per kubelet probe
# every few seconds would drown the real ones.
UNTRACED_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})

# OpenTelemetry's gRPC conventions: these codes mean the server failed (the others are
# the caller's problem, e.g. NOT_FOUND, and leave the span status unset).
_SERVER_ERROR_CODES = frozenset({"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL",
                                 "UNAVAILABLE", "DATA_LOSS"})


def build_version() -> str:
    """The installed wework-platform version ("0" when running from an uninstalled tree)."""
    try:
        return _metadata.version("wework-platform")
    except _metadata.PackageNotFoundError:
        return "0"


class NoOrphanClientSpans(Sampler):
    """ParentBased(TraceIdRatioBased(ratio)), except that a CLIENT span without a parent
    (a database or Redis command outside any call: readiness pings, background loops) is
    dropped. Work that wants its queries traced starts a span of its own first."""

    def __init__(self, ratio: float) -> None:
        self._ratio = ratio
        self._delegate = ParentBased(TraceIdRatioBased(ratio))

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoOrphanClientSpans{{ratio={self._ratio}}}"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector base URL (kept if it already names it)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


@dataclass
class Tracing:
    provider: TracerProvider
    # True when spans leave the process (OTLP or a test exporter); DB and Redis spans
    # are only worth their cost then, and call spans are recorded only then.
    exporting: bool
    tracer: trace.Tracer
    sample_ratio: float = 1.0

    def shutdown(self) -> None:
        """Flushes pending spans (bounded by the exporter's timeout) and stops export."""
        global _current
        if _current is self:
            _current = None
        self.provider.shutdown()


_current: Tracing | None = None


def configure_tracing(service_name: str = "wework", sample_ratio: float = 1.0, otlp_endpoint: str | None = None,
                      *, exporters: Sequence[SpanExporter] = (), install_global: bool = True) -> Tracing:
    """A TracerProvider for this process; the runtime's call spans use it from now on.

    `exporters` (tests) get every finished span synchronously. With `install_global` the
    provider also becomes OpenTelemetry's global one (for third-party instrumentation),
    unless another was installed before: the global can be set only once per process.
    """
    global _current
    resource = Resource.create({"service.name": service_name, "service.version": build_version()})
    provider = TracerProvider(resource=resource, sampler=NoOrphanClientSpans(sample_ratio))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(otlp_endpoint))))
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if install_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    _current = Tracing(provider, exporting=bool(otlp_endpoint or exporters),
                       tracer=provider.get_tracer(TRACER_NAME, build_version()), sample_ratio=sample_ratio)
    return _current


_global_tracer = trace.get_tracer(TRACER_NAME)  # a proxy: follows the global provider once set


def tracer() -> trace.Tracer:
    """The server's tracer: from configure_tracing's provider, else the global one
    (a no-op until something installs an SDK provider)."""
    tracing = _current
    return tracing.tracer if tracing is not None else _global_tracer


# ---- the span of one call -------------------------------------------------------------------


class RpcSpan:
    """The SERVER span of one gRPC call, current (attached) from start() to finish().

    trace_id / span_id are lowercase hex for logs and error details. Without an SDK
    provider (a bare GrpcServer in tests) there is no span of our own: the trace id is the
    caller's, or a random one, and span_id is None, never the caller's span id.
    """

    __slots__ = ("_ctx", "_span", "_token", "span_id", "trace_id")

    def __init__(self, span: trace.Span, trace_id: str, span_id: str | None, ctx: Any, token: Any) -> None:
        self._span, self.trace_id, self.span_id, self._ctx, self._token = span, trace_id, span_id, ctx, token

    @classmethod
    def start(cls, full_method: str, metadata: Mapping[str, str]) -> RpcSpan:
        method = _method_of(full_method)
        # Metadata without any propagation header (most calls) has no parent to extract.
        parent = propagate.extract(metadata) if not _propagation_fields().isdisjoint(metadata) else _EMPTY
        tracing = _current
        if not method.traced:
            span: trace.Span = trace.NonRecordingSpan(trace.get_current_span(parent).get_span_context())
        elif tracing is not None and not tracing.exporting:
            span = _unexported_span(parent, tracing.sample_ratio)
        else:
            span = tracer().start_span(method.span_name, context=parent, kind=SpanKind.SERVER,
                                       attributes=method.attributes)
        sc = span.get_span_context()
        if sc.is_valid:
            trace_id = format_trace_id(sc.trace_id)
            # A remote span context here is the caller's, passed through by a no-op tracer.
            span_id = None if sc.is_remote else format_span_id(sc.span_id)
        else:
            trace_id, span_id = secrets.token_hex(16), None
        ctx = trace.set_span_in_context(span, parent)
        return cls(span, trace_id, span_id, ctx, otel_context.attach(ctx))

    def finish(self, code: str, attributes: Mapping[str, Any] | None = None) -> None:
        """Ends the span with the call's final status code name and detaches it."""
        span = self._span
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", grpc.StatusCode[code].value[0])
            for key, value in (attributes or {}).items():
                if value is not None:
                    span.set_attribute(key, value)
            if code in _SERVER_ERROR_CODES:
                # The code name only: exception messages may quote credentials or data.
                span.set_status(Status(StatusCode.ERROR, code))
            span.end()
        # An async generator finalised from another context (the client went away) cannot
        # restore this one; that context is discarded anyway.
        if otel_context.get_current() is self._ctx:
            otel_context.detach(self._token)


@dataclass(frozen=True, slots=True)
class _Method:
    traced: bool
    span_name: str
    attributes: Mapping[str, str]


_METHODS: dict[str, _Method] = {}
_EMPTY = otel_context.Context()


def _method_of(full_method: str) -> _Method:
    """What a call span of `full_method` needs, computed once per method."""
    found = _METHODS.get(full_method)
    if found is None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        found = _Method(service not in UNTRACED_SERVICES, f"{service}/{method}",
                        {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method})
        if len(_METHODS) < 10_000:  # full paths of served methods; a bound against misuse
            _METHODS[full_method] = found
    return found


_fields_of: tuple[Any, frozenset[str]] | None = None  # (textmap, its fields)


def _propagation_fields() -> frozenset[str]:
    """Header names the configured propagators read (OTEL_PROPAGATORS; default traceparent,
    tracestate, baggage)."""
    global _fields_of
    textmap = propagate.get_global_textmap()
    if _fields_of is None or _fields_of[0] is not textmap:
        _fields_of = (textmap, frozenset(textmap.fields))
    return _fields_of[1]


def _unexported_span(parent: Any, sample_ratio: float) -> trace.Span:
    """The call span when nothing exports spans: ids and the sampling decision the SDK would
    make (ParentBased(TraceIdRatioBased)), without recording anything. Recording a span nobody
    can see (attributes, status, end time, the span processors) cost ~0.1 ms per call."""
    parent_sc = trace.get_current_span(parent).get_span_context()
    span_id = _random_id(64)
    if parent_sc.is_valid:
        trace_id, flags = parent_sc.trace_id, parent_sc.trace_flags
    else:
        trace_id = _random_id(128)
        sampled = (trace_id & TraceIdRatioBased.TRACE_ID_LIMIT) < TraceIdRatioBased.get_bound_for_rate(sample_ratio)
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return trace.NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags,
                                              trace_state=parent_sc.trace_state))


def _random_id(bits: int) -> int:
    # The SDK's RandomIdGenerator: random.getrandbits, never the invalid 0.
    while True:
        value = random.getrandbits(bits)
        if value:
            return value


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the active span of this process, if there is one."""
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid or sc.is_remote:
        return None
    return format_trace_id(sc.trace_id), format_span_id(sc.span_id)


# ---- instrumentation of the engines and the Redis client --------------------------------------


def instrument_engine(engine: Any, tracing: Tracing) -> None:
    """SQL spans (opentelemetry-instrumentation-sqlalchemy) on an AsyncEngine's sync engine.

    EngineTracer rather than SQLAlchemyInstrumentor().instrument(engine=...): the
    instrumentor is a process-wide singleton that instruments once, and patches
    create_engine globally; we need one tracer per engine, created as engines are.
    """
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__
    from opentelemetry.metrics import NoOpMeterProvider

    sync_engine = getattr(engine, "sync_engine", engine)
    tracer_ = tracing.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__)
    # Its pool-usage instrument goes nowhere: wework_db_pool_connections covers it.
    usage = NoOpMeterProvider().get_meter("wework").create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer_, sync_engine, usage)


def instrument_redis(client: Any, tracing: Tracing) -> None:
    """Command spans (opentelemetry-instrumentation-redis) on one client; arguments are
    replaced by "?" by the instrumentation, so no value reaches a span."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor.instrument_client(client, tracer_provider=tracing.provider)
