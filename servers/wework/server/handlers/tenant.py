"""TenantService handler: maps requests to use cases and results to protos."""

from __future__ import annotations

from collections.abc import Iterable

from wework.domain.access import Permissions as P
from wework.domain.identity import ApiKey, Role, Tenant, TenantStatus, User, UserStatus
from wework.server.application.api_keys import ApiKeyUseCases
from wework.server.application.roles import RoleUseCases
from wework.server.application.tenants import TenantUseCases
from wework.server.application.users import UserUseCases
from wework.server.handlers.convert import from_struct, from_timestamp, peer_ip, to_struct, to_timestamp
from wework.server.runtime.context import current_principal
from wework.server.runtime.registry import ServiceRegistration
from wework.v1 import tenant_pb2 as pb
from wework.v1 import tenant_pb2_grpc as pb_grpc

# Permission each RPC needs (None: public). The interceptor enforces it before
# the handler runs; use cases then scope every read and write to the caller's tenant.
METHOD_PERMISSIONS: dict[str, str | None] = {
    "CreateTenant": P.PLATFORM_TENANTS_WRITE,
    "GetTenant": P.TENANT_READ,
    "ListTenants": P.PLATFORM_TENANTS_READ,
    "UpdateTenant": P.PLATFORM_TENANTS_WRITE,
    "SuspendTenant": P.PLATFORM_TENANTS_WRITE,
    "ResumeTenant": P.PLATFORM_TENANTS_WRITE,
    "DeleteTenant": P.PLATFORM_TENANTS_WRITE,
    "CreateUser": P.USERS_WRITE,
    "GetUser": P.USERS_READ,
    "ListUsers": P.USERS_READ,
    "UpdateUser": P.USERS_WRITE,
    "DisableUser": P.USERS_WRITE,
    "EnableUser": P.USERS_WRITE,
    "Login": None,
    "CreateRole": P.ROLES_WRITE,
    "GetRole": P.ROLES_READ,
    "ListRoles": P.ROLES_READ,
    "UpdateRole": P.ROLES_WRITE,
    "DeleteRole": P.ROLES_WRITE,
    "AssignRole": P.ROLES_WRITE,
    "UnassignRole": P.ROLES_WRITE,
    "CreateApiKey": P.API_KEYS_WRITE,
    "GetApiKey": P.API_KEYS_READ,
    "ListApiKeys": P.API_KEYS_READ,
    "RevokeApiKey": P.API_KEYS_WRITE,
}

_TENANT_STATUS = {
    TenantStatus.ACTIVE: pb.TENANT_STATUS_ACTIVE,
    TenantStatus.SUSPENDED: pb.TENANT_STATUS_SUSPENDED,
    TenantStatus.DELETED: pb.TENANT_STATUS_DELETED,
}
_TENANT_STATUS_IN = {v: k for k, v in _TENANT_STATUS.items()}
_USER_STATUS = {
    UserStatus.ACTIVE: pb.USER_STATUS_ACTIVE,
    UserStatus.INACTIVE: pb.USER_STATUS_INACTIVE,
    UserStatus.LOCKED: pb.USER_STATUS_LOCKED,
    UserStatus.DELETED: pb.USER_STATUS_DELETED,
}
_USER_STATUS_IN = {v: k for k, v in _USER_STATUS.items()}


# ---- mapping --------------------------------------------------------------------------------


def tenant_to_pb(t: Tenant) -> pb.Tenant:
    return pb.Tenant(
        id=t.id, tenant_code=t.tenant_code, tenant_name=t.tenant_name,
        contact_person=t.contact_person or "", contact_phone=t.contact_phone or "",
        contact_email=t.contact_email or "", max_accounts=t.max_accounts,
        max_daily_messages=t.max_daily_messages, webhook_url=t.webhook_url or "",
        config=to_struct(t.config), status=_TENANT_STATUS[t.status],
        create_time=to_timestamp(t.created_at), update_time=to_timestamp(t.updated_at), etag=t.etag,
        suspend_reason=t.suspend_reason or "",
    )


