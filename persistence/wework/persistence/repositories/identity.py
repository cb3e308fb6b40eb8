"""Repositories of the user database and the directory: tenants, users, roles, API keys.

They speak domain entities (wework.domain.identity) and never protobuf. Sensitive
columns are encrypted here, on the way in and out, so nothing above this layer
ever sees ciphertext and nothing below it ever sees plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from wework.domain.errors import EtagMismatch
from wework.domain.identity import ApiKey, Role, Tenant, TenantStatus, User, UserStatus, normalize_email
from wework.persistence.errors import checked_flush
from wework.persistence.models import directory as dm
from wework.persistence.models import user as um


class Cipher(Protocol):
    """What the repositories need of wework.server.security.field_crypto.FieldCipher."""

    def encrypt(self, plaintext: str | None, *, context: str) -> str | None: ...
    def decrypt(self, token: str | None, *, context: str) -> str | None: ...
    def lookup_hash(self, value: str, *, context: str) -> str: ...


async def _flush(session: AsyncSession, subject: str, duplicates: dict[str, tuple[str, str, str]],
                 metadata: sa.MetaData = um.metadata) -> None:
    await checked_flush(session, subject, duplicates, metadata)


# ---- directory ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeHolder:
    tenant_id: str
    created_at: datetime | None


class DirectoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def tenant_id_for_code(self, code: str, *, for_update: bool = False) -> CodeHolder | None:
        stmt = sa.select(dm.TenantCode).where(dm.TenantCode.tenant_code == code)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else CodeHolder(row.tenant_id, row.created_at)

    async def reserve_tenant_code(self, code: str, tenant_id: str, now: datetime) -> None:
        self._s.add(dm.TenantCode(tenant_code=code, tenant_id=tenant_id, created_at=now))
        await _flush(self._s, f"tenant_codes/{code}", {"PRIMARY": ("tenant", "tenant_code", code)},
                     dm.metadata)

    async def move_tenant_code(self, code: str, tenant_id: str, now: datetime) -> None:
        await self._s.execute(sa.update(dm.TenantCode).where(dm.TenantCode.tenant_code == code)
                              .values(tenant_id=tenant_id, created_at=now))

    async def get_idempotent(self, tenant_id: str, operation: str, request_id: str) -> str | None:
        row = await self._s.get(dm.IdempotencyKey, (tenant_id, operation, request_id))
        return None if row is None else row.resource_id

    async def put_idempotent(self, tenant_id: str, operation: str, request_id: str, resource_id: str,
                             now: datetime) -> None:
        self._s.add(dm.IdempotencyKey(tenant_id=tenant_id, operation=operation, request_id=request_id,
                                      resource_id=resource_id, created_at=now))
        await self._s.flush()


class IdempotencyRepository:
    """AIP-155 request ids of the user database, written in the creating transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, tenant_id: str, operation: str, request_id: str) -> str | None:
        row = await self._s.get(um.IdempotencyKey, (tenant_id, operation, request_id))
        return None if row is None else row.resource_id

    async def put(self, tenant_id: str, operation: str, request_id: str, resource_id: str, now: datetime) -> None:
        self._s.add(um.IdempotencyKey(tenant_id=tenant_id, operation=operation, request_id=request_id,
                                      resource_id=resource_id, created_at=now))
        await self._s.flush()


# ---- tenants ---------------------------------------------------------------------------------


