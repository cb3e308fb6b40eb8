"""Provider callbacks: the durable inbox (ingest), their processing, and the operators' use cases.

Ingest (`CallbackInbox`, used by the HTTP ingress, IngestCallback and the in-process simulator):
authenticate (HMAC over "<timestamp>.<body>", timestamp tolerance, a (timestamp, signature)
pair seen before is refused), then ONE short transaction stores the raw body in callback_events
with its dedupe key (a duplicate stores nothing and answers the first id), then a wake-up. No
processing before the answer. The tenant comes from the guid directory (cached); a callback
whose guid matches no account is stored on the first shard of the callback database with
tenant_id NULL (the "unassigned" callbacks, visible to the platform admin, replayable).

Processing (`CallbackProcessing.process`, driven by workers/callbacks.py): parse by
notify_type, apply through the owning application layer (AccountEvents, MessageEvents,
ConversationUseCases) with the callback's dedupe key as effect key (ledger row in the same
transaction as the effect), then mark the callback processed / ignored / failed. Failures are
retried with exponential backoff up to callback.max_attempts, then left failed.

Webhooks: for each callback processed with an effect for a tenant, the processor calls
`webhook_sink.publish(uow, tenant_id, event_type, data, source_event_id)` in the callback-DB
transaction that marks the callback processed, so the tenant event is enqueued exactly once per
processed callback:

- `uow`: that transaction when it is on the tenant's shard; None when the callback row lives
  elsewhere (an unassigned callback replayed after its account appeared) - then publish in a
  transaction of your own (a repeat after a crash carries the same source_event_id).
- `event_type`: "account.status_changed", "message.sent", "message.delivered",
  "message.failed", "message.received", "conversation.changed" (no heartbeats).
- `data`: a small JSON-able dict (ids, statuses, the message preview), no secrets.

Credentials (wework.domain.redaction.SENSITIVE_KEYS: login tokens, provider tokens, verification
codes...) never reach the table in clear: `store` replaces their values with "[REDACTED]" in
the body it stores; the few an effect needs (CREDENTIALS_USED: the ONLINE callback's login
token, a received media file's provider link) are sealed (field cipher, bound to the dedupe key) in sealed_secrets, the others dropped.
`process` opens them only to apply the effect. raw_data, parsed_data, listings, logs and tenant
events all see the redacted body.
- `source_event_id`: the callback_events id, or the event's own key (TenantEvent.key:
  message.sent and message.delivered are one per message, whichever receipt makes them). A
  replay of a callback that was processed before publishes nothing again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from wework.domain.access import Principal
from wework.domain.callbacks import (
    ALREADY_APPLIED,
    APPLIED,
    CREDENTIALS_USED,
    EVENT_TYPES,
    HEARTBEAT,
    MAX_JSON_DEPTH,
    MESSAGE_RECEIPTS,
    Effect,
    Envelope,
    MalformedCallback,
    TenantEvent,
    check_receipt,
    dedupe_key,
    envelope,
    event_type_of,
    json_nesting_exceeds,
    parse,
    retry_delay,
    split_callback_secrets,
    verify_signature,
)
from wework.domain.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from wework.domain.redaction import restore_secrets
from wework.persistence.database import Database
from wework.persistence.pagination import PageTokens, normalize_page_size
from wework.persistence.repositories.callbacks import CallbackFilter, StoredCallback
from wework.persistence.uow import UnitOfWork
from wework.server.application.context import utcnow
from wework.server.application.group_commit import GroupCommit
from wework.server.application.ports import UnitsOfWork
from wework.server.observability import metrics
from wework.server.providers.base import ProviderCallback
from wework.server.providers.wire import callback_to_json
from wework.server.security.field_crypto import FieldCipher, FieldCryptoError

log = logging.getLogger(__name__)

CALLBACK_DB = "callback"
MAX_BODY_BYTES = 1024 * 1024
MAX_REPLAY_IDS = 1000
DEFAULT_REPLAY_EVENTS = 1000
MAX_REPLAY_EVENTS = 10000
STATUSES = ("received", "processing", "processed", "failed", "ignored")


# ---- the webhook hook point ---------------------------------------------------------------------


def secrets_context(dedupe_key: str) -> str:
    """The field-cipher context of a callback's sealed credentials (bound to that callback)."""
    return f"callback_events.sealed_secrets:{dedupe_key}"


