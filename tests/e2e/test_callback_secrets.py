"""Credentials planted through the real flow never come back in clear: signed provider callbacks
carrying a login token, a verification code and a provider token (HTTP ingress of a real
wework-server on MariaDB shards and Redis), a verification code sent with SubmitVerificationCode,
then every answer (callback, account and webhook RPCs, with a viewer key and the admin key), the
server's log, the spans exported over OTLP, every row of every database of the platform, its
Redis keys and the tenant webhooks received are searched for them. The login token still
reaches the account (stored encrypted): the effect needs it."""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import UTC, datetime

import grpc
import harness
import pytest
import redis as redis_lib
from google.protobuf import json_format, struct_pb2
from harness import httpcall
from serverproc import TEST_ADMIN_KEY, TEST_SECURITY, free_port, run_admin, settings_yaml, start_server
from test_observability import OtlpReceiver
from test_webhooks import Receiver, receiver  # noqa: F401 - the receiver fixture
from wework.domain.callbacks import sign
from wework.server.security.field_crypto import FieldCipher
from wework.v1 import account_pb2 as apb
from wework.v1 import account_pb2_grpc, callback_pb2_grpc, tenant_pb2_grpc
from wework.v1 import callback_pb2 as cpb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

SECRET = "provider-callback-secret-for-secrets-test"
S = cpb.CallbackEventStatus


def _body(guid: str, notify_type: int, data: dict) -> bytes:
    return json.dumps({"event_id": uuid.uuid4().hex, "guid": guid, "notify_type": notify_type, "data": data,
                       "time": datetime.now(UTC).isoformat()}, separators=(",", ":")).encode()


def _dump(message) -> str:
    return json_format.MessageToJson(message) + str(message)


class Stubs:
    def __init__(self, channel: grpc.Channel, key: str, tenant_id: str = "") -> None:
        self.md = (("x-api-key", key),) + ((("x-wework-tenant", tenant_id),) if tenant_id else ())
        self.accounts = account_pb2_grpc.AccountServiceStub(channel)
        self.callbacks = callback_pb2_grpc.CallbackServiceStub(channel)
        self.tenants = tenant_pb2_grpc.TenantServiceStub(channel)

    def call(self, stub, method: str, request):
        return getattr(stub, method)(request, metadata=self.md, timeout=10)


