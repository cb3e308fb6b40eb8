"""callback_events as the durable inbox: store (deduplicated), claim, finish, retry, replay, list.

Storing is one short transaction for many callbacks (group commit): rows in callback_dedupe
(primary key = dedupe key; an existing row means the callback is a duplicate and nothing else
is written), then the event rows.

Claiming follows the dispatch queue (repositories/dispatch.py): candidates by a plain read in
arrival order, then `FOR UPDATE SKIP LOCKED` by primary key and an UPDATE to `processing` with
the processor's id and a lease, so concurrent processors never hold the same callback. Every
later change is conditional on `status = 'processing' AND claimed_by = me`.

`EffectLedger` is the applied-callback ledger of the account and message databases: one insert
in the transaction of the effect, refused (no row) when the callback was applied before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from wework.persistence.ids import new_id
from wework.persistence.models import callback as cm

E = cm.CallbackEvent
D = cm.CallbackDedupe


@dataclass(frozen=True)
class StoredCallback:
    id: str
    received_time: datetime
    tenant_id: str | None
    guid: str
    notify_type: int
    event_type: str
    raw_data: str
    parsed_data: dict[str, Any] | None
    status: str
    error_message: str | None
    retry_count: int
    process_time: datetime | None
    source_ip: str | None
    user_agent: str | None
    dedupe_key: str | None
    # The credentials taken out of raw_data at ingress, sealed (application/callbacks.py).
    sealed_secrets: str | None = None


@dataclass(frozen=True)
class CallbackFilter:
    """Every set field must match. tenant_id None: any tenant (and none)."""

    tenant_id: str | None = None
    guid: str | None = None
    notify_type: int | None = None
    event_type: str | None = None
    status: str | None = None
    received_after: datetime | None = None
    received_before: datetime | None = None
    # Left out unless named by notify_type (ListCallbackEvents hides heartbeats by default).
    exclude_notify_types: tuple[int, ...] = ()


def _stored(r: Any) -> StoredCallback:
    return StoredCallback(id=r.id, received_time=r.received_time, tenant_id=r.tenant_id, guid=r.guid,
                          notify_type=r.notify_type, event_type=r.event_type, raw_data=r.raw_data,
                          parsed_data=r.parsed_data, status=r.status, error_message=r.error_message,
                          retry_count=r.retry_count, process_time=r.process_time, source_ip=r.source_ip,
                          user_agent=r.user_agent, dedupe_key=r.dedupe_key, sealed_secrets=r.sealed_secrets)


def _insert_ignore(session: AsyncSession, table: sa.Table, values: dict[str, Any] | list[dict[str, Any]]) -> Any:
    if session.bind.dialect.name == "sqlite":
        return sqlite_insert(table).values(values).on_conflict_do_nothing()
    return mysql_insert(table).values(values).prefix_with("IGNORE")


def _insert_ignore_stmt(session: AsyncSession, table: sa.Table) -> Any:
    """INSERT IGNORE without values, for executemany."""
    if session.bind.dialect.name == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing()
    return mysql_insert(table).prefix_with("IGNORE")


class CallbackRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    # -- ingest -----------------------------------------------------------------------------------

    async def store_many(self, items: Sequence[dict[str, Any]], now: datetime) -> list[tuple[str, bool]]:
        """Stores callbacks in this transaction (group commit of the ingress), three statements
        whatever the count. Items: dicts of dedupe_key, tenant_id, guid, notify_type, event_type,
        raw_data, source_ip, user_agent (and sealed_secrets, optional). The answer per item, in order: (callback id, duplicate);
        a callback whose dedupe key is known is not stored again and answers the first id."""
        ids: dict[str, str] = {}  # dedupe key -> the id its first occurrence here would get
        for it in items:
            ids.setdefault(it["dedupe_key"], new_id())
        # executemany of one cached statement (the driver folds it into a multi-row INSERT): a
        # VALUES list of varying length would be compiled anew for every batch size.
        await self._s.execute(_insert_ignore_stmt(self._s, D.__table__), [
            {"dedupe_key": k, "callback_event_id": i, "received_time": now} for k, i in ids.items()])
        stored = dict((await self._s.execute(
            sa.select(D.dedupe_key, D.callback_event_id).where(D.dedupe_key.in_(list(ids))))).all())
        rows, out, taken = [], [], set()
        for it in items:
            key = it["dedupe_key"]
            first = stored[key]
            new = first == ids[key] and key not in taken
            if new:
                taken.add(key)
                rows.append({"id": first, "received_time": now, "tenant_id": it["tenant_id"], "guid": it["guid"],
                             "notify_type": it["notify_type"], "event_type": it["event_type"],
                             "raw_data": it["raw_data"], "status": "received", "retry_count": 0,
                             "source_ip": it["source_ip"], "user_agent": it["user_agent"], "dedupe_key": key,
                             "sealed_secrets": it.get("sealed_secrets")})
            out.append((first, not new))
        if rows:
            await self._s.execute(sa.insert(E.__table__), rows)  # Core executemany, not the ORM bulk path
        return out

    # -- processing -------------------------------------------------------------------------------

    async def claim(self, worker_id: str, now: datetime, limit: int, lease: timedelta) -> list[StoredCallback]:
        """Up to `limit` due `received` callbacks, oldest first, now `processing` for `worker_id`."""
        due = sa.and_(E.status == "received", sa.or_(E.next_attempt_time.is_(None), E.next_attempt_time <= now))
        seen: set[str] = set()
        rows: Sequence[Any] = []
        for _ in range(4):
            candidates = [(i, t) for i, t in (await self._s.execute(
                sa.select(E.id, E.received_time).where(due).order_by(E.received_time, E.id)
                .limit(limit + len(seen)))).all() if i not in seen][:limit]
            if not candidates:
                return []
            seen.update(i for i, _ in candidates)
            rows = (await self._s.execute(
                sa.select(E).where(sa.tuple_(E.id, E.received_time).in_(candidates), due)
                .with_for_update(skip_locked=True))).scalars().all()
            if rows:
                break
        else:
            return []
        keys = [(r.id, r.received_time) for r in rows]
        await self._s.execute(
            sa.update(E).where(sa.tuple_(E.id, E.received_time).in_(keys), E.status == "received")
            .values(status="processing", claimed_by=worker_id, claimed_until=now + lease)
            .execution_options(synchronize_session=False))
        out = sorted((_stored(r) for r in rows), key=lambda c: (c.received_time, c.id))
        self._s.expunge_all()
        return [StoredCallback(**{**c.__dict__, "status": "processing"}) for c in out]

    def _mine(self, c: StoredCallback, worker_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(E.id == c.id, E.received_time == c.received_time, E.status == "processing",
                       E.claimed_by == worker_id)

    async def finish(self, c: StoredCallback, worker_id: str, *, status: str, now: datetime,
                     error_message: str | None = None, parsed_data: dict[str, Any] | None = None,
                     tenant_id: str | None = None, count_attempt: bool = False) -> bool:
        """processing -> processed | ignored | failed. False if this worker no longer holds it.
        `count_attempt`: this was a failed attempt (retry_count + 1)."""
        values: dict[str, Any] = {"status": status, "process_time": now, "error_message": error_message,
                                  "claimed_by": None, "claimed_until": None, "next_attempt_time": None}
        if count_attempt:
            values["retry_count"] = E.retry_count + 1
        if parsed_data is not None:
            values["parsed_data"] = parsed_data
        if tenant_id is not None and c.tenant_id is None:
            values["tenant_id"] = tenant_id
        result = await self._s.execute(sa.update(E).where(self._mine(c, worker_id)).values(**values))
        return result.rowcount == 1

    async def retry_later(self, c: StoredCallback, worker_id: str, *, at: datetime, error_message: str) -> bool:
        """processing -> received, due again at `at`, one more retry counted."""
        result = await self._s.execute(sa.update(E).where(self._mine(c, worker_id)).values(
            status="received", retry_count=E.retry_count + 1, next_attempt_time=at,
            error_message=error_message[:2000], claimed_by=None, claimed_until=None))
        return result.rowcount == 1

    async def requeue_expired(self, now: datetime) -> int:
        """Callbacks whose processor died (lease over) go back to `received`."""
        result = await self._s.execute(
            sa.update(E).where(E.status == "processing", E.claimed_until < now)
            .values(status="received", claimed_by=None, claimed_until=None))
        return result.rowcount or 0

    async def due_count(self, now: datetime) -> int:
        return (await self._s.execute(sa.select(sa.func.count()).select_from(E).where(
            E.status == "received",
            sa.or_(E.next_attempt_time.is_(None), E.next_attempt_time <= now)))).scalar_one()

    async def purge_dedupe(self, cutoff: datetime, limit: int) -> int:
        keys = (await self._s.execute(sa.select(D.dedupe_key).where(D.received_time < cutoff)
                                      .order_by(D.received_time).limit(limit))).scalars().all()
        if not keys:
            return 0
        await self._s.execute(sa.delete(D).where(D.dedupe_key.in_(keys)))
        return len(keys)

    # -- operators --------------------------------------------------------------------------------

    def _where(self, f: CallbackFilter) -> list[sa.ColumnElement[bool]]:
        conds: list[sa.ColumnElement[bool]] = []
        if f.tenant_id is not None:
            conds.append(E.tenant_id == f.tenant_id)
        if f.guid:
            conds.append(E.guid == f.guid)
        if f.notify_type:
            conds.append(E.notify_type == f.notify_type)
        elif f.exclude_notify_types:
            conds.append(E.notify_type.not_in(f.exclude_notify_types))
        if f.event_type:
            conds.append(E.event_type == f.event_type)
        if f.status:
            conds.append(E.status == f.status)
        if f.received_after is not None:
            conds.append(E.received_time >= f.received_after)
        if f.received_before is not None:
            conds.append(E.received_time < f.received_before)
        return conds

    async def list_page(self, f: CallbackFilter, after: tuple[datetime, str] | None,
                        limit: int) -> list[StoredCallback]:
        """Newest first; `after` is the (received_time, id) of the last row of the previous page."""
        stmt = sa.select(E).where(*self._where(f)).order_by(E.received_time.desc(), E.id.desc()).limit(limit)
        if after is not None:
            t, i = after
            stmt = stmt.where(sa.or_(E.received_time < t, sa.and_(E.received_time == t, E.id < i)))
        return [_stored(r) for r in (await self._s.execute(stmt)).scalars()]

    async def get(self, callback_id: str, tenant_id: str | None) -> StoredCallback | None:
        """The callback `callback_id`; with a tenant, only if it is that tenant's."""
        stmt = sa.select(E).where(E.id == callback_id)
        if tenant_id is not None:
            stmt = stmt.where(E.tenant_id == tenant_id)
        row = (await self._s.execute(stmt)).scalars().first()
        return None if row is None else _stored(row)

    async def select_keys(self, f: CallbackFilter, ids: Sequence[str] | None, limit: int,
                          not_before: datetime) -> list[tuple[str, datetime]]:
        """(id, received_time) of the callbacks a replay takes: by ids or by filter, oldest first,
        never `processing` ones (a processor holds them) nor older than `not_before`."""
        stmt = (sa.select(E.id, E.received_time).where(*self._where(f), E.status != "processing",
                                                      E.received_time >= not_before)
                .order_by(E.received_time, E.id).limit(limit))
        if ids is not None:
            stmt = stmt.where(E.id.in_(list(ids)))
        return [(i, t) for i, t in (await self._s.execute(stmt)).all()]

    async def requeue(self, keys: Sequence[tuple[str, datetime]], now: datetime) -> int:
        """Replay: back to `received`, due now, retry_count reset (the history of attempts of this
        round starts over; error_message keeps the last error until it is processed again)."""
        if not keys:
            return 0
        result = await self._s.execute(
            sa.update(E).where(sa.tuple_(E.id, E.received_time).in_(list(keys)), E.status != "processing")
            .values(status="received", next_attempt_time=None, retry_count=0, claimed_by=None,
                    claimed_until=None)
            .execution_options(synchronize_session=False))
        return result.rowcount or 0