class WebhookSink(Protocol):
    async def publish(self, uow: UnitOfWork | None, tenant_id: str, event_type: str, data: dict[str, Any],
                      source_event_id: str | None) -> Any: ...


class NullWebhookSink:
    """No tenant webhooks in this process."""

    async def publish(self, uow: UnitOfWork | None, tenant_id: str, event_type: str, data: dict[str, Any],
                      source_event_id: str | None) -> None:
        return None


# ---- guid -> (tenant, account) ------------------------------------------------------------------


class GuidDirectory:
    """The directory's guid index with an in-process cache (a guid never changes owner while it
    exists). Unknown guids are remembered briefly so a flood of them costs few queries."""

    def __init__(self, db: UnitsOfWork, *, size: int = 10_000, negative_ttl: float = 2.0) -> None:
        self._db, self._size, self._negative_ttl = db, size, negative_ttl
        self._routes: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._unknown: dict[str, float] = {}

    async def lookup(self, guid: str, *, fresh: bool = False) -> tuple[str, str] | None:
        if not guid:
            return None
        route = self._routes.get(guid)
        if route is not None:
            self._routes.move_to_end(guid)
            return route
        if not fresh and self._unknown.get(guid, 0.0) > time.monotonic():
            return None
        async with self._db.directory_unit_of_work(read_only=True) as uow:
            route = await uow.account_directory.lookup(guid)
        if route is None:
            if len(self._unknown) > self._size:
                self._unknown.clear()
            self._unknown[guid] = time.monotonic() + self._negative_ttl
            return None
        self._unknown.pop(guid, None)
        self._routes[guid] = route
        while len(self._routes) > self._size:
            self._routes.popitem(last=False)
        return route


def unassigned_shard(db: UnitsOfWork) -> str:
    """Where callbacks of unknown guids are stored: the first shard of the callback database."""
    return db.shard_names[0]


# ---- ingest -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxSettings:
    # None: unsigned posts are accepted (only allowed on a loopback-only HTTP endpoint; gRPC
    # IngestCallback then refuses every call).
    secret: str | None = None
    tolerance_seconds: int = 300


@dataclass(frozen=True)
class IngestResult:
    callback_event_id: str
    duplicate: bool


