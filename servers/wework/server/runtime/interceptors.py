"""grpc.aio server interceptors: request context + access log, error mapping,
authentication, permission check.

Each interceptor wraps the behaviour of the RpcMethodHandler in an async context
manager ("scope") so that one implementation serves all four RPC kinds. The list
from build_interceptors() is outermost first:

    RequestContext -> ErrorMapping -> Authentication -> Permission -> handler

so the access log (outermost) sees the final status, and errors raised by
authentication are mapped like those of handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import grpc
from grpc.aio import AbortError
from wework.domain.access import Principal
from wework.domain.errors import PermissionDenied, ShuttingDown, Unauthenticated
from wework.server.observability.metrics import observe_rpc
from wework.server.observability.tracing import RpcSpan
from wework.server.runtime.context import (
    RequestContext,
    bind_request,
    current_request,
    new_trace_id,
    reset_request,
)
from wework.server.runtime.errors import status_from_exception, to_grpc_status
from wework.server.runtime.registry import Access, ServiceRegistry

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("wework.access")

# Metadata whose values are credentials: handed to the authenticator, scrubbed from logs.
CREDENTIAL_METADATA: frozenset[str] = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})
_MIN_SCRUB_LEN = 4  # shorter values would mangle unrelated log text


class Authenticator(Protocol):
    async def authenticate(self, metadata: dict[str, str], method: str) -> Principal:
        """The caller of `method` (full path); raises Unauthenticated."""
        ...


Scope = Callable[[Any], AbstractAsyncContextManager[None]]  # servicer context -> scope


def metadata_dict(context: Any) -> dict[str, str]:
    """Text metadata of the call (binary "-bin" entries skipped; first value wins)."""
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            out.setdefault(key.lower(), value)
    return out


async def _call_unary(behaviour: Callable, request: Any, context: Any) -> Any:
    result = behaviour(request, context)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _iterate(responses: Any) -> AsyncIterator[Any]:
    if hasattr(responses, "__aiter__"):
        async for item in responses:
            yield item
    elif responses is not None:
        for item in responses:
            yield item


def _wrap_unary_response(behaviour: Callable, scope: Scope) -> Callable:
    async def wrapped(request_or_iterator: Any, context: Any) -> Any:
        async with scope(context):
            return await _call_unary(behaviour, request_or_iterator, context)

    return wrapped


def _wrap_stream_response(behaviour: Callable, scope: Scope) -> Callable:
    # grpc.aio tells the two styles apart by the function's kind, so keep it:
    # a coroutine writes with context.write(), a generator yields.
    if inspect.iscoroutinefunction(behaviour):
        async def wrapped_writer(request_or_iterator: Any, context: Any) -> None:
            async with scope(context):
                await behaviour(request_or_iterator, context)

        return wrapped_writer

    async def wrapped_generator(request_or_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async with scope(context):
            async for response in _iterate(behaviour(request_or_iterator, context)):
                yield response

    return wrapped_generator


def wrap_handler(handler: grpc.RpcMethodHandler, scope: Scope) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour run inside `scope(context)`."""
    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_wrap_unary_response(handler.unary_unary, scope), des, ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_wrap_stream_response(handler.unary_stream, scope), des, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_wrap_unary_response(handler.stream_unary, scope), des, ser)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(_wrap_stream_response(handler.stream_stream, scope), des, ser)
    return handler


class _ScopeInterceptor(grpc.aio.ServerInterceptor):
    def scope(self, method: str, context: Any) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED
            return None
        method = handler_call_details.method
        return wrap_handler(handler, lambda context: self.scope(method, context))


def _final_code(context: Any, exc: BaseException | None) -> grpc.StatusCode:
    if exc is not None and not isinstance(exc, Exception):
        # CancelledError / GeneratorExit: the client went away or the deadline passed.
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if code is not None:
        return code
    return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN


class RequestContextInterceptor(_ScopeInterceptor):
    """The call's OpenTelemetry span (parent: the caller's `traceparent`), the request
    contextvar carrying its ids, and per call exactly one access-log line and one
    wework_rpc_* observation.

    Our own span rather than opentelemetry-instrumentation-grpc's aio interceptor: this
    scope already knows the final code (after error mapping, cancellations, deadlines)
    and wraps all four RPC kinds, so span, metrics and access log agree on one status.
    """

    @asynccontextmanager
    async def scope(self, method: str, context: Any) -> AsyncIterator[None]:
        started = time.perf_counter()
        metadata = metadata_dict(context)
        span = RpcSpan.start(method, metadata)
        secrets: list[str] = []
        for key in CREDENTIAL_METADATA & metadata.keys():
            value = metadata[key]
            secrets.append(value)
            scheme, _, credential = value.partition(" ")
            if credential and scheme.lower() in ("bearer", "basic"):
                secrets.append(credential.strip())
        req = RequestContext(trace_id=span.trace_id, span_id=span.span_id, method=method,
                             peer=context.peer() or "",
                             secrets=tuple(s for s in secrets if len(s) >= _MIN_SCRUB_LEN))
        token = bind_request(req)
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            seconds = time.perf_counter() - started
            code = _final_code(context, error).name
            principal = req.principal
            try:
                observe_rpc(method, code, seconds)
                # Logged while the span is still current, so the line carries its ids.
                access_logger.info("rpc", extra={
                    "method": method,
                    "code": code,
                    "duration_ms": round(seconds * 1000, 2),
                    "tenant_id": principal.tenant_id if principal else None,
                    "principal_kind": principal.kind.value if principal else None,
                    "peer": req.peer,
                    "trace_id": span.trace_id,
                    "span_id": span.span_id,
                })
            finally:
                span.finish(code, {"wework.tenant_id": principal.tenant_id if principal else None})
                reset_request(token)


