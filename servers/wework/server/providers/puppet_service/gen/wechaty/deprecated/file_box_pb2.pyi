from google.protobuf import wrappers_pb2 as _wrappers_pb2
from wework.server.providers.puppet_service.gen.wechaty.puppet import image_pb2 as _image_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FileBoxChunk(_message.Message):
    __slots__ = ("data", "name")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    name: str
    def __init__(self, data: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class MessageImageStreamRequest(_message.Message):
    __slots__ = ("id", "type")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: _image_pb2.ImageType
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[_image_pb2.ImageType, str]] = ...) -> None: ...

class MessageImageStreamResponse(_message.Message):
    __slots__ = ("file_box_chunk",)
    FILE_BOX_CHUNK_FIELD_NUMBER: _ClassVar[int]
    file_box_chunk: FileBoxChunk
    def __init__(self, file_box_chunk: _Optional[_Union[FileBoxChunk, _Mapping]] = ...) -> None: ...

class MessageFileStreamRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MessageFileStreamResponse(_message.Message):
    __slots__ = ("file_box_chunk",)
    FILE_BOX_CHUNK_FIELD_NUMBER: _ClassVar[int]
    file_box_chunk: FileBoxChunk
    def __init__(self, file_box_chunk: _Optional[_Union[FileBoxChunk, _Mapping]] = ...) -> None: ...

class MessageSendFileStreamRequest(_message.Message):
    __slots__ = ("conversation_id", "file_box_chunk")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_BOX_CHUNK_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    file_box_chunk: FileBoxChunk
    def __init__(self, conversation_id: _Optional[str] = ..., file_box_chunk: _Optional[_Union[FileBoxChunk, _Mapping]] = ...) -> None: ...

class MessageSendFileStreamResponse(_message.Message):
    __slots__ = ("id_string_value_deprecated", "id")
    ID_STRING_VALUE_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    id_string_value_deprecated: _wrappers_pb2.StringValue
    id: str
    def __init__(self, id_string_value_deprecated: _Optional[_Union[_wrappers_pb2.StringValue, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...