class EffectLedger:
    """applied_callbacks of the account or message database (`table`)."""

    def __init__(self, session: AsyncSession, table: sa.Table) -> None:
        self._s, self._t = session, table

    async def record(self, effect_key: str, now: datetime) -> bool:
        """True when `effect_key` is new (apply the effect), False when it was applied before.
        Call it in the effect's transaction: a rollback forgets it with the effect."""
        result = await self._s.execute(_insert_ignore(self._s, self._t, {"effect_key": effect_key,
                                                                         "applied_at": now}))
        return result.rowcount == 1

    async def purge(self, cutoff: datetime, limit: int) -> int:
        keys = (await self._s.execute(sa.select(self._t.c.effect_key).where(self._t.c.applied_at < cutoff)
                                      .limit(limit))).scalars().all()
        if not keys:
            return 0
        await self._s.execute(sa.delete(self._t).where(self._t.c.effect_key.in_(keys)))
        return len(keys)

    @classmethod
    def of_account_db(cls, session: AsyncSession) -> EffectLedger:
        from wework.persistence.models import account as am

        return cls(session, am.AppliedCallback.__table__)

    @classmethod
    def of_message_db(cls, session: AsyncSession) -> EffectLedger:
        from wework.persistence.models import message as mm

        return cls(session, mm.AppliedCallback.__table__)
