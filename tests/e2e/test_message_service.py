"""MessageService end to end: a real wework-server over MariaDB shards and Redis, with the provider
simulator in the server; an ONLINE account made through the account flow (CreateAccount +
StartLogin with the simulator's short delays), driven through the client facade.

Conversations: SendMessage accepts any well-formed conversation_id of an account of the caller's
tenant (docs/messages.md, "Conversations"), so these tests need not seed conversations.
Delivery: the dispatcher (engineer B's part) runs inside the server; the tests here check what
SendMessage, Cancel and Retry do, and that accepted messages are sent (immediately, and in
priority order once a held account comes online). Crash safety and pacing are tested with the
dispatcher's own tests.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import harness
import pytest
import sqlalchemy as sa
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from serverproc import TEST_ADMIN_KEY, online_account, run_admin, settings_yaml, start_server
from wework.client import (
    AbortedError,
    AlreadyExistsError,
    AsyncWeworkClient,
    ClientOptions,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    WeworkClient,
)
from wework.persistence.database import Database
from wework.v1 import account_pb2 as apb
from wework.v1 import message_pb2 as pb
from wework.v1 import message_pb2_grpc
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SERVICE = "wework.v1.MessageService"
SETTINGS = {
    "provider": {"simulator": {"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                               "heartbeat_interval_seconds": 0.5}},
    # The dispatcher runs in the server (engineer B's part); fast pacing keeps the tests short.
    "message": {"account_min_interval_seconds": 0.05, "account_jitter_seconds": 0, "hold_recheck_seconds": 0.5,
                "idle_poll_seconds": 0.2},
}
DONE = (pb.MESSAGE_STATUS_SENT, pb.MESSAGE_STATUS_DELIVERED)


class MessagePlatform:
    def __init__(self, mariadb_server, redis_server, workdir) -> None:
        self.workdir = workdir
        self.prefix = harness.new_db_prefix("e")
        self.config = harness.make_database_config(self.prefix, [mariadb_server], 2)
        self.settings = settings_yaml(workdir / "server.yaml", self.config.model_dump(mode="json"),
                                      redis_server.url, redis={"key_prefix": f"{self.prefix}:"}, **SETTINGS)
        self.server = None

    def client(self, **options) -> WeworkClient:
        return WeworkClient(ClientOptions(target=self.server.target, **options))

    def new_tenant(self, **fields) -> tuple[tpb.Tenant, str]:
        code = f"t{uuid.uuid4().hex[:12]}"
        with self.client(api_key=TEST_ADMIN_KEY) as admin:
            tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code, **fields))
        return tenant, self.key(tenant.id)

    def key(self, tenant_id: str) -> str:
        with self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant_id) as admin:
            roles = {r.role_code: r.id for r in admin.tenants.iter_roles()}
            return admin.tenants.create_api_key(tpb.ApiKey(display_name="e2e", role_id=roles["admin"])).secret

    def online_account(self, client: WeworkClient, name: str = "sender") -> apb.Account:
        return online_account(client, name)

    async def sql(self, tenant_id: str, statement: str, **params):
        db = Database(self.config, ["message"])
        try:
            async with db.unit_of_work("message", tenant_id) as uow:
                result = await uow.session.execute(sa.text(statement), params)
                return result.all() if result.returns_rows else None
        finally:
            await db.dispose()


@pytest.fixture(scope="module")
def mp(mariadb_server, redis_server, tmp_path_factory):
    p = MessagePlatform(mariadb_server, redis_server, tmp_path_factory.mktemp("messages"))
    migrated = run_admin(p.settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    p.server = start_server(p.workdir, p.settings, name="server", wait_service=SERVICE)
    yield p
    p.server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(p.prefix + "_")


@pytest.fixture
def sender(mp):
    """(tenant, client with the tenant's admin key, an ONLINE account)."""
    tenant, key = mp.new_tenant()
    with mp.client(api_key=key) as client:
        yield tenant, client, mp.online_account(client)


def text(value: str) -> pb.MessageContent:
    return pb.MessageContent(text=pb.TextContent(text=value))


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def struct(**values) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


# ---- sending ------------------------------------------------------------------------------------


def test_send_now_is_stored_and_readable(sender):
    _, client, account = sender
    sent = client.messages.send_message(account_id=account.id, conversation_id="wmchat-1", content=text("hello"))
    assert sent.id and sent.account_id == account.id and sent.priority == 5
    assert sent.message_type == pb.MESSAGE_TYPE_TEXT and sent.content.text.text == "hello"
    assert not sent.HasField("scheduled_time")
    got = wait_status(client, sent.id, DONE)
    assert got.id == sent.id and got.content.text.text == "hello"
    assert got.wework_msg_id and got.HasField("send_time")


def wait_status(client: WeworkClient, message_id: str, statuses, timeout: float = 20) -> pb.Message:
    deadline = time.monotonic() + timeout
    while True:
        m = client.messages.get_message(message_id)
        if m.status in statuses or time.monotonic() > deadline:
            assert m.status in statuses, (pb.MessageStatus.Name(m.status), m.hold_reason, m.error_message)
            return m
        time.sleep(0.1)


def test_scheduled_messages_of_every_priority_are_sent_when_due(sender):
    # The claim order (priority, then age) is not observable through this API: send_time is the
    # claim time, the same for everything one claim takes. The dispatcher's own tests check it.
    _, client, account = sender
    when = datetime.now(UTC) + timedelta(seconds=2)
    sent = [client.messages.send_message(account_id=account.id, conversation_id="c", content=text(f"p{p}"),
                                         priority=p, scheduled_time=ts(when)) for p in (1, 5, 10, 3)]
    assert [m.priority for m in sent] == [1, 5, 10, 3]
    assert all(client.messages.get_message(m.id).status == pb.MESSAGE_STATUS_PENDING for m in sent)
    done = [wait_status(client, m.id, DONE) for m in sent]
    assert all(m.send_time.ToDatetime(tzinfo=UTC) >= when for m in done)


def test_messages_of_an_account_that_is_not_online_are_held_visibly(mp):
    _, key = mp.new_tenant()
    with mp.client(api_key=key) as client:
        account = client.accounts.create_account(apb.Account(account_name="not-yet-online"))
        m = client.messages.send_message(account_id=account.id, conversation_id="c", content=text("wait"))
        deadline = time.monotonic() + 10
        while not (held := client.messages.get_message(m.id)).hold_reason:
            assert time.monotonic() < deadline, "no hold_reason"
            time.sleep(0.1)
        assert held.status == pb.MESSAGE_STATUS_PENDING
        client.accounts.start_login(account.id)
        assert wait_status(client, m.id, DONE).hold_reason == ""


def test_every_content_type_is_accepted(sender):
    _, client, account = sender
    contents = [
        # media_id names an uploaded media of the tenant (tests/e2e/test_media.py); a URL here
        pb.MessageContent(image=pb.ImageContent(url="https://cdn.example.com/a.png")),
        pb.MessageContent(file=pb.FileContent(url="https://cdn.example.com/a.pdf", file_name="a.pdf")),
        pb.MessageContent(link=pb.LinkContent(title="t", url="https://example.com")),
        pb.MessageContent(miniprogram=pb.MiniProgramContent(app_id="wx1", title="t", thumb_media_id="m")),
        pb.MessageContent(at=pb.AtContent(text="hi", user_ids=["u1", "u2"])),
    ]
    for content in contents:
        m = client.messages.send_message(account_id=account.id, conversation_id="wmchat-2", content=content)
        assert m.content == content
    assert len(list(client.messages.iter_messages(conversation_id="wmchat-2"))) == 5


def test_scheduled_send_and_priority_are_kept_and_filterable(sender):
    _, client, account = sender
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    low = client.messages.send_message(account_id=account.id, conversation_id="c", content=text("low"), priority=1,
                                       scheduled_time=ts(when))
    high = client.messages.send_message(account_id=account.id, conversation_id="c", content=text("high"),
                                        priority=10, scheduled_time=ts(when))
    assert (low.priority, high.priority) == (1, 10)
    assert high.scheduled_time.ToDatetime(tzinfo=UTC) == when
    # Not due for two hours: still PENDING whatever the dispatcher does.
    for m in (low, high):
        assert client.messages.get_message(m.id).status == pb.MESSAGE_STATUS_PENDING
    pending = list(client.messages.iter_messages(status=pb.MESSAGE_STATUS_PENDING, account_id=account.id))
    assert [m.id for m in pending] == [high.id, low.id]  # newest first


def test_list_pages_and_filters(sender):
    _, client, account = sender
    ids = [client.messages.send_message(account_id=account.id, conversation_id=f"c{i % 2}",
                                        content=text(f"m{i}")).id for i in range(5)]
    page = client.messages.list_messages(page_size=2)
    assert [m.id for m in page.messages] == ids[::-1][:2] and page.next_page_token
    assert [m.id for m in client.messages.iter_messages(page_size=2)] == ids[::-1]
    assert [m.id for m in client.messages.iter_messages(conversation_id="c0")] == ids[::-2]
    future = ts(datetime.now(UTC) + timedelta(hours=1))
    assert list(client.messages.iter_messages(start_time=future)) == []


# ---- templates ---------------------------------------------------------------------------------


def test_template_send_renders_counts_usage_and_previews(sender):
    _, client, account = sender
    template = client.messages.create_template(pb.MessageTemplate(
        template_name="greeting", template_type=pb.MESSAGE_TYPE_TEXT, category="ops", tags=["welcome"],
        template_content=text("Hi {{name}}, you have {{n}} new item(s)"),
        variables=[pb.TemplateVariable(name="name", required=True),
                   pb.TemplateVariable(name="n", type=pb.VARIABLE_TYPE_NUMBER, default_value="1")],
        preview_data=struct(name="Preview")))
    assert template.usage_count == 0 and template.etag
    preview = client.messages.render_template_preview(template.id)
    assert preview.content.text.text == "Hi Preview, you have 1 new item(s)"
    m = client.messages.send_message(account_id=account.id, conversation_id="c", template_id=template.id,
                                     variables=struct(name="Ann", n=3))
    assert m.content.text.text == "Hi Ann, you have 3 new item(s)" and m.template_id == template.id
    used = client.messages.get_template(template.id)
    assert used.usage_count == 1 and used.HasField("last_used_time")
    assert [t.id for t in client.messages.iter_templates(tag="welcome")] == [template.id]
    assert list(client.messages.iter_templates(tag="other")) == []
    updated = client.messages.update_template(pb.MessageTemplate(id=template.id, etag=used.etag, is_active=False),
                                              update_mask=["is_active"])
    assert not updated.is_active
    with pytest.raises(FailedPreconditionError):  # inactive templates cannot send
        client.messages.send_message(account_id=account.id, conversation_id="c", template_id=template.id,
                                     variables=struct(name="Bo"))
    with pytest.raises(AbortedError):  # stale etag (AIP-154)
        client.messages.update_template(pb.MessageTemplate(id=template.id, etag=used.etag, category="x"),
                                        update_mask=["category"])
    client.messages.delete_template(template.id)
    with pytest.raises(NotFoundError):
        client.messages.get_template(template.id)


def test_template_names_are_unique_and_private_templates_belong_to_their_creator(mp, sender):
    tenant, client, account = sender
    private = client.messages.create_template(pb.MessageTemplate(
        template_name="mine", template_type=pb.MESSAGE_TYPE_TEXT, template_content=text("x")))
    public = client.messages.create_template(pb.MessageTemplate(
        template_name="ours", template_type=pb.MESSAGE_TYPE_TEXT, template_content=text("y"), is_public=True))
    with pytest.raises(AlreadyExistsError):
        client.messages.create_template(pb.MessageTemplate(
            template_name="mine", template_type=pb.MESSAGE_TYPE_TEXT, template_content=text("z")))
    with mp.client(api_key=mp.key(tenant.id)) as colleague:
        with pytest.raises(NotFoundError):
            colleague.messages.get_template(private.id)
        with pytest.raises(NotFoundError):
            colleague.messages.send_message(account_id=account.id, conversation_id="c", template_id=private.id)
        assert [t.id for t in colleague.messages.iter_templates()] == [public.id]
        assert colleague.messages.send_message(account_id=account.id, conversation_id="c",
                                               template_id=public.id).content.text.text == "y"


# ---- cancel and retry --------------------------------------------------------------------------


def test_cancel_pending_gives_quota_back_and_refuses_twice(mp):
    _, key = mp.new_tenant(max_daily_messages=1)
    with mp.client(api_key=key) as client:
        account = mp.online_account(client)
        later = ts(datetime.now(UTC) + timedelta(hours=1))
        m = client.messages.send_message(account_id=account.id, conversation_id="c", content=text("a"),
                                         scheduled_time=later)
        with pytest.raises(ResourceExhaustedError):
            client.messages.send_message(account_id=account.id, conversation_id="c", content=text("b"))
        cancelled = client.messages.cancel_message(m.id)
        assert cancelled.status == pb.MESSAGE_STATUS_CANCELLED
        with pytest.raises(FailedPreconditionError):
            client.messages.cancel_message(m.id)
        with pytest.raises(FailedPreconditionError):  # only FAILED messages are retried
            client.messages.retry_message(m.id)
        # The unit came back: one more send fits.
        client.messages.send_message(account_id=account.id, conversation_id="c", content=text("c"),
                                     scheduled_time=later)


def test_retry_failed_message_goes_back_to_pending(mp, sender):
    tenant, client, account = sender
    m = client.messages.send_message(account_id=account.id, conversation_id="c", content=text("x"),
                                     scheduled_time=ts(datetime.now(UTC) + timedelta(hours=1)))
    # A failure as the dispatcher records it (the state is the test's setup, not under test).
    asyncio.run(mp.sql(tenant.id, "UPDATE messages SET status='failed', error_code='E_TEST', "
                                  "error_message='boom' WHERE id=:id", id=m.id))
    failed = client.messages.get_message(m.id)
    assert failed.status == pb.MESSAGE_STATUS_FAILED and failed.error_code == "E_TEST"
    retried = client.messages.retry_message(m.id)
    assert retried.status == pb.MESSAGE_STATUS_PENDING and retried.retry_count == 1 and not retried.error_code
    with pytest.raises(FailedPreconditionError):
        client.messages.retry_message(m.id)


# ---- bad input, other tenants, suspension ------------------------------------------------------


def _bad_cases(account_id: str):
    past = ts(datetime.now(UTC) - timedelta(minutes=1))
    return [
        ({"content": text("")}, ["content.text.text"]),
        ({"content": text("x" * 4001)}, ["content.text.text"]),
        ({"content": pb.MessageContent(link=pb.LinkContent(title="t", url="not a url"))}, ["content.link.url"]),
        ({"content": pb.MessageContent(image=pb.ImageContent())}, ["content.image.media_id"]),
        ({"content": pb.MessageContent(file=pb.FileContent(file_name="a"))}, ["content.file.media_id"]),
        ({"content": pb.MessageContent(at=pb.AtContent(text="hi"))}, ["content.at.user_ids"]),
        ({"content": text("x"), "scheduled_time": past}, ["scheduled_time"]),
        ({"content": text("x"), "priority": 11}, ["priority"]),
        ({"content": text("x"), "conversation_id": ""}, ["conversation_id"]),
        ({}, ["content"]),
        ({"content": text("x"), "account_id": ""}, ["account_id"]),
        ({"content": text(""), "priority": -1, "scheduled_time": past},
         ["priority", "scheduled_time", "content.text.text"]),
    ]


def test_bad_input_names_each_field_and_writes_nothing(mp):
    _, key = mp.new_tenant(max_daily_messages=3)
    with mp.client(api_key=key) as client:
        account = mp.online_account(client)
        template = client.messages.create_template(pb.MessageTemplate(
            template_name="t", template_type=pb.MESSAGE_TYPE_TEXT, template_content=text("{{a}}"),
            variables=[pb.TemplateVariable(name="a", required=True)]))
        cases = _bad_cases(account.id) + [
            ({"template_id": template.id}, ["variables.a"]),
            ({"template_id": template.id, "variables": struct(a="x", b="y")}, ["variables.b"]),
        ]
        for fields, paths in cases:
            request = {"account_id": account.id, "conversation_id": "c", **fields}
            with pytest.raises(InvalidArgumentError) as err:
                client.messages.send_message(**request)
            assert [v.field for v in err.value.field_violations] == paths, fields
        assert list(client.messages.iter_messages()) == []
        assert client.messages.get_template(template.id).usage_count == 0
        # Nothing was counted against the quota either: all three sends still fit.
        for _ in range(3):
            client.messages.send_message(account_id=account.id, conversation_id="c", content=text("ok"))


def test_another_tenants_resources_are_not_found(mp, sender):
    _, client, account = sender
    m = client.messages.send_message(account_id=account.id, conversation_id="c", content=text("x"))
    t = client.messages.create_template(pb.MessageTemplate(
        template_name="p", template_type=pb.MESSAGE_TYPE_TEXT, template_content=text("x"), is_public=True))
    _, other_key = mp.new_tenant()
    with mp.client(api_key=other_key) as other:
        calls = [
            lambda: other.messages.send_message(account_id=account.id, conversation_id="c", content=text("x")),
            lambda: other.messages.get_message(m.id),
            lambda: other.messages.cancel_message(m.id),
            lambda: other.messages.retry_message(m.id),
            lambda: other.messages.get_template(t.id),
            lambda: other.messages.render_template_preview(t.id),
            lambda: other.messages.delete_template(t.id),
        ]
        for call in calls:
            with pytest.raises(NotFoundError):
                call()
        assert list(other.messages.iter_messages()) == []
    assert client.messages.get_message(m.id).id == m.id


def test_suspended_tenant_cannot_send(mp):
    tenant, key = mp.new_tenant()
    with mp.client(api_key=key) as client:
        account = mp.online_account(client)
        with mp.client(api_key=TEST_ADMIN_KEY) as admin:
            admin.tenants.suspend_tenant(tpb.SuspendTenantRequest(id=tenant.id))
            try:
                with pytest.raises(FailedPreconditionError) as err:
                    client.messages.send_message(account_id=account.id, conversation_id="c", content=text("x"))
                assert err.value.reason == "TENANT_SUSPENDED"
            finally:
                admin.tenants.resume_tenant(tpb.ResumeTenantRequest(id=tenant.id))


# ---- quota and idempotency ---------------------------------------------------------------------


async def test_quota_boundary_under_concurrency_accepts_exactly_n(mp):
    n, m = 7, 25
    _, key = mp.new_tenant(max_daily_messages=n)
    with mp.client(api_key=key) as sync_client:
        account = mp.online_account(sync_client)
    async with AsyncWeworkClient(ClientOptions(mp.server.target, api_key=key)) as client:
        results = await asyncio.gather(*(
            client.messages.send_message(account_id=account.id, conversation_id="c", content=text(f"q{i}"),
                                         scheduled_time=ts(datetime.now(UTC) + timedelta(hours=1)))
            for i in range(m)), return_exceptions=True)
        accepted = [r for r in results if isinstance(r, pb.Message)]
        refused = [r for r in results if isinstance(r, ResourceExhaustedError)]
        assert (len(accepted), len(refused)) == (n, m - n), [type(r) for r in results]
        assert refused[0].quota_violations and refused[0].reason == "QUOTA_EXCEEDED"
        stored = [x async for x in client.messages.iter_messages()]
        assert sorted(x.id for x in stored) == sorted(x.id for x in accepted)


def test_request_id_makes_send_idempotent_and_costs_quota_once(mp):
    _, key = mp.new_tenant(max_daily_messages=2)
    with mp.client(api_key=key) as client:
        account = mp.online_account(client)
        request = pb.SendMessageRequest(account_id=account.id, conversation_id="c", content=text("once"),
                                        request_id=str(uuid.uuid4()))
        first = client.messages.send_message(request)
        again = client.messages.send_message(request)
        assert again.id == first.id
        assert [x.id for x in client.messages.iter_messages()] == [first.id]
        client.messages.send_message(account_id=account.id, conversation_id="c", content=text("second"))
        with pytest.raises(ResourceExhaustedError):
            client.messages.send_message(account_id=account.id, conversation_id="c", content=text("third"))


def _reused(error: grpc.RpcError) -> dict[str, str]:
    """ErrorInfo metadata of a REQUEST_ID_REUSED refusal (asserting the code and reason)."""
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
    status = rpc_status.from_call(error)
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.reason == "REQUEST_ID_REUSED", info
    return dict(info.metadata)


def test_a_request_id_reused_with_another_request_is_refused(mp):
    """Issue 17: the same request_id with a different payload silently answered the first
    message. Now FAILED_PRECONDITION, reason REQUEST_ID_REUSED, naming the request_id; the
    same request again still answers the first message."""
    _, key = mp.new_tenant()
    with mp.client(api_key=key) as client:
        account = mp.online_account(client)
        stub, md = message_pb2_grpc.MessageServiceStub(client.channel), client.options.credential_metadata()
        request_id = str(uuid.uuid4())

        def send(**changes) -> pb.Message:
            fields = {"account_id": account.id, "conversation_id": "c", "content": text("pay 10"),
                      "request_id": request_id, **changes}
            return stub.SendMessage(pb.SendMessageRequest(**fields), metadata=md, timeout=10)

        first = send()
        for changes in ({"content": text("pay 1000")}, {"conversation_id": "someone-else"}, {"priority": 9},
                        {"scheduled_time": ts(datetime.now(UTC) + timedelta(hours=1))}):
            with pytest.raises(grpc.RpcError) as refused:
                send(**changes)
            metadata = _reused(refused.value)
            assert metadata["request_id"] == request_id and metadata["resource"] == f"messages/{first.id}"
            assert request_id in refused.value.details()
        assert send().id == first.id  # a retry of the same request
        assert [x.id for x in client.messages.iter_messages()] == [first.id]


async def test_concurrent_reuse_of_a_request_id_keeps_the_first_request_only(mp):
    """Queued together (one group commit, the in-process follower path): the requests that
    differ from the one that won are refused; those equal to it answer its message."""
    _, key = mp.new_tenant()
    with mp.client(api_key=key) as sync_client:
        account = mp.online_account(sync_client)
    request_id, later = str(uuid.uuid4()), ts(datetime.now(UTC) + timedelta(hours=1))
    async with AsyncWeworkClient(ClientOptions(mp.server.target, api_key=key)) as client:
        results = await asyncio.gather(*(
            client.messages.send_message(pb.SendMessageRequest(
                account_id=account.id, conversation_id="c", content=text("a" if i % 2 else "b"),
                request_id=request_id, scheduled_time=later))
            for i in range(8)), return_exceptions=True)
        accepted = [r for r in results if isinstance(r, pb.Message)]
        assert len({m.id for m in accepted}) == 1 and len(accepted) == 4, results
        winner = accepted[0].content.text.text
        refused = [r for i, r in enumerate(results) if not isinstance(r, pb.Message)]
        assert len(refused) == 4 and all(getattr(r, "reason", "") == "REQUEST_ID_REUSED" for r in refused), refused
        assert all(("a" if i % 2 else "b") == winner for i, r in enumerate(results) if isinstance(r, pb.Message))
        assert len([x async for x in client.messages.iter_messages()]) == 1


async def test_concurrent_sends_of_one_request_id_answer_one_message_and_cost_one_unit(mp):
    # Sent together they land in one group commit: the batch fails on the duplicate key, is
    # retried message by message, and the duplicates' quota units are given back.
    _, key = mp.new_tenant(max_daily_messages=3)
    with mp.client(api_key=key) as sync_client:
        account = mp.online_account(sync_client)
    request_id = str(uuid.uuid4())
    later = ts(datetime.now(UTC) + timedelta(hours=1))
    async with AsyncWeworkClient(ClientOptions(mp.server.target, api_key=key)) as client:
        sent = await asyncio.gather(*(
            client.messages.send_message(pb.SendMessageRequest(
                account_id=account.id, conversation_id="c", content=text("dup"), request_id=request_id,
                scheduled_time=later))
            for _ in range(6)))
        assert len({m.id for m in sent}) == 1
        others = await asyncio.gather(*(
            client.messages.send_message(account_id=account.id, conversation_id="c", content=text(f"o{i}"),
                                         scheduled_time=later)
            for i in range(3)), return_exceptions=True)
        assert sum(isinstance(r, pb.Message) for r in others) == 2  # 3 units: one went to the duplicates
        assert sum(isinstance(r, ResourceExhaustedError) for r in others) == 1
        assert len([x async for x in client.messages.iter_messages()]) == 3


# ---- statistics (the helper the dispatcher calls on terminal changes) ---------------------------


async def test_record_terminal_status_upserts_the_creation_hour_row(mp):
    from wework.domain.messages import Message, MessageStatus, MessageType, transition
    from wework.persistence.repositories.messages import record_terminal_status, statistics_for

    S = MessageStatus
    tenant_id, account_id = str(uuid.uuid4()), str(uuid.uuid4())
    created = datetime(2026, 1, 2, 13, 5, tzinfo=UTC)
    db = Database(mp.config, ["message"])

    def msg(i: int) -> Message:
        return Message(id=f"m{i}", tenant_id=tenant_id, account_id=account_id, conversation_id="c",
                       message_type=MessageType.TEXT, content={"text": "x"}, created_at=created,
                       updated_at=created, status=S.SENDING, send_time=created)

    try:
        async def apply(m: Message, new: MessageStatus, seconds: float) -> Message:
            now = created + timedelta(seconds=seconds)
            after = transition(m, new, now=now)
            async with db.unit_of_work("message", tenant_id) as uow:
                await record_terminal_status(uow.session, after, m.status, now)
            return after

        sent = await apply(msg(1), S.SENT, 2)
        await apply(msg(2), S.SENT, 4)
        await apply(sent, S.DELIVERED, 9)  # no change: already counted
        failed = await apply(msg(3), S.FAILED, 1)
        async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
            rows = await statistics_for(uow.session, tenant_id, account_id, created.date())
        assert [(r["stat_hour"], r["total"], r["success"], r["failed"]) for r in rows] == [(13, 3, 2, 1)]
        assert float(rows[0]["avg_response_time"]) == pytest.approx(3.0)
        await apply(failed, S.PENDING, 20)  # a retry takes the failure back out
        async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
            rows = await statistics_for(uow.session, tenant_id, account_id, created.date())
        assert [(r["total"], r["success"], r["failed"]) for r in rows] == [(2, 2, 0)]
    finally:
        await db.dispose()


async def test_keyset_pages_are_complete_with_ties_on_create_time(mp):
    # Ties on (created_at, status) are ordered by id; no row may be skipped or repeated.
    from wework.domain.messages import Message, MessageStatus, MessageType
    from wework.persistence.ids import new_id
    from wework.persistence.repositories.messages import MessageFilter

    tenant_id, now = new_id(), datetime.now(UTC)
    # No PENDING rows: the server's dispatcher would claim them and change their status mid-test.
    statuses = [MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.FAILED]
    rows = [Message(id=new_id(), tenant_id=tenant_id, account_id="a", conversation_id="c",
                    message_type=MessageType.TEXT, content={"text": str(i)}, updated_at=now,
                    created_at=now - timedelta(seconds=i // 10), status=statuses[i % 3]) for i in range(100)]
    db = Database(mp.config, ["message"])
    try:
        async with db.unit_of_work("message", tenant_id) as uow:
            await uow.messages.add_many(rows)
        for f, expected in ((MessageFilter(), 100), (MessageFilter(status=MessageStatus.SENT), 34)):
            seen, after = [], None
            while True:
                async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
                    page, after = await uow.messages.list_page(tenant_id, f, after, 7)
                seen += page
                if after is None:
                    break
            assert len(seen) == expected and len({m.id for m in seen}) == expected
            assert [m.created_at for m in seen] == sorted((m.created_at for m in seen), reverse=True)
    finally:
        await db.dispose()
