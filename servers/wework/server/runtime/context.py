"""Per-call request context (trace id, principal) in a contextvar.

Each grpc.aio RPC runs in its own task, so a contextvar set by the interceptor is
visible to the handler, the application services and every log line of the call.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from wework.domain.access import Principal


@dataclass(slots=True)
class RequestContext:
    trace_id: str
    method: str = ""
    peer: str = ""
    # Ids of the call's OpenTelemetry span (observability.tracing.RpcSpan); span_id is None
    # when no SDK tracer provider is configured (then the trace id is the caller's or random).
    span_id: str | None = None
    principal: Principal | None = None
    # Credential values of this call; the log formatter scrubs them from every line.
    secrets: tuple[str, ...] = field(default_factory=tuple)


_current: ContextVar[RequestContext | None] = ContextVar("wework_request_context", default=None)


def current_request() -> RequestContext | None:
    return _current.get()


def current_trace_id() -> str | None:
    ctx = _current.get()
    return ctx.trace_id if ctx else None


def current_principal() -> Principal | None:
    """The authenticated caller, or None outside a call or in a public method."""
    ctx = _current.get()
    return ctx.principal if ctx else None


def bind_request(ctx: RequestContext) -> Token[RequestContext | None]:
    return _current.set(ctx)


def reset_request(token: Token[RequestContext | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:
        # An async generator finalised from another context (client went away):
        # the call's task context dies with it, nothing to restore.
        pass


def new_trace_id() -> str:
    return secrets.token_hex(16)


# W3C Trace Context: version-traceid-parentid-flags, lowercase hex.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def trace_id_from_traceparent(value: str | None) -> str | None:
    """The trace id of a valid `traceparent` header, else None."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if not m or m.group(1) == "ff" or m.group(2) == "0" * 32 or m.group(3) == "0" * 16:
        return None
    return m.group(2)
