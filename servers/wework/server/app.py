"""Composition root: builds the databases, Redis, caches, use cases and handlers
from the settings, once, and hands the gRPC runtime what it serves."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from wework.domain.accounts import LoginPolicy as AccountLoginPolicy
from wework.domain.accounts import RecoveryPolicy
from wework.domain.identity import LoginPolicy
from wework.persistence.database import Database, EngineCreated
from wework.persistence.pagination import PageTokens
from wework.persistence.redis.cache import TwoLevelCache
from wework.persistence.redis.client import create_redis
from wework.persistence.redis.client import ping as redis_ping
from wework.persistence.replicas import RedisWriteTracker, ReplicaMonitor, ReplicaRouting
from wework.persistence.sharding import DIRECTORY
from wework.persistence.shardmap import ShardMapStore, ShardMapWatcher
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
from wework.server.application.callbacks import (
    CallbackEventUseCases,
    CallbackInbox,
    CallbackProcessing,
    GuidDirectory,
    InboxSettings,
    NullWebhookSink,
    ProcessingSettings,
)
from wework.server.application.context import AppContext
from wework.server.application.conversations import ConversationUseCases
from wework.server.application.login_limits import LoginLimits, LoginRateLimiter
from wework.server.application.media import IncomingMedia, MediaUseCases, media_policy
from wework.server.application.message_events import MessageEvents, ProviderEventRouter
from wework.server.application.message_ports import InProcessAccountGateway
from wework.server.application.messages import DailyQuota, MessageUseCases, database_quota_counter
from wework.server.application.reports import ReportSettings, ReportUseCases
from wework.server.application.roles import RoleUseCases
from wework.server.application.simulator import SimulatorUseCases
from wework.server.application.templates import TemplateUseCases
from wework.server.application.tenants import TenantUseCases
from wework.server.application.users import UserUseCases
from wework.server.application.webhooks import TargetGuard, WebhookOutbox, WebhookPolicy, WebhookUseCases
from wework.server.handlers import account as account_handler
from wework.server.handlers import callback as callback_handler
from wework.server.handlers import media as media_handler
from wework.server.handlers import message as message_handler
from wework.server.handlers import report as report_handler
from wework.server.handlers import simulator as simulator_handler
from wework.server.handlers import tenant as tenant_handler
from wework.server.handlers.callback_events import CallbackEvents
from wework.server.ingress.http import CallbackIngress
from wework.server.media.store import LocalStore, build_store
from wework.server.observability.metrics import observe_shard_map
from wework.server.providers.base import Provider
from wework.server.providers.factory import create_provider
from wework.server.runtime.health import non_critical
from wework.server.runtime.registry import ServiceRegistration
from wework.server.security.field_crypto import FieldCipher
from wework.server.security.passwords import PasswordHasher
from wework.server.security.tokens import TokenIssuer
from wework.server.settings import Settings
from wework.server.workers.callbacks import CallbackProcessor, CallbackWaker, ProcessorSettings
from wework.server.workers.dispatch import Dispatcher, DispatchSettings, DispatchWaker
from wework.server.workers.heartbeat import HeartbeatMonitor
from wework.server.workers.pacing import RedisPacing
from wework.server.workers.puppet_ownership import PuppetOwnership
from wework.server.workers.webhooks import WebhookDeliveryWorker, WebhookWaker, WorkerSettings

T = TypeVar("T")


@dataclass
class Wiring:
    """The parts one service hands to another in this process (account -> message, callback
    inbox -> provider, ...). Each is None until the builder that makes it has run, and stays
    None in a process whose services do not need it; `required` names a missing one."""

    tenants: TenantUseCases
    media: MediaUseCases | None = None
    # tenant webhooks (_webhooks)
    webhook_use_cases: WebhookUseCases | None = None
    webhook_sink: WebhookOutbox | None = None
    # the durable callback inbox (_callback_inbox) and its processing (_callback_service)
    callback_waker: CallbackWaker | None = None
    guid_directory: GuidDirectory | None = None
    callback_inbox: CallbackInbox | None = None
    callback_processing: CallbackProcessing | None = None
    callback_processor: CallbackProcessor | None = None
    callback_ingress: CallbackIngress | None = None
    # the account internals (_account_service), built for the message service too
    callback_sink: ProviderEventRouter | None = None
    provider: Provider | None = None
    account_store: AccountStore | None = None
    account_gateway: InProcessAccountGateway | None = None
    # the message service (_message_service), whose accepting commits wake the dispatcher
    messages: MessageUseCases | None = None
    batches: BatchUseCases | None = None


def required(part: T | None, what: str) -> T:
    """`part` of the Wiring, which an earlier builder must have made: a wiring mistake is a
    start-up error naming the part, not a KeyError or an AttributeError on None later."""
    if part is None:
        raise RuntimeError(f"composition root: {what} is not built (its builder must run first)")
    return part


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
    shard_map: ShardMapWatcher | None = None  # applies published shard map versions

    async def readiness_checks(self):
        # Named functions: the names label wework_readiness{check} and the health log lines.
        async def database() -> None:
            await self.db.ping()

        async def redis() -> None:
            await redis_ping(self.redis)

        # Without Redis, reads and dispatch go on and sends answer UNAVAILABLE (docs/redis.md):
        # every replica shares the outage, so leaving them all NOT_SERVING would only turn a
        # partial outage into a total one.
        return [database, non_critical(redis)]

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
    # The runtime shard map: a published version wins over the settings, now and while running.
    shard_map = ShardMapWatcher(ShardMapStore(db, redis=redis, key_prefix=settings.redis.key_prefix), db, redis,
                                key_prefix=settings.redis.key_prefix,
                                poll_seconds=settings.database_config.shard_map_poll_seconds)
    db.on_shard_map_replaced.append(lambda _config: observe_shard_map(db.map_version, len(db.router.frozen)))
    await shard_map.start()
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
        passwords=PasswordHasher(max_concurrency=sec.password_hash_concurrency),
        tokens=TokenIssuer(sec.token_secret.get_secret_value().encode(), sec.access_token_ttl_seconds),
        tenant_cache=tenant_cache,
        credential_cache=credential_cache,
        admin_api_key=sec.admin_api_key.get_secret_value(),
        login_policy=LoginPolicy(max_failed_logins=sec.max_failed_logins,
                                 lockout=timedelta(minutes=sec.lockout_minutes)),
        # Every process and replica shares token_secret, so each accepts the others' page tokens.
        page_tokens=PageTokens(sec.token_secret.get_secret_value().encode()),
    )
    tenants = TenantUseCases(ctx)
    registrations: list[ServiceRegistration] = []
    if "tenant" in settings.server.services:
        handler = tenant_handler.TenantServiceHandler(
            tenants, UserUseCases(ctx, tenants, LoginRateLimiter(redis, prefix, LoginLimits(
                per_source_per_minute=sec.login_attempts_per_source_per_minute,
                per_tenant_per_minute=sec.login_attempts_per_tenant_per_minute))),
            RoleUseCases(ctx), ApiKeyUseCases(ctx))
        registrations.append(tenant_handler.registration(handler))
    caches, closers = [tenant_cache, credential_cache], []
    await _start_replicas(settings, db, redis, closers)
    wiring = Wiring(tenants=tenants)
    services = settings.server.services
    # Media first: messages name media, the dispatcher turns them into links, the callback
    # processing stores incoming media.
    media = await _media(settings, ctx, wiring, closers)
    if "media" in services:
        registrations.append(media_handler.registration(media_handler.MediaServiceHandler(media)))
    # Tenant webhooks first: the callback processing built below publishes to wiring.webhook_sink.
    await _webhooks(settings, ctx, redis, wiring, closers)
    # The message service asks the account application layer about accounts in process, so a
    # message-only process builds the account internals too, without serving AccountService.
    # The callback inbox (store, then process) too: built before the provider, which delivers
    # its callbacks into it.
    if {"account", "message", "callback"} & set(services):
        await _callback_inbox(settings, ctx, redis, wiring)
        account = await _account_service(settings, ctx, redis, tenants, caches, closers, wiring)
        if "account" in services:
            registrations.append(account)
            registrations.append(simulator_handler.registration(simulator_handler.SimulatorServiceHandler(
                SimulatorUseCases(required(wiring.account_store, "the account store")))))
    if "message" in settings.server.services:
        registrations.append(await _message_service(settings, ctx, redis, tenants, wiring))
        await _start_dispatcher(settings, ctx, redis, wiring, closers)
    if "report" in services:
        registrations.append(await _report_service(settings, ctx, redis, caches))
    if wiring.callback_inbox is not None:
        await _callback_service(settings, ctx, wiring, closers, registrations)
    closers.append(shard_map.close)
    return Application(settings=settings, db=db, redis=redis, ctx=ctx,
                       authenticator=CredentialAuthenticator(ctx, tenants),
                       registrations=registrations, caches=caches, closers=closers, shard_map=shard_map)


async def _callback_inbox(settings: Settings, ctx: AppContext, redis, wiring: Wiring) -> None:
    """The durable callback inbox (application/callbacks.py), shared by the HTTP ingress,
    IngestCallback and the in-process provider adapter (simulator, puppet_service)."""
    cfg = settings.callback
    waker = CallbackWaker(redis, settings.redis.key_prefix)
    directory = GuidDirectory(ctx.db)
    wiring.callback_waker, wiring.guid_directory = waker, directory
    wiring.callback_inbox = CallbackInbox(
        ctx.db, redis, settings.redis.key_prefix,
        InboxSettings(secret=cfg.secret.get_secret_value() if cfg.secret else None,
                      tolerance_seconds=cfg.max_skew_seconds),
        directory, wake=waker.wake, clock=ctx.clock, cipher=ctx.cipher, provider=settings.provider.kind)


async def _callback_service(settings: Settings, ctx: AppContext, wiring: Wiring, closers: list,
                            registrations: list) -> None:
    """Callback processing (callback.run_processor_in_server; `wework-worker callbacks` runs the
    same processor alone), the HTTP ingress (callback.http_port), and CallbackService when served."""
    cfg = settings.callback
    waker = required(wiring.callback_waker, "the callback waker")
    inbox = required(wiring.callback_inbox, "the callback inbox")
    # Tenant webhooks publish from here when _webhooks built a sink; otherwise nothing is sent.
    webhook_sink = wiring.webhook_sink or NullWebhookSink()
    router = required(wiring.callback_sink, "the provider event router (account service)")
    processing = CallbackProcessing(
        ctx.db, router.accounts, router.messages, required(wiring.guid_directory, "the guid directory"),
        webhook_sink,
        ProcessingSettings(max_attempts=cfg.max_attempts, backoff_initial_seconds=cfg.backoff_initial_seconds,
                           backoff_max_seconds=cfg.backoff_max_seconds,
                           stale_heartbeat_seconds=cfg.stale_heartbeat_seconds),
        clock=ctx.clock, cipher=ctx.cipher)
    wiring.callback_processing = processing
    if cfg.run_processor_in_server:
        processor = CallbackProcessor(ctx.db, processing, ProcessorSettings(
            batch_size=cfg.batch_size, max_in_flight=cfg.max_in_flight, lease_seconds=cfg.lease_seconds,
            idle_poll_seconds=cfg.idle_poll_seconds, dedupe_retention=timedelta(days=cfg.dedupe_retention_days),
            ledger_retention=timedelta(days=cfg.replay_window_days + 1)), waker=waker, clock=ctx.clock)
        await processor.start()
        wiring.callback_processor = processor
        on_replaced = getattr(ctx.db, "on_shard_map_replaced", None)
        if on_replaced is not None:
            on_replaced.append(lambda _config: processor.ensure_shard_loops())
        closers.insert(0, processor.close)  # before the provider and the pools
    if cfg.http_port is not None:
        store = required(wiring.media, "the media use cases").store
        local_store = store if isinstance(store, LocalStore) else None
        ingress = CallbackIngress(inbox, bench_routes=cfg.bench_routes, media_store=local_store)
        await ingress.start(cfg.http_host, cfg.http_port)
        if local_store is not None and local_store.signer.base_url is None:
            local_store.signer.base_url = f"http://{cfg.http_host}:{ingress.port}"
        wiring.callback_ingress = ingress
        closers.insert(0, ingress.close)  # stop taking callbacks first
    if "callback" in settings.server.services:
        use_cases = CallbackEventUseCases(ctx.db, replay_window=timedelta(days=cfg.replay_window_days),
                                          page_tokens=ctx.page_tokens,
                                          wake=waker.wake, clock=ctx.clock)
        handler = callback_handler.CallbackServiceHandler(CallbackEvents(inbox, use_cases),
                                                          wiring.webhook_use_cases)
        registrations.append(callback_handler.registration(handler))


async def _media(settings: Settings, ctx: AppContext, wiring: Wiring, closers: list) -> MediaUseCases:
    """The media store (docs/media.md) and its use cases, shared by MediaService, the message
    service (media references), the dispatcher (links for providers) and callback processing."""
    cfg = settings.media
    store = await build_store(cfg, settings.data_dir, settings.security.token_secret.get_secret_value().encode(),
                              None)
    closers.append(store.close)
    media = MediaUseCases(ctx.db, store, media_policy(cfg), clock=ctx.clock, page_tokens=ctx.page_tokens)
    wiring.media = media
    return media


async def _start_replicas(settings: Settings, db: Database, redis, closers: list) -> None:
    """Read replicas (docs/replicas.md): the lag monitor of this process, and read-your-writes
    shared with the other processes through Redis (the embedded Redis is this process alone)."""
    from wework.server.observability import metrics

    if not settings.redis.url.startswith("memory://"):
        db.replicas.tracker = RedisWriteTracker(redis, settings.redis.key_prefix,
                                                ReplicaRouting.tracker_ttl(settings.database_config))
    db.replicas.on_read = metrics.observe_db_read
    monitor = ReplicaMonitor(db, on_lag=lambda shard, replica, lag: metrics.observe_replica_lag(
        [DIRECTORY] if shard == DIRECTORY else db.databases, shard, replica, lag))
    await monitor.start()
    closers.append(monitor.close)


async def _account_service(settings: Settings, ctx: AppContext, redis, tenants: TenantUseCases,
                           caches: list, closers: list, wiring: Wiring) -> ServiceRegistration:
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
    incoming = IncomingMedia(required(wiring.media, "the media use cases"),
                             TargetGuard(WebhookPolicy.from_config(settings.webhooks)),
                             settings.media.fetch_timeout_seconds)
    closers.append(incoming.close)
    router = ProviderEventRouter(AccountEvents(store, login, conversations, incoming), MessageEvents(ctx.db))
    wiring.callback_sink = router
    # The simulator delivers into the durable inbox (store, then process) like a real provider.
    provider = create_provider(settings.provider, wiring.callback_inbox or router,
                               tokens=store.provider_token)
    wiring.provider = provider
    store.provider = provider
    monitor = HeartbeatMonitor(store, interval_seconds=cfg.monitor_interval_seconds,
                               batch_size=cfg.monitor_batch_size)
    await monitor.start()
    closers.append(monitor.close)
    if settings.provider.kind == "puppet_service" and not settings.redis.url.startswith("memory://"):
        # Several processes share the accounts: leases say which one consumes each stream (the
        # embedded Redis is this process alone, which then consumes every stream itself).
        ps = settings.provider.puppet_service
        ownership = PuppetOwnership(provider, redis, prefix, store.guids_with_provider_sessions,
                                    lease_seconds=ps.ownership_lease_seconds, tick_seconds=ps.ownership_tick_seconds)
        provider.board = ownership  # type: ignore[attr-defined]
        await ownership.start()
        closers.append(ownership.close)  # leave (leases back) before the provider closes
    closers.extend([provider.close, bus.close])
    wiring.account_gateway = InProcessAccountGateway(store, conversations)
    wiring.account_store = store
    return account_handler.registration(account_handler.AccountServiceHandler(
        AccountUseCases(store, login, tenants), conversations))


async def _start_dispatcher(settings: Settings, ctx: AppContext, redis, wiring: Wiring, closers: list) -> None:
    """Wake-ups after every accepting commit, and (message.run_dispatcher_in_server) a dispatcher
    in this process; `wework-worker dispatch` runs the same one on its own."""
    waker = DispatchWaker(redis, settings.redis.key_prefix)
    messages = required(wiring.messages, "the message use cases")
    batches = required(wiring.batches, "the batch use cases")
    messages.on_accepted.append(lambda uow, m: uow.after_commit(lambda: waker.wake(uow.shard)))
    batches.wake = waker.wake
    if not settings.message.run_dispatcher_in_server:
        return
    dispatch_settings = DispatchSettings.from_config(settings.message)
    pacing = None
    if not settings.redis.url.startswith("memory://"):  # the embedded Redis is this process alone
        pacing = RedisPacing(redis, settings.redis.key_prefix)
    tenants, accounts = wiring.tenants, required(wiring.account_store, "the account store")
    media = required(wiring.media, "the media use cases")

    async def pacing_overrides(tenant_id: str, account_id: str) -> list[dict | None]:
        # Both cached reads (two-level caches, invalidated on update): the tenant's, then the account's.
        account = await accounts.get_cached(tenant_id, account_id)
        return [await tenants.tenant_pacing_config(tenant_id), account.config]

    dispatcher = Dispatcher(ctx.db, required(wiring.provider, "the provider"),
                            required(wiring.account_gateway, "the account gateway"), dispatch_settings,
                            waker=waker, pacing=pacing, pacing_overrides=pacing_overrides,
                            finish_batch=lambda tenant_id, task_id: finish_if_done(ctx, tenant_id, task_id),
                            resolve_content=media.resolve_for_send)
    await dispatcher.start()
    ctx.db.on_shard_map_replaced.append(lambda _config: dispatcher.ensure_shard_loops())  # new shards
    closers.insert(0, dispatcher.close)  # before the provider closes


async def _message_service(settings: Settings, ctx: AppContext, redis, tenants: TenantUseCases,
                           wiring: Wiring) -> ServiceRegistration:
    """MessageService. It asks the account application layer of this process about accounts
    (AccountGateway); build_application builds that layer for it."""
    gateway = required(wiring.account_gateway, "the account gateway (account internals)")
    media = required(wiring.media, "the media use cases")
    cfg = settings.message
    quota = DailyQuota(redis, settings.redis, cfg.quota_key_ttl_seconds, database_quota_counter(ctx))
    messages = MessageUseCases(ctx, gateway, tenants, quota, max_schedule=timedelta(days=cfg.max_schedule_days),
                               media=media, linger_seconds=cfg.accept_linger_seconds)
    wiring.messages = messages
    batches = BatchUseCases(ctx, gateway, tenants, quota=quota, require_active_tenant=messages.require_active_tenant,
                            materialize_writers=cfg.materialize_writers)
    batches.media = media
    wiring.batches = batches
    return message_handler.registration(message_handler.MessageServiceHandler(
        messages, TemplateUseCases(ctx, media=media), batches))


async def _report_service(settings: Settings, ctx: AppContext, redis, caches: list) -> ServiceRegistration:
    """ReportService: read-only use cases over replicas, answers cached for report.cache_ttl_seconds."""
    cfg = settings.report
    cache = None
    if cfg.cache_ttl_seconds > 0:
        # Half the TTL in each level: a value read from Redis just before it expires lives on in
        # the process, so the oldest answer served is at most cache_ttl_seconds old. Few local
        # entries: a 30-day hourly answer is ~50 KB.
        half = cfg.cache_ttl_seconds / 2
        cache = TwoLevelCache(redis, f"{settings.redis.key_prefix}report", local_ttl=half, redis_ttl=half,
                              max_local_entries=1000)
        await cache.start()
        caches.append(cache)
    reports = ReportUseCases(ctx, cache, ReportSettings(
        max_range_days=cfg.max_range_days, max_export_range_days=cfg.max_export_range_days,
        cache_ttl_seconds=cfg.cache_ttl_seconds, export_chunk_rows=cfg.export_chunk_rows))
    return report_handler.registration(report_handler.ReportServiceHandler(reports))


async def _webhooks(settings: Settings, ctx: AppContext, redis, wiring: Wiring, closers: list) -> None:
    """Tenant webhooks: the endpoint use cases (served by CallbackService), the outbox the callback
    processor publishes to, and - in processes that serve callback, account or message, with
    webhooks.run_worker_in_server - a delivery worker (`wework-worker webhooks` runs one alone)."""
    policy = WebhookPolicy.from_config(settings.webhooks)
    waker = WebhookWaker(redis, settings.redis.key_prefix)
    guard = TargetGuard(policy)
    use_cases = WebhookUseCases(ctx, policy, guard, wake=waker.wake)
    wiring.webhook_use_cases = use_cases
    wiring.webhook_sink = WebhookOutbox(ctx, policy, wake=waker.wake)
    serves_events = bool({"callback", "account", "message"} & set(settings.server.services))
    if settings.webhooks.run_worker_in_server and serves_events:
        worker = await start_webhook_worker(settings, ctx, redis, use_cases=use_cases, waker=waker)
        closers.insert(0, worker.close)


async def start_webhook_worker(settings: Settings, ctx: AppContext, redis, *,
                               use_cases: WebhookUseCases | None = None,
                               waker: WebhookWaker | None = None) -> WebhookDeliveryWorker:
    """A started delivery worker on every callback shard (the caller closes it)."""
    policy = WebhookPolicy.from_config(settings.webhooks)
    if use_cases is None:
        use_cases = WebhookUseCases(ctx, policy, TargetGuard(policy))
    worker = WebhookDeliveryWorker(ctx.db, policy, TargetGuard(policy), use_cases.reveal,
                                   WorkerSettings.from_config(settings.webhooks),
                                   waker=waker or WebhookWaker(redis, settings.redis.key_prefix))
    await worker.start()
    ctx.db.on_shard_map_replaced.append(lambda _config: worker.ensure_shard_loops())
    return worker
