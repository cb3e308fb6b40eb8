"""In-memory repositories of the callback area: the callback inbox (uow.callbacks), tenant
webhooks (uow.webhook_endpoints, uow.webhook_deliveries) and the report queries (uow.reports).
The applied-callbacks ledger (uow.effects) of the account and message databases is
fakes/effects.py.

Each mirrors its SQL repository in wework.persistence.repositories (callbacks.py, webhooks.py,
reports.py): the same answers (domain objects, StoredCallback, HourCounts), the same errors
(EtagMismatch on a stale endpoint), the same order and paging. Rows live in `uow.tables` under
the SQL table names, so a failed unit of work forgets them.

uow.reports only reads; it reads what the other areas' in-memory repositories keep, under the
SQL table names and as domain objects by id:
- message database: "messages" (Message), "batch_send_tasks" (BatchTask), "message_templates"
  (Template), and "message_statistics": (tenant_id, account_id, stat_date, stat_hour) ->
  {"total", "success", "failed", "avg_response_time"} (the hourly rows; stat_hour never None).
- account database: "wework_accounts" (Account), "account_status_history" (StatusChange).
A test may put rows there directly (`db.tables("message", shard)["message_statistics"][...]`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from wework.domain.errors import EtagMismatch
from wework.domain.webhooks import (
    DeliveryStatus,
    EndpointStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from wework.persistence.ids import new_id
from wework.persistence.repositories.callbacks import CallbackFilter, StoredCallback
from wework.persistence.repositories.reports import SUCCESS_STATUSES, HourCounts
from wework.persistence.repositories.webhooks import _span  # the disabled_reason's wording, as in SQL

from harness.fakes import FakeUnitOfWork, repository

# ---- callback_events ----------------------------------------------------------------------------

_STORED_FIELDS = tuple(StoredCallback.__dataclass_fields__)


def _stored(row: dict[str, Any]) -> StoredCallback:
    return StoredCallback(**{f: copy.deepcopy(row[f]) for f in _STORED_FIELDS})


def _matches(row: dict[str, Any], f: CallbackFilter) -> bool:
    return ((f.tenant_id is None or row["tenant_id"] == f.tenant_id)
            and (not f.guid or row["guid"] == f.guid)
            and (row["notify_type"] == f.notify_type if f.notify_type
                 else row["notify_type"] not in f.exclude_notify_types)
            and (not f.event_type or row["event_type"] == f.event_type)
            and (not f.status or row["status"] == f.status)
            and (f.received_after is None or row["received_time"] >= f.received_after)
            and (f.received_before is None or row["received_time"] < f.received_before))


@repository("callbacks")
class InMemoryCallbackRepository:
    """callback_events (id -> row dict: StoredCallback's fields + claimed_by, claimed_until,
    next_attempt_time) and callback_dedupe (dedupe key -> callback id)."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, dict[str, Any]] = uow.tables["callback_events"]
        self._dedupe: dict[str, tuple[str, datetime]] = uow.tables["callback_dedupe"]

    async def store_many(self, items: Sequence[dict[str, Any]], now: datetime) -> list[tuple[str, bool]]:
        out = []
        for it in items:
            key = it["dedupe_key"]
            if key in self._dedupe:
                out.append((self._dedupe[key][0], True))
                continue
            callback_id = new_id()
            self._dedupe[key] = (callback_id, now)
            self._rows[callback_id] = {
                "id": callback_id, "received_time": now, "tenant_id": it["tenant_id"], "guid": it["guid"],
                "notify_type": it["notify_type"], "event_type": it["event_type"], "raw_data": it["raw_data"],
                "parsed_data": None, "status": "received", "error_message": None, "retry_count": 0,
                "process_time": None, "source_ip": it["source_ip"], "user_agent": it["user_agent"],
                "dedupe_key": key, "sealed_secrets": it.get("sealed_secrets"),
                "claimed_by": None, "claimed_until": None, "next_attempt_time": None}
            out.append((callback_id, False))
        return out

    def _due(self, row: dict[str, Any], now: datetime) -> bool:
        return row["status"] == "received" and (row["next_attempt_time"] is None or row["next_attempt_time"] <= now)

    async def claim(self, worker_id: str, now: datetime, limit: int, lease: timedelta) -> list[StoredCallback]:
        rows = sorted((r for r in self._rows.values() if self._due(r, now)),
                      key=lambda r: (r["received_time"], r["id"]))[:limit]
        for r in rows:
            r.update(status="processing", claimed_by=worker_id, claimed_until=now + lease)
        return [_stored(r) for r in rows]

    def _mine(self, c: StoredCallback, worker_id: str) -> dict[str, Any] | None:
        row = self._rows.get(c.id)
        if row is None or row["status"] != "processing" or row["claimed_by"] != worker_id:
            return None
        return row

    async def finish(self, c: StoredCallback, worker_id: str, *, status: str, now: datetime,
                     error_message: str | None = None, parsed_data: dict[str, Any] | None = None,
                     tenant_id: str | None = None, count_attempt: bool = False) -> bool:
        row = self._mine(c, worker_id)
        if row is None:
            return False
        row.update(status=status, process_time=now, error_message=error_message, claimed_by=None,
                   claimed_until=None, next_attempt_time=None)
        if count_attempt:
            row["retry_count"] += 1
        if parsed_data is not None:
            row["parsed_data"] = copy.deepcopy(parsed_data)
        if tenant_id is not None and row["tenant_id"] is None:
            row["tenant_id"] = tenant_id
        return True

    async def retry_later(self, c: StoredCallback, worker_id: str, *, at: datetime, error_message: str) -> bool:
        row = self._mine(c, worker_id)
        if row is None:
            return False
        row.update(status="received", retry_count=row["retry_count"] + 1, next_attempt_time=at,
                   error_message=error_message[:2000], claimed_by=None, claimed_until=None)
        return True

    async def requeue_expired(self, now: datetime) -> int:
        expired = [r for r in self._rows.values() if r["status"] == "processing" and r["claimed_until"] < now]
        for r in expired:
            r.update(status="received", claimed_by=None, claimed_until=None)
        return len(expired)

    async def due_count(self, now: datetime) -> int:
        return sum(1 for r in self._rows.values() if self._due(r, now))

    async def list_page(self, f: CallbackFilter, after: tuple[datetime, str] | None,
                        limit: int) -> list[StoredCallback]:
        rows = sorted((r for r in self._rows.values() if _matches(r, f)
                       and (after is None or (r["received_time"], r["id"]) < after)),
                      key=lambda r: (r["received_time"], r["id"]), reverse=True)
        return [_stored(r) for r in rows[:limit]]

    async def get(self, callback_id: str, tenant_id: str | None) -> StoredCallback | None:
        row = self._rows.get(callback_id)
        if row is None or (tenant_id is not None and row["tenant_id"] != tenant_id):
            return None
        return _stored(row)

    async def select_keys(self, f: CallbackFilter, ids: Sequence[str] | None, limit: int,
                          not_before: datetime) -> list[tuple[str, datetime]]:
        rows = sorted((r for r in self._rows.values() if _matches(r, f) and r["status"] != "processing"
                       and r["received_time"] >= not_before and (ids is None or r["id"] in ids)),
                      key=lambda r: (r["received_time"], r["id"]))
        return [(r["id"], r["received_time"]) for r in rows[:limit]]

    async def requeue(self, keys: Sequence[tuple[str, datetime]], now: datetime) -> int:
        n = 0
        for callback_id, _ in keys:
            row = self._rows.get(callback_id)
            if row is not None and row["status"] != "processing":
                row.update(status="received", next_attempt_time=None, retry_count=0, claimed_by=None,
                           claimed_until=None)
                n += 1
        return n


