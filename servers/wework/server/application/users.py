"""User use cases: create, read, list, update, disable/enable, and login with lockout."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime

from wework.domain.access import Permissions, Principal, tenant_grants
from wework.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    UserLocked,
)
from wework.domain.identity import (
    MAX_ROLES_ON_CREATE,
    USER_MUTABLE_FIELDS,
    TenantStatus,
    User,
    UserStatus,
    check_etag,
    decide_login,
    validate_request_id,
    validate_user_fields,
)
from wework.persistence.ids import new_id
from wework.persistence.pagination import decode_page_token, encode_page_token, normalize_page_size
from wework.persistence.repositories.identity import (
    DirectoryRepository,
    IdempotencyRepository,
    RoleRepository,
    TenantRepository,
    UserRepository,
)
from wework.server.application.context import AppContext, require_id
from wework.server.application.roles import RoleUseCases
from wework.server.application.tenants import TenantUseCases

_BAD_LOGIN = "invalid tenant code, username or password"


class UserUseCases:
    def __init__(self, ctx: AppContext, tenants: TenantUseCases) -> None:
        self._ctx = ctx
        self._roles = RoleUseCases(ctx)  # CreateUser grants its roles as AssignRole does
        self._tenants = tenants

    async def create_user(self, principal: Principal, values: dict, request_id: str,
                          role_ids: list[str] | None = None) -> User:
        """CreateUser; `role_ids` are granted in the same transaction through AssignRole's use
        case, so a role the caller may not grant leaves no user behind."""
        tenant_id = await self._acting_tenant(principal)
        role_ids = list(dict.fromkeys(role_ids or []))
        if len(role_ids) > MAX_ROLES_ON_CREATE:
            raise InvalidArgument(FieldViolation("user.role_ids", f"at most {MAX_ROLES_ON_CREATE} roles"))
        for i, role_id in enumerate(role_ids):
            require_id(role_id, f"user.role_ids[{i}]")
        if role_ids:
            principal.require(Permissions.ROLES_WRITE)  # what AssignRole itself needs
        validate_request_id(request_id)
        validate_user_fields(values, creating=True)
        # Argon2 is deliberately slow: keep it off the event loop.
        password_hash = await asyncio.to_thread(self._ctx.passwords.hash, values["password"])
        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            idem = IdempotencyRepository(uow.session)
            users = UserRepository(uow.session, self._ctx.cipher)
            if request_id:
                done = await idem.get(tenant_id, "CreateUser", request_id)
                if done is not None:
                    existing = await users.get(tenant_id, done)
                    if existing is not None:
                        return existing
            await self._ensure_unique(users, tenant_id, values["username"], values["email"])
            user = User(id=new_id(), tenant_id=tenant_id, username=values["username"],
                        email=values["email"], phone=values.get("phone") or None,
                        real_name=values.get("real_name") or None,
                        avatar_url=values.get("avatar_url") or None, password_hash=password_hash,
                        created_at=now, updated_at=now)
            await users.add(user)
            for role_id in role_ids:
                user = await self._roles.assign(principal, user.id, role_id, assign=True, within=uow)
            if request_id:
                await idem.put(tenant_id, "CreateUser", request_id, user.id, now)
        return user

    async def get_user(self, principal: Principal, user_id: str) -> User:
        tenant_id = principal.require_tenant()
        require_id(user_id, "id")
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            return await self._require(UserRepository(uow.session, self._ctx.cipher), tenant_id, user_id)

    async def list_users(self, principal: Principal, status: UserStatus | None, page_size: int,
                         page_token: str) -> tuple[list[User], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        after = decode_page_token(page_token, "users")["after"] if page_token else None
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            rows = await UserRepository(uow.session, self._ctx.cipher).list_page(tenant_id, status, after,
                                                                                 limit + 1)
        page = rows[:limit]
        token = encode_page_token({"after": page[-1].id}, "users") if len(rows) > limit else ""
        return page, token

    async def update_user(self, principal: Principal, user_id: str, values: dict, paths: list[str],
                          etag: str) -> User:
        tenant_id = principal.require_tenant()
        require_id(user_id, "user.id")
        if not paths:
            raise InvalidArgument(FieldViolation("update_mask", "name at least one field to update"))
        unknown = [p for p in paths if p not in USER_MUTABLE_FIELDS]
        if unknown:
            raise InvalidArgument([FieldViolation("update_mask", f"field {p!r} cannot be updated")
                                   for p in unknown])
        changed = {p: values.get(p) for p in paths}
        validate_user_fields(changed, creating=False)
        if "password" in changed:
            changed["password_hash"] = await asyncio.to_thread(self._ctx.passwords.hash, changed.pop("password"))
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            users = UserRepository(uow.session, self._ctx.cipher)
            current = await self._require(users, tenant_id, user_id, for_update=True)
            check_etag(etag, current.version, f"users/{user_id}")
            if "email" in changed and changed["email"] and \
                    (await users.find_id_by_email(tenant_id, changed["email"])) not in (None, user_id):
                raise AlreadyExists("user", "email", changed["email"])
            updated = replace(current, **{k: (v or None) if k in ("phone", "real_name", "avatar_url") else v
                                          for k, v in changed.items()},
                              updated_at=self._ctx.clock(), version=current.version + 1)
            await users.save(updated, expected_version=current.version)
        await self._invalidate(user_id)
        return updated

    async def set_enabled(self, principal: Principal, user_id: str, enabled: bool) -> User:
        tenant_id = principal.require_tenant()
        require_id(user_id, "id")
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            users = UserRepository(uow.session, self._ctx.cipher)
            current = await self._require(users, tenant_id, user_id, for_update=True)
            status = UserStatus.ACTIVE if enabled else UserStatus.INACTIVE
            updated = replace(current, status=status, failed_login_count=0 if enabled else current.failed_login_count,
                              locked_until=None if enabled else current.locked_until,
                              updated_at=self._ctx.clock(), version=current.version + 1)
            await users.save(updated, expected_version=current.version)
        await self._invalidate(user_id)
        return updated

    # -- login ---------------------------------------------------------------------------------

    async def login(self, tenant_code: str, username: str, password: str,
                    ip: str | None) -> tuple[str, datetime, User]:
        missing = [FieldViolation(name, f"{name} is required")
                   for name, value in (("tenant_code", tenant_code), ("username", username),
                                       ("password", password)) if not value]
        if missing:
            raise InvalidArgument(missing)
        async with self._ctx.db.directory_unit_of_work() as uow:
            holder = await DirectoryRepository(uow.session).tenant_id_for_code(tenant_code)
        if holder is None:
            await asyncio.to_thread(self._ctx.passwords.dummy_verify, password)
            raise Unauthenticated(_BAD_LOGIN)
        tenant_id = holder.tenant_id
        status = await self._tenants.tenant_status(tenant_id)
        if status is None or status is TenantStatus.DELETED:
            raise Unauthenticated(_BAD_LOGIN)
        if status is TenantStatus.SUSPENDED:
            raise FailedPrecondition("the tenant is suspended", reason="TENANT_SUSPENDED")

        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            users = UserRepository(uow.session, self._ctx.cipher)
            # FOR UPDATE: concurrent wrong guesses must each count.
            user = await users.get_by_username(tenant_id, username, for_update=True)
            if user is None:
                await asyncio.to_thread(self._ctx.passwords.dummy_verify, password)
                raise Unauthenticated(_BAD_LOGIN)
            was_locked = user.locked_until is not None and user.locked_until > now
            password_ok = False
            if not was_locked:
                password_ok = await asyncio.to_thread(self._ctx.passwords.verify, user.password_hash, password)
            outcome = decide_login(user, password_ok, now, ip, self._ctx.login_policy)
            if outcome.user is not None:
                await users.save(replace(outcome.user, version=user.version + 1), expected_version=user.version)
                user = replace(outcome.user, version=user.version + 1)
            role_perms = await RoleRepository(uow.session).active_permissions_of_user(tenant_id, user.id) \
                if outcome.allowed else []
        if was_locked:
            raise UserLocked(outcome.locked_seconds)
        if not outcome.allowed:
            raise Unauthenticated(_BAD_LOGIN)
        await self._invalidate(user.id)
        token, expires = self._ctx.tokens.issue(user.id, tenant_id, sorted(tenant_grants(role_perms)),
                                                session_version=0)
        return token, expires, user

    # -- helpers ---------------------------------------------------------------------------------

    async def _acting_tenant(self, principal: Principal) -> str:
        tenant_id = principal.require_tenant()
        if principal.is_platform_admin:
            # The admin names the tenant in a header; it must exist.
            async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
                if await TenantRepository(uow.session, self._ctx.cipher).get(tenant_id) is None:
                    raise NotFound("tenant", tenant_id)
        return tenant_id

    @staticmethod
    async def _ensure_unique(users: UserRepository, tenant_id: str, username: str, email: str) -> None:
        if await users.get_by_username(tenant_id, username) is not None:
            raise AlreadyExists("user", "username", username)
        if await users.find_id_by_email(tenant_id, email) is not None:
            raise AlreadyExists("user", "email", email)

    @staticmethod
    async def _require(users: UserRepository, tenant_id: str, user_id: str, *, for_update: bool = False) -> User:
        user = await users.get(tenant_id, user_id, for_update=for_update)
        if user is None:
            raise NotFound("user", user_id)
        return user

    async def _invalidate(self, user_id: str) -> None:
        await self._ctx.credential_cache.invalidate(f"user:{user_id}")
