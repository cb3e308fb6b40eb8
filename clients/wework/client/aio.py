"""asyncio client: `async with AsyncWeworkClient(options) as c: await c.tenants.get_tenant("...")`.

Same surface as wework.client.sync, on a grpc.aio channel: unary methods are
coroutines and the iter_* methods are async generators.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, Self

import grpc
import grpc.aio
from wework.v1 import (
    account_pb2,
    account_pb2_grpc,
    callback_pb2,
    callback_pb2_grpc,
    message_pb2,
    message_pb2_grpc,
    report_pb2,
    report_pb2_grpc,
    tenant_pb2_grpc,
)
from wework.v1 import tenant_pb2 as pb

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
from .sync import RESUMABLE_STREAM_CODES, with_cursor


class AsyncTransport:
    """Calls unary methods of a grpc.aio channel with the client's metadata and deadline."""

    def __init__(self, channel: grpc.aio.Channel, settings: CallSettings) -> None:
        self.channel = channel
        self.settings = settings

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable,
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
            return await method(request, timeout=self.settings.timeout(timeout), metadata=md)
        except grpc.RpcError as exc:  # grpc.aio.AioRpcError is one
            raise from_rpc_error(exc) from exc

    async def pages(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable,
        request: Any,
        items: str,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        """Yields the `items` of every page; each page gets its own deadline."""
        while True:
            response = await self.unary(method, request, timeout=timeout, metadata=metadata)
            for item in getattr(response, items):
                yield item
            token = next_page_token(request, response)
            if not token:
                return
            request = with_page_token(request, token)


class AsyncService:
    """Base of an asyncio service wrapper; see wework.client.sync.Service."""

    stub_class: ClassVar[Callable[[grpc.aio.Channel], Any]]

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport
        # Generated stubs work on grpc.aio channels too: their multicallables are awaitable.
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
    ) -> Awaitable[Any]:
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
    ) -> AsyncIterator[Any]:
        # Build now so a bad argument fails at the call, not at the first iteration.
        message = build_request(request_cls, request, fields)
        return self._transport.pages(getattr(self._stub, rpc), message, items, timeout=timeout, metadata=metadata)


