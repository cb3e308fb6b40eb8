"""What the runtime serves, and which permission each RPC needs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

import grpc

logger = logging.getLogger(__name__)

# Infrastructure services every server exposes without a credential: probes and
# operators' grpcurl must work before anyone holds an API key.
ALWAYS_PUBLIC_SERVICES: frozenset[str] = frozenset({"grpc.health.v1.Health"})
ALWAYS_PUBLIC_PREFIXES: tuple[str, ...] = ("grpc.reflection.",)


@dataclass
class ServiceRegistration:
    name: str  # short name used in config, e.g. "tenant"
    service_full_name: str  # e.g. "wework.v1.TenantService"
    servicer: object
    add_to_server: Callable[[object, grpc.aio.Server], None]
    # Short method name -> permission, or None for a public method (e.g. "Login").
    # A method missing here is refused (PERMISSION_DENIED): forgetting a rule
    # must never open a method.
    method_permissions: dict[str, str | None] = field(default_factory=dict)


class Access(Enum):
    PUBLIC = "public"
    PROTECTED = "protected"
    UNDECLARED = "undeclared"


@dataclass(frozen=True)
class MethodRule:
    access: Access
    permission: str | None = None


_PUBLIC = MethodRule(Access.PUBLIC)
_UNDECLARED = MethodRule(Access.UNDECLARED)


def split_method(method_path: str) -> tuple[str, str]:
    """"/wework.v1.TenantService/GetTenant" -> ("wework.v1.TenantService", "GetTenant")."""
    service, _, method = method_path.lstrip("/").partition("/")
    return service, method


class ServiceRegistry:
    """Looks up the access rule of a full gRPC method path."""

    def __init__(self, registrations: Iterable[ServiceRegistration]) -> None:
        self._by_service: dict[str, ServiceRegistration] = {}
        for reg in registrations:
            if reg.service_full_name in self._by_service:
                raise ValueError(f"service {reg.service_full_name} registered twice")
            self._by_service[reg.service_full_name] = reg

    @property
    def registrations(self) -> list[ServiceRegistration]:
        return list(self._by_service.values())

    def rule(self, method_path: str) -> MethodRule:
        service, method = split_method(method_path)
        if service in ALWAYS_PUBLIC_SERVICES or service.startswith(ALWAYS_PUBLIC_PREFIXES):
            return _PUBLIC
        reg = self._by_service.get(service)
        if reg is None or method not in reg.method_permissions:
            return _UNDECLARED
        permission = reg.method_permissions[method]
        return _PUBLIC if permission is None else MethodRule(Access.PROTECTED, permission)


def check_permission_tables(registrations: Iterable[ServiceRegistration]) -> list[str]:
    """Compares each table with the service's proto descriptor; logs and returns the problems.

    Run at start-up so a forgotten rule shows in the first log lines rather than
    as a PERMISSION_DENIED in production.
    """
    from google.protobuf import descriptor_pool

    problems: list[str] = []
    pool = descriptor_pool.Default()
    for reg in registrations:
        try:
            methods = {m.name for m in pool.FindServiceByName(reg.service_full_name).methods}
        except KeyError:
            problems.append(f"{reg.service_full_name}: no descriptor in the default pool")
            continue
        for missing in sorted(methods - reg.method_permissions.keys()):
            problems.append(f"{reg.service_full_name}/{missing}: no permission rule (will be refused)")
        for unknown in sorted(reg.method_permissions.keys() - methods):
            problems.append(f"{reg.service_full_name}/{unknown}: rule for a method the service lacks")
    for problem in problems:
        logger.error("permission table: %s", problem)
    return problems