class ErrorMappingInterceptor(_ScopeInterceptor):
    """DomainError / unexpected exceptions -> rich status; the handler's own aborts pass."""

    @asynccontextmanager
    async def scope(self, method: str, context: Any) -> AsyncIterator[None]:
        try:
            yield
        except AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapping every error to a status is the point
            trace_id = (current_request() or RequestContext(trace_id=new_trace_id())).trace_id
            status = to_grpc_status(status_from_exception(exc, trace_id))
            # aio's abort() sends the status and raises AbortError, which replaces `exc`.
            await context.abort(status.code, status.details, status.trailing_metadata)


class AuthenticationInterceptor(_ScopeInterceptor):
    """Resolves the principal of non-public methods; public ones run without one."""

    def __init__(self, registry: ServiceRegistry, authenticator: Authenticator) -> None:
        self._registry = registry
        self._authenticator = authenticator

    @asynccontextmanager
    async def scope(self, method: str, context: Any) -> AsyncIterator[None]:
        if self._registry.rule(method).access is not Access.PUBLIC:
            principal = await self._authenticator.authenticate(metadata_dict(context), method)
            if principal is None:  # a buggy authenticator must not let the call through
                raise Unauthenticated("no credential")
            req = current_request()
            if req is not None:
                req.principal = principal
            else:
                raise RuntimeError("AuthenticationInterceptor needs RequestContextInterceptor outside it")
        yield


class _UndeclaredMethod(PermissionDenied):
    def __init__(self, method: str) -> None:
        super().__init__("(undeclared)")
        self.message = "this method is not open to any caller"
        self.args = (self.message,)
        self.metadata = {"method": method}


class PermissionInterceptor(_ScopeInterceptor):
    """principal.require(permission) before the handler; undeclared methods are refused."""

    def __init__(self, registry: ServiceRegistry) -> None:
        self._registry = registry

    @asynccontextmanager
    async def scope(self, method: str, context: Any) -> AsyncIterator[None]:
        rule = self._registry.rule(method)
        if rule.access is Access.UNDECLARED:
            logger.error("method %s has no entry in its permission table; refused "
                         "(add it to ServiceRegistration.method_permissions)", method)
            raise _UndeclaredMethod(method)
        if rule.access is Access.PROTECTED:
            req = current_request()
            if req is None or req.principal is None:
                raise Unauthenticated("no credential")
            req.principal.require(rule.permission)
        yield


class ShutdownSignal:
    """Set once the server begins to stop (GrpcServer._stop)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


class StreamShutdownInterceptor(grpc.aio.ServerInterceptor):
    """Ends server-streaming calls (WatchAccounts, WatchBatchTask...) as soon as the server
    begins to stop, with UNAVAILABLE / SHUTTING_DOWN, so that the caller reconnects to another
    replica at once. Without it a watch would run until the grace period ends and be cut then,
    delaying every rollout by the full grace period. Unary calls are left to drain."""

    def __init__(self, signal: ShutdownSignal) -> None:
        self._signal = signal

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_stream and not inspect.iscoroutinefunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(self._ending(handler.unary_stream), des, ser)
        if handler.stream_stream and not inspect.iscoroutinefunction(handler.stream_stream):
            return grpc.stream_stream_rpc_method_handler(self._ending(handler.stream_stream), des, ser)
        return handler

    def _ending(self, behaviour: Callable) -> Callable:
        signal = self._signal

        async def streamed(request_or_iterator: Any, context: Any) -> AsyncIterator[Any]:
            if signal.is_set():
                raise ShuttingDown("the server is shutting down; reconnect")
            responses = _iterate(behaviour(request_or_iterator, context))
            stopping = asyncio.ensure_future(signal.wait())
            try:
                while True:
                    step = asyncio.ensure_future(anext(responses))
                    await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not step.done():
                        step.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                            await step
                        raise ShuttingDown("the server is shutting down; reconnect and resume")
                    try:
                        item = step.result()
                    except StopAsyncIteration:
                        return
                    yield item
            finally:
                stopping.cancel()
                await responses.aclose()

        return streamed


def build_interceptors(registry: ServiceRegistry, authenticator: Authenticator,
                       shutdown: ShutdownSignal | None = None) -> list[grpc.aio.ServerInterceptor]:
    """Outermost first (grpc.aio runs the first interceptor outermost)."""
    interceptors: list[grpc.aio.ServerInterceptor] = [
        RequestContextInterceptor(),
        ErrorMappingInterceptor(),
        AuthenticationInterceptor(registry, authenticator),
        PermissionInterceptor(registry),
    ]
    if shutdown is not None:
        # Innermost, so that its ShuttingDown error is mapped and logged like any other.
        interceptors.append(StreamShutdownInterceptor(shutdown))
    return interceptors