class AsyncTenantServiceClient(AsyncService):
    """wework.v1.TenantService (asyncio): tenants, users, roles, API keys and login.

    Every method accepts the request message, or keyword fields of it; where a
    positional shortcut is noted, a str is the resource id and a resource
    message is wrapped into its Create/Update request. `timeout` (seconds)
    overrides the default deadline; `metadata` adds headers.
    """

    stub_class = tenant_pb2_grpc.TenantServiceStub

    # Tenants (platform admin).

    async def create_tenant(self, request: pb.CreateTenantRequest | pb.Tenant | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """CreateTenant; a Tenant is wrapped. request_id is filled when empty."""
        return await self._call("CreateTenant", pb.CreateTenantRequest, request, fields, timeout, metadata, "tenant")

    async def get_tenant(self, request: pb.GetTenantRequest | str | None = None, /, *,
                         timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """GetTenant; a str is the tenant id."""
        return await self._call("GetTenant", pb.GetTenantRequest, request, fields, timeout, metadata, "id")

    async def list_tenants(self, request: pb.ListTenantsRequest | None = None, /, *,
                           timeout: float | None = None, metadata: Metadata = (),
                           **fields: Any) -> pb.ListTenantsResponse:
        """ListTenants: one page (see iter_tenants for all)."""
        return await self._call("ListTenants", pb.ListTenantsRequest, request, fields, timeout, metadata)

    async def update_tenant(self, request: pb.UpdateTenantRequest | pb.Tenant | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """UpdateTenant; a Tenant is wrapped, update_mask may be a list of paths."""
        return await self._call("UpdateTenant", pb.UpdateTenantRequest, request, fields, timeout, metadata, "tenant")

    async def suspend_tenant(self, request: pb.SuspendTenantRequest | str | None = None, /, *,
                             timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """SuspendTenant; a str is the tenant id (etag= optional)."""
        return await self._call("SuspendTenant", pb.SuspendTenantRequest, request, fields, timeout, metadata, "id")

    async def resume_tenant(self, request: pb.ResumeTenantRequest | str | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """ResumeTenant; a str is the tenant id (etag= optional)."""
        return await self._call("ResumeTenant", pb.ResumeTenantRequest, request, fields, timeout, metadata, "id")

    async def delete_tenant(self, request: pb.DeleteTenantRequest | str | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Tenant:
        """DeleteTenant (soft); a str is the tenant id (etag= optional)."""
        return await self._call("DeleteTenant", pb.DeleteTenantRequest, request, fields, timeout, metadata, "id")

    def iter_tenants(self, request: pb.ListTenantsRequest | None = None, /, *,
                     timeout: float | None = None, metadata: Metadata = (),
                     **filters: Any) -> AsyncIterator[pb.Tenant]:
        """Every tenant across pages, e.g. iter_tenants(status=TENANT_STATUS_ACTIVE)."""
        return self._iter("ListTenants", pb.ListTenantsRequest, "tenants", request, filters, timeout, metadata)

    # Users of the caller's tenant.

    async def create_user(self, request: pb.CreateUserRequest | pb.User | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """CreateUser; a User is wrapped. request_id is filled when empty."""
        return await self._call("CreateUser", pb.CreateUserRequest, request, fields, timeout, metadata, "user")

    async def get_user(self, request: pb.GetUserRequest | str | None = None, /, *,
                       timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """GetUser; a str is the user id."""
        return await self._call("GetUser", pb.GetUserRequest, request, fields, timeout, metadata, "id")

    async def list_users(self, request: pb.ListUsersRequest | None = None, /, *,
                         timeout: float | None = None, metadata: Metadata = (),
                         **fields: Any) -> pb.ListUsersResponse:
        """ListUsers: one page (see iter_users for all)."""
        return await self._call("ListUsers", pb.ListUsersRequest, request, fields, timeout, metadata)

    async def update_user(self, request: pb.UpdateUserRequest | pb.User | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """UpdateUser; a User is wrapped, update_mask may be a list of paths."""
        return await self._call("UpdateUser", pb.UpdateUserRequest, request, fields, timeout, metadata, "user")

    async def disable_user(self, request: pb.DisableUserRequest | str | None = None, /, *,
                           timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """DisableUser; a str is the user id."""
        return await self._call("DisableUser", pb.DisableUserRequest, request, fields, timeout, metadata, "id")

    async def enable_user(self, request: pb.EnableUserRequest | str | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.User:
        """EnableUser; a str is the user id."""
        return await self._call("EnableUser", pb.EnableUserRequest, request, fields, timeout, metadata, "id")

    def iter_users(self, request: pb.ListUsersRequest | None = None, /, *,
                   timeout: float | None = None, metadata: Metadata = (),
                   **filters: Any) -> AsyncIterator[pb.User]:
        """Every user of the tenant across pages, e.g. iter_users(status=USER_STATUS_LOCKED)."""
        return self._iter("ListUsers", pb.ListUsersRequest, "users", request, filters, timeout, metadata)

    async def login(self, request: pb.LoginRequest | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.LoginResponse:
        """Login(tenant_code=, username=, password=). Sends no credential: it needs
        none, and a stale token held by this client must not fail the re-login."""
        return await self._call("Login", pb.LoginRequest, request, fields, timeout, metadata, authenticate=False)

    # Roles.

    async def create_role(self, request: pb.CreateRoleRequest | pb.Role | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Role:
        """CreateRole; a Role is wrapped. request_id is filled when empty."""
        return await self._call("CreateRole", pb.CreateRoleRequest, request, fields, timeout, metadata, "role")

    async def get_role(self, request: pb.GetRoleRequest | str | None = None, /, *,
                       timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Role:
        """GetRole; a str is the role id."""
        return await self._call("GetRole", pb.GetRoleRequest, request, fields, timeout, metadata, "id")

    async def list_roles(self, request: pb.ListRolesRequest | None = None, /, *,
                         timeout: float | None = None, metadata: Metadata = (),
                         **fields: Any) -> pb.ListRolesResponse:
        """ListRoles: one page (see iter_roles for all)."""
        return await self._call("ListRoles", pb.ListRolesRequest, request, fields, timeout, metadata)

    async def update_role(self, request: pb.UpdateRoleRequest | pb.Role | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.Role:
        """UpdateRole; a Role is wrapped, update_mask may be a list of paths."""
        return await self._call("UpdateRole", pb.UpdateRoleRequest, request, fields, timeout, metadata, "role")

    async def delete_role(self, request: pb.DeleteRoleRequest | str | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (),
                          **fields: Any) -> pb.DeleteRoleResponse:
        """DeleteRole; a str is the role id."""
        return await self._call("DeleteRole", pb.DeleteRoleRequest, request, fields, timeout, metadata, "id")

    async def assign_role(self, request: pb.AssignRoleRequest | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (),
                          **fields: Any) -> pb.AssignRoleResponse:
        """AssignRole(user_id=, role_id=)."""
        return await self._call("AssignRole", pb.AssignRoleRequest, request, fields, timeout, metadata)

    async def unassign_role(self, request: pb.UnassignRoleRequest | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (),
                            **fields: Any) -> pb.UnassignRoleResponse:
        """UnassignRole(user_id=, role_id=)."""
        return await self._call("UnassignRole", pb.UnassignRoleRequest, request, fields, timeout, metadata)

    def iter_roles(self, request: pb.ListRolesRequest | None = None, /, *,
                   timeout: float | None = None, metadata: Metadata = (),
                   **filters: Any) -> AsyncIterator[pb.Role]:
        """Every role of the tenant across pages."""
        return self._iter("ListRoles", pb.ListRolesRequest, "roles", request, filters, timeout, metadata)

    # API keys.

    async def create_api_key(self, request: pb.CreateApiKeyRequest | pb.ApiKey | None = None, /, *,
                             timeout: float | None = None, metadata: Metadata = (),
                             **fields: Any) -> pb.CreateApiKeyResponse:
        """CreateApiKey; an ApiKey is wrapped. The secret is in this response only."""
        return await self._call("CreateApiKey", pb.CreateApiKeyRequest, request, fields, timeout, metadata, "api_key")

    async def get_api_key(self, request: pb.GetApiKeyRequest | str | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.ApiKey:
        """GetApiKey; a str is the key id."""
        return await self._call("GetApiKey", pb.GetApiKeyRequest, request, fields, timeout, metadata, "id")

    async def list_api_keys(self, request: pb.ListApiKeysRequest | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (),
                            **fields: Any) -> pb.ListApiKeysResponse:
        """ListApiKeys: one page (see iter_api_keys for all)."""
        return await self._call("ListApiKeys", pb.ListApiKeysRequest, request, fields, timeout, metadata)

    async def revoke_api_key(self, request: pb.RevokeApiKeyRequest | str | None = None, /, *,
                             timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> pb.ApiKey:
        """RevokeApiKey; a str is the key id."""
        return await self._call("RevokeApiKey", pb.RevokeApiKeyRequest, request, fields, timeout, metadata, "id")

    def iter_api_keys(self, request: pb.ListApiKeysRequest | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (),
                      **filters: Any) -> AsyncIterator[pb.ApiKey]:
        """Every API key across pages, e.g. iter_api_keys(show_revoked=True)."""
        return self._iter("ListApiKeys", pb.ListApiKeysRequest, "api_keys", request, filters, timeout, metadata)


class AsyncAccountServiceClient(AsyncService):
    """wework.v1.AccountService (asyncio); see wework.client.sync.AccountServiceClient."""

    stub_class = account_pb2_grpc.AccountServiceStub

    # Accounts.

    async def create_account(self, request: account_pb2.CreateAccountRequest | account_pb2.Account | None = None,
                             /, *, timeout: float | None = None, metadata: Metadata = (),
                             **fields: Any) -> account_pb2.Account:
        """CreateAccount; an Account is wrapped. request_id is filled when empty."""
        return await self._call("CreateAccount", account_pb2.CreateAccountRequest, request, fields, timeout,
                                metadata, "account")

    async def get_account(self, request: account_pb2.GetAccountRequest | str | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (),
                          **fields: Any) -> account_pb2.Account:
        """GetAccount; a str is the account id."""
        return await self._call("GetAccount", account_pb2.GetAccountRequest, request, fields, timeout, metadata,
                                "id")

    async def list_accounts(self, request: account_pb2.ListAccountsRequest | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (),
                            **fields: Any) -> account_pb2.ListAccountsResponse:
        """ListAccounts: one page (see iter_accounts for all)."""
        return await self._call("ListAccounts", account_pb2.ListAccountsRequest, request, fields, timeout,
                                metadata)

    def iter_accounts(self, request: account_pb2.ListAccountsRequest | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (),
                      **filters: Any) -> AsyncIterator[account_pb2.Account]:
        """Every account across pages."""
        return self._iter("ListAccounts", account_pb2.ListAccountsRequest, "accounts", request, filters, timeout,
                          metadata)

    async def update_account(self, request: account_pb2.UpdateAccountRequest | account_pb2.Account | None = None,
                             /, *, timeout: float | None = None, metadata: Metadata = (),
                             **fields: Any) -> account_pb2.Account:
        """UpdateAccount; an Account is wrapped, update_mask may be a list of paths."""
        return await self._call("UpdateAccount", account_pb2.UpdateAccountRequest, request, fields, timeout,
                                metadata, "account")

    async def delete_account(self, request: account_pb2.DeleteAccountRequest | str | None = None, /, *,
                             timeout: float | None = None, metadata: Metadata = (),
                             **fields: Any) -> account_pb2.DeleteAccountResponse:
        """DeleteAccount; a str is the account id (etag= optional)."""
        return await self._call("DeleteAccount", account_pb2.DeleteAccountRequest, request, fields, timeout,
                                metadata, "id")

    # Login.

    async def start_login(self, request: account_pb2.StartLoginRequest | str | None = None, /, *,
                          timeout: float | None = None, metadata: Metadata = (),
                          **fields: Any) -> account_pb2.LoginState:
        """StartLogin; a str is the account id. Returns the QR code to scan."""
        return await self._call("StartLogin", account_pb2.StartLoginRequest, request, fields, timeout, metadata,
                                "id")

    async def submit_verification_code(self,
                                       request: account_pb2.SubmitVerificationCodeRequest | str | None = None,
                                       /, *, timeout: float | None = None, metadata: Metadata = (),
                                       **fields: Any) -> account_pb2.LoginState:
        """SubmitVerificationCode; a str is the account id: submit_verification_code(id, code="...")."""
        return await self._call("SubmitVerificationCode", account_pb2.SubmitVerificationCodeRequest, request,
                                fields, timeout, metadata, "id")

    async def logout(self, request: account_pb2.LogoutRequest | str | None = None, /, *,
                     timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> account_pb2.Account:
        """Logout; a str is the account id."""
        return await self._call("Logout", account_pb2.LogoutRequest, request, fields, timeout, metadata, "id")

    async def get_login_state(self, request: account_pb2.GetLoginStateRequest | str | None = None, /, *,
                              timeout: float | None = None, metadata: Metadata = (),
                              **fields: Any) -> account_pb2.LoginState:
        """GetLoginState; a str is the account id."""
        return await self._call("GetLoginState", account_pb2.GetLoginStateRequest, request, fields, timeout,
                                metadata, "id")

    # Status history and the change stream.

    async def list_status_history(self, request: account_pb2.ListStatusHistoryRequest | str | None = None, /, *,
                                  timeout: float | None = None, metadata: Metadata = (),
                                  **fields: Any) -> account_pb2.ListStatusHistoryResponse:
        """ListStatusHistory: one page, newest first; a str is the account id."""
        return await self._call("ListStatusHistory", account_pb2.ListStatusHistoryRequest, request, fields,
                                timeout, metadata, "account_id")

    def iter_status_history(self, request: account_pb2.ListStatusHistoryRequest | str | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (),
                            **fields: Any) -> AsyncIterator[account_pb2.AccountStatusChange]:
        """Every status change of an account, newest first; a str is the account id."""
        message = build_request(account_pb2.ListStatusHistoryRequest, request, fields, "account_id")
        return self._transport.pages(self._stub.ListStatusHistory, message, "status_changes", timeout=timeout,
                                     metadata=metadata)

    def watch_accounts(self, request: account_pb2.WatchAccountsRequest | None = None, /, *,
                       resume: bool = True, timeout: float | None = None, metadata: Metadata = (),
                       reconnect_delay: float = 0.1, max_reconnect_delay: float = 5.0,
                       max_reconnects: int | None = None,
                       **fields: Any) -> AsyncIterator[account_pb2.WatchAccountsResponse]:
        """WatchAccounts as an async iterator that resumes from the last cursor after a broken
        stream; see wework.client.sync.AccountServiceClient.watch_accounts."""
        message = build_request(account_pb2.WatchAccountsRequest, request, fields)
        return self._watch(message, resume, timeout, metadata, reconnect_delay, max_reconnect_delay,
                           max_reconnects)

    async def _watch(self, message: account_pb2.WatchAccountsRequest, resume: bool, timeout: float | None,
                     metadata: Metadata, delay: float, max_delay: float,
                     max_reconnects: int | None) -> AsyncIterator[account_pb2.WatchAccountsResponse]:
        cursor, reconnects, wait, reopened = message.cursor, 0, delay, False
        while True:
            call = self._stub.WatchAccounts(with_cursor(message, cursor), timeout=timeout,
                                            metadata=self._transport.settings.metadata(metadata))
            try:
                async for response in call:
                    wait = delay
                    reconnects = 0 if response.HasField("change") else reconnects
                    cursor = response.cursor or cursor
                    if reopened and not response.HasField("change"):
                        continue
                    yield response
                return  # the server ended the stream
            except grpc.RpcError as exc:
                if not (resume and exc.code() in RESUMABLE_STREAM_CODES
                        and (max_reconnects is None or reconnects < max_reconnects)):
                    raise from_rpc_error(exc) from exc
            finally:
                call.cancel()
            reconnects += 1
            reopened = True
            await asyncio.sleep(wait)
            wait = min(wait * 2, max_delay)

    # Conversations.

    async def list_conversations(self, request: account_pb2.ListConversationsRequest | str | None = None, /, *,
                                 timeout: float | None = None, metadata: Metadata = (),
                                 **fields: Any) -> account_pb2.ListConversationsResponse:
        """ListConversations: one page; a str is the account id."""
        return await self._call("ListConversations", account_pb2.ListConversationsRequest, request, fields,
                                timeout, metadata, "account_id")

    def iter_conversations(self, request: account_pb2.ListConversationsRequest | str | None = None, /, *,
                           timeout: float | None = None, metadata: Metadata = (),
                           **fields: Any) -> AsyncIterator[account_pb2.Conversation]:
        """Every conversation of an account across pages; a str is the account id."""
        message = build_request(account_pb2.ListConversationsRequest, request, fields, "account_id")
        return self._transport.pages(self._stub.ListConversations, message, "conversations", timeout=timeout,
                                     metadata=metadata)

    async def get_conversation(self, request: account_pb2.GetConversationRequest | str | None = None, /, *,
                               timeout: float | None = None, metadata: Metadata = (),
                               **fields: Any) -> account_pb2.Conversation:
        """GetConversation; a str is the conversation id."""
        return await self._call("GetConversation", account_pb2.GetConversationRequest, request, fields, timeout,
                                metadata, "id")

    async def update_conversation(
            self, request: account_pb2.UpdateConversationRequest | account_pb2.Conversation | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> account_pb2.Conversation:
        """UpdateConversation; a Conversation is wrapped, update_mask may be a list of paths."""
        return await self._call("UpdateConversation", account_pb2.UpdateConversationRequest, request, fields,
                                timeout, metadata, "conversation")


class AsyncMessageServiceClient(AsyncService):
    """wework.v1.MessageService (asyncio): messages, templates and batch tasks. Same conventions
    as TenantServiceClient; a str is the id."""

    stub_class = message_pb2_grpc.MessageServiceStub

    async def send_message(self, request: message_pb2.SendMessageRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.Message:
        """SendMessage; request_id is filled when empty (a retry with the same request returns the same message)."""
        return await self._call("SendMessage", message_pb2.SendMessageRequest, request, fields, timeout, metadata)

    async def get_message(self, request: message_pb2.GetMessageRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.Message:
        """GetMessage; a str is the message id."""
        return await self._call("GetMessage", message_pb2.GetMessageRequest, request, fields, timeout, metadata, "id")

    async def list_messages(self, request: message_pb2.ListMessagesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.ListMessagesResponse:
        """ListMessages: one page, newest first (see iter_messages for all)."""
        return await self._call("ListMessages", message_pb2.ListMessagesRequest, request, fields, timeout, metadata)

    async def cancel_message(self, request: message_pb2.CancelMessageRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.Message:
        """CancelMessage; a str is the message id."""
        return await self._call("CancelMessage", message_pb2.CancelMessageRequest, request, fields, timeout, metadata, "id")

    async def retry_message(self, request: message_pb2.RetryMessageRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.Message:
        """RetryMessage; a str is the message id."""
        return await self._call("RetryMessage", message_pb2.RetryMessageRequest, request, fields, timeout, metadata, "id")

    async def create_template(self, request: message_pb2.CreateTemplateRequest | message_pb2.MessageTemplate | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.MessageTemplate:
        """CreateTemplate; a MessageTemplate is wrapped. request_id is filled when empty."""
        return await self._call("CreateTemplate", message_pb2.CreateTemplateRequest, request, fields, timeout, metadata, "template")

    async def get_template(self, request: message_pb2.GetTemplateRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.MessageTemplate:
        """GetTemplate; a str is the template id."""
        return await self._call("GetTemplate", message_pb2.GetTemplateRequest, request, fields, timeout, metadata, "id")

    async def list_templates(self, request: message_pb2.ListTemplatesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.ListTemplatesResponse:
        """ListTemplates: one page (see iter_templates for all)."""
        return await self._call("ListTemplates", message_pb2.ListTemplatesRequest, request, fields, timeout, metadata)

    async def update_template(self, request: message_pb2.UpdateTemplateRequest | message_pb2.MessageTemplate | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.MessageTemplate:
        """UpdateTemplate; a MessageTemplate is wrapped, update_mask may be a list of paths."""
        return await self._call("UpdateTemplate", message_pb2.UpdateTemplateRequest, request, fields, timeout, metadata, "template")

    async def delete_template(self, request: message_pb2.DeleteTemplateRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.DeleteTemplateResponse:
        """DeleteTemplate; a str is the template id."""
        return await self._call("DeleteTemplate", message_pb2.DeleteTemplateRequest, request, fields, timeout, metadata, "id")

    async def render_template_preview(self, request: message_pb2.RenderTemplatePreviewRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.RenderTemplatePreviewResponse:
        """RenderTemplatePreview; a str is the template id."""
        return await self._call("RenderTemplatePreview", message_pb2.RenderTemplatePreviewRequest, request, fields, timeout, metadata, "id")

    async def create_batch_task(self, request: message_pb2.CreateBatchTaskRequest | message_pb2.BatchSendTask | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """CreateBatchTask; a BatchSendTask is wrapped. request_id is filled when empty."""
        return await self._call("CreateBatchTask", message_pb2.CreateBatchTaskRequest, request, fields, timeout, metadata, "task")

    async def start_batch_task(self, request: message_pb2.StartBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """StartBatchTask; a str is the task id."""
        return await self._call("StartBatchTask", message_pb2.StartBatchTaskRequest, request, fields, timeout, metadata, "id")

    async def pause_batch_task(self, request: message_pb2.PauseBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """PauseBatchTask; a str is the task id."""
        return await self._call("PauseBatchTask", message_pb2.PauseBatchTaskRequest, request, fields, timeout, metadata, "id")

    async def resume_batch_task(self, request: message_pb2.ResumeBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """ResumeBatchTask; a str is the task id."""
        return await self._call("ResumeBatchTask", message_pb2.ResumeBatchTaskRequest, request, fields, timeout, metadata, "id")

    async def cancel_batch_task(self, request: message_pb2.CancelBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """CancelBatchTask; a str is the task id."""
        return await self._call("CancelBatchTask", message_pb2.CancelBatchTaskRequest, request, fields, timeout, metadata, "id")

    async def get_batch_task(self, request: message_pb2.GetBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """GetBatchTask; a str is the task id."""
        return await self._call("GetBatchTask", message_pb2.GetBatchTaskRequest, request, fields, timeout, metadata, "id")

    async def list_batch_tasks(self, request: message_pb2.ListBatchTasksRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.ListBatchTasksResponse:
        """ListBatchTasks: one page (see iter_batch_tasks for all)."""
        return await self._call("ListBatchTasks", message_pb2.ListBatchTasksRequest, request, fields, timeout, metadata)

    def iter_messages(self, request: message_pb2.ListMessagesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> AsyncIterator[message_pb2.Message]:
        """Every message across pages, e.g. iter_messages(account_id=..., status=MESSAGE_STATUS_SENT)."""
        return self._iter("ListMessages", message_pb2.ListMessagesRequest, "messages", request, filters, timeout, metadata)

    def iter_templates(self, request: message_pb2.ListTemplatesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> AsyncIterator[message_pb2.MessageTemplate]:
        """Every template the caller may use, across pages."""
        return self._iter("ListTemplates", message_pb2.ListTemplatesRequest, "templates", request, filters, timeout, metadata)

    def iter_batch_tasks(self, request: message_pb2.ListBatchTasksRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> AsyncIterator[message_pb2.BatchSendTask]:
        """Every batch task across pages."""
        return self._iter("ListBatchTasks", message_pb2.ListBatchTasksRequest, "tasks", request, filters, timeout, metadata)

    async def import_batch_targets(self, requests: Any, /, *, timeout: float | None = None,
                                   metadata: Metadata = ()) -> message_pb2.ImportBatchTargetsResponse:
        """ImportBatchTargets (client stream): `requests` is an iterable or async iterable of
        ImportBatchTargetsRequest; the first names the task."""
        md = self._transport.settings.metadata(metadata)
        try:
            return await self._stub.ImportBatchTargets(requests, timeout=self._transport.settings.timeout(timeout),
                                                       metadata=md)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    async def watch_batch_task(self, request: message_pb2.WatchBatchTaskRequest | str | None = None, /, *,
                               timeout: float | None = None, metadata: Metadata = (),
                               **fields: Any) -> AsyncIterator[message_pb2.BatchTaskProgress]:
        """WatchBatchTask as an async iterator of progress reports until the task ends; a str is
        the task id. `timeout` is a deadline for the whole stream (none by default)."""
        message = build_request(message_pb2.WatchBatchTaskRequest, request, fields, "id")
        call = self._stub.WatchBatchTask(message, timeout=timeout, metadata=self._transport.settings.metadata(metadata))
        try:
            async for progress in call:
                yield progress
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()


class AsyncReportServiceClient(AsyncService):
    """wework.v1.ReportService: message statistics, account health, batch task reports and
    template usage (docs/reports.md). Same conventions as the other services."""

    stub_class = report_pb2_grpc.ReportServiceStub

    async def get_message_stats(self, request: report_pb2.GetMessageStatsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> report_pb2.GetMessageStatsResponse:
        """GetMessageStats."""
        return await self._call("GetMessageStats", report_pb2.GetMessageStatsRequest, request, fields, timeout, metadata)

    async def get_account_health(self, request: report_pb2.GetAccountHealthRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> report_pb2.GetAccountHealthResponse:
        """GetAccountHealth."""
        return await self._call("GetAccountHealth", report_pb2.GetAccountHealthRequest, request, fields, timeout, metadata)

    async def get_batch_task_report(self, request: report_pb2.GetBatchTaskReportRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> report_pb2.GetBatchTaskReportResponse:
        """GetBatchTaskReport; a str is the task id."""
        return await self._call("GetBatchTaskReport", report_pb2.GetBatchTaskReportRequest, request, fields, timeout, metadata, "task_id")

    async def get_template_usage(self, request: report_pb2.GetTemplateUsageRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> report_pb2.GetTemplateUsageResponse:
        """GetTemplateUsage."""
        return await self._call("GetTemplateUsage", report_pb2.GetTemplateUsageRequest, request, fields, timeout, metadata)

    async def export_message_stats(self, request: report_pb2.ExportMessageStatsRequest | None = None, /, *,
                                   timeout: float | None = None, metadata: Metadata = (),
                                   **fields: Any) -> AsyncIterator[report_pb2.ExportMessageStatsResponse]:
        """ExportMessageStats as an async iterator of chunks, oldest first; the last has last=True.
        `timeout` is a deadline for the whole stream (none by default)."""
        message = build_request(report_pb2.ExportMessageStatsRequest, request, fields)
        call = self._stub.ExportMessageStats(message, timeout=timeout,
                                             metadata=self._transport.settings.metadata(metadata))
        try:
            async for chunk in call:
                yield chunk
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()


class AsyncCallbackServiceClient(AsyncService):
    """wework.v1.CallbackService: stored provider callbacks (list, get, replay) and the
    tenant's webhook endpoints and deliveries (docs/callbacks.md, docs/webhooks.md). Same
    conventions as the other services; a str is the id."""

    stub_class = callback_pb2_grpc.CallbackServiceStub

    async def ingest_callback(self, request: callback_pb2.IngestCallbackRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.IngestCallbackResponse:
        """IngestCallback: a provider's signed callback (no tenant credential: the signature authenticates)."""
        return await self._call("IngestCallback", callback_pb2.IngestCallbackRequest, request, fields, timeout, metadata, authenticate=False)

    async def list_callback_events(self, request: callback_pb2.ListCallbackEventsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.ListCallbackEventsResponse:
        """ListCallbackEvents: one page, newest first (see iter_callback_events for all)."""
        return await self._call("ListCallbackEvents", callback_pb2.ListCallbackEventsRequest, request, fields, timeout, metadata)

    async def get_callback_event(self, request: callback_pb2.GetCallbackEventRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.CallbackEvent:
        """GetCallbackEvent; a str is the callback event id."""
        return await self._call("GetCallbackEvent", callback_pb2.GetCallbackEventRequest, request, fields, timeout, metadata, "id")

    async def replay_callbacks(self, request: callback_pb2.ReplayCallbacksRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.ReplayCallbacksResponse:
        """ReplayCallbacks by ids or by filter and time range."""
        return await self._call("ReplayCallbacks", callback_pb2.ReplayCallbacksRequest, request, fields, timeout, metadata)

    async def create_webhook_endpoint(self, request: callback_pb2.CreateWebhookEndpointRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookEndpoint:
        """CreateWebhookEndpoint; the answer carries the signing secret, shown only here."""
        return await self._call("CreateWebhookEndpoint", callback_pb2.CreateWebhookEndpointRequest, request, fields, timeout, metadata)

    async def get_webhook_endpoint(self, request: callback_pb2.GetWebhookEndpointRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookEndpoint:
        """GetWebhookEndpoint; a str is the endpoint id."""
        return await self._call("GetWebhookEndpoint", callback_pb2.GetWebhookEndpointRequest, request, fields, timeout, metadata, "id")

    async def list_webhook_endpoints(self, request: callback_pb2.ListWebhookEndpointsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.ListWebhookEndpointsResponse:
        """ListWebhookEndpoints: one page (see iter_webhook_endpoints for all)."""
        return await self._call("ListWebhookEndpoints", callback_pb2.ListWebhookEndpointsRequest, request, fields, timeout, metadata)

    async def update_webhook_endpoint(self, request: callback_pb2.UpdateWebhookEndpointRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookEndpoint:
        """UpdateWebhookEndpoint (webhook_endpoint + update_mask; optional etag)."""
        return await self._call("UpdateWebhookEndpoint", callback_pb2.UpdateWebhookEndpointRequest, request, fields, timeout, metadata)

    async def delete_webhook_endpoint(self, request: callback_pb2.DeleteWebhookEndpointRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.DeleteWebhookEndpointResponse:
        """DeleteWebhookEndpoint; a str is the endpoint id."""
        return await self._call("DeleteWebhookEndpoint", callback_pb2.DeleteWebhookEndpointRequest, request, fields, timeout, metadata, "id")

    async def rotate_webhook_secret(self, request: callback_pb2.RotateWebhookSecretRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookEndpoint:
        """RotateWebhookSecret; a str is the endpoint id. The answer carries the new secret."""
        return await self._call("RotateWebhookSecret", callback_pb2.RotateWebhookSecretRequest, request, fields, timeout, metadata, "id")

    async def list_webhook_deliveries(self, request: callback_pb2.ListWebhookDeliveriesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.ListWebhookDeliveriesResponse:
        """ListWebhookDeliveries: one page, newest first (see iter_webhook_deliveries for all)."""
        return await self._call("ListWebhookDeliveries", callback_pb2.ListWebhookDeliveriesRequest, request, fields, timeout, metadata)

    async def redeliver_webhook(self, request: callback_pb2.RedeliverWebhookRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookDelivery:
        """RedeliverWebhook; a str is the delivery id."""
        return await self._call("RedeliverWebhook", callback_pb2.RedeliverWebhookRequest, request, fields, timeout, metadata, "id")

    def iter_callback_events(self, request: callback_pb2.ListCallbackEventsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> AsyncIterator[callback_pb2.CallbackEvent]:
        """Every stored callback across pages, e.g. iter_callback_events(filter=CallbackEventFilter(status=...))."""
        return self._iter("ListCallbackEvents", callback_pb2.ListCallbackEventsRequest, "callback_events", request, filters, timeout, metadata)

    def iter_webhook_endpoints(self, request: callback_pb2.ListWebhookEndpointsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> AsyncIterator[callback_pb2.WebhookEndpoint]:
        """Every webhook endpoint of the tenant across pages."""
        return self._iter("ListWebhookEndpoints", callback_pb2.ListWebhookEndpointsRequest, "webhook_endpoints", request, filters, timeout, metadata)

    def iter_webhook_deliveries(self, request: callback_pb2.ListWebhookDeliveriesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> AsyncIterator[callback_pb2.WebhookDelivery]:
        """Every delivery to an endpoint across pages, e.g. iter_webhook_deliveries(webhook_endpoint_id=...)."""
        return self._iter("ListWebhookDeliveries", callback_pb2.ListWebhookDeliveriesRequest, "webhook_deliveries", request, filters, timeout, metadata)


class AsyncWeworkClient:
    """asyncio client of the platform; use `async with` or await close().

    Pass `channel` to use your own grpc.aio channel; the client then does not close it.
    """

    def __init__(self, options: ClientOptions, *, channel: grpc.aio.Channel | None = None) -> None:
        self.options = options
        self._owns_channel = channel is None
        self.channel: grpc.aio.Channel = options.create_aio_channel() if channel is None else channel
        self._transport = AsyncTransport(self.channel, CallSettings(options))
        self.tenants = AsyncTenantServiceClient(self._transport)

    @functools.cached_property
    def accounts(self) -> AsyncAccountServiceClient:
        """AccountService. Made at first use, so a channel that serves only unary calls (a test
        double) still works for the other services."""
        return AsyncAccountServiceClient(self._transport)

    @functools.cached_property
    def messages(self) -> AsyncMessageServiceClient:
        """MessageService: messages, templates and batch tasks (made at first use)."""
        return AsyncMessageServiceClient(self._transport)

    @functools.cached_property
    def reports(self) -> AsyncReportServiceClient:
        """ReportService: statistics and reports (made at first use)."""
        return AsyncReportServiceClient(self._transport)

    @functools.cached_property
    def callbacks(self) -> AsyncCallbackServiceClient:
        """CallbackService: stored provider callbacks and tenant webhooks (made at first use)."""
        return AsyncCallbackServiceClient(self._transport)

    def with_options(self, **changes: Any) -> AsyncWeworkClient:
        """A client on the same channel with other api_key/access_token/tenant_id/timeout.

        A new credential replaces the old one. The returned client does not own the channel.
        """
        check_per_call_changes(changes)
        if changes.get("access_token"):
            changes.setdefault("api_key", None)
        if changes.get("api_key"):
            changes.setdefault("access_token", None)
        return AsyncWeworkClient(dataclasses.replace(self.options, **changes), channel=self.channel)

    async def close(self) -> None:
        if self._owns_channel:
            await self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