class CallbackInbox:
    def __init__(self, db: UnitsOfWork, redis: Any, key_prefix: str, settings: InboxSettings,
                 directory: GuidDirectory, *, wake: Callable[[str | None], Awaitable[None]] | None = None,
                 clock: Callable[[], datetime] = utcnow, cipher: FieldCipher | None = None,
                 provider: str = "simulator") -> None:
        self._db, self._redis, self._cfg, self._directory = db, redis, settings, directory
        # The in-process adapter whose callbacks `deliver` stores (provider.kind): their `source`.
        self._provider = provider
        # None: credentials are redacted and dropped (nothing can open them later).
        self._cipher = cipher
        self._replay_prefix = f"{key_prefix}cbsig:"
        self._wake, self._clock = wake, clock
        self.signed = settings.secret is not None
        self._pending_wakes: set[str] = set()
        self._wake_task: asyncio.Task[None] | None = None
        self._writer = _StoreWriter(db, clock)

    async def ingest(self, body: bytes, *, timestamp: str, signature: str, source: str,
                     source_ip: str | None = None, user_agent: str | None = None,
                     require_signature: bool = False) -> IngestResult:
        """Authenticates and stores one callback. Unauthenticated for a bad, stale or replayed
        signature (nothing is stored); InvalidArgument for a body over 1 MiB or nested too deep."""
        if len(body) > MAX_BODY_BYTES:
            raise InvalidArgument(FieldViolation("body", "a callback body is at most 1 MiB"))
        replay_key = await self._authenticate(body, timestamp, signature, source, source_ip, require_signature)
        try:
            if json_nesting_exceeds(body):  # a final answer (4xx): the provider must not retry it
                raise InvalidArgument(FieldViolation("body", f"JSON nested more than {MAX_JSON_DEPTH} levels deep"))
            return await self.store(body, source=source, source_ip=source_ip, user_agent=user_agent)
        except BaseException:
            if replay_key is not None:  # not stored: the provider's retry of this request may pass
                await self._forget(replay_key)
            raise

    async def _authenticate(self, body: bytes, timestamp: str, signature: str, source: str,
                            source_ip: str | None, require_signature: bool) -> str | None:
        secret = self._cfg.secret
        if secret is None:
            if require_signature:
                self._refuse(source, source_ip,
                             "no callback secret is configured (setting callback.secret, env WEWORK_CALLBACK__SECRET)")
            return None
        reason, canonical = verify_signature(secret, timestamp, signature, body, time.time(),
                                             self._cfg.tolerance_seconds)
        if reason is not None:
            self._refuse(source, source_ip, reason)
        # Replay protection: each signed (timestamp, body) is accepted once within the window in
        # which its timestamp is acceptable at all - keyed on the canonical signature, not on the
        # header's text. Without Redis it degrades to the dedupe.
        key = self._replay_prefix + hashlib.sha256(canonical.encode()).hexdigest()[:32]
        try:
            fresh = await self._redis.set(key, b"1", nx=True, ex=2 * self._cfg.tolerance_seconds + 1)
        except Exception as exc:  # noqa: BLE001 - Redis down: the dedupe still prevents a second effect
            log.warning("callback replay protection unavailable (Redis): %r", exc)
            return None
        if not fresh:
            self._refuse(source, source_ip, "replayed signature")
        return key

    def _refuse(self, source: str, source_ip: str | None, reason: str) -> None:
        metrics.CALLBACKS_RECEIVED.labels(source=source, outcome="rejected").inc()
        log.warning("provider callback refused (%s) from %s over %s", reason, source_ip or "?", source)
        raise Unauthenticated(f"callback refused: {reason}", metadata={"reason": reason})

    async def _forget(self, key: str) -> None:
        try:
            await self._redis.delete(key)
        except Exception:  # best effort: the key expires anyway
            log.debug("replay key not released", exc_info=True)

    async def store(self, body: bytes, *, source: str, source_ip: str | None = None,
                    user_agent: str | None = None) -> IngestResult:
        """Stores the raw callback (deduplicated) and wakes the processors. No authentication:
        the in-process simulator and the authenticated paths above call it."""
        env = envelope(body)
        key = dedupe_key(body, env)
        route = await self._directory.lookup(env.guid) if env.guid else None
        tenant_id = route[0] if route else None
        raw, sealed = self._seal_credentials(body, env, key)
        values: dict[str, Any] = {
            "dedupe_key": key, "tenant_id": tenant_id, "guid": env.guid, "notify_type": env.notify_type,
            "event_type": event_type_of(env.notify_type), "raw_data": raw,
            "source_ip": source_ip[:45] if source_ip else None, "user_agent": user_agent, "sealed_secrets": sealed}
        shard = self._db.shard_for(tenant_id) if tenant_id is not None else unassigned_shard(self._db)
        callback_id, duplicate = await self._writer.submit(shard, values)
        metrics.CALLBACKS_RECEIVED.labels(source=source, outcome="duplicate" if duplicate else "accepted").inc()
        if not duplicate and self._wake is not None:
            self._wake_soon(shard)
        return IngestResult(callback_id, duplicate)

    def _seal_credentials(self, body: bytes, env: Envelope, key: str) -> tuple[str, str | None]:
        """(the body to store, the sealed credentials its effect needs): the body as received when
        it carries none, else re-serialised with their values replaced by "[REDACTED]"."""
        raw = body.decode("utf-8", errors="replace")
        if env.body is None:
            return raw, None
        redacted, found = split_callback_secrets(env.notify_type, env.body)
        if not found:
            return raw, None
        used = CREDENTIALS_USED.get(env.notify_type, frozenset())
        kept = [[list(path), value] for path, value in found if path in used]
        sealed = None
        if kept and self._cipher is not None:
            sealed = self._cipher.encrypt(json.dumps(kept, ensure_ascii=False), context=secrets_context(key))
        return json.dumps(redacted, ensure_ascii=False, separators=(",", ":")), sealed

    def _wake_soon(self, shard: str) -> None:
        """Wake-ups leave the answer's path and are coalesced: under load one publish per shard
        every few milliseconds instead of one per callback."""
        self._pending_wakes.add(shard)
        if self._wake_task is None or self._wake_task.done():
            self._wake_task = asyncio.get_running_loop().create_task(self._flush_wakes())

    async def _flush_wakes(self) -> None:
        await asyncio.sleep(0.005)
        shards, self._pending_wakes = self._pending_wakes, set()
        for shard in shards:
            try:
                await self._wake(shard)  # type: ignore[misc]
            except Exception:  # the processors poll too
                log.debug("callback wake-up failed", exc_info=True)

    async def deliver(self, callback: ProviderCallback) -> None:
        """CallbackSink of the in-process provider adapter (simulator, puppet_service): its
        callbacks enter through the inbox too."""
        body = json.dumps(callback_to_json(callback), separators=(",", ":")).encode()
        await self.store(body, source=self._provider)


