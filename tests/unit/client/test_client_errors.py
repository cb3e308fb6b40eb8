"""from_rpc_error on bare grpc.RpcError objects (mapping table and odd inputs)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from wework.client import errors


class FakeCallError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """What a blocking stub raises: an RpcError that is also a Call."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Any = ()) -> None:
        self._code, self._details, self._trailing = code, details, tuple(trailing)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailing

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
        (grpc.StatusCode.UNAUTHENTICATED, errors.UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDeniedError),
        (grpc.StatusCode.NOT_FOUND, errors.NotFoundError),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExistsError),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPreconditionError),
        (grpc.StatusCode.ABORTED, errors.AbortedError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhaustedError),
        (grpc.StatusCode.UNAVAILABLE, errors.UnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, errors.InternalError),
        (grpc.StatusCode.UNIMPLEMENTED, errors.UnimplementedError),
        (grpc.StatusCode.CANCELLED, errors.WeworkError),
        (grpc.StatusCode.UNKNOWN, errors.WeworkError),
    ],
)
def test_each_code_maps_to_its_class(code: grpc.StatusCode, cls: type[errors.WeworkError]) -> None:
    err = errors.from_rpc_error(FakeCallError(code, "boom"))
    assert type(err) is cls
    assert err.grpc_code is code and err.message == "boom"
    assert err.field_violations == [] and err.retry_delay is None and err.status is None


def test_permission_denied_exposes_error_info_metadata(rich: Any) -> None:
    trailer = rich.trailer(
        grpc.StatusCode.PERMISSION_DENIED, "missing", rich.error_info("PERMISSION_DENIED", permission="x.y")
    )
    err = errors.from_rpc_error(FakeCallError(grpc.StatusCode.PERMISSION_DENIED, "missing", trailer))
    assert isinstance(err, errors.PermissionDeniedError)
    assert err.metadata == {"permission": "x.y"}


def test_user_locked_is_resource_exhausted_with_retry_delay(rich: Any) -> None:
    trailer = rich.trailer(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "locked", rich.error_info("USER_LOCKED"), rich.retry_info(900)
    )
    err = errors.from_rpc_error(FakeCallError(grpc.StatusCode.RESOURCE_EXHAUSTED, "locked", trailer))
    assert isinstance(err, errors.ResourceExhaustedError)
    assert (err.reason, err.retry_delay) == ("USER_LOCKED", 900.0)


def test_details_survive_a_proxy_that_rewrote_the_message(rich: Any) -> None:
    # from_call refuses a Status whose message differs from the transport's; the details still count.
    trailer = rich.trailer(grpc.StatusCode.NOT_FOUND, "original", rich.error_info("NOT_FOUND"))
    err = errors.from_rpc_error(FakeCallError(grpc.StatusCode.NOT_FOUND, "rewritten by proxy", trailer))
    assert isinstance(err, errors.NotFoundError)
    assert err.reason == "NOT_FOUND" and err.message == "rewritten by proxy"


def test_garbage_trailer_and_non_call_errors_do_not_crash() -> None:
    err = errors.from_rpc_error(
        FakeCallError(grpc.StatusCode.INTERNAL, "x", [("grpc-status-details-bin", b"\xff\xff")])
    )
    assert isinstance(err, errors.InternalError) and err.status is None

    bare = errors.from_rpc_error(grpc.RpcError("no call attached"))
    assert type(bare) is errors.WeworkError
    assert bare.grpc_code is grpc.StatusCode.UNKNOWN
