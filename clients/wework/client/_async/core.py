"""How every RPC is called: credentials, one deadline, retries, pages, batches and streams.

Written once, for asyncio; the blocking client's copy (_sync/core.py) is derived from this
file by scripts/generate_client.py (unasync: async/await removed, Async* names shortened),
so keep to what that translation understands: flavour-specific calls go through _flavor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Generic, Self, TypeVar

import grpc
from google.protobuf.message import Message

from .. import _base, batching
from .._base import DEFAULT, CallSettings, Deadline, Metadata, MethodInfo, Retry, StreamResume
from ..config import ClientOptions
from ..errors import WeworkError, from_rpc_error
from ._flavor import Channel, RequestStream, create_channel, request_stream, resolve, sleep

R = TypeVar("R", bound=Message)  # a List response
I = TypeVar("I")  # an item of its repeated field

RetryArg = Retry | None | _base._Default
TimeoutArg = float | None | _base._Default


class AsyncTransport:
    """A channel plus the call settings: the one place RPCs are sent."""

    def __init__(self, channel: Channel, settings: CallSettings) -> None:
        self.channel = channel
        self.settings = settings
        self._callables: dict[str, Any] = {}

    def callable(self, info: MethodInfo) -> Any:
        """The channel's multicallable of a method, made at its first use."""
        found = self._callables.get(info.path)
        if found is None:
            kind = ("stream_" if info.client_streaming else "unary_") + (
                "stream" if info.server_streaming else "unary")
            found = getattr(self.channel, kind)(
                info.path,
                request_serializer=info.request_class.SerializeToString,
                response_deserializer=info.response_class.FromString,
            )
            self._callables[info.path] = found
        return found

    async def token(self) -> str | None:
        """The token provider's current token (None without one, or inside it)."""
        provider = self.settings.token_provider
        mark = self.settings.providing()
        if provider is None or mark is None:
            return None
        try:
            return await resolve(provider())
        finally:
            self.settings.done_providing(mark)

    async def unary(
        self, info: MethodInfo, request: Message, retry: Retry | None, deadline: Deadline, metadata: Metadata
    ) -> Any:
        """One unary call: attempts until success, a final error or the deadline."""
        attempt, refreshed = 0, False
        while True:
            attempt += 1
            token = await self.token()
            try:
                return await self.callable(info)(
                    request, timeout=deadline.remaining(), metadata=self.settings.metadata(metadata, token))
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                cause = exc
            if error.grpc_code is grpc.StatusCode.UNAUTHENTICATED and token and not refreshed:
                refreshed = True
                if await self.token() not in (None, token):  # the provider has a newer token
                    attempt -= 1
                    continue
            delay = retry.delay(error, attempt, deadline) if retry is not None else None
            if delay is None:
                raise error from cause
            await sleep(delay)

    async def server_stream(
        self, info: MethodInfo, request: Message, timeout: float | None, metadata: Metadata,
        resume: StreamResume | None
    ) -> AsyncIterator[Any]:
        """The responses of a server stream. A resumable one (`resume`) is reopened after
        UNAVAILABLE from the last cursor received, after a backoff, so nothing is lost or
        repeated; the start response of a reopened stream is not yielded again."""
        reconnects, reopened = 0, False
        wait = resume.delay if resume is not None else 0.0
        while True:
            call = self.callable(info)(request, timeout=timeout,
                                       metadata=self.settings.metadata(metadata, await self.token()))
            try:
                async for response in call:
                    if resume is None:
                        yield response
                        continue
                    start = _base.is_stream_start(response)
                    if not start:
                        wait, reconnects = resume.delay, 0
                    if response.cursor:
                        request = _base.with_field(request, "cursor", response.cursor)
                    if not (reopened and start):
                        yield response
                return  # the server ended the stream
            except grpc.RpcError as exc:
                if resume is None or not resume.allows(exc.code(), reconnects):
                    raise from_rpc_error(exc) from exc
            finally:
                call.cancel()
            reconnects += 1
            reopened = True
            await sleep(wait)
            wait = min(wait * 2, resume.max_delay)

    async def client_stream(
        self, info: MethodInfo, requests: RequestStream[Any], timeout: float | None, metadata: Metadata
    ) -> Any:
        """A client stream: sent once (a half-sent stream cannot be replayed)."""
        try:
            return await self.callable(info)(
                request_stream(requests), timeout=timeout,
                metadata=self.settings.metadata(metadata, await self.token()))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    async def bidi_stream(
        self, info: MethodInfo, requests: RequestStream[Any], timeout: float | None, metadata: Metadata
    ) -> AsyncIterator[Any]:
        call = self.callable(info)(request_stream(requests), timeout=timeout,
                                   metadata=self.settings.metadata(metadata, await self.token()))
        try:
            async for response in call:
                yield response
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()


class AsyncPager(Generic[R, I]):
    """The answer of a List method: iterating it yields the items of every page, fetching
    the next page when needed; `.pages` yields the responses; the first response's fields
    (`next_page_token`, the items field, ...) read as attributes of the pager.

    Every page shares the call's deadline and retry settings.
    """

    def __init__(self, transport: AsyncTransport, info: MethodInfo, request: R, response: R,
                 retry: Retry | None, deadline: Deadline, metadata: Metadata) -> None:
        self._transport, self._info, self._request, self._response = transport, info, request, response
        self._retry, self._deadline, self._metadata = retry, deadline, metadata

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._response, name)

    @property
    def pages(self) -> AsyncIterator[R]:
        return self._pages()

    async def _pages(self) -> AsyncIterator[R]:
        request, response = self._request, self._response
        yield response
        while token := _base.next_page_token(request, response):
            request = _base.with_field(request, "page_token", token)
            response = await self._transport.unary(
                self._info, request, self._retry, self._deadline, self._metadata)
            yield response

    async def _items(self) -> AsyncIterator[I]:
        async for page in self.pages:
            for item in getattr(page, self._info.items_field or ""):
                yield item

    def __aiter__(self) -> AsyncIterator[I]:
        return self._items()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._info.name} first page: {len(getattr(self._response, self._info.items_field or ''))} items>"


