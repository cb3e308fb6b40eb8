"""The callback use cases (application/callbacks.py) on the in-memory units of work: the inbox
(authenticate, deduplicate, redact, store), processing (apply through the owning service's
port, mark, publish tenant events, retry with backoff) and the operators' list/get/replay.

The owning services (MessageEvents, AccountEvents) and the guid directory are the processor's
ports; small in-memory stand-ins below keep an applied-callbacks ledger as the real ones do.
Their own behaviour on the databases is tested in tests/integration/test_callback_inbox.py and
test_dispatch_receipts.py. The inbox is driven through its public methods only.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from harness.fakes import FakeDatabase
from wework.domain.access import Principal, PrincipalKind
from wework.domain.callbacks import ALREADY_APPLIED, APPLIED, Effect, sign
from wework.domain.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from wework.persistence.config import RedisConfig
from wework.persistence.ids import new_id
from wework.persistence.pagination import PageTokens
from wework.persistence.redis.client import create_redis
from wework.server.application.callbacks import (
    CALLBACK_DB,
    CallbackEventUseCases,
    CallbackInbox,
    CallbackProcessing,
    InboxSettings,
    ListQuery,
    ProcessingSettings,
)
from wework.server.providers.base import ProviderCallback
from wework.server.security.field_crypto import FieldCipher

SECRET = "callback-secret"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ONLINE, HEARTBEAT, SENT = 11005, 11010, 12001
ADMIN = Principal(PrincipalKind.PLATFORM_ADMIN, "platform-admin", None)


def member(tenant_id: str) -> Principal:
    return Principal(PrincipalKind.USER, f"user-of-{tenant_id}", tenant_id, frozenset({"callbacks.*"}))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Routes:
    """The guid directory port (GuidDirectory.lookup): guid -> (tenant, account)."""

    def __init__(self, routes: dict[str, tuple[str, str]]) -> None:
        self.routes = routes
        self.down = False

    async def lookup(self, guid: str, *, fresh: bool = False) -> tuple[str, str] | None:
        if self.down:
            raise ConnectionError("directory unavailable")
        return self.routes.get(guid)


@dataclass
class LedgerSink:
    """Stands in for MessageEvents/AccountEvents: an effect once per effect key (their ledger),
    ALREADY_APPLIED after; `failures` calls fail first."""

    event: str
    failures: int = 0
    applied: list[tuple[ProviderCallback, str, str]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    def _apply(self, callback: ProviderCallback, key: str, tenant_id: str) -> Effect:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the message database is unavailable")
        if key in self.keys:
            return Effect(ALREADY_APPLIED, "applied before", self.event, {"guid": callback.guid})
        self.keys.add(key)
        self.applied.append((callback, key, tenant_id))
        return Effect(APPLIED, "", self.event, {"guid": callback.guid})

    async def apply(self, callback: ProviderCallback, *args: str) -> Effect:
        # MessageEvents.apply(callback, key, tenant_id); AccountEvents.apply(callback, tenant, account, key)
        key, tenant_id = (args[0], args[1]) if len(args) == 2 else (args[2], args[0])
        return self._apply(callback, key, tenant_id)


class Sink:
    """The webhook sink port: what the processor publishes."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, dict[str, Any], str | None]] = []

    async def publish(self, uow: Any, tenant_id: str, event_type: str, data: dict[str, Any],
                      source_event_id: str | None) -> None:
        self.published.append((tenant_id, event_type, data, source_event_id))


def cipher() -> FieldCipher:
    return FieldCipher({"k1": b"0123456789abcdef0123456789abcdef"}, "k1", b"lookup-key")


@dataclass
class World:
    db: FakeDatabase
    clock: Clock
    routes: Routes
    inbox: CallbackInbox
    processing: CallbackProcessing
    operators: CallbackEventUseCases
    messages: LedgerSink
    accounts: LedgerSink
    sink: Sink
    woken: list[str | None]

    async def claim(self, shard: str) -> list[Any]:
        async with self.db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
            return await uow.callbacks.claim("w1", self.clock(), 100, timedelta(seconds=30))

    async def process_all(self, shard: str) -> list[str]:
        return [await self.processing.process(shard, c, "w1") for c in await self.claim(shard)]

    async def stored(self, callback_id: str) -> Any:
        return await self.operators.get_callback_event(ADMIN, callback_id, "")


