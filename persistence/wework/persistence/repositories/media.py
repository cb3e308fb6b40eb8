"""Media rows (message database): MediaService, message references and the retention sweep."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from wework.domain.media import Media, MediaKind
from wework.persistence.models import message as mm

M = mm.MediaObject


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
        total = (await self._s.execute(sa.select(sa.func.coalesce(sa.func.sum(M.size_bytes), 0))
                                       .where(M.tenant_id == tenant_id))).scalar()
        return int(total or 0)

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
