"""Exceptions -> google.rpc.Status with rich details (AIP-193).

Every status carries an ErrorInfo(reason, domain="wework.v1"); the reason is an
ErrorReason value name without its prefix. Unexpected exceptions become INTERNAL
with only the trace id: their text may hold SQL, DSNs or user data.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from wework.domain.errors import (
    AlreadyExists,
    DomainError,
    EtagMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Unauthenticated,
    Unavailable,
    UserLocked,
)
from wework.persistence.errors import unavailable_dependency

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "wework.v1"
UNAVAILABLE_RETRY_SECONDS = 1

# First match wins: subclasses (EtagMismatch) before their bases (FailedPrecondition).
_CODES: tuple[tuple[type[DomainError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (EtagMismatch, grpc.StatusCode.ABORTED),  # AIP-154: re-read and retry
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UserLocked, grpc.StatusCode.RESOURCE_EXHAUSTED),  # retryable later, unlike UNAUTHENTICATED
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)


# A caller's input can come back in an answer (an unknown id, a bad time zone, a variable name):
# bounded, so that the status always fits a client's metadata limit (8 KiB by default; beyond
# 16 KiB the client drops the answer and sees RESOURCE_EXHAUSTED instead).
MAX_MESSAGE_CHARS = 512
MAX_DETAIL_CHARS = 400
# ErrorInfo metadata is read by programs (missing_permissions, request_id, resource): a larger
# bound, so that a list the server made (every permission a caller lacks) arrives whole.
MAX_METADATA_CHARS = 1024
MAX_VIOLATIONS = 10


def _clip(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _first_violations(violations: list) -> list:
    return violations[:MAX_VIOLATIONS]


def _pack(message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def _error_info(reason: str, metadata: dict[str, str], trace_id: str) -> any_pb2.Any:
    md = {k: _clip(str(v), MAX_METADATA_CHARS) for k, v in metadata.items()}
    md.setdefault("trace_id", trace_id)  # lets a caller quote any error to operators
    return _pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=md))


def _retry_info(seconds: int) -> any_pb2.Any:
    return _pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=max(0, seconds))))


def _grpc_code(code: grpc.StatusCode) -> int:
    return code.value[0]


def _domain_status(exc: DomainError, code: grpc.StatusCode, trace_id: str) -> status_pb2.Status:
    details = [_error_info(exc.reason, exc.metadata, trace_id)]
    if isinstance(exc, InvalidArgument):
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=_clip(v.field), description=_clip(v.description),
                                                        reason=v.reason)
            for v in _first_violations(exc.violations)
        ])))
    elif isinstance(exc, FailedPrecondition) and exc.violations:
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(type=v.type, subject=_clip(v.subject),
                                                            description=_clip(v.description))
            for v in _first_violations(exc.violations)
        ])))
    elif isinstance(exc, QuotaExceeded):
        details.append(_pack(error_details_pb2.QuotaFailure(violations=[
            error_details_pb2.QuotaFailure.Violation(subject=_clip(v.subject), description=_clip(v.description))
            for v in _first_violations(exc.violations)
        ])))
        if exc.retry_after_seconds is not None:  # a rate limit: when to try again
            details.append(_retry_info(exc.retry_after_seconds))
    elif isinstance(exc, UserLocked):
        details.append(_retry_info(exc.retry_after_seconds))
    elif isinstance(exc, Unavailable):
        details.append(_retry_info(UNAVAILABLE_RETRY_SECONDS))
    return status_pb2.Status(code=_grpc_code(code), message=_clip(exc.message, MAX_MESSAGE_CHARS), details=details)


def internal_status(trace_id: str, message: str | None = None,
                    code: grpc.StatusCode = grpc.StatusCode.INTERNAL) -> status_pb2.Status:
    return status_pb2.Status(
        code=_grpc_code(code),
        message=message or f"internal error (trace {trace_id})",
        details=[_error_info("INTERNAL", {}, trace_id)],
    )


def status_from_exception(exc: BaseException, trace_id: str) -> status_pb2.Status:
    """The google.rpc.Status a caller sees for `exc`. Logs what the caller must not see."""
    if isinstance(exc, DomainError):
        for exc_type, code in _CODES:
            if isinstance(exc, exc_type):
                if isinstance(exc, Unavailable):
                    logger.warning("dependency unavailable: %s", exc.message, extra={"trace_id": trace_id})
                return _domain_status(exc, code, trace_id)
    if isinstance(exc, NotImplementedError):
        # A servicer method left at the generated base class: say so with the code
        # gRPC has for it (ErrorReason has no better value than INTERNAL).
        logger.error("method not implemented (trace %s)", trace_id, extra={"trace_id": trace_id})
        return internal_status(trace_id, f"method not implemented (trace {trace_id})",
                               grpc.StatusCode.UNIMPLEMENTED)
    dependency = unavailable_dependency(exc)
    if dependency is not None:
        # A connection failure no lower layer turned into Unavailable (a Redis call outside a
        # unit of work, say): still the dependency's fault, so retryable, never INTERNAL.
        unavailable = Unavailable(f"a dependency ({dependency}) is unavailable; retry shortly",
                                  metadata={"dependency": dependency})
        logger.warning("dependency unavailable (%s): %r", dependency, exc, extra={"trace_id": trace_id})
        return _domain_status(unavailable, grpc.StatusCode.UNAVAILABLE, trace_id)
    # Unknown DomainError subclasses land here too: their text was never reviewed for callers.
    logger.error("unhandled exception (trace %s)", trace_id,
                 exc_info=(type(exc), exc, exc.__traceback__), extra={"trace_id": trace_id})
    return internal_status(trace_id)


def to_grpc_status(status: status_pb2.Status) -> grpc.Status:
    """google.rpc.Status -> grpc.Status (code, details, grpc-status-details-bin trailer)."""
    return rpc_status.to_status(status)

