"""The puppet_service provider end to end: a real wework-server (MariaDB shards, Redis) whose
provider is the Wechaty puppet-service reference server (npm wechaty-puppet-service's
PuppetServer + wechaty-puppet-mock, tests/harness/puppet_service.py), over TLS with its built-in
certificate, driven through the gRPC API with the generated stubs. The tests run in order on one
account (the reference server hosts one puppet).

Covers: QR -> scan -> login -> ONLINE with user_info; incoming private and room messages ->
stored callbacks -> conversations and tenant webhooks; every send type reaching the puppet once;
the reference server killed and restarted -> recovery without a new QR; logout; a wrong token
-> ERROR with a readable reason; the token in no answer, log line or stored payload.
"""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from typing import Any

import grpc
import harness
import pytest
from harness import httpcall
from harness.puppet_service import ReferenceServer
from puppetproc import Api, Receiver, eventually, settings, tenant_api
from serverproc import run_admin, settings_yaml, start_server
from wework.v1 import account_pb2 as apb
from wework.v1 import callback_pb2 as cpb
from wework.v1 import message_pb2 as mpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SERVICE = "wework.v1.AccountService"
TOKEN = f"puppet_workpro_{uuid.uuid4().hex}"
WRONG_TOKEN = f"puppet_workpro_{uuid.uuid4().hex}"


class World:
    """Shared by the tests of this module, in order."""

    puppet: ReferenceServer
    server: Any
    api: Api
    receiver: Receiver
    config: Any
    prefix: str
    account: apb.Account
    user_id: str
    friend: str
    room: str


