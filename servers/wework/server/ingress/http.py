"""Minimal provider-callback endpoint: POST /provider/callbacks (aiohttp).

Verifies the provider's signature (sinks.sign_callback: HMAC-SHA256 of "<timestamp>.<body>")
when a secret is configured, and hands the callback to the same sink the in-process provider
uses (message receipts and account events). It answers 200 only after the sink has applied the
callback, so the provider retries on any failure. Not durable beyond that: the Callback service
issue will store callbacks first and process them asynchronously.
"""

from __future__ import annotations

import hmac
import json
import logging
import time

from aiohttp import web
from wework.server.providers.base import CallbackSink
from wework.server.providers.sinks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_callback
from wework.server.providers.wire import callback_from_json

log = logging.getLogger(__name__)
PATH = "/provider/callbacks"


class CallbackIngress:
    def __init__(self, sink: CallbackSink, *, secret: str | None = None, max_skew_seconds: int = 300) -> None:
        self._sink, self._secret, self._skew = sink, secret, max_skew_seconds
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("provider callback ingress listening on %s:%d%s", host, self.port, PATH)
        return self.port

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self._secret:
            ts = request.headers.get(TIMESTAMP_HEADER, "")
            given = request.headers.get(SIGNATURE_HEADER, "")
            if not ts.isdigit() or abs(time.time() - int(ts)) > self._skew:
                return web.json_response({"error": "stale or missing timestamp"}, status=401)
            if not hmac.compare_digest(given, sign_callback(self._secret, ts, body)):
                return web.json_response({"error": "bad signature"}, status=401)
        try:
            callback = callback_from_json(json.loads(body))
        except (ValueError, KeyError, TypeError, AssertionError):
            return web.json_response({"error": "malformed callback"}, status=400)
        try:
            await self._sink.deliver(callback)
        except Exception:
            log.exception("callback %s (%s) failed; the provider will retry", callback.event_id,
                          callback.notify_type)
            return web.json_response({"error": "not processed"}, status=503)
        return web.json_response({"ok": True})