@dataclass(eq=False, slots=True)
class _StoreRow:
    values: dict[str, Any]  # a callback_events row
    future: asyncio.Future[tuple[str, bool]]  # (its id, whether it was a duplicate)


class _StoreWriter:
    """Group commit of stored callbacks, one writer task per shard (GroupCommit, decision 0039,
    as MessageWriter does for SendMessage): concurrent ingests queue their rows, the writer stores
    whatever has queued in one transaction and answers each after the commit. Idle, a batch is
    one callback and nothing waits (no linger); under load one commit serves many. A failed batch
    is retried one callback at a time. The table's dedupe key settles duplicates, not the writer."""

    def __init__(self, db: Database, clock: Callable[[], datetime], max_batch: int = 500) -> None:
        self._db, self._clock = db, clock
        self._batcher: GroupCommit[_StoreRow] = GroupCommit(self._write, name="callback-store", max_batch=max_batch)

    def submit(self, shard: str, values: dict[str, Any]) -> asyncio.Future[tuple[str, bool]]:
        row = _StoreRow(values, asyncio.get_running_loop().create_future())
        self._batcher.submit(shard, row)
        return row.future

    async def _write(self, shard: str, rows: list[_StoreRow]) -> list[tuple[str, bool]]:
        items = [row.values for row in rows]
        tenants = {v["tenant_id"] for v in items if v["tenant_id"] is not None}
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard, tenants=tenants) as uow:
            return await uow.callbacks.store_many(items, self._clock())


# ---- processing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessingSettings:
    max_attempts: int = 5
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    # A heartbeat processed later than this (a backlog, a replay) says nothing about now.
    stale_heartbeat_seconds: float = 60.0


