"""Tenant webhooks end to end: a real wework-server (MariaDB shards, Redis, the simulator posting
its callbacks through the callback inbox), endpoints managed over gRPC, and a real HTTP receiver
on loopback that verifies every request with PyPI standardwebhooks (an independent
implementation of the Standard Webhooks signature)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field

import grpc
import harness
import pytest
from aiohttp import web
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from serverproc import TEST_ADMIN_KEY, online_account, run_admin, settings_yaml, start_server
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from wework.client import AsyncWeworkClient, ClientOptions, WeworkClient
from wework.v1 import account_pb2 as apb
from wework.v1 import callback_pb2 as pb
from wework.v1 import callback_pb2_grpc as pb_grpc
from wework.v1 import message_pb2 as mpb
from wework.v1 import tenant_pb2 as tpb

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]
SERVICE = "wework.v1.CallbackService"
SETTINGS = {
    "provider": {"simulator": {"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                               "heartbeat_interval_seconds": 0.5, "delivery_delay_seconds": 0.05}},
    "message": {"account_min_interval_seconds": 0.05, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2},
    # Loopback allowed for the receiver; a short schedule and disabling window.
    "webhooks": {"allowed_target_cidrs": ["127.0.0.0/8"], "retry_schedule_seconds": [0, 0.3, 0.3, 0.3, 0.3],
                 "timeout_seconds": 1, "disable_after_seconds": 0.8, "idle_poll_seconds": 0.2,
                 "claim_lease_seconds": 5},
}


# ---- a receiver on its own thread (the tests use the blocking client) ----------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.hits.append(Hit(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        return web.Response(status=self.status.get(request.path, 200))


@pytest.fixture(scope="module")
def receiver():
    rx, ready, stop = Receiver(), threading.Event(), threading.Event()

    def run() -> None:
        async def main() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", rx.handle)
            runner = web.AppRunner(app, shutdown_timeout=0.1)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            rx.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            await runner.cleanup()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield rx
    stop.set()
    thread.join(5)


def verify(secret: str, hit: Hit) -> dict:
    return Webhook(secret).verify(hit.body, {k: hit.headers[k] for k in
                                             ("webhook-id", "webhook-timestamp", "webhook-signature")})


def wait_for(check, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# ---- the platform ---------------------------------------------------------------------------------


class Platform:
    def __init__(self, server) -> None:
        self.server = server

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

    def online_account(self, client: WeworkClient) -> apb.Account:
        return online_account(client, "hooked")


class Hooks:
    """CallbackService's webhook RPCs with one credential."""

    def __init__(self, target: str, api_key: str, tenant_id: str | None = None) -> None:
        self._channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.CallbackServiceStub(self._channel)
        self.md = (("x-api-key", api_key),) + ((("x-wework-tenant", tenant_id),) if tenant_id else ())

    def __getattr__(self, name: str):
        method = getattr(self.stub, name)
        return lambda request: method(request, metadata=self.md, timeout=10)

    def close(self) -> None:
        self._channel.close()


