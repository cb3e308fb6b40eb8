"""Composition root: builds the databases, Redis, caches, use cases and handlers
from the settings, once, and hands the gRPC runtime what it serves."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from wework.domain.accounts import LoginPolicy as AccountLoginPolicy
from wework.domain.accounts import RecoveryPolicy
from wework.domain.identity import LoginPolicy
from wework.persistence.database import Database, EngineCreated
from wework.persistence.redis.cache import TwoLevelCache
from wework.persistence.redis.client import create_redis
from wework.persistence.redis.client import ping as redis_ping
from wework.server.application.account_events import AccountEvents
from wework.server.application.accounts import (
    AccountEventBus,
    AccountPolicies,
    AccountStore,
    AccountUseCases,
    LoginFlow,
)
from wework.server.application.api_keys import ApiKeyUseCases
from wework.server.application.authn import CredentialAuthenticator
from wework.server.application.batches import BatchUseCases, finish_if_done
from wework.server.application.context import AppContext
from wework.server.application.conversations import ConversationUseCases
from wework.server.application.message_events import MessageEvents, ProviderEventRouter
from wework.server.application.message_ports import InProcessAccountGateway
from wework.server.application.messages import DailyQuota, MessageUseCases, database_quota_counter
from wework.server.application.roles import RoleUseCases
from wework.server.application.templates import TemplateUseCases
from wework.server.application.tenants import TenantUseCases
from wework.server.application.users import UserUseCases
from wework.server.handlers import account as account_handler
from wework.server.handlers import message as message_handler
from wework.server.handlers import tenant as tenant_handler
from wework.server.ingress.http import CallbackIngress
from wework.server.providers.factory import create_provider
from wework.server.runtime.registry import ServiceRegistration
from wework.server.security.field_crypto import FieldCipher
from wework.server.security.passwords import PasswordHasher
from wework.server.security.tokens import TokenIssuer
from wework.server.settings import Settings
from wework.server.workers.dispatch import Dispatcher, DispatchSettings, DispatchWaker
from wework.server.workers.heartbeat import HeartbeatMonitor


@dataclass
class Application:
    settings: Settings
    db: Database
    redis: object
    ctx: AppContext
    authenticator: CredentialAuthenticator
    registrations: list[ServiceRegistration]
    caches: list[TwoLevelCache] = field(default_factory=list)
    # Background work (monitors, provider adapters) stopped first at shutdown, before the pools.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def readiness_checks(self):
        # Named functions: the names label wework_readiness{check} and the health log lines.
        async def database() -> None:
            await self.db.ping()

        async def redis() -> None:
            await redis_ping(self.redis)

        return [database, redis]

    async def close(self) -> None:
        for closer in self.closers:
            await closer()
        for cache in self.caches:
            await cache.close()
        await self.db.dispose()
        close = getattr(self.redis, "aclose", None)
        if close is not None:
            await close()


async def build_application(settings: Settings, *,
                            on_engine_created: EngineCreated | None = None) -> Application:
    """`on_engine_created(engine, db, shard)` runs for each database engine as it is made
    (observability hooks pool metrics and SQL tracing in there)."""
    db = Database(settings.database_config, on_engine_created=on_engine_created)
    await db.start()
    redis = create_redis(settings.redis)
    sec = settings.security
    prefix = settings.redis.key_prefix
    tenant_cache = TwoLevelCache(redis, f"{prefix}tenant", local_ttl=30, redis_ttl=300)
    credential_cache = TwoLevelCache(redis, f"{prefix}cred", local_ttl=30, redis_ttl=300)
    for cache in (tenant_cache, credential_cache):
        await cache.start()
    ctx = AppContext(
        db=db,
        cipher=FieldCipher(
            keys={k: base64.b64decode(v.get_secret_value()) for k, v in sec.encryption_keys.items()},
            active_key_id=sec.active_encryption_key_id or next(iter(sec.encryption_keys)),
            lookup_key=sec.lookup_hash_key.get_secret_value().encode(),
        ),
        passwords=PasswordHasher(),
        tokens=TokenIssuer(sec.token_secret.get_secret_value().encode(), sec.access_token_ttl_seconds),
        tenant_cache=tenant_cache,
        credential_cache=credential_cache,
        admin_api_key=sec.admin_api_key.get_secret_value(),
        login_policy=LoginPolicy(max_failed_logins=sec.max_failed_logins,
                                 lockout=timedelta(minutes=sec.lockout_minutes)),
    )
    tenants = TenantUseCases(ctx)
    registrations: list[ServiceRegistration] = []
    if "tenant" in settings.server.services:
        handler = tenant_handler.TenantServiceHandler(
            tenants, UserUseCases(ctx, tenants), RoleUseCases(ctx), ApiKeyUseCases(ctx))
        registrations.append(tenant_handler.registration(handler))
    caches, closers = [tenant_cache, credential_cache], []
    shared: dict = {}  # parts one service hands to another in this process (account -> message)
    services = settings.server.services
    # The message service asks the account application layer about accounts in process, so a
    # message-only process builds the account internals too, without serving AccountService.
    if "account" in services or "message" in services:
        account = await _account_service(settings, ctx, redis, tenants, caches, closers, shared)
        if "account" in services:
            registrations.append(account)
    if "message" in settings.server.services:
        registrations.append(await _message_service(settings, ctx, redis, tenants, shared))
        await _start_dispatcher(settings, ctx, redis, shared, closers)
    if settings.callback.http_port is not None and "callback_sink" in shared:
        secret = settings.callback.secret
        ingress = CallbackIngress(shared["callback_sink"], secret=secret.get_secret_value() if secret else None,
                                  max_skew_seconds=settings.callback.max_skew_seconds)
        await ingress.start(settings.callback.http_host, settings.callback.http_port)
        closers.insert(0, ingress.close)
    return Application(settings=settings, db=db, redis=redis, ctx=ctx,
                       authenticator=CredentialAuthenticator(ctx, tenants),
                       registrations=registrations, caches=caches, closers=closers)


async def _account_service(settings: Settings, ctx: AppContext, redis, tenants: TenantUseCases,
                           caches: list, closers: list, shared: dict) -> ServiceRegistration:
    """AccountService: its cache, watch wake-ups, the provider (whose callbacks it ingests) and
    the heartbeat monitor, which runs in every process that serves it."""
    cfg, prefix = settings.account, settings.redis.key_prefix
    cache = TwoLevelCache(redis, f"{prefix}account", local_ttl=30, redis_ttl=300)
    await cache.start()
    caches.append(cache)
    bus = AccountEventBus(redis, prefix)
    await bus.start()
    policies = AccountPolicies(
        login=AccountLoginPolicy(max_qr_refreshes=cfg.login_max_qr_refreshes),
        recovery=RecoveryPolicy(max_attempts=cfg.recovery_max_attempts,
                                backoff_initial=timedelta(seconds=cfg.recovery_backoff_initial_seconds),
                                backoff_max=timedelta(seconds=cfg.recovery_backoff_max_seconds),
                                lease=timedelta(seconds=cfg.recovery_lease_seconds)),
        heartbeat_timeout=timedelta(seconds=cfg.heartbeat_timeout_seconds),
        watch_poll_seconds=cfg.watch_poll_seconds)
    store = AccountStore(ctx, cache, bus, policies)
    login, conversations = LoginFlow(store), ConversationUseCases(store)
    # Message receipts go to the message service's MessageEvents, the rest to AccountEvents.
    router = ProviderEventRouter(AccountEvents(store, login, conversations), MessageEvents(ctx.db))
    shared["callback_sink"] = router
    provider = create_provider(settings.provider, router)
    shared["provider"] = provider
    store.provider = provider
    monitor = HeartbeatMonitor(store, interval_seconds=cfg.monitor_interval_seconds,
                               batch_size=cfg.monitor_batch_size)
    await monitor.start()
    closers.extend([monitor.close, provider.close, bus.close])
    shared["account_gateway"] = InProcessAccountGateway(store, conversations)
    return account_handler.registration(account_handler.AccountServiceHandler(
        AccountUseCases(store, login, tenants), conversations))


async def _start_dispatcher(settings: Settings, ctx: AppContext, redis, shared: dict, closers: list) -> None:
    """Wake-ups after every accepting commit, and (message.run_dispatcher_in_server) a dispatcher
    in this process; `wework-worker dispatch` runs the same one on its own."""
    waker = DispatchWaker(redis, settings.redis.key_prefix)
    messages, batches = shared["messages"], shared["batches"]
    messages.on_accepted.append(lambda uow, m: uow.after_commit(lambda: waker.wake(uow.shard)))
    batches.wake = waker.wake
    if not settings.message.run_dispatcher_in_server:
        return
    dispatcher = Dispatcher(ctx.db, shared["provider"], shared["account_gateway"],
                            DispatchSettings.from_config(settings.message), waker=waker,
                            finish_batch=lambda tenant_id, task_id: finish_if_done(ctx, tenant_id, task_id))
    await dispatcher.start()
    closers.insert(0, dispatcher.close)  # before the provider closes


async def _message_service(settings: Settings, ctx: AppContext, redis, tenants: TenantUseCases,
                           shared: dict) -> ServiceRegistration:
    """MessageService. It asks the account application layer of this process about accounts
    (AccountGateway); build_application builds that layer for it."""
    gateway = shared["account_gateway"]
    cfg = settings.message
    quota = DailyQuota(redis, settings.redis, cfg.quota_key_ttl_seconds, database_quota_counter(ctx))
    messages = MessageUseCases(ctx, gateway, tenants, quota, max_schedule=timedelta(days=cfg.max_schedule_days))
    shared["messages"] = messages
    batches = BatchUseCases(ctx, gateway, tenants, quota=quota, require_active_tenant=messages.require_active_tenant)
    shared["batches"] = batches
    return message_handler.registration(message_handler.MessageServiceHandler(
        messages, TemplateUseCases(ctx), batches))