class CallbackProcessing:
    """Processes one claimed callback (see the module docstring). `accounts` is AccountEvents,
    `messages` MessageEvents; either may be None in a process that does not build it."""

    def __init__(self, db: UnitsOfWork, accounts: Any, messages: Any, directory: GuidDirectory,
                 webhook_sink: WebhookSink, settings: ProcessingSettings,
                 clock: Callable[[], datetime] = utcnow, cipher: FieldCipher | None = None) -> None:
        self._db, self._accounts, self._messages = db, accounts, messages
        self._cipher = cipher
        self._directory, self.webhook_sink, self._cfg, self._clock = directory, webhook_sink, settings, clock
        self._batch: dict[str, list[_Finish]] | None = None

    async def process(self, shard: str, c: StoredCallback, worker_id: str) -> str:
        """Processes `c` (claimed by `worker_id` on `shard`); the status it ends in, or "retry"."""
        try:
            parsed = parse(self._with_credentials(c))
            check_receipt(parsed)
        except MalformedCallback as exc:
            return await self._finish(shard, c, worker_id, "failed", f"malformed callback: {exc}")
        body = json.loads(c.raw_data)  # what parsed_data shows: the redacted body
        if parsed.notify_type not in EVENT_TYPES:
            return await self._finish(shard, c, worker_id, "ignored", f"unknown notify_type {parsed.notify_type}",
                                      parsed_data=body)
        try:
            route = await self._directory.lookup(parsed.guid, fresh=True)
        except Exception as exc:  # noqa: BLE001 - the directory is down: try again later
            return await self._retry(shard, c, worker_id, exc)
        if route is None:
            return await self._finish(shard, c, worker_id, "ignored", f"unknown guid {parsed.guid!r}",
                                      parsed_data=body)
        tenant_id, account_id = route
        now = self._clock()
        if parsed.notify_type == HEARTBEAT and (now - c.received_time).total_seconds() > self._cfg.stale_heartbeat_seconds:
            return await self._finish(shard, c, worker_id, "ignored", "stale heartbeat", parsed_data=body,
                                      tenant_id=tenant_id)
        callback = ProviderCallback(guid=parsed.guid, notify_type=parsed.notify_type, data=parsed.data,
                                    event_id=parsed.event_id or c.id, time=parsed.time or c.received_time)
        key = c.dedupe_key or f"cb:{c.id}"
        try:
            if parsed.notify_type in MESSAGE_RECEIPTS:
                if self._messages is None:
                    raise RuntimeError("this process does not build the message service")
                effect: Effect = await self._messages.apply(callback, key, tenant_id)
            else:
                if self._accounts is None:
                    raise RuntimeError("this process does not build the account service")
                effect = await self._accounts.apply(callback, tenant_id, account_id, key)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, then recorded
            return await self._retry(shard, c, worker_id, exc)
        publish = effect.outcome == APPLIED or (effect.outcome == ALREADY_APPLIED and c.process_time is None)
        if effect.stored_content is not None and isinstance(body.get("data"), dict):
            # parsed_data names the stored media; raw_data keeps the provider's link as received.
            body = {**body, "data": {**body["data"], "content": effect.stored_content}}
        try:
            return await self._finish(
                shard, c, worker_id, "processed" if effect.processed else "ignored",
                None if effect.processed else effect.reason, parsed_data=body, tenant_id=tenant_id,
                publish=effect.events if publish else ())
        except Exception as exc:  # noqa: BLE001 - e.g. the webhook tables: the ledger keeps the effect single
            return await self._retry(shard, c, worker_id, exc)

    def _with_credentials(self, c: StoredCallback) -> str:
        """The stored body with its sealed credentials put back, to apply the callback (never
        stored or shown). Without a cipher, or if they cannot be opened, the redacted body."""
        if not c.sealed_secrets or self._cipher is None:
            return c.raw_data
        try:
            found = json.loads(self._cipher.decrypt(c.sealed_secrets, context=secrets_context(c.dedupe_key or "")))
            doc = json.loads(c.raw_data)
        except (FieldCryptoError, ValueError) as exc:
            log.warning("callback %s: its sealed credentials cannot be opened (%s); applied without them", c.id, exc)
            return c.raw_data
        return json.dumps(restore_secrets(doc, [(tuple(path), value) for path, value in found]))

    async def _finish(self, shard: str, c: StoredCallback, worker_id: str, status: str, error: str | None,
                      *, parsed_data: dict[str, Any] | None = None, tenant_id: str | None = None,
                      publish: Sequence[TenantEvent] = ()) -> str:
        item = _Finish(c, status, error, parsed_data, tenant_id, publish)
        batch = self._batch.get(shard) if self._batch is not None else None
        if batch is not None:
            batch.append(item)  # marked with the rest of the claim by flush()
            return status
        return await self._finish_now(shard, [item], worker_id)

    async def _finish_now(self, shard: str, items: list[_Finish], worker_id: str) -> str:
        """Marks callbacks in one callback-DB transaction, each with its tenant event."""
        now = self._clock()
        mine: list[_Finish] = []
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
            repo = uow.callbacks
            for it in items:
                on_tenant_shard = it.tenant_id is not None and self._db.shard_for(it.tenant_id) == shard
                if not await repo.finish(it.c, worker_id, status=it.status, now=now, error_message=it.error,
                                         parsed_data=it.parsed_data,
                                         tenant_id=it.tenant_id if on_tenant_shard else None):
                    continue  # the lease expired and another processor has it
                mine.append(it)
                for event in it.publish if it.tenant_id is not None else ():
                    await self.webhook_sink.publish(uow if on_tenant_shard else None, it.tenant_id, event.type,
                                                    event.data, event.key or it.c.id)
        for it in mine:
            metrics.CALLBACKS_PROCESSED.labels(outcome=it.status).inc()
            metrics.CALLBACK_PROCESSING_LAG.observe(max((now - it.c.received_time).total_seconds(), 0.0))
            if it.status == "failed":
                log.warning("callback %s (guid %s, notify_type %s) failed: %s", it.c.id, it.c.guid,
                            it.c.notify_type, it.error)
        return items[-1].status if mine and len(items) == 1 else ("lost" if not mine else "batch")

    def batching(self) -> _Batching:
        """`b = processing.batching(); b.open(shard); ... process(shard, ...) ...; await
        b.flush(shard, worker_id)`: the terminal marks of a claim go into one transaction instead
        of one each (a crash before the flush re-processes them after the lease; the effect
        ledger keeps one effect)."""
        if self._batch is None:
            self._batch = {}
        return _Batching(self)

    async def _retry(self, shard: str, c: StoredCallback, worker_id: str, exc: BaseException) -> str:
        attempts = c.retry_count + 1
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if attempts >= self._cfg.max_attempts:
            log.error("callback %s failed after %d attempts: %s", c.id, attempts, error)
            async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
                await uow.callbacks.finish(c, worker_id, status="failed", now=self._clock(),
                                                             error_message=error, count_attempt=True)
            metrics.CALLBACKS_PROCESSED.labels(outcome="failed").inc()
            return "failed"
        at = self._clock() + retry_delay(attempts, self._cfg.backoff_initial_seconds, self._cfg.backoff_max_seconds)
        log.info("callback %s attempt %d failed, retrying at %s: %s", c.id, attempts, at.isoformat(), error)
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
            await uow.callbacks.retry_later(c, worker_id, at=at, error_message=error)
        metrics.CALLBACKS_PROCESSED.labels(outcome="retried").inc()
        return "retry"


