"""Batch send task use cases (engineer B). The handler delegates to these signatures.

Announced interface (stable; the handler maps protos to/from wework.domain.batches types):

    class BatchUseCases:
        def __init__(self, ctx: AppContext, accounts: AccountGateway, tenants: TenantUseCases) -> None
        async def create_batch_task(self, principal: Principal, task: BatchTask, request_id: str) -> BatchTask
        async def import_targets(self, principal: Principal,
                                 chunks: AsyncIterator[tuple[str, list[BatchTarget]]]) -> tuple[int, int]
            # one (task_id, targets) per ImportBatchTargetsRequest; returns (imported_count, total_count)
        async def start_batch_task(self, principal: Principal, task_id: str) -> BatchTask
        async def pause_batch_task(self, principal: Principal, task_id: str) -> BatchTask
        async def resume_batch_task(self, principal: Principal, task_id: str) -> BatchTask
        async def cancel_batch_task(self, principal: Principal, task_id: str) -> BatchTask
        async def get_batch_task(self, principal: Principal, task_id: str) -> BatchTask
        async def list_batch_tasks(self, principal: Principal, page_size: int, page_token: str,
                                   status: BatchStatus | None, account_id: str) -> tuple[list[BatchTask], str]
        def watch_batch_task(self, principal: Principal, task_id: str) -> AsyncIterator[tuple[BatchTask, int]]
            # async generator of (task, eta_seconds) until the task is terminal

BatchTask fields (wework.domain.batches): id, tenant_id, creator_id, task_name, account_id, template_id,
message_type + content (same shapes as wework.domain.messages.Message), variables (dict),
target_type (TargetType), manual_targets (list[BatchTarget]), target_filter (TargetFilter | None),
send_strategy (SendStrategy), status (BatchStatus), total_count, sent_count, success_count,
failed_count, progress_percent, start_time, end_time, estimated_duration_seconds, error_message,
created_at, updated_at, etag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from wework.domain.access import Principal
from wework.domain.accounts import ConversationType
from wework.domain.batches import (
    BatchStatus,
    BatchTarget,
    BatchTask,
    Counters,
    TargetType,
    apply_counters,
    estimated_duration,
    eta_seconds,
    final_status,
    transition,
)
from wework.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
    must_exist,
)
from wework.domain.identity import validate_request_id
from wework.domain.messages import MessageType, render, validate_content
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.persistence.repositories.batches import MATERIALIZE_WRITERS
from wework.server.application.context import AppContext, require_id
from wework.server.application.media import media_references
from wework.server.application.message_ports import AccountGateway, ConversationFilter

log = logging.getLogger(__name__)
MESSAGE_DB = "message"
CREATE_OPERATION = "CreateBatchTask"
MAX_IMPORT_TARGETS = 1_000_000
WATCH_POLL_SECONDS = 0.5


class BatchRows(NamedTuple):
    """A batch's messages as materialization writes them: the columns all share, then one dict
    per recipient (id, created_at, conversation_id, and content when it differs)."""

    shared: dict[str, Any]
    rows: list[dict[str, Any]]


class BatchUseCases:
    def __init__(self, ctx: AppContext, accounts: AccountGateway, tenants: Any, *, quota: Any = None,
                 require_active_tenant: Callable[[str], Awaitable[int]] | None = None,
                 wake: Callable[[str], Awaitable[None]] | None = None,
                 materialize_writers: int = MATERIALIZE_WRITERS) -> None:
        self._ctx, self._accounts, self._tenants = ctx, accounts, tenants
        self.materialize_writers = materialize_writers
        # Set by the composition root from the message use cases (the shared daily quota and
        # the tenant check) and the dispatcher (wake-ups); each is optional.
        self.quota = quota
        self.require_active_tenant = require_active_tenant
        self.wake = wake
        self.media: Any = None  # MediaUseCases: a media_id must name media of the tenant

    # -- create / import ---------------------------------------------------------------------------

    async def create_batch_task(self, principal: Principal, task: BatchTask, request_id: str) -> BatchTask:
        tenant_id = principal.require_tenant()
        validate_request_id(request_id)
        task.validate()
        if request_id:
            async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
                done = await uow.messages.get_idempotent(tenant_id, CREATE_OPERATION, request_id)
                if done is not None:
                    found = await uow.batches.get(tenant_id, done)
                    if found is not None:
                        return found
        await self._check_tenant(tenant_id)
        await self._accounts.account_for_send(tenant_id, task.account_id)  # NotFound for another tenant's
        await self._check_content(principal, tenant_id, task)
        now = self._ctx.clock()
        task = replace(task, id=new_id(), tenant_id=tenant_id, creator_id=principal.subject_id or "",
                       status=BatchStatus.CREATED, created_at=now, updated_at=now, version=1,
                       total_count=len(task.manual_targets) if task.target_type is TargetType.MANUAL else 0)
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            if request_id:  # AlreadyExists when the same request_id commits concurrently
                await uow.messages.put_idempotent(tenant_id, CREATE_OPERATION, request_id,
                                                                    task.id, now)
            await uow.batches.add(task)
        return task

    async def _check_tenant(self, tenant_id: str) -> int:
        if self.require_active_tenant is not None:
            return await self.require_active_tenant(tenant_id)
        return 0

    async def _check_content(self, principal: Principal, tenant_id: str, task: BatchTask) -> None:
        if task.template_id:
            async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
                template = await uow.templates.get(tenant_id, task.template_id)
            if template is None or not template.visible_to(principal.subject_id):
                raise NotFound("template", task.template_id)
            task.message_type = template.template_type.value
            task.content = {}  # rendered from the template per recipient at Start
            return
        try:
            mtype = MessageType(task.message_type)
        except ValueError:
            raise InvalidArgument(FieldViolation("task.message_content", "content is required")) from None
        bad = validate_content(mtype, task.content, prefix="task.message_content")
        if bad:
            raise InvalidArgument(bad)
        if self.media is not None:  # one upload, every recipient: the reference is checked once
            await self.media.check_references(
                tenant_id, media_references(mtype.value, task.content, "task.message_content.media_id"))

    async def import_targets(self, principal: Principal,
                             chunks: AsyncIterator[tuple[str, list[BatchTarget]]]) -> tuple[int, int]:
        tenant_id = principal.require_tenant()
        task_id = ""
        imported = 0
        async for chunk_task_id, targets in chunks:
            if not task_id:
                task_id = require_id(chunk_task_id, "task_id")
                task = await self._load(tenant_id, task_id)
                if task.target_type is not TargetType.IMPORT:
                    raise FailedPrecondition("only an IMPORT task takes imported targets", [
                        PreconditionViolation("TARGET_TYPE", f"batchTasks/{task_id}", "not an import task")])
            for i, t in enumerate(targets):
                if not t.conversation_id or len(t.conversation_id) > 100:
                    raise InvalidArgument(FieldViolation(f"targets[{i}].conversation_id", "must be 1-100 characters"))
            async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
                repo = uow.batches
                task = must_exist(await repo.get(tenant_id, task_id, for_update=True),
                                  "batch task", task_id)  # the row lock serializes with Start
                if task.status is not BatchStatus.CREATED:
                    raise FailedPrecondition("targets can only be imported before the task starts", [
                        PreconditionViolation("STATUS", f"batchTasks/{task_id}", f"task is {task.status.value}")])
                if task.total_count + len(targets) > MAX_IMPORT_TARGETS:
                    raise InvalidArgument(FieldViolation("targets", f"at most {MAX_IMPORT_TARGETS} targets per task"))
                await repo.add_import_targets(task_id, targets)
                task.total_count += len(targets)
                task.updated_at = self._ctx.clock()
                await repo.save(task)
            imported += len(targets)
        if not task_id:
            raise InvalidArgument(FieldViolation("task_id", "task_id is required"))
        task = await self._load(tenant_id, task_id)
        return imported, task.total_count

    # -- start -----------------------------------------------------------------------------------------

    async def start_batch_task(self, principal: Principal, task_id: str) -> BatchTask:
        tenant_id = principal.require_tenant()
        require_id(task_id, "id")
        task = await self._load(tenant_id, task_id)
        transition(task.status, "start")
        limit = await self._check_tenant(tenant_id)
        targets = await self._resolve_targets(task)
        if not targets:
            raise FailedPrecondition("the task has no recipients", [
                PreconditionViolation("TARGETS", f"batchTasks/{task_id}", "no recipients")])
        batch = await self._render_rows(principal, task, targets)
        rows = batch.rows
        now = self._ctx.clock()
        day = now.date()
        # The whole batch at once: all of it fits in today's quota, or nothing is written.
        use_quota = self.quota is not None and self.require_active_tenant is not None
        if use_quota:
            await self.quota.acquire(tenant_id, limit, day, len(rows))
        try:
            async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
                repo = uow.batches
                locked = must_exist(await repo.get(tenant_id, task_id, for_update=True),
                                    "batch task", task_id)
                locked.status = transition(locked.status, "start")  # a concurrent Start lost
                # A large batch is written by several connections, prepared beside this
                # transaction and committed right after it (BatchRepository.materialize_task).
                uow.enlist(await repo.materialize_task(task_id, rows, shared=batch.shared,
                                                       writers=self.materialize_writers))
                locked.materialized_count = len(rows)
                if locked.template_id:  # usage as SendMessage counts it: one per message, with the messages
                    await uow.templates.record_use(tenant_id, locked.template_id, now, len(rows))
                if locked.target_type is TargetType.IMPORT:
                    await repo.drop_import_targets(task_id)
                locked.start_time = locked.updated_at = now
                apply_counters(locked, Counters(pending=len(rows)))
                locked.estimated_duration_seconds = estimated_duration(
                    Counters(pending=len(rows)), None, now, locked.send_strategy.rate_per_minute)
                await repo.save(locked)
                if self.wake is not None:
                    wake, shard = self.wake, uow.shard or ""
                    uow.after_commit(lambda: wake(shard))
        except BaseException:
            if use_quota:
                await self.quota.release(tenant_id, day, len(rows))
            raise
        return locked

    async def _resolve_targets(self, task: BatchTask) -> list[BatchTarget]:
        kind = task.target_type
        if kind is TargetType.MANUAL:
            return list(task.manual_targets)
        if kind is TargetType.IMPORT:
            out: list[BatchTarget] = []
            async with self._ctx.db.unit_of_work(MESSAGE_DB, task.tenant_id, read_only=True) as uow:
                async for t in uow.batches.import_targets(task.id):
                    out.append(t)
            return out
        if kind is TargetType.GROUP:
            f = ConversationFilter(conversation_type=ConversationType.GROUP)
        else:
            tf = task.target_filter
            f = ConversationFilter(
                conversation_type=ConversationType(tf.conversation_type) if tf and tf.conversation_type else None,
                tags=tuple(tf.tags) if tf else (), active_since=tf.active_since if tf else None)
        return [BatchTarget(c.conversation_id) async for c in
                self._accounts.conversations_for_targets(task.tenant_id, task.account_id, f)]

    async def _render_rows(self, principal: Principal, task: BatchTask,
                           targets: list[BatchTarget]) -> BatchRows:
        template = None
        if task.template_id:
            async with self._ctx.db.unit_of_work(MESSAGE_DB, task.tenant_id, read_only=True) as uow:
                template = await uow.templates.get(task.tenant_id, task.template_id)
            if template is None:
                raise NotFound("template", task.template_id)
        now = self._ctx.clock()
        shared: dict[str, Any] = {
            "updated_at": now, "tenant_id": task.tenant_id, "account_id": task.account_id,
            "message_type": MessageType(task.message_type).value, "template_id": task.template_id or None,
            "batch_id": task.id, "priority": task.send_strategy.priority or 5}
        per_recipient = template is not None and any(t.variables for t in targets)
        if template is None:
            shared["content"] = task.content
        elif not per_recipient:  # the same variables for everyone: one content, written once
            shared["content"] = render(template.template_type, template.template_content, template.variables,
                                       task.variables, prefix="targets[0].variables")
        rows: list[dict[str, Any]] = []
        rendered_once: dict[str, Any] | None = None
        for i, t in enumerate(targets):
            # Each its own microsecond: created_at orders listings (MessageRepository.list_page),
            # and a tie group as large as the batch would make a page edge read all of it.
            row = {"id": new_id(), "created_at": now + timedelta(microseconds=i), "conversation_id": t.conversation_id}
            if per_recipient:
                if t.variables or rendered_once is None:
                    content = render(template.template_type, template.template_content, template.variables,
                                     {**task.variables, **t.variables}, prefix=f"targets[{i}].variables")
                    if not t.variables:
                        rendered_once = content
                row["content"] = content if t.variables else rendered_once
            rows.append(row)
        return BatchRows(shared, rows)

    # -- pause / resume / cancel -------------------------------------------------------------------------

    async def pause_batch_task(self, principal: Principal, task_id: str) -> BatchTask:
        return await self._change(principal, task_id, "pause")

    async def resume_batch_task(self, principal: Principal, task_id: str) -> BatchTask:
        return await self._change(principal, task_id, "resume")

    async def cancel_batch_task(self, principal: Principal, task_id: str) -> BatchTask:
        return await self._change(principal, task_id, "cancel")

    async def _change(self, principal: Principal, task_id: str, action: str) -> BatchTask:
        tenant_id = principal.require_tenant()
        require_id(task_id, "id")
        now = self._ctx.clock()
        cancelled = 0
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            repo = uow.batches
            task = must_exist(await repo.get(tenant_id, task_id, for_update=True), "batch task", task_id)
            task.status = transition(task.status, action)
            # Pending messages change in the same transaction: the claim query skips paused
            # ones from the commit on; in-flight sends see the task status within 0.5 s.
            if action == "pause":
                await repo.set_paused(tenant_id, task_id, True)
            elif action == "resume":
                await repo.set_paused(tenant_id, task_id, False)
                if self.wake is not None:
                    wake, shard = self.wake, uow.shard or ""
                    uow.after_commit(lambda: wake(shard))
            else:
                cancelled = await repo.cancel_pending(tenant_id, task_id, now)
                task.end_time = now
                # The units were taken on the start day (UTC); only that day's counter can take
                # them back, as for a single message (messages.cancel_message).
                if (task.start_time is not None and self.quota is not None and cancelled
                        and task.start_time.date() == now.date()):
                    quota, n = self.quota, cancelled
                    uow.after_commit(lambda: quota.release(tenant_id, now.date(), n))
            if task.start_time is not None:
                apply_counters(task, await repo.counts(tenant_id, task_id))
            task.updated_at = now
            await repo.save(task)
        return task

    # -- read ------------------------------------------------------------------------------------------

    async def _load(self, tenant_id: str, task_id: str) -> BatchTask:
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            task = await uow.batches.get(tenant_id, task_id)
        return must_exist(task, "batch task", task_id)

    async def refresh(self, tenant_id: str, task_id: str) -> BatchTask:
        """The task with counters read from its messages; a running task whose messages are all
        final is finished here (completed, or failed with the reason)."""
        task = await self._load(tenant_id, task_id)
        if task.start_time is None:
            return task
        if task.status.terminal and task.status is not BatchStatus.CANCELLED:
            # Messages can still change after the end (RetryMessage of a failed one, a late
            # receipt): the stored counters are rewritten only when they no longer match.
            async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
                counters = await uow.batches.counts(tenant_id, task_id)
            probe = replace(task)
            apply_counters(probe, counters)
            if _counters_of(probe) == _counters_of(task):
                return task
        return await finish_if_done(self._ctx, tenant_id, task_id) or task

    async def get_batch_task(self, principal: Principal, task_id: str) -> BatchTask:
        tenant_id = principal.require_tenant()
        require_id(task_id, "id")
        return await self.refresh(tenant_id, task_id)

    async def list_batch_tasks(self, principal: Principal, page_size: int, page_token: str,
                               status: BatchStatus | None, account_id: str) -> tuple[list[BatchTask], str]:
        tenant_id = principal.require_tenant()
        size = normalize_page_size(page_size)
        after = None
        if page_token:
            body = self._ctx.page_tokens.decode(page_token, "batch_tasks", tenant_id, {"t": datetime, "id": str})
            after = (body["t"], body["id"])
        async with self._ctx.db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            page = await uow.batches.list_page(tenant_id, status, account_id, after, size + 1)
        more = len(page) > size
        page = page[:size]
        page = [await self.refresh(tenant_id, t.id) if t.status in (BatchStatus.RUNNING, BatchStatus.PAUSED)
                else t for t in page]
        token = self._ctx.page_tokens.encode({"t": page[-1].created_at, "id": page[-1].id}, "batch_tasks", tenant_id) if more else ""
        return page, token

    async def watch_batch_task(self, principal: Principal, task_id: str) -> AsyncIterator[tuple[BatchTask, int]]:
        tenant_id = principal.require_tenant()
        require_id(task_id, "id")
        last: tuple | None = None
        while True:
            task = await self.refresh(tenant_id, task_id)
            now = self._ctx.clock()
            c = Counters(pending=task.total_count - task.success_count - task.failed_count - task.cancelled_count,
                         sent=task.success_count, failed=task.failed_count, cancelled=task.cancelled_count)
            eta = 0 if task.status.terminal else eta_seconds(c, task.start_time, now,
                                                             task.send_strategy.rate_per_minute)
            key = (task.status, task.total_count, task.sent_count, task.success_count, task.failed_count,
                   task.cancelled_count)
            if key != last:
                last = key
                yield task, eta
            if task.status.terminal:
                return
            await asyncio.sleep(WATCH_POLL_SECONDS)


def _counters_of(task: BatchTask) -> tuple[int, int, int, int, int]:
    return task.total_count, task.sent_count, task.success_count, task.failed_count, task.cancelled_count


async def finish_if_done(ctx: AppContext, tenant_id: str, task_id: str) -> BatchTask | None:
    """Re-reads the counters from the messages under the task's row lock and ends the task when
    every message is final. Safe from any process (the dispatcher's sweep uses it too)."""
    async with ctx.db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
        repo = uow.batches
        task = await repo.get(tenant_id, task_id, for_update=True)
        if task is None or task.start_time is None:
            return task
        counters = await repo.counts(tenant_id, task_id)
        before = (task.status, task.total_count, task.sent_count, task.success_count, task.failed_count)
        apply_counters(task, counters)
        now = ctx.clock()
        done = final_status(task, counters)
        if done is not None:
            task.status, task.error_message = done
            task.end_time = now
        if task.status is not BatchStatus.CANCELLED or done is None:
            task.estimated_duration_seconds = estimated_duration(counters, task.start_time, now,
                                                                 task.send_strategy.rate_per_minute)
        if (task.status, task.total_count, task.sent_count, task.success_count, task.failed_count) != before:
            task.updated_at = now
            await repo.save(task)
        return task
