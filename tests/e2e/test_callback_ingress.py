"""Provider callbacks end to end: real HTTP posts to the callback port of a real wework-server
(MariaDB shards, Redis), gRPC IngestCallback / ListCallbackEvents / GetCallbackEvent /
ReplayCallbacks through the real channel, and the simulator's callbacks through the inbox."""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import harness
import pytest
from google.protobuf import timestamp_pb2
from harness import httpcall
from serverproc import TEST_ADMIN_KEY, free_port, online_account, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, WeworkClient
from wework.domain.callbacks import sign
from wework.v1 import account_pb2 as apb
from wework.v1 import callback_pb2 as cpb
from wework.v1 import callback_pb2_grpc
from wework.v1 import message_pb2 as mpb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SECRET = "provider-callback-secret-for-tests"
SERVICE = "wework.v1.CallbackService"
S = cpb.CallbackEventStatus


class CallbackPlatform:
    def __init__(self, mariadb_server, redis_server, workdir) -> None:
        self.workdir = workdir
        self.prefix = harness.new_db_prefix("e")
        self.config = harness.make_database_config(self.prefix, [mariadb_server], 2)
        self.http_port = free_port()
        self.settings = settings_yaml(
            workdir / "settings.yaml", self.config.model_dump(mode="json"), redis_server.url,
            redis={"key_prefix": f"{self.prefix}:"},
            callback={"http_port": self.http_port, "secret": SECRET, "max_attempts": 3,
                      "backoff_initial_seconds": 0.1, "backoff_max_seconds": 0.2, "idle_poll_seconds": 0.2},
            provider={"simulator": {"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                                    "heartbeat_interval_seconds": 0.5, "delivery_delay_seconds": 0.05}},
            message={"account_min_interval_seconds": 0, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2})
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/provider/callbacks"

    def client(self, **options) -> WeworkClient:
        return WeworkClient(ClientOptions(target=self.server.target, **options))

    def new_tenant(self) -> tuple[tpb.Tenant, str, dict[str, str]]:
        code = f"t{uuid.uuid4().hex[:12]}"
        with self.client(api_key=TEST_ADMIN_KEY) as admin:
            tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=code, tenant_name=code))
        with self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant.id) as admin:
            roles = {r.role_code: r.id for r in admin.tenants.iter_roles()}
            key = admin.tenants.create_api_key(tpb.ApiKey(display_name="e2e", role_id=roles["admin"])).secret
        return tenant, key, roles

    def key_for_role(self, tenant_id: str, role_id: str) -> str:
        with self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant_id) as admin:
            return admin.tenants.create_api_key(tpb.ApiKey(display_name="role", role_id=role_id)).secret


class Callbacks:
    """The CallbackService stub on a client's channel, with its credentials."""

    def __init__(self, client: WeworkClient) -> None:
        self._stub = callback_pb2_grpc.CallbackServiceStub(client.channel)
        self._md = client.options.credential_metadata()

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._md, timeout=10, **kw)


