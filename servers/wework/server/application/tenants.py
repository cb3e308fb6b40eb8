"""Tenant use cases: create, read, list, update and the lifecycle of a tenant."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import timedelta

from wework.domain.access import SYSTEM_ROLES, Principal
from wework.domain.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound, must_exist
from wework.domain.identity import (
    TENANT_MUTABLE_FIELDS,
    Role,
    Tenant,
    TenantStatus,
    check_etag,
    validate_request_id,
)
from wework.domain.update_mask import check_update_mask
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.persistence.redis.cache import DecodedEntries
from wework.persistence.repositories.identity import (
    TenantRepository,
)
from wework.persistence.uow import UnitOfWork
from wework.server.application.context import AppContext, require_id

# A code reservation whose tenant row never got written (the process died between
# the directory write and the shard write) may be taken over after this long.
ORPHAN_RESERVATION_AGE = timedelta(seconds=60)


@dataclass(frozen=True)
class TenantLimits:
    status: TenantStatus
    max_accounts: int
    max_daily_messages: int


@dataclass(frozen=True, slots=True)
class _DecodedEntry:
    """A tenant cache entry as read from its bytes."""

    status: TenantStatus
    limits: TenantLimits | None  # None: an entry of an older build, without the quotas
    # {"pacing": ...} of the tenant's config; None: an entry of an older build, without it
    pacing_config: dict | None

    @classmethod
    def decode(cls, raw: bytes) -> _DecodedEntry:
        entry = json.loads(raw)
        status = TenantStatus(entry["status"])
        limits = (TenantLimits(status, entry["max_accounts"], entry["max_daily_messages"])
                  if "max_accounts" in entry else None)
        pacing = {"pacing": entry["pacing"]} if "pacing" in entry else None
        return cls(status, limits, pacing)


class TenantUseCases:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._decoded: DecodedEntries[_DecodedEntry] = DecodedEntries()

    # -- create ----------------------------------------------------------------------

    async def create_tenant(self, principal: Principal, tenant: Tenant, request_id: str) -> Tenant:
        validate_request_id(request_id)
        tenant.validate()
        db, now = self._ctx.db, self._ctx.clock()

        # 1. The directory makes the code (and the request id) globally unique.
        async with db.directory_unit_of_work() as uow:
            directory = uow.directory
            if request_id:
                done_id = await directory.get_idempotent("", "CreateTenant", request_id)
                if done_id is not None:
                    existing = await self._find(done_id)
                    if existing is not None:
                        return existing
                    tenant = replace(tenant, id=done_id)  # finish what a crashed attempt began
            if not tenant.id:
                tenant = replace(tenant, id=new_id())
            holder = await directory.tenant_id_for_code(tenant.tenant_code, for_update=True)
            if holder is not None and holder.tenant_id != tenant.id:
                orphan = (await self._find(holder.tenant_id) is None
                          and holder.created_at is not None
                          and now - holder.created_at > ORPHAN_RESERVATION_AGE)
                if not orphan:
                    raise AlreadyExists("tenant", "tenant_code", tenant.tenant_code)
                await directory.move_tenant_code(tenant.tenant_code, tenant.id, now)
            elif holder is None:
                await directory.reserve_tenant_code(tenant.tenant_code, tenant.id, now)
            if request_id:
                await directory.put_idempotent("", "CreateTenant", request_id, tenant.id, now)

        # 2. The tenant row and its system roles, in one transaction on its shard.
        tenant = replace(tenant, status=TenantStatus.ACTIVE, created_at=now, updated_at=now, version=1)
        async with db.unit_of_work("user", tenant.id) as uow:
            tenants = uow.tenants
            if await tenants.get(tenant.id) is None:
                await tenants.add(tenant)
                roles = uow.roles
                for code, (name, perms) in SYSTEM_ROLES.items():
                    await roles.add(Role(id=new_id(), tenant_id=tenant.id, role_code=code, role_name=name,
                                         permissions=list(perms), description=f"System role {code}",
                                         is_system=True, created_at=now, updated_at=now))
        return await self._get(tenant.id)

    # -- read ------------------------------------------------------------------------

    async def get_tenant(self, principal: Principal, tenant_id: str) -> Tenant:
        require_id(tenant_id, "id")
        self._check_visible(principal, tenant_id)
        return await self._get(tenant_id)

    async def list_tenants(self, principal: Principal, status: TenantStatus | None, page_size: int,
                           page_token: str) -> tuple[list[Tenant], str]:
        limit = normalize_page_size(page_size)
        scope = principal.tenant_id or ""  # a tenant principal sees its own tenant only
        after = self._ctx.page_tokens.after_id(page_token, "tenants", scope)
        db = self._ctx.db

        async def one_shard(uow: UnitOfWork) -> list[Tenant]:
            return await uow.tenants.list_page(status, after, limit + 1)

        # Ids are UUIDv7, so merging the shards' pages by id gives one global order.
        per_shard = await db.for_each_shard("user", one_shard)
        merged = sorted((t for page in per_shard for t in page), key=lambda t: t.id)
        return self._ctx.page_tokens.id_page(merged, limit, "tenants", scope)

    # -- update ------------------------------------------------------------------------

    async def update_tenant(self, principal: Principal, changes: Tenant, paths: list[str], etag: str) -> Tenant:
        if not changes.id:
            raise InvalidArgument(FieldViolation("tenant.id", "id is required"))
        check_update_mask(paths, TENANT_MUTABLE_FIELDS)
        changes.validate(fields=frozenset(paths))
        async with self._ctx.db.unit_of_work("user", changes.id) as uow:
            tenants = uow.tenants
            current = await self._get_for_update(tenants, changes.id)
            check_etag(etag, current.version, f"tenants/{current.id}")
            updated = replace(current, **{p: getattr(changes, p) for p in paths},
                              updated_at=self._ctx.clock(), version=current.version + 1)
            await tenants.save(updated, expected_version=current.version)
        await self._invalidate(changes.id)
        return updated

    async def change_status(self, principal: Principal, tenant_id: str, new_status: TenantStatus,
                            etag: str, reason: str | None = None) -> Tenant:
        require_id(tenant_id, "id")
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            tenants = uow.tenants
            current = await self._get_for_update(tenants, tenant_id)
            check_etag(etag, current.version, f"tenants/{tenant_id}")
            updated = replace(current.with_status(new_status, reason), updated_at=self._ctx.clock(),
                              version=current.version + 1)
            await tenants.save(updated, expected_version=current.version)
        await self._invalidate(tenant_id)
        return updated

    # -- access-control view, cached ---------------------------------------------------------

    async def tenant_status(self, tenant_id: str) -> TenantStatus | None:
        """The tenant's status from the two-level cache (None: no such tenant)."""
        entry = await self._cached_entry(tenant_id)
        return entry.status if entry else None

    async def tenant_limits(self, tenant_id: str) -> TenantLimits | None:
        """Status and quotas from the same cache entry, for other services' quota checks
        (None: no such tenant). update_tenant invalidates it, so a new quota applies at once."""
        entry = await self._cached_entry(tenant_id)
        if entry is None:
            return None
        if entry.limits is None:  # written by an older build: read the row instead
            tenant = await self._find(tenant_id)
            if tenant is None:
                return None
            return TenantLimits(tenant.status, tenant.max_accounts, tenant.max_daily_messages)
        return entry.limits

    async def tenant_pacing_config(self, tenant_id: str) -> dict | None:
        """{"pacing": overrides} of the tenant's config, for the dispatcher (docs/pacing.md); from
        the same cache entry, so update_tenant's new overrides apply at once."""
        entry = await self._cached_entry(tenant_id)
        if entry is None:
            return None
        if entry.pacing_config is None:  # written by an older build: read the row instead
            tenant = await self._find(tenant_id)
            return {"pacing": (tenant.config or {}).get("pacing")} if tenant else None
        return entry.pacing_config

    @staticmethod
    def _entry(tenant: Tenant) -> dict:
        return {"status": tenant.status.value, "max_accounts": tenant.max_accounts,
                "max_daily_messages": tenant.max_daily_messages,
                "pacing": (tenant.config or {}).get("pacing")}

    async def _cached_entry(self, tenant_id: str) -> _DecodedEntry | None:
        async def load() -> bytes | None:
            tenant = await self._find(tenant_id)
            return None if tenant is None else json.dumps(self._entry(tenant)).encode()

        raw = await self._ctx.tenant_cache.get_or_load(tenant_id, load)
        if not raw:
            return None
        # Every authenticated call and every send reads this entry.
        return self._decoded.get(tenant_id, raw, _DecodedEntry.decode)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _check_visible(principal: Principal, tenant_id: str) -> None:
        # Another tenant's id answers exactly like an absent one.
        if not principal.is_platform_admin and principal.tenant_id != tenant_id:
            raise NotFound("tenant", tenant_id)

    async def _find(self, tenant_id: str) -> Tenant | None:
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            return await uow.tenants.get(tenant_id)

    async def _get(self, tenant_id: str) -> Tenant:
        tenant = must_exist(await self._find(tenant_id), "tenant", tenant_id)
        return tenant

    @staticmethod
    async def _get_for_update(tenants: TenantRepository, tenant_id: str) -> Tenant:
        tenant = must_exist(await tenants.get(tenant_id, for_update=True), "tenant", tenant_id)
        return tenant

    async def _invalidate(self, tenant_id: str) -> None:
        await self._ctx.tenant_cache.invalidate(tenant_id)
