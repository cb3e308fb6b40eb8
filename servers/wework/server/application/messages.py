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
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
    QuotaExceeded,
    QuotaViolation,
    Unavailable,
)
from wework.domain.identity import TenantStatus, validate_request_id
from wework.domain.messages import (
    Message,
    MessageStatus,
    MessageType,
    normalize_priority,
    render,
    transition,
    validate_content,
    validate_conversation_id,
    validate_schedule,
)
from wework.persistence.ids import new_id
from wework.persistence.pagination import decode_page_token, encode_page_token, normalize_page_size
from wework.persistence.redis.client import tenant_key
from wework.persistence.repositories.messages import (
    MessageFilter,
    MessageRepository,
    TemplateRepository,
    record_terminal_status,
)
from wework.persistence.uow import UnitOfWork
from wework.server.application.context import AppContext, require_id
from wework.server.application.message_ports import AccountGateway
from wework.server.application.tenants import TenantUseCases

log = logging.getLogger(__name__)

MESSAGE_DB = "message"
SEND_OPERATION = "SendMessage"

# Called once per accepting transaction with the messages it makes due (a group commit holds
# several); the dispatcher registers its wake-up here (uow.after_commit(...)), so an idle worker
# starts them at once. Once per transaction, not per message: one wake-up serves them all.
OnAccepted = Callable[[UnitOfWork, list[Message]], None]


# ---- quota -----------------------------------------------------------------------------------


class DailyQuota:
    """The tenant's max_daily_messages per UTC day, counted in Redis.

    acquire(): INCRBY n; a result above the limit is given back at once (DECRBY n) and refused.
    Every INCRBY returns a distinct total, so under any concurrency, in any number of
    processes, exactly `limit` units are granted and the counter never stays above the limit:
    no Lua script, no lock. Concurrent acquires of one tenant in this process share one INCRBY
    (their units are numbered in arrival order; those past the limit are refused and given back
    with one DECRBY), which keeps Redis off the hot path's critical cost.
    The database is the truth: a missing key (Redis restarted or evicted it) is first seeded
    with SET NX from the count of the day's accepted messages. If Redis cannot be reached,
    sends are refused with UNAVAILABLE rather than accepted unchecked (docs/messages.md).
    """

    def __init__(self, redis: Any, redis_config: Any, ttl_seconds: int,
                 count_accepted: Callable[[str, date], Any]) -> None:
        self._redis = redis
        self._cfg = redis_config
        self._ttl = ttl_seconds
        self._count = count_accepted  # async (tenant_id, day) -> int, from the database
        self._queues: dict[str, list[tuple[int, int, asyncio.Future]]] = {}
        self._tasks: dict[str, asyncio.Task] = {}

    def key(self, tenant_id: str, day: date) -> str:
        return tenant_key(self._cfg, tenant_id, "quota", "messages", day.strftime("%Y%m%d"))

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
                    await self._take(key, tenant_id, day, batch)
                except RedisError as exc:
                    error = Unavailable("the quota counter (Redis) is unavailable; sending is refused until "
                                        "it is back", metadata={"dependency": "redis"})
                    error.__cause__ = exc
                    for _, _, future in batch:
                        fail(future, error)
                except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
                    for _, _, future in batch:
                        fail(future, exc)
        finally:
            self._tasks.pop(key, None)
            if not self._queues.get(key):
                self._queues.pop(key, None)

    async def _take(self, key: str, tenant_id: str, day: date, batch: list[tuple[int, int, asyncio.Future]]) -> None:
        if not await self._redis.exists(key):
            seed = await self._count(tenant_id, day)
            await self._redis.set(key, seed, nx=True, ex=self._ttl)
        wanted = sum(n for n, _, _ in batch)
        used = await self._redis.incrby(key, wanted) - wanted  # units before ours, in every process
        refused = 0
        for n, limit, future in batch:
            if used + n <= limit:
                used += n
                resolve(future)
            else:
                refused += n
                fail(future, QuotaExceeded(
                    f"the tenant's daily message quota ({limit}) is used up",
                    [QuotaViolation(f"tenants/{tenant_id}",
                                    f"max_daily_messages={limit} for {day.isoformat()} (UTC) reached")]))
        if refused:
            await self._redis.decrby(key, refused)

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


