"""grpc.aio server interceptors: request context + access log, error mapping,
authentication, permission check (one CallInterceptor), and the end of streams at shutdown.

CallInterceptor runs its four layers around the handler, outermost first:

    RequestContext -> ErrorMapping -> Authentication -> Permission -> handler

so the access log (outermost) sees the final status, and errors raised by
authentication are mapped like those of handlers. It serves all four RPC kinds.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Protocol, Self

import grpc
from grpc.aio import AbortError
from wework.domain.access import Principal
from wework.domain.errors import PermissionDenied, ShuttingDown, Unauthenticated
from wework.server.observability.metrics import observe_rpc
from wework.server.observability.tracing import RpcSpan
from wework.server.runtime.context import RequestContext, bind_request, reset_request
from wework.server.runtime.errors import status_from_exception, to_grpc_status
from wework.server.runtime.registry import Access, MethodRule, ServiceRegistry
from wework.server.runtime.validation import RequestValidator, request_class, safe_deserializer

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("wework.access")

# Metadata whose values are credentials: handed to the authenticator, scrubbed from logs.
CREDENTIAL_METADATA: frozenset[str] = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})
_MIN_SCRUB_LEN = 4  # shorter values would mangle unrelated log text


class Authenticator(Protocol):
    async def authenticate(self, metadata: dict[str, str], method: str) -> Principal:
        """The caller of `method` (full path); raises Unauthenticated."""
        ...


def metadata_dict(context: Any) -> dict[str, str]:
    """Text metadata of the call (binary "-bin" entries skipped; first value wins)."""
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            out.setdefault(key.lower(), value)
    return out


async def _iterate(responses: Any) -> AsyncIterator[Any]:
    if hasattr(responses, "__aiter__"):
        try:
            async for item in responses:
                yield item
        finally:
            # `async for` does not close what it iterates: closing this closes the handler too.
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()
    elif responses is not None:
        for item in responses:
            yield item


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


_CLOSING: set[asyncio.Task[None]] = set()


def _close_when_call_ends(context: Any, responses: Any) -> None:
    """Closes `responses` (and so every generator under it, down to the handler's) once the
    call has ended, if it was left suspended at a yield.

    grpc.aio cancels a streaming call's task wherever it is: inside the handler (its finally
    blocks run) or while sending a response, outside our generators. In the second case nothing
    closes them; they would wait for the cyclic garbage collector, holding the handler's
    listeners and pollers until then.
    """
    def ended(_context: Any) -> None:
        if responses.ag_frame is not None and not responses.ag_running:
            closing = asyncio.get_running_loop().create_task(responses.aclose())
            _CLOSING.add(closing)  # the loop keeps only a weak reference to a task
            closing.add_done_callback(_CLOSING.discard)

    context.add_done_callback(ended)


class _UndeclaredMethod(PermissionDenied):
    def __init__(self, method: str) -> None:
        super().__init__("(undeclared)")
        self.message = "this method is not open to any caller"
        self.args = (self.message,)
        self.metadata = {"method": method}


class _Call:
    """State of one call between CallInterceptor._begin and _end."""

    __slots__ = ("request", "span", "started", "token")

    def __init__(self, started: float, span: RpcSpan, request: RequestContext, token: Any) -> None:
        self.started, self.span, self.request, self.token = started, span, request, token


class _Guard:
    """The frame every wrapped behaviour runs in, unary or streaming (async with): on the way out
    an Exception other than an abort is mapped to its status (map_error aborts), and the call
    is ended with the error it ended on, the abort's when there was one."""

    __slots__ = ("_context", "_end", "_map_error", "_method", "call")

    def __init__(self, method: str, context: Any, call: _Call, map_error: Callable, end: Callable) -> None:
        self._method, self._context, self.call, self._map_error, self._end = method, context, call, map_error, end

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        error = exc
        try:
            if isinstance(exc, Exception) and not isinstance(exc, AbortError):  # every error becomes a status
                await self._map_error(self._context, exc, self.call.request)
        except BaseException as raised:
            error = raised
            raise
        finally:
            self._end(self._method, self._context, error, self.call)


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Everything the runtime does around a handler, in this order (outermost first):

    1. request context: the call's OpenTelemetry span (parent: the caller's `traceparent`), the
       request contextvar carrying its ids, and per call exactly one access-log line and one
       wework_rpc_* observation, all with the final code (after error mapping, cancellations,
       deadlines);
    2. error mapping: DomainError / unexpected exceptions -> rich status; the handler's own
       aborts pass;
    3. authentication: the principal of non-public methods; public ones run without one;
    4. permission: principal.require(permission); undeclared methods are refused.

    One interceptor rather than four stacked ones: grpc.aio runs every interceptor's
    intercept_service for every call, and each layer wrapped the handler again (a new
    RpcMethodHandler and an async context manager per layer and call). Here the wrapped
    handler and the method's access rule are computed once per method and reused.
    Our own span rather than opentelemetry-instrumentation-grpc's aio interceptor: this
    scope already knows the final code and wraps all four RPC kinds, so span, metrics and
    access log agree on one status.
    """

    def __init__(self, registry: ServiceRegistry, authenticator: Authenticator) -> None:
        self._registry = registry
        self._authenticator = authenticator
        self._validator = RequestValidator()
        # method -> (handler from the continuation, the same handler wrapped). Keyed by the
        # methods the server knows (unknown ones have no handler), so it stays small.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    # -- the four layers -------------------------------------------------------------------------

    def _begin(self, method: str, context: Any, metadata: dict[str, str]) -> _Call:
        started = time.perf_counter()
        span = RpcSpan.start(method, metadata)
        secrets: list[str] = []
        if not CREDENTIAL_METADATA.isdisjoint(metadata):
            for key in CREDENTIAL_METADATA & metadata.keys():
                value = metadata[key]
                secrets.append(value)
                scheme, _, credential = value.partition(" ")
                if credential and scheme.lower() in ("bearer", "basic"):
                    secrets.append(credential.strip())
        req = RequestContext(trace_id=span.trace_id, span_id=span.span_id, method=method,
                             peer=context.peer() or "",
                             secrets=tuple(s for s in secrets if len(s) >= _MIN_SCRUB_LEN))
        return _Call(started, span, req, bind_request(req))

    async def _admit(self, method: str, rule: MethodRule, metadata: dict[str, str], req: RequestContext) -> None:
        """Authentication, then the permission check (both inside the error mapping)."""
        if rule.access is not Access.PUBLIC:
            principal = await self._authenticator.authenticate(metadata, method)
            if principal is None:  # a buggy authenticator must not let the call through
                raise Unauthenticated("no credential")
            req.principal = principal
        if rule.access is Access.UNDECLARED:
            logger.error("method %s has no entry in its permission table; refused "
                         "(add it to ServiceRegistration.method_permissions)", method)
            raise _UndeclaredMethod(method)
        if rule.access is Access.PROTECTED:
            principal = req.principal
            if principal is None:
                raise Unauthenticated("no credential")
            principal.require(rule.permission)

    @staticmethod
    async def _map_error(context: Any, exc: Exception, req: RequestContext) -> None:
        status = to_grpc_status(status_from_exception(exc, req.trace_id))
        # aio's abort() sends the status and raises AbortError, which replaces `exc`.
        await context.abort(status.code, status.details, status.trailing_metadata)

    @staticmethod
    def _end(method: str, context: Any, error: BaseException | None, call: _Call) -> None:
        seconds = time.perf_counter() - call.started
        code = _final_code(context, error).name
        req, span = call.request, call.span
        principal = req.principal
        try:
            observe_rpc(method, code, seconds)
            if access_logger.isEnabledFor(logging.INFO):
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
            reset_request(call.token)

    # -- wrapping the four RPC kinds ---------------------------------------------------------------

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """The same handler with its behaviour run inside the four layers, its requests decoded
        by a deserializer that never raises and checked (validation.py) before the handler."""
        rule = self._registry.rule(method)
        des, ser = handler.request_deserializer, handler.response_serializer
        message_class = request_class(method)
        if message_class is not None:
            des = safe_deserializer(message_class)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, method, rule, False),
                                                       des, ser)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._stream(handler.unary_stream, method, rule, False),
                                                        des, ser)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, method, rule, True),
                                                        des, ser)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._stream(handler.stream_stream, method, rule, True),
                                                         des, ser)
        return handler

    def _checked(self, request_or_iterator: Any, streaming_request: bool) -> Any:
        """The request checked, or the request stream checked message by message."""
        if streaming_request:
            return self._validator.checked_stream(request_or_iterator)
        self._validator.check(request_or_iterator)
        return request_or_iterator

    def _unary(self, behaviour: Callable, method: str, rule: MethodRule, streaming_request: bool) -> Callable:
        begin, admit, map_error, end, checked = self._begin, self._admit, self._map_error, self._end, self._checked
        needs_admission = rule.access is not Access.PUBLIC

        async def wrapped(request_or_iterator: Any, context: Any) -> Any:
            metadata = metadata_dict(context)
            async with _Guard(method, context, begin(method, context, metadata), map_error, end) as guard:
                if needs_admission:
                    await admit(method, rule, metadata, guard.call.request)
                result = behaviour(checked(request_or_iterator, streaming_request), context)
                if inspect.isawaitable(result):
                    result = await result
                return result

        return wrapped

    def _stream(self, behaviour: Callable, method: str, rule: MethodRule, streaming_request: bool) -> Callable:
        begin, admit, map_error, end, checked = self._begin, self._admit, self._map_error, self._end, self._checked
        needs_admission = rule.access is not Access.PUBLIC

        # grpc.aio tells the two styles apart by the function's kind, so keep it: a coroutine
        # writes with context.write() and is wrapped like a unary behaviour; a generator yields.
        if inspect.iscoroutinefunction(behaviour):
            return self._unary(behaviour, method, rule, streaming_request)

        async def wrapped_generator(request_or_iterator: Any, context: Any) -> AsyncIterator[Any]:
            metadata = metadata_dict(context)
            async with _Guard(method, context, begin(method, context, metadata), map_error, end) as guard:
                if needs_admission:
                    await admit(method, rule, metadata, guard.call.request)
                responses = _iterate(behaviour(checked(request_or_iterator, streaming_request), context))
                _close_when_call_ends(context, responses)
                async for response in responses:
                    yield response

        return wrapped_generator


async def _stop_producing(step: asyncio.Future[Any] | None) -> None:
    """Cancels the task producing a stream's next item and waits until it has stopped.

    The call can end while that task runs the handler's generator (client cancel, deadline,
    shutdown). Left alone it would poll on for nobody, and the generator could not be closed
    (`aclose(): asynchronous generator is already running`).
    """
    if step is None:
        return
    while not step.done():
        step.cancel()
        # wait() rather than `await step`: the step's own CancelledError is expected, while a
        # second cancellation of this call must still propagate. Cancelled again each second:
        # on Python 3.11 a cancellation that meets a finishing asyncio.wait_for inside the
        # generator can be swallowed, and the generator would then poll on for nobody.
        await asyncio.wait({step}, timeout=1.0)
    if not step.cancelled():
        # Retrieved, or asyncio logs it: it ended (StopAsyncIteration, an error) as the call did.
        step.exception()


class ShutdownSignal:
    """Set once the server begins to stop (GrpcServer._stop)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._event.set()
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def future(self) -> asyncio.Future[None]:
        """One future for every stream, done once the signal is set: waiting on it leaves no
        task of its own behind (a per-call `wait()` task lived as long as the signal)."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
            if self._event.is_set():
                self._future.set_result(None)
        return self._future

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
            stopping = signal.future()
            step: asyncio.Future[Any] | None = None
            try:
                while True:
                    step = asyncio.ensure_future(anext(responses))
                    await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not step.done():
                        raise ShuttingDown("the server is shutting down; reconnect and resume")
                    try:
                        item = step.result()
                    except StopAsyncIteration:
                        return
                    yield item
            finally:
                await _stop_producing(step)
                await responses.aclose()

        return streamed


def build_interceptors(registry: ServiceRegistry, authenticator: Authenticator,
                       shutdown: ShutdownSignal | None = None) -> list[grpc.aio.ServerInterceptor]:
    """Outermost first (grpc.aio runs the first interceptor outermost)."""
    interceptors: list[grpc.aio.ServerInterceptor] = [CallInterceptor(registry, authenticator)]
    if shutdown is not None:
        # Innermost, so that its ShuttingDown error is mapped and logged like any other.
        interceptors.append(StreamShutdownInterceptor(shutdown))
    return interceptors