class TenantRepository:
    def __init__(self, session: AsyncSession, cipher: Cipher) -> None:
        self._s = session
        self._c = cipher

    def _to_domain(self, r: um.Tenant) -> Tenant:
        return Tenant(
            id=r.id, tenant_code=r.tenant_code, tenant_name=r.tenant_name, contact_person=r.contact_person,
            contact_phone=self._c.decrypt(r.contact_phone, context="tenants.contact_phone"),
            contact_email=self._c.decrypt(r.contact_email, context="tenants.contact_email"),
            max_accounts=r.max_accounts, max_daily_messages=r.max_daily_messages, webhook_url=r.webhook_url,
            config=r.config, status=TenantStatus(r.status), created_at=r.created_at, updated_at=r.updated_at,
            version=r.version, suspend_reason=r.suspend_reason,
        )

    def _apply(self, r: um.Tenant, t: Tenant) -> None:
        r.tenant_name = t.tenant_name
        r.contact_person = t.contact_person
        r.contact_phone = self._c.encrypt(t.contact_phone, context="tenants.contact_phone")
        r.contact_email = self._c.encrypt(t.contact_email, context="tenants.contact_email")
        r.max_accounts = t.max_accounts
        r.max_daily_messages = t.max_daily_messages
        r.webhook_url = t.webhook_url
        r.config = t.config
        r.status = t.status.value
        r.suspend_reason = t.suspend_reason
        if t.updated_at is not None:
            r.updated_at = t.updated_at

    async def add(self, t: Tenant) -> None:
        row = um.Tenant(id=t.id, tenant_code=t.tenant_code, created_at=t.created_at, version=1)
        self._apply(row, t)
        self._s.add(row)
        await _flush(self._s, f"tenants/{t.id}", {})

    async def get(self, tenant_id: str, *, for_update: bool = False) -> Tenant | None:
        stmt = sa.select(um.Tenant).where(um.Tenant.id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else self._to_domain(row)

    async def save(self, t: Tenant, *, expected_version: int) -> None:
        row = await self._s.get(um.Tenant, t.id)
        if row is None or row.version != expected_version:
            raise EtagMismatch(f"tenants/{t.id}")
        self._apply(row, t)
        await _flush(self._s, f"tenants/{t.id}", {})  # the ORM checks and bumps `version`

    async def list_page(self, status: TenantStatus | None, after_id: str | None, limit: int) -> list[Tenant]:
        stmt = sa.select(um.Tenant).order_by(um.Tenant.id).limit(limit)
        if status is None:
            stmt = stmt.where(um.Tenant.status != TenantStatus.DELETED.value)
        else:
            stmt = stmt.where(um.Tenant.status == status.value)
        if after_id:
            stmt = stmt.where(um.Tenant.id > after_id)
        return [self._to_domain(r) for r in (await self._s.execute(stmt)).scalars()]


# ---- users ------------------------------------------------------------------------------------


class UserRepository:
    def __init__(self, session: AsyncSession, cipher: Cipher) -> None:
        self._s = session
        self._c = cipher

    def _email_hash(self, email: str) -> str:
        return self._c.lookup_hash(normalize_email(email), context="users.email")

    async def _to_domain(self, r: um.User, role_ids: list[str] | None = None) -> User:
        if role_ids is None:
            role_ids = list((await self._s.execute(
                sa.select(um.UserRole.role_id).where(um.UserRole.user_id == r.id).order_by(um.UserRole.id)
            )).scalars())
        return User(
            id=r.id, tenant_id=r.tenant_id, username=r.username,
            email=self._c.decrypt(r.email, context="users.email") or "",
            phone=self._c.decrypt(r.phone, context="users.phone"), real_name=r.real_name,
            avatar_url=r.avatar_url, password_hash=r.password_hash, status=UserStatus(r.status),
            last_login_time=r.last_login_time, last_login_ip=r.last_login_ip,
            failed_login_count=r.failed_login_count, locked_until=r.locked_until, role_ids=role_ids,
            created_at=r.created_at, updated_at=r.updated_at, version=r.version,
            session_version=r.session_version,
        )

    def _apply(self, r: um.User, u: User) -> None:
        r.email = self._c.encrypt(u.email, context="users.email")
        r.email_hash = self._email_hash(u.email)
        r.phone = self._c.encrypt(u.phone, context="users.phone")
        r.phone_hash = self._c.lookup_hash(u.phone, context="users.phone") if u.phone else None
        r.real_name = u.real_name
        r.avatar_url = u.avatar_url
        r.password_hash = u.password_hash
        r.status = u.status.value
        r.last_login_time = u.last_login_time
        r.last_login_ip = u.last_login_ip
        r.failed_login_count = u.failed_login_count
        r.locked_until = u.locked_until
        r.session_version = u.session_version
        if u.updated_at is not None:
            r.updated_at = u.updated_at

    def _duplicates(self, u: User) -> dict[str, tuple[str, str, str]]:
        return {"uk_users_tenant_username": ("user", "username", u.username),
                "uk_users_tenant_email_hash": ("user", "email", u.email)}

    async def add(self, u: User) -> None:
        row = um.User(id=u.id, tenant_id=u.tenant_id, username=u.username, created_at=u.created_at, version=1)
        self._apply(row, u)
        self._s.add(row)
        await _flush(self._s, f"users/{u.id}", self._duplicates(u))

    async def get(self, tenant_id: str, user_id: str, *, for_update: bool = False) -> User | None:
        stmt = sa.select(um.User).where(um.User.id == user_id, um.User.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else await self._to_domain(row)

    async def get_by_username(self, tenant_id: str, username: str, *, for_update: bool = False) -> User | None:
        stmt = sa.select(um.User).where(um.User.tenant_id == tenant_id, um.User.username == username)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else await self._to_domain(row)

    async def find_id_by_email(self, tenant_id: str, email: str) -> str | None:
        return (await self._s.execute(sa.select(um.User.id).where(
            um.User.tenant_id == tenant_id, um.User.email_hash == self._email_hash(email)))).scalar_one_or_none()

    async def save(self, u: User, *, expected_version: int) -> None:
        row = await self._s.get(um.User, u.id)
        if row is None or row.version != expected_version:
            raise EtagMismatch(f"users/{u.id}")
        self._apply(row, u)
        await _flush(self._s, f"users/{u.id}", self._duplicates(u))

    async def list_page(self, tenant_id: str, status: UserStatus | None, after_id: str | None,
                        limit: int) -> list[User]:
        stmt = (sa.select(um.User).where(um.User.tenant_id == tenant_id).order_by(um.User.id).limit(limit))
        if status is not None:
            stmt = stmt.where(um.User.status == status.value)
        if after_id:
            stmt = stmt.where(um.User.id > after_id)
        rows = list((await self._s.execute(stmt)).scalars())
        roles: dict[str, list[str]] = {r.id: [] for r in rows}
        if rows:
            for user_id, role_id in await self._s.execute(
                    sa.select(um.UserRole.user_id, um.UserRole.role_id)
                    .where(um.UserRole.user_id.in_(list(roles))).order_by(um.UserRole.id)):
                roles[user_id].append(role_id)
        return [await self._to_domain(r, roles[r.id]) for r in rows]


# ---- roles --------------------------------------------------------------------------------------


class RoleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    @staticmethod
    def _to_domain(r: um.Role) -> Role:
        return Role(id=r.id, tenant_id=r.tenant_id, role_code=r.role_code, role_name=r.role_name,
                    permissions=list(r.permissions or []), description=r.description, is_system=r.is_system,
                    is_active=r.is_active, created_at=r.created_at, updated_at=r.updated_at, version=r.version)

    async def add(self, role: Role) -> None:
        self._s.add(um.Role(id=role.id, tenant_id=role.tenant_id, role_code=role.role_code,
                            role_name=role.role_name, description=role.description,
                            permissions=list(role.permissions), is_system=role.is_system,
                            is_active=role.is_active, created_at=role.created_at,
                            updated_at=role.updated_at or role.created_at, version=1))
        await _flush(self._s, f"roles/{role.id}",
                     {"uk_roles_tenant_role_code": ("role", "role_code", role.role_code)})

    async def get(self, tenant_id: str, role_id: str, *, for_update: bool = False) -> Role | None:
        stmt = sa.select(um.Role).where(um.Role.id == role_id, um.Role.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else self._to_domain(row)

    async def get_by_code(self, tenant_id: str, code: str) -> Role | None:
        row = (await self._s.execute(sa.select(um.Role).where(
            um.Role.tenant_id == tenant_id, um.Role.role_code == code))).scalar_one_or_none()
        return None if row is None else self._to_domain(row)

    async def save(self, role: Role, *, expected_version: int) -> None:
        row = await self._s.get(um.Role, role.id)
        if row is None or row.version != expected_version:
            raise EtagMismatch(f"roles/{role.id}")
        row.role_name = role.role_name
        row.description = role.description
        row.permissions = list(role.permissions)
        row.is_active = role.is_active
        if role.updated_at is not None:
            row.updated_at = role.updated_at
        await _flush(self._s, f"roles/{role.id}", {})

    async def delete(self, tenant_id: str, role_id: str) -> None:
        await self._s.execute(sa.delete(um.Role).where(um.Role.id == role_id, um.Role.tenant_id == tenant_id))

    async def list_page(self, tenant_id: str, after_id: str | None, limit: int) -> list[Role]:
        stmt = sa.select(um.Role).where(um.Role.tenant_id == tenant_id).order_by(um.Role.id).limit(limit)
        if after_id:
            stmt = stmt.where(um.Role.id > after_id)
        return [self._to_domain(r) for r in (await self._s.execute(stmt)).scalars()]

    async def count_holders(self, role_id: str) -> int:
        return (await self._s.execute(
            sa.select(sa.func.count()).select_from(um.UserRole).where(um.UserRole.role_id == role_id))).scalar_one()

    async def assign(self, tenant_id: str, user_id: str, role_id: str, assigned_by: str, now: datetime) -> bool:
        """True when the user did not hold the role yet (assigning twice is a no-op, so retries are safe)."""
        exists = (await self._s.execute(sa.select(um.UserRole.id).where(
            um.UserRole.user_id == user_id, um.UserRole.role_id == role_id))).scalar_one_or_none()
        if exists is not None:
            return False
        self._s.add(um.UserRole(tenant_id=tenant_id, user_id=user_id, role_id=role_id,
                                assigned_by=assigned_by, assigned_at=now))
        await self._s.flush()
        return True

    async def unassign(self, user_id: str, role_id: str) -> bool:
        """True when the user held the role."""
        result = await self._s.execute(sa.delete(um.UserRole).where(um.UserRole.user_id == user_id,
                                                                    um.UserRole.role_id == role_id))
        return bool(result.rowcount)

    async def holder_ids(self, tenant_id: str, role_id: str) -> list[str]:
        return list((await self._s.execute(sa.select(um.UserRole.user_id).where(
            um.UserRole.tenant_id == tenant_id, um.UserRole.role_id == role_id))).scalars())

    async def active_permissions_of_user(self, tenant_id: str, user_id: str) -> list[list[str]]:
        rows = await self._s.execute(
            sa.select(um.Role.permissions).join(um.UserRole, um.UserRole.role_id == um.Role.id)
            .where(um.UserRole.user_id == user_id, um.Role.tenant_id == tenant_id, um.Role.is_active.is_(True)))
        return [list(p or []) for p in rows.scalars()]


# ---- API keys -----------------------------------------------------------------------------------


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    @staticmethod
    def _to_domain(r: um.ApiKey) -> ApiKey:
        return ApiKey(id=r.id, tenant_id=r.tenant_id, role_id=r.role_id, display_name=r.display_name,
                      prefix=r.prefix, secret_hash=r.secret_hash, created_by=r.created_by,
                      created_at=r.created_at, revoked_at=r.revoked_at, expires_at=r.expires_at,
                      last_used_at=r.last_used_at)

    async def add(self, key: ApiKey) -> None:
        self._s.add(um.ApiKey(id=key.id, tenant_id=key.tenant_id, role_id=key.role_id,
                              display_name=key.display_name, prefix=key.prefix, secret_hash=key.secret_hash,
                              created_by=key.created_by, created_at=key.created_at, expires_at=key.expires_at))
        await self._s.flush()

    async def get(self, tenant_id: str, key_id: str, *, for_update: bool = False) -> ApiKey | None:
        stmt = sa.select(um.ApiKey).where(um.ApiKey.id == key_id, um.ApiKey.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else self._to_domain(row)

    async def save(self, key: ApiKey) -> None:
        await self._s.execute(sa.update(um.ApiKey).where(um.ApiKey.id == key.id).values(
            revoked_at=key.revoked_at, last_used_at=key.last_used_at, display_name=key.display_name))

    async def touch(self, key_id: str, now: datetime) -> None:
        await self._s.execute(sa.update(um.ApiKey).where(um.ApiKey.id == key_id).values(last_used_at=now))

    async def list_page(self, tenant_id: str, show_revoked: bool, after_id: str | None,
                        limit: int) -> list[ApiKey]:
        stmt = sa.select(um.ApiKey).where(um.ApiKey.tenant_id == tenant_id).order_by(um.ApiKey.id).limit(limit)
        if not show_revoked:
            stmt = stmt.where(um.ApiKey.revoked_at.is_(None))
        if after_id:
            stmt = stmt.where(um.ApiKey.id > after_id)
        return [self._to_domain(r) for r in (await self._s.execute(stmt)).scalars()]

    async def ids_for_role(self, tenant_id: str, role_id: str, *, active_only: bool = False) -> list[str]:
        stmt = sa.select(um.ApiKey.id).where(um.ApiKey.tenant_id == tenant_id, um.ApiKey.role_id == role_id)
        if active_only:
            stmt = stmt.where(um.ApiKey.revoked_at.is_(None))
        return list((await self._s.execute(stmt)).scalars())
