"""AccountService's persistence under concurrency, on real MariaDB and Redis (and SQLite).

Each `Replica` is what one wework-server process runs for the account service: its own
connection pools, Redis client, two-level cache and watch bus, wired like app.py does, with
the in-process provider simulator (the only fake) delivering callbacks to its ingest.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from wework.domain.access import Principal, PrincipalKind
from wework.domain.accounts import (
    SYSTEM,
    AccountStatus,
    ConversationType,
    RecoveryPolicy,
    Trigger,
    apply_trigger,
)
from wework.domain.errors import FailedPrecondition, NotFound, QuotaExceeded
from wework.domain.identity import Tenant
from wework.persistence.config import RedisConfig
from wework.persistence.database import Database
from wework.persistence.models import account as am
from wework.persistence.redis import TwoLevelCache, create_redis
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
from wework.server.providers.base import NotifyType, ProviderCallback
from wework.server.providers.simulator import SimulatorConfig, SimulatorProvider
from wework.server.security.field_crypto import FieldCipher
from wework.server.security.passwords import PasswordHasher
from wework.server.security.tokens import TokenIssuer
from wework.server.workers.heartbeat import HeartbeatMonitor

ADMIN = Principal(PrincipalKind.PLATFORM_ADMIN, "platform-admin", None, frozenset({"*"}))
FAST_SIM = SimulatorConfig(scan_delay_seconds=0, confirm_delay_seconds=0, heartbeat_interval_seconds=3600)


class Replica:
    def __init__(self, config, redis_url: str, prefix: str, *, provider: SimulatorProvider | None = None,
                 policies: AccountPolicies | None = None) -> None:
        self.db = Database(config)
        self.redis = create_redis(RedisConfig(url=redis_url))
        self.caches = [TwoLevelCache(self.redis, f"{prefix}{name}") for name in ("tenant", "cred", "account")]
        self.ctx = AppContext(
            db=self.db, cipher=FieldCipher({"k1": b"k" * 32}, "k1", b"lookup-key"), passwords=PasswordHasher(),
            tokens=TokenIssuer(b"t" * 32, 900), tenant_cache=self.caches[0], credential_cache=self.caches[1],
            admin_api_key="unused")
        self.bus = AccountEventBus(self.redis, prefix)
        self.store = AccountStore(self.ctx, self.caches[2], self.bus, policies or AccountPolicies())
        self.login = LoginFlow(self.store)
        self.conversations = ConversationUseCases(self.store)
        self.events = AccountEvents(self.store, self.login, self.conversations)
        self.own_provider = provider is None
        self.provider = provider or SimulatorProvider(self.events, FAST_SIM)
        self.store.provider = self.provider
        self.tenants = TenantUseCases(self.ctx)
        self.accounts = AccountUseCases(self.store, self.login, self.tenants)
        self.monitor = HeartbeatMonitor(self.store, interval_seconds=3600, batch_size=5)

    async def start(self) -> Replica:
        await self.db.start()
        for cache in self.caches:
            await cache.start()
        await self.bus.start()
        return self

    async def close(self) -> None:
        if self.own_provider:
            await self.provider.close()
        await self.bus.close()
        for cache in self.caches:
            await cache.close()
        await self.db.dispose()
        await self.redis.aclose()

    async def new_tenant(self, max_accounts: int = 50) -> Principal:
        code = f"t{uuid.uuid4().hex[:12]}"
        tenant = await self.tenants.create_tenant(
            ADMIN, Tenant(id="", tenant_code=code, tenant_name=code, max_accounts=max_accounts), "")
        return Principal(PrincipalKind.API_KEY, f"key-{code}", tenant.id, frozenset({"*"}))

    async def wait_status(self, tenant_id: str, account_id: str, status: AccountStatus, timeout: float = 10):
        async with asyncio.timeout(timeout):
            while True:
                account = await self.store.load(tenant_id, account_id)
                if account is not None and account.status is status:
                    return account
                await asyncio.sleep(0.02)

    async def history(self, tenant_id: str) -> list[am.AccountStatusHistory]:
        async with self.db.unit_of_work("account", tenant_id, read_only=True) as uow:
            h = am.AccountStatusHistory
            return list((await uow.session.execute(
                sa.select(h).where(h.tenant_id == tenant_id).order_by(h.seq))).scalars())


@pytest.fixture
async def replicas(mariadb_config, redis_server):
    """Makes replicas over the shared migrated MariaDB map and the real Redis; closes them after."""
    prefix = f"wwtest:{uuid.uuid4().hex[:8]}:"
    made: list[Replica] = []

    async def make(**kwargs) -> Replica:
        replica = await Replica(mariadb_config, redis_server.url, prefix, **kwargs).start()
        made.append(replica)
        return replica

    yield make
    for replica in reversed(made):
        await replica.close()
    admin = create_redis(RedisConfig(url=redis_server.url))
    async for key in admin.scan_iter(match=f"{prefix}*"):
        await admin.delete(key)
    await admin.aclose()


def _assert_gapless_chains(rows) -> None:
    """Seqs are exactly 1..n, and each account's rows chain: old_status == previous new_status."""
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    last: dict[str, str | None] = {}
    for r in rows:
        assert r.old_status == last.get(r.account_id), (r.account_id, r.seq)
        last[r.account_id] = r.new_status


