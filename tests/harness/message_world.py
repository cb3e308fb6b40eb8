"""The message and batch use cases on in-memory parts, for the use-case unit tests.

`MessageWorld` wires MessageUseCases and BatchUseCases as the composition root does
(servers/wework/server/app.py, _message_service), on:
- a FakeDatabase (tests/harness/fakes) for the message database,
- the embedded Redis (fakeredis, `memory://`) behind the real DailyQuota, under a key prefix of
  its own,
- `StubAccounts` and `StubTenants`, small implementations of the two ports the message use
  cases ask the other services through (AccountGateway, and the tenant limits read of
  TenantUseCases),
- a clock the test moves.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from wework.domain.access import Principal, PrincipalKind
from wework.domain.accounts import AccountStatus, Conversation, ConversationType
from wework.domain.errors import NotFound
from wework.domain.identity import TenantStatus
from wework.domain.media import Media, MediaKind
from wework.domain.messages import MessageType, Template, VariableDef
from wework.persistence.config import RedisConfig
from wework.persistence.ids import new_id
from wework.persistence.redis import create_redis
from wework.server.application.batches import BatchUseCases
from wework.server.application.context import AppContext
from wework.server.application.media import MediaUseCases
from wework.server.application.message_ports import ConversationFilter
from wework.server.application.messages import (
    LINGER_SECONDS,
    MESSAGE_DB,
    DailyQuota,
    MessageUseCases,
    database_quota_counter,
)
from wework.server.application.tenants import TenantLimits

from harness.fakes import FakeDatabase

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


class Clock:
    """ctx.clock: stands still until the test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class StubAccounts:
    """AccountGateway: the accounts and conversations the test declares."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[str, str], AccountStatus] = {}
        self.conversations: dict[tuple[str, str], list[Conversation]] = {}

    def add(self, tenant_id: str, status: AccountStatus = AccountStatus.ONLINE) -> str:
        account_id = new_id()
        self.accounts[(tenant_id, account_id)] = status
        return account_id

    def add_conversation(self, tenant_id: str, account_id: str, conversation_id: str,
                         conversation_type: ConversationType = ConversationType.PRIVATE, *,
                         tags: tuple[str, ...] = (), last_msg_time: datetime | None = None) -> None:
        self.conversations.setdefault((tenant_id, account_id), []).append(Conversation(
            id=new_id(), tenant_id=tenant_id, account_id=account_id, conversation_id=conversation_id,
            conversation_type=conversation_type, tags=list(tags), last_msg_time=last_msg_time))

    async def account_for_send(self, tenant_id: str, account_id: str) -> tuple[AccountStatus, str | None]:
        status = self.accounts.get((tenant_id, account_id))
        if status is None:
            raise NotFound("account", account_id)
        return status, None

    async def conversation_exists(self, tenant_id: str, account_id: str, conversation_id: str) -> bool:
        return any(c.conversation_id == conversation_id for c in self.conversations.get((tenant_id, account_id), []))

    async def conversations_for_targets(self, tenant_id: str, account_id: str,
                                        filter: ConversationFilter) -> AsyncIterator[Conversation]:
        for c in self.conversations.get((tenant_id, account_id), []):
            if filter.conversation_type is not None and c.conversation_type is not filter.conversation_type:
                continue
            if not set(filter.tags) <= set(c.tags):
                continue
            if filter.active_since is not None and (c.last_msg_time is None or c.last_msg_time < filter.active_since):
                continue
            yield c


class StubTenants:
    """What MessageUseCases reads of TenantUseCases: a tenant's status and daily quota."""

    def __init__(self) -> None:
        self.limits: dict[str, TenantLimits] = {}

    def add(self, max_daily_messages: int = 1000, status: TenantStatus = TenantStatus.ACTIVE) -> str:
        tenant_id = new_id()
        self.set(tenant_id, max_daily_messages, status)
        return tenant_id

    def set(self, tenant_id: str, max_daily_messages: int = 1000, status: TenantStatus = TenantStatus.ACTIVE) -> None:
        self.limits[tenant_id] = TenantLimits(status, 100, max_daily_messages)

    async def tenant_limits(self, tenant_id: str) -> TenantLimits | None:
        return self.limits.get(tenant_id)