def make_world(*, with_cipher: bool = True, max_attempts: int = 3) -> World:
    db = FakeDatabase(shards=("s0", "s1"))
    db.place("t1", "s1")
    db.place("t2", "s0")
    clock = Clock()
    routes = Routes({"guid-1": ("t1", "acc-1"), "guid-2": ("t2", "acc-2")})
    woken: list[str | None] = []

    async def wake(shard: str | None) -> None:
        woken.append(shard)

    redis = create_redis(RedisConfig(url="memory://"))
    c = cipher() if with_cipher else None
    inbox = CallbackInbox(db, redis, f"test:{new_id()}:", InboxSettings(secret=SECRET, tolerance_seconds=300),
                          routes, wake=wake, clock=clock, cipher=c)  # type: ignore[arg-type]
    messages, accounts, sink = LedgerSink("message.sent"), LedgerSink("account.status_changed"), Sink()
    processing = CallbackProcessing(db, accounts, messages, routes, sink,  # type: ignore[arg-type]
                                    ProcessingSettings(max_attempts=max_attempts, backoff_initial_seconds=2,
                                                       backoff_max_seconds=5),
                                    clock=clock, cipher=c)
    operators = CallbackEventUseCases(db, replay_window=timedelta(days=7), page_tokens=PageTokens.with_random_key(),
                                      wake=wake, clock=clock)
    return World(db, clock, routes, inbox, processing, operators, messages, accounts, sink, woken)


def body(guid: str = "guid-1", notify_type: int = SENT, event_id: str | None = None, **data: Any) -> bytes:
    doc: dict[str, Any] = {"guid": guid, "notify_type": notify_type, "data": data or {"msg_id": "m-1"}}
    if event_id is not None:
        doc["event_id"] = event_id
    return json.dumps(doc).encode()


async def ingest(w: World, raw: bytes, *, timestamp: int | None = None, signature: str | None = None) -> Any:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return await w.inbox.ingest(raw, timestamp=ts, signature=signature or sign(SECRET, ts, raw), source="http",
                                source_ip="203.0.113.9", user_agent="provider/1.0")


# ---- ingest -------------------------------------------------------------------------------------


async def test_a_callback_is_stored_once_and_a_duplicate_answers_the_first_id():
    w = make_world()
    raw = body(event_id="ev-1")
    first = await ingest(w, raw, timestamp=int(time.time()))
    again = await ingest(w, raw, timestamp=int(time.time()) - 1)  # the provider's retry, signed anew

    assert not first.duplicate and again.duplicate
    assert again.callback_event_id == first.callback_event_id
    page, _ = await w.operators.list_callback_events(ADMIN, ListQuery(), 50, "")
    assert [c.id for c in page] == [first.callback_event_id]
    stored = page[0]
    assert (stored.tenant_id, stored.guid, stored.status, stored.event_type) == ("t1", "guid-1", "received",
                                                                                  "message.sent")
    assert (stored.source_ip, stored.user_agent, stored.dedupe_key) == ("203.0.113.9", "provider/1.0", "ev:ev-1")
    # Stored on the tenant's shard, and its processors woken once (the duplicate wakes nobody).
    assert await w.operators.get_callback_event(member("t1"), first.callback_event_id, "") == stored
    await asyncio.sleep(0.02)
    assert w.woken == ["s1"]


@pytest.mark.parametrize(("timestamp", "signature", "reason"), [
    (None, "v1=" + "0" * 64, "bad signature"),
    (int(time.time()) - 3600, None, "stale timestamp"),
    (None, "sha256=abc", "malformed signature"),
])
async def test_a_badly_signed_callback_is_refused_and_nothing_is_stored(timestamp, signature, reason):
    w = make_world()
    with pytest.raises(Unauthenticated) as refused:
        await ingest(w, body(), timestamp=timestamp, signature=signature)
    assert refused.value.metadata["reason"] == reason
    assert w.db.committed == 0


async def test_a_replayed_signed_request_is_refused():
    w = make_world()
    raw, ts = body(event_id="ev-r"), int(time.time())
    await ingest(w, raw, timestamp=ts)
    with pytest.raises(Unauthenticated) as refused:
        await ingest(w, raw, timestamp=ts)
    assert refused.value.metadata["reason"] == "replayed signature"


