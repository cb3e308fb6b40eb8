"""HttpProvider against a real provider HTTP server on loopback (the simulator served by aiohttp).

Faults are injected through the server's /_faults endpoint; every assertion about retries
counts the requests the server actually saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from wework.server.providers.base import (
    InstanceNotFound,
    NotifyType,
    ProviderError,
    ProviderUnavailable,
)
from wework.server.providers.http import HttpProvider, HttpProviderConfig
from wework.server.providers.sim_server import SimServer
from wework.server.providers.simulator import SimulatorConfig
from wework.server.providers.sinks import SIGNATURE_HEADER, TIMESTAMP_HEADER, CollectingSink, sign_callback
from wework.server.providers.wire import callback_from_json

API_KEY = "test-provider-key"
FAST = SimulatorConfig(scan_delay_seconds=0.02, confirm_delay_seconds=0.02, heartbeat_interval_seconds=0.2,
                       delivery_delay_seconds=0.02, callback_retry_delay_seconds=0.01)
TIMEOUT = 0.5
MAX_RETRIES = 3
NT = NotifyType


@pytest.fixture
async def sink() -> CollectingSink:
    return CollectingSink()


@pytest.fixture
async def server(sink):
    srv = await SimServer(sink=sink, config=FAST, api_key=API_KEY).start("127.0.0.1", 0)
    yield srv
    await srv.stop()


@pytest.fixture
async def providers():
    made: list[HttpProvider] = []

    def make(base_url: str, api_key: str | None = API_KEY, **overrides) -> HttpProvider:
        cfg = {"base_url": base_url, "api_key": api_key, "timeout_seconds": TIMEOUT,
               "max_retries": MAX_RETRIES, "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05,
               "backoff_jitter_seconds": 0.01, **overrides}
        provider = HttpProvider(HttpProviderConfig(**cfg))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(server, providers) -> HttpProvider:
    return providers(server.base_url)


@pytest.fixture
def guid() -> str:
    return "g-" + uuid.uuid4().hex


async def add_fault(server: SimServer, **fault) -> None:
    """Arms a fault and starts a fresh request log."""
    async with aiohttp.ClientSession() as client, client.post(server.base_url + "/_faults", json=fault) as answer:
        assert answer.status == 201, await answer.text()
    await reset_requests(server)


async def reset_requests(server: SimServer) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.delete(server.base_url + "/_requests") as answer:
            assert answer.status == 204
        async with client.get(server.base_url + "/_requests") as answer:
            assert await answer.json() == []


async def hook(server: SimServer, guid: str, name: str, **kwargs) -> None:
    async with aiohttp.ClientSession() as client, \
            client.post(f"{server.base_url}/_sim/instances/{guid}/{name}", json=kwargs) as answer:
        assert answer.status == 204, await answer.text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- every operation ------------------------------------------------------------------------------

async def test_every_operation_over_http(server, provider, sink, guid):
    await provider.create_instance(guid, config={"simulator": {"require_verification": True}})
    await provider.create_instance(guid, config={"simulator": {"require_verification": True}})
    qr = await provider.get_login_qr(guid)
    assert guid in qr.qr_payload and qr.expire_time.tzinfo is not None
    await sink.wait_for(guid, NT.NEED_VERIFY)
    with pytest.raises(ProviderError) as err:
        await provider.send_message(guid, conversation_id="c1", message_type="text", content={"text": "x"},
                                    idempotency_key="early-" + guid)
    assert (err.value.code, err.value.status, err.value.retryable) == ("NOT_ONLINE", 409, False)
    await provider.submit_verification_code(guid, FAST.verification_code)
    online = await sink.wait_for(guid, NT.ONLINE)

    live = await provider.check_liveness(guid)
    assert live.alive and live.online and live.last_seen is not None and live.details["state"] == "online"

    key = "m-" + guid
    sent = await provider.send_message(guid, conversation_id="c1", message_type="text",
                                       content={"text": "hello"}, idempotency_key=key)
    again = await provider.send_message(guid, conversation_id="c1", message_type="text",
                                        content={"text": "hello"}, idempotency_key=key)
    assert sent == again
    delivered = await sink.wait_for(guid, NT.MESSAGE_DELIVERED)
    assert delivered.data["wework_msg_id"] == sent.wework_msg_id
    assert server.simulator.send_count(key) == 2 and list(server.simulator.sent_messages) == [key]

    await hook(server, guid, "incoming_message", conversation_id="c1", content="ping")
    assert (await sink.wait_for(guid, NT.MESSAGE_RECEIVED)).data["content"] == {"text": "ping"}

    await hook(server, guid, "disconnect")
    await sink.wait_for(guid, NT.OFFLINE)
    assert not (await provider.check_liveness(guid)).online
    live = await provider.reconnect(guid, online.data["login_token"])
    assert live.online

    await provider.logout(guid)
    await sink.wait_for(guid, NT.LOGGED_OUT)
    live = await provider.check_liveness(guid)
    assert not live.online and live.details["state"] == "logged_out"
    assert provider.attempts == len(server.requests)  # no call needed a retry


async def test_wrong_verification_code_maps_to_verification_failed(server, provider, sink, guid):
    await provider.create_instance(guid, config={"simulator": {"require_verification": True}})
    await provider.get_login_qr(guid)
    await sink.wait_for(guid, NT.NEED_VERIFY)
    before = len(server.requests)
    with pytest.raises(ProviderError) as err:
        await provider.submit_verification_code(guid, "000000")
    assert (err.value.code, err.value.status) == ("VERIFICATION_FAILED", 400)
    assert len(server.requests) == before + 1
    await sink.wait_for(guid, NT.LOGIN_FAILED)


# ---- retries ------------------------------------------------------------------------------------

async def test_503_twice_then_success_is_retried(server, provider, guid):
    await provider.create_instance(guid)
    await add_fault(server, status=503, count=2, path="/liveness")
    attempts = provider.attempts
    live = await provider.check_liveness(guid)
    assert live.alive
    assert server.requests_to("/liveness") == 3
    assert provider.attempts - attempts == 3


async def test_500_forever_gives_provider_unavailable_after_max_retries(server, provider, guid):
    await provider.create_instance(guid)
    await add_fault(server, status=500, count=1000, path="/liveness")
    with pytest.raises(ProviderUnavailable) as err:
        await provider.check_liveness(guid)
    assert err.value.retryable and err.value.status == 500 and err.value.code == "PROVIDER_UNAVAILABLE"
    assert server.requests_to("/liveness") == MAX_RETRIES + 1


async def test_timeout_is_retried(server, provider, guid):
    await provider.create_instance(guid)
    await add_fault(server, delay_seconds=TIMEOUT * 4, count=1, path="/liveness")
    started = time.monotonic()
    live = await provider.check_liveness(guid)
    assert live.alive
    assert server.requests_to("/liveness") == 2
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT * 4


async def test_a_send_that_times_out_is_retried_and_sent_once(server, provider, sink, guid):
    await provider.create_instance(guid)
    await provider.get_login_qr(guid)
    await sink.wait_for(guid, NT.ONLINE)
    # The first request stalls past the client's timeout and is then served late: the retry and
    # the stalled original carry the same Idempotency-Key, so the provider sends once.
    await add_fault(server, delay_seconds=TIMEOUT * 1.6, count=1, path="/messages")
    key = "t-" + guid
    result = await provider.send_message(guid, conversation_id="c1", message_type="text",
                                         content={"text": "once"}, idempotency_key=key)
    assert server.requests_to("/messages") == 2
    await asyncio.sleep(TIMEOUT)  # let the stalled original finish
    await sink.wait_for(guid, NT.MESSAGE_DELIVERED)
    await server.simulator.drain()
    assert list(server.simulator.sent_messages) == [key]
    assert server.simulator.sent_messages[key].wework_msg_id == result.wework_msg_id
    assert len(sink.of(guid, NT.MESSAGE_SENT)) == 1


async def test_connection_refused_gives_provider_unavailable(providers):
    provider = providers(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderUnavailable) as err:
        await provider.check_liveness("g-any")
    assert "connection failed" in str(err.value)
    assert provider.attempts == MAX_RETRIES + 1


# ---- errors that are not retried ----------------------------------------------------------------

async def test_404_is_instance_not_found_without_retry(server, provider):
    await reset_requests(server)
    with pytest.raises(InstanceNotFound) as err:
        await provider.check_liveness("g-unknown")
    assert err.value.status == 404 and not err.value.retryable
    assert len(server.requests) == 1


async def test_400_is_a_provider_error_without_retry(server, provider, guid):
    await reset_requests(server)
    with pytest.raises(ProviderError) as err:
        await provider.create_instance(guid, config={"simulator": {"no_such_setting": 1}})
    assert (err.value.code, err.value.status, err.value.retryable) == ("INVALID_CONFIG", 400, False)
    assert not isinstance(err.value, ProviderUnavailable)
    assert len(server.requests) == 1

    await add_fault(server, status=400, count=5)
    with pytest.raises(ProviderError) as err:
        await provider.create_instance(guid)
    assert err.value.code == "SIM_FAULT" and err.value.status == 400
    assert len(server.requests) == 1


@pytest.mark.parametrize("api_key", [None, "wrong-key"], ids=["missing", "wrong"])
async def test_missing_or_wrong_key_is_unauthorized_without_retry(server, providers, guid, api_key):
    provider = providers(server.base_url, api_key=api_key)
    await reset_requests(server)
    with pytest.raises(ProviderError) as err:
        await provider.create_instance(guid)
    assert (err.value.code, err.value.status, err.value.retryable) == ("UNAUTHORIZED", 401, False)
    assert len(server.requests) == 1
    assert guid not in server.simulator.instances


async def test_an_oversized_answer_or_a_redirect_is_a_bad_response_without_retry(providers):
    """A provider that is not one: an answer over 4 MiB is refused without being held, and a
    redirect is not followed (its target is never asked)."""
    hits: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        if request.path.endswith("/g-big/liveness"):
            return web.Response(body=b"x" * (5 * 1024 * 1024), content_type="application/json")
        if request.path.endswith("/g-moved/liveness"):
            raise web.HTTPFound("/instances/g-target/liveness")
        return web.json_response({"alive": True, "online": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        provider = providers(f"http://127.0.0.1:{port}")
        for guid, why in (("g-big", "more than 4194304"), ("g-moved", "answered HTTP 302, a redirect")):
            with pytest.raises(ProviderError) as err:
                await provider.check_liveness(guid)
            assert err.value.code == "BAD_RESPONSE" and not err.value.retryable and why in str(err.value)
        assert hits == ["/instances/g-big/liveness", "/instances/g-moved/liveness"]
    finally:
        await runner.cleanup()


# ---- callbacks over HTTP, and the command-line server -------------------------------------------

async def test_callbacks_are_posted_signed_and_retried(providers, guid):
    received: list[tuple[bytes, dict[str, str]]] = []
    refusals = {"left": 1}

    async def ingest(request: web.Request) -> web.Response:
        if refusals["left"]:
            refusals["left"] -= 1
            return web.Response(status=503)
        received.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/callbacks", ingest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server = await SimServer(config=FAST, api_key=API_KEY, callback_url=f"http://127.0.0.1:{port}/callbacks",
                             callback_secret="s3cret").start()
    try:
        provider = providers(server.base_url)
        await provider.create_instance(guid)
        await provider.get_login_qr(guid)
        async with asyncio.timeout(5):
            while len(received) < 4:
                await asyncio.sleep(0.02)
    finally:
        await server.stop()
        await runner.cleanup()
    callbacks = [callback_from_json(json.loads(body)) for body, _ in received]
    assert [c.notify_type for c in callbacks[:4]] == [NT.LOGIN_QR, NT.QR_SCANNED, NT.LOGIN_CONFIRMED, NT.ONLINE]
    assert all(c.guid == guid for c in callbacks)
    for body, headers in received:
        assert headers[SIGNATURE_HEADER] == sign_callback("s3cret", headers[TIMESTAMP_HEADER], body)


async def test_the_command_line_server(guid, providers):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wework.server.providers.sim_server", "--port", str(port), "--api-key", API_KEY,
        "--config", '{"scan_delay_seconds": 0.01, "confirm_delay_seconds": 0.01}',
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=Path(__file__).parent)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert f"127.0.0.1:{port}" in line.decode()
        provider = providers(f"http://127.0.0.1:{port}")
        await provider.create_instance(guid)
        await provider.get_login_qr(guid)
        async with asyncio.timeout(5):
            while not (await provider.check_liveness(guid)).online:
                await asyncio.sleep(0.02)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
