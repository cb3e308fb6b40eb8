"""Repositories of the message database: messages, templates, idempotency keys, statistics.

They speak wework.domain.messages entities and never protobuf. Dispatch claims and batch
materialization live in repositories/dispatch.py and repositories/batches.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from wework.domain.errors import AlreadyExists, EtagMismatch
from wework.domain.messages import (
    Message,
    MessageStatus,
    MessageType,
    StatisticsDelta,
    Template,
    VariableDef,
    VariableType,
    terminal_statistics_delta,
)
from wework.persistence.bulk import MultiRowInsert
from wework.persistence.errors import checked_flush
from wework.persistence.models import message as mm

# Columns a status change may write (never the content or the routing fields).
_STATE_FIELDS = ("status", "wework_msg_id", "send_time", "callback_time", "error_code", "error_message",
                 "retry_count", "priority", "scheduled_time", "hold_reason", "updated_at")


def message_from_row(r: mm.Message) -> Message:
    return Message(
        id=r.id, tenant_id=r.tenant_id, account_id=r.account_id, conversation_id=r.conversation_id,
        message_type=MessageType(r.message_type), content=dict(r.content or {}), created_at=r.created_at,
        updated_at=r.updated_at, status=MessageStatus(r.status), template_id=r.template_id,
        wework_msg_id=r.wework_msg_id, send_time=r.send_time, callback_time=r.callback_time,
        error_code=r.error_code, error_message=r.error_message, retry_count=r.retry_count,
        batch_id=r.batch_id, priority=r.priority, scheduled_time=r.scheduled_time, hold_reason=r.hold_reason)


def message_row_values(m: Message) -> dict[str, Any]:
    """Column values of a new row (also used by bulk inserts)."""
    return {"id": m.id, "created_at": m.created_at, "updated_at": m.updated_at, "tenant_id": m.tenant_id,
                "account_id": m.account_id, "conversation_id": m.conversation_id, "message_type": m.message_type.value,
                "content": m.content, "template_id": m.template_id, "status": m.status.value,
                "wework_msg_id": m.wework_msg_id, "send_time": m.send_time, "callback_time": m.callback_time,
                "error_code": m.error_code, "error_message": m.error_message, "retry_count": m.retry_count,
                "batch_id": m.batch_id, "priority": m.priority, "scheduled_time": m.scheduled_time, "hold_reason": m.hold_reason}


# ---- multi-row INSERTs at driver level (the group commit of SendMessage) ---------------------

_MESSAGE_INSERT_COLUMNS = ("id", "created_at", "updated_at", "tenant_id", "account_id", "conversation_id",
                           "message_type", "content", "template_id", "status", "wework_msg_id", "send_time",
                           "callback_time", "error_code", "error_message", "retry_count", "batch_id", "priority",
                           "scheduled_time", "hold_reason", "paused")
_MESSAGE_INSERT = MultiRowInsert(mm.Message.__table__, _MESSAGE_INSERT_COLUMNS)
# A message as SendMessage accepts it: its delivery fields (wework_msg_id, send and callback
# times, error, retry_count, hold_reason, paused) are at their column defaults, so the group
# commit leaves them out and neither side renders or parses nine columns per row.
_NEW_MESSAGE_INSERT = MultiRowInsert(mm.Message.__table__, (
    "id", "created_at", "updated_at", "tenant_id", "account_id", "conversation_id", "message_type", "content",
    "template_id", "status", "batch_id", "priority", "scheduled_time"))
_IDEMPOTENCY_INSERT = MultiRowInsert(mm.IdempotencyKey.__table__,
                                     ("tenant_id", "operation", "request_id", "resource_id", "created_at",
                                      "request_hash"))


def _message_insert_values(m: Message) -> tuple[Any, ...]:
    """message_row_values(m) in _MESSAGE_INSERT_COLUMNS order, with the column default of
    `paused` (False) that a Core insert would add."""
    return (m.id, m.created_at, m.updated_at, m.tenant_id, m.account_id, m.conversation_id, m.message_type.value,
            m.content, m.template_id, m.status.value, m.wework_msg_id, m.send_time, m.callback_time, m.error_code,
            m.error_message, m.retry_count, m.batch_id, m.priority, m.scheduled_time, m.hold_reason, False)


def _is_new(m: Message) -> bool:
    return (m.retry_count == 0 and m.wework_msg_id is None and m.send_time is None and m.callback_time is None
            and m.error_code is None and m.error_message is None and m.hold_reason is None)


def _new_message_values(m: Message) -> tuple[Any, ...]:
    # _value_, not .value: the enum property costs ~0.4 us on 3.11, twice per row of the group commit.
    return (m.id, m.created_at, m.updated_at, m.tenant_id, m.account_id, m.conversation_id, m.message_type._value_,
            m.content, m.template_id, m.status._value_, m.batch_id, m.priority, m.scheduled_time)


@dataclass(frozen=True)
class MessageFilter:
    account_id: str | None = None
    conversation_id: str | None = None
    status: MessageStatus | None = None
    batch_id: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


class MessageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, m: Message) -> None:
        await self._s.execute(sa.insert(mm.Message).values(**message_row_values(m)))

    async def add_many(self, messages: list[Message]) -> None:
        """One multi-row INSERT at driver level (the group commit of SendMessage)."""
        if not messages:
            return
        insert, values = ((_NEW_MESSAGE_INSERT, _new_message_values) if all(_is_new(m) for m in messages)
                          else (_MESSAGE_INSERT, _message_insert_values))
        await insert.execute(self._s, [values(m) for m in messages],
                             lambda: self._s.execute(sa.insert(mm.Message), [message_row_values(m) for m in messages]))

    async def get(self, tenant_id: str, message_id: str, *, for_update: bool = False) -> Message | None:
        # The tenant is part of every lookup: an id of another tenant is simply not there.
        stmt = sa.select(mm.Message).where(mm.Message.id == message_id, mm.Message.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else message_from_row(row)

    async def get_many(self, tenant_id: str, message_ids: list[str]) -> dict[str, Message]:
        """The tenant's messages among `message_ids` by id (one SELECT; missing ids are absent)."""
        if not message_ids:
            return {}
        stmt = sa.select(mm.Message).where(mm.Message.tenant_id == tenant_id, mm.Message.id.in_(message_ids))
        return {row.id: message_from_row(row) for row in (await self._s.execute(stmt)).scalars()}

    async def save_state(self, m: Message, *, expected_status: MessageStatus) -> bool:
        """Writes the state fields if the row still has `expected_status`; False if it moved on."""
        values = {f: getattr(m, f) for f in _STATE_FIELDS}
        values["status"] = m.status.value
        result = await self._s.execute(
            sa.update(mm.Message)
            .where(mm.Message.id == m.id, mm.Message.created_at == m.created_at,
                   mm.Message.status == expected_status.value)
            .values(**values))
        return result.rowcount == 1

    async def get_for_receipt(self, message_id: str) -> Message | None:
        """The message `message_id` of whichever tenant on this shard, locked (FOR UPDATE) until
        the transaction ends: a provider receipt names our message id, not its tenant."""
        stmt = sa.select(mm.Message).where(mm.Message.id == message_id).with_for_update()
        row = (await self._s.execute(stmt)).scalars().first()
        return None if row is None else message_from_row(row)

    async def save_receipt(self, m: Message, *, expected_status: MessageStatus, now: datetime) -> bool:
        """A receipt's change of `m`, if the row still has `expected_status` (False, nothing
        written, if it moved on): its state, its dispatch claim and hold released, and its
        message_statistics change (record_terminal_status), all in this transaction."""
        if not await self.save_state(m, expected_status=expected_status):
            return False
        await self._s.execute(
            sa.update(mm.Message).where(mm.Message.id == m.id, mm.Message.created_at == m.created_at)
            .values(claimed_by=None, claimed_until=None, hold_reason=None, held_since=None))
        await record_terminal_status(self._s, m, expected_status, now)
        return True

    async def list_page(self, tenant_id: str, f: MessageFilter, after: tuple[Any, ...] | None,
                        limit: int) -> tuple[list[Message], tuple[Any, ...] | None]:
        """Newest first: a keyset page that costs the same on page 1 and page 1000, at any size.

        The order is (created_at, id), both descending: keys that never change, so a message
        whose status changes between two pages is neither skipped nor shown twice. The query
        orders by created_at only: idx_tenant_time_status (tenant_id, created_at, status) gives
        that order, and MariaDB reads it backwards for `limit` entries and stops. With id in the
        ORDER BY it sorts every row of the tenant instead (on a partitioned table the optimizer
        does not use InnoDB's implicit primary-key suffix), and cost grows with the table. Rows
        that tie with the page's last created_at are then fetched as a group (one row, as every
        message gets its own microsecond) and the page is finished in id order here. The cursor
        is (created_at, id).
        """
        m = mm.Message
        # Keys first, rows after ("deferred join"): selecting only index columns lets MariaDB
        # range-scan idx_tenant_time_status from the cursor; with SELECT * it picks a ref scan
        # on tenant_id and reads every newer row before the cursor.
        stmt = sa.select(m.id, m.created_at).where(m.tenant_id == tenant_id)
        if f.account_id:
            stmt = stmt.where(m.account_id == f.account_id)
        if f.conversation_id:
            stmt = stmt.where(m.conversation_id == f.conversation_id)
        if f.status is not None:
            stmt = stmt.where(m.status == f.status.value)
        if f.batch_id:
            stmt = stmt.where(m.batch_id == f.batch_id)
        if f.start_time is not None:
            stmt = stmt.where(m.created_at >= f.start_time)
        if f.end_time is not None:
            stmt = stmt.where(m.created_at < f.end_time)
        # The index is chosen here, not left to the optimizer, whose pick follows the table's
        # statistics (tests/integration/test_message_index_plans.py). Without a conversation or
        # batch it is the tenant's time index, the one that stops after a page (with a status
        # filter MariaDB would prefer the claim index and sort). A conversation's index gives
        # the order too. A batch's index holds the keys of the batch's messages, which are
        # sorted (index-only, bounded by the batch); the time index would be read from the
        # newest message of the tenant back to the batch, unbounded for an old batch.
        index = ("idx_messages_conversation_time" if f.conversation_id
                 else "idx_messages_batch_counts" if f.batch_id else "idx_messages_tenant_time_status")
        for dialect in ("mysql", "mariadb"):
            stmt = stmt.with_hint(m, f"FORCE INDEX ({index})", dialect)
        if after is not None:
            t, last_id = after
            stmt = stmt.where(m.created_at <= t, sa.or_(m.created_at < t, sa.and_(m.created_at == t, m.id < last_id)))
        rows = list((await self._s.execute(stmt.order_by(m.created_at.desc()).limit(limit + 1))).all())
        if len(rows) > limit:
            edge = rows[-1]
            group = (await self._s.execute(stmt.where(m.created_at == edge.created_at))).all()
            rows = [r for r in rows if r.created_at != edge.created_at] + list(group)
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            cursor = (rows[-1].created_at, rows[-1].id)
        if not rows:
            return [], None
        fetch = sa.select(m).where(
            m.tenant_id == tenant_id, sa.tuple_(m.id, m.created_at).in_([(r.id, r.created_at) for r in rows]))
        for dialect in ("mysql", "mariadb"):  # by key; the tenant's index would read all its rows
            fetch = fetch.with_hint(m, "FORCE INDEX (PRIMARY)", dialect)
        full = (await self._s.execute(fetch)).scalars().all()
        by_id = {r.id: r for r in full}
        return [message_from_row(by_id[r.id]) for r in rows if r.id in by_id], cursor

    async def count_accepted(self, tenant_id: str, day: date) -> int:
        """Messages of the tenant created on the UTC day that count against the quota (all but
        cancelled ones): the truth the Redis counter is rebuilt from."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        stmt = (sa.select(sa.func.count()).select_from(mm.Message)
                .where(mm.Message.tenant_id == tenant_id, mm.Message.created_at >= start,
                       mm.Message.created_at < start + timedelta(days=1),
                       mm.Message.status != MessageStatus.CANCELLED.value))
        return int((await self._s.execute(stmt)).scalar_one())

    # -- statistics ------------------------------------------------------------------------------

    async def record_terminal_status(self, message: Message, old_status: MessageStatus,
                                     now: datetime) -> StatisticsDelta | None:
        """The message_statistics change of `message` leaving `old_status`, in this
        transaction (module function record_terminal_status): call it right after the
        save_state that made the change."""
        return await record_terminal_status(self._s, message, old_status, now)

    # -- idempotency (AIP-155) ----------------------------------------------------------------

    async def get_idempotent(self, tenant_id: str, operation: str, request_id: str) -> str | None:
        row = await self._s.get(mm.IdempotencyKey, (tenant_id, operation, request_id))
        return None if row is None else row.resource_id

    async def get_idempotent_request(self, tenant_id: str, operation: str,
                                     request_id: str) -> tuple[str, str | None] | None:
        """(resource_id, request_hash) of a request_id used before, None if it was not."""
        row = await self._s.get(mm.IdempotencyKey, (tenant_id, operation, request_id))
        return None if row is None else (row.resource_id, row.request_hash)

    async def get_idempotent_requests(self, tenant_id: str, operation: str,
                                      request_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """request_id -> (resource_id, request_hash) of those of `request_ids` used before (one SELECT)."""
        if not request_ids:
            return {}
        k = mm.IdempotencyKey
        stmt = sa.select(k.request_id, k.resource_id, k.request_hash).where(
            k.tenant_id == tenant_id, k.operation == operation, k.request_id.in_(request_ids))
        return {r: (rid, h) for r, rid, h in (await self._s.execute(stmt)).all()}

    async def put_idempotent_many(self, rows: list[tuple[str, str, str, str, str | None]], now: datetime) -> None:
        """(tenant, operation, request_id, resource_id, request_hash) rows in one INSERT;
        AlreadyExists if any key is taken (the caller then retries the rows one by one to find
        which)."""
        if not rows:
            return
        try:
            await _IDEMPOTENCY_INSERT.execute(
                self._s, [(t, o, r, rid, now, h) for t, o, r, rid, h in rows],
                lambda: self._s.execute(sa.insert(mm.IdempotencyKey), [
                    {"tenant_id": t, "operation": o, "request_id": r, "resource_id": rid, "created_at": now,
                     "request_hash": h}
                    for t, o, r, rid, h in rows]))
        except sa.exc.IntegrityError as exc:
            raise AlreadyExists("request", "request_id", rows[0][2]) from exc

    async def put_idempotent(self, tenant_id: str, operation: str, request_id: str, resource_id: str,
                             now: datetime) -> None:
        """Raises AlreadyExists("request", ...) when a concurrent call holds the same key."""
        self._s.add(mm.IdempotencyKey(tenant_id=tenant_id, operation=operation, request_id=request_id,
                                      resource_id=resource_id, created_at=now))
        try:
            await self._s.flush()
        except sa.exc.IntegrityError as exc:
            raise AlreadyExists("request", "request_id", request_id) from exc


# ---- statistics ----------------------------------------------------------------------------


async def upsert_statistics(session: AsyncSession, delta: StatisticsDelta, now: datetime) -> None:
    """Adds `delta` to its (tenant, account, date, hour) row in the caller's transaction."""
    t = mm.MessageStatistic.__table__
    rt = delta.response_time_seconds
    values = {"tenant_id": delta.tenant_id, "account_id": delta.account_id, "stat_date": delta.stat_date,
                  "stat_hour": delta.stat_hour, "total_count": max(delta.total, 0), "success_count": max(delta.success, 0),
                  "failed_count": max(delta.failed, 0), "avg_response_time": rt, "created_at": now, "updated_at": now}
    dialect = session.bind.dialect.name
    greatest = sa.func.max if dialect == "sqlite" else sa.func.greatest
    # Running mean over the successes; counts never go below zero.
    if rt is None:
        new_avg: Any = t.c.avg_response_time
    else:
        new_avg = (sa.func.coalesce(t.c.avg_response_time, 0) * t.c.success_count + rt) / (t.c.success_count + 1)
    updates = {
        "avg_response_time": new_avg,  # before success_count changes (MySQL evaluates left to right)
        "total_count": greatest(t.c.total_count + delta.total, 0),
        "success_count": greatest(t.c.success_count + delta.success, 0),
        "failed_count": greatest(t.c.failed_count + delta.failed, 0),
        "updated_at": now}
    if dialect == "sqlite":
        stmt = sqlite_insert(t).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "account_id", "stat_date", "stat_hour"], set_=updates)
    else:
        stmt = mysql_insert(t).values(**values)
        # A list keeps the order: MySQL assigns left to right and each later expression sees the
        # new values, so the mean must be computed before success_count changes.
        stmt = stmt.on_duplicate_key_update(list(updates.items()))
    await session.execute(stmt)


