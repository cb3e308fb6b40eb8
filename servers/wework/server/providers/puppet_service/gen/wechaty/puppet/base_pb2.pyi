from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PayloadType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYLOAD_TYPE_UNSPECIFIED: _ClassVar[PayloadType]
    PAYLOAD_TYPE_MESSAGE: _ClassVar[PayloadType]
    PAYLOAD_TYPE_CONTACT: _ClassVar[PayloadType]
    PAYLOAD_TYPE_ROOM: _ClassVar[PayloadType]
    PAYLOAD_TYPE_ROOM_MEMBER: _ClassVar[PayloadType]
    PAYLOAD_TYPE_FRIENDSHIP: _ClassVar[PayloadType]
PAYLOAD_TYPE_UNSPECIFIED: PayloadType
PAYLOAD_TYPE_MESSAGE: PayloadType
PAYLOAD_TYPE_CONTACT: PayloadType
PAYLOAD_TYPE_ROOM: PayloadType
PAYLOAD_TYPE_ROOM_MEMBER: PayloadType
PAYLOAD_TYPE_FRIENDSHIP: PayloadType

class StartRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DingRequest(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: str
    def __init__(self, data: _Optional[str] = ...) -> None: ...

class DingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DirtyPayloadRequest(_message.Message):
    __slots__ = ("type", "id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    type: PayloadType
    id: str
    def __init__(self, type: _Optional[_Union[PayloadType, str]] = ..., id: _Optional[str] = ...) -> None: ...

class DirtyPayloadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
