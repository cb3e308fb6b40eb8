"""Blocking client: `WeworkClient(options).tenants.get_tenant("...")`.

Each service wrapper is a thin layer over the generated stub: one method per
RPC that takes the request message (or a shortcut value plus keyword fields),
attaches the credential metadata and default deadline, fills request_id, and
raises WeworkError subclasses instead of grpc.RpcError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Self

import grpc
from wework.v1 import tenant_pb2 as pb
from wework.v1 import tenant_pb2_grpc

from ._base import (
    CallSettings,
    Metadata,
    build_request,
    check_per_call_changes,
    next_page_token,
    with_page_token,
    with_request_id,
)
from .config import ClientOptions
from .errors import from_rpc_error


class Transport:
    """Calls unary methods of a channel with the client's metadata and deadline."""

    def __init__(self, channel: grpc.Channel, settings: CallSettings) -> None:
        self.channel = channel
        self.settings = settings

    def unary(
        self,
        method: grpc.UnaryUnaryMultiCallable,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
        authenticate: bool = True,
    ) -> Any:
        # Fill request_id before the call: channel retries then resend the same id.
        request = with_request_id(request)
        md = self.settings.metadata(metadata) if authenticate else tuple(metadata)
        try:
            return method(request, timeout=self.settings.timeout(timeout), metadata=md)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def pages(
        self,
        method: grpc.UnaryUnaryMultiCallable,
        request: Any,
        items: str,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Iterator[Any]:
        """Yields the `items` of every page; each page gets its own deadline."""
        while True:
            response = self.unary(method, request, timeout=timeout, metadata=metadata)
            yield from getattr(response, items)
            token = next_page_token(request, response)
            if not token:
                return
            request = with_page_token(request, token)


class Service:
    """Base of a service wrapper: the generated stub plus the shared transport.

    A subclass sets `stub_class` and writes one line per RPC with `_call`
    (unary) or `_iter` (paged List).
    """

    stub_class: ClassVar[Callable[[grpc.Channel], Any]]

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._stub = self.stub_class(transport.channel)

    def _call(
        self,
        rpc: str,
        request_cls: type,
        request: Any,
        fields: dict[str, Any],
        timeout: float | None,
        metadata: Metadata,
        shortcut: str | None = None,
        *,
        authenticate: bool = True,
    ) -> Any:
        message = build_request(request_cls, request, fields, shortcut)
        return self._transport.unary(
            getattr(self._stub, rpc), message, timeout=timeout, metadata=metadata, authenticate=authenticate
        )

    def _iter(
        self,
        rpc: str,
        request_cls: type,
        items: str,
        request: Any,
        fields: dict[str, Any],
        timeout: float | None,
        metadata: Metadata,
    ) -> Iterator[Any]:
        # Build now so a bad argument fails at the call, not at the first next().
        message = build_request(request_cls, request, fields)
        return self._transport.pages(getattr(self._stub, rpc), message, items, timeout=timeout, metadata=metadata)


class TenantServiceClient(Service):
    """wework.v1.TenantService: tenants, users, roles, API keys and login.

    Every method accepts the request message, or keyword fields of it; where a
    positional shortcut is noted, a str is the resource id and a resource
    message is wrapped into its Create/Update request. `timeout` (seconds)
    overrides the default deadline; `metadata` adds headers.
    """

    stub_class = tenant_pb2_grpc.TenantServiceStub

    # Tenants (platform admin).

    def create_tenant(self, request: pb.CreateTenantRequest | pb.Tenant | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """CreateTenant; a Tenant is wrapped. request_id is filled when empty."""
        return self._call("CreateTenant", pb.CreateTenantRequest, request, fields, timeout, metadata, "tenant")

    def get_tenant(self, request: pb.GetTenantRequest | str | None = None, /, *,
                   timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """GetTenant; a str is the tenant id."""
        return self._call("GetTenant", pb.GetTenantRequest, request, fields, timeout, metadata, "id")

    def list_tenants(self, request: pb.ListTenantsRequest | None = None, /, *,
                     timeout: float | None = None, metadata: Metadata = (),
                     **fields: Any) -> pb.ListTenantsResponse:
        """ListTenants: one page (see iter_tenants for all)."""
        return self._call("ListTenants", pb.ListTenantsRequest, request, fields, timeout, metadata)

    def update_tenant(self, request: pb.UpdateTenantRequest | pb.Tenant | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """UpdateTenant; a Tenant is wrapped, update_mask may be a list of paths."""
        return self._call("UpdateTenant", pb.UpdateTenantRequest, request, fields, timeout, metadata, "tenant")

    def suspend_tenant(self, request: pb.SuspendTenantRequest | str | None = None, /, *,
                       timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """SuspendTenant; a str is the tenant id (etag= optional)."""
        return self._call("SuspendTenant", pb.SuspendTenantRequest, request, fields, timeout, metadata, "id")

    def resume_tenant(self, request: pb.ResumeTenantRequest | str | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """ResumeTenant; a str is the tenant id (etag= optional)."""
        return self._call("ResumeTenant", pb.ResumeTenantRequest, request, fields, timeout, metadata, "id")

    def delete_tenant(self, request: pb.DeleteTenantRequest | str | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """DeleteTenant (soft); a str is the tenant id (etag= optional)."""
        return self._call("DeleteTenant", pb.DeleteTenantRequest, request, fields, timeout, metadata, "id")

    def iter_tenants(self, request: pb.ListTenantsRequest | None = None, /, *,
                     timeout: float | None = None, metadata: Metadata = (),
                     **filters: Any) -> Iterator[pb.Tenant]:
        """Every tenant across pages, e.g. iter_tenants(status=TENANT_STATUS_ACTIVE)."""
        return self._iter("ListTenants", pb.ListTenantsRequest, "tenants", request, filters, timeout, metadata)

    # Users of the caller's tenant.

    def create_user(self, request: pb.CreateUserRequest | pb.User | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """CreateUser; a User is wrapped. request_id is filled when empty."""
        return self._call("CreateUser", pb.CreateUserRequest, request, fields, timeout, metadata, "user")

    def get_user(self, request: pb.GetUserRequest | str | None = None, /, *,
                 timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """GetUser; a str is the user id."""
        return self._call("GetUser", pb.GetUserRequest, request, fields, timeout, metadata, "id")

    def list_users(self, request: pb.ListUsersRequest | None = None, /, *,
                   timeout: float | None = None, metadata: Metadata = (),
                   **fields: Any) -> pb.ListUsersResponse:
        """ListUsers: one page (see iter_users for all)."""
        return self._call("ListUsers", pb.ListUsersRequest, request, fields, timeout, metadata)

    def update_user(self, request: pb.UpdateUserRequest | pb.User | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """UpdateUser; a User is wrapped, update_mask may be a list of paths."""
        return self._call("UpdateUser", pb.UpdateUserRequest, request, fields, timeout, metadata, "user")

    def disable_user(self, request: pb.DisableUserRequest | str | None = None, /, *,
                     timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """DisableUser; a str is the user id."""
        return self._call("DisableUser", pb.DisableUserRequest, request, fields, timeout, metadata, "id")

    def enable_user(self, request: pb.EnableUserRequest | str | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """EnableUser; a str is the user id."""
        return self._call("EnableUser", pb.EnableUserRequest, request, fields, timeout, metadata, "id")

    def iter_users(self, request: pb.ListUsersRequest | None = None, /, *,
                   timeout: float | None = None, metadata: Metadata = (),
                   **filters: Any) -> Iterator[pb.User]:
        """Every user of the tenant across pages, e.g. iter_users(status=USER_STATUS_LOCKED)."""
        return self._iter("ListUsers", pb.ListUsersRequest, "users", request, filters, timeout, metadata)

    def login(self, request: pb.LoginRequest | None = None, /, *,
              timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.LoginResponse:
        """Login(tenant_code=, username=, password=). Sends no credential: it needs
        none, and a stale token held by this client must not fail the re-login."""
        return self._call("Login", pb.LoginRequest, request, fields, timeout, metadata, authenticate=False)

    # Roles.

    def create_role(self, request: pb.CreateRoleRequest | pb.Role | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Role:
        """CreateRole; a Role is wrapped. request_id is filled when empty."""
        return self._call("CreateRole", pb.CreateRoleRequest, request, fields, timeout, metadata, "role")

    def get_role(self, request: pb.GetRoleRequest | str | None = None, /, *,
                 timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Role:
        """GetRole; a str is the role id."""
        return self._call("GetRole", pb.GetRoleRequest, request, fields, timeout, metadata, "id")

    def list_roles(self, request: pb.ListRolesRequest | None = None, /, *,
                   timeout: float | None = None, metadata: Metadata = (),
                   **fields: Any) -> pb.ListRolesResponse:
        """ListRoles: one page (see iter_roles for all)."""
        return self._call("ListRoles", pb.ListRolesRequest, request, fields, timeout, metadata)

    def update_role(self, request: pb.UpdateRoleRequest | pb.Role | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Role:
        """UpdateRole; a Role is wrapped, update_mask may be a list of paths."""
        return self._call("UpdateRole", pb.UpdateRoleRequest, request, fields, timeout, metadata, "role")

    def delete_role(self, request: pb.DeleteRoleRequest | str | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (),
                    **fields: Any) -> pb.DeleteRoleResponse:
        """DeleteRole; a str is the role id."""
        return self._call("DeleteRole", pb.DeleteRoleRequest, request, fields, timeout, metadata, "id")

    def assign_role(self, request: pb.AssignRoleRequest | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (),
                    **fields: Any) -> pb.AssignRoleResponse:
        """AssignRole(user_id=, role_id=)."""
        return self._call("AssignRole", pb.AssignRoleRequest, request, fields, timeout, metadata)

    def unassign_role(self, request: pb.UnassignRoleRequest | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (),
                      **fields: Any) -> pb.UnassignRoleResponse:
        """UnassignRole(user_id=, role_id=)."""
        return self._call("UnassignRole", pb.UnassignRoleRequest, request, fields, timeout, metadata)

    def iter_roles(self, request: pb.ListRolesRequest | None = None, /, *,
                   timeout: float | None = None, metadata: Metadata = (),
                   **filters: Any) -> Iterator[pb.Role]:
        """Every role of the tenant across pages."""
        return self._iter("ListRoles", pb.ListRolesRequest, "roles", request, filters, timeout, metadata)

    # API keys.

    def create_api_key(self, request: pb.CreateApiKeyRequest | pb.ApiKey | None = None, /, *,
                       timeout: float | None = None, metadata: Metadata = (),
                       **fields: Any) -> pb.CreateApiKeyResponse:
        """CreateApiKey; an ApiKey is wrapped. The secret is in this response only."""
        return self._call("CreateApiKey", pb.CreateApiKeyRequest, request, fields, timeout, metadata, "api_key")

    def get_api_key(self, request: pb.GetApiKeyRequest | str | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.ApiKey:
        """GetApiKey; a str is the key id."""
        return self._call("GetApiKey", pb.GetApiKeyRequest, request, fields, timeout, metadata, "id")

    def list_api_keys(self, request: pb.ListApiKeysRequest | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (),
                      **fields: Any) -> pb.ListApiKeysResponse:
        """ListApiKeys: one page (see iter_api_keys for all)."""
        return self._call("ListApiKeys", pb.ListApiKeysRequest, request, fields, timeout, metadata)

    def revoke_api_key(self, request: pb.RevokeApiKeyRequest | str | None = None, /, *,
                       timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.ApiKey:
        """RevokeApiKey; a str is the key id."""
        return self._call("RevokeApiKey", pb.RevokeApiKeyRequest, request, fields, timeout, metadata, "id")

    def iter_api_keys(self, request: pb.ListApiKeysRequest | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (),
                      **filters: Any) -> Iterator[pb.ApiKey]:
        """Every API key across pages, e.g. iter_api_keys(show_revoked=True)."""
        return self._iter("ListApiKeys", pb.ListApiKeysRequest, "api_keys", request, filters, timeout, metadata)


class WeworkClient:
    """Blocking client of the platform; use as a context manager or call close().

    Pass `channel` to use your own (e.g. a test channel); the client then does
    not close it.
    """

    def __init__(self, options: ClientOptions, *, channel: grpc.Channel | None = None) -> None:
        self.options = options
        self._owns_channel = channel is None
        self.channel: grpc.Channel = options.create_channel() if channel is None else channel
        transport = Transport(self.channel, CallSettings(options))
        self.tenants = TenantServiceClient(transport)

    def with_options(self, **changes: Any) -> WeworkClient:
        """A client on the same channel with other api_key/access_token/tenant_id/timeout.

        A new credential replaces the old one, e.g. with_options(access_token=login.access_token).
        The returned client does not own the channel: close the original.
        """
        check_per_call_changes(changes)
        if changes.get("access_token"):
            changes.setdefault("api_key", None)
        if changes.get("api_key"):
            changes.setdefault("access_token", None)
        return WeworkClient(dataclasses.replace(self.options, **changes), channel=self.channel)

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