pytestmark = [pytest.mark.mariadb, pytest.mark.redis]


async def test_concurrent_transitions_on_one_account_exactly_one_wins(replicas):
    a = await replicas()
    b = await replicas(provider=a.provider)  # a second process on its own pools
    principal = await a.new_tenant()
    tenant_id = principal.tenant_id
    account = await a.accounts.create_account(principal, {"account_name": "contested"}, "")

    async def attempt(replica: Replica, i: int):
        trigger = (Trigger.START_LOGIN, Trigger.START_LOGIN)[i % 2]
        try:
            await replica.store.transition(tenant_id, account.id, lambda x: apply_trigger(
                x, trigger, now=replica.ctx.clock(), operator=SYSTEM, extra={"attempt": i}))
            return True
        except FailedPrecondition:
            return False

    results = await asyncio.gather(*(attempt((a, b)[i % 2], i) for i in range(30)))
    assert results.count(True) == 1
    await a.wait_status(tenant_id, account.id, AccountStatus.LOGGING_IN)

    # Same with several different triggers from ONLINE: one OFFLINE, whichever cause won.
    await a.store.transition(tenant_id, account.id, lambda x: apply_trigger(x, Trigger.ONLINE, now=a.ctx.clock()))
    contest = (Trigger.LOGOUT, Trigger.CONNECTION_LOST, Trigger.HEARTBEAT_TIMEOUT, Trigger.LOGGED_OUT)

    async def leave(replica: Replica, trigger: Trigger):
        try:
            await replica.store.transition(tenant_id, account.id,
                                           lambda x: apply_trigger(x, trigger, now=replica.ctx.clock()))
            return True
        except FailedPrecondition:
            return False

    results = await asyncio.gather(*(leave((a, b)[i % 2], contest[i % 4]) for i in range(24)))
    assert results.count(True) == 1
    rows = await a.history(tenant_id)
    _assert_gapless_chains(rows)
    assert [r.new_status for r in rows] == ["created", "logging_in", "online", "offline"]


async def test_tenant_change_log_is_gapless_under_concurrent_writers(replicas):
    a = await replicas()
    b = await replicas(provider=a.provider)
    principal = await a.new_tenant()
    tenant_id = principal.tenant_id
    accounts = [await a.accounts.create_account(principal, {"account_name": f"acc-{i}"}, "") for i in range(6)]
    walk = (Trigger.START_LOGIN, Trigger.ONLINE, Trigger.CONNECTION_LOST, Trigger.RECOVERY_STARTED,
            Trigger.RECOVERY_FAILED, Trigger.START_LOGIN)

    async def run(i: int, account_id: str) -> int:
        done = 0
        for step, trigger in enumerate(walk):
            replica = (a, b)[(i + step) % 2]
            # An illegal attempt in between: it rolls back and must leave no gap in the seqs.
            now = replica.ctx.clock
            with pytest.raises(FailedPrecondition):
                await replica.store.transition(tenant_id, account_id, lambda x, now=now: apply_trigger(
                    x, Trigger.QR_SCANNED if x.status is not AccountStatus.WAITING_SCAN else Trigger.LOGOUT,
                    now=now()))
            await replica.store.transition(tenant_id, account_id,
                                           lambda x, t=trigger, now=now: apply_trigger(x, t, now=now()))
            done += 1
        return done

    assert await asyncio.gather(*(run(i, acc.id) for i, acc in enumerate(accounts))) == [len(walk)] * 6
    rows = await a.history(tenant_id)
    assert len(rows) == 6 * (1 + len(walk))
    _assert_gapless_chains(rows)


