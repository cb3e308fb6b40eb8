from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_HEARTBEAT: _ClassVar[EventType]
    EVENT_TYPE_MESSAGE: _ClassVar[EventType]
    EVENT_TYPE_DONG: _ClassVar[EventType]
    EVENT_TYPE_POST: _ClassVar[EventType]
    EVENT_TYPE_ERROR: _ClassVar[EventType]
    EVENT_TYPE_FRIENDSHIP: _ClassVar[EventType]
    EVENT_TYPE_ROOM_INVITE: _ClassVar[EventType]
    EVENT_TYPE_ROOM_JOIN: _ClassVar[EventType]
    EVENT_TYPE_ROOM_LEAVE: _ClassVar[EventType]
    EVENT_TYPE_ROOM_TOPIC: _ClassVar[EventType]
    EVENT_TYPE_SCAN: _ClassVar[EventType]
    EVENT_TYPE_READY: _ClassVar[EventType]
    EVENT_TYPE_RESET: _ClassVar[EventType]
    EVENT_TYPE_LOGIN: _ClassVar[EventType]
    EVENT_TYPE_LOGOUT: _ClassVar[EventType]
    EVENT_TYPE_DIRTY: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_HEARTBEAT: EventType
EVENT_TYPE_MESSAGE: EventType
EVENT_TYPE_DONG: EventType
EVENT_TYPE_POST: EventType
EVENT_TYPE_ERROR: EventType
EVENT_TYPE_FRIENDSHIP: EventType
EVENT_TYPE_ROOM_INVITE: EventType
EVENT_TYPE_ROOM_JOIN: EventType
EVENT_TYPE_ROOM_LEAVE: EventType
EVENT_TYPE_ROOM_TOPIC: EventType
EVENT_TYPE_SCAN: EventType
EVENT_TYPE_READY: EventType
EVENT_TYPE_RESET: EventType
EVENT_TYPE_LOGIN: EventType
EVENT_TYPE_LOGOUT: EventType
EVENT_TYPE_DIRTY: EventType

class EventRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EventResponse(_message.Message):
    __slots__ = ("type", "payload")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    payload: str
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., payload: _Optional[str] = ...) -> None: ...
