"""Tenant webhooks end to end below gRPC: the outbox (as the callback processor calls it), the
delivery worker, real MariaDB and Redis, and a real HTTP receiver on loopback that verifies
every request with the independent Standard Webhooks implementation (PyPI standardwebhooks)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook
from wework.domain.access import Principal, PrincipalKind
from wework.domain.errors import FailedPrecondition, InvalidArgument, RequestIdReused
from wework.domain.webhooks import DeliveryStatus, EndpointStatus, WebhookEndpoint, parse_networks
from wework.persistence.config import RedisConfig
from wework.persistence.ids import new_id
from wework.persistence.redis.client import create_redis
from wework.server.application.context import AppContext
from wework.server.application.webhooks import (
    TargetGuard,
    WebhookOutbox,
    WebhookPolicy,
    WebhookUseCases,
    resolve_host,
)
from wework.server.security.field_crypto import FieldCipher
from wework.server.workers.webhooks import WebhookDeliveryWorker, WebhookWaker, WorkerSettings

pytestmark = [pytest.mark.mariadb, pytest.mark.redis]
LOOPBACK = tuple(parse_networks(["127.0.0.0/8"]))


# ---- a real receiver -----------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """aiohttp on loopback. Each path answers per `behaviour[path]`: an int status,
    ("sleep", seconds) to time out, or ("redirect", path) for a 307 there. Requests are recorded on
    arrival (before answering)."""

    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    behaviour: dict[str, object] = field(default_factory=dict)
    in_flight: int = 0

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.path, {k.lower(): v for k, v in request.headers.items()}, body,
                                      time.monotonic()))
        self.in_flight += 1
        try:
            how = self.behaviour.get(request.path, 200)
            if isinstance(how, tuple) and how[0] == "redirect":
                return web.Response(status=307, headers={"Location": str(how[1])})
            if isinstance(how, tuple):
                await asyncio.sleep(how[1])
                how = 200
            return web.Response(status=int(how), text="ok")
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rx.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rx.base_url = f"http://127.0.0.1:{port}"
    try:
        yield rx
    finally:
        await runner.cleanup()


def verify(secret: str, r: Received) -> dict:
    """Raises unless the request verifies with `secret` (standardwebhooks, tolerance 5 min)."""
    return Webhook(secret).verify(r.body, {k: r.headers[k] for k in
                                           ("webhook-id", "webhook-timestamp", "webhook-signature")})


# ---- the parts under test ------------------------------------------------------------------------


def cipher() -> FieldCipher:
    return FieldCipher({"k1": b"0123456789abcdef0123456789abcdef"}, "k1", b"lookup-key")


def principal(tenant_id: str) -> Principal:
    return Principal(PrincipalKind.API_KEY, "key-1", tenant_id, frozenset({"webhooks.*"}))


@dataclass
class Node:
    webhooks: WebhookUseCases
    outbox: WebhookOutbox
    worker: WebhookDeliveryWorker
    policy: WebhookPolicy


@contextlib.asynccontextmanager
async def node_maker(db, redis_url: str):
    """make(**policy) -> a started Node (use cases, outbox, worker) on `db`; all closed at exit."""
    made: list[tuple[WebhookDeliveryWorker, object]] = []
    prefix = f"wwtest:{new_id()}:"

    async def make(*, worker_policy: dict | None = None, retention: timedelta = timedelta(days=30),
                   resolver=resolve_host, **policy_fields) -> Node:
        fields = {"schedule": (0, 0.2, 0.2), "timeout_seconds": 1.0, "allowed_networks": LOOPBACK,
                  "disable_after": timedelta(hours=1), **policy_fields}
        policy = WebhookPolicy(**fields)
        ctx = AppContext(db=db, cipher=cipher(), passwords=None, tokens=None,  # type: ignore[arg-type]
                         tenant_cache=None, credential_cache=None, admin_api_key="")  # type: ignore[arg-type]
        redis = create_redis(RedisConfig(url=redis_url))
        waker = WebhookWaker(redis, prefix)
        use_cases = WebhookUseCases(ctx, policy, TargetGuard(policy, resolver), wake=waker.wake)
        wpolicy = WebhookPolicy(**{**fields, **(worker_policy or {})})
        worker = WebhookDeliveryWorker(db, wpolicy, TargetGuard(wpolicy, resolver), use_cases.reveal,
                                       WorkerSettings(claim_batch_size=50, max_in_flight=32, claim_lease_seconds=5,
                                                      idle_poll_seconds=0.2, retention=retention),
                                       waker=WebhookWaker(redis, prefix))
        await worker.start()
        made.append((worker, redis))
        return Node(use_cases, WebhookOutbox(ctx, policy, wake=waker.wake), worker, policy)

    try:
        yield make
    finally:
        for worker, redis in made:
            await worker.close()
            await redis.aclose()  # type: ignore[attr-defined]


@pytest.fixture
async def node_factory(mariadb_database, redis_server):
    async with node_maker(mariadb_database, redis_server.url) as make:
        yield make


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as rx:
        yield rx


async def eventually(check: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def create(node: Node, tenant_id: str, url: str, event_types: list[str] | None = None) -> WebhookEndpoint:
    return await node.webhooks.create_endpoint(principal(tenant_id), url, "test", event_types or [], "")


async def deliveries(node: Node, tenant_id: str, endpoint_id: str):
    page, _ = await node.webhooks.list_deliveries(principal(tenant_id), endpoint_id, None, 100, "")
    return page


# ---- tests ---------------------------------------------------------------------------------------


async def test_event_is_delivered_signed_and_recorded(node_factory, receiver):
    node = await node_factory()
    tenant = new_id()
    ep = await create(node, tenant, receiver.base_url + "/hook")
    assert ep.secret and ep.secret.startswith("whsec_")
    data = {"message_id": "m-1", "status": "sent", "text": "你好"}
    assert await node.outbox.publish(None, tenant, "message.sent", data, "cb-1") == 1

    [r] = await eventually(lambda: receiver.on("/hook"), what="the delivery")
    payload = verify(ep.secret, r)
    assert payload["type"] == "message.sent" and payload["data"] == data
    assert r.headers["content-type"] == "application/json"
    [d] = await eventually(lambda: _final(node, tenant, ep.id), what="a final status")
    assert d.status is DeliveryStatus.SUCCEEDED and d.event_id == r.headers["webhook-id"]
    assert d.payload == payload and d.attempt_count == 1
    [a] = d.attempts
    assert a.response_status == 200 and a.error == "" and a.attempt_number == 1
    # The secret is shown by Create only.
    assert (await node.webhooks.get_endpoint(principal(tenant), ep.id)).secret is None


async def _final(node: Node, tenant_id: str, endpoint_id: str):
    ds = await deliveries(node, tenant_id, endpoint_id)
    return ds if ds and all(d.status is not DeliveryStatus.PENDING for d in ds) else None


async def test_publishing_the_same_source_event_again_delivers_once(node_factory, receiver):
    node = await node_factory()
    tenant = new_id()
    ep = await create(node, tenant, receiver.base_url + "/once")
    assert await node.outbox.publish(None, tenant, "message.delivered", {"id": "m"}, "cb-7") == 1
    assert await node.outbox.publish(None, tenant, "message.delivered", {"id": "m"}, "cb-7") == 0
    await eventually(lambda: _final(node, tenant, ep.id))
    await asyncio.sleep(0.3)
    assert len(receiver.on("/once")) == 1
    assert len(await deliveries(node, tenant, ep.id)) == 1


async def test_publish_joins_the_callers_transaction(node_factory, receiver, mariadb_database):
    node = await node_factory()
    tenant = new_id()
    ep = await create(node, tenant, receiver.base_url + "/tx")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with mariadb_database.unit_of_work("callback", tenant) as uow:
            assert await node.outbox.publish(uow, tenant, "message.sent", {"id": "rolled back"}, "cb-x") == 1
            raise Boom
    assert await deliveries(node, tenant, ep.id) == []  # rolled back with the caller
    async with mariadb_database.unit_of_work("callback", tenant) as uow:
        await node.outbox.publish(uow, tenant, "message.sent", {"id": "committed"}, "cb-x")
    [r] = await eventually(lambda: receiver.on("/tx"))
    assert verify(ep.secret, r)["data"] == {"id": "committed"}


async def test_failures_retry_on_schedule_then_fail_with_every_attempt_recorded(node_factory, receiver):
    node = await node_factory(schedule=(0, 0.2, 0.3))
    tenant = new_id()
    receiver.behaviour["/down"] = 500
    ep = await create(node, tenant, receiver.base_url + "/down")
    await node.outbox.publish(None, tenant, "message.failed", {"id": "m"}, "cb-f")

    [d] = await eventually(lambda: _final(node, tenant, ep.id), what="the delivery to fail")
    assert d.status is DeliveryStatus.FAILED and d.attempt_count == 3
    assert [(a.attempt_number, a.response_status, a.error) for a in d.attempts] == [
        (1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 500, "HTTP 500")]
    got = receiver.on("/down")
    assert len(got) == 3
    assert {r.headers["webhook-id"] for r in got} == {d.event_id}  # one id for every attempt
    for r in got:
        verify(ep.secret, r)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.3  # the schedule's delays, at least
    failing = await node.webhooks.get_endpoint(principal(tenant), ep.id)
    assert failing.failing_since is not None and failing.status is EndpointStatus.ENABLED


async def test_no_answer_within_the_timeout_is_a_failure(node_factory, receiver):
    node = await node_factory(schedule=(0,), timeout_seconds=0.3)
    tenant = new_id()
    receiver.behaviour["/slow"] = ("sleep", 2.0)
    ep = await create(node, tenant, receiver.base_url + "/slow")
    await node.outbox.publish(None, tenant, "message.sent", {"id": "m"}, "cb-s")
    [d] = await eventually(lambda: _final(node, tenant, ep.id))
    [a] = d.attempts
    assert d.status is DeliveryStatus.FAILED and a.response_status == 0 and "no answer within" in a.error


async def test_endpoint_failing_too_long_is_disabled_then_re_enabled_and_redelivered(node_factory, receiver):
    node = await node_factory(schedule=(0, 0.25, 0.25, 0.25, 0.25), disable_after=timedelta(seconds=0.6))
    tenant = new_id()
    p = principal(tenant)
    receiver.behaviour["/flaky"] = 503
    ep = await create(node, tenant, receiver.base_url + "/flaky")
    await node.outbox.publish(None, tenant, "message.sent", {"n": 1}, "cb-d1")

    disabled = await eventually(lambda: _status_is(node, tenant, ep.id, EndpointStatus.DISABLED_FAILING),
                                what="the endpoint to be disabled")
    assert "failed for" in disabled.disabled_reason and disabled.disabled_time is not None
    assert not disabled.enabled
    [d] = await eventually(lambda: _final(node, tenant, ep.id))
    assert d.status is DeliveryStatus.FAILED and 3 <= d.attempt_count < 5
    # Disabled: new events are not queued for it, and redelivery is refused until re-enabled.
    assert await node.outbox.publish(None, tenant, "message.sent", {"n": 2}, "cb-d2") == 0
    with pytest.raises(FailedPrecondition):
        await node.webhooks.redeliver(p, d.id)

    receiver.behaviour["/flaky"] = 204
    enabled = await node.webhooks.update_endpoint(p, WebhookEndpoint(id=ep.id, tenant_id="", url=""), True,
                                                  ["enabled"], disabled.etag)
    assert enabled.status is EndpointStatus.ENABLED and enabled.disabled_reason is None
    assert enabled.failing_since is None
    before = len(receiver.on("/flaky"))
    again = await node.webhooks.redeliver(p, d.id)
    assert again.status is DeliveryStatus.PENDING
    [d2] = await eventually(lambda: _final(node, tenant, ep.id), what="the redelivery")
    assert d2.status is DeliveryStatus.SUCCEEDED and d2.attempts[-1].response_status == 204
    latest = receiver.on("/flaky")[before:]
    assert [r.headers["webhook-id"] for r in latest] == [d.event_id]  # the same webhook-id again


async def _status_is(node: Node, tenant_id: str, endpoint_id: str, status: EndpointStatus):
    ep = await node.webhooks.get_endpoint(principal(tenant_id), endpoint_id)
    return ep if ep.status is status else None


async def test_rotation_signs_with_both_secrets_during_the_overlap(node_factory, receiver):
    node = await node_factory()
    tenant = new_id()
    p = principal(tenant)
    ep = await create(node, tenant, receiver.base_url + "/rot")
    rotated = await node.webhooks.rotate_secret(p, ep.id, 3600)
    assert rotated.secret and rotated.secret != ep.secret
    await node.outbox.publish(None, tenant, "message.sent", {"n": 1}, "cb-r1")
    [r] = await eventually(lambda: receiver.on("/rot"))
    assert len(r.headers["webhook-signature"].split(" ")) == 2
    assert verify(ep.secret, r) == verify(rotated.secret, r)  # old and new both verify

    # TTL over (rotate again with a 1 s overlap, wait): only the newest secret signs.
    newest = await node.webhooks.rotate_secret(p, ep.id, 1)
    await asyncio.sleep(1.1)
    await node.outbox.publish(None, tenant, "message.sent", {"n": 2}, "cb-r2")
    r2 = (await eventually(lambda: receiver.on("/rot")[1:]))[0]
    assert len(r2.headers["webhook-signature"].split(" ")) == 1
    verify(newest.secret, r2)
    with pytest.raises(Exception):  # noqa: B017 - standardwebhooks' verification error
        verify(rotated.secret, r2)


async def test_event_type_filter_and_tenant_isolation(node_factory, receiver):
    node = await node_factory()
    a, b = new_id(), new_id()
    only_messages = await create(node, a, receiver.base_url + "/a-msgs", ["message.*"])
    everything_a = await create(node, a, receiver.base_url + "/a-all")
    everything_b = await create(node, b, receiver.base_url + "/b-all")
    await node.outbox.publish(None, a, "account.status_changed", {"status": "online"}, "cb-1")
    await node.outbox.publish(None, a, "message.received", {"text": "hi"}, "cb-2")
    await node.outbox.publish(None, b, "message.sent", {"id": "b-only"}, "cb-3")
    await eventually(lambda: len(receiver.received) >= 4, what="four deliveries")
    await asyncio.sleep(0.3)
    types = {path: sorted(verify(secret, r)["type"] for r in receiver.on(path)) for path, secret in (
        ("/a-msgs", only_messages.secret), ("/a-all", everything_a.secret), ("/b-all", everything_b.secret))}
    assert types == {"/a-msgs": ["message.received"],
                     "/a-all": ["account.status_changed", "message.received"],
                     "/b-all": ["message.sent"]}
    # Tenant B cannot see tenant A's endpoint either.
    with pytest.raises(Exception) as caught:
        await node.webhooks.get_endpoint(principal(b), everything_a.id)
    assert type(caught.value).__name__ == "NotFound"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/x", "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/x",
    "http://[::1]:8080/x", "http://localhost:8080/x", "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x",
    "http://[2002:7f00:1::]/", "http://[2002:a9fe:a9fe::]/", "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
])
async def test_private_targets_are_refused_unless_allowed(node_factory, url):
    node = await node_factory(allowed_networks=())
    with pytest.raises(InvalidArgument) as caught:
        await create(node, new_id(), url)
    [v] = caught.value.violations
    assert v.field == "url" and v.reason == "WEBHOOK_TARGET_NOT_ALLOWED"
    assert "webhooks.allowed_target_cidrs (env WEWORK_WEBHOOKS__ALLOWED_TARGET_CIDRS)" in v.description
    if "localhost" in url:  # a name: what it resolves to stays unsaid
        assert "127.0.0.1" not in v.description and "::1" not in v.description


async def test_delivery_time_guard_refuses_a_target_that_became_private(node_factory, receiver):
    """Created while loopback was allowed; the worker's settings no longer allow it: every
    attempt is refused before connecting, and recorded."""
    node = await node_factory(schedule=(0, 0.1), worker_policy={"allowed_networks": ()})
    tenant = new_id()
    ep = await create(node, tenant, receiver.base_url.replace("127.0.0.1", "localhost") + "/guarded")
    await node.outbox.publish(None, tenant, "message.sent", {"id": "m"}, "cb-g")
    [d] = await eventually(lambda: _final(node, tenant, ep.id))
    assert d.status is DeliveryStatus.FAILED and len(d.attempts) == 2
    # The refusal says what kind of address and which setting allows it, never the address.
    assert all(a.response_status == 0 and "'localhost' resolves to a loopback address" in a.error
               and "127.0.0.1" not in a.error and "WEWORK_WEBHOOKS__ALLOWED_TARGET_CIDRS" in a.error
               for a in d.attempts)
    assert receiver.on("/guarded") == []


async def test_create_is_idempotent_validated_and_secret_stored_encrypted(node_factory, mariadb_database):
    node = await node_factory()
    tenant = new_id()
    p = principal(tenant)
    first = await node.webhooks.create_endpoint(p, "https://hooks.example.com/a", "", ["message.sent"], "req-1")
    again = await node.webhooks.create_endpoint(p, "https://hooks.example.com/a", "", ["message.sent"], "req-1")
    assert (again.id, again.secret) == (first.id, first.secret)
    # The same request_id for another endpoint is refused, naming it, not answered with this one.
    for url, types in (("https://hooks.example.com/other", ["message.sent"]),
                       ("https://hooks.example.com/a", ["message.failed"])):
        with pytest.raises(RequestIdReused) as reused:
            await node.webhooks.create_endpoint(p, url, "", types, "req-1")
        assert reused.value.metadata == {"request_id": "req-1", "resource": f"webhookEndpoints/{first.id}"}
    import sqlalchemy as sa

    async with mariadb_database.unit_of_work("callback", tenant, read_only=True) as uow:
        stored = (await uow.session.execute(sa.text("SELECT secret FROM webhook_endpoints WHERE id = :i"),
                                            {"i": first.id})).scalar_one()
    assert first.secret not in stored and base64.b64decode(first.secret[6:]) not in stored.encode()
    with pytest.raises(InvalidArgument) as caught:
        await node.webhooks.create_endpoint(p, "ftp://x", "", ["nope"], "")
    assert {v.field for v in caught.value.violations} == {"url", "event_types[0]"}
    page, token = await node.webhooks.list_endpoints(p, 0, "")
    assert [e.id for e in page] == [first.id] and token == ""
    await node.webhooks.delete_endpoint(p, first.id)
    assert (await node.webhooks.list_endpoints(p, 0, ""))[0] == []


async def test_a_host_name_is_resolved_checked_and_posted_to_with_its_host_header(node_factory, receiver):
    node = await node_factory(allowed_networks=tuple(parse_networks(["127.0.0.0/8", "::1/128"])))
    tenant = new_id()
    url = receiver.base_url.replace("127.0.0.1", "localhost") + "/named"
    ep = await create(node, tenant, url)
    await node.outbox.publish(None, tenant, "conversation.changed", {"conversation_id": "c"}, "cb-n")
    [r] = await eventually(lambda: receiver.on("/named"))
    assert r.headers["host"] == url.split("/")[2]
    assert verify(ep.secret, r)["type"] == "conversation.changed"


async def test_the_post_goes_to_the_address_the_guard_checked(node_factory, receiver):
    """The worker's connection takes its address from the guard: a name only the guard can resolve
    (.test never resolves in DNS) is delivered to, with its own Host header."""
    asked: list[str] = []

    async def guard_dns(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"] if host == "hooks.rebind.test" else await resolve_host(host, port)

    node = await node_factory(resolver=guard_dns)
    tenant = new_id()
    url = receiver.base_url.replace("127.0.0.1", "hooks.rebind.test") + "/pinned"
    ep = await create(node, tenant, url)
    await node.outbox.publish(None, tenant, "message.sent", {"id": "m"}, "cb-p")
    [r] = await eventually(lambda: receiver.on("/pinned"))
    assert r.headers["host"] == url.split("/")[2] and verify(ep.secret, r)["data"] == {"id": "m"}
    assert asked == ["hooks.rebind.test", "hooks.rebind.test"]  # at create, at the delivery's connect


async def test_a_name_rebound_to_a_refused_address_after_the_check_is_not_posted_to(node_factory, receiver):
    """DNS answers an allowed address when the endpoint is checked, then a private one (rebinding):
    the delivery's connection asks the guard, which refuses; nothing is posted anywhere."""
    answers = iter([["127.0.0.1"]] + [["10.1.2.3"]] * 10)

    async def rebinding_dns(host: str, port: int) -> list[str]:
        return next(answers)

    node = await node_factory(schedule=(0, 0.1), resolver=rebinding_dns)
    tenant = new_id()
    ep = await create(node, tenant, receiver.base_url.replace("127.0.0.1", "hooks.rebind.test") + "/rebound")
    await node.outbox.publish(None, tenant, "message.sent", {"id": "m"}, "cb-r")
    [d] = await eventually(lambda: _final(node, tenant, ep.id))
    assert d.status is DeliveryStatus.FAILED and len(d.attempts) == 2
    assert all(a.response_status == 0 and "'hooks.rebind.test' resolves to a private address" in a.error
               and "10.1.2.3" not in a.error for a in d.attempts)
    assert receiver.received == []


