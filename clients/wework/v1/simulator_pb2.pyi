from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SimulateScanRequest(_message.Message):
    __slots__ = ("account_id", "scan_only")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    SCAN_ONLY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    scan_only: bool
    def __init__(self, account_id: _Optional[str] = ..., scan_only: _Optional[bool] = ...) -> None: ...

class SimulateScanResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SimulateDisconnectRequest(_message.Message):
    __slots__ = ("account_id", "reason")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    reason: str
    def __init__(self, account_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SimulateDisconnectResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SimulateIncomingMessageRequest(_message.Message):
    __slots__ = ("account_id", "conversation_id", "text", "sender_name", "conversation_name")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENDER_NAME_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_NAME_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    conversation_id: str
    text: str
    sender_name: str
    conversation_name: str
    def __init__(self, account_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., text: _Optional[str] = ..., sender_name: _Optional[str] = ..., conversation_name: _Optional[str] = ...) -> None: ...

class SimulateIncomingMessageResponse(_message.Message):
    __slots__ = ("wework_msg_id",)
    WEWORK_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    wework_msg_id: str
    def __init__(self, wework_msg_id: _Optional[str] = ...) -> None: ...
