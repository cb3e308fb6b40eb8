"""Who is calling, and what they may do. Pure: no I/O.

Permissions are dotted strings such as "users.read" or "messages.send". A grant
may end in ".*" (everything below that prefix) or be "*" (everything). The
platform admin holds "*" and, unlike tenant principals, "platform.*".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from wework.domain.errors import DelegationDenied, NotFound, PermissionDenied


class PrincipalKind(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    USER = "user"
    API_KEY = "api_key"


def permission_granted(granted: frozenset[str] | set[str], required: str) -> bool:
    """True when one of the grants covers `required` (exact, "prefix.*" or "*")."""
    if required in granted or "*" in granted:
        return True
    parts = required.split(".")
    return any(".".join(parts[:i]) + ".*" in granted for i in range(1, len(parts)))


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    subject_id: str  # user id, API key id, or "platform-admin"
    tenant_id: str | None  # None only for a platform admin not acting inside a tenant
    permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_platform_admin(self) -> bool:
        return self.kind is PrincipalKind.PLATFORM_ADMIN

    def can(self, permission: str) -> bool:
        return permission_granted(self.permissions, permission)

    def require(self, permission: str) -> None:
        if not self.can(permission):
            raise PermissionDenied(permission)

    def require_delegable(self, grants: Iterable[str], subject: str) -> None:
        """The delegation rule: raises DelegationDenied unless this principal holds every
        permission that `grants` give (wildcards expanded). A platform admin holds them all."""
        if self.is_platform_admin:
            return
        missing = sorted(covered_permissions(grants) - covered_permissions(self.permissions))
        if missing:
            raise DelegationDenied(missing, subject)

    def require_tenant(self) -> str:
        """The tenant this call acts in. A platform admin must name one with x-wework-tenant."""
        if self.tenant_id is None:
            # Answer as for an absent resource: there is no tenant to act in.
            raise NotFound("tenant", "(none: send the x-wework-tenant header)")
        return self.tenant_id


# Permission strings of the platform, in one place so that roles, docs and the
# per-RPC table agree.
class Permissions:
    PLATFORM_TENANTS_READ = "platform.tenants.read"
    PLATFORM_TENANTS_WRITE = "platform.tenants.write"
    TENANT_READ = "tenant.read"
    USERS_READ = "users.read"
    USERS_WRITE = "users.write"
    ROLES_READ = "roles.read"
    ROLES_WRITE = "roles.write"
    API_KEYS_READ = "api_keys.read"
    API_KEYS_WRITE = "api_keys.write"
    ACCOUNTS_READ = "accounts.read"
    ACCOUNTS_WRITE = "accounts.write"
    MESSAGES_READ = "messages.read"
    MESSAGES_SEND = "messages.send"
    TEMPLATES_READ = "templates.read"
    TEMPLATES_WRITE = "templates.write"
    CALLBACKS_READ = "callbacks.read"
    CALLBACKS_WRITE = "callbacks.write"
    CALLBACKS_REPLAY = "callbacks.replay"
    WEBHOOKS_READ = "webhooks.read"
    WEBHOOKS_WRITE = "webhooks.write"
    REPORTS_READ = "reports.read"
    MEDIA_READ = "media.read"
    MEDIA_WRITE = "media.write"
    # SimulatorService: act as the phone, the network or a chat partner (simulator provider only).
    SIMULATOR_CONTROL = "simulator.control"


# Tenant-level grants never include "platform.*": "*" inside a tenant role is
# expanded to every tenant permission, never to platform administration.
TENANT_PERMISSIONS: frozenset[str] = frozenset(
    v for k, v in vars(Permissions).items() if k.isupper() and not v.startswith("platform.")
)

SYSTEM_ROLES: dict[str, tuple[str, list[str]]] = {
    # code: (name, permissions)
    "admin": ("Administrator", ["*"]),
    "operator": (
        "Operator",
        [
            "tenant.read", "users.read", "roles.read", "accounts.*", "messages.*",
            "templates.*", "callbacks.read", "callbacks.replay", "webhooks.read", "reports.read", "media.*",
        ],
    ),
    "viewer": (
        "Viewer",
        [
            "tenant.read", "users.read", "roles.read", "accounts.read", "messages.read",
            "templates.read", "callbacks.read", "webhooks.read", "reports.read", "media.read",
        ],
    ),
}


def covered_permissions(grants: Iterable[str]) -> frozenset[str]:
    """The concrete tenant permissions that `grants` give: "*" and "prefix.*" expanded against
    the catalogue, platform grants dropped. Two grant lists give the same power iff their
    covered permissions are equal, whatever wildcards they are written with."""
    granted = frozenset(grants)
    return frozenset(p for p in TENANT_PERMISSIONS if permission_granted(granted, p))


def tenant_grants(role_permissions: list[list[str]]) -> frozenset[str]:
    """Union of a tenant principal's role permissions, with platform grants removed."""
    grants: set[str] = set()
    for perms in role_permissions:
        for p in perms:
            if p == "*":
                grants |= TENANT_PERMISSIONS
            elif not p.startswith("platform.") and p != "platform":
                grants.add(p)
    return frozenset(grants)