def tenant_from_pb(m: pb.Tenant) -> Tenant:
    return Tenant(
        id=m.id, tenant_code=m.tenant_code, tenant_name=m.tenant_name,
        contact_person=m.contact_person or None, contact_phone=m.contact_phone or None,
        contact_email=m.contact_email or None,
        max_accounts=m.max_accounts if m.HasField("max_accounts") else Tenant.max_accounts,
        max_daily_messages=(m.max_daily_messages if m.HasField("max_daily_messages")
                            else Tenant.max_daily_messages),
        webhook_url=m.webhook_url or None,
        config=from_struct(m, "config"),
    )


def user_to_pb(u: User) -> pb.User:
    return pb.User(
        id=u.id, tenant_id=u.tenant_id, username=u.username, email=u.email, phone=u.phone or "",
        real_name=u.real_name or "", avatar_url=u.avatar_url or "", status=_USER_STATUS[u.status],
        last_login_time=to_timestamp(u.last_login_time), last_login_ip=u.last_login_ip or "",
        failed_login_count=u.failed_login_count, locked_until=to_timestamp(u.locked_until),
        role_ids=u.role_ids, create_time=to_timestamp(u.created_at), update_time=to_timestamp(u.updated_at),
        etag=u.etag,
    )


def user_values_from_pb(m: pb.User, paths: Iterable[str] | None = None) -> dict:
    names = ("username", "email", "phone", "real_name", "avatar_url", "password")
    wanted = set(paths) if paths is not None else set(names)
    return {n: getattr(m, n) for n in names if n in wanted}


def role_to_pb(r: Role) -> pb.Role:
    return pb.Role(
        id=r.id, tenant_id=r.tenant_id, role_code=r.role_code, role_name=r.role_name,
        description=r.description or "", permissions=r.permissions, is_system=r.is_system,
        is_active=r.is_active, create_time=to_timestamp(r.created_at), update_time=to_timestamp(r.updated_at),
        etag=r.etag,
    )


def role_from_pb(m: pb.Role) -> Role:
    return Role(id=m.id, tenant_id="", role_code=m.role_code, role_name=m.role_name,
                permissions=list(m.permissions), description=m.description or None, is_active=m.is_active)


def api_key_to_pb(k: ApiKey) -> pb.ApiKey:
    return pb.ApiKey(
        id=k.id, tenant_id=k.tenant_id, display_name=k.display_name, role_id=k.role_id, prefix=k.prefix,
        create_time=to_timestamp(k.created_at), revoke_time=to_timestamp(k.revoked_at),
        expire_time=to_timestamp(k.expires_at), last_used_time=to_timestamp(k.last_used_at),
    )


# ---- servicer ---------------------------------------------------------------------------------