@dataclass
class MessageWorld:
    db: FakeDatabase = field(default_factory=FakeDatabase)
    clock: Clock = field(default_factory=Clock)
    accounts: StubAccounts = field(default_factory=StubAccounts)
    tenants: StubTenants = field(default_factory=StubTenants)
    # None: the embedded Redis (create_redis("memory://")); a test may bring a client of its own.
    redis: Any = None
    # message.accept_linger_seconds: how long a forming batch waits for company under load
    linger_seconds: float = LINGER_SECONDS

    def __post_init__(self) -> None:
        self.ctx = AppContext(db=self.db, cipher=None, passwords=None, tokens=None,  # type: ignore[arg-type]
                              tenant_cache=None, credential_cache=None, admin_api_key="",  # type: ignore[arg-type]
                              clock=self.clock)
        # The embedded Redis is one per process: a key prefix of its own keeps worlds apart.
        self.redis_config = RedisConfig(url="memory://", key_prefix=f"unit-{uuid.uuid4().hex}:")
        if self.redis is None:
            self.redis = create_redis(self.redis_config)
        self.quota = DailyQuota(self.redis, self.redis_config, 3600, database_quota_counter(self.ctx))
        self.media = MediaUseCases(self.db, store=None, policy=None, clock=self.clock)  # type: ignore[arg-type]
        self.messages = MessageUseCases(self.ctx, self.accounts, self.tenants, self.quota,  # type: ignore[arg-type]
                                        max_schedule=timedelta(days=30), media=self.media,
                                        linger_seconds=self.linger_seconds)
        self.batches = BatchUseCases(self.ctx, self.accounts, self.tenants, quota=self.quota,
                                     require_active_tenant=self.messages.require_active_tenant)
        self.batches.media = self.media
        self.woken: list[str] = []

        async def wake(shard: str) -> None:
            self.woken.append(shard)

        self.batches.wake = wake
        self.accepted: list[list[str]] = []  # ids per accepting transaction (the dispatcher's hook)
        self.messages.on_accepted.append(
            lambda uow, messages: uow.after_commit(lambda: self.accepted.append([m.id for m in messages])))

    def sender(self, max_daily_messages: int = 1000) -> tuple[Principal, str]:
        """A new active tenant, an API key principal of it, and an online account: (principal, account_id)."""
        tenant_id = self.tenants.add(max_daily_messages)
        principal = Principal(PrincipalKind.API_KEY, f"key-{tenant_id[:8]}", tenant_id, frozenset({"*"}))
        return principal, self.accounts.add(tenant_id)

    async def add_template(self, principal: Principal, content: dict, *, variables: list[VariableDef] = (),
                           message_type: MessageType = MessageType.TEXT, is_public: bool = True,
                           is_active: bool = True) -> Template:
        now = self.clock()
        template = Template(id=new_id(), tenant_id=principal.tenant_id or "", creator_id=principal.subject_id,
                            template_name=f"t-{new_id()}", template_type=message_type, template_content=content,
                            created_at=now, updated_at=now, variables=list(variables), is_public=is_public,
                            is_active=is_active)
        async with self.db.unit_of_work(MESSAGE_DB, template.tenant_id) as uow:
            await uow.templates.add(template)
        return template

    async def add_media(self, tenant_id: str, kind: MediaKind = MediaKind.IMAGE) -> Media:
        media = Media(id=new_id(), tenant_id=tenant_id, kind=kind, file_name="a.png", content_type="image/png",
                      size_bytes=10, sha256="0" * 64, storage_key=f"k/{new_id()}", source="upload",
                      created_at=self.clock())
        async with self.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            await uow.media.add(media)
        return media

    def fail_next_write(self, error: BaseException) -> None:
        """The next unit of work opened for writing raises `error` (the reads before it pass):
        FakeDatabase.failing aimed past a use case's reads."""
        db = self.db
        opened = db.unit_of_work

        def unit_of_work(name: str, tenant_id: str, *, read_only: bool = False):
            if not read_only:
                del db.unit_of_work  # back to the class's method
                db.failing = error
            return opened(name, tenant_id, read_only=read_only)

        db.unit_of_work = unit_of_work  # type: ignore[method-assign]

    async def quota_used(self, tenant_id: str) -> int:
        """The Redis counter of today's quota (0 when not seeded yet)."""
        raw = await self.redis.get(self.quota.key(tenant_id, self.clock().date()))
        return int(raw or 0)
