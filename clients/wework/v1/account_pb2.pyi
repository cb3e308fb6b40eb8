import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from wework.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccountStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATUS_UNSPECIFIED: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_CREATED: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_LOGGING_IN: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_WAITING_SCAN: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_WAITING_CONFIRM: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_NEED_VERIFY: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_ONLINE: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_OFFLINE: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_ERROR: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_RECOVERING: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_DELETED: _ClassVar[AccountStatus]

class ConversationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONVERSATION_TYPE_UNSPECIFIED: _ClassVar[ConversationType]
    CONVERSATION_TYPE_PRIVATE: _ClassVar[ConversationType]
    CONVERSATION_TYPE_GROUP: _ClassVar[ConversationType]
ACCOUNT_STATUS_UNSPECIFIED: AccountStatus
ACCOUNT_STATUS_CREATED: AccountStatus
ACCOUNT_STATUS_LOGGING_IN: AccountStatus
ACCOUNT_STATUS_WAITING_SCAN: AccountStatus
ACCOUNT_STATUS_WAITING_CONFIRM: AccountStatus
ACCOUNT_STATUS_NEED_VERIFY: AccountStatus
ACCOUNT_STATUS_ONLINE: AccountStatus
ACCOUNT_STATUS_OFFLINE: AccountStatus
ACCOUNT_STATUS_ERROR: AccountStatus
ACCOUNT_STATUS_RECOVERING: AccountStatus
ACCOUNT_STATUS_DELETED: AccountStatus
CONVERSATION_TYPE_UNSPECIFIED: ConversationType
CONVERSATION_TYPE_PRIVATE: ConversationType
CONVERSATION_TYPE_GROUP: ConversationType

class Account(_message.Message):
    __slots__ = ("id", "tenant_id", "account_name", "user_id", "phone", "email", "guid", "status", "config", "user_info", "last_login_time", "last_heartbeat_time", "login_retry_count", "error_message", "recovery_attempts", "next_recovery_time", "create_time", "update_time", "etag", "provider_token")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    GUID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    USER_INFO_FIELD_NUMBER: _ClassVar[int]
    LAST_LOGIN_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    LOGIN_RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_RECOVERY_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    account_name: str
    user_id: str
    phone: str
    email: str
    guid: str
    status: AccountStatus
    config: _struct_pb2.Struct
    user_info: _struct_pb2.Struct
    last_login_time: _timestamp_pb2.Timestamp
    last_heartbeat_time: _timestamp_pb2.Timestamp
    login_retry_count: int
    error_message: str
    recovery_attempts: int
    next_recovery_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    provider_token: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., account_name: _Optional[str] = ..., user_id: _Optional[str] = ..., phone: _Optional[str] = ..., email: _Optional[str] = ..., guid: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., user_info: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., last_login_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., login_retry_count: _Optional[int] = ..., error_message: _Optional[str] = ..., recovery_attempts: _Optional[int] = ..., next_recovery_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., provider_token: _Optional[str] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("account", "request_id")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account: Account
    request_id: str
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "status", "user_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    status: AccountStatus
    user_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., user_id: _Optional[str] = ...) -> None: ...

