"""Helpers of the client facade tests: rich error trailers as the server sends them."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from wework.v1 import tenant_pb2

TENANT_SERVICE = tenant_pb2.DESCRIPTOR.services_by_name["TenantService"]


def rich_trailer(code: grpc.StatusCode, message: str, *details: Message) -> tuple[tuple[str, bytes], ...]:
    """The grpc-status-details-bin trailer of a google.rpc.Status with `details`."""
    packed = []
    for detail in details:
        any_ = any_pb2.Any()
        any_.Pack(detail)
        packed.append(any_)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return (("grpc-status-details-bin", status.SerializeToString()),)


def error_info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain="wework.v1", metadata=metadata)


def bad_request(*violations: tuple[str, str]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d, reason="INVALID_FIELD")
            for f, d in violations
        ]
    )


def quota_failure(subject: str, description: str) -> error_details_pb2.QuotaFailure:
    return error_details_pb2.QuotaFailure(
        violations=[error_details_pb2.QuotaFailure.Violation(subject=subject, description=description)]
    )


def precondition_failure(type_: str, subject: str, description: str) -> error_details_pb2.PreconditionFailure:
    return error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(type=type_, subject=subject, description=description)
        ]
    )


def retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


class Rich:
    """Namespace handed to tests by the `rich` fixture (conftest modules are not importable)."""

    trailer = staticmethod(rich_trailer)
    error_info = staticmethod(error_info)
    bad_request = staticmethod(bad_request)
    quota_failure = staticmethod(quota_failure)
    precondition_failure = staticmethod(precondition_failure)
    retry_info = staticmethod(retry_info)


@pytest.fixture
def rich() -> type[Rich]:
    return Rich


@pytest.fixture
def tenant_method() -> Callable[[str], object]:
    return lambda name: TENANT_SERVICE.methods_by_name[name]