class AsyncServiceClient:
    """Base of a generated service client: turns arguments into requests and calls."""

    _service: ClassVar[str]  # full name, e.g. "wework.v1.TenantService"

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport
        self._methods = _base.service_methods(self._service)

    def _request(self, name: str, request: Any, fields: dict[str, Any]) -> tuple[MethodInfo, Any]:
        info = self._methods[name]
        return info, _base.with_request_id(info, _base.build_request(info, request, fields))

    def _deadline(self, timeout: TimeoutArg) -> Deadline:
        return Deadline(self._transport.settings.timeout(timeout))

    async def _unary(
        self, name: str, request: Any, fields: dict[str, Any], retry: RetryArg, timeout: TimeoutArg,
        metadata: Metadata
    ) -> Any:
        info, message = self._request(name, request, fields)
        return await self._transport.unary(
            info, message, _base.retry_for(info, retry), self._deadline(timeout), metadata)

    async def _paged(
        self, name: str, request: Any, fields: dict[str, Any], retry: RetryArg, timeout: TimeoutArg,
        metadata: Metadata
    ) -> AsyncPager[Any, Any]:
        info, message = self._request(name, request, fields)
        return await self._first_page(info, message, retry, self._deadline(timeout), metadata)

    async def _first_page(
        self, info: MethodInfo, message: Any, retry: RetryArg, deadline: Deadline, metadata: Metadata
    ) -> AsyncPager[Any, Any]:
        policy = _base.retry_for(info, retry)
        response = await self._transport.unary(info, message, policy, deadline, metadata)
        return AsyncPager(self._transport, info, message, response, policy, deadline, metadata)

    async def _batch(
        self, name: str, request: Any, fields: dict[str, Any], retry: RetryArg, timeout: TimeoutArg,
        metadata: Metadata
    ) -> Any:
        """A batch method (AIP-233) with a list of any length: its `requests` go in calls of at
        most batching.MAX_BATCH_ITEMS, one after another, in order, under one deadline, and the
        answer joins their `results` in request order. Items get a request_id first, so a call
        retried or resent does not send twice. A list that fits one call fails as that call
        does; a longer one raises batching.BatchSendInterrupted (the results answered so far,
        every request to send again, the error). `atomic` cannot span calls: ValueError first."""
        info = self._methods[name]
        items, calls = batching.split(_base.build_request(info, request, fields))
        policy, deadline = _base.retry_for(info, retry), self._deadline(timeout)
        if len(calls) == 1:
            return await self._transport.unary(info, calls[0], policy, deadline, metadata)
        results: list[Any] = []
        for call in calls:
            try:
                response = await self._transport.unary(info, call, policy, deadline, metadata)
            except WeworkError as exc:
                raise batching.BatchSendInterrupted(results, items, exc) from exc
            results.extend(response.results)
        return info.response_class(results=results)

    def _iter_items(self, name: str, request: Any, fields: dict[str, Any], retry: RetryArg,
                    timeout: TimeoutArg, metadata: Metadata) -> AsyncIterator[Any]:
        # Build now so a bad argument fails at the call, not at the first iteration.
        info, message = self._request(name, request, fields)
        return self._items(info, message, retry, self._deadline(timeout), metadata)

    async def _items(
        self, info: MethodInfo, message: Any, retry: RetryArg, deadline: Deadline, metadata: Metadata
    ) -> AsyncIterator[Any]:
        async for item in await self._first_page(info, message, retry, deadline, metadata):
            yield item

    def _server_stream(self, name: str, request: Any, fields: dict[str, Any], timeout: TimeoutArg,
                       metadata: Metadata, resume: StreamResume | None = None) -> AsyncIterator[Any]:
        info, message = self._request(name, request, fields)
        # A stream has no deadline unless one is given: it lasts as long as the caller reads.
        seconds = None if timeout is DEFAULT else timeout
        return self._transport.server_stream(info, message, seconds, metadata, resume)  # type: ignore[arg-type]

    async def _client_stream(
        self, name: str, requests: RequestStream[Any], timeout: TimeoutArg, metadata: Metadata
    ) -> Any:
        return await self._transport.client_stream(
            self._methods[name], requests, self._transport.settings.timeout(timeout), metadata)

    def _bidi_stream(self, name: str, requests: RequestStream[Any], timeout: TimeoutArg,
                     metadata: Metadata) -> AsyncIterator[Any]:
        seconds = None if timeout is DEFAULT else timeout
        return self._transport.bidi_stream(self._methods[name], requests, seconds, metadata)  # type: ignore[arg-type]


class AsyncClientBase:
    """The root client: owns (or borrows) the channel; use as a context manager or close().

    Pass `channel` to use your own (e.g. a test channel); the client then does not close it.
    """

    def __init__(self, options: ClientOptions, *, channel: Channel | None = None) -> None:
        self.options = options
        self._owns_channel = channel is None
        self.channel = create_channel(options) if channel is None else channel
        self._transport = AsyncTransport(self.channel, CallSettings(options))

    def with_options(self, **changes: Any) -> Self:
        """A client on the same channel with another api_key / access_token / token_provider /
        tenant_id / timeout; a new credential replaces the old one, e.g.
        with_options(access_token=login.access_token). It does not own the channel: close the original.
        """
        return type(self)(_base.replace_credential(self.options, changes), channel=self.channel)

    async def close(self) -> None:
        if self._owns_channel:
            await self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
