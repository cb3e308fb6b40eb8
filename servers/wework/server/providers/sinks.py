"""Callback sinks that are not the platform's own ingest: one that posts callbacks over HTTP
(what a real provider does, used by the simulator's HTTP server) and one that collects them in
memory (the consumer's stand-in in tests of the providers themselves)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import aiohttp
from wework.server.http_client import SharedSession
from wework.server.providers.base import ProviderCallback
from wework.server.providers.wire import callback_to_json

SIGNATURE_HEADER = "X-Provider-Signature"
TIMESTAMP_HEADER = "X-Provider-Timestamp"


def sign_callback(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 of "<timestamp>.<body>" (the timestamp binds against replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class HttpCallbackSink:
    """Posts each callback as JSON to `url`; a non-2xx answer raises (aiohttp.ClientResponseError)
    so that the sender retries."""

    def __init__(self, url: str, *, secret: str | None = None, timeout_seconds: float = 5.0) -> None:
        self.url = url
        self.secret = secret
        self._session = SharedSession(timeout_seconds=timeout_seconds)

    async def deliver(self, callback: ProviderCallback) -> None:
        body = json.dumps(callback_to_json(callback), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.secret:
            ts = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = ts
            headers[SIGNATURE_HEADER] = sign_callback(self.secret, ts, body)
        async with self._session().post(self.url, data=body, headers=headers, allow_redirects=False) as response:
            if not 200 <= response.status < 300:  # a redirect is not an acceptance either
                raise aiohttp.ClientResponseError(response.request_info, response.history, status=response.status,
                                                  message=response.reason or "")

    async def close(self) -> None:
        await self._session.close()


class CollectingSink:
    """Keeps every callback and lets a test wait for the one it expects."""

    def __init__(self) -> None:
        self.callbacks: list[ProviderCallback] = []
        self._changed = asyncio.Condition()

    async def deliver(self, callback: ProviderCallback) -> None:
        async with self._changed:
            self.callbacks.append(callback)
            self._changed.notify_all()

    def of(self, guid: str | None = None, notify_type: int | None = None) -> list[ProviderCallback]:
        return [c for c in self.callbacks
                if (guid is None or c.guid == guid) and (notify_type is None or c.notify_type == notify_type)]

    def types(self, guid: str | None = None) -> list[int]:
        return [c.notify_type for c in self.of(guid)]

    async def wait_for(self, guid: str | None, notify_type: int, *, count: int = 1,
                       timeout: float = 5.0,
                       where: Callable[[ProviderCallback], bool] | None = None) -> ProviderCallback:
        """Returns the `count`-th matching callback, waiting up to `timeout` seconds for it."""

        def found() -> list[ProviderCallback]:
            return [c for c in self.of(guid, notify_type) if where is None or where(c)]

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(found()) >= count)
            return found()[count - 1]
