"""The account use cases (application/accounts.py, conversations.py, account_events.py) on
in-memory units of work (tests/harness/fakes), a fake of our Provider port and the real
two-level cache over the in-process Redis. No database: the SQL repositories' locking and
semantics are what tests/integration/test_account_repository.py covers.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from harness.fakes import FakeDatabase
from harness.fakes.identity import add_tenant
from wework.domain.access import Principal, PrincipalKind
from wework.domain.accounts import ACCOUNT_DELETED, AccountStatus, ConversationType, OperatorType
from wework.domain.callbacks import ALREADY_APPLIED, APPLIED, NO_EFFECT, AlreadyApplied
from wework.domain.errors import (
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    Unavailable,
)
from wework.domain.identity import TenantStatus
from wework.persistence.config import RedisConfig
from wework.persistence.redis.cache import TwoLevelCache
from wework.persistence.redis.client import create_redis
from wework.server.application.account_events import AccountEvents
from wework.server.application.accounts import (
    AccountEventBus,
    AccountPolicies,
    AccountStore,
    AccountUseCases,
    LoginFlow,
)
from wework.server.application.context import AppContext
from wework.server.application.conversations import ConversationUseCases
from wework.server.application.tenants import TenantUseCases
from wework.server.providers.base import (
    LoginQr,
    NotifyType,
    ProviderCallback,
    ProviderError,
    ProviderUnavailable,
)
from wework.server.security.field_crypto import FieldCipher
from wework.server.security.passwords import PasswordHasher
from wework.server.security.tokens import TokenIssuer

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# The account use cases hash no passwords; one hasher (a fifth of a second to make) for all.
PASSWORDS = PasswordHasher()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeProvider:
    """Our Provider port: remembers what was asked; `refuse[method]` makes that call fail."""

    instances: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    logged_out: list[str] = field(default_factory=list)
    codes: list[tuple[str, str]] = field(default_factory=list)
    refuse: dict[str, ProviderError] = field(default_factory=dict)

    def _maybe_refuse(self, method: str) -> None:
        if method in self.refuse:
            raise self.refuse.pop(method)

    async def create_instance(self, guid: str, *, config: dict[str, Any] | None = None) -> None:
        self._maybe_refuse("create_instance")
        self.instances[guid] = config

    async def get_login_qr(self, guid: str) -> LoginQr:
        self._maybe_refuse("get_login_qr")
        return LoginQr(f"https://qr.example/{guid}", f"payload-{guid}", T0 + timedelta(minutes=5))

    async def submit_verification_code(self, guid: str, code: str) -> None:
        self._maybe_refuse("submit_verification_code")
        self.codes.append((guid, code))

    async def logout(self, guid: str) -> None:
        self._maybe_refuse("logout")
        self.logged_out.append(guid)

    async def close(self) -> None:
        return None


class World:
    """The account application layer of one process, wired as app.py wires it."""

    def __init__(self, redis, prefix: str) -> None:
        self.db = FakeDatabase(shards=("s0", "s1"))
        self.clock = Clock()
        self.caches = [TwoLevelCache(redis, f"{prefix}{name}") for name in ("tenant", "cred", "account")]
        self.ctx = AppContext(
            db=self.db, cipher=FieldCipher({"k1": b"k" * 32}, "k1", b"lookup-key"), passwords=PASSWORDS,
            tokens=TokenIssuer(b"t" * 32, 900), tenant_cache=self.caches[0], credential_cache=self.caches[1],
            admin_api_key="unused", clock=self.clock)
        self.redis = redis
        self.account_cache = self.caches[2]
        self.bus = AccountEventBus(redis, prefix)
        self.store = AccountStore(self.ctx, self.account_cache, self.bus,
                                  AccountPolicies(watch_poll_seconds=0.02))
        self.provider = FakeProvider()
        self.store.provider = self.provider  # type: ignore[assignment]
        self.login = LoginFlow(self.store)
        self.tenants = TenantUseCases(self.ctx)
        self.accounts = AccountUseCases(self.store, self.login, self.tenants)
        self.conversations = ConversationUseCases(self.store)
        self.events = AccountEvents(self.store, self.login, self.conversations)

    async def tenant(self, *, max_accounts: int = 10, status: TenantStatus = TenantStatus.ACTIVE,
                     shard: str | None = None) -> Principal:
        tenant_id = uuid.uuid4().hex
        if shard is not None:
            self.db.place(tenant_id, shard)
        await add_tenant(self.db, tenant_id, max_accounts=max_accounts, status=status, now=T0)
        return Principal(PrincipalKind.USER, f"user-of-{tenant_id[:8]}", tenant_id, frozenset({"*"}))

    async def create(self, principal: Principal, name: str = "sales", request_id: str = "", **values: Any):
        return await self.accounts.create_account(principal, {"account_name": name, **values}, request_id)

    async def callback(self, account, kind: NotifyType, data: dict | None = None, *, key: str | None = None):
        cb = ProviderCallback(account.guid, int(kind), data or {}, uuid.uuid4().hex, self.clock())
        return await self.events.apply(cb, account.tenant_id, account.id, key)

    async def history(self, principal: Principal, account_id: str) -> list[tuple[str | None, str]]:
        changes, _ = await self.accounts.list_status_history(principal, account_id, 100, "")
        return [(c.old_status, c.new_status) for c in reversed(changes)]


@pytest.fixture
async def world():
    redis = create_redis(RedisConfig(url="memory://"))
    w = World(redis, f"unit-{uuid.uuid4().hex[:8]}:")
    for cache in w.caches:
        await cache.start()
    yield w
    for cache in w.caches:
        await cache.close()
    await redis.aclose()


# ---- create -------------------------------------------------------------------------------------


async def test_create_account_stores_it_with_a_provider_instance_and_a_creation_row(world):
    user = await world.tenant()
    created = await world.create(user, "sales", config={"region": "sh"}, phone="+8613800000000")

    assert created.status is AccountStatus.CREATED and created.version == 1
    assert created.guid.startswith("wg_")
    assert world.provider.instances == {created.guid: {"region": "sh"}}
    got = await world.accounts.get_account(user, created.id)
    assert (got.account_name, got.phone, got.etag) == ("sales", "+8613800000000", created.etag)
    changes, _ = await world.accounts.list_status_history(user, created.id, 10, "")
    assert [(c.seq, c.old_status, c.new_status, c.operator.type, c.operator.id) for c in changes] == [
        (1, None, "created", OperatorType.USER, user.subject_id)]
    assert await world.events.route(created.guid) == (user.tenant_id, created.id)


async def test_a_retried_create_with_the_same_request_id_answers_the_first_account(world):
    user = await world.tenant()
    first = await world.create(user, "sales", request_id="req-1")
    again = await world.create(user, "sales", request_id="req-1")

    assert again.id == first.id and again.guid == first.guid
    page, _ = await world.accounts.list_accounts(user, None, "", 10, "")
    assert [a.id for a in page] == [first.id]


async def test_create_beyond_the_tenants_quota_is_refused_and_writes_nothing(world):
    user = await world.tenant(max_accounts=1)
    await world.create(user, "one")
    committed = world.db.committed

    with pytest.raises(QuotaExceeded) as refused:
        await world.create(user, "two", request_id="req-2")
    assert refused.value.violations[0].subject == f"tenants/{user.tenant_id}"
    assert "max_accounts 1" in refused.value.violations[0].description
    assert world.db.committed == committed


async def test_a_taken_name_gives_the_guid_and_the_request_id_back(world):
    user = await world.tenant()
    await world.create(user, "sales")

    with pytest.raises(AlreadyExists) as taken:
        await world.create(user, "sales", request_id="req-dup")
    assert (taken.value.resource_type, taken.value.field_name) == ("account", "account_name")
    stored = {a.guid for a in (await world.accounts.list_accounts(user, None, "", 10, ""))[0]}
    [refused_guid] = [g for g in world.provider.instances if g not in stored]
    assert await world.events.route(refused_guid) is None
    # The request id is free again: the same request_id with another name makes a new account.
    other = await world.create(user, "support", request_id="req-dup")
    assert other.account_name == "support" and other.guid != refused_guid


async def test_a_config_the_provider_refuses_is_an_invalid_argument(world):
    user = await world.tenant()
    world.provider.refuse["create_instance"] = ProviderError("bad region", code="INVALID_CONFIG")

    with pytest.raises(InvalidArgument) as bad:
        await world.create(user, "sales", config={"region": "mars"})
    assert [v.field for v in bad.value.violations] == ["account.config"]
    assert (await world.accounts.list_accounts(user, None, "", 10, ""))[0] == []


async def test_after_provider_unavailable_a_retry_continues_with_the_same_guid(world):
    user = await world.tenant()
    world.provider.refuse["create_instance"] = ProviderUnavailable("timeout")

    with pytest.raises(Unavailable):
        await world.create(user, "sales", request_id="req-u")
    account = await world.create(user, "sales", request_id="req-u")
    assert list(world.provider.instances) == [account.guid]


async def test_create_needs_an_active_existing_tenant(world):
    suspended = await world.tenant(status=TenantStatus.SUSPENDED)
    with pytest.raises(FailedPrecondition) as refused:
        await world.create(suspended)
    assert refused.value.reason == "TENANT_SUSPENDED"

    stranger = Principal(PrincipalKind.USER, "u", "no-such-tenant", frozenset({"*"}))
    with pytest.raises(NotFound) as missing:
        await world.create(stranger)
    assert missing.value.resource_type == "tenant"


# ---- reads -------------------------------------------------------------------------------------------


async def test_get_account_is_tenant_scoped_and_the_cache_holds_no_secrets(world):
    user = await world.tenant()
    other = await world.tenant()
    created = await world.create(user, "sales", phone="+8613811112222", provider_token="pt-secret")

    got = await world.accounts.get_account(user, created.id)
    assert got.provider_token is None and got.phone == "+8613811112222"
    with pytest.raises(NotFound):
        await world.accounts.get_account(other, created.id)
    # What Redis holds of it: neither the phone in clear nor the provider token.
    stored = b"".join([v for key in await world.redis.keys(f"{world.account_cache.namespace}*")
                       if (await world.redis.type(key)) == b"hash"
                       for v in (await world.redis.hgetall(key)).values()])
    assert created.id.encode() in stored
    assert b"+8613811112222" not in stored and b"pt-secret" not in stored


async def test_list_accounts_pages_by_id_and_filters_by_status(world):
    user = await world.tenant()
    made = [await world.create(user, f"acc-{i}") for i in range(3)]
    await world.accounts.start_login(user, made[1].id)

    first, token = await world.accounts.list_accounts(user, None, "", 2, "")
    second, last = await world.accounts.list_accounts(user, None, "", 2, token)
    assert [a.id for a in first + second] == sorted(a.id for a in made)
    assert token and last == ""
    waiting, _ = await world.accounts.list_accounts(user, AccountStatus.WAITING_SCAN, "", 10, "")
    assert [a.id for a in waiting] == [made[1].id]


# ---- update / delete -----------------------------------------------------------------------------------


async def test_update_account_checks_the_etag_and_the_next_read_shows_the_change(world):
    user = await world.tenant()
    created = await world.create(user, "sales")
    await world.accounts.get_account(user, created.id)  # now cached

    updated = await world.accounts.update_account(user, created.id, {"account_name": "sales-east"},
                                                  ["account_name"], created.etag)
    assert updated.version == 2
    assert (await world.accounts.get_account(user, created.id)).account_name == "sales-east"
    with pytest.raises(EtagMismatch):
        await world.accounts.update_account(user, created.id, {"account_name": "x"}, ["account_name"],
                                            created.etag)
    with pytest.raises(InvalidArgument) as bad:
        await world.accounts.update_account(user, created.id, {"status": "online"}, ["status"], "")
    assert [v.field for v in bad.value.violations] == ["update_mask"]


async def test_a_new_config_goes_to_the_provider_before_it_is_stored(world):
    user = await world.tenant()
    account = await world.create(user, "sales", config={"region": "sh"})
    world.provider.refuse["create_instance"] = ProviderError("no such region", code="INVALID_CONFIG")

    with pytest.raises(InvalidArgument) as bad:
        await world.accounts.update_account(user, account.id, {"config": {"region": "mars"}}, ["config"], "")
    assert [v.field for v in bad.value.violations] == ["account.config"]
    assert (await world.accounts.get_account(user, account.id)).config == {"region": "sh"}

    await world.accounts.update_account(user, account.id, {"config": {"region": "bj"}}, ["config"], "")
    assert world.provider.instances[account.guid] == {"region": "bj"}
    assert (await world.accounts.get_account(user, account.id)).config == {"region": "bj"}


async def test_update_to_a_taken_name_is_already_exists_and_changes_nothing(world):
    user = await world.tenant()
    await world.create(user, "sales")
    second = await world.create(user, "support")

    with pytest.raises(AlreadyExists):
        await world.accounts.update_account(user, second.id, {"account_name": "sales"}, ["account_name"], "")
    assert (await world.accounts.get_account(user, second.id)).account_name == "support"


async def test_delete_account_removes_it_its_conversations_and_its_guid(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    await world.accounts.start_login(user, account.id)
    conversation = await world.conversations.record_message(
        user.tenant_id, account.id, {"conversation_id": "c1", "content": {"text": "hi"}}, T0)

    await world.accounts.delete_account(user, account.id, "")

    assert world.provider.logged_out == [account.guid]  # a login was under way
    with pytest.raises(NotFound):
        await world.accounts.get_account(user, account.id)
    with pytest.raises(NotFound):
        await world.conversations.get_conversation(user, conversation.id)
    assert await world.events.route(account.guid) is None
    assert (await world.history(user, account.id))[-1] == ("waiting_scan", ACCOUNT_DELETED)


async def test_a_failed_unit_of_work_leaves_the_account_unchanged(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    world.db.failing = Unavailable("the account database is unavailable")

    with pytest.raises(Unavailable):
        await world.accounts.start_login(user, account.id)
    assert (await world.accounts.get_account(user, account.id)).status is AccountStatus.CREATED


# ---- login, status changes and their history ------------------------------------------------------------


async def test_start_login_records_each_step_in_the_history_and_the_cached_read_follows(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    await world.accounts.get_account(user, account.id)  # cached as CREATED

    waiting = await world.accounts.start_login(user, account.id)

    assert waiting.status is AccountStatus.WAITING_SCAN
    assert waiting.qr_code_url == f"https://qr.example/{account.guid}"
    assert (await world.accounts.get_login_state(user, account.id)).status is AccountStatus.WAITING_SCAN
    assert await world.history(user, account.id) == [
        (None, "created"), ("created", "logging_in"), ("logging_in", "waiting_scan")]


async def test_a_provider_refusing_the_qr_code_ends_the_login_in_error(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    world.provider.refuse["get_login_qr"] = ProviderError("instance banned", code="BANNED")

    with pytest.raises(FailedPrecondition) as refused:
        await world.accounts.start_login(user, account.id)
    assert refused.value.violations[0].type == "PROVIDER"
    got = await world.accounts.get_account(user, account.id)
    assert got.status is AccountStatus.ERROR and "BANNED" in got.error_message


async def test_an_illegal_trigger_is_refused_with_the_status_and_changes_nothing(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    committed = world.db.committed

    with pytest.raises(FailedPrecondition) as refused:
        await world.accounts.submit_verification_code(user, account.id, "123456")
    assert refused.value.violations[0].type == "STATUS"
    assert world.db.committed == committed and world.provider.codes == []


async def test_logout_of_an_online_account_goes_offline_and_logs_out_at_the_provider(world):
    user = await world.tenant()
    account = await world.accounts.start_login(user, (await world.create(user, "sales")).id)
    await world.callback(account, NotifyType.ONLINE, {"user_info": {"name": "Li"}, "login_token": "tok"})

    offline = await world.accounts.logout(user, account.id)

    assert offline.status is AccountStatus.OFFLINE and offline.login_token is None
    assert world.provider.logged_out == [account.guid]
    assert (await world.history(user, account.id))[-2:] == [("waiting_scan", "online"), ("online", "offline")]


async def test_status_history_pages_newest_first(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    await world.accounts.start_login(user, account.id)  # 3 rows in all

    first, token = await world.accounts.list_status_history(user, account.id, 2, "")
    rest, end = await world.accounts.list_status_history(user, account.id, 2, token)
    assert [c.seq for c in first + rest] == [3, 2, 1] and end == ""
    with pytest.raises(NotFound):
        await world.accounts.list_status_history(user, "no-such-account", 2, "")


async def test_watch_replays_from_a_cursor_and_follows_new_changes(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    stream = world.accounts.watch(user, [account.id], "")
    try:
        start, cursor = await anext(stream)
        assert start is None
        await world.accounts.start_login(user, account.id)
        async with asyncio.timeout(2):
            seen = [(await anext(stream))[0].new_status for _ in range(2)]
        assert seen == ["logging_in", "waiting_scan"]
    finally:
        await stream.aclose()

    replay = world.accounts.watch(user, [account.id], cursor)  # the cursor from before the login
    try:
        await anext(replay)
        async with asyncio.timeout(2):
            assert (await anext(replay))[0].new_status == "logging_in"
    finally:
        await replay.aclose()


# ---- provider callbacks (AccountEvents) -------------------------------------------------------------------


async def test_a_callback_applied_twice_has_one_effect(world):
    user = await world.tenant()
    account = await world.accounts.start_login(user, (await world.create(user, "sales")).id)

    first = await world.callback(account, NotifyType.QR_SCANNED, key="cb-1")
    again = await world.callback(account, NotifyType.QR_SCANNED, key="cb-1")

    assert first.outcome == APPLIED and first.data["previous_status"] == "waiting_scan"
    assert again.outcome == ALREADY_APPLIED
    assert (await world.history(user, account.id)).count(("waiting_scan", "waiting_confirm")) == 1


async def test_a_late_callback_is_no_effect_and_never_undoes_a_logout(world):
    user = await world.tenant()
    account = await world.accounts.start_login(user, (await world.create(user, "sales")).id)
    await world.accounts.logout(user, account.id)

    late = await world.callback(account, NotifyType.ONLINE, key="cb-late")

    assert late.outcome == NO_EFFECT
    assert (await world.accounts.get_account(user, account.id)).status is AccountStatus.OFFLINE
    # Refused, so its key was not spent: the ledger row rolled back with the transition.
    assert (await world.callback(account, NotifyType.ONLINE, key="cb-late")).outcome == NO_EFFECT


async def test_a_callback_for_a_deleted_account_is_no_effect(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    await world.accounts.delete_account(user, account.id, "")

    assert (await world.callback(account, NotifyType.QR_SCANNED, key="cb-x")).outcome == NO_EFFECT


async def test_heartbeats_are_written_at_most_once_per_resolution(world):
    user = await world.tenant()
    account = await world.accounts.start_login(user, (await world.create(user, "sales")).id)
    await world.callback(account, NotifyType.ONLINE)  # last_heartbeat_time = T0
    resolution = world.store.policies.heartbeat_resolution.total_seconds()

    world.clock.advance(resolution / 2)
    await world.callback(account, NotifyType.HEARTBEAT)
    assert (await world.accounts.get_account(user, account.id)).last_heartbeat_time == T0
    world.clock.advance(resolution)
    await world.callback(account, NotifyType.HEARTBEAT)
    got = await world.accounts.get_account(user, account.id)
    assert got.last_heartbeat_time == world.clock.now
    assert got.version == 4  # a heartbeat is not a versioned change: etags stay valid


# ---- conversations ------------------------------------------------------------------------------------------


async def test_incoming_messages_count_unread_once_per_callback(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    message = {"conversation_id": "c1", "conversation_name": "Li", "conversation_type": "single",
               "content": {"text": "hello"}}

    first = await world.callback(account, NotifyType.MESSAGE_RECEIVED, message, key="m-1")
    await world.callback(account, NotifyType.MESSAGE_RECEIVED, message, key="m-1")  # redelivered
    world.clock.advance(5)
    await world.callback(account, NotifyType.MESSAGE_RECEIVED, {**message, "content": {"text": "again"}},
                         key="m-2")

    assert first.outcome == APPLIED and first.data["unread_count"] == 1
    conversation = await world.conversations.get_conversation(user, first.data["conversation"])
    assert (conversation.unread_count, conversation.last_msg_content) == (2, "again")
    assert conversation.conversation_type is ConversationType.PRIVATE
    assert conversation.last_msg_time == world.clock.now
    with pytest.raises(AlreadyApplied):
        await world.conversations.record_message(user.tenant_id, account.id, message, T0, effect_key="m-1")


async def test_a_message_without_a_conversation_id_is_no_effect(world):
    user = await world.tenant()
    account = await world.create(user, "sales")

    effect = await world.callback(account, NotifyType.MESSAGE_RECEIVED, {"content": {"text": "?"}}, key="m-0")

    assert effect.outcome == NO_EFFECT
    assert (await world.conversations.list_conversations(user, account.id, None, None, "", 10, ""))[0] == []


async def test_list_conversations_newest_first_with_filters_and_pages(world):
    user = await world.tenant()
    account = await world.create(user, "sales")
    ids = []
    for i in range(3):
        world.clock.advance(1)
        c = await world.conversations.record_message(
            user.tenant_id, account.id, {"conversation_id": f"c{i}", "content": {"text": str(i)}}, world.clock())
        ids.append(c.id)
    pinned = await world.conversations.update_conversation(user, ids[0], {"is_pinned": True, "tags": ["vip"]},
                                                           ["is_pinned", "tags"], "")

    first, token = await world.conversations.list_conversations(user, account.id, None, None, "", 2, "")
    rest, end = await world.conversations.list_conversations(user, account.id, None, None, "", 2, token)
    assert [c.id for c in first + rest] == ids[::-1] and end == ""
    vip, _ = await world.conversations.list_conversations(user, account.id, None, True, "vip", 10, "")
    assert [c.id for c in vip] == [pinned.id]
    group, _ = await world.conversations.list_conversations(user, account.id, ConversationType.GROUP, None,
                                                            "", 10, "")
    assert group == []


async def test_update_conversation_marks_read_with_the_etag_and_is_tenant_scoped(world):
    user = await world.tenant()
    other = await world.tenant()
    account = await world.create(user, "sales")
    c = await world.conversations.record_message(user.tenant_id, account.id, {"conversation_id": "c1",
                                                                              "content": "hi"}, T0)

    read = await world.conversations.update_conversation(user, c.id, {"unread_count": 0}, ["unread_count"],
                                                         c.etag)
    assert (read.unread_count, read.version) == (0, 2)
    assert (await world.conversations.get_conversation(user, c.id)).unread_count == 0
    with pytest.raises(EtagMismatch):
        await world.conversations.update_conversation(user, c.id, {"unread_count": 0}, ["unread_count"], c.etag)
    with pytest.raises(InvalidArgument):
        await world.conversations.update_conversation(user, c.id, {"unread_count": 3}, ["unread_count"], "")
    with pytest.raises(NotFound):
        await world.conversations.get_conversation(other, c.id)
    with pytest.raises(NotFound):
        await world.conversations.list_conversations(other, account.id, None, None, "", 10, "")


# ---- what the puppet-service provider asks of the store ---------------------------------------------------


async def test_provider_tokens_and_followed_sessions_on_every_shard(world):
    first, second = await world.tenant(shard="s0"), await world.tenant(shard="s1")
    online = await world.accounts.start_login(first, (await world.create(first, "a", provider_token="pt-a")).id)
    await world.callback(online, NotifyType.ONLINE)
    waiting = await world.accounts.start_login(second, (await world.create(second, "b", provider_token="pt-b")).id)
    await world.create(second, "idle", provider_token="pt-idle")  # CREATED: no session to follow
    await world.accounts.start_login(second, (await world.create(second, "tokenless")).id)

    assert sorted(await world.store.guids_with_provider_sessions()) == sorted([online.guid, waiting.guid])
    assert await world.store.provider_token(waiting.guid) == "pt-b"
    assert await world.store.provider_token("wg_unknown") is None
