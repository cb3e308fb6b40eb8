"""The simulator served over the provider REST API (docs/provider-http-api.md), with aiohttp.

Tests start it on loopback to exercise `HttpProvider` against a real HTTP server backed by the
simulator core; operators run it by hand to play a provider:

    python -m wework.server.providers.sim_server --port 8600 --api-key devkey \
        --callback-url http://127.0.0.1:8080/provider/callbacks

Besides the API it offers, for tests (under /_, no API key: bind it to loopback only):
- POST /_faults {"status": 503, "count": 2} or {"delay_seconds": 3, "count": 1}, optionally
  "path" (substring of the request path) and "method": the next matching API requests fail or
  stall; GET /_faults lists what is left; DELETE /_faults clears them.
- GET /_requests: every API request seen ({method, path, idempotency_key, at: epoch seconds});
  DELETE /_requests resets the list.
- POST /_sim/instances/{guid}/{hook} with the hook's keyword arguments as JSON: the simulator's
  test hooks (scan, confirm, disconnect, expire_qr, remote_logout, incoming_message,
  conversation_changed).
Callbacks are posted as JSON to --callback-url (signed when --callback-secret is given), or go
to the sink given to `SimServer`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from wework.server.providers.base import (
    CallbackSink,
    InstanceNotFound,
    ProviderCallback,
    ProviderError,
    ProviderUnavailable,
)
from wework.server.providers.simulator import SimulatorConfig, SimulatorProvider
from wework.server.providers.sinks import HttpCallbackSink
from wework.server.providers.wire import (
    error_to_json,
    liveness_to_json,
    login_qr_to_json,
    send_result_to_json,
)

log = logging.getLogger(__name__)

HOOKS = frozenset({"scan", "confirm", "disconnect", "expire_qr", "remote_logout", "incoming_message",
                   "conversation_changed"})


@dataclass
class Fault:
    count: int = 1
    status: int | None = None  # answer with this status instead of serving
    delay_seconds: float = 0.0  # stall this long first (then serve, or answer `status`)
    path: str | None = None  # only requests whose path contains this
    method: str | None = None

    def matches(self, request: web.Request) -> bool:
        return ((self.path is None or self.path in request.path)
                and (self.method is None or self.method.upper() == request.method))


class _DiscardSink:
    async def deliver(self, callback: ProviderCallback) -> None:
        log.info("callback (no callback URL): %s %s %s", callback.guid, callback.notify_type, callback.data)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _status_of(err: ProviderError) -> int:
    if isinstance(err, InstanceNotFound):
        return 404
    if err.status is not None:
        return err.status
    return 503 if isinstance(err, ProviderUnavailable) else 400


class SimServer:
    """A SimulatorProvider behind the REST API, on an aiohttp server of its own."""

    def __init__(self, *, sink: CallbackSink | None = None, config: SimulatorConfig | None = None,
                 api_key: str | None = None, callback_url: str | None = None,
                 callback_secret: str | None = None) -> None:
        self._http_sink = HttpCallbackSink(callback_url, secret=callback_secret) if callback_url else None
        self.simulator = SimulatorProvider(self._http_sink or sink or _DiscardSink(), config or SimulatorConfig())
        self.api_key = api_key
        self.faults: list[Fault] = []
        self.requests: list[dict[str, str]] = []
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.app = self._build_app()

    @property
    def base_url(self) -> str:
        assert self.port is not None, "not started"
        return f"http://{self._host}:{self.port}"

    def requests_to(self, path_part: str) -> int:
        return sum(1 for r in self.requests if path_part in r["path"])

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> SimServer:
        self._host = host
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port, when 0 was asked for
        return self

    async def stop(self) -> None:
        self._stopping.set()  # releases requests stalled by a delay fault
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.simulator.close()
        if self._http_sink is not None:
            await self._http_sink.close()

    # ---- app -------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults_and_auth])
        r = app.router
        r.add_post("/instances", self._create_instance)
        r.add_post("/instances/{guid}/login-qr", self._login_qr)
        r.add_post("/instances/{guid}/verification", self._verification)
        r.add_post("/instances/{guid}/messages", self._send)
        r.add_post("/instances/{guid}/logout", self._logout)
        r.add_post("/instances/{guid}/reconnect", self._reconnect)
        r.add_get("/instances/{guid}/liveness", self._liveness)
        r.add_post("/_faults", self._add_fault)
        r.add_get("/_faults", self._list_faults)
        r.add_delete("/_faults", self._clear_faults)
        r.add_get("/_requests", self._list_requests)
        r.add_delete("/_requests", self._clear_requests)
        r.add_post("/_sim/instances/{guid}/{hook}", self._hook)
        r.add_get("/_sent", self._list_sent)
        return app

    @web.middleware
    async def _faults_and_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_"):
            return await handler(request)
        # The idempotency key (our message id) shows the order in which messages were sent.
        self.requests.append({"method": request.method, "path": request.path,
                              "idempotency_key": request.headers.get("Idempotency-Key"), "at": time.time()})
        fault = next((f for f in self.faults if f.matches(request)), None)
        if fault is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)
            if fault.delay_seconds > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), fault.delay_seconds)
            if fault.status is not None:
                return _error(fault.status, "SIM_FAULT", f"injected fault {fault.status}")
        if self.api_key is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                return _error(401, "UNAUTHORIZED", "missing or wrong API key")
        try:
            return await handler(request)
        except ProviderError as err:
            return web.json_response(error_to_json(err), status=_status_of(err))

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise ProviderError("the body is not JSON", code="INVALID_ARGUMENT", status=400) from None
        if not isinstance(body, dict):
            raise ProviderError("the body must be a JSON object", code="INVALID_ARGUMENT", status=400)
        return body

    async def _create_instance(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        guid = body.get("guid")
        config = body.get("config")
        if not isinstance(guid, str) or not guid:
            raise ProviderError("guid is required", code="INVALID_ARGUMENT", status=400)
        if config is not None and not isinstance(config, dict):
            raise ProviderError("config must be an object", code="INVALID_ARGUMENT", status=400)
        await self.simulator.create_instance(guid, config=config)
        return web.json_response({"guid": guid, "state": str(self.simulator.state(guid))}, status=201)

    async def _login_qr(self, request: web.Request) -> web.Response:
        qr = await self.simulator.get_login_qr(request.match_info["guid"])
        return web.json_response(login_qr_to_json(qr))

    async def _verification(self, request: web.Request) -> web.Response:
        code = (await self._body(request)).get("code")
        if not isinstance(code, str):
            raise ProviderError("code is required", code="INVALID_ARGUMENT", status=400)
        await self.simulator.submit_verification_code(request.match_info["guid"], code)
        return web.Response(status=204)

    async def _send(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        key = request.headers.get("Idempotency-Key") or body.get("idempotency_key")
        if body.get("idempotency_key") not in (None, key):
            raise ProviderError("Idempotency-Key header and body disagree", code="INVALID_ARGUMENT", status=400)
        content = body.get("content")
        if not isinstance(content, dict):
            raise ProviderError("content must be an object", code="INVALID_ARGUMENT", status=400)
        result = await self.simulator.send_message(
            request.match_info["guid"], conversation_id=str(body.get("conversation_id") or ""),
            message_type=str(body.get("message_type") or ""), content=content, idempotency_key=key or "")
        return web.json_response(send_result_to_json(result))

    async def _logout(self, request: web.Request) -> web.Response:
        await self.simulator.logout(request.match_info["guid"])
        return web.Response(status=204)

    async def _reconnect(self, request: web.Request) -> web.Response:
        token = (await self._body(request)).get("login_token")
        live = await self.simulator.reconnect(request.match_info["guid"], token)
        return web.json_response(liveness_to_json(live))

    async def _liveness(self, request: web.Request) -> web.Response:
        live = await self.simulator.check_liveness(request.match_info["guid"])
        return web.json_response(liveness_to_json(live))

    # ---- test endpoints -------------------------------------------------------------------------

    async def _add_fault(self, request: web.Request) -> web.Response:
        try:
            fault = Fault(**(await self._body(request)))
        except TypeError as exc:
            return _error(400, "INVALID_ARGUMENT", str(exc))
        if fault.count < 1:
            return _error(400, "INVALID_ARGUMENT", "count must be at least 1")
        self.faults.append(fault)
        return web.json_response(asdict(fault), status=201)

    async def _list_faults(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(f) for f in self.faults])

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.Response(status=204)

    async def _list_requests(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def _list_sent(self, request: web.Request) -> web.Response:
        """What the simulator accepted per idempotency key (message type and content as sent)."""
        return web.json_response([{"idempotency_key": m.idempotency_key, "message_type": m.message_type,
                                   "content": m.content} for m in self.simulator.sent_messages.values()])

    async def _clear_requests(self, request: web.Request) -> web.Response:
        self.requests.clear()
        return web.Response(status=204)

    async def _hook(self, request: web.Request) -> web.Response:
        hook = request.match_info["hook"]
        if hook not in HOOKS:
            return _error(404, "NOT_FOUND", f"no hook {hook!r}; hooks: {sorted(HOOKS)}")
        kwargs = await self._body(request)
        try:
            await getattr(self.simulator, hook)(request.match_info["guid"], **kwargs)
        except TypeError as exc:
            return _error(400, "INVALID_ARGUMENT", str(exc))
        except ProviderError as err:
            return web.json_response(error_to_json(err), status=_status_of(err))
        return web.Response(status=204)


# ---- python -m wework.server.providers.sim_server ---------------------------------------------

async def _serve(args: argparse.Namespace) -> None:
    config = SimulatorConfig.model_validate(json.loads(args.config)) if args.config else SimulatorConfig()
    server = SimServer(config=config, api_key=args.api_key, callback_url=args.callback_url,
                       callback_secret=args.callback_secret)
    await server.start(args.host, args.port)
    print(f"provider simulator on {server.base_url} (callbacks: {args.callback_url or 'logged'})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wework.server.providers.sim_server",
                                     description="The WeCom provider simulator over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>'")
    parser.add_argument("--callback-url", default=None, help="POST callbacks here as JSON")
    parser.add_argument("--callback-secret", default=None, help="sign callbacks (X-Provider-Signature)")
    parser.add_argument("--config", default=None, help="SimulatorConfig as JSON, e.g. '{\"auto_scan\": false}'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
