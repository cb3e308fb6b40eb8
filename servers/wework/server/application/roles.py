"""Role use cases: permission lists, and giving them to users.

Every write obeys the delegation rule (docs/authentication.md): the caller must hold every
permission of the role it creates, edits, assigns or unassigns, and every permission of the
user it assigns to.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

from wework.domain.access import Principal
from wework.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    PreconditionViolation,
    must_exist,
)
from wework.domain.identity import ROLE_MUTABLE_FIELDS, Role, User, check_etag, validate_request_id
from wework.domain.update_mask import check_update_mask
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.persistence.repositories.identity import (
    RoleRepository,
)
from wework.persistence.uow import UnitOfWork
from wework.server.application.authn import user_credential_key
from wework.server.application.context import AppContext, require_id
from wework.server.application.delegation import require_may_act_on_user


class RoleUseCases:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    async def create_role(self, principal: Principal, role: Role, request_id: str) -> Role:
        tenant_id = principal.require_tenant()
        validate_request_id(request_id)
        role = replace(role, id="", tenant_id=tenant_id, is_system=False, is_active=True)
        role.validate()
        principal.require_delegable(role.permissions, f"roles/{role.role_code}")
        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            roles, idem = uow.roles, uow.idempotency
            if request_id:
                done = await idem.get(tenant_id, "CreateRole", request_id)
                if done is not None and (existing := await roles.get(tenant_id, done)) is not None:
                    return existing
            if await roles.get_by_code(tenant_id, role.role_code) is not None:
                raise AlreadyExists("role", "role_code", role.role_code)
            role = replace(role, id=new_id(), created_at=now, updated_at=now, version=1)
            await roles.add(role)
            if request_id:
                await idem.put(tenant_id, "CreateRole", request_id, role.id, now)
        return role

    async def get_role(self, principal: Principal, role_id: str) -> Role:
        tenant_id = principal.require_tenant()
        require_id(role_id, "id")
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            return await self._require(uow.roles, tenant_id, role_id)

    async def list_roles(self, principal: Principal, page_size: int, page_token: str) -> tuple[list[Role], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        after = self._ctx.page_tokens.after_id(page_token, "roles", tenant_id)
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            rows = await uow.roles.list_page(tenant_id, after, limit + 1)
        return self._ctx.page_tokens.id_page(rows, limit, "roles", tenant_id)

    async def update_role(self, principal: Principal, changes: Role, paths: list[str], etag: str) -> Role:
        tenant_id = principal.require_tenant()
        require_id(changes.id, "role.id")
        check_update_mask(paths, ROLE_MUTABLE_FIELDS)
        changes.validate(fields=frozenset(paths))
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            roles = uow.roles
            current = await self._require(roles, tenant_id, changes.id, for_update=True)
            current.ensure_mutable()
            check_etag(etag, current.version, f"roles/{current.id}")
            updated = replace(current, **{p: getattr(changes, p) for p in paths},
                              updated_at=self._ctx.clock(), version=current.version + 1)
            # Both: nobody edits a role stronger than themselves, nor makes one.
            principal.require_delegable([*current.permissions, *updated.permissions], f"roles/{current.id}")
            await roles.save(updated, expected_version=current.version)
            key_ids = await uow.api_keys.ids_for_role(tenant_id, current.id)
            holder_ids = await roles.holder_ids(tenant_id, current.id)
        # Keys and users carry their role's permissions in the credential cache: drop them, so
        # the edit applies to the very next call of every holder, in every process.
        for key_id in key_ids:
            await self._ctx.credential_cache.invalidate(f"apikey:{key_id}")
        for user_id in holder_ids:
            await self._ctx.credential_cache.invalidate(user_credential_key(tenant_id, user_id))
        return updated

    async def delete_role(self, principal: Principal, role_id: str) -> None:
        tenant_id = principal.require_tenant()
        require_id(role_id, "id")
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            roles = uow.roles
            role = await self._require(roles, tenant_id, role_id, for_update=True)
            role.ensure_mutable()
            holders = await roles.count_holders(role_id)
            # Revoked keys still name their role (kept for audit), so they count too.
            keys = await uow.api_keys.ids_for_role(tenant_id, role_id)
            if holders or keys:
                raise FailedPrecondition(
                    "the role is still in use",
                    [PreconditionViolation("ROLE_IN_USE", f"roles/{role_id}",
                                           f"{holders} user(s) and {len(keys)} API key(s) hold the role")])
            await roles.delete(tenant_id, role_id)

    async def assign(self, principal: Principal, user_id: str, role_id: str, *, assign: bool,
                     within: UnitOfWork | None = None) -> User:
        """AssignRole / UnassignRole. `within`: the caller's open unit of work (CreateUser with
        role_ids grants through this same path, so every rule about granting applies to it)."""
        tenant_id = principal.require_tenant()
        require_id(user_id, "user_id")
        require_id(role_id, "role_id")
        async with nullcontext(within) if within is not None \
                else self._ctx.db.unit_of_work("user", tenant_id) as uow:
            users, roles = uow.users, uow.roles
            user = must_exist(await users.get(tenant_id, user_id, for_update=True), "user", user_id)
            role = await self._require(roles, tenant_id, role_id)
            principal.require_delegable(role.permissions, f"roles/{role_id}")
            await require_may_act_on_user(principal, roles, tenant_id, user_id)
            if assign:
                changed = await roles.assign(tenant_id, user_id, role_id, principal.subject_id, self._ctx.clock())
            else:
                changed = await roles.unassign(user_id, role_id)
            if changed:  # a role change ends the user's earlier sessions
                await users.save(replace(user, version=user.version + 1, updated_at=self._ctx.clock())
                                 .ending_sessions(), expected_version=user.version)
            user = await users.get(tenant_id, user_id)
        await self._ctx.credential_cache.invalidate(user_credential_key(tenant_id, user_id))
        assert user is not None
        return user

    @staticmethod
    async def _require(roles: RoleRepository, tenant_id: str, role_id: str, *, for_update: bool = False) -> Role:
        return must_exist(await roles.get(tenant_id, role_id, for_update=for_update), "role", role_id)
