"""Media rows (message database): MediaService, message references and the retention sweep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncSession
from wework.domain.media import Media, MediaKind
from wework.persistence.models import message as mm

M = mm.MediaObject
U = mm.MediaUpload
L = mm.MediaQuotaLock


@dataclass(frozen=True)
class PendingUpload:
    """An upload that reserved its bytes and may have written its object (media_uploads)."""

    id: str
    tenant_id: str
    storage_key: str
    size_bytes: int
    started_at: datetime


def _to_domain(r: mm.MediaObject) -> Media:
    return Media(id=r.id, tenant_id=r.tenant_id, kind=MediaKind(r.kind), file_name=r.file_name,
                 content_type=r.content_type, size_bytes=r.size_bytes, sha256=r.sha256,
                 storage_key=r.storage_key, source=r.source, created_at=r.created_at,
                 last_used_at=r.last_used_at)


class MediaRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, tenant_id: str, media_id: str) -> Media | None:
        row = (await self._s.execute(sa.select(M).where(M.tenant_id == tenant_id, M.id == media_id))).scalar()
        return _to_domain(row) if row is not None else None

    async def get_many(self, tenant_id: str, media_ids: list[str]) -> dict[str, Media]:
        if not media_ids:
            return {}
        rows = (await self._s.execute(sa.select(M).where(M.tenant_id == tenant_id,
                                                         M.id.in_(media_ids)))).scalars()
        return {r.id: _to_domain(r) for r in rows}

    async def find_by_hash(self, tenant_id: str, sha256: str, kind: MediaKind) -> Media | None:
        row = (await self._s.execute(sa.select(M).where(M.tenant_id == tenant_id, M.sha256 == sha256,
                                                        M.kind == kind.value))).scalar()
        return _to_domain(row) if row is not None else None

    async def used_bytes(self, tenant_id: str) -> int:
        """The tenant's stored bytes plus the bytes its uploads in progress reserved."""
        stored = sa.select(sa.func.coalesce(sa.func.sum(M.size_bytes), 0)).where(M.tenant_id == tenant_id)
        reserved = sa.select(sa.func.coalesce(sa.func.sum(U.size_bytes), 0)).where(U.tenant_id == tenant_id)
        total = (await self._s.execute(sa.select(stored.scalar_subquery() + reserved.scalar_subquery()))).scalar()
        return int(total or 0)

    async def lock_quota(self, tenant_id: str, now: datetime) -> None:
        """Takes the tenant's quota lock until the transaction ends (creating its row the first
        time): the tenant's reservations run one at a time. An upsert, so that the exclusive lock
        is taken at once, also when the row is new (no shared-then-exclusive deadlock)."""
        if self._s.bind.dialect.name == "sqlite":  # type: ignore[union-attr]
            stmt = sqlite_dialect.insert(L).values(tenant_id=tenant_id, reserved_at=now).on_conflict_do_update(
                index_elements=[L.tenant_id], set_={"reserved_at": now})
        else:
            stmt = mysql_dialect.insert(L).values(tenant_id=tenant_id, reserved_at=now).on_duplicate_key_update(
                reserved_at=now)
        await self._s.execute(stmt)

    async def add_upload(self, upload: PendingUpload) -> None:
        self._s.add(U(id=upload.id, tenant_id=upload.tenant_id, storage_key=upload.storage_key,
                      size_bytes=upload.size_bytes, started_at=upload.started_at))
        await self._s.flush()

    async def abandoned_uploads(self, started_before: datetime, limit: int) -> list[PendingUpload]:
        """Reservations of uploads started before `started_before`, oldest first, at most
        `limit`, locked until the transaction ends (the sweep; a late commit of one of them waits
        and then finds it gone)."""
        rows = (await self._s.execute(sa.select(U).where(U.started_at < started_before)
                                      .order_by(U.started_at).limit(limit).with_for_update())).scalars()
        return [PendingUpload(r.id, r.tenant_id, r.storage_key, r.size_bytes, r.started_at) for r in rows]

    async def remove_uploads(self, upload_ids: list[str]) -> int:
        if not upload_ids:
            return 0
        return (await self._s.execute(sa.delete(U).where(U.id.in_(upload_ids)))).rowcount

    async def remove_upload(self, upload_id: str) -> bool:
        """Ends the reservation; False if it was gone (the sweep took it as abandoned)."""
        return (await self._s.execute(sa.delete(U).where(U.id == upload_id))).rowcount > 0

    async def add(self, m: Media) -> None:
        self._s.add(M(id=m.id, tenant_id=m.tenant_id, kind=m.kind.value, file_name=m.file_name,
                      content_type=m.content_type, size_bytes=m.size_bytes, sha256=m.sha256,
                      storage_key=m.storage_key, source=m.source, created_at=m.created_at,
                      last_used_at=m.last_used_at or m.created_at))
        await self._s.flush()

    async def list_page(self, tenant_id: str, kind: MediaKind | None, after: str | None, limit: int) -> list[Media]:
        """Newest first by id (UUIDv7); up to `limit` rows."""
        stmt = sa.select(M).where(M.tenant_id == tenant_id)
        if kind is not None:
            stmt = stmt.where(M.kind == kind.value)
        if after is not None:
            stmt = stmt.where(M.id < after)
        rows = (await self._s.execute(stmt.order_by(M.id.desc()).limit(limit))).scalars()
        return [_to_domain(r) for r in rows]

    async def delete(self, tenant_id: str, media_id: str) -> bool:
        result = await self._s.execute(sa.delete(M).where(M.tenant_id == tenant_id, M.id == media_id))
        return result.rowcount > 0

    async def touch(self, tenant_id: str, media_ids: list[str], now: datetime) -> None:
        """Marks the media as used now (a message or template names them)."""
        if media_ids:
            await self._s.execute(sa.update(M).where(M.tenant_id == tenant_id, M.id.in_(media_ids))
                                  .values(last_used_at=now))

    async def expired(self, cutoff: datetime, limit: int) -> list[Media]:
        """Media unused since before `cutoff`, oldest first, at most `limit` (the retention sweep)."""
        rows = (await self._s.execute(sa.select(M).where(M.last_used_at < cutoff)
                                      .order_by(M.last_used_at).limit(limit))).scalars()
        return [_to_domain(r) for r in rows]

    async def of_tenants(self, tenant_ids: list[str], limit: int) -> list[Media]:
        if not tenant_ids:
            return []
        rows = (await self._s.execute(sa.select(M).where(M.tenant_id.in_(tenant_ids)).limit(limit))).scalars()
        return [_to_domain(r) for r in rows]

    async def delete_ids(self, media_ids: list[str]) -> int:
        if not media_ids:
            return 0
        return (await self._s.execute(sa.delete(M).where(M.id.in_(media_ids)))).rowcount


async def deleted_tenant_ids(session: AsyncSession) -> list[str]:
    """Ids of deleted tenants on one shard of the user database (their media go in the sweep)."""
    from wework.persistence.models import user as um

    rows = await session.execute(sa.select(um.Tenant.id).where(um.Tenant.status == "deleted"))
    return [r[0] for r in rows]