@dataclass
class _Pending:
    message: Message
    request_id: str
    future: asyncio.Future


class MessageWriter:
    """Group commit of accepted messages, one writer task per shard.

    Concurrent SendMessage calls hand their rows here; the writer takes whatever has queued up,
    writes it in one transaction (multi-row INSERTs of the idempotency keys and the messages,
    the templates' usage counters) and answers every caller after the commit. Under light load
    a batch is one message and nothing waits; under load one commit serves many calls, which is
    what makes accepting cheap (docs/decisions/0011-message-accept-path.md). If a batch fails,
    each of its messages is retried in its own transaction so that one duplicate request_id
    fails alone.
    """

    def __init__(self, ctx: AppContext, on_accepted: list[OnAccepted], max_batch: int = 500) -> None:
        self._ctx = ctx
        self._on_accepted = on_accepted
        self._max_batch = max_batch
        self._queues: dict[str, list[_Pending]] = {}
        self._tasks: dict[str, asyncio.Task] = {}

    def submit(self, message: Message, request_id: str) -> asyncio.Future:
        """A future that completes once `message` is committed (or fails with the error)."""
        shard = self._ctx.db.shard_for(message.tenant_id)
        future = asyncio.get_running_loop().create_future()
        self._queues.setdefault(shard, []).append(_Pending(message, request_id, future))
        if shard not in self._tasks:
            self._tasks[shard] = asyncio.create_task(self._drain(shard), name=f"message-writer-{shard}")
        return future

    async def _drain(self, shard: str) -> None:
        try:
            queue = self._queues[shard]
            while queue:
                batch = queue[:self._max_batch]
                del queue[:len(batch)]
                try:
                    await self._write(shard, batch)
                except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
                    if len(batch) == 1:
                        fail(batch[0].future, exc)
                        continue
                    for item in batch:
                        try:
                            await self._write(shard, [item])
                        except Exception as one:  # noqa: BLE001 - handed to its caller
                            fail(item.future, one)
                        else:
                            resolve(item.future)
                else:
                    for item in batch:
                        resolve(item.future)
        finally:
            # No await between the last `while queue` check and here: nothing can be left behind.
            self._tasks.pop(shard, None)

    async def _write(self, shard: str, batch: list[_Pending]) -> None:
        now = self._ctx.clock()
        # tenants=: routed before a bucket move may have switched them; refused then (retryable).
        async with self._ctx.db.shard_unit_of_work(MESSAGE_DB, shard,
                                                   tenants={i.message.tenant_id for i in batch}) as uow:
            repo = MessageRepository(uow.session)
            await repo.put_idempotent_many([(i.message.tenant_id, SEND_OPERATION, i.request_id, i.message.id)
                                            for i in batch if i.request_id], now)
            await repo.add_many([i.message for i in batch])
            usage = Counter((i.message.tenant_id, i.message.template_id) for i in batch if i.message.template_id)
            templates = TemplateRepository(uow.session)
            for (tenant_id, template_id), n in sorted(usage.items()):
                await templates.record_use(tenant_id, template_id, now, n)  # type: ignore[arg-type]
            for hook in self._on_accepted:
                hook(uow, [i.message for i in batch])


def resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


