"""AccountService handler: maps requests to use cases and results to protos."""

from __future__ import annotations

from wework.domain.access import Permissions as P
from wework.domain.accounts import (
    ACCOUNT_DELETED,
    Account,
    AccountStatus,
    Conversation,
    ConversationType,
    OperatorType,
    StatusChange,
)
from wework.server.application.accounts import AccountUseCases
from wework.server.application.conversations import ConversationUseCases
from wework.server.handlers.convert import from_struct, to_struct, to_timestamp
from wework.server.runtime.context import current_principal
from wework.server.runtime.registry import ServiceRegistration
from wework.v1 import account_pb2 as pb
from wework.v1 import account_pb2_grpc as pb_grpc
from wework.v1 import common_pb2

# Permission each RPC needs. The interceptor enforces it before the handler runs; the use
# cases then scope every read and write to the caller's tenant.
METHOD_PERMISSIONS: dict[str, str | None] = {
    "CreateAccount": P.ACCOUNTS_WRITE,
    "GetAccount": P.ACCOUNTS_READ,
    "ListAccounts": P.ACCOUNTS_READ,
    "UpdateAccount": P.ACCOUNTS_WRITE,
    "DeleteAccount": P.ACCOUNTS_WRITE,
    "StartLogin": P.ACCOUNTS_WRITE,
    "SubmitVerificationCode": P.ACCOUNTS_WRITE,
    "Logout": P.ACCOUNTS_WRITE,
    "GetLoginState": P.ACCOUNTS_READ,
    "ListStatusHistory": P.ACCOUNTS_READ,
    "WatchAccounts": P.ACCOUNTS_READ,
    "ListConversations": P.ACCOUNTS_READ,
    "GetConversation": P.ACCOUNTS_READ,
    "UpdateConversation": P.ACCOUNTS_WRITE,
}

_STATUS = {s: getattr(pb, f"ACCOUNT_STATUS_{s.name}") for s in AccountStatus}
_STATUS_IN = {v: k for k, v in _STATUS.items()}
_HISTORY_STATUS = {**{s.value: v for s, v in _STATUS.items()}, ACCOUNT_DELETED: pb.ACCOUNT_STATUS_DELETED}
_OPERATOR = {
    OperatorType.USER: common_pb2.OPERATOR_TYPE_USER,
    OperatorType.SYSTEM: common_pb2.OPERATOR_TYPE_SYSTEM,
    OperatorType.AUTO: common_pb2.OPERATOR_TYPE_AUTO,
}
_CONVERSATION_TYPE = {
    ConversationType.PRIVATE: pb.CONVERSATION_TYPE_PRIVATE,
    ConversationType.GROUP: pb.CONVERSATION_TYPE_GROUP,
}
_CONVERSATION_TYPE_IN = {v: k for k, v in _CONVERSATION_TYPE.items()}


# ---- mapping -----------------------------------------------------------------------------------------


def account_to_pb(a: Account) -> pb.Account:
    return pb.Account(
        id=a.id, tenant_id=a.tenant_id, account_name=a.account_name, user_id=a.user_id or "",
        phone=a.phone or "", email=a.email or "", guid=a.guid or "", status=_STATUS[a.status],
        config=to_struct(a.config), user_info=to_struct(a.user_info),
        last_login_time=to_timestamp(a.last_login_time), last_heartbeat_time=to_timestamp(a.last_heartbeat_time),
        login_retry_count=a.login_retry_count, error_message=a.error_message or "",
        recovery_attempts=a.recovery_attempts, next_recovery_time=to_timestamp(a.next_recovery_at),
        create_time=to_timestamp(a.created_at), update_time=to_timestamp(a.updated_at), etag=a.etag,
    )


def account_values_from_pb(m: pb.Account, paths: list[str] | None = None) -> dict:
    """The writable fields of an Account message (only `paths` when given)."""
    names = ("account_name", "phone", "email", "user_id", "config", "provider_token")
    wanted = set(paths) if paths is not None else set(names)
    values: dict = {n: getattr(m, n) for n in names if n in wanted and n != "config"}
    if "config" in wanted:
        values["config"] = from_struct(m, "config")
    return values


def login_state_to_pb(a: Account) -> pb.LoginState:
    shows_qr = a.status in (AccountStatus.WAITING_SCAN, AccountStatus.WAITING_CONFIRM)
    return pb.LoginState(
        account_id=a.id, status=_STATUS[a.status],
        qr_code_url=(a.qr_code_url or "") if shows_qr else "",
        qr_payload=(a.qr_payload or "") if shows_qr else "",
        qr_expire_time=to_timestamp(a.qr_expire_time) if shows_qr else None,
        login_retry_count=a.login_retry_count, error_message=a.error_message or "",
        user_info=to_struct(a.user_info), last_login_time=to_timestamp(a.last_login_time), etag=a.etag,
    )