@pytest.fixture(scope="module")
def cp(mariadb_server, redis_server, tmp_path_factory):
    p = CallbackPlatform(mariadb_server, redis_server, tmp_path_factory.mktemp("callbacks"))
    migrated = run_admin(p.settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    p.server = start_server(p.workdir, p.settings, wait_service=SERVICE)
    yield p
    p.server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(p.prefix + "_")


@pytest.fixture
def tenant(cp):
    """(tenant, client with the tenant admin's key, role ids, an account not logged in)."""
    t, key, roles = cp.new_tenant()
    with cp.client(api_key=key) as client:
        account = client.accounts.create_account(apb.Account(account_name="cb",
                                                             config=_struct({"simulator": {"auto_scan": False}})))
        yield t, client, roles, account


def _struct(d):
    from google.protobuf import struct_pb2

    s = struct_pb2.Struct()
    s.update(d)
    return s


def body(guid: str, notify_type: int, data: dict | None = None, *, event_id: str | None = "new") -> bytes:
    doc = {"guid": guid, "notify_type": notify_type, "data": data or {},
           "time": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    if event_id is not None:
        doc["event_id"] = uuid.uuid4().hex if event_id == "new" else event_id
    return json.dumps(doc, separators=(",", ":")).encode()


def post(cp: CallbackPlatform, raw: bytes, *, ts: int | None = None, secret: str = SECRET,
         signature: str | None = None, headers: dict | None = None) -> httpcall.Answer:
    ts = int(time.time()) if ts is None else ts
    h = {"Content-Type": "application/json", "User-Agent": "provider-test/1.0",
         "X-Provider-Timestamp": str(ts), "X-Provider-Signature": signature or sign(secret, ts, raw)}
    if headers is not None:
        h = headers
    return httpcall.post(cp.url, content=raw, headers=h, timeout=10)


def wait_done(callbacks: Callbacks, callback_id: str, *, tenant_id: str = "", timeout: float = 20.0,
              done=lambda e: e.status not in (S.CALLBACK_EVENT_STATUS_RECEIVED, S.CALLBACK_EVENT_STATUS_PROCESSING)
              ) -> cpb.CallbackEvent:
    deadline = time.monotonic() + timeout
    while True:
        event = callbacks.GetCallbackEvent(cpb.GetCallbackEventRequest(id=callback_id, tenant_id=tenant_id))
        if done(event) or time.monotonic() > deadline:
            return event
        time.sleep(0.1)


def wait_settled(callbacks: Callbacks, guid: str, event_types: tuple[str, ...], *,
                 timeout: float = 20.0) -> dict[str, cpb.CallbackEvent]:
    """The account's callbacks by event type once one of each of `event_types` is stored and out
    of RECEIVED / PROCESSING (or as they are at the timeout, for the caller's assertions)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {e.event_type: e for e in callbacks.ListCallbackEvents(cpb.ListCallbackEventsRequest(
            page_size=1000, filter=cpb.CallbackEventFilter(guid=guid))).callback_events}
        settled = all(t in seen and seen[t].status not in (S.CALLBACK_EVENT_STATUS_RECEIVED,
                                                          S.CALLBACK_EVENT_STATUS_PROCESSING) for t in event_types)
        if settled or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def unread(client: WeworkClient, account_id: str, conversation_id: str) -> int | None:
    for c in client.accounts.iter_conversations(apb.ListConversationsRequest(account_id=account_id)):
        if c.conversation_id == conversation_id:
            return c.unread_count
    return None


def metric(cp: CallbackPlatform, series: str) -> float:
    for line in httpcall.get(cp.server.metrics_url, timeout=5).text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


# ---- ingress ------------------------------------------------------------------------------------


def test_signed_callback_is_stored_answered_then_processed(cp, tenant):
    t, client, _, account = tenant
    raw = body(account.guid, 12004, {"conversation_id": "wmchat-in-1", "conversation_name": "Alice",
                                     "sender": "alice", "content": {"text": "hello there"}})
    response = post(cp, raw)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["duplicate"] is False and answer["id"]
    event = wait_done(Callbacks(client), answer["id"])
    assert event.status == S.CALLBACK_EVENT_STATUS_PROCESSED, event.error_message
    assert (event.tenant_id, event.guid, event.notify_type, event.event_type) == (
        t.id, account.guid, 12004, "message.received")
    assert event.raw_data == raw.decode()
    assert event.source_ip == "127.0.0.1" and event.user_agent == "provider-test/1.0"
    assert event.parsed_data["data"]["conversation_id"] == "wmchat-in-1"
    assert event.dedupe_key.startswith("ev:") and event.HasField("process_time")
    assert unread(client, account.id, "wmchat-in-1") == 1


def test_bad_stale_or_missing_signatures_answer_401_and_store_nothing(cp, tenant):
    _, client, _, account = tenant
    before = metric(cp, 'wework_callbacks_received_total{outcome="rejected",source="http"}')
    raw = body(account.guid, 12004, {"conversation_id": "wmchat-forged", "content": {"text": "x"}})
    forged = post(cp, raw, secret="not-the-secret")
    stale = post(cp, raw, ts=int(time.time()) - 3600)
    future = post(cp, raw, ts=int(time.time()) + 3600)
    unsigned = post(cp, raw, headers={"Content-Type": "application/json"})
    tampered_ts = int(time.time())
    tampered = post(cp, raw.replace(b"wmchat-forged", b"wmchat-forgeD"), ts=tampered_ts,
                    signature=sign(SECRET, tampered_ts, raw))
    assert [r.status_code for r in (forged, stale, future, unsigned, tampered)] == [401] * 5
    assert forged.json()["error"].endswith("bad signature") and "stale" in stale.json()["error"]
    listed = Callbacks(client).ListCallbackEvents(cpb.ListCallbackEventsRequest(
        filter=cpb.CallbackEventFilter(guid=account.guid)))
    assert list(listed.callback_events) == []
    assert metric(cp, 'wework_callbacks_received_total{outcome="rejected",source="http"}') >= before + 5
    assert unread(client, account.id, "wmchat-forged") is None
    assert "provider callback refused (bad signature)" in cp.server.log()


def test_a_replayed_signature_is_refused(cp, tenant):
    _, client, _, account = tenant
    raw = body(account.guid, 12004, {"conversation_id": "wmchat-replay", "content": {"text": "x"}})
    ts = int(time.time())
    first = post(cp, raw, ts=ts)
    again = post(cp, raw, ts=ts)  # the same request captured and sent again
    assert first.status_code == 200 and again.status_code == 401
    assert "replayed" in again.json()["error"]
    wait_done(Callbacks(client), first.json()["id"])
    assert unread(client, account.id, "wmchat-replay") == 1


def test_a_replay_with_a_reshaped_signature_header_is_refused(cp, tenant):
    """The same signed request captured and re-sent with its signature header reshaped (issue
    17: 8 of 8 variants were accepted) is still a replay."""
    _, client, _, account = tenant
    raw = body(account.guid, 12004, {"conversation_id": "wmchat-reshaped", "content": {"text": "x"}})
    ts = int(time.time())
    sig, other = sign(SECRET, ts, raw), "v1=" + "0" * 64
    assert post(cp, raw, ts=ts, signature=sig).status_code == 200
    variants = [f"{sig} {sig}", f"{sig}  {other}", f"{other} {sig}", f"{sig} {other}", f"{sig}\t{other}",
                sig.upper(), f"{sig},{other}", f"v1={'1' * 64} {sig}"]
    answers = [post(cp, raw, ts=ts, signature=v) for v in variants]
    assert [a.status_code for a in answers] == [401] * len(variants), [a.text for a in answers]
    assert {a.json()["error"] for a in answers} == {"callback refused: malformed signature",
                                                    "callback refused: replayed signature"}
    listed = Callbacks(client).ListCallbackEvents(cpb.ListCallbackEventsRequest(
        filter=cpb.CallbackEventFilter(guid=account.guid)))
    assert len(listed.callback_events) == 1


def test_duplicates_are_stored_once_and_have_one_effect(cp, tenant):
    _, client, _, account = tenant
    callbacks = Callbacks(client)
    raw = body(account.guid, 12004, {"conversation_id": "wmchat-dup", "content": {"text": "once"}})
    now = int(time.time())
    answers = [post(cp, raw, ts=now - i).json() for i in range(3)]  # the provider retried twice
    assert [a["duplicate"] for a in answers] == [False, True, True]
    assert len({a["id"] for a in answers}) == 1
    # Without an event id the hash of guid, notify_type and body is the key.
    raw2 = body(account.guid, 12004, {"conversation_id": "wmchat-dup", "content": {"text": "twice?"}},
                event_id=None)
    answers2 = [post(cp, raw2, ts=now - i).json() for i in range(3)]
    assert [a["duplicate"] for a in answers2] == [False, True, True]
    for a in (answers[0], answers2[0]):
        assert wait_done(callbacks, a["id"]).status == S.CALLBACK_EVENT_STATUS_PROCESSED
    assert unread(client, account.id, "wmchat-dup") == 2  # two distinct messages, each once
    listed = callbacks.ListCallbackEvents(cpb.ListCallbackEventsRequest(
        filter=cpb.CallbackEventFilter(guid=account.guid, event_type="message.received")))
    assert len(listed.callback_events) == 2
    assert listed.callback_events[1].dedupe_key.startswith("ev:")
    assert listed.callback_events[0].dedupe_key.startswith("h:")


def test_out_of_order_receipts_never_move_a_message_back(cp, tenant):
    _, client, _, account = tenant
    callbacks = Callbacks(client)
    m = client.messages.send_message(account_id=account.id, conversation_id="wmchat-r",
                                     content=mpb.MessageContent(text=mpb.TextContent(text="hi")))
    delivered = post(cp, body(account.guid, 12002, {"msg_id": m.id, "wework_msg_id": "wx-1"})).json()
    assert wait_done(callbacks, delivered["id"]).status == S.CALLBACK_EVENT_STATUS_PROCESSED
    late_sent = post(cp, body(account.guid, 12001, {"msg_id": m.id, "wework_msg_id": "wx-1"})).json()
    late = wait_done(callbacks, late_sent["id"])
    assert late.status == S.CALLBACK_EVENT_STATUS_IGNORED and "moved on" in late.error_message
    got = client.messages.get_message(m.id)
    assert got.status == mpb.MESSAGE_STATUS_DELIVERED
    assert got.wework_msg_id == "wx-1" and got.HasField("callback_time")
    failed_late = post(cp, body(account.guid, 12003, {"msg_id": m.id, "error_code": "X"})).json()
    assert wait_done(callbacks, failed_late["id"]).status == S.CALLBACK_EVENT_STATUS_IGNORED
    assert client.messages.get_message(m.id).status == mpb.MESSAGE_STATUS_DELIVERED


def test_unknown_notify_type_is_kept_and_ignored(cp, tenant):
    _, client, _, account = tenant
    answer = post(cp, body(account.guid, 19999, {"whatever": 1})).json()
    event = wait_done(Callbacks(client), answer["id"])
    assert event.status == S.CALLBACK_EVENT_STATUS_IGNORED
    assert event.event_type == "unknown" and "unknown notify_type 19999" in event.error_message
    assert event.raw_data  # kept


def test_malformed_callback_fails_is_kept_and_can_be_replayed(cp, tenant):
    _, client, roles, account = tenant
    callbacks = Callbacks(client)
    raw = json.dumps({"guid": account.guid, "notify_type": 12002, "data": {"wework_msg_id": "no-msg-id"},
                      "event_id": uuid.uuid4().hex}).encode()
    answer = post(cp, raw).json()
    event = wait_done(callbacks, answer["id"])
    assert event.status == S.CALLBACK_EVENT_STATUS_FAILED
    assert "malformed callback" in event.error_message and "msg_id" in event.error_message
    not_json = post(cp, b"{this is not json").json()
    broken = wait_done(Callbacks(cp.client(api_key=TEST_ADMIN_KEY)), not_json["id"])
    assert broken.status == S.CALLBACK_EVENT_STATUS_FAILED and broken.tenant_id == ""  # unassigned
    assert broken.raw_data == "{this is not json"

    # A viewer may read but not replay.
    with cp.client(api_key=cp.key_for_role(event.tenant_id, roles["viewer"])) as viewer:
        with pytest.raises(grpc.RpcError) as denied:
            Callbacks(viewer).ReplayCallbacks(cpb.ReplayCallbacksRequest(ids=[event.id]))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    replayed = callbacks.ReplayCallbacks(cpb.ReplayCallbacksRequest(ids=[event.id]))
    assert (replayed.replayed_count, list(replayed.ids)) == (1, [event.id])
    again = wait_done(callbacks, event.id, done=lambda e: e.process_time.ToDatetime() > event.process_time.ToDatetime()
                      and e.status == S.CALLBACK_EVENT_STATUS_FAILED)
    assert again.status == S.CALLBACK_EVENT_STATUS_FAILED and again.raw_data == raw.decode()


def test_replay_has_no_second_effect(cp, tenant):
    _, client, _, account = tenant
    callbacks = Callbacks(client)
    start = datetime.now(UTC) - timedelta(seconds=1)
    ids = [post(cp, body(account.guid, 12004, {"conversation_id": "wmchat-rp", "content": {"text": f"m{i}"}}))
           .json()["id"] for i in range(3)]
    for i in ids:
        assert wait_done(callbacks, i).status == S.CALLBACK_EVENT_STATUS_PROCESSED
    assert unread(client, account.id, "wmchat-rp") == 3
    after, before = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    after.FromDatetime(start)
    before.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
    f = cpb.CallbackEventFilter(guid=account.guid, event_type="message.received", received_after=after,
                                received_before=before)
    replayed = callbacks.ReplayCallbacks(cpb.ReplayCallbacksRequest(filter=f))
    assert set(replayed.ids) >= set(ids)
    for i in ids:
        event = wait_done(callbacks, i, done=lambda e: e.status == S.CALLBACK_EVENT_STATUS_PROCESSED
                          and e.retry_count == 0 and e.process_time.seconds > 0)
        assert event.status == S.CALLBACK_EVENT_STATUS_PROCESSED
    time.sleep(0.5)
    assert unread(client, account.id, "wmchat-rp") == 3  # the ledger kept the replays from counting again
    with pytest.raises(grpc.RpcError) as missing_range:
        callbacks.ReplayCallbacks(cpb.ReplayCallbacksRequest(filter=cpb.CallbackEventFilter(guid=account.guid)))
    assert missing_range.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- gRPC ---------------------------------------------------------------------------------------


def test_grpc_ingest_has_the_same_semantics(cp, tenant):
    t, client, _, account = tenant
    with cp.client() as anonymous:  # no tenant credential: the signature authenticates
        ingest = callback_pb2_grpc.CallbackServiceStub(anonymous.channel).IngestCallback
        raw = body(account.guid, 12004, {"conversation_id": "wmchat-grpc", "content": {"text": "g"}})
        ts = int(time.time())
        first = ingest(cpb.IngestCallbackRequest(body=raw, timestamp=ts, signature=sign(SECRET, ts, raw)))
        assert first.callback_event_id and not first.duplicate
        dup = ingest(cpb.IngestCallbackRequest(body=raw, timestamp=ts - 1, signature=sign(SECRET, ts - 1, raw)))
        assert (dup.callback_event_id, dup.duplicate) == (first.callback_event_id, True)
        for request in (cpb.IngestCallbackRequest(body=raw, timestamp=ts, signature=sign(SECRET, ts, raw)),  # replay
                        cpb.IngestCallbackRequest(body=raw, timestamp=ts, signature=sign("wrong", ts, raw)),
                        cpb.IngestCallbackRequest(body=raw, timestamp=ts - 7200,
                                                  signature=sign(SECRET, ts - 7200, raw))):
            with pytest.raises(grpc.RpcError) as refused:
                ingest(request)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    event = wait_done(Callbacks(client), first.callback_event_id)
    assert event.status == S.CALLBACK_EVENT_STATUS_PROCESSED and event.tenant_id == t.id
    assert event.source_ip == "127.0.0.1"
    assert unread(client, account.id, "wmchat-grpc") == 1


def test_a_signed_callback_nested_too_deep_is_refused_for_good(cp, tenant):
    """Was a RecursionError: HTTP 503 / gRPC INTERNAL, so the provider retried forever."""
    _, client, _, account = tenant
    deep = (b'{"guid":"' + account.guid.encode() + b'","notify_type":12004,"event_id":"'
            + uuid.uuid4().hex.encode() + b'","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    response = post(cp, deep)
    assert response.status_code == 400, response.text
    assert "nested" in response.json()["error"] and "Error" not in response.text
    with cp.client() as anonymous:
        ingest = callback_pb2_grpc.CallbackServiceStub(anonymous.channel).IngestCallback
        ts = int(time.time()) + 1
        with pytest.raises(grpc.RpcError) as refused:
            ingest(cpb.IngestCallbackRequest(body=deep, timestamp=ts, signature=sign(SECRET, ts, deep)))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Recursion" not in refused.value.details()
    listed = Callbacks(client).ListCallbackEvents(cpb.ListCallbackEventsRequest(
        filter=cpb.CallbackEventFilter(guid=account.guid)))
    assert list(listed.callback_events) == []  # nothing stored


def test_list_and_get_are_tenant_scoped_and_paged(cp, tenant):
    t, client, _, account = tenant
    other_t, other_key, _ = cp.new_tenant()
    ids = [post(cp, body(account.guid, 19998, {"n": i})).json()["id"] for i in range(5)]
    callbacks = Callbacks(client)
    for i in ids:
        wait_done(callbacks, i)
    pages, token = [], ""
    while True:
        page = callbacks.ListCallbackEvents(cpb.ListCallbackEventsRequest(
            page_size=2, page_token=token, filter=cpb.CallbackEventFilter(
                notify_type=19998, status=S.CALLBACK_EVENT_STATUS_IGNORED)))
        pages.append([e.id for e in page.callback_events])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == list(reversed(ids))  # newest first
    with cp.client(api_key=other_key) as other:
        theirs = Callbacks(other)
        with pytest.raises(grpc.RpcError) as hidden:
            theirs.GetCallbackEvent(cpb.GetCallbackEventRequest(id=ids[0]))
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        assert list(theirs.ListCallbackEvents(cpb.ListCallbackEventsRequest(
            filter=cpb.CallbackEventFilter(guid=account.guid))).callback_events) == []
        with pytest.raises(grpc.RpcError) as naming:
            theirs.ListCallbackEvents(cpb.ListCallbackEventsRequest(filter=cpb.CallbackEventFilter(tenant_id=t.id)))
        assert naming.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with cp.client(api_key=TEST_ADMIN_KEY) as admin:  # the platform admin names the tenant, or sees all
        admin_cb = Callbacks(admin)
        named = admin_cb.ListCallbackEvents(cpb.ListCallbackEventsRequest(
            filter=cpb.CallbackEventFilter(tenant_id=t.id, notify_type=19998)))
        assert {e.id for e in named.callback_events} == set(ids)
        assert admin_cb.GetCallbackEvent(cpb.GetCallbackEventRequest(id=ids[0])).tenant_id == t.id
        assert other_t.id != t.id
    with pytest.raises(grpc.RpcError) as bad:
        callbacks.ListCallbackEvents(cpb.ListCallbackEventsRequest(page_size=-1))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- the simulator ------------------------------------------------------------------------------


def test_full_loop_through_the_simulator(cp):
    """Login via callbacks, send, sent and delivered receipts, an incoming message in
    ListConversations. (The tenant-webhook half of this loop lives in the webhook tests.)"""
    _, key, _ = cp.new_tenant()
    with cp.client(api_key=key) as client:
        callbacks = Callbacks(client)
        account = online_account(client, "loop")
        m = client.messages.send_message(account_id=account.id, conversation_id="wmchat-loop",
                                         content=mpb.MessageContent(text=mpb.TextContent(text="ping")))
        deadline = time.monotonic() + 20
        while client.messages.get_message(m.id).status != mpb.MESSAGE_STATUS_DELIVERED:
            assert time.monotonic() < deadline, "the message was not delivered"
            time.sleep(0.1)
        # The simulator's callbacks went through the inbox: stored and processed. Processing
        # applies a callback's effect (DELIVERED) before it marks the callback, in another
        # transaction, so the callbacks are read once each has settled.
        seen = wait_settled(callbacks, account.guid, ("account.login_qr", "account.qr_scanned", "account.online",
                                                     "message.sent", "message.delivered"))
        for event_type in ("account.qr_scanned", "account.online", "message.delivered"):
            assert seen[event_type].status == S.CALLBACK_EVENT_STATUS_PROCESSED, event_type
        # The dispatcher usually records SENT from the send's answer before the receipt is processed.
        assert seen["message.sent"].status in (S.CALLBACK_EVENT_STATUS_PROCESSED, S.CALLBACK_EVENT_STATUS_IGNORED)
        # StartLogin stored the QR code itself: the provider's LOGIN_QR repeats it, without effect.
        qr = seen["account.login_qr"]
        assert qr.status == S.CALLBACK_EVENT_STATUS_IGNORED and "WAITING_SCAN" in qr.error_message.upper()
        # An incoming message, as the provider posts it.
        answer = post(cp, body(account.guid, 12004, {"conversation_id": "wmchat-loop", "conversation_name": "Bob",
                                                      "sender": "bob", "content": {"text": "pong"}})).json()
        wait_done(callbacks, answer["id"])
        [conv] = [c for c in client.accounts.iter_conversations(apb.ListConversationsRequest(account_id=account.id))
                  if c.conversation_id == "wmchat-loop"]
        assert conv.unread_count == 1 and "pong" in conv.last_msg_content and conv.HasField("last_msg_time")
