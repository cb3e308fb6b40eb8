"""In-memory repositories of the message database: messages (with their idempotency keys and
statistics), templates, batch tasks (with the import staging table) and media.

Each mirrors the SQL repository of the same name (wework.persistence.repositories.messages,
.batches, .media) for the methods the message and batch use cases call: the same domain
objects (always copies: a caller's change reaches the table only through a save), the same
domain errors (AlreadyExists for a taken request_id), the same order and paging. Rows live in
`uow.tables` so that a failed unit of work leaves nothing behind.

Tables (dicts unless said otherwise):
- "messages": id -> Message; "messages.paused": ids of paused messages (the `paused` column,
  which is not part of the domain object)
- "idempotency_keys": (tenant_id, operation, request_id) -> (resource_id, request_hash)
- "message_statistics": (tenant_id, account_id, stat_date, stat_hour) ->
  {"total": int, "success": int, "failed": int, "avg_response_time": float | None}
- "message_templates": id -> Template
- "batch_send_tasks": id -> BatchTask; "batch_import_targets": row id -> (task_id, BatchTarget)
- "media_objects": id -> Media
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from wework.domain.batches import BatchStatus, BatchTarget, BatchTask, Counters
from wework.domain.errors import AlreadyExists
from wework.domain.media import Media
from wework.domain.messages import (
    Message,
    MessageStatus,
    MessageType,
    StatisticsDelta,
    Template,
    terminal_statistics_delta,
)
from wework.persistence.repositories.messages import MessageFilter

from . import FakeUnitOfWork, repository

MS = MessageStatus


@repository("messages")
class InMemoryMessageRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, Message] = uow.tables["messages"]
        self._keys: dict[tuple[str, str, str], tuple[str, str | None]] = uow.tables["idempotency_keys"]
        self._stats: dict[tuple[Any, ...], dict[str, Any]] = uow.tables["message_statistics"]

    # -- messages --

    async def add(self, m: Message) -> None:
        self._insert([m])

    async def add_many(self, messages: list[Message]) -> None:
        self._insert(messages)

    def _insert(self, messages: Sequence[Message]) -> None:
        ids = [m.id for m in messages]
        if len(set(ids)) != len(ids) or any(i in self._rows for i in ids):
            # The SQL INSERT fails on the primary key (an IntegrityError, not a domain error).
            raise RuntimeError("duplicate message id")
        for m in messages:
            self._rows[m.id] = copy.deepcopy(m)

    async def get(self, tenant_id: str, message_id: str, *, for_update: bool = False) -> Message | None:
        found = self._rows.get(message_id)
        return copy.deepcopy(found) if found is not None and found.tenant_id == tenant_id else None

    async def get_many(self, tenant_id: str, message_ids: list[str]) -> dict[str, Message]:
        return {i: copy.deepcopy(m) for i in message_ids
                if (m := self._rows.get(i)) is not None and m.tenant_id == tenant_id}

    async def save_state(self, m: Message, *, expected_status: MessageStatus) -> bool:
        row = self._rows.get(m.id)
        if row is None or row.created_at != m.created_at or row.status != expected_status:
            return False
        # Only the state fields: content and routing never change here.
        self._rows[m.id] = replace(row, status=m.status, wework_msg_id=m.wework_msg_id, send_time=m.send_time,
                                   callback_time=m.callback_time, error_code=m.error_code,
                                   error_message=m.error_message, retry_count=m.retry_count, priority=m.priority,
                                   scheduled_time=m.scheduled_time, hold_reason=m.hold_reason,
                                   updated_at=m.updated_at)
        return True

    async def list_page(self, tenant_id: str, f: MessageFilter, after: tuple[Any, ...] | None,
                        limit: int) -> tuple[list[Message], tuple[Any, ...] | None]:
        """Newest first by (created_at, id); the cursor is the page's last key when more follow."""
        rows = [m for m in self._rows.values() if m.tenant_id == tenant_id
                and (not f.account_id or m.account_id == f.account_id)
                and (not f.conversation_id or m.conversation_id == f.conversation_id)
                and (f.status is None or m.status == f.status)
                and (not f.batch_id or m.batch_id == f.batch_id)
                and (f.start_time is None or m.created_at >= f.start_time)
                and (f.end_time is None or m.created_at < f.end_time)
                and (after is None or (m.created_at, m.id) < tuple(after))]
        rows.sort(key=lambda m: (m.created_at, m.id), reverse=True)
        if len(rows) <= limit:
            return [copy.deepcopy(m) for m in rows], None
        page = rows[:limit]
        return [copy.deepcopy(m) for m in page], (page[-1].created_at, page[-1].id)

    async def count_accepted(self, tenant_id: str, day: date) -> int:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return sum(1 for m in self._rows.values() if m.tenant_id == tenant_id
                   and start <= m.created_at < start + timedelta(days=1) and m.status != MS.CANCELLED)

    # -- statistics --

    async def record_terminal_status(self, message: Message, old_status: MessageStatus,
                                     now: datetime) -> StatisticsDelta | None:
        delta = terminal_statistics_delta(message, old_status, now=now)
        if delta is None:
            return None
        key = (delta.tenant_id, delta.account_id, delta.stat_date, delta.stat_hour)
        row = self._stats.setdefault(key, {"total": 0, "success": 0, "failed": 0, "avg_response_time": None})
        rt = delta.response_time_seconds
        if rt is not None:  # a running mean over the successes, as the SQL upsert keeps it
            row["avg_response_time"] = ((row["avg_response_time"] or 0) * row["success"] + rt) / (row["success"] + 1)
        row["total"] = max(row["total"] + delta.total, 0)
        row["success"] = max(row["success"] + delta.success, 0)
        row["failed"] = max(row["failed"] + delta.failed, 0)
        return delta

    # -- idempotency (AIP-155) --

    async def get_idempotent(self, tenant_id: str, operation: str, request_id: str) -> str | None:
        found = self._keys.get((tenant_id, operation, request_id))
        return None if found is None else found[0]

    async def get_idempotent_request(self, tenant_id: str, operation: str,
                                     request_id: str) -> tuple[str, str | None] | None:
        return self._keys.get((tenant_id, operation, request_id))

    async def get_idempotent_requests(self, tenant_id: str, operation: str,
                                      request_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        return {r: found for r in request_ids if (found := self._keys.get((tenant_id, operation, r))) is not None}

    async def put_idempotent_many(self, rows: list[tuple[str, str, str, str, str | None]], now: datetime) -> None:
        """All or none; AlreadyExists naming the first row's request_id if any key is taken
        (as the SQL repository reports a failed multi-row INSERT)."""
        keys = [(t, o, r) for t, o, r, _, _ in rows]
        if len(set(keys)) != len(keys) or any(k in self._keys for k in keys):
            raise AlreadyExists("request", "request_id", rows[0][2])
        for t, o, r, resource_id, request_hash in rows:
            self._keys[(t, o, r)] = (resource_id, request_hash)

    async def put_idempotent(self, tenant_id: str, operation: str, request_id: str, resource_id: str,
                             now: datetime) -> None:
        if (tenant_id, operation, request_id) in self._keys:
            raise AlreadyExists("request", "request_id", request_id)
        self._keys[(tenant_id, operation, request_id)] = (resource_id, None)


@repository("templates")
class InMemoryTemplateRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, Template] = uow.tables["message_templates"]

    async def add(self, t: Template) -> None:
        if any(r.tenant_id == t.tenant_id and r.template_name == t.template_name for r in self._rows.values()):
            raise AlreadyExists("template", "template_name", t.template_name)
        self._rows[t.id] = replace(copy.deepcopy(t), usage_count=0, last_used_time=None, version=1)

    async def get(self, tenant_id: str, template_id: str, *, for_update: bool = False) -> Template | None:
        found = self._rows.get(template_id)
        return copy.deepcopy(found) if found is not None and found.tenant_id == tenant_id else None

    async def record_use(self, tenant_id: str, template_id: str, now: datetime, count: int = 1) -> None:
        found = self._rows.get(template_id)
        if found is not None and found.tenant_id == tenant_id:
            found.usage_count += count
            found.last_used_time = now