class TenantServiceHandler(pb_grpc.TenantServiceServicer):
    def __init__(self, tenants: TenantUseCases, users: UserUseCases, roles: RoleUseCases,
                 api_keys: ApiKeyUseCases) -> None:
        self._tenants, self._users, self._roles, self._keys = tenants, users, roles, api_keys

    # tenants
    async def CreateTenant(self, request, context):
        return tenant_to_pb(await self._tenants.create_tenant(
            current_principal(), tenant_from_pb(request.tenant), request.request_id))

    async def GetTenant(self, request, context):
        return tenant_to_pb(await self._tenants.get_tenant(current_principal(), request.id))

    async def ListTenants(self, request, context):
        status = _TENANT_STATUS_IN.get(request.status)
        page, token = await self._tenants.list_tenants(current_principal(), status, request.page_size,
                                                       request.page_token)
        return pb.ListTenantsResponse(tenants=[tenant_to_pb(t) for t in page], next_page_token=token)

    async def UpdateTenant(self, request, context):
        return tenant_to_pb(await self._tenants.update_tenant(
            current_principal(), tenant_from_pb(request.tenant), list(request.update_mask.paths),
            request.tenant.etag))

    async def SuspendTenant(self, request, context):
        return tenant_to_pb(await self._tenants.change_status(
            current_principal(), request.id, TenantStatus.SUSPENDED, request.etag, request.reason))

    async def ResumeTenant(self, request, context):
        return tenant_to_pb(await self._tenants.change_status(
            current_principal(), request.id, TenantStatus.ACTIVE, request.etag))

    async def DeleteTenant(self, request, context):
        return tenant_to_pb(await self._tenants.change_status(
            current_principal(), request.id, TenantStatus.DELETED, request.etag))

    # users
    async def CreateUser(self, request, context):
        return user_to_pb(await self._users.create_user(
            current_principal(), user_values_from_pb(request.user), request.request_id,
            list(request.user.role_ids)))

    async def GetUser(self, request, context):
        return user_to_pb(await self._users.get_user(current_principal(), request.id))

    async def ListUsers(self, request, context):
        page, token = await self._users.list_users(current_principal(), _USER_STATUS_IN.get(request.status),
                                                   request.page_size, request.page_token)
        return pb.ListUsersResponse(users=[user_to_pb(u) for u in page], next_page_token=token)

    async def UpdateUser(self, request, context):
        paths = list(request.update_mask.paths)
        return user_to_pb(await self._users.update_user(
            current_principal(), request.user.id, user_values_from_pb(request.user, paths), paths,
            request.user.etag))

    async def DisableUser(self, request, context):
        return user_to_pb(await self._users.set_enabled(current_principal(), request.id, enabled=False))

    async def EnableUser(self, request, context):
        return user_to_pb(await self._users.set_enabled(current_principal(), request.id, enabled=True))

    async def Login(self, request, context):
        token, expires, user = await self._users.login(request.tenant_code, request.username, request.password,
                                                       peer_ip(context.peer()))
        return pb.LoginResponse(access_token=token, expire_time=to_timestamp(expires), user=user_to_pb(user))

    # roles
    async def CreateRole(self, request, context):
        return role_to_pb(await self._roles.create_role(current_principal(), role_from_pb(request.role),
                                                        request.request_id))

    async def GetRole(self, request, context):
        return role_to_pb(await self._roles.get_role(current_principal(), request.id))

    async def ListRoles(self, request, context):
        page, token = await self._roles.list_roles(current_principal(), request.page_size, request.page_token)
        return pb.ListRolesResponse(roles=[role_to_pb(r) for r in page], next_page_token=token)

    async def UpdateRole(self, request, context):
        return role_to_pb(await self._roles.update_role(
            current_principal(), role_from_pb(request.role), list(request.update_mask.paths),
            request.role.etag))

    async def DeleteRole(self, request, context):
        await self._roles.delete_role(current_principal(), request.id)
        return pb.DeleteRoleResponse()

    async def AssignRole(self, request, context):
        user = await self._roles.assign(current_principal(), request.user_id, request.role_id, assign=True)
        return pb.AssignRoleResponse(user=user_to_pb(user))

    async def UnassignRole(self, request, context):
        user = await self._roles.assign(current_principal(), request.user_id, request.role_id, assign=False)
        return pb.UnassignRoleResponse(user=user_to_pb(user))

    # API keys
    async def CreateApiKey(self, request, context):
        key, secret = await self._keys.create_api_key(
            current_principal(), request.api_key.display_name, request.api_key.role_id,
            from_timestamp(request.api_key, "expire_time"), request.request_id)
        return pb.CreateApiKeyResponse(api_key=api_key_to_pb(key), secret=secret)

    async def GetApiKey(self, request, context):
        return api_key_to_pb(await self._keys.get_api_key(current_principal(), request.id))

    async def ListApiKeys(self, request, context):
        page, token = await self._keys.list_api_keys(current_principal(), request.show_revoked,
                                                     request.page_size, request.page_token)
        return pb.ListApiKeysResponse(api_keys=[api_key_to_pb(k) for k in page], next_page_token=token)

    async def RevokeApiKey(self, request, context):
        return api_key_to_pb(await self._keys.revoke_api_key(current_principal(), request.id))


def registration(handler: TenantServiceHandler) -> ServiceRegistration:
    return ServiceRegistration(
        name="tenant",
        service_full_name="wework.v1.TenantService",
        servicer=handler,
        add_to_server=pb_grpc.add_TenantServiceServicer_to_server,
        method_permissions=METHOD_PERMISSIONS,
    )
