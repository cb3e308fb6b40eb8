import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import image_pb2 as _image_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import location_pb2 as _location_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import mini_program_pb2 as _mini_program_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import url_link_pb2 as _url_link_pb2
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
    MESSAGE_TYPE_ATTACHMENT: _ClassVar[MessageType]
    MESSAGE_TYPE_AUDIO: _ClassVar[MessageType]
    MESSAGE_TYPE_CONTACT: _ClassVar[MessageType]
    MESSAGE_TYPE_EMOTICON: _ClassVar[MessageType]
    MESSAGE_TYPE_IMAGE: _ClassVar[MessageType]
    MESSAGE_TYPE_TEXT: _ClassVar[MessageType]
    MESSAGE_TYPE_VIDEO: _ClassVar[MessageType]
    MESSAGE_TYPE_CHAT_HISTORY: _ClassVar[MessageType]
    MESSAGE_TYPE_LOCATION: _ClassVar[MessageType]
    MESSAGE_TYPE_MINI_PROGRAM: _ClassVar[MessageType]
    MESSAGE_TYPE_TRANSFER: _ClassVar[MessageType]
    MESSAGE_TYPE_RED_ENVELOPE: _ClassVar[MessageType]
    MESSAGE_TYPE_RECALLED: _ClassVar[MessageType]
    MESSAGE_TYPE_URL: _ClassVar[MessageType]
MESSAGE_TYPE_UNSPECIFIED: MessageType
MESSAGE_TYPE_ATTACHMENT: MessageType
MESSAGE_TYPE_AUDIO: MessageType
MESSAGE_TYPE_CONTACT: MessageType
MESSAGE_TYPE_EMOTICON: MessageType
MESSAGE_TYPE_IMAGE: MessageType
MESSAGE_TYPE_TEXT: MessageType
MESSAGE_TYPE_VIDEO: MessageType
MESSAGE_TYPE_CHAT_HISTORY: MessageType
MESSAGE_TYPE_LOCATION: MessageType
MESSAGE_TYPE_MINI_PROGRAM: MessageType
MESSAGE_TYPE_TRANSFER: MessageType
MESSAGE_TYPE_RED_ENVELOPE: MessageType
MESSAGE_TYPE_RECALLED: MessageType
MESSAGE_TYPE_URL: MessageType

class MessagePayloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MessagePayloadResponse(_message.Message):
    __slots__ = ("id", "filename", "text", "timestamp_deprecated", "type", "talker_id", "room_id", "listener_id", "mention_ids", "receive_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TALKER_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    LISTENER_ID_FIELD_NUMBER: _ClassVar[int]
    MENTION_IDS_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    filename: str
    text: str
    timestamp_deprecated: int
    type: MessageType
    talker_id: str
    room_id: str
    listener_id: str
    mention_ids: _containers.RepeatedScalarFieldContainer[str]
    receive_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., filename: _Optional[str] = ..., text: _Optional[str] = ..., timestamp_deprecated: _Optional[int] = ..., type: _Optional[_Union[MessageType, str]] = ..., talker_id: _Optional[str] = ..., room_id: _Optional[str] = ..., listener_id: _Optional[str] = ..., mention_ids: _Optional[_Iterable[str]] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MessageImageRequest(_message.Message):
    __slots__ = ("id", "type")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: _image_pb2.ImageType
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[_image_pb2.ImageType, str]] = ...) -> None: ...

class MessageImageResponse(_message.Message):
    __slots__ = ("file_box",)
    FILE_BOX_FIELD_NUMBER: _ClassVar[int]
    file_box: str
    def __init__(self, file_box: _Optional[str] = ...) -> None: ...

class MessageContactRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MessageContactResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MessageFileRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MessageFileResponse(_message.Message):
    __slots__ = ("file_box",)
    FILE_BOX_FIELD_NUMBER: _ClassVar[int]
    file_box: str
    def __init__(self, file_box: _Optional[str] = ...) -> None: ...

class MessageMiniProgramRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MessageMiniProgramResponse(_message.Message):
    __slots__ = ("mini_program_deprecated", "mini_program")
    MINI_PROGRAM_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    MINI_PROGRAM_FIELD_NUMBER: _ClassVar[int]
    mini_program_deprecated: str
    mini_program: _mini_program_pb2.MiniProgramPayload
    def __init__(self, mini_program_deprecated: _Optional[str] = ..., mini_program: _Optional[_Union[_mini_program_pb2.MiniProgramPayload, _Mapping]] = ...) -> None: ...

class MessageUrlRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MessageUrlResponse(_message.Message):
    __slots__ = ("url_link_deprecated", "url_link")
    URL_LINK_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    URL_LINK_FIELD_NUMBER: _ClassVar[int]
    url_link_deprecated: str
    url_link: _url_link_pb2.UrlLinkPayload
    def __init__(self, url_link_deprecated: _Optional[str] = ..., url_link: _Optional[_Union[_url_link_pb2.UrlLinkPayload, _Mapping]] = ...) -> None: ...

class MessageSendContactRequest(_message.Message):
    __slots__ = ("conversation_id", "contact_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    contact_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., contact_id: _Optional[str] = ...) -> None: ...

class MessageSendContactResponse(_message.Message):
    __slots__ = ("id_string_value_deprecated", "id")
    ID_STRING_VALUE_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    id_string_value_deprecated: _wrappers_pb2.StringValue
    id: str
    def __init__(self, id_string_value_deprecated: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class MessageSendFileRequest(_message.Message):
    __slots__ = ("conversation_id", "file_box")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_BOX_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    file_box: str
    def __init__(self, conversation_id: _Optional[str] = ..., file_box: _Optional[str] = ...) -> None: ...

class MessageSendFileResponse(_message.Message):
    __slots__ = ("id_string_value_deprecated", "id")
    ID_STRING_VALUE_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    id_string_value_deprecated: _wrappers_pb2.StringValue
    id: str
    def __init__(self, id_string_value_deprecated: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class MessageSendTextRequest(_message.Message):
    __slots__ = ("conversation_id", "text", "mentional_ids")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MENTIONAL_IDS_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    text: str
    mentional_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, conversation_id: _Optional[str] = ..., text: _Optional[str] = ..., mentional_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class MessageSendTextResponse(_message.Message):
    __slots__ = ("id_string_value_deprecated", "id")
    ID_STRING_VALUE_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    id_string_value_deprecated: _wrappers_pb2.StringValue
    id: str
    def __init__(self, id_string_value_deprecated: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class MessageSendMiniProgramRequest(_message.Message):
    __slots__ = ("conversation_id", "mini_program_deprecated", "mini_program")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MINI_PROGRAM_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    MINI_PROGRAM_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    mini_program_deprecated: str
    mini_program: _mini_program_pb2.MiniProgramPayload
    def __init__(self, conversation_id: _Optional[str] = ..., mini_program_deprecated: _Optional[str] = ..., mini_program: _Optional[_Union[_mini_program_pb2.MiniProgramPayload, _Mapping]] = ...) -> None: ...

class MessageSendMiniProgramResponse(_message.Message):
    __slots__ = ("id_string_value_deprecated", "id")
    ID_STRING_VALUE_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    id_string_value_deprecated: _wrappers_pb2.StringValue
    id: str
    def __init__(self, id_string_value_deprecated: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class MessageSendUrlRequest(_message.Message):
    __slots__ = ("conversation_id", "url_link_deprecated", "url_link")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    URL_LINK_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    URL_LINK_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    url_link_deprecated: str
    url_link: _url_link_pb2.UrlLinkPayload
    def __init__(self, conversation_id: _Optional[str] = ..., url_link_deprecated: _Optional[str] = ..., url_link: _Optional[_Union[_url_link_pb2.UrlLinkPayload, _Mapping]] = ...) -> None: ...

class MessageSendUrlResponse(_message.Message):
    __slots__ = ("id_string_value_deprecated", "id")
    ID_STRING_VALUE_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    id_string_value_deprecated: _wrappers_pb2.StringValue
    id: str
    def __init__(self, id_string_value_deprecated: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class MessageRecallRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MessageRecallResponse(_message.Message):
    __slots__ = ("success",)
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    def __init__(self, success: _Optional[bool] = ...) -> None: ...

class MessageForwardRequest(_message.Message):
    __slots__ = ("message_id", "conversation_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    conversation_id: str
    def __init__(self, message_id: _Optional[str] = ..., conversation_id: _Optional[str] = ...) -> None: ...

class MessageForwardResponse(_message.Message):
    __slots__ = ("id_string_value_deprecated", "id")
    ID_STRING_VALUE_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    id_string_value_deprecated: _wrappers_pb2.StringValue
    id: str
    def __init__(self, id_string_value_deprecated: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class MessageLocationRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MessageLocationResponse(_message.Message):
    __slots__ = ("location",)
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    location: _location_pb2.LocationPayload
    def __init__(self, location: _Optional[_Union[_location_pb2.LocationPayload, _Mapping]] = ...) -> None: ...

class MessageSendLocationRequest(_message.Message):
    __slots__ = ("conversation_id", "location")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    location: _location_pb2.LocationPayload
    def __init__(self, conversation_id: _Optional[str] = ..., location: _Optional[_Union[_location_pb2.LocationPayload, _Mapping]] = ...) -> None: ...

class MessageSendLocationResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...
