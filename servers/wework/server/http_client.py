"""The platform's one HTTP client stack: aiohttp (decision 0036), as its HTTP server is.

Every component that calls out over HTTP (the HTTP provider, puppet-service discovery, the
simulator's callback sink, the webhook worker, incoming media) holds one `SharedSession` and
closes it on shutdown. What they all get from here:

- timeouts per phase, `timeout_seconds` each: getting a pooled connection plus connecting, and
  every wait for bytes of the answer (a slow trickle is not cut, a silent peer is);
- no redirects (every request passes `allow_redirects=False`: a 3xx is the answer);
- TLS verified against the system's CA store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured);
- `read_body()`: an answer's body up to a limit;
- `describe()`: a failure's text without the URL (it can carry a token) or the address connected
  to (it would map internal networks);
- `GuardedHttp`: a session that connects only to addresses the webhooks' SSRF guard allowed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from wework.domain.webhooks import literal_ip


def new_session(*, timeout_seconds: float, max_connections: int = 100, headers: dict[str, str] | None = None,
                trust_env: bool = False, resolver: AbstractResolver | None = None) -> aiohttp.ClientSession:
    """A session as described above; `trust_env` takes proxies from HTTP(S)_PROXY / NO_PROXY.

    Must be called with the event loop running (aiohttp binds its connector to it)."""
    connector = aiohttp.TCPConnector(limit=max_connections, resolver=resolver,
                                     # A resolver of our own is asked for every new connection.
                                     use_dns_cache=resolver is None)
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_seconds, sock_read=timeout_seconds)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers, trust_env=trust_env)


class SharedSession:
    """A component's one session, opened on first use (components are built before the loop runs,
    or outside it) and closed by `close()`."""

    def __init__(self, *, resolver_factory: Callable[[], AbstractResolver] | None = None, **options: Any) -> None:
        self._options = options  # new_session's keywords
        self._resolver_factory = resolver_factory  # a resolver per session: closed with it
        self._session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            resolver = self._resolver_factory() if self._resolver_factory is not None else None
            self._session = new_session(resolver=resolver, **self._options)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def describe(exc: BaseException) -> str:
    """A failed request in a few words, for logs and recorded attempts: never the URL (aiohttp puts
    it in timeout and response errors) nor the address connected to."""
    if isinstance(exc, TimeoutError):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, aiohttp.ClientSSLError):
        cause = exc.os_error
        reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or type(cause).__name__
        return f"TLS handshake failed: {reason}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        reason = os.strerror(errno) if isinstance(errno, int) and errno > 0 else type(exc.os_error).__name__
        return f"cannot connect: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without an answer"
    if isinstance(exc, aiohttp.ClientResponseError):  # a malformed answer
        return f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or type(exc).__name__}"
    return type(exc).__name__


class AnswerTooLarge(Exception):
    """The answer's body is larger than the caller accepts."""


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or AnswerTooLarge as soon as it passes `limit` bytes (never held whole)."""
    if (response.content_length or 0) > limit:
        raise AnswerTooLarge(f"the answer has {response.content_length} bytes, more than {limit}")
    chunks, size = [], 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"the answer has more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# Failures of the exchange itself (not answers): worth another attempt for an idempotent call.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, aiohttp.ClientError, ssl.SSLError)


# ---- connecting only where the SSRF guard allows --------------------------------------------------


class Guard(Protocol):
    async def addresses(self, url: str) -> list[str]: ...

    async def host_addresses(self, host: str, port: int) -> list[str]: ...


class GuardedResolver(AbstractResolver):
    """Resolves host names through the guard: the connection goes to an address the guard checked
    (DNS cannot answer differently between the check and the connect - rebinding), for http and
    https alike (TLS still verifies the URL's host name). A refused target raises the guard's
    error out of the request."""

    def __init__(self, addresses: Callable[[str, int], Awaitable[list[str]]]) -> None:
        self._addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=address, port=port,
                              family=socket.AF_INET6 if ":" in address else socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
                for address in await self._addresses(host, port)]

    async def close(self) -> None:
        return None


class GuardedHttp:
    """A shared session that only connects to addresses `guard` allows; no proxies from the
    environment (the guard must see the address actually connected to), no redirects (following
    one would skip the guard)."""

    def __init__(self, guard: Guard, *, timeout_seconds: float, max_connections: int = 100) -> None:
        self._guard = guard
        self._session = SharedSession(timeout_seconds=timeout_seconds, max_connections=max_connections,
                                      trust_env=False,
                                      resolver_factory=lambda: GuardedResolver(guard.host_addresses))

    @contextlib.asynccontextmanager
    async def request(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        # aiohttp connects to an IP literal without asking the resolver: the guard checks it here.
        if literal_ip(urlsplit(url).hostname or "") is not None:
            await self._guard.addresses(url)
        async with self._session().request(method, url, allow_redirects=False, **kwargs) as response:
            yield response

    async def close(self) -> None:
        await self._session.close()
