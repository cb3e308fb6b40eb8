import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from wework.v1 import account_pb2 as _account_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_TYPE_UNSPECIFIED: _ClassVar[MessageType]
    MESSAGE_TYPE_TEXT: _ClassVar[MessageType]
    MESSAGE_TYPE_IMAGE: _ClassVar[MessageType]
    MESSAGE_TYPE_FILE: _ClassVar[MessageType]
    MESSAGE_TYPE_LINK: _ClassVar[MessageType]
    MESSAGE_TYPE_MINIPROGRAM: _ClassVar[MessageType]
    MESSAGE_TYPE_AT: _ClassVar[MessageType]

class MessageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATUS_UNSPECIFIED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_PENDING: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SENDING: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SENT: _ClassVar[MessageStatus]
    MESSAGE_STATUS_DELIVERED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_FAILED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_CANCELLED: _ClassVar[MessageStatus]

class VariableType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VARIABLE_TYPE_UNSPECIFIED: _ClassVar[VariableType]
    VARIABLE_TYPE_STRING: _ClassVar[VariableType]
    VARIABLE_TYPE_NUMBER: _ClassVar[VariableType]
    VARIABLE_TYPE_BOOL: _ClassVar[VariableType]
    VARIABLE_TYPE_DATE: _ClassVar[VariableType]

class BatchTaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_TASK_STATUS_UNSPECIFIED: _ClassVar[BatchTaskStatus]
    BATCH_TASK_STATUS_CREATED: _ClassVar[BatchTaskStatus]
    BATCH_TASK_STATUS_RUNNING: _ClassVar[BatchTaskStatus]
    BATCH_TASK_STATUS_PAUSED: _ClassVar[BatchTaskStatus]
    BATCH_TASK_STATUS_COMPLETED: _ClassVar[BatchTaskStatus]
    BATCH_TASK_STATUS_FAILED: _ClassVar[BatchTaskStatus]
    BATCH_TASK_STATUS_CANCELLED: _ClassVar[BatchTaskStatus]
MESSAGE_TYPE_UNSPECIFIED: MessageType
MESSAGE_TYPE_TEXT: MessageType
MESSAGE_TYPE_IMAGE: MessageType
MESSAGE_TYPE_FILE: MessageType
MESSAGE_TYPE_LINK: MessageType
MESSAGE_TYPE_MINIPROGRAM: MessageType
MESSAGE_TYPE_AT: MessageType
MESSAGE_STATUS_UNSPECIFIED: MessageStatus
MESSAGE_STATUS_PENDING: MessageStatus
MESSAGE_STATUS_SENDING: MessageStatus
MESSAGE_STATUS_SENT: MessageStatus
MESSAGE_STATUS_DELIVERED: MessageStatus
MESSAGE_STATUS_FAILED: MessageStatus
MESSAGE_STATUS_CANCELLED: MessageStatus
VARIABLE_TYPE_UNSPECIFIED: VariableType
VARIABLE_TYPE_STRING: VariableType
VARIABLE_TYPE_NUMBER: VariableType
VARIABLE_TYPE_BOOL: VariableType
VARIABLE_TYPE_DATE: VariableType
BATCH_TASK_STATUS_UNSPECIFIED: BatchTaskStatus
BATCH_TASK_STATUS_CREATED: BatchTaskStatus
BATCH_TASK_STATUS_RUNNING: BatchTaskStatus
BATCH_TASK_STATUS_PAUSED: BatchTaskStatus
BATCH_TASK_STATUS_COMPLETED: BatchTaskStatus
BATCH_TASK_STATUS_FAILED: BatchTaskStatus
BATCH_TASK_STATUS_CANCELLED: BatchTaskStatus