def test_planted_credentials_are_never_stored_or_shown_in_clear(mariadb_server, redis_server, tmp_path,
                                                                 receiver: Receiver):  # noqa: F811 - the fixture
    login_token = f"planted-login-token-{uuid.uuid4().hex}"
    callback_code = f"code{uuid.uuid4().hex[:10]}"
    submitted_code = f"sub{uuid.uuid4().hex[:10]}"
    provider_token = f"planted-provider-token-{uuid.uuid4().hex}"
    planted = [login_token, callback_code, submitted_code, provider_token]

    prefix = harness.new_db_prefix("e")
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    otlp = OtlpReceiver()
    http_port = free_port()
    settings = settings_yaml(
        tmp_path / "settings.yaml", config.model_dump(mode="json"), redis_server.url,
        redis={"key_prefix": f"{prefix}:"},
        callback={"http_port": http_port, "secret": SECRET, "idle_poll_seconds": 0.2},
        observability={"otlp_endpoint": f"http://127.0.0.1:{otlp.port}"},
        logging={"level": "DEBUG"},
        webhooks={"allowed_target_cidrs": ["127.0.0.0/8"], "retry_schedule_seconds": [0, 0.3],
                  "timeout_seconds": 1, "idle_poll_seconds": 0.2})
    assert run_admin(settings, "migrate").returncode == 0
    server = start_server(tmp_path, settings, env={"OTEL_BSP_SCHEDULE_DELAY": "100"}, name="secrets")
    url = f"http://127.0.0.1:{http_port}/provider/callbacks"

    def post(raw: bytes) -> str:
        ts = int(time.time())
        answer = httpcall.post(url, content=raw, timeout=10, headers={
            "Content-Type": "application/json", "X-Provider-Timestamp": str(ts),
            "X-Provider-Signature": sign(SECRET, ts, raw)})
        assert answer.status_code == 200, answer.text
        texts.append(answer.text)
        return answer.json()["id"]

    texts: list[str] = []  # everything a caller or an operator was shown
    try:
        with grpc.insecure_channel(server.target) as channel:
            admin = Stubs(channel, TEST_ADMIN_KEY)
            tenant = admin.call(admin.tenants, "CreateTenant", tpb.CreateTenantRequest(
                tenant=tpb.Tenant(tenant_code=f"t{uuid.uuid4().hex[:12]}", tenant_name="Secrets")))
            in_tenant = Stubs(channel, TEST_ADMIN_KEY, tenant.id)
            roles = {r.role_code: r.id for r in in_tenant.call(in_tenant.tenants, "ListRoles",
                                                                tpb.ListRolesRequest()).roles}
            keys = {code: in_tenant.call(in_tenant.tenants, "CreateApiKey", tpb.CreateApiKeyRequest(
                api_key=tpb.ApiKey(display_name=code, role_id=roles[code]))).secret for code in ("admin", "viewer")}
            owner, viewer = Stubs(channel, keys["admin"]), Stubs(channel, keys["viewer"])
            endpoint = owner.call(owner.callbacks, "CreateWebhookEndpoint", cpb.CreateWebhookEndpointRequest(
                url=f"{receiver.url}/secrets-{tenant.id}"))
            config_struct = struct_pb2.Struct()
            config_struct.update({"simulator": {"auto_scan": False}})
            account = owner.call(owner.accounts, "CreateAccount", apb.CreateAccountRequest(
                account=apb.Account(account_name="secrets", config=config_struct)))
            owner.call(owner.accounts, "StartLogin", apb.StartLoginRequest(id=account.id))

            def status_is(wanted: int) -> None:
                deadline = time.monotonic() + 20
                while owner.call(owner.accounts, "GetAccount", apb.GetAccountRequest(id=account.id)).status != wanted:
                    assert time.monotonic() < deadline, apb.AccountStatus.Name(wanted)
                    time.sleep(0.1)

            # The provider's login callbacks, the verification code and the session token in them.
            post(_body(account.guid, 11002, {}))
            status_is(apb.ACCOUNT_STATUS_WAITING_CONFIRM)
            post(_body(account.guid, 11004, {"method": "sms", "verification_code": callback_code}))
            status_is(apb.ACCOUNT_STATUS_NEED_VERIFY)
            with pytest.raises(grpc.RpcError) as refused:  # the simulator is not waiting for it
                owner.call(owner.accounts, "SubmitVerificationCode", apb.SubmitVerificationCodeRequest(
                    id=account.id, code=submitted_code))
            texts.append(f"{refused.value.code()} {refused.value.details()} {refused.value.trailing_metadata()}")
            online_id = post(_body(account.guid, 11005, {"user_info": {"name": "Secret Keeper"},
                                                         "login_token": login_token}))
            status_is(apb.ACCOUNT_STATUS_ONLINE)
            incoming_id = post(_body(account.guid, 12004, {
                "conversation_id": "wm-secrets",
                "content": {"text": "hello", "session": {"providerToken": provider_token}}}))

            # Tenant webhooks for the status changes and the incoming message arrive.
            path = f"/secrets-{tenant.id}"
            deadline = time.monotonic() + 20
            while not any(b'"message.received"' in h.body for h in receiver.on(path)):
                assert time.monotonic() < deadline, "no message.received webhook"
                time.sleep(0.1)
            hooks = [h.body.decode() + json.dumps(h.headers) for h in receiver.on(path)]
            assert any('"status":"online"' in h for h in hooks)

            # What operators see: the stored callbacks, redacted, with a viewer key and the admin key.
            listed = viewer.call(viewer.callbacks, "ListCallbackEvents", cpb.ListCallbackEventsRequest(
                page_size=1000, filter=cpb.CallbackEventFilter(guid=account.guid)))
            texts.append(_dump(listed))
            by_id = {e.id: e for e in listed.callback_events}
            online = by_id[online_id]
            assert online.status == S.CALLBACK_EVENT_STATUS_PROCESSED, online.error_message
            assert json.loads(online.raw_data)["data"]["login_token"] == "[REDACTED]"
            assert online.parsed_data["data"]["login_token"] == "[REDACTED]"
            for e in listed.callback_events:
                for stubs in (viewer, in_tenant):
                    texts.append(_dump(stubs.call(stubs.callbacks, "GetCallbackEvent",
                                                  cpb.GetCallbackEventRequest(id=e.id))))
            assert by_id[incoming_id].status == S.CALLBACK_EVENT_STATUS_PROCESSED
            texts.append(_dump(in_tenant.call(in_tenant.callbacks, "ListCallbackEvents",
                                              cpb.ListCallbackEventsRequest(page_size=1000))))
            texts.append(_dump(admin.call(admin.callbacks, "ListCallbackEvents",
                                          cpb.ListCallbackEventsRequest(page_size=1000))))
            # The account RPCs.
            for stubs in (viewer, owner):
                texts.append(_dump(stubs.call(stubs.accounts, "GetAccount", apb.GetAccountRequest(id=account.id))))
                texts.append(_dump(stubs.call(stubs.accounts, "ListAccounts", apb.ListAccountsRequest())))
                texts.append(_dump(stubs.call(stubs.accounts, "GetLoginState", apb.GetLoginStateRequest(
                    id=account.id))))
                texts.append(_dump(stubs.call(stubs.accounts, "ListStatusHistory", apb.ListStatusHistoryRequest(
                    account_id=account.id, page_size=1000))))
                texts.append(_dump(stubs.call(stubs.accounts, "ListConversations", apb.ListConversationsRequest(
                    account_id=account.id))))
            # The webhook RPCs and what was posted.
            texts.append(_dump(owner.call(owner.callbacks, "ListWebhookDeliveries", cpb.ListWebhookDeliveriesRequest(
                webhook_endpoint_id=endpoint.id, page_size=1000))))
            texts.extend(hooks)
    finally:
        server.stop(signal.SIGTERM)
        otlp_spans = [r.SerializeToString() for r in otlp.requests]
        otlp.close()
        stored = _database_text(mariadb_server, prefix)
        cached = _redis_text(redis_server.url, f"{prefix}:")
        mariadb_server.drop_databases(prefix + "_")

    log = server.log()
    assert "callback_events" in stored and account.id in stored  # the search did read the rows
    assert otlp_spans and any(b"GetCallbackEvent" in s for s in otlp_spans)
    for secret in planted:
        assert [t for t in texts if secret in t] == [], f"{secret} in an answer or a webhook"
        assert secret not in log, f"{secret} in the server's log"
        assert secret not in stored, f"{secret} stored in clear"
        assert secret not in cached, f"{secret} in Redis"
        assert not [s for s in otlp_spans if secret.encode() in s], f"{secret} in a span"
    # The effect got the token all the same: the account keeps it, encrypted.
    assert _stored_login_token(stored_tokens) == login_token


