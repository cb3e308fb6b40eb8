"""Python client of the WeWork Management Platform (wework.v1 gRPC API).

    from wework.client import ClientOptions, WeworkClient, NotFoundError

    with WeworkClient(ClientOptions("dns:///wework-tenant:50051", api_key=KEY)) as client:
        tenant = client.tenants.get_tenant("0191...")

Every RPC of every wework.v1 service has a method, generated from the proto descriptors in
both the blocking (WeworkClient) and the asyncio (AsyncWeworkClient) client. See docs/client.md.
"""

from . import aio, sync
from ._base import DEFAULT, DEFAULT_RETRY, Retry
from .aio import *  # AsyncWeworkClient and every asyncio service client
from .config import ClientOptions, service_config, service_config_json, wework_service_names
from .errors import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionViolation,
    QuotaViolation,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    WeworkError,
    from_rpc_error,
)
from .sync import *  # WeworkClient and every blocking service client

__all__ = [
    "DEFAULT",
    "DEFAULT_RETRY",
    "AbortedError",
    "AlreadyExistsError",
    "ClientOptions",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "PreconditionViolation",
    "QuotaViolation",
    "ResourceExhaustedError",
    "Retry",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "WeworkError",
    "from_rpc_error",
    "service_config",
    "service_config_json",
    "wework_service_names",
]
__all__ += aio.__all__ + sync.__all__