async def test_quota_cannot_be_overrun_by_concurrent_creates(replicas):
    a = await replicas()
    b = await replicas(provider=a.provider)
    principal = await a.new_tenant(max_accounts=3)

    async def create(i: int):
        try:
            return await (a, b)[i % 2].accounts.create_account(principal, {"account_name": f"q{i}"}, "")
        except QuotaExceeded as exc:
            assert exc.violations[0].subject == f"tenants/{principal.tenant_id}"
            return None

    created = [x for x in await asyncio.gather(*(create(i) for i in range(12))) if x is not None]
    assert len(created) == 3
    page, _ = await a.accounts.list_accounts(principal, None, "", 100, "")
    assert sorted(x.id for x in page) == sorted(x.id for x in created)


async def test_two_monitors_on_one_shard_never_double_transition(replicas):
    policies = AccountPolicies(heartbeat_timeout=timedelta(seconds=60),
                               recovery=RecoveryPolicy(max_attempts=3, backoff_initial=timedelta(0),
                                                       lease=timedelta(seconds=30)))
    a = await replicas(policies=policies)
    b = await replicas(provider=a.provider, policies=policies)
    principal = await a.new_tenant()
    tenant_id = principal.tenant_id
    accounts = [await a.accounts.create_account(principal, {"account_name": f"m{i}"}, "") for i in range(12)]
    for account in accounts:
        await a.accounts.start_login(principal, account.id)
    for account in accounts:  # the simulator walks scan -> confirm -> online by itself
        await a.wait_status(tenant_id, account.id, AccountStatus.ONLINE)
    await a.provider.drain()
    # Their heartbeats stopped an hour ago (the simulator sends none at this interval).
    shard = a.db.shard_for(tenant_id)
    async with a.db.shard_unit_of_work("account", shard) as uow:
        await uow.session.execute(sa.update(am.WeworkAccount).where(am.WeworkAccount.tenant_id == tenant_id)
                                  .values(last_heartbeat_time=a.ctx.clock() - timedelta(hours=1)))

    offline = await asyncio.gather(*(m.monitor.sweep_stale(shard) for m in (a, b, a, b)))
    assert sum(offline) == 12
    reports = []
    for _ in range(6):  # both monitors, at once, until every account is back
        reports += await asyncio.gather(a.monitor.sweep_recoveries(shard), b.monitor.sweep_recoveries(shard))
        await a.provider.drain()
    assert sum(r.attempts for r in reports) == 12
    for account in accounts:
        await a.wait_status(tenant_id, account.id, AccountStatus.ONLINE)
    rows = await a.history(tenant_id)
    _assert_gapless_chains(rows)
    for account in accounts:
        mine = [r.new_status for r in rows if r.account_id == account.id]
        assert mine == ["created", "logging_in", "waiting_scan", "waiting_confirm", "online", "offline",
                        "recovering", "online"], mine
        recovered = [r for r in rows if r.account_id == account.id and r.old_status == "recovering"]
        assert recovered[0].reason in ("recovered", "reconnected")
    off = [r for r in rows if r.new_status == "offline"]
    assert {r.reason for r in off} == {"heartbeat_timeout"} and {r.operator_type for r in off} == {"system"}


