"""Typed errors of the WeWork client.

The server reports every error as a google.rpc.Status in the
`grpc-status-details-bin` trailer: an ErrorInfo (domain "wework.v1", reason =
an ErrorReason name without prefix) plus, depending on the error, BadRequest,
PreconditionFailure, QuotaFailure and RetryInfo. `from_rpc_error` turns a
grpc.RpcError into one `WeworkError` subclass per status code with those
details unpacked, so callers never touch Any-packed protos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "wework.v1"

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field (google.rpc.BadRequest.FieldViolation)."""

    field: str  # path in the request, e.g. "tenant.tenant_code"
    description: str
    reason: str = ""


@dataclass(frozen=True)
class PreconditionViolation:
    """One unmet precondition (google.rpc.PreconditionFailure.Violation)."""

    type: str  # e.g. "STATUS", "ETAG"
    subject: str  # e.g. "tenants/0191..."
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    """One exhausted quota (google.rpc.QuotaFailure.Violation)."""

    subject: str
    description: str


class WeworkError(Exception):
    """An RPC failed. Subclasses name the gRPC status code; `reason` is finer.

    Attributes:
        grpc_code: the grpc.StatusCode.
        message: the server's message (status details).
        reason: ErrorInfo.reason, e.g. "NOT_FOUND", "ETAG_MISMATCH", "USER_LOCKED";
            "" when the error did not come from the platform (e.g. a proxy or the
            client-side deadline).
        metadata: ErrorInfo.metadata, e.g. {"permission": "tenant.users.read"}.
        field_violations / precondition_violations / quota_violations: unpacked details.
        retry_delay: RetryInfo.retry_delay in seconds, or None.
        status: the whole google.rpc.Status, for details this class does not unpack.
    """

    def __init__(
        self,
        grpc_code: grpc.StatusCode,
        message: str,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: list[FieldViolation] | None = None,
        precondition_violations: list[PreconditionViolation] | None = None,
        quota_violations: list[QuotaViolation] | None = None,
        retry_delay: float | None = None,
        *,
        domain: str = "",
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[FieldViolation] = list(field_violations or [])
        self.precondition_violations: list[PreconditionViolation] = list(precondition_violations or [])
        self.quota_violations: list[QuotaViolation] = list(quota_violations or [])
        self.retry_delay = retry_delay
        self.status = status

    def __str__(self) -> str:
        text = f"{self.grpc_code.name}: {self.message}"
        if self.reason and self.reason != self.grpc_code.name:
            text += f" (reason={self.reason})"
        if self.field_violations:
            text += "; " + "; ".join(f"{v.field}: {v.description}" for v in self.field_violations)
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.grpc_code.name}, {self.message!r}, reason={self.reason!r})"


class InvalidArgumentError(WeworkError):
    """INVALID_ARGUMENT: see `field_violations`."""


class UnauthenticatedError(WeworkError):
    """UNAUTHENTICATED: no credential, or it is unknown, expired or revoked."""


class PermissionDeniedError(WeworkError):
    """PERMISSION_DENIED: `metadata["permission"]` names the missing permission."""


class NotFoundError(WeworkError):
    """NOT_FOUND: the resource does not exist or belongs to another tenant."""


class AlreadyExistsError(WeworkError):
    """ALREADY_EXISTS: `metadata["field"]` names the clashing unique key."""


class FailedPreconditionError(WeworkError):
    """FAILED_PRECONDITION: wrong state (see `precondition_violations`), or TENANT_SUSPENDED."""


class AbortedError(WeworkError):
    """ABORTED: reason ETAG_MISMATCH; re-read the resource and retry with its new etag."""


class ResourceExhaustedError(WeworkError):
    """RESOURCE_EXHAUSTED: QUOTA_EXCEEDED (`quota_violations`) or USER_LOCKED (`retry_delay`)."""


class UnavailableError(WeworkError):
    """UNAVAILABLE: server or dependency down; the channel already retried it."""


class DeadlineExceededError(WeworkError):
    """DEADLINE_EXCEEDED: the call may or may not have taken effect."""


class InternalError(WeworkError):
    """INTERNAL: `metadata["trace_id"]` locates it in the server logs."""


class UnimplementedError(WeworkError):
    """UNIMPLEMENTED: the target does not serve this service (servers run any subset)."""


_BY_CODE: dict[grpc.StatusCode, type[WeworkError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
}

_CODE_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def error_class(code: grpc.StatusCode) -> type[WeworkError]:
    """The WeworkError subclass raised for `code` (WeworkError itself for the rest)."""
    return _BY_CODE.get(code, WeworkError)


def _call_value(error: Any, name: str) -> Any:
    # grpc.RpcError is not always a grpc.Call (e.g. errors raised by interceptors).
    getter = getattr(error, name, None)
    if getter is None:
        return None
    try:
        return getter()
    except Exception:  # noqa: BLE001 - a broken call object must not hide the error
        return None


def _rich_status(error: Any) -> status_pb2.Status | None:
    try:
        return rpc_status.from_call(error)
    except ValueError:
        # Code or message differ from the transport status (a proxy rewrote one).
        # The details are still the server's: decode them without the check.
        pass
    except Exception:  # noqa: BLE001 - not a grpc.Call, or odd trailers
        return None
    for key, value in _call_value(error, "trailing_metadata") or ():
        if key == _DETAILS_KEY:
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # noqa: BLE001 - garbage trailer: ignore the details
                return None
    return None


def from_status(
    code: grpc.StatusCode, message: str, status: status_pb2.Status | None = None
) -> WeworkError:
    """Builds the typed error for a status code, message and optional google.rpc.Status."""
    kwargs: dict[str, Any] = {}
    fields: list[FieldViolation] = []
    preconditions: list[PreconditionViolation] = []
    quotas: list[QuotaViolation] = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            kwargs.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [FieldViolation(v.field, v.description, v.reason) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pre = error_details_pb2.PreconditionFailure()
            detail.Unpack(pre)
            preconditions += [PreconditionViolation(v.type, v.subject, v.description) for v in pre.violations]
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            quotas += [QuotaViolation(v.subject, v.description) for v in quota.violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            kwargs["retry_delay"] = retry.retry_delay.ToTimedelta().total_seconds()
    return error_class(code)(
        code,
        message,
        field_violations=fields,
        precondition_violations=preconditions,
        quota_violations=quotas,
        status=status,
        **kwargs,
    )


def from_rpc_error(error: grpc.RpcError) -> WeworkError:
    """Converts a grpc.RpcError (sync or grpc.aio) into the matching WeworkError."""
    status = _rich_status(error)
    code = _call_value(error, "code")
    if not isinstance(code, grpc.StatusCode):
        code = _CODE_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN) if status else grpc.StatusCode.UNKNOWN
    message = _call_value(error, "details")
    if status is not None and not message:
        message = status.message
    return from_status(code, message or str(error), status)

