"""In-memory repositories of the identity tables the other areas' use cases need: the tenant
row (uow.tenants: status and quotas, read by TenantUseCases.tenant_limits) and the
directory's tenant codes and idempotency keys (uow.directory).

Same answers as wework.persistence.repositories.identity. Users, roles and API keys have no
in-memory form yet: a test seeds its tenant with `add_tenant` instead of CreateTenant.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime

from wework.domain.errors import AlreadyExists, EtagMismatch
from wework.domain.identity import Tenant, TenantStatus
from wework.persistence.repositories.identity import CodeHolder

from harness.fakes import FakeDatabase, FakeUnitOfWork, repository


@repository("tenants")
class InMemoryTenants:
    """tenants (user database): id -> Tenant."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, Tenant] = uow.tables["tenants"]

    async def add(self, t: Tenant) -> None:
        if t.id in self._rows:
            raise RuntimeError(f"duplicate primary key tenants {t.id}")
        self._rows[t.id] = replace(copy.deepcopy(t), version=1)

    async def get(self, tenant_id: str, *, for_update: bool = False) -> Tenant | None:
        row = self._rows.get(tenant_id)
        return None if row is None else copy.deepcopy(row)

    async def save(self, t: Tenant, *, expected_version: int) -> None:
        row = self._rows.get(t.id)
        if row is None or row.version != expected_version:
            raise EtagMismatch(f"tenants/{t.id}")
        self._rows[t.id] = replace(copy.deepcopy(t), created_at=row.created_at,
                                   updated_at=t.updated_at or row.updated_at, version=expected_version + 1)

    async def list_page(self, status: TenantStatus | None, after_id: str | None, limit: int) -> list[Tenant]:
        rows = sorted((r for r in self._rows.values()
                       if (r.status is not TenantStatus.DELETED if status is None else r.status is status)
                       and (not after_id or r.id > after_id)), key=lambda r: r.id)
        return [copy.deepcopy(r) for r in rows[:limit]]


@repository("directory")
class InMemoryDirectory:
    """The directory's tenant_codes (code -> (tenant, created_at)) and idempotency_keys
    ((tenant, operation, request id) -> resource id)."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._codes: dict[str, tuple[str, datetime | None]] = uow.tables["tenant_codes"]
        self._idempotency: dict[tuple[str, str, str], str] = uow.tables["idempotency_keys"]

    async def tenant_id_for_code(self, code: str, *, for_update: bool = False) -> CodeHolder | None:
        row = self._codes.get(code)
        return None if row is None else CodeHolder(*row)

    async def reserve_tenant_code(self, code: str, tenant_id: str, now: datetime) -> None:
        if code in self._codes:
            raise AlreadyExists("tenant", "tenant_code", code)
        self._codes[code] = (tenant_id, now)

    async def move_tenant_code(self, code: str, tenant_id: str, now: datetime) -> None:
        if code in self._codes:
            self._codes[code] = (tenant_id, now)

    async def get_idempotent(self, tenant_id: str, operation: str, request_id: str) -> str | None:
        return self._idempotency.get((tenant_id, operation, request_id))

    async def put_idempotent(self, tenant_id: str, operation: str, request_id: str, resource_id: str,
                             now: datetime) -> None:
        key = (tenant_id, operation, request_id)
        if key in self._idempotency:
            raise RuntimeError(f"duplicate primary key idempotency_keys {key}")
        self._idempotency[key] = resource_id


async def add_tenant(db: FakeDatabase, tenant_id: str, *, max_accounts: int = 10,
                     max_daily_messages: int = 10_000, status: TenantStatus = TenantStatus.ACTIVE,
                     now: datetime | None = None) -> Tenant:
    """Seeds an (active) tenant row, as CreateTenant leaves it on the tenant's user shard."""
    tenant = Tenant(id=tenant_id, tenant_code=f"code-{tenant_id}", tenant_name=f"tenant {tenant_id}",
                    max_accounts=max_accounts, max_daily_messages=max_daily_messages, status=status,
                    created_at=now, updated_at=now)
    async with db.unit_of_work("user", tenant_id) as uow:
        await uow.tenants.add(tenant)
    return tenant