# ---- use cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
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
                 *, max_schedule: timedelta = timedelta(days=30)) -> None:
        self._ctx = ctx
        self._accounts = accounts
        self._tenants = tenants
        self._quota = quota
        self._max_schedule = max_schedule
        self.on_accepted: list[OnAccepted] = []
        self._writer = MessageWriter(ctx, self.on_accepted)

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

        # 2. Who may send: the tenant, the account (NOT_FOUND across tenants), the template.
        limit = await self.require_active_tenant(tenant_id)
        await self._accounts.account_for_send(tenant_id, req.account_id)
        message_type, content = req.message_type, req.content
        if req.template_id:
            message_type, content = await self._render_template(principal, tenant_id, req)
        assert message_type is not None

        message = Message(
            id=new_id(), tenant_id=tenant_id, account_id=req.account_id, conversation_id=req.conversation_id,
            message_type=message_type, content=content, created_at=now, updated_at=now,
            template_id=req.template_id or None, priority=priority, scheduled_time=req.scheduled_time)
        day = now.date()
        # 3. The quota, then the write. A retry of an accepted request (same request_id) finds its
        # key taken at the write and returns the first message; the unit it took goes back. Only
        # when the quota is used up is the key looked up first, so that such a retry still
        # answers with its message instead of RESOURCE_EXHAUSTED.
        try:
            await self._quota.acquire(tenant_id, limit, day)
        except QuotaExceeded:
            existing = await self._idempotent(tenant_id, req.request_id) if req.request_id else None
            if existing is None:
                raise
            return existing
        written = self._writer.submit(message, req.request_id)
        try:
            await asyncio.shield(written)
        except AlreadyExists:
            await self._quota.release(tenant_id, day)
            existing = await self._idempotent(tenant_id, req.request_id)
            if existing is None:
                raise
            return existing
        except asyncio.CancelledError:
            # The caller went away; the write goes on. Give the unit back only if it fails.
            written.add_done_callback(lambda f: f.cancelled() or f.exception() is None or asyncio.ensure_future(
                self._quota.release(tenant_id, day)))
            raise
        except Exception:
            await self._quota.release(tenant_id, day)
            raise
        return message

    async def _render_template(self, principal: Principal, tenant_id: str,
                               req: SendRequest) -> tuple[MessageType, dict[str, Any]]:
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            template = await TemplateRepository(uow.session).get(tenant_id, req.template_id)
        if template is None or not template.visible_to(principal.subject_id):
            raise NotFound("template", req.template_id)
        if not template.is_active:
            raise FailedPrecondition("the template is inactive", [PreconditionViolation(
                "STATUS", f"templates/{template.id}", "template is inactive")])
        content = render(template.template_type, template.template_content, template.variables, req.variables)
        return template.template_type, content

    async def _idempotent(self, tenant_id: str, request_id: str) -> Message | None:
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            repo = MessageRepository(uow.session)
            message_id = await repo.get_idempotent(tenant_id, SEND_OPERATION, request_id)
            return None if message_id is None else await repo.get(tenant_id, message_id)

    # -- read --------------------------------------------------------------------------------------

    async def get_message(self, principal: Principal, message_id: str) -> Message:
        tenant_id = principal.require_tenant()
        require_id(message_id, "id")
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            found = await MessageRepository(uow.session).get(tenant_id, message_id)
        if found is None:
            raise NotFound("message", message_id)
        return found

    async def list_messages(self, principal: Principal, f: MessageFilter, page_size: int,
                            page_token: str) -> tuple[list[Message], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        if f.start_time and f.end_time and f.start_time >= f.end_time:
            raise InvalidArgument(FieldViolation("end_time", "end_time must be after start_time"))
        after = None
        if page_token:
            body = decode_page_token(page_token, "messages")
            try:
                after = (body["t"], body["s"], body["id"])
            except KeyError:
                raise InvalidArgument(FieldViolation("page_token", "the page token is not valid")) from None
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            rows, last = await MessageRepository(uow.session).list_page(tenant_id, f, after, limit)
        token = encode_page_token({"t": last[0], "s": last[1], "id": last[2]}, "messages") if last else ""
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
            await record_terminal_status(uow.session, updated, current.status, now)
            for hook in self.on_accepted:
                hook(uow, [updated])
        return replace(updated)


def database_quota_counter(ctx: AppContext) -> Callable[[str, date], Any]:
    """The database side of DailyQuota: messages the tenant had accepted on that UTC day."""

    async def count(tenant_id: str, day: date) -> int:
        async with ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            return await MessageRepository(uow.session).count_accepted(tenant_id, day)

    return count


async def _change_status(uow, tenant_id: str, message_id: str, required: MessageStatus, new: MessageStatus,
                         now, refusal: str, verb: str) -> tuple[Message, Message]:
    """Locks the message, checks it is in `required`, moves it to `new` and saves it guarded by
    the old status. Returns (before, after). FAILED_PRECONDITION, naming the status, otherwise."""
    repo = MessageRepository(uow.session)
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
