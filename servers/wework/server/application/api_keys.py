"""API key use cases: keys for backends, bound to a role, secret shown once."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from wework.domain.access import Principal
from wework.domain.errors import FailedPrecondition, PreconditionViolation, must_exist
from wework.domain.identity import ApiKey, validate_api_key_fields, validate_request_id
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.server.application.context import AppContext, require_id
from wework.server.security.api_keys import generate_api_key


class ApiKeyUseCases:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    async def create_api_key(self, principal: Principal, display_name: str, role_id: str,
                             expires_at: datetime | None, request_id: str) -> tuple[ApiKey, str]:
        """Returns the key and its full secret ("" when a retry returns the first key)."""
        tenant_id = principal.require_tenant()
        validate_request_id(request_id)
        now = self._ctx.clock()
        validate_api_key_fields(display_name, role_id, expires_at, now)
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            keys, idem = uow.api_keys, uow.idempotency
            if request_id:
                done = await idem.get(tenant_id, "CreateApiKey", request_id)
                if done is not None and (existing := await keys.get(tenant_id, done)) is not None:
                    return existing, ""
            role = must_exist(await uow.roles.get(tenant_id, role_id), "role", role_id)
            # The delegation rule: a key can do nothing its creator cannot.
            principal.require_delegable(role.permissions, f"roles/{role_id}")
            if not role.is_active:
                raise FailedPrecondition("the role is inactive",
                                         [PreconditionViolation("ROLE_INACTIVE", f"roles/{role_id}",
                                                                "role is inactive")])
            key_id = new_id()
            full_key, prefix, secret_hash = generate_api_key(tenant_id, key_id)
            key = ApiKey(id=key_id, tenant_id=tenant_id, role_id=role_id, display_name=display_name,
                         prefix=prefix, secret_hash=secret_hash, created_by=principal.subject_id,
                         created_at=now, expires_at=expires_at)
            await keys.add(key)
            if request_id:
                await idem.put(tenant_id, "CreateApiKey", request_id, key.id, now)
        return key, full_key

    async def get_api_key(self, principal: Principal, key_id: str) -> ApiKey:
        tenant_id = principal.require_tenant()
        require_id(key_id, "id")
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            key = await uow.api_keys.get(tenant_id, key_id)
        return must_exist(key, "api_key", key_id)

    async def list_api_keys(self, principal: Principal, show_revoked: bool, page_size: int,
                            page_token: str) -> tuple[list[ApiKey], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        after = self._ctx.page_tokens.after_id(page_token, "api_keys", tenant_id)
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            rows = await uow.api_keys.list_page(tenant_id, show_revoked, after, limit + 1)
        return self._ctx.page_tokens.id_page(rows, limit, "api_keys", tenant_id)

    async def revoke_api_key(self, principal: Principal, key_id: str) -> ApiKey:
        tenant_id = principal.require_tenant()
        require_id(key_id, "id")
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            keys = uow.api_keys
            key = must_exist(await keys.get(tenant_id, key_id, for_update=True), "api_key", key_id)
            if key.revoked_at is None:  # revoking twice is harmless and keeps the first time
                key = replace(key, revoked_at=self._ctx.clock())
                await keys.save(key)
        # Every process drops the key from its L1 through the cache's pub/sub.
        await self._ctx.credential_cache.invalidate(f"apikey:{key_id}")
        return key
