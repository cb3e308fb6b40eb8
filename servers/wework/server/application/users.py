"""User use cases: create, read, list, update, disable/enable, and login with lockout."""

from __future__ import annotations

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
    must_exist,
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
from wework.domain.update_mask import check_update_mask
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.persistence.repositories.identity import (
    UserRepository,
)
from wework.server.application.authn import user_credential_key
from wework.server.application.context import AppContext, require_id
from wework.server.application.delegation import require_may_act_on_user
from wework.server.application.login_limits import LoginRateLimiter
from wework.server.application.roles import RoleUseCases
from wework.server.application.tenants import TenantUseCases

# The one answer to every refused login: unknown tenant or user, wrong password, a locked or
# disabled user. Anything more precise would tell a guesser which usernames exist.
_BAD_LOGIN = "invalid tenant code, username or password"
# Longer values cannot exist (validate_user_fields), so refusing them says nothing about users
# and keeps long inputs out of the hash and the rate limit keys.
_LOGIN_FIELD_LIMITS = (("tenant_code", 50), ("username", 50), ("password", 128))


class UserUseCases:
    def __init__(self, ctx: AppContext, tenants: TenantUseCases, login_limiter: LoginRateLimiter) -> None:
        self._ctx = ctx
        self._roles = RoleUseCases(ctx)  # CreateUser grants its roles as AssignRole does
        self._tenants = tenants
        self._login_limiter = login_limiter

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
        # Argon2 is deliberately slow: outside the transaction, through the hashing limiter.
        password_hash = await self._ctx.passwords.hash_async(values["password"])
        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            idem = uow.idempotency
            users = uow.users
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
            return await self._require(uow.users, tenant_id, user_id)

    async def list_users(self, principal: Principal, status: UserStatus | None, page_size: int,
                         page_token: str) -> tuple[list[User], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        after = self._ctx.page_tokens.after_id(page_token, "users", tenant_id)
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            rows = await uow.users.list_page(tenant_id, status, after, limit + 1)
        return self._ctx.page_tokens.id_page(rows, limit, "users", tenant_id)

    async def update_user(self, principal: Principal, user_id: str, values: dict, paths: list[str],
                          etag: str) -> User:
        tenant_id = principal.require_tenant()
        require_id(user_id, "user.id")
        check_update_mask(paths, USER_MUTABLE_FIELDS)
        changed = {p: values.get(p) for p in paths}
        validate_user_fields(changed, creating=False)
        password_changed = "password" in changed
        if password_changed:
            changed["password_hash"] = await self._ctx.passwords.hash_async(changed.pop("password"))
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            users = uow.users
            current = await self._require(users, tenant_id, user_id, for_update=True)
            await require_may_act_on_user(principal, uow.roles, tenant_id, user_id)
            check_etag(etag, current.version, f"users/{user_id}")
            if "email" in changed and changed["email"] and \
                    (await users.find_id_by_email(tenant_id, changed["email"])) not in (None, user_id):
                raise AlreadyExists("user", "email", changed["email"])
            updated = replace(current, **{k: (v or None) if k in ("phone", "real_name", "avatar_url") else v
                                          for k, v in changed.items()},
                              updated_at=self._ctx.clock(), version=current.version + 1)
            if password_changed:  # whoever knew the old password is logged out too
                updated = updated.ending_sessions()
            await users.save(updated, expected_version=current.version)
        await self._invalidate(tenant_id, user_id)
        return updated

    async def set_enabled(self, principal: Principal, user_id: str, enabled: bool) -> User:
        tenant_id = principal.require_tenant()
        require_id(user_id, "id")
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            users = uow.users
            current = await self._require(users, tenant_id, user_id, for_update=True)
            await require_may_act_on_user(principal, uow.roles, tenant_id, user_id)
            status = UserStatus.ACTIVE if enabled else UserStatus.INACTIVE
            updated = replace(current, status=status, failed_login_count=0 if enabled else current.failed_login_count,
                              locked_until=None if enabled else current.locked_until,
                              updated_at=self._ctx.clock(), version=current.version + 1)
            if not enabled:  # enabling again must not bring the old tokens back
                updated = updated.ending_sessions()
            await users.save(updated, expected_version=current.version)
        await self._invalidate(tenant_id, user_id)
        return updated

    # -- login ---------------------------------------------------------------------------------

    async def login(self, tenant_code: str, username: str, password: str,
                    ip: str | None) -> tuple[str, datetime, User]:
        """Every refusal (unknown tenant or user, wrong password, locked or disabled user) answers
        the same UNAUTHENTICATED after one Argon2 verify, so neither the answer nor its time tells
        which usernames exist. The verify runs outside any transaction: a flood of logins waits
        for the hashing limiter without holding database connections."""
        violations = [FieldViolation(name, f"{name} is required") if not value else
                      FieldViolation(name, f"must be at most {limit} characters")
                      for (name, limit), value in zip(_LOGIN_FIELD_LIMITS, (tenant_code, username, password),
                                                      strict=True)
                      if not value or len(value) > limit]
        if violations:
            raise InvalidArgument(violations)
        await self._login_limiter.admit(tenant_code, ip)
        async with self._ctx.db.directory_unit_of_work(read_only=True) as uow:
            holder = await uow.directory.tenant_id_for_code(tenant_code)
        status = None if holder is None else await self._tenants.tenant_status(holder.tenant_id)
        if holder is None or status is None or status is TenantStatus.DELETED:
            await self._ctx.passwords.dummy_verify_async(password)
            raise Unauthenticated(_BAD_LOGIN)
        if status is TenantStatus.SUSPENDED:
            raise FailedPrecondition("the tenant is suspended", reason="TENANT_SUSPENDED")
        tenant_id = holder.tenant_id

        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            seen = await uow.users.get_by_username(tenant_id, username)
        if seen is None:
            await self._ctx.passwords.dummy_verify_async(password)
            raise Unauthenticated(_BAD_LOGIN)
        # Verified even when locked or disabled, where the result is ignored: every refusal costs the same.
        password_ok = await self._ctx.passwords.verify_async(seen.password_hash, password)

        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            users = uow.users
            # FOR UPDATE: concurrent wrong guesses must each count.
            user = await users.get(tenant_id, seen.id, for_update=True)
            if user is None:
                raise Unauthenticated(_BAD_LOGIN)
            # A password changed meanwhile: the verify above checked the old one.
            outcome = decide_login(user, password_ok and user.password_hash == seen.password_hash, now, ip,
                                   self._ctx.login_policy)
            if outcome.user is not None:
                await users.save(replace(outcome.user, version=user.version + 1), expected_version=user.version)
                user = replace(outcome.user, version=user.version + 1)
            role_perms = await uow.roles.active_permissions_of_user(tenant_id, user.id) \
                if outcome.allowed else []
        if not outcome.allowed:
            raise Unauthenticated(_BAD_LOGIN)
        await self._invalidate(tenant_id, user.id)
        # "perms" in the token only informs the client: calls are checked against current roles.
        token, expires = self._ctx.tokens.issue(user.id, tenant_id, sorted(tenant_grants(role_perms)),
                                                session_version=user.session_version)
        return token, expires, user

    # -- helpers ---------------------------------------------------------------------------------

    async def _acting_tenant(self, principal: Principal) -> str:
        tenant_id = principal.require_tenant()
        if principal.is_platform_admin:
            # The admin names the tenant in a header; it must exist.
            async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
                if await uow.tenants.get(tenant_id) is None:
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
        return must_exist(await users.get(tenant_id, user_id, for_update=for_update), "user", user_id)

    async def _invalidate(self, tenant_id: str, user_id: str) -> None:
        await self._ctx.credential_cache.invalidate(user_credential_key(tenant_id, user_id))