@dataclass
class _Finish:
    c: StoredCallback
    status: str
    error: str | None
    parsed_data: dict[str, Any] | None
    tenant_id: str | None
    publish: Sequence[TenantEvent]


class _Batching:
    """Collects the terminal marks of one processor's claims per shard (see batching())."""

    def __init__(self, processing: CallbackProcessing) -> None:
        self._p = processing

    def open(self, shard: str) -> None:
        assert self._p._batch is not None
        self._p._batch[shard] = []

    async def flush(self, shard: str, worker_id: str) -> None:
        assert self._p._batch is not None
        items = self._p._batch.pop(shard, [])
        if not items:
            return
        try:
            await self._p._finish_now(shard, items, worker_id)
        except Exception:  # one bad item must not hold back the others
            log.warning("marking %d callbacks together failed; marking them one by one", len(items), exc_info=True)
            for it in items:
                try:
                    await self._p._finish_now(shard, [it], worker_id)
                except Exception as exc:  # noqa: BLE001 - e.g. the webhook tables: retried, the ledger keeps one effect
                    await self._p._retry(shard, it.c, worker_id, exc)


# ---- operators ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    tenant_id: str = ""
    guid: str = ""
    notify_type: int = 0
    event_type: str = ""
    status: str | None = None
    received_after: datetime | None = None
    received_before: datetime | None = None