def change_to_pb(c: StatusChange) -> pb.AccountStatusChange:
    return pb.AccountStatusChange(
        id=c.id, account_id=c.account_id,
        old_status=_HISTORY_STATUS.get(c.old_status or "", pb.ACCOUNT_STATUS_UNSPECIFIED),
        new_status=_HISTORY_STATUS.get(c.new_status, pb.ACCOUNT_STATUS_UNSPECIFIED),
        reason=c.reason, error_message=c.error_message or "", extra_data=to_struct(c.extra_data),
        operator_id=c.operator.id or "", operator_type=_OPERATOR[c.operator.type],
        create_time=to_timestamp(c.created_at), sequence=c.seq,
    )


def conversation_to_pb(c: Conversation) -> pb.Conversation:
    return pb.Conversation(
        id=c.id, account_id=c.account_id, conversation_id=c.conversation_id,
        conversation_name=c.conversation_name or "", conversation_type=_CONVERSATION_TYPE[c.conversation_type],
        avatar_url=c.avatar_url or "", member_count=c.member_count, last_msg_time=to_timestamp(c.last_msg_time),
        last_msg_content=c.last_msg_content or "", unread_count=c.unread_count, is_active=c.is_active,
        is_pinned=c.is_pinned, tags=c.tags, extra_info=to_struct(c.extra_info),
        create_time=to_timestamp(c.created_at), update_time=to_timestamp(c.updated_at), etag=c.etag,
    )


# ---- servicer ------------------------------------------------------------------------------------------


class AccountServiceHandler(pb_grpc.AccountServiceServicer):
    def __init__(self, accounts: AccountUseCases, conversations: ConversationUseCases) -> None:
        self._accounts, self._conversations = accounts, conversations

    async def CreateAccount(self, request, context):
        return account_to_pb(await self._accounts.create_account(
            current_principal(), account_values_from_pb(request.account), request.request_id))

    async def GetAccount(self, request, context):
        return account_to_pb(await self._accounts.get_account(current_principal(), request.id))

    async def ListAccounts(self, request, context):
        page, token = await self._accounts.list_accounts(
            current_principal(), _STATUS_IN.get(request.status), request.user_id, request.page_size,
            request.page_token)
        return pb.ListAccountsResponse(accounts=[account_to_pb(a) for a in page], next_page_token=token)

    async def UpdateAccount(self, request, context):
        paths = list(request.update_mask.paths)
        return account_to_pb(await self._accounts.update_account(
            current_principal(), request.account.id, account_values_from_pb(request.account, paths), paths,
            request.account.etag))

    async def DeleteAccount(self, request, context):
        await self._accounts.delete_account(current_principal(), request.id, request.etag)
        return pb.DeleteAccountResponse()

    async def StartLogin(self, request, context):
        return login_state_to_pb(await self._accounts.start_login(current_principal(), request.id))

    async def SubmitVerificationCode(self, request, context):
        return login_state_to_pb(await self._accounts.submit_verification_code(
            current_principal(), request.id, request.code))

    async def Logout(self, request, context):
        return account_to_pb(await self._accounts.logout(current_principal(), request.id))

    async def GetLoginState(self, request, context):
        return login_state_to_pb(await self._accounts.get_login_state(current_principal(), request.id))

    async def ListStatusHistory(self, request, context):
        page, token = await self._accounts.list_status_history(
            current_principal(), request.account_id, request.page_size, request.page_token)
        return pb.ListStatusHistoryResponse(status_changes=[change_to_pb(c) for c in page], next_page_token=token)

    async def WatchAccounts(self, request, context):
        stream = self._accounts.watch(current_principal(), list(request.account_ids), request.cursor)
        try:
            async for change, cursor in stream:
                yield pb.WatchAccountsResponse(change=change_to_pb(change) if change else None, cursor=cursor)
        finally:
            await stream.aclose()  # the client went away: release the listener now

    async def ListConversations(self, request, context):
        page, token = await self._conversations.list_conversations(
            current_principal(), request.account_id, _CONVERSATION_TYPE_IN.get(request.conversation_type),
            request.is_pinned if request.HasField("is_pinned") else None, request.tag, request.page_size,
            request.page_token)
        return pb.ListConversationsResponse(conversations=[conversation_to_pb(c) for c in page],
                                            next_page_token=token)

    async def GetConversation(self, request, context):
        return conversation_to_pb(await self._conversations.get_conversation(current_principal(), request.id))

    async def UpdateConversation(self, request, context):
        paths = list(request.update_mask.paths)
        m = request.conversation
        values = {"is_pinned": m.is_pinned, "tags": list(m.tags), "unread_count": m.unread_count}
        return conversation_to_pb(await self._conversations.update_conversation(
            current_principal(), m.id, values, paths, m.etag))


def registration(handler: AccountServiceHandler) -> ServiceRegistration:
    return ServiceRegistration(
        name="account",
        service_full_name="wework.v1.AccountService",
        servicer=handler,
        add_to_server=pb_grpc.add_AccountServiceServicer_to_server,
        method_permissions=METHOD_PERMISSIONS,
    )