@pytest.fixture(scope="module")
def platform(mariadb_server, redis_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("webhooks")
    prefix = harness.new_db_prefix("e")
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    settings = settings_yaml(workdir / "server.yaml", config.model_dump(mode="json"), redis_server.url,
                             redis={"key_prefix": f"{prefix}:"}, **SETTINGS)
    migrated = run_admin(settings, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    server = start_server(workdir, settings, name="server", wait_service=SERVICE)
    yield Platform(server)
    server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(prefix + "_")


def _details(err: grpc.RpcError) -> tuple[str, list]:
    status = rpc_status.from_call(err)
    reason, violations = "", []
    for d in status.details if status else []:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            reason = info.reason
        elif d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            violations = [(v.field, v.reason) for v in br.field_violations]
    return reason, violations


# ---- tests ----------------------------------------------------------------------------------------


def test_full_loop_login_send_and_receipts_arrive_as_verified_webhooks(platform, receiver):
    _, key, _ = platform.new_tenant()
    hooks = Hooks(platform.server.target, key)
    try:
        ep = hooks.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(
            url=receiver.url + "/loop", description="all events", request_id="create-1"))
        assert ep.signing_secret.startswith("whsec_") and ep.status == pb.WEBHOOK_ENDPOINT_STATUS_ENABLED
        # Idempotent create: the same request answers the same endpoint and secret.
        again = hooks.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(
            url=receiver.url + "/loop", description="all events", request_id="create-1"))
        assert (again.id, again.signing_secret) == (ep.id, ep.signing_secret)
        assert hooks.GetWebhookEndpoint(pb.GetWebhookEndpointRequest(id=ep.id)).signing_secret == ""

        with platform.client(api_key=key) as client:
            account = platform.online_account(client)
            msg = client.messages.send_message(mpb.SendMessageRequest(
                account_id=account.id, conversation_id="wx-friend-1",
                content=mpb.MessageContent(text=mpb.TextContent(text="hello webhooks"))))

        def events():
            return [verify(ep.signing_secret, h) for h in receiver.on("/loop")]

        def has(event_type, **match):
            return any(e["type"] == event_type and all(e["data"].get(k) == v for k, v in match.items())
                       for e in events())

        # The dispatcher records "sent" from the provider's answer; the provider's "sent" receipt
        # then confirms it and makes the one message.sent event.
        wait_for(lambda: has("message.delivered") and has("message.sent"), what="message.sent and .delivered")
        assert [e["type"] for e in events()].count("message.sent") == 1
        sent = next(e for e in events() if e["type"] == "message.sent")
        assert sent["data"]["message_id"] == msg.id and sent["data"]["status"] == "sent"
        assert any(e["type"] == "account.status_changed" for e in events())
        delivered = next(e for e in events() if e["type"] == "message.delivered")
        assert msg.id in str(delivered["data"])
        ids = [h.headers["webhook-id"] for h in receiver.on("/loop")]
        assert len(ids) == len(set(ids))  # one post per event, each with its own id

        listed = hooks.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(webhook_endpoint_id=ep.id))
        assert {d.event_id for d in listed.webhook_deliveries} == set(ids)
        for d in listed.webhook_deliveries:
            assert d.status == pb.WEBHOOK_DELIVERY_STATUS_SUCCEEDED and d.attempts[0].response_status == 200
    finally:
        hooks.close()


