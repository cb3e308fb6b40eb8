"""Tenant webhooks (application/webhooks.py) on the in-memory units of work: endpoints with
etags and request ids, secrets sealed at rest and shown only by Create and Rotate, the outbox,
and the delivery decisions (retry schedule, disabling a failing endpoint, redelivery).

Deliveries are driven through WebhookDeliveryWorker.run_once with targets the guard refuses
(no address to post to), so every attempt fails without a network; successful posts, signatures
and the SSRF guard against a real receiver are tests/integration/test_webhook_delivery.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from harness.fakes import FakeDatabase
from wework.domain.access import Principal, PrincipalKind
from wework.domain.errors import (
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    RequestIdReused,
)
from wework.domain.webhooks import DeliveryStatus, EndpointStatus, WebhookEndpoint
from wework.server.application.context import AppContext
from wework.server.application.webhooks import (
    CALLBACK_DB,
    TargetGuard,
    WebhookOutbox,
    WebhookPolicy,
    WebhookUseCases,
)
from wework.server.security.field_crypto import FieldCipher
from wework.server.workers.webhooks import WebhookDeliveryWorker, WorkerSettings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
URL = "https://hooks.example.com/in"
# Where the fake DNS sends each host: the public one resolves, the internal one is private,
# "down.example" never resolves (accepted at create, every delivery attempt fails).
DNS = {"hooks.example.com": ["93.184.216.34"], "intranet.example": ["10.1.2.3"]}


async def resolve(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError("name does not resolve")
    return DNS[host]


def member(tenant_id: str = "t1") -> Principal:
    return Principal(PrincipalKind.API_KEY, "key-1", tenant_id, frozenset({"webhooks.*"}))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    db: FakeDatabase
    clock: Clock
    webhooks: WebhookUseCases
    outbox: WebhookOutbox
    worker: WebhookDeliveryWorker
    woken: list[str | None]

    async def endpoint_at_rest(self, tenant_id: str, endpoint_id: str) -> WebhookEndpoint:
        async with self.db.unit_of_work(CALLBACK_DB, tenant_id, read_only=True) as uow:
            return await uow.webhook_endpoints.get(tenant_id, endpoint_id)

    async def deliver_due(self, tenant_id: str = "t1") -> int:
        return await self.worker.run_once(self.db.shard_for(tenant_id))

    async def deliveries(self, endpoint_id: str, tenant_id: str = "t1"):
        return (await self.webhooks.list_deliveries(member(tenant_id), endpoint_id, None, 100, ""))[0]


def make_world(**policy_fields) -> World:
    db = FakeDatabase(shards=("s0", "s1"))
    clock = Clock()
    woken: list[str | None] = []

    async def wake(shard: str | None) -> None:
        woken.append(shard)

    policy = WebhookPolicy(**{"schedule": (0, 10, 60), "disable_after": timedelta(hours=1), **policy_fields})
    cipher = FieldCipher({"k1": b"0123456789abcdef0123456789abcdef"}, "k1", b"lookup-key")
    ctx = AppContext(db=db, cipher=cipher, passwords=None, tokens=None,  # type: ignore[arg-type]
                     tenant_cache=None, credential_cache=None, admin_api_key="", clock=clock)  # type: ignore[arg-type]
    guard = TargetGuard(policy, resolve)
    webhooks = WebhookUseCases(ctx, policy, guard, wake=wake)
    worker = WebhookDeliveryWorker(db, policy, guard, webhooks.reveal, WorkerSettings(), worker_id="w1",
                                   clock=clock)  # type: ignore[arg-type]
    return World(db, clock, webhooks, WebhookOutbox(ctx, policy, wake=wake), worker, woken)


async def create(w: World, url: str = URL, *, tenant_id: str = "t1", event_types=("message.*",),
                 request_id: str = "") -> WebhookEndpoint:
    return await w.webhooks.create_endpoint(member(tenant_id), url, "orders", list(event_types), request_id)


# ---- endpoints ----------------------------------------------------------------------------------


async def test_create_shows_the_secret_once_and_keeps_it_sealed():
    w = make_world()
    ep = await create(w)

    assert ep.secret.startswith("whsec_") and (ep.url, ep.event_types, ep.etag) == (URL, ["message.*"], "v1")
    at_rest = await w.endpoint_at_rest("t1", ep.id)
    assert at_rest.secret != ep.secret and ep.secret not in at_rest.secret
    assert w.webhooks.reveal(at_rest).secret == ep.secret
    got = await w.webhooks.get_endpoint(member(), ep.id)
    listed = (await w.webhooks.list_endpoints(member(), 10, ""))[0]
    assert got.secret is None and got.previous_secret is None
    assert [(e.id, e.secret) for e in listed] == [(ep.id, None)]


async def test_a_repeated_request_id_answers_the_first_endpoint_and_a_different_request_is_refused():
    w = make_world()
    ep = await create(w, request_id="req-1")
    again = await create(w, request_id="req-1")
    assert (again.id, again.secret) == (ep.id, ep.secret)
    assert len((await w.webhooks.list_endpoints(member(), 10, ""))[0]) == 1

    with pytest.raises(RequestIdReused) as refused:
        await create(w, "https://hooks.example.com/other", request_id="req-1")
    assert refused.value.metadata == {"request_id": "req-1", "resource": f"webhookEndpoints/{ep.id}"}
    with pytest.raises(InvalidArgument):
        await create(w, request_id="has space")


@pytest.mark.parametrize(("url", "event_types", "field"), [
    ("ftp://hooks.example.com", ["message.sent"], "url"),
    ("https://user:pw@hooks.example.com", ["message.sent"], "url"),
    (URL, ["message.bogus"], "event_types[0]"),
    ("https://intranet.example/hook", ["message.sent"], "url"),
    ("http://127.0.0.1:9/hook", ["message.sent"], "url"),
])
async def test_create_refuses_bad_fields_and_private_targets_and_stores_nothing(url, event_types, field):
    w = make_world()
    with pytest.raises(InvalidArgument) as refused:
        await create(w, url, event_types=event_types)
    assert refused.value.violations[0].field == field
    assert w.db.committed == 0


async def test_an_unresolvable_host_is_accepted_at_create():
    w = make_world()
    assert (await create(w, "https://down.example/hook")).url == "https://down.example/hook"


async def test_the_endpoint_quota_is_per_tenant():
    w = make_world(max_endpoints_per_tenant=2)
    for _ in range(2):
        await create(w)
    with pytest.raises(QuotaExceeded) as refused:
        await create(w)
    assert refused.value.violations[0].subject == "tenants/t1"
    await create(w, tenant_id="t2")


async def test_update_checks_the_etag_and_writes_only_the_masked_fields():
    w = make_world()
    ep = await create(w)
    changes = replace(ep, url="https://hooks.example.com/v2", description="ignored: not in the mask")

    updated = await w.webhooks.update_endpoint(member(), changes, True, ["url"], "v1")
    assert (updated.url, updated.description, updated.etag, updated.secret) == (
        "https://hooks.example.com/v2", "orders", "v2", None)
    with pytest.raises(EtagMismatch):
        await w.webhooks.update_endpoint(member(), changes, True, ["description"], "v1")
    with pytest.raises(InvalidArgument) as refused:
        await w.webhooks.update_endpoint(member(), changes, True, ["secret"], "")
    assert refused.value.violations[0].description == "field 'secret' cannot be updated"
    with pytest.raises(NotFound):
        await w.webhooks.update_endpoint(member("t2"), changes, True, ["url"], "")
    # The secret survives an update.
    assert w.webhooks.reveal(await w.endpoint_at_rest("t1", ep.id)).secret == ep.secret


async def test_rotation_shows_the_new_secret_and_keeps_the_previous_one_for_the_ttl():
    w = make_world()
    ep = await create(w)

    rotated = await w.webhooks.rotate_secret(member(), ep.id, 3600)
    assert rotated.secret != ep.secret and rotated.previous_secret is None
    assert rotated.previous_secret_expires == T0 + timedelta(hours=1)
    at_rest = w.webhooks.reveal(await w.endpoint_at_rest("t1", ep.id))
    assert (at_rest.secret, at_rest.previous_secret) == (rotated.secret, ep.secret)
    with pytest.raises(InvalidArgument):
        await w.webhooks.rotate_secret(member(), ep.id, 8 * 86400)


async def test_delete_removes_the_endpoint_for_its_tenant_only():
    w = make_world()
    ep = await create(w)
    with pytest.raises(NotFound):
        await w.webhooks.delete_endpoint(member("t2"), ep.id)
    await w.webhooks.delete_endpoint(member(), ep.id)
    with pytest.raises(NotFound):
        await w.webhooks.get_endpoint(member(), ep.id)


async def test_endpoints_list_in_pages():
    w = make_world()
    ids = sorted([(await create(w)).id for _ in range(3)])
    first, token = await w.webhooks.list_endpoints(member(), 2, "")
    second, end = await w.webhooks.list_endpoints(member(), 2, token)
    assert [e.id for e in first + second] == ids and end == ""


# ---- outbox -------------------------------------------------------------------------------------


async def test_an_event_is_enqueued_once_per_matching_enabled_endpoint():
    w = make_world()
    wanted = await create(w, event_types=["message.*"])
    other = await create(w, event_types=["account.status_changed"])
    await create(w, tenant_id="t2")

    data = {"message_id": "m-1", "login_token": "LT-secret"}
    assert await w.outbox.publish(None, "t1", "message.sent", data, "cb-1") == 1
    assert await w.outbox.publish(None, "t1", "message.sent", data, "cb-1") == 0  # a repeat adds nothing
    [d] = await w.deliveries(wanted.id)
    assert (d.status, d.attempt_count, d.next_attempt_time, d.event_type) == (
        DeliveryStatus.PENDING, 0, T0, "message.sent")
    assert json.loads(d.body) == {"type": "message.sent", "timestamp": "2026-03-02T09:00:00Z",
                                  "data": {"message_id": "m-1", "login_token": "[REDACTED]"}}
    assert await w.deliveries(other.id) == []
    assert w.woken == [w.db.shard_for("t1")]


# ---- deliveries ---------------------------------------------------------------------------------


async def test_failed_attempts_follow_the_schedule_then_the_delivery_fails():
    w = make_world(schedule=(0, 10, 60), disable_after=timedelta(days=5))
    ep = await create(w, "https://down.example/hook")
    await w.outbox.publish(None, "t1", "message.sent", {"message_id": "m-1"}, "cb-1")

    assert await w.deliver_due() == 1
    [d] = await w.deliveries(ep.id)
    assert (d.status, d.attempt_count, d.next_attempt_time) == (DeliveryStatus.PENDING, 1, T0 + timedelta(seconds=10))
    assert "cannot resolve 'down.example'" in d.attempts[0].error
    assert await w.deliver_due() == 0  # not due yet

    w.clock.now += timedelta(seconds=10)
    await w.deliver_due()
    [d] = await w.deliveries(ep.id)
    assert (d.status, d.next_attempt_time) == (DeliveryStatus.PENDING, w.clock.now + timedelta(seconds=60))
    w.clock.now += timedelta(seconds=60)
    await w.deliver_due()
    [d] = await w.deliveries(ep.id)
    assert (d.status, d.attempt_count, d.next_attempt_time) == (DeliveryStatus.FAILED, 3, None)
    assert [a.attempt_number for a in d.attempts] == [1, 2, 3]
    assert (await w.webhooks.get_endpoint(member(), ep.id)).status is EndpointStatus.ENABLED


async def test_an_endpoint_failing_longer_than_disable_after_is_disabled_with_its_waiting_deliveries():
    w = make_world(schedule=(0, 600, 600, 600), disable_after=timedelta(minutes=15))
    ep = await create(w, "https://down.example/hook")
    await w.outbox.publish(None, "t1", "message.sent", {"message_id": "m-1"}, "cb-1")
    await w.deliver_due()  # the failing run starts
    await w.outbox.publish(None, "t1", "message.failed", {"message_id": "m-2"}, "cb-2")

    w.clock.now += timedelta(minutes=10)
    assert await w.deliver_due() == 2
    assert (await w.webhooks.get_endpoint(member(), ep.id)).status is EndpointStatus.ENABLED
    w.clock.now += timedelta(minutes=10)
    assert await w.deliver_due() == 2
    disabled = await w.webhooks.get_endpoint(member(), ep.id)
    assert (disabled.status, disabled.disabled_time) == (EndpointStatus.DISABLED_FAILING, w.clock.now)
    assert disabled.disabled_reason.startswith("every delivery attempt failed for 15 minutes")
    # The attempt that disabled it failed its delivery; the other, in flight then, waits for
    # its next turn and then ends failed without another attempt.
    after = {d.event_type: d for d in await w.deliveries(ep.id)}
    assert sorted(d.status for d in after.values()) == [DeliveryStatus.FAILED, DeliveryStatus.PENDING]
    w.clock.now += timedelta(minutes=10)
    assert await w.deliver_due() == 1
    finally_ = await w.deliveries(ep.id)
    assert [d.status for d in finally_] == [DeliveryStatus.FAILED] * 2
    assert sorted(len(d.attempts) for d in finally_) == [2, 3]  # the skipped one: no third attempt
    # A disabled endpoint gets no new events, and its deliveries cannot be redelivered.
    assert await w.outbox.publish(None, "t1", "message.sent", {"message_id": "m-3"}, "cb-3") == 0
    some = (await w.deliveries(ep.id))[0]
    with pytest.raises(FailedPrecondition):
        await w.webhooks.redeliver(member(), some.id)

    # Re-enabled: a fresh start, and a redelivery is due at once.
    enabled = await w.webhooks.update_endpoint(member(), replace(disabled), True, ["enabled"], disabled.etag)
    assert (enabled.status, enabled.disabled_reason, enabled.failing_since) == (EndpointStatus.ENABLED, None, None)
    redelivered = await w.webhooks.redeliver(member(), some.id)
    assert (redelivered.status, redelivered.next_attempt_time) == (DeliveryStatus.PENDING, w.clock.now)
    assert await w.worker.run_once(w.db.shard_for("t1")) == 1


async def test_disabling_an_endpoint_fails_its_waiting_deliveries():
    w = make_world()
    ep = await create(w)
    await w.outbox.publish(None, "t1", "message.sent", {"message_id": "m-1"}, "cb-1")

    off = await w.webhooks.update_endpoint(member(), ep, False, ["enabled"], "")
    assert (off.status, off.disabled_time) == (EndpointStatus.DISABLED, T0)
    assert [d.status for d in await w.deliveries(ep.id)] == [DeliveryStatus.FAILED]
    assert await w.deliver_due() == 0


async def test_deliveries_of_an_unknown_endpoint_or_delivery_are_not_found():
    w = make_world()
    ep = await create(w)
    with pytest.raises(NotFound):
        await w.webhooks.list_deliveries(member("t2"), ep.id, None, 10, "")
    with pytest.raises(NotFound):
        await w.webhooks.redeliver(member(), "no-such-delivery")