async def test_a_body_nested_too_deep_is_refused_and_the_same_request_is_not_taken_for_a_replay():
    w = make_world()
    raw = b'{"guid":"guid-1","notify_type":12001,"data":' + b"[" * 70 + b"]" * 70 + b"}"
    ts = int(time.time())
    for _ in range(2):  # the second time: refused for what it is again, not as a replay
        with pytest.raises(InvalidArgument) as refused:
            await ingest(w, raw, timestamp=ts)
        assert refused.value.violations[0].field == "body"
    assert w.db.committed == 0


async def test_a_body_over_one_mebibyte_is_refused_before_authentication():
    w = make_world()
    with pytest.raises(InvalidArgument) as refused:
        await ingest(w, b"{" + b" " * (1024 * 1024) + b"}", signature="v1=" + "0" * 64)
    assert "1 MiB" in refused.value.violations[0].description


async def test_a_callback_of_an_unknown_guid_is_kept_unassigned_for_the_platform_admin():
    w = make_world()
    stored = await ingest(w, body(guid="guid-unknown"))

    c = await w.stored(stored.callback_event_id)
    assert c.tenant_id is None
    page, _ = await w.operators.list_callback_events(member("t2"), ListQuery(), 50, "")
    assert page == []  # on the first shard, as t2's callbacks, but no tenant's
    with pytest.raises(NotFound):
        await w.operators.get_callback_event(member("t2"), stored.callback_event_id, "")


async def test_credentials_never_reach_the_table_but_the_effect_gets_the_one_it_needs():
    w = make_world()
    raw = body(notify_type=ONLINE, event_id="ev-online", login_token="LT-secret", verify_code="123456",
               nickname="Ann")
    stored = await ingest(w, raw)

    c = await w.stored(stored.callback_event_id)
    assert "LT-secret" not in c.raw_data and "123456" not in c.raw_data
    assert json.loads(c.raw_data)["data"] == {"login_token": "[REDACTED]", "verify_code": "[REDACTED]",
                                              "nickname": "Ann"}
    assert c.sealed_secrets and "LT-secret" not in c.sealed_secrets

    assert await w.process_all("s1") == ["processed"]
    [(applied, key, tenant_id)] = w.accounts.applied
    assert (applied.data["login_token"], applied.data["verify_code"]) == ("LT-secret", "[REDACTED]")
    assert (key, tenant_id) == ("ev:ev-online", "t1")
    processed = await w.stored(stored.callback_event_id)
    assert "LT-secret" not in json.dumps(processed.parsed_data)
    assert all("LT-secret" not in json.dumps(data) for *_, data, _ in w.sink.published)


async def test_without_a_cipher_credentials_are_dropped():
    w = make_world(with_cipher=False)
    stored = await ingest(w, body(notify_type=ONLINE, login_token="LT-secret"))

    assert (await w.stored(stored.callback_event_id)).sealed_secrets is None
    await w.process_all("s1")
    assert w.accounts.applied[0][0].data["login_token"] == "[REDACTED]"


async def test_the_simulator_delivers_through_the_inbox_unsigned():
    w = make_world()
    await w.inbox.deliver(ProviderCallback("guid-2", SENT, {"msg_id": "m-9"}, "sim-1", T0))

    [c] = (await w.operators.list_callback_events(member("t2"), ListQuery(), 50, ""))[0]
    assert (c.guid, c.dedupe_key) == ("guid-2", "ev:sim-1")


# ---- processing ---------------------------------------------------------------------------------


async def test_a_receipt_is_applied_once_marked_processed_and_published_once():
    w = make_world()
    stored = await ingest(w, body(event_id="ev-sent", msg_id="m-1"))

    assert await w.process_all("s1") == ["processed"]
    [(callback, key, tenant_id)] = w.messages.applied
    assert (callback.data["msg_id"], key, tenant_id) == ("m-1", "ev:ev-sent", "t1")
    c = await w.stored(stored.callback_event_id)
    assert (c.status, c.process_time, c.parsed_data["data"]) == ("processed", T0, {"msg_id": "m-1"})
    assert w.sink.published == [("t1", "message.sent", {"guid": "guid-1"}, stored.callback_event_id)]

    # Replayed: applied before (the ledger), processed again, but no second tenant event.
    assert await w.operators.replay_callbacks(ADMIN, [stored.callback_event_id], None, "", 0) == [
        stored.callback_event_id]
    assert (await w.stored(stored.callback_event_id)).status == "received"
    assert await w.process_all("s1") == ["processed"]
    assert len(w.messages.applied) == 1 and len(w.sink.published) == 1