def test_endpoint_management_validation_ssrf_and_permissions(platform, receiver):
    tenant, key, roles = platform.new_tenant()
    hooks = Hooks(platform.server.target, key)
    viewer = Hooks(platform.server.target, platform.key_for_role(tenant.id, roles["viewer"]))
    admin = Hooks(platform.server.target, TEST_ADMIN_KEY, tenant.id)
    try:
        with pytest.raises(grpc.RpcError) as bad:
            hooks.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url="ftp://x", event_types=["nope"]))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert {f for f, _ in _details(bad.value)[1]} == {"url", "event_types[0]"}
        # (127.0.0.0/8 is allowed on this server for the receiver; ::1 is not.)
        for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.1/", "http://[::1]/",
                    "http://192.168.1.1:8443/x"):
            with pytest.raises(grpc.RpcError) as refused:
                hooks.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=url))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert _details(refused.value)[1] == [("url", "WEBHOOK_TARGET_NOT_ALLOWED")], url

        ep = hooks.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(
            url=receiver.url + "/crud", event_types=["message.*"]))
        with pytest.raises(grpc.RpcError) as denied:
            viewer.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=receiver.url + "/v"))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert [e.id for e in viewer.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest()).webhook_endpoints] \
            == [ep.id]
        assert admin.GetWebhookEndpoint(pb.GetWebhookEndpointRequest(id=ep.id)).url == ep.url

        mask = field_mask_pb2.FieldMask(paths=["event_types", "description"])
        updated = hooks.UpdateWebhookEndpoint(pb.UpdateWebhookEndpointRequest(
            webhook_endpoint=pb.WebhookEndpoint(id=ep.id, event_types=["account.status_changed"],
                                                description="accounts only", etag=ep.etag), update_mask=mask))
        assert list(updated.event_types) == ["account.status_changed"] and updated.etag != ep.etag
        with pytest.raises(grpc.RpcError) as stale:
            hooks.UpdateWebhookEndpoint(pb.UpdateWebhookEndpointRequest(
                webhook_endpoint=pb.WebhookEndpoint(id=ep.id, description="x", etag=ep.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["description"])))
        assert stale.value.code() == grpc.StatusCode.ABORTED
        with pytest.raises(grpc.RpcError) as private:
            hooks.UpdateWebhookEndpoint(pb.UpdateWebhookEndpointRequest(
                webhook_endpoint=pb.WebhookEndpoint(id=ep.id, url="http://192.168.0.10/"),
                update_mask=field_mask_pb2.FieldMask(paths=["url"])))
        assert _details(private.value)[1] == [("webhook_endpoint.url", "WEBHOOK_TARGET_NOT_ALLOWED")]

        # Another tenant sees nothing of it.
        _, other_key, _ = platform.new_tenant()
        other = Hooks(platform.server.target, other_key)
        try:
            with pytest.raises(grpc.RpcError) as hidden:
                other.GetWebhookEndpoint(pb.GetWebhookEndpointRequest(id=ep.id))
            assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            other.close()

        hooks.DeleteWebhookEndpoint(pb.DeleteWebhookEndpointRequest(id=ep.id))
        with pytest.raises(grpc.RpcError) as gone:
            hooks.GetWebhookEndpoint(pb.GetWebhookEndpointRequest(id=ep.id))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        for h in (hooks, viewer, admin):
            h.close()