stored_tokens: list[str] = []


def _database_text(server, prefix: str) -> str:
    """Every row of every table of the platform's databases, as text (and the accounts' sealed
    login tokens kept aside for the last check)."""
    out: list[str] = []
    stored_tokens.clear()
    for name in server.list_databases(prefix + "_"):
        conn = server.sync_connect(name)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES")
                for (table,) in cur.fetchall():
                    cur.execute(f"SELECT * FROM `{table}`")
                    columns = [d[0] for d in cur.description]
                    for row in cur.fetchall():
                        out.append(f"{table} {row!r}")
                        if table == "wework_accounts":
                            token = dict(zip(columns, row, strict=True))["login_token"]
                            if token:
                                stored_tokens.append(token)
        finally:
            conn.close()
    return "\n".join(out)


def _redis_text(url: str, key_prefix: str) -> str:
    client = redis_lib.Redis.from_url(url)
    out: list[str] = []
    try:
        for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
            kind = client.type(key).decode()
            value = {"string": lambda k: client.get(k), "hash": client.hgetall, "set": client.smembers,
                     "list": lambda k: client.lrange(k, 0, -1), "zset": lambda k: client.zrange(k, 0, -1),
                     "stream": lambda k: client.xrange(k)}.get(kind, lambda k: b"")(key)
            out.append(f"{key!r} {value!r}")
    finally:
        client.close()
    return "\n".join(out)


def _stored_login_token(tokens: list[str]) -> str:
    import base64

    cipher = FieldCipher({k: base64.b64decode(v) for k, v in TEST_SECURITY["encryption_keys"].items()},
                         TEST_SECURITY["active_encryption_key_id"], TEST_SECURITY["lookup_hash_key"].encode())
    [token] = tokens
    return cipher.decrypt(token, context="wework_accounts.login_token")
