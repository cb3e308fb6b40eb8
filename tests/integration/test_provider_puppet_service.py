"""PuppetServiceProvider against the real reference server: npm wechaty-puppet-service's
PuppetServer with wechaty-puppet-mock behind it (tests/harness/puppet_service.py), over TLS
with its built-in certificate (CN "insecure") and in plaintext. Sends are checked on the mock's
side: the driver records every call the puppet receives."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import uuid

import pytest
from aiohttp import web
from harness.puppet_service import ReferenceServer, reference_ca
from wework.server.providers.base import NotifyType, ProviderError, ProviderUnavailable
from wework.server.providers.puppet_service.adapter import BUNDLED_CA, PuppetServiceProvider
from wework.server.providers.puppet_service.config import PuppetServiceConfig
from wework.server.providers.sinks import CollectingSink

NT = NotifyType
GUID = "wg_puppet_test"


def fast(endpoint: str | None, **overrides) -> PuppetServiceConfig:
    values = {"endpoint": endpoint, "server_name": "insecure", "connect_timeout_seconds": 10,
              "qr_wait_seconds": 10, "login_wait_seconds": 5, "reconnect_backoff_initial_seconds": 0.2,
              "reconnect_backoff_max_seconds": 1, "ding_interval_seconds": 0.5}
    return PuppetServiceConfig(**{**values, **overrides})


async def provider_for(server: ReferenceServer, sink: CollectingSink, token: str | None = None,
                       **overrides) -> PuppetServiceProvider:
    async def tokens(guid: str) -> str | None:
        await asyncio.sleep(0.01)  # the platform reads it from the database
        return token or server.token

    return PuppetServiceProvider(fast(overrides.pop("endpoint", server.endpoint), **overrides), sink, tokens)


async def log_in(provider: PuppetServiceProvider, server: ReferenceServer, sink: CollectingSink) -> str:
    qr = await provider.get_login_qr(GUID)
    assert qr.qr_payload.startswith("https://login.mock.invalid/qr/")
    await server.command("scan", status=3)
    await sink.wait_for(GUID, NT.QR_SCANNED, timeout=10)
    await server.command("scan", status=4)
    user_id = await server.command("login", name="Zhang San")
    await sink.wait_for(GUID, NT.ONLINE, timeout=10)
    return user_id


@pytest.fixture
async def tls_server():
    server = await ReferenceServer(f"puppet_workpro_{uuid.uuid4().hex}", keep_session=True).start()
    yield server
    await server.stop()


def test_the_bundled_ca_is_the_reference_servers_ca():
    assert BUNDLED_CA.read_bytes().strip() == reference_ca().strip()


async def test_login_over_tls_reports_the_qr_scan_and_the_user(tls_server):
    sink = CollectingSink()
    provider = await provider_for(tls_server, sink)
    try:
        user_id = await log_in(provider, tls_server, sink)
        qr = sink.of(GUID, NT.LOGIN_QR)[0].data
        assert qr["qr_payload"] == qr["qr_code_url"] and qr["expire_time"]
        assert NT.LOGIN_CONFIRMED in sink.types(GUID)
        online = sink.of(GUID, NT.ONLINE)[-1].data
        assert online["user_info"]["user_id"] == user_id and online["user_info"]["name"] == "Zhang San"
        # Ding -> DONG -> heartbeats while logged in.
        await sink.wait_for(GUID, NT.HEARTBEAT, count=3, timeout=10)
        assert (await provider.check_liveness(GUID)).online
    finally:
        await provider.close()


async def test_plaintext_with_an_insecure_token():
    server = await ReferenceServer(f"insecure_{uuid.uuid4().hex}", tls=False).start()
    sink = CollectingSink()
    provider = await provider_for(server, sink, server_name=None)
    try:
        await log_in(provider, server, sink)
    finally:
        await provider.close()
        await server.stop()


async def test_a_wrong_token_is_refused_with_a_reason_that_does_not_echo_it(tls_server):
    sink = CollectingSink()
    wrong = f"puppet_workpro_wrong{uuid.uuid4().hex}"
    provider = await provider_for(tls_server, sink, token=wrong)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.get_login_qr(GUID)
        assert caught.value.code == "TOKEN_REFUSED" and not caught.value.retryable
        assert "refused the account's puppet-service token" in str(caught.value)
        assert wrong not in str(caught.value) and "wrong" not in str(caught.value)
    finally:
        await provider.close()


async def test_every_send_type_reaches_the_puppet_exactly_once(tls_server):
    sink = CollectingSink()
    provider = await provider_for(tls_server, sink)
    try:
        await log_in(provider, tls_server, sink)
        friend = await tls_server.command("contact", name="Li Si")
        other = await tls_server.command("contact", name="Wang Wu")
        room = await tls_server.command("room", topic="Team", members=[friend, other])
        sends = [
            (friend, "text", {"text": "hello"}),
            (room, "at", {"text": "@Li Si look", "user_ids": [friend]}),
            (friend, "link", {"title": "Docs", "url": "https://example.com/a", "description": "d",
                              "thumb_url": "https://example.com/t.png"}),
            (friend, "miniprogram", {"app_id": "wx123", "title": "Shop", "page_path": "pages/i",
                                     "thumb_media_id": "thumb-1"}),
            (friend, "image", {"url": "https://example.com/p.png"}),
            (room, "file", {"url": "https://example.com/r.pdf", "file_name": "report.pdf"}),
            (friend, "contact_card", {"contact_id": other}),
        ]
        results = []
        for i, (conversation, kind, content) in enumerate(sends):
            results.append(await provider.send_message(GUID, conversation_id=conversation, message_type=kind,
                                                       content=content, idempotency_key=f"m{i}"))
        # A retry of a completed send is answered from the record, not sent again.
        again = await provider.send_message(GUID, conversation_id=friend, message_type="text",
                                            content={"text": "hello"}, idempotency_key="m0")
        assert again == results[0]
        calls = await tls_server.calls()
        assert [c["method"] for c in calls] == [
            "messageSendText", "messageSendText", "messageSendUrl", "messageSendMiniProgram", "messageSendFile",
            "messageSendFile", "messageSendContact"]
        assert [r.wework_msg_id for r in results] == [c["id"] for c in calls]
        text, at, url, mini, image, file, card = (c["args"] for c in calls)
        assert text == {"conversationId": friend, "text": "hello", "mentionIdList": []}
        assert at["conversationId"] == room and at["mentionIdList"] == [friend]
        assert url["urlLink"] == {"title": "Docs", "url": "https://example.com/a", "description": "d",
                                  "thumbnailUrl": "https://example.com/t.png"}
        assert mini["miniProgram"]["appid"] == "wx123" and mini["miniProgram"]["pagePath"] == "pages/i"
        assert mini["miniProgram"]["thumbKey"] == "thumb-1"
        assert image["file"]["url"] == "https://example.com/p.png" and image["file"]["name"] == "p.png"
        assert file == {"conversationId": room, "file": {"name": "report.pdf", "type": 2,
                                                         "url": "https://example.com/r.pdf"}}
        assert card == {"conversationId": friend, "contactId": other}
        with pytest.raises(ProviderError) as caught:
            await provider.send_message(GUID, conversation_id=friend, message_type="image",
                                        content={"media_id": "abc"}, idempotency_key="m-media")
        assert caught.value.code == "UNSUPPORTED_CONTENT"
        # Bytes the platform holds go up through the Upload stream (several chunks), then as a file box.
        data = bytes(range(256)) * 600
        held = await provider.send_message(GUID, conversation_id=friend, message_type="file",
                                           content={"data_base64": base64.b64encode(data).decode(),
                                                    "file_name": "held.bin"}, idempotency_key="m-bytes")
        last = (await tls_server.calls())[-1]
        assert last["id"] == held.wework_msg_id and last["method"] == "messageSendFile"
        assert last["args"]["file"]["name"] == "held.bin" and last["args"]["file"]["type"] == 7
        assert last["args"]["file"]["size"] == len(data)
        assert last["args"]["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        await provider.close()


async def test_incoming_messages_and_room_changes_become_callbacks(tls_server):
    sink = CollectingSink()
    provider = await provider_for(tls_server, sink)
    try:
        user_id = await log_in(provider, tls_server, sink)
        friend = await tls_server.command("contact", name="Li Si")
        other = await tls_server.command("contact", name="Wang Wu")
        room = await tls_server.command("room", topic="Team", members=[friend, user_id])
        await tls_server.command("say", **{"from": friend, "to": user_id, "text": "hi there"})
        private = await sink.wait_for(GUID, NT.MESSAGE_RECEIVED, timeout=10)
        assert private.data["conversation_id"] == friend and private.data["conversation_type"] == "single"
        assert private.data["conversation_name"] == "Li Si"
        assert private.data["sender"] == {"user_id": friend, "name": "Li Si"}
        assert private.data["content"] == {"text": "hi there"} and private.data["message_type"] == "text"
        assert private.event_id == f"ps:{GUID}:msg:{private.data['wework_msg_id']}"
        await tls_server.command("say", **{"from": friend, "to": room, "text": "@me in the room",
                                           "mentions": [user_id]})
        group = await sink.wait_for(GUID, NT.MESSAGE_RECEIVED, count=2, timeout=10)
        assert group.data["conversation_id"] == room and group.data["conversation_type"] == "group"
        assert group.data["conversation_name"] == "Team" and group.data["mentions"] == [user_id]
        await tls_server.command("say_file", **{"from": friend, "to": user_id, "name": "a.png",
                                                "url": "https://example.com/a.png"})
        image = await sink.wait_for(GUID, NT.MESSAGE_RECEIVED, count=3, timeout=10)
        assert image.data["message_type"] == "image"
        assert image.data["content"]["media_ref"].startswith("puppet-service:message:")
        # Our own sends echoed back are not incoming messages.
        await provider.send_message(GUID, conversation_id=friend, message_type="text", content={"text": "x"},
                                    idempotency_key="own")
        await tls_server.command("room_topic", room=room, topic="Team 2", by=friend)
        changed = await sink.wait_for(GUID, NT.CONVERSATION_CHANGED, timeout=10,
                                      where=lambda c: c.data["conversation_name"] == "Team 2")
        assert changed.data["conversation_id"] == room and changed.data["conversation_type"] == "group"
        await tls_server.command("room_join", room=room, contacts=[other], by=friend)
        joined = await sink.wait_for(GUID, NT.CONVERSATION_CHANGED, timeout=10,
                                     where=lambda c: c.data["member_count"] == 3)
        assert joined.data["conversation_id"] == room
        assert len(sink.of(GUID, NT.MESSAGE_RECEIVED)) == 3
    finally:
        await provider.close()


async def test_contacts_and_rooms_are_synced_after_login_and_on_dirty(tls_server):
    sink = CollectingSink()
    provider = await provider_for(tls_server, sink)
    try:
        friend = await tls_server.command("contact", name="Early Friend")
        room = await tls_server.command("room", topic="Early Room", members=[friend])
        await log_in(provider, tls_server, sink)

        def changed(conversation_id: str):
            return lambda c: c.data["conversation_id"] == conversation_id

        synced_room = await sink.wait_for(GUID, NT.CONVERSATION_CHANGED, timeout=10, where=changed(room))
        assert synced_room.data["conversation_name"] == "Early Room" and synced_room.data["conversation_type"] == "group"
        synced_friend = await sink.wait_for(GUID, NT.CONVERSATION_CHANGED, timeout=10, where=changed(friend))
        assert synced_friend.data == {"conversation_id": friend, "conversation_name": "Early Friend",
                                      "conversation_type": "single", "member_count": 2}
        before = len(sink.of(GUID, NT.CONVERSATION_CHANGED))
        await tls_server.command("dirty", type=3, payload_id=room)  # wechaty-puppet DirtyType.Room
        await sink.wait_for(GUID, NT.CONVERSATION_CHANGED, count=before + 1, timeout=10)
        assert sink.of(GUID, NT.CONVERSATION_CHANGED)[-1].data["conversation_id"] == room
    finally:
        await provider.close()


async def test_logout_and_a_remote_logout(tls_server):
    sink = CollectingSink()
    provider = await provider_for(tls_server, sink)
    try:
        await log_in(provider, tls_server, sink)
        await provider.logout(GUID)
        await sink.wait_for(GUID, NT.LOGGED_OUT, timeout=10)
        assert not (await provider.check_liveness(GUID)).online
        await provider.logout(GUID)  # again: nobody is logged in, which is what was asked
    finally:
        await provider.close()


async def test_a_restarted_provider_is_reconnected_without_a_new_qr(tls_server):
    sink = CollectingSink()
    provider = await provider_for(tls_server, sink)
    try:
        await log_in(provider, tls_server, sink)
        await tls_server.kill()
        lost = await sink.wait_for(GUID, NT.OFFLINE, timeout=10)
        assert "event stream" in lost.data["reason"]
        with pytest.raises(ProviderError) as caught:
            await provider.reconnect(GUID, None)
        assert caught.value.retryable  # down: the monitor tries again later
        await tls_server.restart()  # the provider kept the session (--state)
        live = await provider.reconnect(GUID, None)
        assert live.online and live.details["reconnected"]
        assert len(sink.of(GUID, NT.LOGIN_QR)) == 1  # no new QR code
        friend = await tls_server.command("contact", name="Li Si")
        me = (await tls_server.wait_event("restored"))["user"]
        await tls_server.command("say", **{"from": friend, "to": me, "text": "after the restart"})
        got = await sink.wait_for(GUID, NT.MESSAGE_RECEIVED, timeout=10)
        assert got.data["content"] == {"text": "after the restart"}
    finally:
        await provider.close()
        await asyncio.sleep(0)


async def test_concurrent_attaches_open_one_stream(tls_server):
    """A login and the ownership tick may attach the same account at once: one stream, no error
    (a second stream would be refused by the provider with ALREADY_EXISTS)."""
    sink = CollectingSink()
    provider = await provider_for(tls_server, sink)
    try:
        await asyncio.gather(*(provider.attach(GUID) for _ in range(3)))
        assert provider.attached() == [GUID]
        qr = await provider.get_login_qr(GUID)
        assert qr.qr_payload
    finally:
        await provider.close()


# ---- token discovery (no endpoint configured) -------------------------------------------------------


@contextlib.asynccontextmanager
async def discovery_service(known: dict[str, dict]):
    """A Wechaty discovery service on loopback: GET /v0/hosties/<token> answers known[token] or 404."""
    asked: list[str] = []

    async def hostie(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        asked.append(token)
        return web.json_response(known[token]) if token in known else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/v0/hosties/{token}", hostie)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v0/hosties/{{token}}", asked
    finally:
        await runner.cleanup()


async def test_the_endpoint_is_discovered_from_the_token_once(tls_server):
    host, port = tls_server.endpoint.rsplit(":", 1)
    async with discovery_service({tls_server.token: {"host": host, "port": int(port)}}) as (url, asked):
        sink = CollectingSink()
        provider = await provider_for(tls_server, sink, endpoint=None, discovery_url=url)
        try:
            await log_in(provider, tls_server, sink)
            assert (await provider.check_liveness(GUID)).online
        finally:
            await provider.close()
    assert asked == [tls_server.token]  # remembered per token


async def test_discovery_failures_say_why_without_the_token(tls_server):
    async with discovery_service({}) as (url, asked):
        sink = CollectingSink()
        provider = await provider_for(tls_server, sink, endpoint=None, discovery_url=url)
        try:
            with pytest.raises(ProviderError) as unknown:
                await provider.get_login_qr(GUID)
            assert (unknown.value.code, unknown.value.status, unknown.value.retryable) == \
                ("TOKEN_NOT_DISCOVERED", 404, False)
            assert asked == [tls_server.token]
        finally:
            await provider.close()
    # The service is gone now: connection refused is worth retrying later.
    provider = await provider_for(tls_server, sink, endpoint=None, discovery_url=url)
    try:
        with pytest.raises(ProviderUnavailable) as down:
            await provider.get_login_qr(GUID)
        assert down.value.retryable and "discovery failed: cannot connect" in str(down.value)
        assert tls_server.token not in str(down.value)
    finally:
        await provider.close()