async def test_get_account_is_cached_and_every_change_reaches_every_process(replicas):
    a = await replicas()
    b = await replicas(provider=a.provider)
    principal = await a.new_tenant()
    account = await a.accounts.create_account(principal, {"account_name": "cached", "phone": "+8613800000000"}, "")
    assert (await a.accounts.get_account(principal, account.id)).phone == "+8613800000000"
    before = a.store.cache.l1_hits
    for _ in range(5):
        assert (await a.accounts.get_account(principal, account.id)).account_name == "cached"
    assert a.store.cache.l1_hits == before + 5  # no database read
    await b.accounts.get_account(principal, account.id)
    # Redis holds no clear-text phone and no login token.
    raw = await a.redis.hget(f"{a.store.cache.namespace}:{principal.tenant_id}/{account.id}", "v")
    assert b"+8613800000000" not in raw and b"login_token" not in raw

    await b.accounts.update_account(principal, account.id, {"account_name": "renamed"}, ["account_name"], "")
    async with asyncio.timeout(3):
        while (await a.accounts.get_account(principal, account.id)).account_name != "renamed":
            await asyncio.sleep(0.02)
    await b.accounts.start_login(principal, account.id)  # a status change, made in b
    async with asyncio.timeout(3):
        while (await a.accounts.get_account(principal, account.id)).status is AccountStatus.CREATED:
            await asyncio.sleep(0.02)


async def test_watch_replays_exactly_the_changes_after_a_cursor_across_processes(replicas):
    a = await replicas()
    b = await replicas(provider=a.provider)
    principal = await a.new_tenant()
    account = await a.accounts.create_account(principal, {"account_name": "w"}, "")
    stream = a.accounts.watch(principal, [], "")
    await anext(stream)
    await b.accounts.start_login(principal, account.id)  # changes made by the other process
    seen = []
    async with asyncio.timeout(10):
        while len(seen) < 4:
            change, cursor_after = await anext(stream)
            seen.append((change.new_status, cursor_after))
    await stream.aclose()
    assert [s for s, _ in seen] == ["logging_in", "waiting_scan", "waiting_confirm", "online"]
    # Resume after the second change: exactly the last two, then silence.
    resumed = a.accounts.watch(principal, [account.id], seen[1][1])
    await anext(resumed)
    again = [(await anext(resumed))[0].new_status for _ in range(2)]
    assert again == ["waiting_confirm", "online"]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.5):
            await anext(resumed)
    await resumed.aclose()


@pytest.fixture(params=["mariadb", "sqlite"])
def engine_config(request):
    # A sync fixture: it may set up the async session fixtures, an async test may not.
    return request.getfixturevalue(f"{request.param}_config")


async def test_conversations_pages_and_filters_on_both_engines(engine_config, redis_server):
    config = engine_config
    prefix = f"wwtest:{uuid.uuid4().hex[:8]}:"
    replica = await Replica(config, redis_server.url, prefix).start()
    try:
        principal = await replica.new_tenant()
        tenant_id = principal.tenant_id
        account = await replica.accounts.create_account(principal, {"account_name": "chats"}, "")
        base = replica.ctx.clock()
        for i in range(7):
            await replica.conversations.record_message(
                tenant_id, account.id, {"conversation_id": f"c{i}", "conversation_type": "group" if i % 2 else
                                        "single", "content": {"text": f"hello {i}"}}, base + timedelta(seconds=i))
        await replica.conversations.record_message(tenant_id, account.id, {"conversation_id": "c0",
                                                   "content": "again"}, base + timedelta(seconds=10))
        pages, token, ids = 0, "", []
        while True:
            page, token = await replica.conversations.list_conversations(principal, account.id, None, None, "", 3,
                                                                         token)
            ids += [c.conversation_id for c in page]
            pages += 1
            if not token:
                break
        assert ids == ["c0", "c6", "c5", "c4", "c3", "c2", "c1"] and pages == 3
        first = (await replica.conversations.list_conversations(principal, account.id, None, None, "", 1, ""))[0][0]
        assert (first.unread_count, first.last_msg_content) == (2, "again")
        c3 = next(c for c in (await replica.conversations.list_conversations(
            principal, account.id, ConversationType.GROUP, None, "", 50, ""))[0] if c.conversation_id == "c3")
        await replica.conversations.update_conversation(principal, c3.id, {"tags": ["vip", "new"], "is_pinned": True,
                                                                           "unread_count": 0},
                                                        ["tags", "is_pinned", "unread_count"], c3.etag)
        tagged, _ = await replica.conversations.list_conversations(principal, account.id, None, None, "vip", 50, "")
        pinned, _ = await replica.conversations.list_conversations(principal, account.id, None, True, "", 50, "")
        private, _ = await replica.conversations.list_conversations(principal, account.id, ConversationType.PRIVATE,
                                                                    None, "", 50, "")
        assert [c.conversation_id for c in tagged] == [c.conversation_id for c in pinned] == ["c3"]
        assert tagged[0].unread_count == 0
        assert [c.conversation_id for c in private] == ["c0", "c6", "c4", "c2"]
    finally:
        await replica.close()
        admin = create_redis(RedisConfig(url=redis_server.url))
        async for key in admin.scan_iter(match=f"{prefix}*"):
            await admin.delete(key)
        await admin.aclose()