@pytest.fixture(scope="module")
async def world(mariadb_server, redis_server, tmp_path_factory):
    w = World()
    w.puppet = await ReferenceServer(TOKEN, keep_session=True).start()
    workdir = tmp_path_factory.mktemp("puppet")
    w.prefix = harness.new_db_prefix("e")
    w.config = harness.make_database_config(w.prefix, [mariadb_server], 2)
    path = settings_yaml(workdir / "server.yaml", w.config.model_dump(mode="json"), redis_server.url,
                         redis={"key_prefix": f"{w.prefix}:"}, **settings(w.puppet.endpoint))
    migrated = await asyncio.to_thread(run_admin, path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    w.server = await asyncio.to_thread(start_server, workdir, path, name="server", wait_service=SERVICE)
    w.api = await tenant_api(w.server.target)
    w.receiver = await Receiver().start()
    yield w
    await w.receiver.stop()
    await w.puppet.stop()
    w.server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(w.prefix + "_")


async def status_of(w: World, account_id: str) -> str:
    account = await w.api(w.api.accounts.GetAccount, apb.GetAccountRequest(id=account_id))
    return apb.AccountStatus.Name(account.status).removeprefix("ACCOUNT_STATUS_").lower()


async def wait_status(w: World, account_id: str, status: str, timeout: float = 30) -> None:
    async def reached():
        return await status_of(w, account_id) == status

    try:
        await eventually(reached, timeout=timeout, what=f"status {status}")
    except AssertionError:
        history = await w.api(w.api.accounts.ListStatusHistory, apb.ListStatusHistoryRequest(account_id=account_id))
        changes = [(apb.AccountStatus.Name(c.new_status), c.reason, c.error_message) for c in history.status_changes]
        raise AssertionError(f"status {status} not reached in {timeout}s; history (newest first): {changes}; "
                             f"server log tail:\n{w.server.log()[-3000:]}") from None


async def test_qr_scan_login_reaches_online_with_user_info(world):
    w = world
    await w.api(w.api.callbacks.CreateWebhookEndpoint, cpb.CreateWebhookEndpointRequest(url=w.receiver.url))
    w.account = await w.api(w.api.accounts.CreateAccount, apb.CreateAccountRequest(
        account=apb.Account(account_name="real-wecom", provider_token=TOKEN), request_id="create-1"))
    assert w.account.provider_token == ""  # write-only
    state = await w.api(w.api.accounts.StartLogin, apb.StartLoginRequest(id=w.account.id))
    assert state.status == apb.ACCOUNT_STATUS_WAITING_SCAN
    assert state.qr_payload.startswith("https://login.mock.invalid/qr/") and state.qr_code_url == state.qr_payload
    await w.puppet.command("scan", status=3)
    await wait_status(w, w.account.id, "waiting_confirm")
    await w.puppet.command("scan", status=4)
    w.user_id = await w.puppet.command("login", name="Zhang San")
    await wait_status(w, w.account.id, "online")
    account = await w.api(w.api.accounts.GetAccount, apb.GetAccountRequest(id=w.account.id))
    assert account.user_info["user_id"] == w.user_id and account.user_info["name"] == "Zhang San"
    assert account.provider_token == ""
    history = await w.api(w.api.accounts.ListStatusHistory, apb.ListStatusHistoryRequest(account_id=w.account.id))
    assert [apb.AccountStatus.Name(c.new_status) for c in reversed(history.status_changes)][-3:] == [
        "ACCOUNT_STATUS_WAITING_SCAN", "ACCOUNT_STATUS_WAITING_CONFIRM", "ACCOUNT_STATUS_ONLINE"]
    # The callbacks are counted as what delivered them: the puppet-service adapter.
    received = callbacks_received(w)
    assert received.get(("puppet_service", "accepted"), 0) >= 3, received
    assert not any(source == "simulator" for source, _ in received), received


def callbacks_received(w: World) -> dict[tuple[str, str], float]:
    """wework_callbacks_received_total on the server's /metrics: {(source, outcome): count}."""
    counts: dict[tuple[str, str], float] = {}
    for line in httpcall.get(w.server.metrics_url, timeout=5).text.splitlines():
        if line.startswith("wework_callbacks_received_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            counts[(labels["source"], labels["outcome"])] = float(line.split()[-1])
    return counts


async def test_incoming_messages_become_conversations_and_webhooks(world):
    w = world
    w.friend = await w.puppet.command("contact", name="Li Si")
    w.room = await w.puppet.command("room", topic="Project Room", members=[w.friend, w.user_id])
    await w.puppet.command("say", **{"from": w.friend, "to": w.user_id, "text": "hello from Li Si"})
    await w.puppet.command("say", **{"from": w.friend, "to": w.room, "text": "hello room"})

    async def both():
        page = await w.api(w.api.accounts.ListConversations,
                           apb.ListConversationsRequest(account_id=w.account.id))
        got = {c.conversation_id: c for c in page.conversations}
        return got if {w.friend, w.room} <= set(got) and got[w.room].last_msg_content == "hello room" else None

    got = await eventually(both, what="both conversations")
    assert got[w.friend].conversation_type == apb.CONVERSATION_TYPE_PRIVATE
    assert got[w.friend].last_msg_content == "hello from Li Si" and got[w.friend].conversation_name == "Li Si"
    assert got[w.room].conversation_type == apb.CONVERSATION_TYPE_GROUP
    assert got[w.room].conversation_name == "Project Room"

    async def hooked():
        return len(w.receiver.events("message.received")) >= 2

    await eventually(hooked, what="message.received webhooks")
    texts = sorted(e["data"]["content"]["text"] for e in w.receiver.events("message.received"))
    assert texts == ["hello from Li Si", "hello room"]
    stored = await w.api(w.api.callbacks.ListCallbackEvents, cpb.ListCallbackEventsRequest(
        filter=cpb.CallbackEventFilter(event_type="message.received")))
    assert len(stored.callback_events) == 2


async def test_every_send_type_reaches_the_puppet_exactly_once(world):
    w = world
    contents = [
        (w.friend, mpb.MessageContent(text=mpb.TextContent(text="hello from the platform"))),
        (w.room, mpb.MessageContent(at=mpb.AtContent(text="@Li Si please look", user_ids=[w.friend]))),
        (w.friend, mpb.MessageContent(link=mpb.LinkContent(title="Docs", description="read me",
                                                           url="https://example.com/doc",
                                                           thumb_url="https://example.com/t.png"))),
        (w.friend, mpb.MessageContent(miniprogram=mpb.MiniProgramContent(app_id="wx42", title="Shop",
                                                                         page_path="pages/home",
                                                                         thumb_media_id="thumb-9"))),
        (w.friend, mpb.MessageContent(image=mpb.ImageContent(url="https://example.com/photo.png"))),
        (w.room, mpb.MessageContent(file=mpb.FileContent(url="https://example.com/r.pdf", file_name="report.pdf"))),
    ]
    messages = []
    for i, (conversation, content) in enumerate(contents):
        messages.append(await w.api(w.api.messages.SendMessage, mpb.SendMessageRequest(
            account_id=w.account.id, conversation_id=conversation, request_id=f"send-{i}", content=content)))

    async def all_sent():
        got = [await w.api(w.api.messages.GetMessage, mpb.GetMessageRequest(id=m.id)) for m in messages]
        return got if all(m.status == mpb.MESSAGE_STATUS_SENT for m in got) else None

    done = await eventually(all_sent, what="every message sent")
    calls = await w.puppet.calls()
    by_id = {c["id"]: c for c in calls}
    assert len(calls) == len(messages)  # each exactly once, on the puppet's side
    got = [by_id[m.wework_msg_id] for m in done]  # the provider's message id is the wework_msg_id
    assert [c["method"] for c in got] == ["messageSendText", "messageSendText", "messageSendUrl",
                                          "messageSendMiniProgram", "messageSendFile", "messageSendFile"]
    text, at, link, mini, image, file = (c["args"] for c in got)
    assert text == {"conversationId": w.friend, "text": "hello from the platform", "mentionIdList": []}
    assert at == {"conversationId": w.room, "text": "@Li Si please look", "mentionIdList": [w.friend]}
    assert link["urlLink"] == {"title": "Docs", "description": "read me", "url": "https://example.com/doc",
                               "thumbnailUrl": "https://example.com/t.png"}
    assert (mini["miniProgram"]["appid"], mini["miniProgram"]["title"], mini["miniProgram"]["pagePath"],
            mini["miniProgram"]["thumbKey"]) == ("wx42", "Shop", "pages/home", "thumb-9")
    assert image == {"conversationId": w.friend,
                     "file": {"name": "photo.png", "type": 2, "url": "https://example.com/photo.png"}}
    assert file == {"conversationId": w.room,
                    "file": {"name": "report.pdf", "type": 2, "url": "https://example.com/r.pdf"}}

    async def hooked():
        sent = {e["data"].get("message_id") for e in w.receiver.events("message.sent")}
        return {m.id for m in messages} <= sent

    await eventually(hooked, what="message.sent webhooks")


async def history_of(w: World, account_id: str) -> list:
    """The account's status changes, newest first."""
    page = await w.api(w.api.accounts.ListStatusHistory, apb.ListStatusHistoryRequest(account_id=account_id))
    return list(page.status_changes)


async def test_a_restarted_provider_recovers_the_account_without_a_new_qr(world):
    w = world
    before = len(await history_of(w, w.account.id))
    await w.puppet.kill()

    async def went_offline():  # OFFLINE can turn RECOVERING between two polls: read the history
        changes = await history_of(w, w.account.id)
        return any(c.new_status == apb.ACCOUNT_STATUS_OFFLINE for c in changes[:len(changes) - before])

    await eventually(went_offline, timeout=30, what="the account going offline")
    await w.puppet.restart()  # the provider kept the session
    await wait_status(w, w.account.id, "online", timeout=45)
    history = await w.api(w.api.accounts.ListStatusHistory, apb.ListStatusHistoryRequest(account_id=w.account.id))
    assert history.status_changes[0].reason in ("recovered", "reconnected")
    assert not any(c.new_status == apb.ACCOUNT_STATUS_WAITING_SCAN for c in history.status_changes[:3])
    restored = (await w.puppet.wait_event("restored"))["user"]
    friend = await w.puppet.command("contact", name="Zhao Liu")
    await w.puppet.command("say", **{"from": friend, "to": restored, "text": "after the restart"})

    async def arrived():
        page = await w.api(w.api.accounts.ListConversations, apb.ListConversationsRequest(account_id=w.account.id))
        return any(c.last_msg_content == "after the restart" for c in page.conversations)

    await eventually(arrived, what="a message after the restart")


async def test_logout(world):
    w = world
    account = await w.api(w.api.accounts.Logout, apb.LogoutRequest(id=w.account.id))
    assert account.status == apb.ACCOUNT_STATUS_OFFLINE
    await asyncio.sleep(1)  # the puppet's LOGOUT event arrives and changes nothing
    assert await status_of(w, w.account.id) == "offline"


async def test_a_wrong_token_ends_in_error_with_a_readable_reason(world):
    w = world
    account = await w.api(w.api.accounts.CreateAccount, apb.CreateAccountRequest(
        account=apb.Account(account_name="wrong-token", provider_token=WRONG_TOKEN)))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await w.api(w.api.accounts.StartLogin, apb.StartLoginRequest(id=account.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "refused the account's puppet-service token" in caught.value.details()
    got = await w.api(w.api.accounts.GetAccount, apb.GetAccountRequest(id=account.id))
    assert got.status == apb.ACCOUNT_STATUS_ERROR
    assert got.error_message.startswith("TOKEN_REFUSED: the provider refused the account's puppet-service token")
    # A malformed token is refused without being repeated.
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await w.api(w.api.accounts.UpdateAccount, apb.UpdateAccountRequest(
            account=apb.Account(id=account.id, provider_token="has a space " + WRONG_TOKEN),
            update_mask={"paths": ["provider_token"]}))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "account.provider_token" in str(bad.value.trailing_metadata())
    # A corrected token (UpdateAccount) is taken.
    fixed = await w.api(w.api.accounts.UpdateAccount, apb.UpdateAccountRequest(
        account=apb.Account(id=account.id, provider_token=TOKEN, etag=got.etag),
        update_mask={"paths": ["provider_token"]}))
    assert fixed.provider_token == ""


async def test_the_token_is_in_no_answer_log_line_or_stored_payload(world, mariadb_server):
    w = world
    for token in (TOKEN, WRONG_TOKEN):
        secret = token.encode()
        assert not [a for a in w.api.seen if secret in a], "an RPC answer carried the token"
        assert token not in w.server.log(), "the server logged the token"
        assert not [b for b in w.receiver.raw if secret in b], "a webhook carried the token"
    names = harness.physical_database_names(w.config)
    conn_dbs = [(kind, name) for (kind, _), name in names.items() if kind in ("callback", "account")]
    for kind, database in conn_dbs:
        conn = mariadb_server.sync_connect(database)
        try:
            with conn.cursor() as cur:
                if kind == "callback":
                    cur.execute("SELECT COUNT(*) FROM callback_events WHERE raw_data LIKE %s OR raw_data LIKE %s",
                                (f"%{TOKEN}%", f"%{WRONG_TOKEN}%"))
                    assert cur.fetchone()[0] == 0
                    cur.execute("SELECT COUNT(*) FROM callback_events")
                else:
                    cur.execute("SELECT provider_token FROM wework_accounts WHERE provider_token IS NOT NULL")
                    for (stored,) in cur.fetchall():
                        assert TOKEN not in stored and WRONG_TOKEN not in stored  # ciphertext
        finally:
            conn.close()
