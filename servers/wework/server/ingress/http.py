"""The provider-callback endpoint: POST /provider/callbacks (aiohttp), on its own port.

Given a CallbackInbox (application/callbacks.py), the normal case: the signature
(X-Provider-Timestamp, X-Provider-Signature: "v1=" + hex HMAC-SHA256 of "<timestamp>.<body>")
is checked with the timestamp tolerance and replay protection, the raw body is stored (one short
insert, deduplicated), and the answer is 200 {"id", "duplicate"} - processing happens after the
answer. A refused signature answers 401 and stores nothing; a failed store answers 503 so that
the provider retries.

Given a plain CallbackSink instead (tests of the message receipts, no inbox), the callback is
verified and handed to the sink before the answer, as the platform did before the inbox.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web
from wework.domain.callbacks import check_signature, json_nesting_exceeds
from wework.domain.errors import DomainError, InvalidArgument, Unauthenticated
from wework.server.media.store import LOCAL_LINK_PATH, content_disposition
from wework.server.providers.sinks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from wework.server.providers.wire import callback_from_json

log = logging.getLogger(__name__)
PATH = "/provider/callbacks"
NOOP_PATH = "/provider/noop"  # benchmark baseline only (bench_routes=True)
MAX_BODY = 1024 * 1024


class CallbackIngress:
    def __init__(self, inbox: Any, *, secret: str | None = None, max_skew_seconds: int = 300,
                 bench_routes: bool = False, media_store: Any = None) -> None:
        # `inbox`: a CallbackInbox (durable), or any CallbackSink (direct, legacy).
        self._inbox = inbox
        self._durable = hasattr(inbox, "ingest")
        self._secret, self._skew = secret, max_skew_seconds
        self._bench = bench_routes
        # A LocalStore: its signed download links are served here (GET /media/download).
        self._media = media_store
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(PATH, self._handle if self._durable else self._handle_direct)
        if self._bench:
            app.router.add_post(NOOP_PATH, self._noop)
        if self._media is not None:
            app.router.add_get(LOCAL_LINK_PATH, self._media_download)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("provider callback ingress listening on %s:%d%s", host, self.port, PATH)
        return self.port

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _media_download(self, request: web.Request) -> web.StreamResponse:
        """A platform-signed media link (local backend): the token names the object and expires."""
        claims = self._media.signer.verify(request.query.get("token", ""))
        if claims is None:
            return web.json_response({"error": "the link is invalid or expired"}, status=403)
        try:
            path = self._media.path(claims["k"])
        except ValueError:
            return web.json_response({"error": "the link is invalid or expired"}, status=403)
        if not path.is_file():
            return web.json_response({"error": "not found"}, status=404)
        return web.FileResponse(path, headers={"Content-Type": claims["t"],
                                               "Content-Disposition": content_disposition(claims["n"]),
                                               "Cache-Control": "private, no-store"})

    async def _noop(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": "body too large"}, status=413)
        try:
            result = await self._inbox.ingest(
                body, timestamp=request.headers.get(TIMESTAMP_HEADER, ""),
                signature=request.headers.get(SIGNATURE_HEADER, ""), source="http", source_ip=request.remote,
                user_agent=request.headers.get("User-Agent"))
        except Unauthenticated as exc:
            return web.json_response({"error": exc.message}, status=401)
        except InvalidArgument as exc:  # too large or nested too deep: final, never retried
            too_large = any("at most 1 MiB" in v.description for v in exc.violations)
            description = exc.violations[0].description if exc.violations else exc.message
            return web.json_response({"error": description}, status=413 if too_large else 400)
        except DomainError as exc:  # Unavailable: the database is down; the provider retries
            log.warning("callback not stored: %s", exc.message)
            return web.json_response({"error": "not stored, retry later"}, status=503)
        except Exception:
            log.exception("callback not stored")
            return web.json_response({"error": "not stored, retry later"}, status=503)
        return web.json_response({"ok": True, "id": result.callback_event_id, "duplicate": result.duplicate})

    async def _handle_direct(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self._secret:
            reason = check_signature(self._secret, request.headers.get(TIMESTAMP_HEADER, ""),
                                     request.headers.get(SIGNATURE_HEADER, ""), body, time.time(), self._skew)
            if reason is not None:
                return web.json_response({"error": reason}, status=401)
        if json_nesting_exceeds(body):
            return web.json_response({"error": "malformed callback: nested too deep"}, status=400)
        try:
            callback = callback_from_json(json.loads(body))
        except (ValueError, KeyError, TypeError, AssertionError):
            return web.json_response({"error": "malformed callback"}, status=400)
        try:
            await self._inbox.deliver(callback)
        except Exception:
            log.exception("callback %s (%s) failed; the provider will retry", callback.event_id,
                          callback.notify_type)
            return web.json_response({"error": "not processed"}, status=503)
        return web.json_response({"ok": True})