class TextContent(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ImageContent(_message.Message):
    __slots__ = ("media_id", "url")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    url: str
    def __init__(self, media_id: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class FileContent(_message.Message):
    __slots__ = ("media_id", "url", "file_name")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    url: str
    file_name: str
    def __init__(self, media_id: _Optional[str] = ..., url: _Optional[str] = ..., file_name: _Optional[str] = ...) -> None: ...

class LinkContent(_message.Message):
    __slots__ = ("title", "description", "url", "thumb_url")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    THUMB_URL_FIELD_NUMBER: _ClassVar[int]
    title: str
    description: str
    url: str
    thumb_url: str
    def __init__(self, title: _Optional[str] = ..., description: _Optional[str] = ..., url: _Optional[str] = ..., thumb_url: _Optional[str] = ...) -> None: ...

class MiniProgramContent(_message.Message):
    __slots__ = ("app_id", "title", "page_path", "thumb_media_id")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    THUMB_MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    title: str
    page_path: str
    thumb_media_id: str
    def __init__(self, app_id: _Optional[str] = ..., title: _Optional[str] = ..., page_path: _Optional[str] = ..., thumb_media_id: _Optional[str] = ...) -> None: ...

class AtContent(_message.Message):
    __slots__ = ("text", "user_ids", "at_all")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    AT_ALL_FIELD_NUMBER: _ClassVar[int]
    text: str
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    at_all: bool
    def __init__(self, text: _Optional[str] = ..., user_ids: _Optional[_Iterable[str]] = ..., at_all: _Optional[bool] = ...) -> None: ...

class MessageContent(_message.Message):
    __slots__ = ("text", "image", "file", "link", "miniprogram", "at")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    MINIPROGRAM_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    text: TextContent
    image: ImageContent
    file: FileContent
    link: LinkContent
    miniprogram: MiniProgramContent
    at: AtContent
    def __init__(self, text: _Optional[_Union[TextContent, _Mapping]] = ..., image: _Optional[_Union[ImageContent, _Mapping]] = ..., file: _Optional[_Union[FileContent, _Mapping]] = ..., link: _Optional[_Union[LinkContent, _Mapping]] = ..., miniprogram: _Optional[_Union[MiniProgramContent, _Mapping]] = ..., at: _Optional[_Union[AtContent, _Mapping]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("id", "tenant_id", "account_id", "conversation_id", "message_type", "content", "template_id", "status", "wework_msg_id", "send_time", "callback_time", "error_code", "error_message", "retry_count", "batch_id", "priority", "scheduled_time", "hold_reason", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WEWORK_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    HOLD_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    account_id: str
    conversation_id: str
    message_type: MessageType
    content: MessageContent
    template_id: str
    status: MessageStatus
    wework_msg_id: str
    send_time: _timestamp_pb2.Timestamp
    callback_time: _timestamp_pb2.Timestamp
    error_code: str
    error_message: str
    retry_count: int
    batch_id: str
    priority: int
    scheduled_time: _timestamp_pb2.Timestamp
    hold_reason: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., account_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., message_type: _Optional[_Union[MessageType, str]] = ..., content: _Optional[_Union[MessageContent, _Mapping]] = ..., template_id: _Optional[str] = ..., status: _Optional[_Union[MessageStatus, str]] = ..., wework_msg_id: _Optional[str] = ..., send_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., callback_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., retry_count: _Optional[int] = ..., batch_id: _Optional[str] = ..., priority: _Optional[int] = ..., scheduled_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hold_reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SendMessageRequest(_message.Message):
    __slots__ = ("account_id", "conversation_id", "content", "template_id", "variables", "priority", "scheduled_time", "request_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    conversation_id: str
    content: MessageContent
    template_id: str
    variables: _struct_pb2.Struct
    priority: int
    scheduled_time: _timestamp_pb2.Timestamp
    request_id: str
    def __init__(self, account_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., content: _Optional[_Union[MessageContent, _Mapping]] = ..., template_id: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., priority: _Optional[int] = ..., scheduled_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class BatchSendMessagesRequest(_message.Message):
    __slots__ = ("requests", "atomic")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SendMessageRequest]
    atomic: bool
    def __init__(self, requests: _Optional[_Iterable[_Union[SendMessageRequest, _Mapping]]] = ..., atomic: _Optional[bool] = ...) -> None: ...

class BatchSendMessagesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchSendMessagesResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchSendMessagesResult, _Mapping]]] = ...) -> None: ...

class BatchSendMessagesResult(_message.Message):
    __slots__ = ("message", "error")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    message: Message
    error: _status_pb2.Status
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class GetMessageRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListMessagesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "account_id", "conversation_id", "status", "batch_id", "start_time", "end_time")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    account_id: str
    conversation_id: str
    status: MessageStatus
    batch_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., account_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., status: _Optional[_Union[MessageStatus, str]] = ..., batch_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelMessageRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RetryMessageRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TemplateVariable(_message.Message):
    __slots__ = ("name", "type", "required", "default_value", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: VariableType
    required: bool
    default_value: str
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[VariableType, str]] = ..., required: _Optional[bool] = ..., default_value: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class MessageTemplate(_message.Message):
    __slots__ = ("id", "tenant_id", "creator_id", "template_name", "template_type", "category", "description", "template_content", "variables", "preview_data", "usage_count", "last_used_time", "is_public", "is_active", "tags", "create_time", "update_time", "etag")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATOR_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_CONTENT_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_DATA_FIELD_NUMBER: _ClassVar[int]
    USAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_TIME_FIELD_NUMBER: _ClassVar[int]
    IS_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    creator_id: str
    template_name: str
    template_type: MessageType
    category: str
    description: str
    template_content: MessageContent
    variables: _containers.RepeatedCompositeFieldContainer[TemplateVariable]
    preview_data: _struct_pb2.Struct
    usage_count: int
    last_used_time: _timestamp_pb2.Timestamp
    is_public: bool
    is_active: bool
    tags: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., creator_id: _Optional[str] = ..., template_name: _Optional[str] = ..., template_type: _Optional[_Union[MessageType, str]] = ..., category: _Optional[str] = ..., description: _Optional[str] = ..., template_content: _Optional[_Union[MessageContent, _Mapping]] = ..., variables: _Optional[_Iterable[_Union[TemplateVariable, _Mapping]]] = ..., preview_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., usage_count: _Optional[int] = ..., last_used_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., is_public: _Optional[bool] = ..., is_active: _Optional[bool] = ..., tags: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class CreateTemplateRequest(_message.Message):
    __slots__ = ("template", "request_id")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    template: MessageTemplate
    request_id: str
    def __init__(self, template: _Optional[_Union[MessageTemplate, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "category", "tag", "template_type", "is_active")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    category: str
    tag: str
    template_type: MessageType
    is_active: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., category: _Optional[str] = ..., tag: _Optional[str] = ..., template_type: _Optional[_Union[MessageType, str]] = ..., is_active: _Optional[bool] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates", "next_page_token")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[MessageTemplate]
    next_page_token: str
    def __init__(self, templates: _Optional[_Iterable[_Union[MessageTemplate, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateTemplateRequest(_message.Message):
    __slots__ = ("template", "update_mask")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    template: MessageTemplate
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, template: _Optional[_Union[MessageTemplate, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteTemplateRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteTemplateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenderTemplatePreviewRequest(_message.Message):
    __slots__ = ("id", "variables")
    ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    id: str
    variables: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RenderTemplatePreviewResponse(_message.Message):
    __slots__ = ("content",)
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: MessageContent
    def __init__(self, content: _Optional[_Union[MessageContent, _Mapping]] = ...) -> None: ...

class BatchTarget(_message.Message):
    __slots__ = ("conversation_id", "variables")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    variables: _struct_pb2.Struct
    def __init__(self, conversation_id: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ManualTargets(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[BatchTarget]
    def __init__(self, targets: _Optional[_Iterable[_Union[BatchTarget, _Mapping]]] = ...) -> None: ...

class ImportTargets(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GroupTargets(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FilterTargets(_message.Message):
    __slots__ = ("tags", "conversation_type", "active_since")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_SINCE_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    conversation_type: _account_pb2.ConversationType
    active_since: _timestamp_pb2.Timestamp
    def __init__(self, tags: _Optional[_Iterable[str]] = ..., conversation_type: _Optional[_Union[_account_pb2.ConversationType, str]] = ..., active_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SendStrategy(_message.Message):
    __slots__ = ("rate_per_minute", "jitter_seconds", "time_zone", "window_start", "window_end", "priority")
    RATE_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    JITTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    rate_per_minute: float
    jitter_seconds: float
    time_zone: str
    window_start: str
    window_end: str
    priority: int
    def __init__(self, rate_per_minute: _Optional[float] = ..., jitter_seconds: _Optional[float] = ..., time_zone: _Optional[str] = ..., window_start: _Optional[str] = ..., window_end: _Optional[str] = ..., priority: _Optional[int] = ...) -> None: ...

class BatchSendTask(_message.Message):
    __slots__ = ("id", "tenant_id", "creator_id", "task_name", "account_id", "template_id", "message_content", "variables", "manual", "group", "filter", "send_strategy", "status", "total_count", "sent_count", "success_count", "failed_count", "progress_percent", "start_time", "end_time", "estimated_duration_seconds", "error_message", "create_time", "update_time", "etag")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATOR_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_CONTENT_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    IMPORT_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SEND_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    SENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    creator_id: str
    task_name: str
    account_id: str
    template_id: str
    message_content: MessageContent
    variables: _struct_pb2.Struct
    manual: ManualTargets
    group: GroupTargets
    filter: FilterTargets
    send_strategy: SendStrategy
    status: BatchTaskStatus
    total_count: int
    sent_count: int
    success_count: int
    failed_count: int
    progress_percent: float
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    estimated_duration_seconds: int
    error_message: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., creator_id: _Optional[str] = ..., task_name: _Optional[str] = ..., account_id: _Optional[str] = ..., template_id: _Optional[str] = ..., message_content: _Optional[_Union[MessageContent, _Mapping]] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., manual: _Optional[_Union[ManualTargets, _Mapping]] = ..., group: _Optional[_Union[GroupTargets, _Mapping]] = ..., filter: _Optional[_Union[FilterTargets, _Mapping]] = ..., send_strategy: _Optional[_Union[SendStrategy, _Mapping]] = ..., status: _Optional[_Union[BatchTaskStatus, str]] = ..., total_count: _Optional[int] = ..., sent_count: _Optional[int] = ..., success_count: _Optional[int] = ..., failed_count: _Optional[int] = ..., progress_percent: _Optional[float] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., estimated_duration_seconds: _Optional[int] = ..., error_message: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., **kwargs) -> None: ...

class CreateBatchTaskRequest(_message.Message):
    __slots__ = ("task", "request_id")
    TASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task: BatchSendTask
    request_id: str
    def __init__(self, task: _Optional[_Union[BatchSendTask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ImportBatchTargetsRequest(_message.Message):
    __slots__ = ("task_id", "targets")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    targets: _containers.RepeatedCompositeFieldContainer[BatchTarget]
    def __init__(self, task_id: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[BatchTarget, _Mapping]]] = ...) -> None: ...

class ImportBatchTargetsResponse(_message.Message):
    __slots__ = ("imported_count", "total_count")
    IMPORTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    imported_count: int
    total_count: int
    def __init__(self, imported_count: _Optional[int] = ..., total_count: _Optional[int] = ...) -> None: ...

class StartBatchTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PauseBatchTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ResumeBatchTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelBatchTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetBatchTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListBatchTasksRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "status", "account_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    status: BatchTaskStatus
    account_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[BatchTaskStatus, str]] = ..., account_id: _Optional[str] = ...) -> None: ...

class ListBatchTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[BatchSendTask]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[BatchSendTask, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchBatchTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class BatchTaskProgress(_message.Message):
    __slots__ = ("task", "eta_seconds")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    task: BatchSendTask
    eta_seconds: int
    def __init__(self, task: _Optional[_Union[BatchSendTask, _Mapping]] = ..., eta_seconds: _Optional[int] = ...) -> None: ...
