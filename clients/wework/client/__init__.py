"""Python client of the WeWork Management Platform (wework.v1 gRPC API).

    from wework.client import ClientOptions, WeworkClient, NotFoundError

    with WeworkClient(ClientOptions("dns:///wework-tenant:50051", api_key=KEY)) as client:
        tenant = client.tenants.get_tenant("0191...")

See docs/client.md.
"""

from .aio import (
    AsyncAccountServiceClient,
    AsyncCallbackServiceClient,
    AsyncMessageServiceClient,
    AsyncReportServiceClient,
    AsyncTenantServiceClient,
    AsyncWeworkClient,
)
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
from .sync import (
    AccountServiceClient,
    CallbackServiceClient,
    MessageServiceClient,
    ReportServiceClient,
    TenantServiceClient,
    WeworkClient,
)

__all__ = [
    "AbortedError",
    "AccountServiceClient",
    "AlreadyExistsError",
    "AsyncAccountServiceClient",
    "AsyncCallbackServiceClient",
    "AsyncMessageServiceClient",
    "AsyncReportServiceClient",
    "AsyncTenantServiceClient",
    "AsyncWeworkClient",
    "CallbackServiceClient",
    "ClientOptions",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "MessageServiceClient",
    "NotFoundError",
    "PermissionDeniedError",
    "PreconditionViolation",
    "QuotaViolation",
    "ReportServiceClient",
    "ResourceExhaustedError",
    "TenantServiceClient",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "WeworkClient",
    "WeworkError",
    "from_rpc_error",
    "service_config",
    "service_config_json",
    "wework_service_names",
]