# ---- webhooks -----------------------------------------------------------------------------------


@repository("webhook_endpoints")
class InMemoryWebhookEndpoints:
    """webhook_endpoints: id -> (WebhookEndpoint with its secrets as stored, request_id)."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, tuple[WebhookEndpoint, str | None]] = uow.tables["webhook_endpoints"]
        self._deliveries: dict[str, dict[str, Any]] = uow.tables["webhook_deliveries"]

    async def add(self, ep: WebhookEndpoint, request_id: str | None) -> None:
        self._rows[ep.id] = (replace(copy.deepcopy(ep), version=1), request_id or None)

    async def get(self, tenant_id: str, endpoint_id: str, *, for_update: bool = False) -> WebhookEndpoint | None:
        row = self._rows.get(endpoint_id)
        if row is None or row[0].tenant_id != tenant_id:
            return None
        return copy.deepcopy(row[0])

    async def get_by_request(self, tenant_id: str, request_id: str) -> WebhookEndpoint | None:
        for ep, rid in self._rows.values():
            if ep.tenant_id == tenant_id and rid == request_id:
                return copy.deepcopy(ep)
        return None

    async def count(self, tenant_id: str) -> int:
        return sum(1 for ep, _ in self._rows.values() if ep.tenant_id == tenant_id)

    async def list_page(self, tenant_id: str, after: str | None, limit: int) -> list[WebhookEndpoint]:
        rows = sorted((ep for ep, _ in self._rows.values() if ep.tenant_id == tenant_id and (not after or ep.id > after)),
                      key=lambda ep: ep.id)
        return [copy.deepcopy(ep) for ep in rows[:limit]]

    async def enabled_for_tenant(self, tenant_id: str) -> list[WebhookEndpoint]:
        rows = sorted((ep for ep, _ in self._rows.values()
                       if ep.tenant_id == tenant_id and ep.status is EndpointStatus.ENABLED), key=lambda ep: ep.id)
        return [copy.deepcopy(ep) for ep in rows]

    async def save(self, ep: WebhookEndpoint) -> WebhookEndpoint:
        row = self._rows.get(ep.id)
        if row is None or row[0].tenant_id != ep.tenant_id or row[0].version != ep.version:
            raise EtagMismatch(f"webhookEndpoints/{ep.id}")
        stored = replace(copy.deepcopy(ep), created_at=row[0].created_at, version=ep.version + 1)
        self._rows[ep.id] = (stored, row[1])
        return copy.deepcopy(stored)

    async def delete(self, tenant_id: str, endpoint_id: str) -> bool:
        row = self._rows.get(endpoint_id)
        gone = row is not None and row[0].tenant_id == tenant_id
        if gone:
            del self._rows[endpoint_id]
        for delivery_id in [i for i, d in self._deliveries.items()
                            if d["endpoint_id"] == endpoint_id and d["status"] == DeliveryStatus.PENDING.value]:
            del self._deliveries[delivery_id]
        return gone

    def _set(self, endpoint_id: str, **changes: Any) -> None:
        ep, rid = self._rows[endpoint_id]
        self._rows[endpoint_id] = (replace(ep, **changes), rid)

    async def record_success(self, endpoint_id: str, now: datetime) -> None:
        if endpoint_id in self._rows and self._rows[endpoint_id][0].failing_since is not None:
            self._set(endpoint_id, failing_since=None)

    async def record_failure(self, endpoint_id: str, now: datetime, disable_after: timedelta) -> bool:
        if endpoint_id not in self._rows:
            return False
        if self._rows[endpoint_id][0].failing_since is None:
            self._set(endpoint_id, failing_since=now)
        ep = self._rows[endpoint_id][0]
        if ep.status is not EndpointStatus.ENABLED or ep.failing_since > now - disable_after:  # type: ignore[operator]
            return False
        self._set(endpoint_id, status=EndpointStatus.DISABLED_FAILING, disabled_time=now, updated_at=now,
                  version=ep.version + 1,
                  disabled_reason=(f"every delivery attempt failed for {_span(disable_after)}; fix the endpoint "
                                   "and set enabled to re-enable it"))
        return True


def _delivery(row: dict[str, Any], attempts: list[WebhookAttempt]) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"], tenant_id=row["tenant_id"], endpoint_id=row["endpoint_id"], event_id=row["event_id"],
        event_type=row["event_type"], payload=json.loads(row["payload"]), status=DeliveryStatus(row["status"]),
        attempt_count=row["attempt_count"], next_attempt_time=row["next_attempt_at"], created_at=row["created_at"],
        body=row["payload"], attempts=copy.deepcopy(attempts))


@repository("webhook_deliveries")
class InMemoryWebhookDeliveries:
    """webhook_deliveries (id -> the row's columns as a dict, with claimed_by/claimed_until) and
    webhook_attempts (delivery id -> its WebhookAttempts in order)."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, dict[str, Any]] = uow.tables["webhook_deliveries"]
        self._attempts: dict[str, list[WebhookAttempt]] = uow.tables["webhook_attempts"]

    async def enqueue(self, rows: Sequence[dict]) -> int:
        existing = {(d["endpoint_id"], d["event_id"]) for d in self._rows.values()}
        added = 0
        for r in rows:
            if (r["endpoint_id"], r["event_id"]) in existing:
                continue
            existing.add((r["endpoint_id"], r["event_id"]))
            self._rows[r["id"]] = {**copy.deepcopy(r), "claimed_by": None, "claimed_until": None}
            added += 1
        return added

    async def claim(self, worker_id: str, now: datetime, limit: int, lease: timedelta) -> list[WebhookDelivery]:
        due = sorted((d for d in self._rows.values()
                      if d["status"] == DeliveryStatus.PENDING.value and d["next_attempt_at"] <= now
                      and (d["claimed_until"] is None or d["claimed_until"] < now)),
                     key=lambda d: d["next_attempt_at"])[:limit]
        for d in due:
            d.update(claimed_by=worker_id, claimed_until=now + lease)
        return [_delivery(d, []) for d in due]

    async def finish(self, d: WebhookDelivery, worker_id: str, *, status: DeliveryStatus, attempt_count: int,
                     next_attempt_at: datetime | None, now: datetime) -> bool:
        row = self._rows.get(d.id)
        if row is None or row["claimed_by"] != worker_id or row["status"] != DeliveryStatus.PENDING.value:
            return False
        row.update(status=status.value, attempt_count=attempt_count, next_attempt_at=next_attempt_at,
                   claimed_by=None, claimed_until=None, updated_at=now)
        return True

    async def add_attempt(self, delivery_id: str, a: WebhookAttempt) -> None:
        self._attempts.setdefault(delivery_id, []).append(replace(a, error=(a.error or "")[:500]))

    async def get(self, tenant_id: str, delivery_id: str, *, for_update: bool = False) -> WebhookDelivery | None:
        row = self._rows.get(delivery_id)
        if row is None or row["tenant_id"] != tenant_id:
            return None
        return _delivery(row, self._attempts.get(delivery_id, []))

    async def list_page(self, tenant_id: str, endpoint_id: str, status: DeliveryStatus | None,
                        before: str | None, limit: int) -> list[WebhookDelivery]:
        rows = sorted((d for d in self._rows.values()
                       if d["tenant_id"] == tenant_id and d["endpoint_id"] == endpoint_id
                       and (status is None or d["status"] == status.value) and (not before or d["id"] < before)),
                      key=lambda d: d["id"], reverse=True)
        return [_delivery(d, self._attempts.get(d["id"], [])) for d in rows[:limit]]

    async def redeliver(self, tenant_id: str, delivery_id: str, now: datetime) -> bool:
        row = self._rows.get(delivery_id)
        if row is None or row["tenant_id"] != tenant_id:
            return False
        row.update(status=DeliveryStatus.PENDING.value, next_attempt_at=now, claimed_by=None, claimed_until=None,
                   updated_at=now)
        return True

    async def fail_pending_of(self, endpoint_id: str, now: datetime) -> int:
        rows = [d for d in self._rows.values() if d["endpoint_id"] == endpoint_id
                and d["status"] == DeliveryStatus.PENDING.value and d["claimed_by"] is None]
        for d in rows:
            d.update(status=DeliveryStatus.FAILED.value, next_attempt_at=None, updated_at=now)
        return len(rows)

    async def due_count(self, now: datetime) -> int:
        return sum(1 for d in self._rows.values()
                   if d["status"] == DeliveryStatus.PENDING.value and d["next_attempt_at"] <= now)


# ---- reports ------------------------------------------------------------------------------------


def _hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    def floor(t: datetime) -> datetime:
        return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    # Whole UTC hours [start, end), as the SQL window (its end is the hour before `end`, inclusive).
    return floor(start), floor(end - timedelta(hours=1))


def _sum(rows: list[dict[str, Any]]) -> HourCounts:
    with_mean = [r for r in rows if r.get("avg_response_time") is not None]
    return HourCounts(sum(r["total"] for r in rows), sum(r["success"] for r in rows), sum(r["failed"] for r in rows),
                      float(sum(r["avg_response_time"] * r["success"] for r in with_mean)),
                      sum(r["success"] for r in with_mean))


@repository("reports")
class InMemoryReports:
    """The report queries (read only) over the tables the other areas' repositories keep."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._t = uow.tables

    # -- message database --

    def _statistics(self, tenant_id: str, start: datetime, end: datetime) -> dict[tuple[str, datetime], dict[str, Any]]:
        first, last = _hours(start, end)
        out = {}
        for (tenant, account, day, hour), row in self._t["message_statistics"].items():
            at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
            if tenant == tenant_id and first <= at <= last:
                out[(account, at)] = row
        return out

    async def hourly_counts(self, tenant_id: str, start: datetime, end: datetime,
                            account_id: str | None = None) -> dict[datetime, HourCounts]:
        by_hour: dict[datetime, list[dict[str, Any]]] = {}
        for (account, at), row in self._statistics(tenant_id, start, end).items():
            if not account_id or account == account_id:
                by_hour.setdefault(at, []).append(row)
        return {at: _sum(rows) for at, rows in by_hour.items()}

    async def counts_per_account(self, tenant_id: str, start: datetime, end: datetime) -> dict[str, HourCounts]:
        by_account: dict[str, list[dict[str, Any]]] = {}
        for (account, _), row in self._statistics(tenant_id, start, end).items():
            by_account.setdefault(account, []).append(row)
        return {a: _sum(rows) for a, rows in by_account.items()}

    async def batch_task(self, tenant_id: str, task_id: str) -> Any:
        task = self._t["batch_send_tasks"].get(task_id)
        return copy.deepcopy(task) if task is not None and task.tenant_id == tenant_id else None

    def _messages(self, tenant_id: str) -> list[Any]:
        return [m for m in self._t["messages"].values() if m.tenant_id == tenant_id]

    async def batch_status_counts(self, tenant_id: str, task_id: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self._messages(tenant_id):
            if m.batch_id == task_id:
                out[str(m.status)] = out.get(str(m.status), 0) + 1
        return out

    async def batch_failure_reasons(self, tenant_id: str, task_id: str) -> list[tuple[str, int, str]]:
        by_code: dict[str, list[str]] = {}
        for m in self._messages(tenant_id):
            if m.batch_id == task_id and str(m.status) == "failed":
                by_code.setdefault(m.error_code or "", []).append(m.error_message or "")
        rows = [(code, len(texts), max(texts)) for code, texts in by_code.items()]
        return sorted(rows, key=lambda r: (-r[1], r[0]))

    async def template_usage(self, tenant_id: str, start: datetime, end: datetime) -> dict[str, tuple[int, int, int]]:
        out: dict[str, tuple[int, int, int]] = {}
        for m in self._messages(tenant_id):
            if m.template_id is not None and start <= m.created_at < end:
                n, ok, bad = out.get(m.template_id, (0, 0, 0))
                status = str(m.status)
                out[m.template_id] = (n + 1, ok + (status in SUCCESS_STATUSES), bad + (status == "failed"))
        return out

    async def templates(self, tenant_id: str) -> list[tuple[str, str, int, datetime | None]]:
        return [(t.id, t.template_name, t.usage_count, t.last_used_time)
                for t in self._t["message_templates"].values() if t.tenant_id == tenant_id]

    # -- account database --

    async def accounts(self, tenant_id: str) -> list[tuple[str, str, str, datetime]]:
        return [(a.id, a.account_name, str(a.status), a.created_at)
                for a in self._t["wework_accounts"].values() if a.tenant_id == tenant_id]

    def _history(self, tenant_id: str) -> list[Any]:
        return sorted((h for h in self._t["account_status_history"].values() if h.tenant_id == tenant_id),
                      key=lambda h: (h.account_id, h.seq))

    async def status_before(self, tenant_id: str, at: datetime) -> dict[str, str]:
        out = {}
        for h in self._history(tenant_id):
            if h.created_at < at:
                out[h.account_id] = str(h.new_status)  # the last by seq wins
        return out

    async def last_left_online_before(self, tenant_id: str, at: datetime) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        for h in self._history(tenant_id):
            if h.created_at < at and h.old_status == "online" and h.new_status != "online":
                out[h.account_id] = max(out.get(h.account_id, h.created_at), h.created_at)
        return out

    async def transitions(self, tenant_id: str, start: datetime, end: datetime
                          ) -> list[tuple[str, datetime, str | None, str]]:
        return [(h.account_id, h.created_at, h.old_status, str(h.new_status))
                for h in self._history(tenant_id) if start <= h.created_at < end]


def statistics_key(tenant_id: str, account_id: str, hour: datetime) -> tuple[str, str, date, int]:
    """The key of an hourly message_statistics row in the in-memory message database."""
    hour = hour.astimezone(UTC)
    return tenant_id, account_id, hour.date(), hour.hour