class ListAccountsResponse(_message.Message):
    __slots__ = ("accounts", "next_page_token")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    next_page_token: str
    def __init__(self, accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateAccountRequest(_message.Message):
    __slots__ = ("account", "update_mask")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    account: Account
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteAccountRequest(_message.Message):
    __slots__ = ("id", "etag")
    ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    id: str
    etag: str
    def __init__(self, id: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteAccountResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LoginState(_message.Message):
    __slots__ = ("account_id", "status", "qr_code_url", "qr_payload", "qr_expire_time", "login_retry_count", "error_message", "user_info", "last_login_time", "etag")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    QR_CODE_URL_FIELD_NUMBER: _ClassVar[int]
    QR_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    QR_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LOGIN_RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USER_INFO_FIELD_NUMBER: _ClassVar[int]
    LAST_LOGIN_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    status: AccountStatus
    qr_code_url: str
    qr_payload: str
    qr_expire_time: _timestamp_pb2.Timestamp
    login_retry_count: int
    error_message: str
    user_info: _struct_pb2.Struct
    last_login_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, account_id: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., qr_code_url: _Optional[str] = ..., qr_payload: _Optional[str] = ..., qr_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., login_retry_count: _Optional[int] = ..., error_message: _Optional[str] = ..., user_info: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., last_login_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class StartLoginRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SubmitVerificationCodeRequest(_message.Message):
    __slots__ = ("id", "code")
    ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    code: str
    def __init__(self, id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetLoginStateRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class AccountStatusChange(_message.Message):
    __slots__ = ("id", "account_id", "old_status", "new_status", "reason", "error_message", "extra_data", "operator_id", "operator_type", "create_time", "sequence")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_STATUS_FIELD_NUMBER: _ClassVar[int]
    NEW_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_DATA_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    account_id: str
    old_status: AccountStatus
    new_status: AccountStatus
    reason: str
    error_message: str
    extra_data: _struct_pb2.Struct
    operator_id: str
    operator_type: _common_pb2.OperatorType
    create_time: _timestamp_pb2.Timestamp
    sequence: int
    def __init__(self, id: _Optional[str] = ..., account_id: _Optional[str] = ..., old_status: _Optional[_Union[AccountStatus, str]] = ..., new_status: _Optional[_Union[AccountStatus, str]] = ..., reason: _Optional[str] = ..., error_message: _Optional[str] = ..., extra_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., operator_id: _Optional[str] = ..., operator_type: _Optional[_Union[_common_pb2.OperatorType, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class ListStatusHistoryRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStatusHistoryResponse(_message.Message):
    __slots__ = ("status_changes", "next_page_token")
    STATUS_CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status_changes: _containers.RepeatedCompositeFieldContainer[AccountStatusChange]
    next_page_token: str
    def __init__(self, status_changes: _Optional[_Iterable[_Union[AccountStatusChange, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchAccountsRequest(_message.Message):
    __slots__ = ("account_ids", "cursor")
    ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    account_ids: _containers.RepeatedScalarFieldContainer[str]
    cursor: str
    def __init__(self, account_ids: _Optional[_Iterable[str]] = ..., cursor: _Optional[str] = ...) -> None: ...

class WatchAccountsResponse(_message.Message):
    __slots__ = ("change", "cursor")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    change: AccountStatusChange
    cursor: str
    def __init__(self, change: _Optional[_Union[AccountStatusChange, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("id", "account_id", "conversation_id", "conversation_name", "conversation_type", "avatar_url", "member_count", "last_msg_time", "last_msg_content", "unread_count", "is_active", "is_pinned", "tags", "extra_info", "create_time", "update_time", "etag")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_NAME_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    AVATAR_URL_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_MSG_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_MSG_CONTENT_FIELD_NUMBER: _ClassVar[int]
    UNREAD_COUNT_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    IS_PINNED_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_INFO_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    id: str
    account_id: str
    conversation_id: str
    conversation_name: str
    conversation_type: ConversationType
    avatar_url: str
    member_count: int
    last_msg_time: _timestamp_pb2.Timestamp
    last_msg_content: str
    unread_count: int
    is_active: bool
    is_pinned: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    extra_info: _struct_pb2.Struct
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, id: _Optional[str] = ..., account_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., conversation_name: _Optional[str] = ..., conversation_type: _Optional[_Union[ConversationType, str]] = ..., avatar_url: _Optional[str] = ..., member_count: _Optional[int] = ..., last_msg_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_msg_content: _Optional[str] = ..., unread_count: _Optional[int] = ..., is_active: _Optional[bool] = ..., is_pinned: _Optional[bool] = ..., tags: _Optional[_Iterable[str]] = ..., extra_info: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class ListConversationsRequest(_message.Message):
    __slots__ = ("account_id", "page_size", "page_token", "conversation_type", "is_pinned", "tag")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    IS_PINNED_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_size: int
    page_token: str
    conversation_type: ConversationType
    is_pinned: bool
    tag: str
    def __init__(self, account_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., conversation_type: _Optional[_Union[ConversationType, str]] = ..., is_pinned: _Optional[bool] = ..., tag: _Optional[str] = ...) -> None: ...

class ListConversationsResponse(_message.Message):
    __slots__ = ("conversations", "next_page_token")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[Conversation]
    next_page_token: str
    def __init__(self, conversations: _Optional[_Iterable[_Union[Conversation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class UpdateConversationRequest(_message.Message):
    __slots__ = ("conversation", "update_mask")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    conversation: Conversation
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, conversation: _Optional[_Union[Conversation, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...
