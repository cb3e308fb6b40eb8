"""status_from_exception: each domain error -> code + decoded details."""

from __future__ import annotations

import logging

import grpc
import pytest
from google.rpc import error_details_pb2
from wework.domain.errors import (
    AlreadyExists,
    DomainError,
    EtagMismatch,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    QuotaExceeded,
    QuotaViolation,
    Unauthenticated,
    Unavailable,
    UserLocked,
)
from wework.server.runtime.errors import ERROR_DOMAIN, status_from_exception, to_grpc_status

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _details(status) -> dict[str, object]:
    """Unpacks the Any details into {type name: message}."""
    out = {}
    for any_detail in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                    error_details_pb2.PreconditionFailure, error_details_pb2.QuotaFailure,
                    error_details_pb2.RetryInfo):
            if any_detail.Is(cls.DESCRIPTOR):
                msg = cls()
                any_detail.Unpack(msg)
                out[cls.__name__] = msg
    assert len(out) == len(status.details), "an unexpected detail type"
    return out


def _code(status) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == status.code)


@pytest.mark.parametrize(
    ("exc", "code", "reason"),
    [
        (InvalidArgument(FieldViolation("tenant.tenant_code", "required")), grpc.StatusCode.INVALID_ARGUMENT,
         "INVALID_ARGUMENT"),
        (Unauthenticated("unknown API key"), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        (PermissionDenied("users.write"), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
        (NotFound("tenant", "t1"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        (AlreadyExists("tenant", "tenant_code", "acme"), grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS"),
        (EtagMismatch("tenants/t1"), grpc.StatusCode.ABORTED, "ETAG_MISMATCH"),
        (FailedPrecondition("suspended", reason="TENANT_SUSPENDED"), grpc.StatusCode.FAILED_PRECONDITION,
         "TENANT_SUSPENDED"),
        (QuotaExceeded("daily quota", [QuotaViolation("tenants/t1", "max_daily_messages")]),
         grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED"),
        (UserLocked(90), grpc.StatusCode.RESOURCE_EXHAUSTED, "USER_LOCKED"),
        (Unavailable("database unreachable"), grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE"),
    ],
)
def test_every_domain_error_has_its_code_and_error_info(exc, code, reason):
    status = status_from_exception(exc, TRACE)
    assert _code(status) is code
    assert status.message == exc.message
    info = _details(status)["ErrorInfo"]
    assert (info.reason, info.domain) == (reason, ERROR_DOMAIN)
    assert info.metadata["trace_id"] == TRACE
    for key, value in exc.metadata.items():
        assert info.metadata[key] == value


def test_invalid_argument_carries_field_violations():
    exc = InvalidArgument([FieldViolation("tenant.tenant_code", "required", "REQUIRED"),
                           FieldViolation("tenant.max_accounts", "must be >= 0")])
    bad = _details(status_from_exception(exc, TRACE))["BadRequest"]
    assert [(v.field, v.description, v.reason) for v in bad.field_violations] == [
        ("tenant.tenant_code", "required", "REQUIRED"),
        ("tenant.max_accounts", "must be >= 0", "INVALID_FIELD"),
    ]


def test_permission_denied_names_the_permission():
    info = _details(status_from_exception(PermissionDenied("users.write"), TRACE))["ErrorInfo"]
    assert info.metadata["permission"] == "users.write"


def test_etag_mismatch_is_aborted_with_precondition_failure():
    d = _details(status_from_exception(EtagMismatch("tenants/t1"), TRACE))
    [v] = d["PreconditionFailure"].violations
    assert (v.type, v.subject) == ("ETAG", "tenants/t1")


def test_failed_precondition_lists_violations():
    exc = FailedPrecondition("account offline", [PreconditionViolation("STATUS", "accounts/a1", "is offline")])
    status = status_from_exception(exc, TRACE)
    assert _code(status) is grpc.StatusCode.FAILED_PRECONDITION
    [v] = _details(status)["PreconditionFailure"].violations
    assert (v.type, v.subject, v.description) == ("STATUS", "accounts/a1", "is offline")


def test_quota_failure_lists_violations():
    exc = QuotaExceeded("quota", [QuotaViolation("tenants/t1", "max_accounts reached")])
    [v] = _details(status_from_exception(exc, TRACE))["QuotaFailure"].violations
    assert (v.subject, v.description) == ("tenants/t1", "max_accounts reached")


def test_user_locked_says_when_to_retry():
    d = _details(status_from_exception(UserLocked(90), TRACE))
    assert d["RetryInfo"].retry_delay.seconds == 90
    assert d["ErrorInfo"].metadata["retry_after_seconds"] == "90"


def test_unavailable_says_retry_in_one_second():
    d = _details(status_from_exception(Unavailable("redis down"), TRACE))
    assert d["RetryInfo"].retry_delay.seconds == 1


@pytest.mark.parametrize("exc", [RuntimeError("password=hunter2 in DSN"), DomainError("unreviewed text hunter2")])
def test_unexpected_exception_is_internal_without_its_text(exc, caplog):
    try:
        raise exc
    except (RuntimeError, DomainError) as raised:  # gives it a traceback, as in a handler
        with caplog.at_level(logging.ERROR):
            status = status_from_exception(raised, TRACE)
    assert _code(status) is grpc.StatusCode.INTERNAL
    assert status.message == f"internal error (trace {TRACE})"
    assert "hunter2" not in status.SerializeToString().decode("latin-1")
    info = _details(status)["ErrorInfo"]
    assert (info.reason, info.domain, dict(info.metadata)) == ("INTERNAL", ERROR_DOMAIN, {"trace_id": TRACE})
    # ...but the operator gets the traceback, tied to the trace id.
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info and record.exc_info[1] is exc
    assert record.trace_id == TRACE


def test_not_implemented_is_unimplemented():
    status = status_from_exception(NotImplementedError("Method not implemented!"), TRACE)
    assert _code(status) is grpc.StatusCode.UNIMPLEMENTED
    assert _details(status)["ErrorInfo"].reason == "INTERNAL"


def test_to_grpc_status_puts_details_in_the_trailer():
    status = to_grpc_status(status_from_exception(NotFound("tenant", "t1"), TRACE))
    assert status.code is grpc.StatusCode.NOT_FOUND
    assert status.details == "tenant 't1' not found"
    assert [k for k, _ in status.trailing_metadata] == ["grpc-status-details-bin"]