async def test_a_literal_address_refused_at_delivery_is_not_posted_to(node_factory, receiver):
    """IP literals skip DNS: the guard checks them before the request."""
    node = await node_factory(schedule=(0,), worker_policy={"allowed_networks": ()})
    tenant = new_id()
    ep = await create(node, tenant, receiver.base_url + "/literal")
    await node.outbox.publish(None, tenant, "message.sent", {"id": "m"}, "cb-l")
    [d] = await eventually(lambda: _final(node, tenant, ep.id))
    [a] = d.attempts
    assert d.status is DeliveryStatus.FAILED and "'127.0.0.1' is a loopback address" in a.error
    assert receiver.received == []


async def test_a_redirect_is_not_followed_and_is_a_failure(node_factory, receiver):
    node = await node_factory(schedule=(0,))
    tenant = new_id()
    receiver.behaviour["/moved"] = ("redirect", "/elsewhere")
    ep = await create(node, tenant, receiver.base_url + "/moved")
    await node.outbox.publish(None, tenant, "message.sent", {"id": "m"}, "cb-m")
    [d] = await eventually(lambda: _final(node, tenant, ep.id))
    [a] = d.attempts
    assert d.status is DeliveryStatus.FAILED and (a.response_status, a.error) == (307, "HTTP 307")
    assert len(receiver.on("/moved")) == 1 and receiver.on("/elsewhere") == []


