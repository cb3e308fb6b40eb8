"""Tenant webhooks in the callback database: endpoints, the delivery outbox, attempts.

The deliveries table is the queue. A worker claims due pending rows of one shard with
`SELECT ... FOR UPDATE SKIP LOCKED` and stamps them with its id and a lease
(claimed_by/claimed_until); every later change is conditional on that claim, and a claim whose
lease ran out (a killed worker) is due again, with the same event id (webhook-id).

Secrets are stored as the ciphertexts the application hands in; this module never sees keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError
from wework.domain.errors import EtagMismatch
from wework.domain.webhooks import (
    DeliveryStatus,
    EndpointStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from wework.persistence.models import webhook as wm

E, D, A = wm.WebhookEndpoint, wm.WebhookDelivery, wm.WebhookAttempt


def endpoint_from_row(r: wm.WebhookEndpoint) -> WebhookEndpoint:
    """Secrets come back as stored (ciphertext); the application decrypts them."""
    return WebhookEndpoint(
        id=r.id, tenant_id=r.tenant_id, url=r.url, description=r.description or "",
        event_types=list(r.event_types or []), status=EndpointStatus(r.status), disabled_reason=r.disabled_reason,
        disabled_time=r.disabled_time, failing_since=r.failing_since, created_at=r.created_at,
        updated_at=r.updated_at, version=r.version, secret=r.secret, previous_secret=r.previous_secret,
        previous_secret_expires=r.previous_secret_expires)


def delivery_from_row(r: wm.WebhookDelivery) -> WebhookDelivery:
    return WebhookDelivery(
        id=r.id, tenant_id=r.tenant_id, endpoint_id=r.endpoint_id, event_id=r.event_id, event_type=r.event_type,
        payload=json.loads(r.payload), status=DeliveryStatus(r.status), attempt_count=r.attempt_count,
        next_attempt_time=r.next_attempt_at, created_at=r.created_at, body=r.payload)


class WebhookEndpointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, ep: WebhookEndpoint, request_id: str | None) -> None:
        self._s.add(E(id=ep.id, tenant_id=ep.tenant_id, url=ep.url, description=ep.description,
                      event_types=list(ep.event_types), status=ep.status.value, secret=ep.secret,
                      request_id=request_id or None, created_at=ep.created_at, updated_at=ep.updated_at))
        await self._s.flush()

    async def _row(self, tenant_id: str, endpoint_id: str, for_update: bool = False) -> wm.WebhookEndpoint | None:
        stmt = sa.select(E).where(E.tenant_id == tenant_id, E.id == endpoint_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self._s.execute(stmt)).scalar_one_or_none()

    async def get(self, tenant_id: str, endpoint_id: str, *, for_update: bool = False) -> WebhookEndpoint | None:
        row = await self._row(tenant_id, endpoint_id, for_update)
        return endpoint_from_row(row) if row is not None else None

    async def get_by_request(self, tenant_id: str, request_id: str) -> WebhookEndpoint | None:
        row = (await self._s.execute(
            sa.select(E).where(E.tenant_id == tenant_id, E.request_id == request_id))).scalar_one_or_none()
        return endpoint_from_row(row) if row is not None else None

    async def count(self, tenant_id: str) -> int:
        return int((await self._s.execute(
            sa.select(sa.func.count()).select_from(E).where(E.tenant_id == tenant_id))).scalar_one())

    async def list_page(self, tenant_id: str, after: str | None, limit: int) -> list[WebhookEndpoint]:
        stmt = sa.select(E).where(E.tenant_id == tenant_id)
        if after:
            stmt = stmt.where(E.id > after)
        rows = (await self._s.execute(stmt.order_by(E.id).limit(limit))).scalars().all()
        return [endpoint_from_row(r) for r in rows]

    async def enabled_for_tenant(self, tenant_id: str) -> list[WebhookEndpoint]:
        rows = (await self._s.execute(
            sa.select(E).where(E.tenant_id == tenant_id, E.status == EndpointStatus.ENABLED.value)
            .order_by(E.id))).scalars().all()
        return [endpoint_from_row(r) for r in rows]

    async def save(self, ep: WebhookEndpoint) -> WebhookEndpoint:
        """Writes the mutable fields (secrets as given: ciphertexts); optimistic on version."""
        row = await self._row(ep.tenant_id, ep.id)
        if row is None or row.version != ep.version:
            raise EtagMismatch(f"webhookEndpoints/{ep.id}")
        row.url, row.description, row.event_types = ep.url, ep.description, list(ep.event_types)
        row.status, row.disabled_reason, row.disabled_time = ep.status.value, ep.disabled_reason, ep.disabled_time
        row.failing_since = ep.failing_since
        row.secret, row.previous_secret = ep.secret, ep.previous_secret
        row.previous_secret_expires = ep.previous_secret_expires
        row.updated_at = ep.updated_at
        try:
            await self._s.flush()
        except StaleDataError:
            raise EtagMismatch(f"webhookEndpoints/{ep.id}") from None
        return endpoint_from_row(row)

    async def delete(self, tenant_id: str, endpoint_id: str) -> bool:
        """Deletes the endpoint and its pending deliveries (finished ones stay listable by id)."""
        gone = await self._s.execute(sa.delete(E).where(E.tenant_id == tenant_id, E.id == endpoint_id))
        await self._s.execute(sa.delete(D).where(D.endpoint_id == endpoint_id,
                                                 D.status == DeliveryStatus.PENDING.value))
        return gone.rowcount == 1

    async def record_success(self, endpoint_id: str, now: datetime) -> None:
        await self._s.execute(sa.update(E).where(E.id == endpoint_id, E.failing_since.is_not(None))
                              .values(failing_since=None))

    async def record_failure(self, endpoint_id: str, now: datetime, disable_after: timedelta) -> bool:
        """Starts (or continues) the endpoint's failing run; disables it once the run is older
        than `disable_after`. True when this call disabled it."""
        await self._s.execute(sa.update(E).where(E.id == endpoint_id, E.failing_since.is_(None))
                              .values(failing_since=now))
        reason = (f"every delivery attempt failed for {_span(disable_after)}; fix the endpoint and set "
                  "enabled to re-enable it")
        result = await self._s.execute(
            sa.update(E).where(E.id == endpoint_id, E.status == EndpointStatus.ENABLED.value,
                               E.failing_since <= now - disable_after)
            .values(status=EndpointStatus.DISABLED_FAILING.value, disabled_reason=reason, disabled_time=now,
                    updated_at=now, version=E.version + 1))
        return result.rowcount == 1


def _span(d: timedelta) -> str:
    s = int(d.total_seconds())
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= n and s % n == 0:
            return f"{s // n} {unit}{'s' if s // n != 1 else ''}"
    return f"{s} seconds"


class WebhookDeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def enqueue(self, rows: Sequence[dict]) -> int:
        """Inserts deliveries, skipping any whose (endpoint_id, event_id) exists; the number added."""
        if not rows:
            return 0
        existing = {(e, i) for e, i in (await self._s.execute(
            sa.select(D.endpoint_id, D.event_id).where(
                D.endpoint_id.in_([r["endpoint_id"] for r in rows]),
                D.event_id.in_({r["event_id"] for r in rows})))).all()}
        rows = [r for r in rows if (r["endpoint_id"], r["event_id"]) not in existing]
        if not rows:
            return 0
        # The read above answers the common repeat; the no-op upsert covers a concurrent one
        # without failing the caller's transaction.
        if self._s.get_bind().dialect.name == "sqlite":
            stmt = sqlite_insert(D).values(rows).on_conflict_do_nothing()
        else:
            ins = mysql_insert(D).values(rows)
            stmt = ins.on_duplicate_key_update(event_id=ins.inserted.event_id)
        await self._s.execute(stmt)
        return len(rows)

    async def claim(self, worker_id: str, now: datetime, limit: int, lease: timedelta) -> list[WebhookDelivery]:
        """Due pending deliveries not held by a live claim, locked with SKIP LOCKED and stamped."""
        free = sa.or_(D.claimed_until.is_(None), D.claimed_until < now)
        rows = (await self._s.execute(
            sa.select(D).where(D.status == DeliveryStatus.PENDING.value, D.next_attempt_at <= now, free)
            .order_by(D.next_attempt_at).limit(limit).with_for_update(skip_locked=True))).scalars().all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        await self._s.execute(sa.update(D).where(D.id.in_(ids)).values(
            claimed_by=worker_id, claimed_until=now + lease).execution_options(synchronize_session=False))
        out = [delivery_from_row(r) for r in rows]
        self._s.expunge_all()
        return out

    async def finish(self, d: WebhookDelivery, worker_id: str, *, status: DeliveryStatus, attempt_count: int,
                     next_attempt_at: datetime | None, now: datetime) -> bool:
        """Ends this worker's claim with the outcome; False if the claim was lost meanwhile."""
        result = await self._s.execute(
            sa.update(D).where(D.id == d.id, D.claimed_by == worker_id, D.status == DeliveryStatus.PENDING.value)
            .values(status=status.value, attempt_count=attempt_count, next_attempt_at=next_attempt_at,
                    claimed_by=None, claimed_until=None, updated_at=now))
        return result.rowcount == 1

    async def add_attempt(self, delivery_id: str, a: WebhookAttempt) -> None:
        await self._s.execute(sa.insert(A).values(
            delivery_id=delivery_id, attempt_number=a.attempt_number, attempt_time=a.attempt_time,
            response_status=a.response_status, error=(a.error or None) and a.error[:500],
            duration_ms=a.duration_ms))

    async def get(self, tenant_id: str, delivery_id: str, *, for_update: bool = False) -> WebhookDelivery | None:
        stmt = sa.select(D).where(D.tenant_id == tenant_id, D.id == delivery_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        if row is None:
            return None
        d = delivery_from_row(row)
        d.attempts = (await self.attempts_of([d.id])).get(d.id, [])
        return d

    async def list_page(self, tenant_id: str, endpoint_id: str, status: DeliveryStatus | None,
                        before: str | None, limit: int) -> list[WebhookDelivery]:
        """Newest first (ids are time-ordered), with their attempts."""
        stmt = sa.select(D).where(D.tenant_id == tenant_id, D.endpoint_id == endpoint_id)
        if status is not None:
            stmt = stmt.where(D.status == status.value)
        if before:
            stmt = stmt.where(D.id < before)
        rows = (await self._s.execute(stmt.order_by(D.id.desc()).limit(limit))).scalars().all()
        out = [delivery_from_row(r) for r in rows]
        attempts = await self.attempts_of([d.id for d in out])
        for d in out:
            d.attempts = attempts.get(d.id, [])
        return out

    async def attempts_of(self, ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
        if not ids:
            return {}
        rows = (await self._s.execute(
            sa.select(A).where(A.delivery_id.in_(list(ids))).order_by(A.delivery_id, A.attempt_number, A.id)
        )).scalars().all()
        out: dict[str, list[WebhookAttempt]] = {}
        for r in rows:
            out.setdefault(r.delivery_id, []).append(WebhookAttempt(
                attempt_number=r.attempt_number, attempt_time=r.attempt_time, response_status=r.response_status,
                error=r.error or "", duration_ms=r.duration_ms))
        return out

    async def redeliver(self, tenant_id: str, delivery_id: str, now: datetime) -> bool:
        """Pending and due now, whatever it was; a live claim keeps its attempt (the worker's
        finish then fails on the changed row only if it was already final)."""
        result = await self._s.execute(
            sa.update(D).where(D.tenant_id == tenant_id, D.id == delivery_id)
            .values(status=DeliveryStatus.PENDING.value, next_attempt_at=now, claimed_by=None, claimed_until=None,
                    updated_at=now))
        return result.rowcount == 1

    async def fail_pending_of(self, endpoint_id: str, now: datetime) -> int:
        """An endpoint was disabled: its waiting deliveries end failed (they can be redelivered)."""
        result = await self._s.execute(
            sa.update(D).where(D.endpoint_id == endpoint_id, D.status == DeliveryStatus.PENDING.value,
                               D.claimed_by.is_(None))
            .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None, updated_at=now))
        return int(result.rowcount or 0)

    async def purge(self, before: datetime, limit: int) -> int:
        """Deletes up to `limit` finished deliveries created before `before`, with their attempts."""
        ids = list((await self._s.execute(
            sa.select(D.id).where(D.created_at < before, D.status != DeliveryStatus.PENDING.value)
            .order_by(D.created_at).limit(limit))).scalars())
        if ids:
            await self._s.execute(sa.delete(A).where(A.delivery_id.in_(ids)))
            await self._s.execute(sa.delete(D).where(D.id.in_(ids)))
        return len(ids)

    async def due_count(self, now: datetime) -> int:
        return int((await self._s.execute(
            sa.select(sa.func.count()).select_from(D)
            .where(D.status == DeliveryStatus.PENDING.value, D.next_attempt_at <= now))).scalar_one())