async def test_a_failing_effect_is_retried_with_backoff_then_left_failed():
    w = make_world(max_attempts=3)
    w.messages.failures = 3
    stored = await ingest(w, body())

    assert await w.process_all("s1") == ["retry"]
    c = await w.stored(stored.callback_event_id)
    assert (c.status, c.retry_count) == ("received", 1)
    assert c.error_message == "ConnectionError: the message database is unavailable"
    assert await w.claim("s1") == []  # not due before the backoff (2 s after the first failure)

    w.clock.now += timedelta(seconds=2)
    assert await w.process_all("s1") == ["retry"]
    w.clock.now += timedelta(seconds=3)
    assert await w.claim("s1") == []  # the second wait is 4 s
    w.clock.now += timedelta(seconds=1)
    assert await w.process_all("s1") == ["failed"]
    c = await w.stored(stored.callback_event_id)
    assert (c.status, c.retry_count) == ("failed", 3)
    assert w.messages.applied == [] and w.sink.published == []


async def test_the_directory_down_is_retried_not_failed():
    w = make_world()
    stored = await ingest(w, body())
    w.routes.down = True

    assert await w.process_all("s1") == ["retry"]
    w.routes.down, w.clock.now = False, w.clock.now + timedelta(seconds=2)
    assert await w.process_all("s1") == ["processed"]
    assert (await w.stored(stored.callback_event_id)).retry_count == 1


@pytest.mark.parametrize(("raw", "status", "error"), [
    (b'{"guid": "guid-1"}', "failed", "malformed callback: notify_type is missing or not an integer"),
    (b"not json", "failed", "malformed callback: body is not JSON"),
    (body(notify_type=19999), "ignored", "unknown notify_type 19999"),
])
async def test_callbacks_that_cannot_be_applied_end_failed_or_ignored_with_the_reason(raw, status, error):
    w = make_world()
    stored = await ingest(w, raw)

    assert [*await w.process_all("s0"), *await w.process_all("s1")] == [status]
    c = await w.stored(stored.callback_event_id)
    assert c.status == status and c.error_message.startswith(error)
    assert w.messages.applied == [] and w.sink.published == []


async def test_a_callback_stored_unassigned_is_applied_once_its_account_exists():
    w = make_world()
    stored = await ingest(w, body(guid="guid-late"))
    assert await w.process_all("s0") == ["ignored"]
    assert (await w.stored(stored.callback_event_id)).error_message == "unknown guid 'guid-late'"

    w.routes.routes["guid-late"] = ("t2", "acc-9")  # the account was created meanwhile (t2 lives on s0)
    await w.operators.replay_callbacks(ADMIN, [stored.callback_event_id], None, "", 0)
    assert await w.process_all("s0") == ["processed"]
    c = await w.stored(stored.callback_event_id)
    assert c.tenant_id == "t2"  # now the tenant's, listed for it
    assert [x.id for x in (await w.operators.list_callback_events(member("t2"), ListQuery(), 50, ""))[0]] == [c.id]


async def test_a_stale_heartbeat_is_ignored():
    w = make_world()
    stored = await ingest(w, body(notify_type=HEARTBEAT, data_seq=1))
    w.clock.now += timedelta(minutes=5)

    assert await w.process_all("s1") == ["ignored"]
    assert (await w.stored(stored.callback_event_id)).error_message == "stale heartbeat"
    assert w.accounts.applied == []


# ---- operators ----------------------------------------------------------------------------------


