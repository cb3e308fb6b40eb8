"""The delegation rule's check on users (docs/authentication.md#the-delegation-rule): a principal
may change a user (fields, password, status, roles) only if it holds every permission that user
holds now. Grants themselves are checked with Principal.require_delegable."""

from __future__ import annotations

from itertools import chain

from wework.domain.access import Principal
from wework.persistence.repositories.identity import RoleRepository


async def require_may_act_on_user(principal: Principal, roles: RoleRepository, tenant_id: str,
                                  user_id: str) -> None:
    if principal.is_platform_admin:
        return
    held = await roles.active_permissions_of_user(tenant_id, user_id)
    principal.require_delegable(chain.from_iterable(held), f"users/{user_id}")
