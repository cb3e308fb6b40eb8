"""Blocking client: `WeworkClient(options).tenants.get_tenant("...")`.

Each service wrapper is a thin layer over the generated stub: one method per
RPC that takes the request message (or a shortcut value plus keyword fields),
attaches the credential metadata and default deadline, fills request_id, and
raises WeworkError subclasses instead of grpc.RpcError.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Self

import grpc
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


# Stream failures after which watch_accounts reopens the stream from its last cursor: the
# server went away, or ended its calls at shutdown (both answer UNAVAILABLE). CANCELLED is left
# alone: it is what closing this client's own channel causes.
RESUMABLE_STREAM_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


def with_cursor(request: account_pb2.WatchAccountsRequest, cursor: str) -> account_pb2.WatchAccountsRequest:
    """A copy of the watch request resuming after `cursor`; the caller's message stays as sent."""
    copy = account_pb2.WatchAccountsRequest()
    copy.CopyFrom(request)
    copy.cursor = cursor
    return copy


class AccountServiceClient(Service):
    """wework.v1.AccountService: WeCom accounts, their QR login, status history and watch,
    and their conversations. Same conventions as TenantServiceClient; a str is the id."""

    stub_class = account_pb2_grpc.AccountServiceStub

    # Accounts.

    def create_account(self, request: account_pb2.CreateAccountRequest | account_pb2.Account | None = None, /, *,
                       timeout: float | None = None, metadata: Metadata = (),
                       **fields: Any) -> account_pb2.Account:
        """CreateAccount; an Account is wrapped. request_id is filled when empty."""
        return self._call("CreateAccount", account_pb2.CreateAccountRequest, request, fields, timeout, metadata,
                          "account")

    def get_account(self, request: account_pb2.GetAccountRequest | str | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> account_pb2.Account:
        """GetAccount; a str is the account id."""
        return self._call("GetAccount", account_pb2.GetAccountRequest, request, fields, timeout, metadata, "id")

    def list_accounts(self, request: account_pb2.ListAccountsRequest | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (),
                      **fields: Any) -> account_pb2.ListAccountsResponse:
        """ListAccounts: one page (see iter_accounts for all)."""
        return self._call("ListAccounts", account_pb2.ListAccountsRequest, request, fields, timeout, metadata)

    def iter_accounts(self, request: account_pb2.ListAccountsRequest | None = None, /, *,
                      timeout: float | None = None, metadata: Metadata = (),
                      **filters: Any) -> Iterator[account_pb2.Account]:
        """Every account across pages, e.g. iter_accounts(status=ACCOUNT_STATUS_ONLINE)."""
        return self._iter("ListAccounts", account_pb2.ListAccountsRequest, "accounts", request, filters, timeout,
                          metadata)

    def update_account(self, request: account_pb2.UpdateAccountRequest | account_pb2.Account | None = None, /, *,
                       timeout: float | None = None, metadata: Metadata = (),
                       **fields: Any) -> account_pb2.Account:
        """UpdateAccount; an Account is wrapped, update_mask may be a list of paths."""
        return self._call("UpdateAccount", account_pb2.UpdateAccountRequest, request, fields, timeout, metadata,
                          "account")

    def delete_account(self, request: account_pb2.DeleteAccountRequest | str | None = None, /, *,
                       timeout: float | None = None, metadata: Metadata = (),
                       **fields: Any) -> account_pb2.DeleteAccountResponse:
        """DeleteAccount; a str is the account id (etag= optional)."""
        return self._call("DeleteAccount", account_pb2.DeleteAccountRequest, request, fields, timeout, metadata,
                          "id")

    # Login.

    def start_login(self, request: account_pb2.StartLoginRequest | str | None = None, /, *,
                    timeout: float | None = None, metadata: Metadata = (),
                    **fields: Any) -> account_pb2.LoginState:
        """StartLogin; a str is the account id. Returns the QR code to scan."""
        return self._call("StartLogin", account_pb2.StartLoginRequest, request, fields, timeout, metadata, "id")

    def submit_verification_code(self, request: account_pb2.SubmitVerificationCodeRequest | str | None = None,
                                 /, *, timeout: float | None = None, metadata: Metadata = (),
                                 **fields: Any) -> account_pb2.LoginState:
        """SubmitVerificationCode; a str is the account id: submit_verification_code(id, code="123456")."""
        return self._call("SubmitVerificationCode", account_pb2.SubmitVerificationCodeRequest, request, fields,
                          timeout, metadata, "id")

    def logout(self, request: account_pb2.LogoutRequest | str | None = None, /, *,
               timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> account_pb2.Account:
        """Logout; a str is the account id."""
        return self._call("Logout", account_pb2.LogoutRequest, request, fields, timeout, metadata, "id")

    def get_login_state(self, request: account_pb2.GetLoginStateRequest | str | None = None, /, *,
                        timeout: float | None = None, metadata: Metadata = (),
                        **fields: Any) -> account_pb2.LoginState:
        """GetLoginState; a str is the account id."""
        return self._call("GetLoginState", account_pb2.GetLoginStateRequest, request, fields, timeout, metadata,
                          "id")

    # Status history and the change stream.

    def list_status_history(self, request: account_pb2.ListStatusHistoryRequest | str | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (),
                            **fields: Any) -> account_pb2.ListStatusHistoryResponse:
        """ListStatusHistory: one page, newest first; a str is the account id."""
        return self._call("ListStatusHistory", account_pb2.ListStatusHistoryRequest, request, fields, timeout,
                          metadata, "account_id")

    def iter_status_history(self, request: account_pb2.ListStatusHistoryRequest | str | None = None, /, *,
                            timeout: float | None = None, metadata: Metadata = (),
                            **fields: Any) -> Iterator[account_pb2.AccountStatusChange]:
        """Every status change of an account, newest first; a str is the account id."""
        message = build_request(account_pb2.ListStatusHistoryRequest, request, fields, "account_id")
        return self._transport.pages(self._stub.ListStatusHistory, message, "status_changes", timeout=timeout,
                                     metadata=metadata)

    def watch_accounts(self, request: account_pb2.WatchAccountsRequest | None = None, /, *,
                       resume: bool = True, timeout: float | None = None, metadata: Metadata = (),
                       reconnect_delay: float = 0.1, max_reconnect_delay: float = 5.0,
                       max_reconnects: int | None = None,
                       **fields: Any) -> Iterator[account_pb2.WatchAccountsResponse]:
        """WatchAccounts as an iterator, e.g. watch_accounts(account_ids=[...], cursor=saved).

        The first response carries only the start cursor; every later one a change and the
        cursor after it. With `resume`, a stream broken by the network or a server restart
        (UNAVAILABLE) is reopened from the last cursor received,
        after a backoff, so no change is lost or repeated; the start response of a reopened
        stream is not yielded again. Stop by breaking out of the loop (or closing the iterator).
        `timeout` is a deadline per stream (none by default).
        """
        message = build_request(account_pb2.WatchAccountsRequest, request, fields)
        return self._watch(message, resume, timeout, metadata, reconnect_delay, max_reconnect_delay,
                           max_reconnects)

    def _watch(self, message: account_pb2.WatchAccountsRequest, resume: bool, timeout: float | None,
               metadata: Metadata, delay: float, max_delay: float,
               max_reconnects: int | None) -> Iterator[account_pb2.WatchAccountsResponse]:
        cursor, reconnects, wait, reopened = message.cursor, 0, delay, False
        while True:
            call = self._stub.WatchAccounts(with_cursor(message, cursor), timeout=timeout,
                                            metadata=self._transport.settings.metadata(metadata))
            try:
                for response in call:
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
            time.sleep(wait)
            wait = min(wait * 2, max_delay)

    # Conversations.

    def list_conversations(self, request: account_pb2.ListConversationsRequest | str | None = None, /, *,
                           timeout: float | None = None, metadata: Metadata = (),
                           **fields: Any) -> account_pb2.ListConversationsResponse:
        """ListConversations: one page; a str is the account id."""
        return self._call("ListConversations", account_pb2.ListConversationsRequest, request, fields, timeout,
                          metadata, "account_id")

    def iter_conversations(self, request: account_pb2.ListConversationsRequest | str | None = None, /, *,
                           timeout: float | None = None, metadata: Metadata = (),
                           **fields: Any) -> Iterator[account_pb2.Conversation]:
        """Every conversation of an account across pages; a str is the account id."""
        message = build_request(account_pb2.ListConversationsRequest, request, fields, "account_id")
        return self._transport.pages(self._stub.ListConversations, message, "conversations", timeout=timeout,
                                     metadata=metadata)

    def get_conversation(self, request: account_pb2.GetConversationRequest | str | None = None, /, *,
                         timeout: float | None = None, metadata: Metadata = (),
                         **fields: Any) -> account_pb2.Conversation:
        """GetConversation; a str is the conversation id."""
        return self._call("GetConversation", account_pb2.GetConversationRequest, request, fields, timeout,
                          metadata, "id")

    def update_conversation(self,
                            request: account_pb2.UpdateConversationRequest | account_pb2.Conversation | None = None,
                            /, *, timeout: float | None = None, metadata: Metadata = (),
                            **fields: Any) -> account_pb2.Conversation:
        """UpdateConversation; a Conversation is wrapped, update_mask may be a list of paths."""
        return self._call("UpdateConversation", account_pb2.UpdateConversationRequest, request, fields, timeout,
                          metadata, "conversation")


class MessageServiceClient(Service):
    """wework.v1.MessageService: messages, templates and batch tasks. Same conventions
    as TenantServiceClient; a str is the id."""

    stub_class = message_pb2_grpc.MessageServiceStub

    def send_message(self, request: message_pb2.SendMessageRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.Message:
        """SendMessage; request_id is filled when empty (a retry with the same request returns the same message)."""
        return self._call("SendMessage", message_pb2.SendMessageRequest, request, fields, timeout, metadata)

    def get_message(self, request: message_pb2.GetMessageRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.Message:
        """GetMessage; a str is the message id."""
        return self._call("GetMessage", message_pb2.GetMessageRequest, request, fields, timeout, metadata, "id")

    def list_messages(self, request: message_pb2.ListMessagesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.ListMessagesResponse:
        """ListMessages: one page, newest first (see iter_messages for all)."""
        return self._call("ListMessages", message_pb2.ListMessagesRequest, request, fields, timeout, metadata)

    def cancel_message(self, request: message_pb2.CancelMessageRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.Message:
        """CancelMessage; a str is the message id."""
        return self._call("CancelMessage", message_pb2.CancelMessageRequest, request, fields, timeout, metadata, "id")

    def retry_message(self, request: message_pb2.RetryMessageRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.Message:
        """RetryMessage; a str is the message id."""
        return self._call("RetryMessage", message_pb2.RetryMessageRequest, request, fields, timeout, metadata, "id")

    def create_template(self, request: message_pb2.CreateTemplateRequest | message_pb2.MessageTemplate | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.MessageTemplate:
        """CreateTemplate; a MessageTemplate is wrapped. request_id is filled when empty."""
        return self._call("CreateTemplate", message_pb2.CreateTemplateRequest, request, fields, timeout, metadata, "template")

    def get_template(self, request: message_pb2.GetTemplateRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.MessageTemplate:
        """GetTemplate; a str is the template id."""
        return self._call("GetTemplate", message_pb2.GetTemplateRequest, request, fields, timeout, metadata, "id")

    def list_templates(self, request: message_pb2.ListTemplatesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.ListTemplatesResponse:
        """ListTemplates: one page (see iter_templates for all)."""
        return self._call("ListTemplates", message_pb2.ListTemplatesRequest, request, fields, timeout, metadata)

    def update_template(self, request: message_pb2.UpdateTemplateRequest | message_pb2.MessageTemplate | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.MessageTemplate:
        """UpdateTemplate; a MessageTemplate is wrapped, update_mask may be a list of paths."""
        return self._call("UpdateTemplate", message_pb2.UpdateTemplateRequest, request, fields, timeout, metadata, "template")

    def delete_template(self, request: message_pb2.DeleteTemplateRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.DeleteTemplateResponse:
        """DeleteTemplate; a str is the template id."""
        return self._call("DeleteTemplate", message_pb2.DeleteTemplateRequest, request, fields, timeout, metadata, "id")

    def render_template_preview(self, request: message_pb2.RenderTemplatePreviewRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.RenderTemplatePreviewResponse:
        """RenderTemplatePreview; a str is the template id."""
        return self._call("RenderTemplatePreview", message_pb2.RenderTemplatePreviewRequest, request, fields, timeout, metadata, "id")

    def create_batch_task(self, request: message_pb2.CreateBatchTaskRequest | message_pb2.BatchSendTask | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """CreateBatchTask; a BatchSendTask is wrapped. request_id is filled when empty."""
        return self._call("CreateBatchTask", message_pb2.CreateBatchTaskRequest, request, fields, timeout, metadata, "task")

    def start_batch_task(self, request: message_pb2.StartBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """StartBatchTask; a str is the task id."""
        return self._call("StartBatchTask", message_pb2.StartBatchTaskRequest, request, fields, timeout, metadata, "id")

    def pause_batch_task(self, request: message_pb2.PauseBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """PauseBatchTask; a str is the task id."""
        return self._call("PauseBatchTask", message_pb2.PauseBatchTaskRequest, request, fields, timeout, metadata, "id")

    def resume_batch_task(self, request: message_pb2.ResumeBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """ResumeBatchTask; a str is the task id."""
        return self._call("ResumeBatchTask", message_pb2.ResumeBatchTaskRequest, request, fields, timeout, metadata, "id")

    def cancel_batch_task(self, request: message_pb2.CancelBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """CancelBatchTask; a str is the task id."""
        return self._call("CancelBatchTask", message_pb2.CancelBatchTaskRequest, request, fields, timeout, metadata, "id")

    def get_batch_task(self, request: message_pb2.GetBatchTaskRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.BatchSendTask:
        """GetBatchTask; a str is the task id."""
        return self._call("GetBatchTask", message_pb2.GetBatchTaskRequest, request, fields, timeout, metadata, "id")

    def list_batch_tasks(self, request: message_pb2.ListBatchTasksRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> message_pb2.ListBatchTasksResponse:
        """ListBatchTasks: one page (see iter_batch_tasks for all)."""
        return self._call("ListBatchTasks", message_pb2.ListBatchTasksRequest, request, fields, timeout, metadata)

    def iter_messages(self, request: message_pb2.ListMessagesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> Iterator[message_pb2.Message]:
        """Every message across pages, e.g. iter_messages(account_id=..., status=MESSAGE_STATUS_SENT)."""
        return self._iter("ListMessages", message_pb2.ListMessagesRequest, "messages", request, filters, timeout, metadata)

    def iter_templates(self, request: message_pb2.ListTemplatesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> Iterator[message_pb2.MessageTemplate]:
        """Every template the caller may use, across pages."""
        return self._iter("ListTemplates", message_pb2.ListTemplatesRequest, "templates", request, filters, timeout, metadata)

    def iter_batch_tasks(self, request: message_pb2.ListBatchTasksRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> Iterator[message_pb2.BatchSendTask]:
        """Every batch task across pages."""
        return self._iter("ListBatchTasks", message_pb2.ListBatchTasksRequest, "tasks", request, filters, timeout, metadata)

    def import_batch_targets(self, requests: Any, /, *, timeout: float | None = None,
                             metadata: Metadata = ()) -> message_pb2.ImportBatchTargetsResponse:
        """ImportBatchTargets (client stream): `requests` is an iterable of
        ImportBatchTargetsRequest (a generator for large lists); the first names the task."""
        md = self._transport.settings.metadata(metadata)
        try:
            return self._stub.ImportBatchTargets(iter(requests), timeout=self._transport.settings.timeout(timeout),
                                                 metadata=md)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def watch_batch_task(self, request: message_pb2.WatchBatchTaskRequest | str | None = None, /, *,
                         timeout: float | None = None, metadata: Metadata = (),
                         **fields: Any) -> Iterator[message_pb2.BatchTaskProgress]:
        """WatchBatchTask as an iterator of progress reports until the task ends; a str is the
        task id. `timeout` is a deadline for the whole stream (none by default)."""
        message = build_request(message_pb2.WatchBatchTaskRequest, request, fields, "id")
        return self._watch_task(message, timeout, metadata)

    def _watch_task(self, message: message_pb2.WatchBatchTaskRequest, timeout: float | None,
                    metadata: Metadata) -> Iterator[message_pb2.BatchTaskProgress]:
        call = self._stub.WatchBatchTask(message, timeout=timeout, metadata=self._transport.settings.metadata(metadata))
        try:
            yield from call
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()


class ReportServiceClient(Service):
    """wework.v1.ReportService: message statistics, account health, batch task reports and
    template usage (docs/reports.md). Same conventions as the other services."""

    stub_class = report_pb2_grpc.ReportServiceStub

    def get_message_stats(self, request: report_pb2.GetMessageStatsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> report_pb2.GetMessageStatsResponse:
        """GetMessageStats."""
        return self._call("GetMessageStats", report_pb2.GetMessageStatsRequest, request, fields, timeout, metadata)

    def get_account_health(self, request: report_pb2.GetAccountHealthRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> report_pb2.GetAccountHealthResponse:
        """GetAccountHealth."""
        return self._call("GetAccountHealth", report_pb2.GetAccountHealthRequest, request, fields, timeout, metadata)

    def get_batch_task_report(self, request: report_pb2.GetBatchTaskReportRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> report_pb2.GetBatchTaskReportResponse:
        """GetBatchTaskReport; a str is the task id."""
        return self._call("GetBatchTaskReport", report_pb2.GetBatchTaskReportRequest, request, fields, timeout, metadata, "task_id")

    def get_template_usage(self, request: report_pb2.GetTemplateUsageRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> report_pb2.GetTemplateUsageResponse:
        """GetTemplateUsage."""
        return self._call("GetTemplateUsage", report_pb2.GetTemplateUsageRequest, request, fields, timeout, metadata)

    def export_message_stats(self, request: report_pb2.ExportMessageStatsRequest | None = None, /, *,
                             timeout: float | None = None, metadata: Metadata = (),
                             **fields: Any) -> Iterator[report_pb2.ExportMessageStatsResponse]:
        """ExportMessageStats as an iterator of chunks, oldest first; the last has last=True.
        `timeout` is a deadline for the whole stream (none by default)."""
        message = build_request(report_pb2.ExportMessageStatsRequest, request, fields)
        return self._export(message, timeout, metadata)

    def _export(self, message: report_pb2.ExportMessageStatsRequest, timeout: float | None,
                metadata: Metadata) -> Iterator[report_pb2.ExportMessageStatsResponse]:
        call = self._stub.ExportMessageStats(message, timeout=timeout,
                                             metadata=self._transport.settings.metadata(metadata))
        try:
            yield from call
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()


class CallbackServiceClient(Service):
    """wework.v1.CallbackService: stored provider callbacks (list, get, replay) and the
    tenant's webhook endpoints and deliveries (docs/callbacks.md, docs/webhooks.md). Same
    conventions as the other services; a str is the id."""

    stub_class = callback_pb2_grpc.CallbackServiceStub

    def ingest_callback(self, request: callback_pb2.IngestCallbackRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.IngestCallbackResponse:
        """IngestCallback: a provider's signed callback (no tenant credential: the signature authenticates)."""
        return self._call("IngestCallback", callback_pb2.IngestCallbackRequest, request, fields, timeout, metadata, authenticate=False)

    def list_callback_events(self, request: callback_pb2.ListCallbackEventsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.ListCallbackEventsResponse:
        """ListCallbackEvents: one page, newest first (see iter_callback_events for all)."""
        return self._call("ListCallbackEvents", callback_pb2.ListCallbackEventsRequest, request, fields, timeout, metadata)

    def get_callback_event(self, request: callback_pb2.GetCallbackEventRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.CallbackEvent:
        """GetCallbackEvent; a str is the callback event id."""
        return self._call("GetCallbackEvent", callback_pb2.GetCallbackEventRequest, request, fields, timeout, metadata, "id")

    def replay_callbacks(self, request: callback_pb2.ReplayCallbacksRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.ReplayCallbacksResponse:
        """ReplayCallbacks by ids or by filter and time range."""
        return self._call("ReplayCallbacks", callback_pb2.ReplayCallbacksRequest, request, fields, timeout, metadata)

    def create_webhook_endpoint(self, request: callback_pb2.CreateWebhookEndpointRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookEndpoint:
        """CreateWebhookEndpoint; the answer carries the signing secret, shown only here."""
        return self._call("CreateWebhookEndpoint", callback_pb2.CreateWebhookEndpointRequest, request, fields, timeout, metadata)

    def get_webhook_endpoint(self, request: callback_pb2.GetWebhookEndpointRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookEndpoint:
        """GetWebhookEndpoint; a str is the endpoint id."""
        return self._call("GetWebhookEndpoint", callback_pb2.GetWebhookEndpointRequest, request, fields, timeout, metadata, "id")

    def list_webhook_endpoints(self, request: callback_pb2.ListWebhookEndpointsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.ListWebhookEndpointsResponse:
        """ListWebhookEndpoints: one page (see iter_webhook_endpoints for all)."""
        return self._call("ListWebhookEndpoints", callback_pb2.ListWebhookEndpointsRequest, request, fields, timeout, metadata)

    def update_webhook_endpoint(self, request: callback_pb2.UpdateWebhookEndpointRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookEndpoint:
        """UpdateWebhookEndpoint (webhook_endpoint + update_mask; optional etag)."""
        return self._call("UpdateWebhookEndpoint", callback_pb2.UpdateWebhookEndpointRequest, request, fields, timeout, metadata)

    def delete_webhook_endpoint(self, request: callback_pb2.DeleteWebhookEndpointRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.DeleteWebhookEndpointResponse:
        """DeleteWebhookEndpoint; a str is the endpoint id."""
        return self._call("DeleteWebhookEndpoint", callback_pb2.DeleteWebhookEndpointRequest, request, fields, timeout, metadata, "id")

    def rotate_webhook_secret(self, request: callback_pb2.RotateWebhookSecretRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookEndpoint:
        """RotateWebhookSecret; a str is the endpoint id. The answer carries the new secret."""
        return self._call("RotateWebhookSecret", callback_pb2.RotateWebhookSecretRequest, request, fields, timeout, metadata, "id")

    def list_webhook_deliveries(self, request: callback_pb2.ListWebhookDeliveriesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.ListWebhookDeliveriesResponse:
        """ListWebhookDeliveries: one page, newest first (see iter_webhook_deliveries for all)."""
        return self._call("ListWebhookDeliveries", callback_pb2.ListWebhookDeliveriesRequest, request, fields, timeout, metadata)

    def redeliver_webhook(self, request: callback_pb2.RedeliverWebhookRequest | str | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **fields: Any) -> callback_pb2.WebhookDelivery:
        """RedeliverWebhook; a str is the delivery id."""
        return self._call("RedeliverWebhook", callback_pb2.RedeliverWebhookRequest, request, fields, timeout, metadata, "id")

    def iter_callback_events(self, request: callback_pb2.ListCallbackEventsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> Iterator[callback_pb2.CallbackEvent]:
        """Every stored callback across pages, e.g. iter_callback_events(filter=CallbackEventFilter(status=...))."""
        return self._iter("ListCallbackEvents", callback_pb2.ListCallbackEventsRequest, "callback_events", request, filters, timeout, metadata)

    def iter_webhook_endpoints(self, request: callback_pb2.ListWebhookEndpointsRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> Iterator[callback_pb2.WebhookEndpoint]:
        """Every webhook endpoint of the tenant across pages."""
        return self._iter("ListWebhookEndpoints", callback_pb2.ListWebhookEndpointsRequest, "webhook_endpoints", request, filters, timeout, metadata)

    def iter_webhook_deliveries(self, request: callback_pb2.ListWebhookDeliveriesRequest | None = None, /, *,
            timeout: float | None = None, metadata: Metadata = (), **filters: Any) -> Iterator[callback_pb2.WebhookDelivery]:
        """Every delivery to an endpoint across pages, e.g. iter_webhook_deliveries(webhook_endpoint_id=...)."""
        return self._iter("ListWebhookDeliveries", callback_pb2.ListWebhookDeliveriesRequest, "webhook_deliveries", request, filters, timeout, metadata)


class WeworkClient:
    """Blocking client of the platform; use as a context manager or call close().

    Pass `channel` to use your own (e.g. a test channel); the client then does
    not close it.
    """

    def __init__(self, options: ClientOptions, *, channel: grpc.Channel | None = None) -> None:
        self.options = options
        self._owns_channel = channel is None
        self.channel: grpc.Channel = options.create_channel() if channel is None else channel
        self._transport = Transport(self.channel, CallSettings(options))
        self.tenants = TenantServiceClient(self._transport)

    @functools.cached_property
    def accounts(self) -> AccountServiceClient:
        """AccountService. Made at first use, so a channel that serves only unary calls (a test
        double) still works for the other services."""
        return AccountServiceClient(self._transport)

    @functools.cached_property
    def messages(self) -> MessageServiceClient:
        """MessageService: messages, templates and batch tasks (made at first use)."""
        return MessageServiceClient(self._transport)

    @functools.cached_property
    def reports(self) -> ReportServiceClient:
        """ReportService: statistics and reports (made at first use)."""
        return ReportServiceClient(self._transport)

    @functools.cached_property
    def callbacks(self) -> CallbackServiceClient:
        """CallbackService: stored provider callbacks and tenant webhooks (made at first use)."""
        return CallbackServiceClient(self._transport)

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