# What BatchRepository.save writes; everything else of the row is fixed at add().
_SAVED_TASK_FIELDS = ("status", "total_count", "sent_count", "success_count", "failed_count", "progress_percent",
                      "start_time", "end_time", "estimated_duration_seconds", "error_message", "version",
                      "updated_at", "materialized_count")


@repository("batches")
class InMemoryBatchRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._tasks: dict[str, BatchTask] = uow.tables["batch_send_tasks"]
        self._targets: dict[int, tuple[str, BatchTarget]] = uow.tables["batch_import_targets"]
        self._messages: dict[str, Message] = uow.tables["messages"]
        self._paused: dict[str, bool] = uow.tables["messages.paused"]

    # -- tasks --

    async def add(self, t: BatchTask) -> None:
        # The INSERT leaves the other counters and the times at their column defaults;
        # cancelled_count is not a column (it is read from the messages).
        self._tasks[t.id] = replace(copy.deepcopy(t), sent_count=0, success_count=0, failed_count=0,
                                    cancelled_count=0, progress_percent=0.0, materialized_count=0, start_time=None,
                                    end_time=None, estimated_duration_seconds=0, error_message="")

    async def get(self, tenant_id: str, task_id: str, *, for_update: bool = False) -> BatchTask | None:
        found = self._tasks.get(task_id)
        return copy.deepcopy(found) if found is not None and found.tenant_id == tenant_id else None

    async def save(self, t: BatchTask) -> BatchTask:
        t.version += 1
        stored = self._tasks.get(t.id)
        if stored is not None and stored.tenant_id == t.tenant_id:
            for name in _SAVED_TASK_FIELDS:
                setattr(stored, name, copy.deepcopy(getattr(t, name)))
            stored.progress_percent = round(t.progress_percent, 2)
        return t

    async def list_page(self, tenant_id: str, status: BatchStatus | None, account_id: str,
                        after: tuple[datetime, str] | None, limit: int) -> list[BatchTask]:
        rows = [t for t in self._tasks.values() if t.tenant_id == tenant_id
                and (status is None or t.status is status) and (not account_id or t.account_id == account_id)
                and (after is None or (t.created_at, t.id) < tuple(after))]
        rows.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return [copy.deepcopy(t) for t in rows[:limit]]

    # -- counters --

    async def counts(self, tenant_id: str, task_id: str) -> Counters:
        by_status: dict[str, int] = {}
        failed_after_send = 0
        for m in self._messages.values():
            if m.tenant_id == tenant_id and m.batch_id == task_id:
                by_status[m.status.value] = by_status.get(m.status.value, 0) + 1
                if m.status == MS.FAILED and m.send_time is not None:
                    failed_after_send += 1
        return Counters.from_status_counts(by_status, failed_after_send)

    # -- pause, resume, cancel --

    def _pending_of(self, tenant_id: str, task_id: str) -> list[Message]:
        return [m for m in self._messages.values()
                if m.tenant_id == tenant_id and m.batch_id == task_id and m.status == MS.PENDING]

    async def set_paused(self, tenant_id: str, task_id: str, paused: bool) -> int:
        pending = self._pending_of(tenant_id, task_id)
        for m in pending:
            if paused:
                self._paused[m.id] = True
            else:
                self._paused.pop(m.id, None)
        return len(pending)

    async def cancel_pending(self, tenant_id: str, task_id: str, now: datetime) -> int:
        pending = self._pending_of(tenant_id, task_id)
        for m in pending:
            self._messages[m.id] = replace(m, status=MS.CANCELLED, updated_at=now, hold_reason=None)
        return len(pending)

    # -- import staging --

    async def add_import_targets(self, task_id: str, targets: Sequence[BatchTarget]) -> None:
        for t in targets:
            # An AUTO_INCREMENT id: import_targets reads them back in insertion order.
            self._targets[max(self._targets, default=0) + 1] = (task_id, BatchTarget(t.conversation_id,
                                                                                     dict(t.variables or {})))

    async def import_count(self, task_id: str) -> int:
        return sum(1 for owner, _ in self._targets.values() if owner == task_id)

    async def import_targets(self, task_id: str, chunk: int = 5000) -> AsyncIterator[BatchTarget]:
        for row_id in sorted(self._targets):
            owner, target = self._targets[row_id]
            if owner == task_id:
                yield copy.deepcopy(target)

    async def drop_import_targets(self, task_id: str) -> None:
        for row_id in [i for i, (owner, _) in self._targets.items() if owner == task_id]:
            del self._targets[row_id]

    # -- materialization --

    async def materialize_task(self, task_id: str, rows: Sequence[Mapping[str, Any]], *,
                               shared: Mapping[str, Any] | None = None, writers: int = 1,
                               chunk: int = 5000) -> None:
        """The messages of the batch in this transaction (no XA branches in memory)."""
        await self.materialize(rows, chunk, shared=shared)

    async def materialize(self, rows: Sequence[Mapping[str, Any]], chunk: int = 5000, *,
                          shared: Mapping[str, Any] | None = None) -> int:
        """New pending messages from `shared` columns plus each row's own."""
        for row in rows:
            v = {**(shared or {}), **row}
            if v["id"] in self._messages:
                raise RuntimeError("duplicate message id")
            self._messages[v["id"]] = Message(
                id=v["id"], tenant_id=v["tenant_id"], account_id=v["account_id"],
                conversation_id=v["conversation_id"], message_type=MessageType(v["message_type"]),
                content=copy.deepcopy(v["content"]), created_at=v["created_at"], updated_at=v["updated_at"],
                template_id=v.get("template_id"), batch_id=v.get("batch_id"), priority=v["priority"])
        return len(rows)


@repository("media")
class InMemoryMediaRepository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, Media] = uow.tables["media_objects"]

    async def add(self, m: Media) -> None:
        if m.id in self._rows:
            raise RuntimeError("duplicate media id")
        self._rows[m.id] = replace(m, last_used_at=m.last_used_at or m.created_at)

    async def get(self, tenant_id: str, media_id: str) -> Media | None:
        found = self._rows.get(media_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    async def get_many(self, tenant_id: str, media_ids: list[str]) -> dict[str, Media]:
        return {i: m for i in media_ids if (m := self._rows.get(i)) is not None and m.tenant_id == tenant_id}

    async def touch(self, tenant_id: str, media_ids: list[str], now: datetime) -> None:
        for i in media_ids:
            m = self._rows.get(i)
            if m is not None and m.tenant_id == tenant_id:
                self._rows[i] = replace(m, last_used_at=now)