async def record_terminal_status(session: AsyncSession, message: Message, old_status: MessageStatus,
                                 now: datetime) -> StatisticsDelta | None:
    """The message_statistics change of `message` (in its new status) leaving `old_status`,
    written in the caller's transaction: the design's trigger without a trigger. Call it in the
    same transaction as the status UPDATE, after that UPDATE matched the row."""
    delta = terminal_statistics_delta(message, old_status, now=now)
    if delta is not None:
        await upsert_statistics(session, delta, now)
    return delta


async def statistics_for(session: AsyncSession, tenant_id: str, account_id: str,
                         day: date) -> list[dict[str, Any]]:
    t = mm.MessageStatistic
    rows = (await session.execute(sa.select(t).where(t.tenant_id == tenant_id, t.account_id == account_id,
                                                     t.stat_date == day))).scalars().all()
    return [{"stat_hour": r.stat_hour, "total": r.total_count, "success": r.success_count, "failed": r.failed_count,
                 "avg_response_time": r.avg_response_time} for r in rows]


# ---- templates -----------------------------------------------------------------------------


def _vars_to_json(variables: list[VariableDef]) -> list[dict[str, Any]]:
    return [{"name": v.name, "type": v.type.value, "required": v.required, "default_value": v.default_value,
                 "description": v.description} for v in variables]