def test_failing_endpoint_is_retried_disabled_visibly_then_re_enabled_and_redelivered(platform, receiver):
    _, key, _ = platform.new_tenant()
    hooks = Hooks(platform.server.target, key)
    receiver.status["/down"] = 500
    try:
        ep = hooks.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(
            url=receiver.url + "/down", event_types=["account.status_changed"]))
        with platform.client(api_key=key) as client:
            platform.online_account(client)  # several account.status_changed events

        def current():
            return hooks.GetWebhookEndpoint(pb.GetWebhookEndpointRequest(id=ep.id))

        disabled = wait_for(lambda: (e := current()).status == pb.WEBHOOK_ENDPOINT_STATUS_DISABLED_FAILING and e,
                            what="the endpoint to be disabled")
        assert "failed for" in disabled.disabled_reason and disabled.HasField("disabled_time")
        assert not disabled.enabled
        deliveries = wait_for(lambda: [d for d in hooks.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(
            webhook_endpoint_id=ep.id)).webhook_deliveries if d.status == pb.WEBHOOK_DELIVERY_STATUS_FAILED],
            what="failed deliveries")
        tried = max(deliveries, key=lambda d: d.attempt_count)
        assert tried.attempt_count >= 2 and all(a.response_status == 500 for a in tried.attempts)
        assert [a.attempt_number for a in tried.attempts] == list(range(1, tried.attempt_count + 1))
        posted = [h for h in receiver.on("/down") if h.headers["webhook-id"] == tried.event_id]
        assert len(posted) == tried.attempt_count  # every attempt with the same webhook-id
        with pytest.raises(grpc.RpcError) as refused:
            hooks.RedeliverWebhook(pb.RedeliverWebhookRequest(id=tried.id))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        receiver.status["/down"] = 200
        enabled = hooks.UpdateWebhookEndpoint(pb.UpdateWebhookEndpointRequest(
            webhook_endpoint=pb.WebhookEndpoint(id=ep.id, enabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"])))
        assert enabled.status == pb.WEBHOOK_ENDPOINT_STATUS_ENABLED and enabled.disabled_reason == ""
        again = hooks.RedeliverWebhook(pb.RedeliverWebhookRequest(id=tried.id))
        assert again.status == pb.WEBHOOK_DELIVERY_STATUS_PENDING

        def succeeded():
            page = hooks.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(
                webhook_endpoint_id=ep.id, status=pb.WEBHOOK_DELIVERY_STATUS_SUCCEEDED)).webhook_deliveries
            return [d for d in page if d.id == tried.id]

        [done] = wait_for(succeeded, what="the redelivery")
        assert done.attempts[-1].response_status == 200 and done.event_id == tried.event_id
        last = [h for h in receiver.on("/down") if h.headers["webhook-id"] == tried.event_id][-1]
        assert verify(ep.signing_secret, last)["type"] == "account.status_changed"
    finally:
        hooks.close()


def test_rotated_secret_overlaps_with_the_old_one(platform, receiver):
    _, key, _ = platform.new_tenant()
    hooks = Hooks(platform.server.target, key)
    try:
        ep = hooks.CreateWebhookEndpoint(pb.CreateWebhookEndpointRequest(url=receiver.url + "/rot"))
        rotated = hooks.RotateWebhookSecret(pb.RotateWebhookSecretRequest(id=ep.id, previous_secret_ttl_seconds=600))
        assert rotated.signing_secret.startswith("whsec_") and rotated.signing_secret != ep.signing_secret
        with platform.client(api_key=key) as client:
            platform.online_account(client)
        hit = wait_for(lambda: receiver.on("/rot"), what="an event")[0]
        assert len(hit.headers["webhook-signature"].split(" ")) == 2
        assert verify(ep.signing_secret, hit) == verify(rotated.signing_secret, hit)
        with pytest.raises(WebhookVerificationError):
            verify("whsec_" + "A" * 32, hit)
    finally:
        hooks.close()


def test_the_client_facade_manages_endpoints_and_reads_deliveries_and_callbacks(platform, receiver):
    _, key, _ = platform.new_tenant()
    with platform.client(api_key=key) as client:
        ep = client.callbacks.create_webhook_endpoint(url=receiver.url + "/facade",
                                                      event_types=["account.*"], description="facade")
        assert ep.signing_secret.startswith("whsec_")
        fetched = client.callbacks.get_webhook_endpoint(ep.id)  # a str is the id
        assert fetched.description == "facade" and fetched.signing_secret == ""
        platform.online_account(client)
        hit = wait_for(lambda: receiver.on("/facade"), what="an account event")[0]
        delivered_id = verify(ep.signing_secret, hit) and hit.headers["webhook-id"]

        deliveries = wait_for(lambda: [d for d in client.callbacks.iter_webhook_deliveries(webhook_endpoint_id=ep.id)
                                       if d.status == pb.WEBHOOK_DELIVERY_STATUS_SUCCEEDED],
                              what="a succeeded delivery")
        assert delivered_id in {d.event_id for d in deliveries}
        assert all(d.attempts and d.attempts[-1].response_status == 200 for d in deliveries)
        # The provider callbacks behind those events, through the same facade.
        events = list(client.callbacks.iter_callback_events(filter=pb.CallbackEventFilter(
            status=pb.CALLBACK_EVENT_STATUS_PROCESSED)))
        assert events and all(e.status == pb.CALLBACK_EVENT_STATUS_PROCESSED for e in events)
        assert client.callbacks.get_callback_event(events[0].id).raw_data == events[0].raw_data

    async def through_asyncio() -> list[str]:
        async with AsyncWeworkClient(ClientOptions(target=platform.server.target, api_key=key)) as client:
            return [e.id async for e in client.callbacks.iter_webhook_endpoints()]

    assert asyncio.run(through_asyncio()) == [ep.id]
