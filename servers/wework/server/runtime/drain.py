"""The platform's own drain at shutdown: refuse new calls, let the received ones finish.

grpc.aio's `server.stop(grace)` is no drain: the C core drops every call it has received but
not yet handed to the application (a busy event loop leaves many there) and the callers see
CANCELLED, which no client retries. So GrpcServer._stop first refuses new calls itself, with
UNAVAILABLE / SHUTTING_DOWN (retryable: the call did nothing), waits for the calls in progress,
and only then stops grpc, answering the refusals it holds as it does (docs/decisions/0028-fault-behaviour.md).

Calls are tracked by their task: grpc.aio runs each call (interceptors and handler) in one task
of its own, so a set of tasks with a done-callback counts them without wrapping any handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from wework.domain.errors import ShuttingDown

# A refused call is answered at the latest this long after it arrived (or just before its
# deadline), and at the latest when grpc stops (Drain.release_refused).
HOLD_SECONDS = 1.0
_DEADLINE_MARGIN_SECONDS = 0.05


class Drain(grpc.aio.ServerInterceptor):
    """Counts the calls in progress; once `refuse_new_calls()` ran, answers new ones UNAVAILABLE.

    A refused call is held (up to HOLD_SECONDS, never past its deadline) before its answer:
    grpc's stop drops the calls that arrive at that very moment with CANCELLED, and a caller
    whose refusal is still pending sends nothing new. The refusals still held when grpc stops
    are answered right after it began to stop (release_refused).

    Methods of `exempt_services` (health, reflection) are neither refused nor waited for: a
    readiness probe must read NOT_SERVING until the end, and a health Watch lasts forever.
    """

    def __init__(self, exempt_services: Iterable[str] = ()) -> None:
        self._exempt = tuple(f"/{name}/" for name in exempt_services)
        self._calls: set[asyncio.Task[Any]] = set()  # admitted calls in progress
        self._refusing = False
        self._released = asyncio.Event()

    @property
    def in_progress(self) -> int:
        return len(self._calls)

    def refuse_new_calls(self) -> None:
        self._refusing = True

    def release_refused(self) -> None:
        self._released.set()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(self._exempt):
            return handler
        if self._refusing:
            return self._refusal(handler)
        task = asyncio.current_task()
        if task is not None:
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
        return handler

    async def wait_for_calls(self, timeout: float) -> bool:
        """Waits until no admitted call is in progress, at most `timeout` s. True if none is left."""
        deadline = time.monotonic() + timeout
        while self._calls:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._calls), timeout=remaining)
        return True

    async def _hold(self, context: Any) -> None:
        hold = HOLD_SECONDS
        remaining = context.time_remaining()
        if remaining is not None:
            hold = min(hold, remaining - _DEADLINE_MARGIN_SECONDS)
        if hold > 0 and not self._released.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), hold)
        raise ShuttingDown("the server is shutting down; retry (another replica will answer)")

    def _refusal(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """A handler of the same kind as `handler` that answers UNAVAILABLE / SHUTTING_DOWN (mapped
        by the CallInterceptor around it, so refused calls are logged and counted like others)."""
        hold = self._hold

        async def refuse(_request: Any, context: Any) -> Any:
            await hold(context)

        async def refuse_stream(_request: Any, context: Any) -> AsyncIterator[Any]:
            await hold(context)
            yield  # pragma: no cover - never reached; makes this an async generator

        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(refuse, des, ser)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(refuse, des, ser)
        if handler.unary_stream:
            kind = refuse if inspect.iscoroutinefunction(handler.unary_stream) else refuse_stream
            return grpc.unary_stream_rpc_method_handler(kind, des, ser)
        kind = refuse if inspect.iscoroutinefunction(handler.stream_stream) else refuse_stream
        return grpc.stream_stream_rpc_method_handler(kind, des, ser)