def _vars_from_json(raw: Any) -> list[VariableDef]:
    out = []
    for v in raw or []:
        out.append(VariableDef(name=v["name"], type=VariableType(v.get("type", "string")),
                               required=bool(v.get("required")), default_value=v.get("default_value", ""),
                               description=v.get("description", "")))
    return out


def template_from_row(r: mm.MessageTemplate) -> Template:
    return Template(
        id=r.id, tenant_id=r.tenant_id, creator_id=r.creator_id, template_name=r.template_name,
        template_type=MessageType(r.template_type), template_content=dict(r.template_content or {}),
        created_at=r.created_at, updated_at=r.updated_at, version=r.version, category=r.category,
        description=r.description, variables=_vars_from_json(r.variables), preview_data=r.preview_data,
        usage_count=r.usage_count, last_used_time=r.last_used_time, is_public=r.is_public, is_active=r.is_active,
        tags=list(r.tags or []))


_TEMPLATE_DUPLICATES = "uk_message_templates_tenant_template_name"


class TemplateRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def _flush(self, t: Template) -> None:
        await checked_flush(self._s, f"templates/{t.id}",
                            {_TEMPLATE_DUPLICATES: ("template", "template_name", t.template_name)}, mm.metadata)

    async def add(self, t: Template) -> None:
        self._s.add(mm.MessageTemplate(
            id=t.id, tenant_id=t.tenant_id, creator_id=t.creator_id, template_name=t.template_name,
            template_type=t.template_type.value, category=t.category, description=t.description,
            template_content=t.template_content, variables=_vars_to_json(t.variables),
            preview_data=t.preview_data, usage_count=0, is_public=t.is_public, is_active=t.is_active,
            tags=list(t.tags), created_at=t.created_at, updated_at=t.updated_at, version=1))
        await self._flush(t)

    async def get_row(self, tenant_id: str, template_id: str, *, for_update: bool = False) -> mm.MessageTemplate | None:
        stmt = sa.select(mm.MessageTemplate).where(mm.MessageTemplate.id == template_id,
                                                   mm.MessageTemplate.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self._s.execute(stmt)).scalar_one_or_none()

    async def get(self, tenant_id: str, template_id: str, *, for_update: bool = False) -> Template | None:
        row = await self.get_row(tenant_id, template_id, for_update=for_update)
        return None if row is None else template_from_row(row)

    async def save(self, t: Template) -> Template:
        """Writes the mutable fields with optimistic locking (EtagMismatch on a lost race)."""
        row = await self.get_row(t.tenant_id, t.id)
        if row is None:
            raise EtagMismatch(f"templates/{t.id}")
        row.template_name = t.template_name
        row.category = t.category
        row.description = t.description
        row.template_content = t.template_content
        row.variables = _vars_to_json(t.variables)
        row.preview_data = t.preview_data
        row.is_public = t.is_public
        row.is_active = t.is_active
        row.tags = list(t.tags)
        row.updated_at = t.updated_at
        await self._flush(t)
        return template_from_row(row)

    async def delete(self, tenant_id: str, template_id: str) -> None:
        await self._s.execute(sa.delete(mm.MessageTemplate).where(mm.MessageTemplate.id == template_id,
                                                                  mm.MessageTemplate.tenant_id == tenant_id))

    async def record_use(self, tenant_id: str, template_id: str, now: datetime, count: int = 1) -> None:
        """usage_count += count, last_used_time = now, as one UPDATE (no version bump: usage is
        bookkeeping, not an edit, and must not make a caller's etag stale)."""
        t = mm.MessageTemplate.__table__
        await self._s.execute(
            sa.update(t).where(t.c.id == template_id, t.c.tenant_id == tenant_id)
            .values(usage_count=t.c.usage_count + count, last_used_time=now))

    async def list_page(self, tenant_id: str, subject_id: str | None, *, category: str | None, tag: str | None,
                        template_type: MessageType | None, is_active: bool | None,
                        after: str | None, limit: int) -> list[Template]:
        """The templates the subject may see (public ones and its own), by id (UUIDv7: creation
        order). Returns up to `limit` rows; the tag filter runs here because tags are JSON."""
        m = mm.MessageTemplate
        stmt = sa.select(m).where(m.tenant_id == tenant_id)
        stmt = stmt.where(sa.or_(m.is_public.is_(True), m.creator_id == (subject_id or "")))
        if category:
            stmt = stmt.where(m.category == category)
        if template_type is not None:
            stmt = stmt.where(m.template_type == template_type.value)
        if is_active is not None:
            stmt = stmt.where(m.is_active.is_(is_active))
        out: list[Template] = []
        cursor = after
        # Page through until enough rows pass the tag filter (one round trip without a tag).
        while len(out) < limit:
            q = stmt.where(m.id > cursor) if cursor else stmt
            rows = (await self._s.execute(q.order_by(m.id).limit(limit * 2 if tag else limit))).scalars().all()
            if not rows:
                break
            for r in rows:
                cursor = r.id
                if tag and tag not in (r.tags or []):
                    continue
                out.append(template_from_row(r))
                if len(out) >= limit:
                    break
            if len(rows) < (limit * 2 if tag else limit):
                break
        return out