async def test_callbacks_out_of_order_or_repeated_change_nothing(replicas):
    a = await replicas()
    principal = await a.new_tenant()
    tenant_id = principal.tenant_id
    account = await a.accounts.create_account(principal, {"account_name": "late"}, "")
    await a.accounts.start_login(principal, account.id)
    await a.wait_status(tenant_id, account.id, AccountStatus.ONLINE)
    await a.provider.drain()
    await a.accounts.logout(principal, account.id)
    await a.provider.drain()  # the provider's own LOGGED_OUT callback: already OFFLINE, ignored
    before = await a.history(tenant_id)
    ignored = a.events.ignored

    def callback(kind: NotifyType, **data) -> ProviderCallback:
        return ProviderCallback(guid=account.guid, notify_type=int(kind), data=data, event_id=uuid.uuid4().hex,
                                time=a.ctx.clock())

    for late in (callback(NotifyType.ONLINE, user_info={"name": "ghost"}, login_token="old"),  # after logout
                 callback(NotifyType.QR_SCANNED), callback(NotifyType.LOGIN_QR, qr_payload="stale"),
                 callback(NotifyType.OFFLINE, reason="late"), callback(NotifyType.ONLINE)):
        await a.events.deliver(late)
    await a.events.deliver(ProviderCallback(guid="wg_unknown", notify_type=int(NotifyType.ONLINE), data={},
                                            event_id="e", time=a.ctx.clock()))
    assert a.events.ignored == ignored + 6
    assert [r.id for r in await a.history(tenant_id)] == [r.id for r in before]
    current = await a.store.load(tenant_id, account.id)
    assert current.status is AccountStatus.OFFLINE and current.login_token is None


async def test_incoming_messages_become_conversations_of_their_tenant_only(replicas):
    a = await replicas()
    owner, other = await a.new_tenant(), await a.new_tenant()
    account = await a.accounts.create_account(owner, {"account_name": "chatty"}, "")
    await a.accounts.start_login(owner, account.id)
    await a.wait_status(owner.tenant_id, account.id, AccountStatus.ONLINE)
    await a.provider.incoming_message(account.guid, "room-1", content="hi", conversation_type="group")
    await a.provider.incoming_message(account.guid, "room-1", content="again", conversation_type="group")
    await a.provider.conversation_changed(account.guid, "room-1", conversation_name="Room One", member_count=5)
    await a.provider.drain()
    (conv,), _ = await a.conversations.list_conversations(owner, account.id, None, None, "", 10, "")
    assert (conv.conversation_id, conv.conversation_name, conv.member_count, conv.unread_count,
            conv.last_msg_content, conv.conversation_type) == ("room-1", "Room One", 5, 2, "again",
                                                                ConversationType.GROUP)
    assert (await a.conversations.get_conversation(owner, conv.id)).id == conv.id
    for call in (lambda: a.conversations.get_conversation(other, conv.id),
                 lambda: a.conversations.update_conversation(other, conv.id, {"is_pinned": True}, ["is_pinned"], ""),
                 lambda: a.conversations.list_conversations(other, account.id, None, None, "", 10, "")):
        with pytest.raises(NotFound):
            await call()
    await a.accounts.delete_account(owner, account.id, "")
    with pytest.raises(NotFound):
        await a.conversations.get_conversation(owner, conv.id)  # deleted with its account
