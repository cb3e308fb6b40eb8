"""W3C trace context on outgoing calls, when OpenTelemetry is installed.

If the calling code runs inside an OpenTelemetry span, every call carries its
`traceparent` (and `tracestate`, baggage: whatever the configured propagators
write), so the server's spans and log lines join the caller's trace. The client
needs only grpcio, protobuf and grpcio-status: without `opentelemetry-api` these
interceptors are not installed at all.

Channels made by ClientOptions get them automatically; for a channel of your own:

    channel = grpc.intercept_channel(grpc.insecure_channel(target), *sync_interceptors())
    channel = grpc.aio.insecure_channel(target, interceptors=aio_interceptors())

A `traceparent` passed explicitly in a call's metadata is left alone.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

try:  # optional: the client works without OpenTelemetry
    from opentelemetry import propagate as _propagate
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    _propagate = None

__all__ = ["AioTracePropagation", "TracePropagation", "aio_interceptors", "available", "sync_interceptors",
           "trace_headers"]


def available() -> bool:
    """True when opentelemetry-api is importable (propagation is active)."""
    return _propagate is not None


def trace_headers() -> list[tuple[str, str]]:
    """The propagation headers of the active span ([] outside one, or without OpenTelemetry)."""
    if _propagate is None:
        return []
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    return list(carrier.items())


def _merged(metadata: Any) -> list[tuple[str, Any]] | None:
    """The call's metadata plus trace headers, or None when there is nothing to add."""
    headers = trace_headers()
    if not headers:
        return None
    existing = [(k, v) for k, v in (metadata or ())]
    present = {k.lower() for k, _ in existing}
    if "traceparent" in present:  # the caller chose a trace explicitly
        return None
    return existing + [(k, v) for k, v in headers if k.lower() not in present]


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                           "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


def _with_headers(details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
    metadata = _merged(details.metadata)
    if metadata is None:
        return details
    return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                        getattr(details, "wait_for_ready", None), getattr(details, "compression", None))


class TracePropagation(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                       grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Blocking channels (grpc.intercept_channel): adds the trace headers to every call."""

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(_with_headers(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(_with_headers(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(_with_headers(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(_with_headers(client_call_details), request_iterator)


def _aio_with_headers(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = _merged(details.metadata)
    if metadata is None:
        return details
    return grpc.aio.ClientCallDetails(details.method, details.timeout, grpc.aio.Metadata(*metadata),
                                      details.credentials, details.wait_for_ready)


class AioTracePropagation(grpc.aio.UnaryUnaryClientInterceptor):
    """grpc.aio channels, unary-unary calls: adds the trace headers.

    grpc.aio runs interceptors in a task created when the call is made, which copies
    the caller's context: the caller's active span is the one propagated. A grpc.aio
    channel files each interceptor under one call kind only, hence one class per kind.
    """

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(_aio_with_headers(client_call_details), request)


class AioTracePropagationUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(_aio_with_headers(client_call_details), request)


class AioTracePropagationStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(_aio_with_headers(client_call_details), request_iterator)


class AioTracePropagationStreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(_aio_with_headers(client_call_details), request_iterator)


def sync_interceptors() -> Sequence[grpc.UnaryUnaryClientInterceptor]:
    """[TracePropagation()] when OpenTelemetry is installed, else []."""
    return [TracePropagation()] if available() else []


def aio_interceptors() -> Sequence[grpc.aio.ClientInterceptor]:
    """One propagation interceptor per call kind when OpenTelemetry is installed, else []."""
    if not available():
        return []
    return [AioTracePropagation(), AioTracePropagationUnaryStream(), AioTracePropagationStreamUnary(),
            AioTracePropagationStreamStream()]