async def test_listing_is_scoped_to_the_callers_tenant_newest_first_and_pages():
    w = make_world()
    ids = []
    for i in range(3):
        ids.append((await ingest(w, body(event_id=f"ev-{i}"))).callback_event_id)
        w.clock.now += timedelta(seconds=1)
    await ingest(w, body(guid="guid-2", event_id="other"))
    await ingest(w, body(notify_type=HEARTBEAT, event_id="hb"))

    first, token = await w.operators.list_callback_events(member("t1"), ListQuery(), 2, "")
    second, end = await w.operators.list_callback_events(member("t1"), ListQuery(), 2, token)
    assert [c.id for c in first + second] == ids[::-1]  # no heartbeat unless asked for, no t2 callback
    assert end == ""
    heartbeats, _ = await w.operators.list_callback_events(member("t1"), ListQuery(notify_type=HEARTBEAT), 10, "")
    assert [c.notify_type for c in heartbeats] == [HEARTBEAT]

    with pytest.raises(PermissionDenied):
        await w.operators.list_callback_events(member("t1"), ListQuery(tenant_id="t2"), 10, "")
    with pytest.raises(InvalidArgument):  # a token is bound to the tenant it lists
        await w.operators.list_callback_events(member("t2"), ListQuery(), 2, token)
    everything, _ = await w.operators.list_callback_events(ADMIN, ListQuery(), 50, "")
    assert len(everything) == 4


@pytest.mark.parametrize(("query", "field"), [
    (ListQuery(status="done"), "filter.status"),
    (ListQuery(received_after=T0, received_before=T0), "filter.received_before"),
    (ListQuery(guid="g" * 101), "filter.guid"),
])
async def test_a_bad_filter_names_its_field(query, field):
    w = make_world()
    with pytest.raises(InvalidArgument) as refused:
        await w.operators.list_callback_events(ADMIN, query, 10, "")
    assert refused.value.violations[0].field == field


async def test_get_checks_the_id_and_the_tenant():
    w = make_world()
    stored = await ingest(w, body(guid="guid-2"))
    with pytest.raises(InvalidArgument):
        await w.operators.get_callback_event(ADMIN, "", "")
    with pytest.raises(NotFound):
        await w.operators.get_callback_event(member("t1"), stored.callback_event_id, "")
    assert (await w.operators.get_callback_event(ADMIN, stored.callback_event_id, "t2")).guid == "guid-2"


async def test_replay_by_filter_takes_the_window_and_queues_oldest_first():
    w = make_world()
    a = (await ingest(w, body(event_id="a"))).callback_event_id
    w.clock.now += timedelta(minutes=1)
    b = (await ingest(w, body(event_id="b"))).callback_event_id
    await w.process_all("s1")
    w.woken.clear()

    q = ListQuery(received_after=T0 - timedelta(hours=1), received_before=T0 + timedelta(hours=1))
    assert await w.operators.replay_callbacks(member("t1"), [], q, "", 0) == [a, b]
    assert [(await w.stored(i)).status for i in (a, b)] == ["received", "received"]
    assert w.woken == ["s1"]
    assert await w.operators.replay_callbacks(member("t1"), [], q, "", 1) == [a]


@pytest.mark.parametrize(("ids", "query", "field"), [
    (["x"], ListQuery(), "filter"),
    ([], None, "ids"),
    (["x" * 65], None, "ids[0]"),
    ([], ListQuery(received_after=T0), "filter.received_before"),
    ([], ListQuery(received_after=T0 - timedelta(days=8), received_before=T0), "filter.received_after"),
    ([], ListQuery(received_after=T0, received_before=T0 + timedelta(hours=1)), "max_events"),
])
async def test_replay_refuses_bad_requests_with_the_field(ids, query, field):
    w = make_world()
    with pytest.raises(InvalidArgument) as refused:
        await w.operators.replay_callbacks(ADMIN, ids, query, "", -1 if field == "max_events" else 0)
    assert refused.value.violations[0].field == field


async def test_replay_of_another_tenants_or_unknown_callbacks_queues_nothing():
    w = make_world()
    other = (await ingest(w, body(guid="guid-2"))).callback_event_id
    await w.process_all("s0")

    with pytest.raises(NotFound):
        await w.operators.replay_callbacks(member("t1"), [other, "no-such-id"], None, "", 0)
    with pytest.raises(PermissionDenied):
        await w.operators.replay_callbacks(member("t1"), [other], None, "t2", 0)
    assert (await w.stored(other)).status == "processed"
