"""Message use cases: SendMessage (validation, idempotency, quota, schedule, priority), Get,
List, Cancel and Retry, and the per-tenant daily quota they share with batch tasks.

Sending only accepts: the row in `messages` is the durable queue the dispatcher
(workers/dispatch.py) claims from. Nothing here talks to the provider.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from wework.domain.access import Principal
from wework.domain.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
    QuotaExceeded,
    QuotaViolation,
    RequestIdReused,
    Unavailable,
    must_exist,
)
from wework.domain.identity import TenantStatus, validate_request_id
from wework.domain.messages import (
    Message,
    MessageStatus,
    MessageType,
    Template,
    normalize_priority,
    render,
    request_fingerprint,
    transition,
    validate_content,
    validate_conversation_id,
    validate_schedule,
)
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.persistence.redis.client import tenant_key
from wework.persistence.repositories.messages import MessageFilter
from wework.persistence.uow import UnitOfWork
from wework.server.application.context import AppContext, require_id
from wework.server.application.group_commit import GroupCommit
from wework.server.application.media import MESSAGE_MEDIA_KINDS, media_references
from wework.server.application.message_ports import AccountGateway
from wework.server.application.tenants import TenantUseCases
from wework.server.observability import metrics

log = logging.getLogger(__name__)

MESSAGE_DB = "message"
SEND_OPERATION = "SendMessage"
# Items per BatchSendMessages call (AIP-233 leaves the bound to the API; 1,000 as SQS/FCM-like
# batch APIs keep one call's work, its INSERTs and its answer, bounded).
MAX_BATCH_SEND = 1000

# Called once per accepting transaction with the messages it makes due (a group commit holds
# several; a transaction of scheduled messages only calls no hook); the dispatcher registers its
# wake-up here (uow.after_commit(...)), so an idle worker starts them at once. Once per
# transaction, not per message: one wake-up serves them all.
OnAccepted = Callable[[UnitOfWork, list[Message]], None]


# ---- quota -----------------------------------------------------------------------------------


class DailyQuota:
    """The tenant's max_daily_messages per UTC day, counted in Redis.

    take(): INCRBY n; a result above the limit is given back at once (DECRBY n) and refused.
    Every INCRBY returns a distinct total, so under any concurrency, in any number of
    processes, exactly `limit` units are granted and the counter never stays above the limit:
    no lock. Requests taken together share one INCRBY (their units are numbered in arrival
    order; those past the limit are refused and given back with one DECRBY): SendMessage's
    group commit takes the units of a whole batch at once, and concurrent acquire() calls of
    one tenant in this process share one INCRBY too, which keeps Redis off the hot path's
    critical cost.
    The database is the truth: a missing key (Redis restarted or evicted it) is first seeded
    with SET NX from the count of the day's accepted messages. The existence check and the
    INCRBY are one Lua script (one round trip, and no INCRBY can create an unseeded key; the
    embedded Redis runs it too, fakeredis[lua]). If Redis cannot be reached, sends are
    refused with UNAVAILABLE rather than accepted unchecked (docs/messages.md).
    """

    # nil when the key is missing (to be seeded first), else the total after INCRBY.
    _INCR_IF_EXISTS = ("if redis.call('EXISTS', KEYS[1]) == 0 then return false end "
                       "return redis.call('INCRBY', KEYS[1], ARGV[1])")

    def __init__(self, redis: Any, redis_config: Any, ttl_seconds: int,
                 count_accepted: Callable[[str, date], Any]) -> None:
        self._redis = redis
        self._cfg = redis_config
        self._ttl = ttl_seconds
        self._count = count_accepted  # async (tenant_id, day) -> int, from the database
        self._queues: dict[str, list[tuple[int, int, asyncio.Future]]] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._keys: dict[tuple[str, date], str] = {}
        self._script = redis.register_script(self._INCR_IF_EXISTS)

    def key(self, tenant_id: str, day: date) -> str:
        found = self._keys.get((tenant_id, day))
        if found is None:
            found = tenant_key(self._cfg, tenant_id, "quota", "messages", day.strftime("%Y%m%d"))
            if len(self._keys) >= 10_000:
                self._keys.clear()
            self._keys[(tenant_id, day)] = found
        return found

    async def acquire(self, tenant_id: str, limit: int, day: date, n: int = 1) -> None:
        """Takes n units or raises QuotaExceeded (nothing taken) or Unavailable (Redis down)."""
        key = self.key(tenant_id, day)
        future = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, []).append((n, limit, future))
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._drain(key, tenant_id, day), name="quota")
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller went away: a unit the drain grants anyway goes back.
            future.add_done_callback(lambda f: f.cancelled() or f.exception() is not None or asyncio.ensure_future(
                self.release(tenant_id, day, n)))
            raise

    async def _drain(self, key: str, tenant_id: str, day: date) -> None:
        try:
            queue = self._queues[key]
            while queue:
                batch = list(queue)
                queue.clear()
                try:
                    refusals = await self.take(tenant_id, day, [(n, limit) for n, limit, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
                    error = unavailable_quota(exc)
                    for _, _, future in batch:
                        fail(future, error)
                    continue
                for (_, _, future), refusal in zip(batch, refusals, strict=True):
                    if refusal is None:
                        resolve(future)
                    else:
                        fail(future, refusal)
        finally:
            self._tasks.pop(key, None)
            if not self._queues.get(key):
                self._queues.pop(key, None)

    async def take(self, tenant_id: str, day: date, wants: list[tuple[int, int]]) -> list[QuotaExceeded | None]:
        """Takes the units of several requests, each (n, limit), with one INCRBY: per request
        None (granted) or its QuotaExceeded (its units were given back). Raises RedisError."""
        key = self.key(tenant_id, day)
        wanted = sum(n for n, _ in wants)
        total = await self._incr_seeded(key, tenant_id, day, wanted)
        used = total - wanted  # units before ours, in every process
        refused = 0
        out: list[QuotaExceeded | None] = []
        for n, limit in wants:
            if used + n <= limit:
                used += n
                out.append(None)
            else:
                refused += n
                out.append(QuotaExceeded(
                    f"the tenant's daily message quota ({limit}) is used up",
                    [QuotaViolation(f"tenants/{tenant_id}",
                                    f"max_daily_messages={limit} for {day.isoformat()} (UTC) reached")]))
        if refused:
            await self._redis.decrby(key, refused)
        return out

    async def _incr_seeded(self, key: str, tenant_id: str, day: date, wanted: int) -> int:
        total = await self._script(keys=[key], args=[wanted])
        if total is not None:
            return int(total)
        await self._seed(key, tenant_id, day)
        return int(await self._redis.incrby(key, wanted))

    async def _seed(self, key: str, tenant_id: str, day: date) -> None:
        seed = await self._count(tenant_id, day)
        await self._redis.set(key, seed, nx=True, ex=self._ttl)

    async def release(self, tenant_id: str, day: date, n: int = 1) -> None:
        """Gives units back (cancel, or a failed accept). Best effort: the seed from the database
        corrects any drift once the key expires or is lost."""
        try:
            key = self.key(tenant_id, day)
            if await self._redis.exists(key):
                await self._redis.decrby(key, n)
        except RedisError:
            log.warning("could not give back %d quota unit(s) of tenant %s", n, tenant_id)


# ---- group commit ----------------------------------------------------------------------------


# How long a forming batch may wait for more sends when the previous one had company
# (GroupCommit._gather): at most this much latency for fewer transactions. The default of
# message.accept_linger_seconds; decision 0042 has the measurements behind it.
LINGER_SECONDS = 0.006


@dataclass(eq=False, slots=True)  # one per message accepted: slots make it cheaper to create
class _Pending:
    message: Message
    request_id: str
    limit: int  # the tenant's max_daily_messages
    day: date  # the UTC day whose quota the message counts against
    future: asyncio.Future
    charged: bool = False  # holds a unit of the day's quota
    request_hash: str | None = None  # stored with request_id (wework.domain.messages.request_fingerprint)


class MessageWriter:
    """Group commit of accepted messages, quota included, one writer task per shard (the
    mechanism is GroupCommit's, decision 0039; this class is what a batch means for messages).

    Concurrent SendMessage calls hand their messages here; the writer takes whatever has queued
    up, takes the batch's quota units with one INCRBY per tenant and day (refused messages fail
    with RESOURCE_EXHAUSTED and are not written), writes the others in one transaction
    (multi-row INSERTs of the idempotency keys and the messages, the templates' usage counters)
    and answers every caller after the commit. Under light load a batch is one message and
    nothing waits; under load one INCRBY and one commit serve many calls, which is what makes
    accepting cheap (docs/decisions/0011-message-accept-path.md). If a batch fails, each of its
    messages is retried in its own transaction so that one duplicate request_id fails alone;
    the quota unit of a message that is not written is given back.
    """

    def __init__(self, ctx: AppContext, quota: DailyQuota, on_accepted: list[OnAccepted],
                 max_batch: int = 500, linger_seconds: float = LINGER_SECONDS) -> None:
        self._ctx = ctx
        self._quota = quota
        self._on_accepted = on_accepted
        self._batcher: GroupCommit[_Pending] = GroupCommit(
            self._write, name="message-writer", max_batch=max_batch, linger_seconds=linger_seconds,
            prepare=self._charge, refund=self._refund,
            # The same request committed first: AlreadyExists, so the caller answers with its message.
            on_duplicate=lambda follower: AlreadyExists("request", "request_id", follower.request_id))

    def submit(self, message: Message, request_id: str, limit: int, day: date,
               request_hash: str | None = None) -> _Pending:
        """Queues `message`; its future completes once it is committed, or fails with the error
        (QuotaExceeded, AlreadyExists for a taken request_id, Unavailable...). A send whose
        request_id is already queued or being written here neither takes a unit nor writes: it
        follows the first one's outcome (AlreadyExists once that is committed)."""
        item = _Pending(message, request_id, limit, day, asyncio.get_running_loop().create_future(),
                        request_hash=request_hash)
        self._batcher.submit(self._ctx.db.shard_for(message.tenant_id), item,
                             (message.tenant_id, request_id) if request_id else None)
        return item

    def pending(self, message: Message, request_id: str, limit: int, day: date,
                request_hash: str | None) -> _Pending:
        """A message whose quota unit its caller has taken already (BatchSendMessages takes a
        whole call's units at once), for submit_charged or write_together."""
        return _Pending(message, request_id, limit, day, asyncio.get_running_loop().create_future(),
                        charged=True, request_hash=request_hash)

    def submit_charged(self, items: list[_Pending]) -> None:
        """Queues charged messages of one tenant for the group commit (their units are given back
        if they are not written). A concurrent send of the same request_id is not followed here:
        the key's uniqueness settles it at the write (AlreadyExists for the second)."""
        self._batcher.submit_many(self._ctx.db.shard_for(items[0].message.tenant_id), items)

    async def withdraw_charged(self, items: list[_Pending]) -> None:
        """withdraw() for charged messages of one tenant: those still queued are dropped and
        their units given back (one DECRBY)."""
        await self._refund(self._batcher.withdraw(self._ctx.db.shard_for(items[0].message.tenant_id), items))

    async def write_together(self, items: list[_Pending]) -> None:
        """Writes charged messages of one tenant in one transaction, all or none (an atomic
        BatchSendMessages); raises the write's error after giving their units back. A caller
        that goes away does not stop the write (a retry finds it by request_id)."""
        await self._batcher.commit_together(self._ctx.db.shard_for(items[0].message.tenant_id), items)

    def withdraw(self, item: _Pending) -> bool:
        """Takes back a message the writer has not started on (its caller went away): True if
        it will be neither charged nor written. One already taken is written (or its unit given
        back if that fails); nobody waits for it."""
        return bool(self._batcher.withdraw(self._ctx.db.shard_for(item.message.tenant_id), [item]))

    async def _charge(self, batch: list[_Pending]) -> list[_Pending]:
        """The messages of `batch` that got their quota unit; the others' callers are answered."""
        groups: dict[tuple[str, date], list[_Pending]] = {}
        for item in batch:
            groups.setdefault((item.message.tenant_id, item.day), []).append(item)
        charged: list[_Pending] = []
        for (tenant_id, day), items in groups.items():
            charged += [i for i in items if i.charged]  # by their caller (BatchSendMessages)
            items = [i for i in items if not i.charged]
            if not items:
                continue
            try:
                refusals = await self._quota.take(tenant_id, day, [(1, i.limit) for i in items])
            except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
                error = unavailable_quota(exc)
                for item in items:
                    fail(item.future, error)
                continue
            for item, refusal in zip(items, refusals, strict=True):
                if refusal is None:
                    item.charged = True
                    charged.append(item)
                else:
                    fail(item.future, refusal)
        return charged

    async def _refund(self, items: list[_Pending]) -> None:
        """Gives back the quota units of messages that were not written: one DECRBY per tenant
        and day (a withdrawn BatchSendMessages gives back up to 1,000 at once)."""
        units: Counter[tuple[str, date]] = Counter()
        for item in items:
            if item.charged:
                item.charged = False
                units[(item.message.tenant_id, item.day)] += 1
        for (tenant_id, day), n in units.items():
            await self._quota.release(tenant_id, day, n)

    async def _write(self, shard: str, batch: list[_Pending]) -> None:
        now = self._ctx.clock()
        usage = Counter((i.message.tenant_id, i.message.template_id) for i in batch if i.message.template_id)
        # tenants=: routed before a bucket move may have switched them; refused then (retryable).
        # Without template counters (an ORM update) the batch is rendered SQL only, which runs on
        # the driver connection at about half the CPU (decision 0022).
        async with self._ctx.db.shard_unit_of_work(MESSAGE_DB, shard, tenants={i.message.tenant_id for i in batch},
                                                   rendered_sql=not usage) as uow:
            repo = uow.messages
            await repo.put_idempotent_many([(i.message.tenant_id, SEND_OPERATION, i.request_id, i.message.id,
                                             i.request_hash) for i in batch if i.request_id], now)
            await repo.add_many([i.message for i in batch])
            templates = uow.templates
            for (tenant_id, template_id), n in sorted(usage.items()):
                await templates.record_use(tenant_id, template_id, now, n)  # type: ignore[arg-type]
            # Only messages due now wake the dispatchers: a scheduled one is found by their poll
            # (idle_poll_seconds) once due, and a wake-up now would only make them look in vain.
            due = [i.message for i in batch if i.message.scheduled_time is None or i.message.scheduled_time <= now]
            if due:
                for hook in self._on_accepted:
                    hook(uow, due)


def _send_fingerprint(req: SendRequest) -> str:
    """The fingerprint of what a SendMessage asks for (everything but its request_id)."""
    return request_fingerprint({
        "account_id": req.account_id, "conversation_id": req.conversation_id,
        "message_type": req.message_type.value if req.message_type is not None else None, "content": req.content,
        "template_id": req.template_id, "variables": req.variables or {}, "priority": req.priority,
        "scheduled_time": req.scheduled_time.isoformat() if req.scheduled_time is not None else None})


class _RequestIdTaken(Exception):
    """An atomic batch's write found a request_id taken by a concurrent call."""


def _raise_if_atomic(atomic: bool, outcomes: list[Any]) -> None:
    """In atomic mode, raises what fails the call: every item's field violations together
    (named requests[i].field), else the first failing item's error (its message and ErrorInfo
    naming the item)."""
    if not atomic:
        return
    failed = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
    if not failed:
        return
    invalid = [(i, o) for i, o in failed if isinstance(o, InvalidArgument)]
    if invalid:
        raise InvalidArgument([FieldViolation(f"requests[{i}].{v.field}", v.description, v.reason)
                               for i, o in invalid for v in o.violations])
    i, error = failed[0]
    if isinstance(error, DomainError):
        error.message = f"requests[{i}]: {error.message}"
        error.metadata = {**error.metadata, "request_index": str(i)}
    raise error


def unavailable_quota(exc: BaseException) -> BaseException:
    """What the callers of a failed quota take get: UNAVAILABLE when Redis failed."""
    if not isinstance(exc, RedisError):
        return exc
    error = Unavailable("the quota counter (Redis) is unavailable; sending is refused until it is back",
                        metadata={"dependency": "redis"})
    error.__cause__ = exc
    return error


async def _all_done(futures: list[asyncio.Future]) -> None:
    """Returns once every future is done, without cancelling any if the caller is cancelled
    (asyncio.wait's contract). A call's items are settled together, batch by batch: waiting on
    the first one still pending at a time costs one wait per batch, where one asyncio.wait over
    all of them cost ~1 us per item in callbacks."""
    for future in futures:
        if not future.done():
            await asyncio.wait((future,))


def resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


# ---- use cases -------------------------------------------------------------------------------


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which tripled the
# cost of making one (paid per SendMessage and per BatchSendMessages item). Nothing mutates it.
@dataclass(slots=True)
class SendRequest:
    account_id: str
    conversation_id: str
    message_type: MessageType | None  # None: no content given
    content: dict[str, Any]
    template_id: str = ""
    variables: dict[str, Any] | None = None
    priority: int = 0
    scheduled_time: datetime | None = None
    request_id: str = ""


class MessageUseCases:
    def __init__(self, ctx: AppContext, accounts: AccountGateway, tenants: TenantUseCases, quota: DailyQuota,
                 *, max_schedule: timedelta = timedelta(days=30), media: Any = None,
                 linger_seconds: float = LINGER_SECONDS) -> None:
        self._ctx = ctx
        # MediaUseCases: a media_id in the content must name media of the tenant (docs/media.md).
        self._media = media
        self._accounts = accounts
        self._tenants = tenants
        self._quota = quota
        self._max_schedule = max_schedule
        self.on_accepted: list[OnAccepted] = []
        self._writer = MessageWriter(ctx, quota, self.on_accepted, linger_seconds=linger_seconds)

    # -- shared checks (also used by batch tasks) ----------------------------------------------

    async def require_active_tenant(self, tenant_id: str) -> int:
        """The tenant's max_daily_messages; FAILED_PRECONDITION unless the tenant is active."""
        limits = await self._tenants.tenant_limits(tenant_id)
        if limits is None:
            raise NotFound("tenant", tenant_id)
        if limits.status != TenantStatus.ACTIVE:
            raise FailedPrecondition(
                f"the tenant is {limits.status.value}; it cannot send messages",
                [PreconditionViolation("STATUS", f"tenants/{tenant_id}", f"tenant is {limits.status.value}")],
                reason="TENANT_SUSPENDED" if limits.status == TenantStatus.SUSPENDED else None)
        return limits.max_daily_messages

    @property
    def quota(self) -> DailyQuota:
        return self._quota

    # -- send ------------------------------------------------------------------------------------

    async def send_message(self, principal: Principal, req: SendRequest) -> Message:
        tenant_id = principal.require_tenant()
        now = self._ctx.clock()
        # 1. Everything that needs no I/O, all violations at once.
        priority = self._check_send(req, now)
        # 2. Who may send: the tenant, the account (NOT_FOUND across tenants), the template.
        limit = await self.require_active_tenant(tenant_id)
        await self._accounts.account_for_send(tenant_id, req.account_id)
        message = await self._new_message(principal, tenant_id, req, priority, now, {})
        # 3. The quota and the write, both by the group commit (MessageWriter). A retry of an
        # accepted request (same request_id) finds its key taken at the write and returns the
        # first message; the unit it took goes back. When the quota is used up the key is looked
        # up, so that such a retry still answers with its message instead of RESOURCE_EXHAUSTED.
        # A request_id comes with the fingerprint of the request: a reuse with another request is
        # refused (REQUEST_ID_REUSED) rather than answered with the first message. Compared only
        # when the key is found taken, so the accepting path pays a hash and a column.
        fingerprint = _send_fingerprint(req) if req.request_id else None
        pending = self._writer.submit(message, req.request_id, limit, now.date(), fingerprint)
        try:
            # Not shielded: a cancelled caller cancels the future, and the writer only ever sets
            # a future that is still pending.
            await pending.future
        except (QuotaExceeded, AlreadyExists):
            existing = await self._idempotent(tenant_id, req.request_id, fingerprint) if req.request_id else None
            if existing is None:
                raise
            return existing
        except asyncio.CancelledError:
            # The caller went away: a message still queued is dropped; one the writer has taken
            # is written (a retry finds it by request_id), its unit given back if that fails.
            self._writer.withdraw(pending)
            raise
        metrics.messages_accepted(message.message_type.value).inc()
        return message

    def _check_send(self, req: SendRequest, now: datetime) -> int:
        """The request's priority; InvalidArgument with every violation that needs no I/O."""
        violations: list[FieldViolation] = []
        if not req.account_id:
            violations.append(FieldViolation("account_id", "account_id is required", "REQUIRED"))
        violations += validate_conversation_id(req.conversation_id)
        try:
            validate_request_id(req.request_id)
        except InvalidArgument as exc:
            violations += exc.violations
        try:
            priority = normalize_priority(req.priority)
        except InvalidArgument as exc:
            violations += exc.violations
            priority = 0
        violations += validate_schedule(req.scheduled_time, now, max_ahead=self._max_schedule)
        if req.template_id:
            if req.message_type is not None:
                violations.append(FieldViolation("content", "give either content or template_id, not both"))
        elif req.message_type is None:
            violations.append(FieldViolation("content", "content (or template_id) is required", "REQUIRED"))
        else:
            violations += validate_content(req.message_type, req.content)
        if req.variables and not req.template_id:
            violations.append(FieldViolation("variables", "variables need a template_id"))
        if violations:
            raise InvalidArgument(violations)
        return priority

    async def _new_message(self, principal: Principal, tenant_id: str, req: SendRequest, priority: int,
                           now: datetime, templates: dict[str, Template]) -> Message:
        """The message `req` makes (its template rendered); `templates` caches the call's templates."""
        message_type, content = req.message_type, req.content
        if req.template_id:
            message_type, content = await self._render_template(principal, tenant_id, req, templates)
        assert message_type is not None
        # Only types that can name media are looked at (a text costs no coroutine here).
        if self._media is not None and message_type in MESSAGE_MEDIA_KINDS:
            await self._media.check_references(tenant_id, media_references(message_type.value, content))
        return Message(
            id=new_id(), tenant_id=tenant_id, account_id=req.account_id, conversation_id=req.conversation_id,
            message_type=message_type, content=content, created_at=now, updated_at=now,
            template_id=req.template_id or None, priority=priority, scheduled_time=req.scheduled_time)

    async def _render_template(self, principal: Principal, tenant_id: str, req: SendRequest,
                               templates: dict[str, Template]) -> tuple[MessageType, dict[str, Any]]:
        template = templates.get(req.template_id)
        if template is None:
            async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
                template = await uow.templates.get(tenant_id, req.template_id)
            if template is None or not template.visible_to(principal.subject_id):
                raise NotFound("template", req.template_id)
            templates[req.template_id] = template
        if not template.is_active:
            raise FailedPrecondition("the template is inactive", [PreconditionViolation(
                "STATUS", f"templates/{template.id}", "template is inactive")])
        content = render(template.template_type, template.template_content, template.variables, req.variables)
        return template.template_type, content

    async def _idempotent(self, tenant_id: str, request_id: str, fingerprint: str | None) -> Message | None:
        """The message `request_id` made before; RequestIdReused if it was made by another request."""
        found = await self._idempotent_many(tenant_id, {request_id: fingerprint})
        outcome = found.get(request_id)
        if isinstance(outcome, RequestIdReused):
            raise outcome
        return outcome

    async def _idempotent_many(self, tenant_id: str,
                               fingerprints: dict[str, str | None]) -> dict[str, Message | RequestIdReused]:
        """Per request_id used before: the message it made, or RequestIdReused when another request
        made it (compared by fingerprint; a key stored without one answers its message). Two
        SELECTs for any number of request_ids."""
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            repo = uow.messages
            keys = await repo.get_idempotent_requests(tenant_id, SEND_OPERATION, list(fingerprints))
            out: dict[str, Message | RequestIdReused] = {}
            wanted: dict[str, str] = {}
            for request_id, (message_id, stored) in keys.items():
                fingerprint = fingerprints[request_id]
                if stored is not None and fingerprint is not None and stored != fingerprint:
                    out[request_id] = RequestIdReused(request_id, f"messages/{message_id}")
                else:
                    wanted[request_id] = message_id
            messages = await repo.get_many(tenant_id, list(wanted.values()))
        for request_id, message_id in wanted.items():
            if message_id in messages:
                out[request_id] = messages[message_id]
        return out

    # -- batch send (AIP-233) ------------------------------------------------------------------

    async def send_messages(self, principal: Principal, reqs: list[SendRequest],
                            atomic: bool = False) -> list[Message | BaseException]:
        try:
            return await self._send_messages(principal, reqs, atomic)
        except _RequestIdTaken:
            # A concurrent call took one of the request_ids between the lookup and the atomic
            # write (nothing was written): once more, and the lookup now finds it.
            return await self._send_messages(principal, reqs, atomic)

    async def _send_messages(self, principal: Principal, reqs: list[SendRequest],
                             atomic: bool) -> list[Message | BaseException]:
        """BatchSendMessages: per request, in order, its message or the error SendMessage would
        have raised for it. Every rule is SendMessage's own (_check_send, require_active_tenant,
        account_for_send, _new_message, the fingerprint, the group commit); what differs is that
        the quota of the whole call is taken with one INCRBY, request_ids are looked up in one
        SELECT, and the messages reach the writer together. `atomic`: the first failing item's
        error is raised (fields named requests[i].field) and nothing is accepted; all items are
        written in one transaction. Two items with one request_id behave as two SendMessage
        calls in that order (decision 0035)."""
        tenant_id = principal.require_tenant()
        if not reqs:
            raise InvalidArgument(FieldViolation("requests", "at least one request is required", "REQUIRED"))
        if len(reqs) > MAX_BATCH_SEND:
            raise InvalidArgument(FieldViolation(
                "requests", f"at most {MAX_BATCH_SEND} requests per call; split the list", "TOO_MANY"))
        now = self._ctx.clock()
        outcomes: list[Message | BaseException | None] = [None] * len(reqs)
        priorities: list[int] = [0] * len(reqs)
        # 1. Per item, no I/O: SendMessage's checks.
        for i, req in enumerate(reqs):
            try:
                priorities[i] = self._check_send(req, now)
            except InvalidArgument as exc:
                outcomes[i] = exc
        _raise_if_atomic(atomic, outcomes)
        limit = await self.require_active_tenant(tenant_id)  # the call's, not an item's
        fingerprints = [_send_fingerprint(r) if r.request_id and outcomes[i] is None else None
                        for i, r in enumerate(reqs)]
        # 2. A request_id a previous item of this call holds: that item's outcome (same request)
        # or REQUEST_ID_REUSED (another one), settled once the first is.
        first_of: dict[int, int] = {}
        seen: dict[str, int] = {}
        for i, req in enumerate(reqs):
            if req.request_id and outcomes[i] is None:
                if req.request_id not in seen:
                    seen[req.request_id] = i
                elif fingerprints[i] == fingerprints[seen[req.request_id]]:
                    first_of[i] = seen[req.request_id]
                else:
                    outcomes[i] = RequestIdReused(req.request_id, f"requests[{seen[req.request_id]}]")
        _raise_if_atomic(atomic, outcomes)
        # 3. Accounts (each once) and templates (each read once), then the messages.
        accounts: dict[str, DomainError | None] = {}
        templates: dict[str, Template] = {}
        messages: dict[int, Message] = {}
        for i, req in enumerate(reqs):
            if outcomes[i] is not None or i in first_of:
                continue
            if req.account_id not in accounts:
                try:
                    await self._accounts.account_for_send(tenant_id, req.account_id)
                    accounts[req.account_id] = None
                except DomainError as exc:
                    accounts[req.account_id] = exc
            try:
                if accounts[req.account_id] is not None:
                    raise accounts[req.account_id]  # type: ignore[misc]
                messages[i] = await self._new_message(principal, tenant_id, req, priorities[i], now, templates)
            except DomainError as exc:
                outcomes[i] = exc
        _raise_if_atomic(atomic, outcomes)
        # 4. request_ids accepted before (a retried batch): their first messages, one lookup.
        keyed = {reqs[i].request_id: fingerprints[i] for i in messages if reqs[i].request_id}
        if keyed:
            for request_id, found in (await self._idempotent_many(tenant_id, keyed)).items():
                i = seen[request_id]
                outcomes[i] = found
                del messages[i]
        _raise_if_atomic(atomic, outcomes)
        # 5. The quota of the whole call in one take, then the writes.
        if messages:
            await self._accept_many(tenant_id, reqs, messages, fingerprints, outcomes, limit, now, atomic)
        for i, j in first_of.items():
            outcomes[i] = outcomes[j]
        return outcomes  # type: ignore[return-value]

    async def _accept_many(self, tenant_id: str, reqs: list[SendRequest], messages: dict[int, Message],
                           fingerprints: list[str | None], outcomes: list[Message | BaseException | None],
                           limit: int, now: datetime, atomic: bool) -> None:
        """Takes the quota of `messages` at once and writes them; fills in their outcomes."""
        day = now.date()
        order = list(messages)
        try:
            # Atomic: one want of n units (all or none); otherwise n wants of one, numbered in
            # request order, so the items past the limit are the refused ones.
            wants = [(len(order), limit)] if atomic else [(1, limit)] * len(order)
            refusals = await self._quota.take(tenant_id, day, wants)
        except RedisError as exc:
            raise unavailable_quota(exc) from exc
        if atomic:
            if refusals[0] is not None:
                raise refusals[0]
            refusals = [None] * len(order)
        granted = [i for i, refusal in zip(order, refusals, strict=True) if refusal is None]
        for i, refusal in zip(order, refusals, strict=True):
            if refusal is not None:
                outcomes[i] = refusal
        pending = {i: self._writer.pending(messages[i], reqs[i].request_id, limit, day, fingerprints[i])
                   for i in granted}
        if not pending:
            return
        if atomic:
            try:
                await self._writer.write_together(list(pending.values()))
            except AlreadyExists as exc:
                raise _RequestIdTaken from exc
        else:
            self._writer.submit_charged(list(pending.values()))
            try:
                await _all_done([p.future for p in pending.values()])
            except asyncio.CancelledError:
                await self._writer.withdraw_charged(list(pending.values()))
                raise
        retry: dict[str, str | None] = {}
        accepted: Counter[MessageType] = Counter()
        for i, item in pending.items():
            error = item.future.exception() if item.future.done() and not item.future.cancelled() else None
            if error is None:
                outcomes[i] = messages[i]
                accepted[messages[i].message_type] += 1
            elif isinstance(error, AlreadyExists) and reqs[i].request_id:
                retry[reqs[i].request_id] = fingerprints[i]  # taken since the lookup: a concurrent call
                outcomes[i] = error  # type: ignore[assignment]
            else:
                outcomes[i] = error
        for message_type, n in accepted.items():  # one increment per type, not per message
            metrics.messages_accepted(message_type.value).inc(n)
        if retry:
            found = await self._idempotent_many(tenant_id, retry)
            for i in pending:
                if reqs[i].request_id in found:
                    outcomes[i] = found[reqs[i].request_id]

    # -- read --------------------------------------------------------------------------------------

    async def get_message(self, principal: Principal, message_id: str) -> Message:
        tenant_id = principal.require_tenant()
        require_id(message_id, "id")
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            return must_exist(await uow.messages.get(tenant_id, message_id), "message", message_id)

    async def list_messages(self, principal: Principal, f: MessageFilter, page_size: int,
                            page_token: str) -> tuple[list[Message], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        if f.start_time and f.end_time and f.start_time >= f.end_time:
            raise InvalidArgument(FieldViolation("end_time", "end_time must be after start_time"))
        after = None
        if page_token:
            body = self._ctx.page_tokens.decode(page_token, "messages", tenant_id, {"t": datetime, "id": str})
            after = (body["t"], body["id"])
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            rows, last = await uow.messages.list_page(tenant_id, f, after, limit)
        token = self._ctx.page_tokens.encode({"t": last[0], "id": last[1]}, "messages", tenant_id) if last else ""
        return rows, token

    # -- cancel / retry --------------------------------------------------------------------------

    async def cancel_message(self, principal: Principal, message_id: str) -> Message:
        tenant_id = principal.require_tenant()
        require_id(message_id, "id")
        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            current, updated = await _change_status(
                uow, tenant_id, message_id, MessageStatus.PENDING, MessageStatus.CANCELLED, now,
                "only a pending or scheduled message can be cancelled", "cancelled")
            # Quotas are per UTC day of acceptance: only today's counter can take the unit back.
            if current.created_at.date() == now.date():
                uow.after_commit(lambda: self._quota.release(tenant_id, now.date()))
        return updated

    async def retry_message(self, principal: Principal, message_id: str) -> Message:
        tenant_id = principal.require_tenant()
        require_id(message_id, "id")
        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            current, updated = await _change_status(
                uow, tenant_id, message_id, MessageStatus.FAILED, MessageStatus.PENDING, now,
                "only a failed message can be retried", "retried")
            # The failure no longer counts: the next outcome will.
            await uow.messages.record_terminal_status(updated, current.status, now)
            for hook in self.on_accepted:
                hook(uow, [updated])
        return replace(updated)


def database_quota_counter(ctx: AppContext) -> Callable[[str, date], Any]:
    """The database side of DailyQuota: messages the tenant had accepted on that UTC day."""

    async def count(tenant_id: str, day: date) -> int:
        async with ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            return await uow.messages.count_accepted(tenant_id, day)

    return count


async def _change_status(uow, tenant_id: str, message_id: str, required: MessageStatus, new: MessageStatus,
                         now, refusal: str, verb: str) -> tuple[Message, Message]:
    """Locks the message, checks it is in `required`, moves it to `new` and saves it guarded by
    the old status. Returns (before, after). FAILED_PRECONDITION, naming the status, otherwise."""
    repo = uow.messages
    current = await repo.get(tenant_id, message_id, for_update=True)
    if current is None:
        raise NotFound("message", message_id)
    if current.status != required:
        raise FailedPrecondition(
            f"{refusal}; this one is {current.status.value}",
            [PreconditionViolation("STATUS", f"messages/{message_id}", f"message is {current.status.value}")])
    updated = transition(current, new, now=now)
    assert updated is not None
    if not await repo.save_state(updated, expected_status=current.status):
        raise FailedPrecondition(f"the message changed while it was being {verb}; read it again")
    return current, updated