async def test_a_refused_connection_is_recorded_without_the_address(node_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = await node_factory(schedule=(0,), allowed_networks=tuple(parse_networks(["127.0.0.0/8", "::1/128"])))
    tenant = new_id()
    ep = await create(node, tenant, f"http://localhost:{port}/nobody")
    await node.outbox.publish(None, tenant, "message.sent", {"id": "m"}, "cb-c")
    [d] = await eventually(lambda: _final(node, tenant, ep.id))
    [a] = d.attempts
    assert d.status is DeliveryStatus.FAILED and a.response_status == 0
    assert a.error == "cannot connect: Connection refused"


async def test_finished_deliveries_past_the_retention_are_purged_with_their_attempts(
        node_factory, receiver, mariadb_database):
    node = await node_factory(retention=timedelta(seconds=-60))  # everything finished is "old"
    tenant = new_id()
    ep = await create(node, tenant, receiver.base_url + "/old")
    await node.outbox.publish(None, tenant, "message.sent", {"n": 1}, "cb-old")
    [done] = await eventually(lambda: _final(node, tenant, ep.id))
    receiver.behaviour["/old"] = ("sleep", 5.0)  # the next one stays pending while we purge
    await node.outbox.publish(None, tenant, "message.sent", {"n": 2}, "cb-new")
    assert await node.worker.purge(mariadb_database.shard_for(tenant)) >= 1
    left = await deliveries(node, tenant, ep.id)
    assert done.id not in {d.id for d in left}
    assert [d.status for d in left] == [DeliveryStatus.PENDING]  # pending ones are never purged


async def test_an_endpoint_whose_secret_does_not_decrypt_does_not_stop_the_others(
        node_factory, receiver, mariadb_database):
    """A secret sealed with a key the deployment no longer has (or a tampered row) fails that
    endpoint's attempts on the retry schedule, naming the setting; other endpoints still deliver."""
    import sqlalchemy as sa

    node = await node_factory(schedule=(0, 60))
    tenant = new_id()
    lost = await create(node, tenant, receiver.base_url + "/lost")
    kept = await create(node, tenant, receiver.base_url + "/kept")
    other_key = FieldCipher({"k9": b"9" * 32}, "k9", b"lookup-key")
    async with mariadb_database.unit_of_work("callback", tenant) as uow:
        await uow.session.execute(sa.text("UPDATE webhook_endpoints SET secret = :s WHERE id = :i"), {
            "s": other_key.encrypt("whsec_" + base64.b64encode(b"x" * 24).decode(),
                                   context=f"webhook_endpoints.secret:{lost.id}"), "i": lost.id})
    await node.outbox.publish(None, tenant, "message.sent", {"n": 1}, "cb-sealed")

    [r] = await eventually(lambda: receiver.on("/kept"), what="the other endpoint's delivery")
    assert verify(kept.secret, r)["data"] == {"n": 1}

    async def attempted():
        [d] = await deliveries(node, tenant, lost.id)
        return d if d.attempt_count == 1 else None

    d = await eventually(attempted, what="the failed attempt")
    assert d.status is DeliveryStatus.PENDING and d.next_attempt_time is not None  # retried on the schedule
    assert "security.encryption_keys" in d.attempts[0].error
    assert receiver.on("/lost") == []
