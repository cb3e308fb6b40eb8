"""Domain errors. The gRPC layer maps each to a status code with google.rpc details.

Application services and domain code raise these; they never build gRPC statuses
themselves, so a use case reads the same whether it is called over gRPC, from a
worker or from a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field (google.rpc.BadRequest.FieldViolation)."""

    field: str  # path in the request, e.g. "tenant.tenant_code"
    description: str
    reason: str = "INVALID_FIELD"


@dataclass(frozen=True)
class PreconditionViolation:
    """One unmet precondition (google.rpc.PreconditionFailure.Violation)."""

    type: str  # e.g. "STATUS", "ETAG"
    subject: str  # e.g. "tenants/0191..."
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    """One exhausted quota (google.rpc.QuotaFailure.Violation)."""

    subject: str  # e.g. "tenants/0191..."
    description: str


class DomainError(Exception):
    """Base of every expected error. `reason` is an ErrorReason name without prefix."""

    reason: str = "INTERNAL"

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation] | FieldViolation, message: str | None = None) -> None:
        if isinstance(violations, FieldViolation):
            violations = [violations]
        self.violations = list(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(message or f"invalid request field(s): {fields}")


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"

    def __init__(self, permission: str) -> None:
        super().__init__(f"missing permission {permission}", metadata={"permission": permission})
        self.permission = permission


class DelegationDenied(PermissionDenied):
    """The delegation rule (docs/authentication.md): a principal cannot hand out, through a key,
    a role, a role edit or an assignment, a permission it does not hold itself, nor act on a user
    who holds permissions it lacks. `missing` lists what the caller would need."""

    def __init__(self, missing: list[str], subject: str) -> None:
        super().__init__(missing[0])
        self.message = (f"{subject} needs permissions the caller does not hold: {', '.join(missing)}; "
                        "nobody can grant or act beyond their own permissions")
        self.args = (self.message,)
        self.metadata.update(missing_permissions=",".join(missing), subject=subject)
        self.missing = list(missing)


class NotFound(DomainError):
    reason = "NOT_FOUND"

    def __init__(self, resource_type: str, resource_id: str) -> None:
        super().__init__(f"{resource_type} {resource_id!r} not found")
        self.resource_type = resource_type
        self.resource_id = resource_id


def must_exist(value: T | None, resource_type: str, resource_id: str) -> T:
    """`value`, which a lookup returned; NotFound when the lookup found nothing."""
    if value is None:
        raise NotFound(resource_type, resource_id)
    return value


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"

    def __init__(self, resource_type: str, field_name: str, value: str) -> None:
        super().__init__(f"a {resource_type} with this {field_name} already exists",
                         metadata={"field": field_name})
        self.resource_type = resource_type
        self.field_name = field_name
        self.value = value


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"

    def __init__(self, message: str, violations: list[PreconditionViolation] | None = None,
                 *, reason: str | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])
        if reason:
            self.reason = reason


class RequestIdReused(FailedPrecondition):
    """A request_id (AIP-155) came back with a different request: answering the first result
    would tell the caller its new request was done. Maps to FAILED_PRECONDITION."""

    reason = "REQUEST_ID_REUSED"

    def __init__(self, request_id: str, resource: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was already used for a different request (it made {resource}); "
            "retries must repeat the same request, a new request needs a new request_id",
            [PreconditionViolation("REQUEST_ID", f"requests/{request_id}",
                                   "request_id already used with a different request")])
        self.metadata = {"request_id": request_id, "resource": resource}
        self.request_id = request_id


class EtagMismatch(FailedPrecondition):
    """The caller's etag is stale. Maps to ABORTED (AIP-154)."""

    reason = "ETAG_MISMATCH"

    def __init__(self, subject: str) -> None:
        super().__init__("etag does not match the current resource; re-read it and retry",
                         [PreconditionViolation("ETAG", subject, "etag mismatch")])


class QuotaExceeded(DomainError):
    reason = "QUOTA_EXCEEDED"

    def __init__(self, message: str, violations: list[QuotaViolation], *,
                 retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations)
        # Set when the quota refills at a known time (a rate limit): sent as RetryInfo.
        self.retry_after_seconds = retry_after_seconds


class UserLocked(DomainError):
    """Too many failed logins. Maps to RESOURCE_EXHAUSTED with a RetryInfo delay: like a
    rate limit, the same call succeeds later, which UNAUTHENTICATED would not say."""

    reason = "USER_LOCKED"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"user is locked; retry in {retry_after_seconds} s",
                         metadata={"retry_after_seconds": str(retry_after_seconds)})
        self.retry_after_seconds = retry_after_seconds


class Unavailable(DomainError):
    """A dependency (database, Redis, provider) cannot be reached; the call may be retried."""

    reason = "DEPENDENCY_UNAVAILABLE"


class ShuttingDown(Unavailable):
    """The server is stopping: a long-lived stream ends so the caller reconnects elsewhere."""

    reason = "SHUTTING_DOWN"