class CallbackEventUseCases:
    """ListCallbackEvents, GetCallbackEvent, ReplayCallbacks. A tenant principal sees its own
    tenant's callbacks; the platform admin names a tenant (or x-wework-tenant) or sees every
    shard, the unassigned callbacks included."""

    def __init__(self, db: UnitsOfWork, *, replay_window: timedelta, page_tokens: PageTokens,
                 wake: Callable[[str | None], Awaitable[None]] | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._db, self._replay_window, self._wake, self._clock = db, replay_window, wake, clock
        self._page_tokens = page_tokens

    # -- scope --

    @staticmethod
    def _tenant(principal: Principal, requested: str, path: str) -> str | None:
        """The tenant to act in; None: the platform admin over every tenant."""
        if principal.is_platform_admin:
            return requested or principal.tenant_id or None
        own = principal.require_tenant()
        if requested and requested != own:
            raise PermissionDenied("platform.tenants.read")
        return own

    def _shards(self, tenant_id: str | None) -> list[str]:
        return [self._db.shard_for(tenant_id)] if tenant_id is not None else list(self._db.shard_names)

    @staticmethod
    def _filter(q: ListQuery, tenant_id: str | None) -> CallbackFilter:
        if q.status is not None and q.status not in STATUSES:
            raise InvalidArgument(FieldViolation("filter.status", "unknown status"))
        if q.received_after and q.received_before and q.received_after >= q.received_before:
            raise InvalidArgument(FieldViolation("filter.received_before", "must be after received_after"))
        for value, path, limit in ((q.guid, "filter.guid", 100), (q.event_type, "filter.event_type", 50)):
            if len(value) > limit:
                raise InvalidArgument(FieldViolation(path, f"at most {limit} characters"))
        return CallbackFilter(tenant_id=tenant_id, guid=q.guid or None, notify_type=q.notify_type or None,
                              event_type=q.event_type or None, status=q.status, received_after=q.received_after,
                              received_before=q.received_before)

    # -- use cases --

    async def list_callback_events(self, principal: Principal, q: ListQuery, page_size: int,
                                   page_token: str) -> tuple[list[StoredCallback], str]:
        tenant_id = self._tenant(principal, q.tenant_id, "filter.tenant_id")
        f = self._filter(q, tenant_id)
        if not q.notify_type and not q.event_type:
            # A heartbeat every few seconds per account would bury everything else: shown only
            # when asked for (filter.notify_type 11010 or filter.event_type "account.heartbeat").
            f = replace(f, exclude_notify_types=(HEARTBEAT,))
        limit = normalize_page_size(page_size)
        after = None
        if page_token:
            # Scoped to the tenant listed ("" for the platform admin's listing of every tenant).
            body = self._page_tokens.decode(page_token, "callback_events", tenant_id or "", {"t": datetime, "id": str})
            after = (body["t"], body["id"])
        rows: list[StoredCallback] = []
        for shard in self._shards(tenant_id):
            async with self._db.shard_unit_of_work(CALLBACK_DB, shard, read_only=True) as uow:
                rows.extend(await uow.callbacks.list_page(f, after, limit + 1))
        rows.sort(key=lambda c: (c.received_time, c.id), reverse=True)
        page = rows[:limit]
        token = ""
        if len(rows) > limit:
            token = self._page_tokens.encode({"t": page[-1].received_time, "id": page[-1].id}, "callback_events",
                                             tenant_id or "")
        return page, token

    async def get_callback_event(self, principal: Principal, callback_id: str, tenant_id: str) -> StoredCallback:
        if not callback_id:
            raise InvalidArgument(FieldViolation("id", "id is required"))
        if len(callback_id) > 64:
            raise InvalidArgument(FieldViolation("id", "must be at most 64 characters"))
        tenant = self._tenant(principal, tenant_id, "tenant_id")
        for shard in self._shards(tenant):
            async with self._db.shard_unit_of_work(CALLBACK_DB, shard, read_only=True) as uow:
                found = await uow.callbacks.get(callback_id, tenant)
            if found is not None:
                return found
        raise NotFound("callback_event", callback_id)

    async def replay_callbacks(self, principal: Principal, ids: list[str], q: ListQuery | None, tenant_id: str,
                               max_events: int) -> list[str]:
        """Queues the chosen callbacks for processing again; the ids queued, oldest first."""
        now = self._clock()
        not_before = now - self._replay_window
        if ids:
            if q is not None:
                raise InvalidArgument(FieldViolation("filter", "give either ids or a filter, not both"))
            if len(ids) > MAX_REPLAY_IDS:
                raise InvalidArgument(FieldViolation("ids", f"at most {MAX_REPLAY_IDS} ids"))
            for i, value in enumerate(ids):
                if not value or len(value) > 64:
                    raise InvalidArgument(FieldViolation(f"ids[{i}]", "an id is 1 to 64 characters"))
            tenant = self._tenant(principal, tenant_id, "tenant_id")
            f, limit, chosen = CallbackFilter(tenant_id=tenant), len(ids), list(dict.fromkeys(ids))
        else:
            if q is None:
                raise InvalidArgument(FieldViolation("ids", "give ids or a filter"))
            missing = [FieldViolation(f"filter.{name}", f"{name} is required when replaying by filter")
                       for name, value in (("received_after", q.received_after),
                                           ("received_before", q.received_before)) if value is None]
            if missing:
                raise InvalidArgument(missing)
            if q.received_after < not_before:  # type: ignore[operator]
                raise InvalidArgument(FieldViolation(
                    "filter.received_after",
                    f"callbacks older than the replay window ({self._replay_window.days} days: setting "
                    "callback.replay_window_days, env WEWORK_CALLBACK__REPLAY_WINDOW_DAYS) cannot be replayed"))
            if max_events < 0 or max_events > MAX_REPLAY_EVENTS:
                raise InvalidArgument(FieldViolation("max_events", f"0 to {MAX_REPLAY_EVENTS}"))
            tenant = self._tenant(principal, q.tenant_id, "filter.tenant_id")
            f, limit, chosen = self._filter(q, tenant), max_events or DEFAULT_REPLAY_EVENTS, None
        queued: list[tuple[datetime, str]] = []
        for shard in self._shards(tenant):
            remaining = limit - len(queued)
            if remaining <= 0:
                break
            async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
                repo = uow.callbacks
                keys = await repo.select_keys(f, chosen, remaining, not_before)
                await repo.requeue(keys, now)
            queued.extend((t, i) for i, t in keys)
            if keys and self._wake is not None:
                await self._wake(shard)
        if chosen is not None and not queued:
            raise NotFound("callback_event", chosen[0] if len(chosen) == 1 else ", ".join(chosen[:5]))
        queued.sort()
        log.info("%d callback(s) queued for replay by %s", len(queued), principal.subject_id)
        return [i for _, i in queued]
