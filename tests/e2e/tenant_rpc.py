"""TenantService through the generated stub (wework.v1), with the rich error details unpacked.

For the access tests: they call the RPCs exactly as grpcurl or any gRPC client would, with
the credential in the metadata, independently of the client facade."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from wework.v1 import tenant_pb2 as pb
from wework.v1 import tenant_pb2_grpc


@dataclass
class RpcFailure:
    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    retry_seconds: int | None = None
    quota_subjects: list[str] = field(default_factory=list)
    detail_types: list[str] = field(default_factory=list)


def failure(exc: grpc.RpcError) -> RpcFailure:
    out = RpcFailure(exc.code(), exc.details() or "")
    status = rpc_status.from_call(exc)
    for detail in status.details if status else ():
        out.detail_types.append(detail.TypeName())
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out.reason, out.metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            out.retry_seconds = retry.retry_delay.seconds
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            out.quota_subjects = [v.subject for v in quota.violations]
    return out


def refused(call, *args, **kwargs) -> RpcFailure:
    """The failure of a call that must fail (AssertionError if it succeeds)."""
    try:
        result = call(*args, **kwargs)
    except grpc.RpcError as exc:
        return failure(exc)
    raise AssertionError(f"expected a refusal, got {result!r}")


class TenantApi:
    """One caller: an API key (`key`), an access token (`token`) or nothing (anonymous)."""

    def __init__(self, channel: grpc.Channel, *, key: str | None = None, token: str | None = None,
                 tenant_id: str | None = None) -> None:
        md: list[tuple[str, str]] = []
        if key:
            md.append(("x-api-key", key))
        if token:
            md.append(("authorization", f"Bearer {token}"))
        if tenant_id:
            md.append(("x-wework-tenant", tenant_id))
        self._stub = tenant_pb2_grpc.TenantServiceStub(channel)
        self._md = tuple(md)

    def __getattr__(self, method: str):
        rpc = getattr(self._stub, method)
        return lambda request: rpc(request, metadata=self._md, timeout=30)


def login(channel: grpc.Channel, tenant_code: str, username: str, password: str) -> pb.LoginResponse:
    return TenantApi(channel).Login(pb.LoginRequest(tenant_code=tenant_code, username=username,
                                                    password=password))
