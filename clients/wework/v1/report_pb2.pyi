import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Granularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANULARITY_UNSPECIFIED: _ClassVar[Granularity]
    GRANULARITY_HOURLY: _ClassVar[Granularity]
    GRANULARITY_DAILY: _ClassVar[Granularity]
GRANULARITY_UNSPECIFIED: Granularity
GRANULARITY_HOURLY: Granularity
GRANULARITY_DAILY: Granularity

class MessageStatsBucket(_message.Message):
    __slots__ = ("start_time", "end_time", "local_start", "total_count", "success_count", "failed_count", "success_rate", "avg_response_seconds")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LOCAL_START_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    AVG_RESPONSE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    local_start: str
    total_count: int
    success_count: int
    failed_count: int
    success_rate: float
    avg_response_seconds: float
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., local_start: _Optional[str] = ..., total_count: _Optional[int] = ..., success_count: _Optional[int] = ..., failed_count: _Optional[int] = ..., success_rate: _Optional[float] = ..., avg_response_seconds: _Optional[float] = ...) -> None: ...

class GetMessageStatsRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "granularity", "time_zone", "account_id")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    granularity: Granularity
    time_zone: str
    account_id: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., granularity: _Optional[_Union[Granularity, str]] = ..., time_zone: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class GetMessageStatsResponse(_message.Message):
    __slots__ = ("buckets", "total", "time_zone", "granularity")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[MessageStatsBucket]
    total: MessageStatsBucket
    time_zone: str
    granularity: Granularity
    def __init__(self, buckets: _Optional[_Iterable[_Union[MessageStatsBucket, _Mapping]]] = ..., total: _Optional[_Union[MessageStatsBucket, _Mapping]] = ..., time_zone: _Optional[str] = ..., granularity: _Optional[_Union[Granularity, str]] = ...) -> None: ...

class ExportMessageStatsRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "granularity", "time_zone", "account_id", "chunk_size")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    granularity: Granularity
    time_zone: str
    account_id: str
    chunk_size: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., granularity: _Optional[_Union[Granularity, str]] = ..., time_zone: _Optional[str] = ..., account_id: _Optional[str] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class ExportMessageStatsResponse(_message.Message):
    __slots__ = ("buckets", "chunk_index", "last")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[MessageStatsBucket]
    chunk_index: int
    last: bool
    def __init__(self, buckets: _Optional[_Iterable[_Union[MessageStatsBucket, _Mapping]]] = ..., chunk_index: _Optional[int] = ..., last: _Optional[bool] = ...) -> None: ...

class GetAccountHealthRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "top_n")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TOP_N_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    top_n: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., top_n: _Optional[int] = ...) -> None: ...

class AccountStatusCount(_message.Message):
    __slots__ = ("status", "count")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    status: str
    count: int
    def __init__(self, status: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class AccountHealthEntry(_message.Message):
    __slots__ = ("account_id", "account_name", "status", "failed_messages", "total_messages", "error_transitions", "online_rate")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    ERROR_TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_RATE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    account_name: str
    status: str
    failed_messages: int
    total_messages: int
    error_transitions: int
    online_rate: float
    def __init__(self, account_id: _Optional[str] = ..., account_name: _Optional[str] = ..., status: _Optional[str] = ..., failed_messages: _Optional[int] = ..., total_messages: _Optional[int] = ..., error_transitions: _Optional[int] = ..., online_rate: _Optional[float] = ...) -> None: ...

class GetAccountHealthResponse(_message.Message):
    __slots__ = ("status_counts", "total_accounts", "online_rate", "recoveries", "mean_time_to_recover", "open_outages", "top_failing_accounts")
    STATUS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_RATE_FIELD_NUMBER: _ClassVar[int]
    RECOVERIES_FIELD_NUMBER: _ClassVar[int]
    MEAN_TIME_TO_RECOVER_FIELD_NUMBER: _ClassVar[int]
    OPEN_OUTAGES_FIELD_NUMBER: _ClassVar[int]
    TOP_FAILING_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    status_counts: _containers.RepeatedCompositeFieldContainer[AccountStatusCount]
    total_accounts: int
    online_rate: float
    recoveries: int
    mean_time_to_recover: _duration_pb2.Duration
    open_outages: int
    top_failing_accounts: _containers.RepeatedCompositeFieldContainer[AccountHealthEntry]
    def __init__(self, status_counts: _Optional[_Iterable[_Union[AccountStatusCount, _Mapping]]] = ..., total_accounts: _Optional[int] = ..., online_rate: _Optional[float] = ..., recoveries: _Optional[int] = ..., mean_time_to_recover: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., open_outages: _Optional[int] = ..., top_failing_accounts: _Optional[_Iterable[_Union[AccountHealthEntry, _Mapping]]] = ...) -> None: ...

class GetBatchTaskReportRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class FailureReason(_message.Message):
    __slots__ = ("error_code", "count", "sample_error_message")
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    error_code: str
    count: int
    sample_error_message: str
    def __init__(self, error_code: _Optional[str] = ..., count: _Optional[int] = ..., sample_error_message: _Optional[str] = ...) -> None: ...

class BatchMessageCounts(_message.Message):
    __slots__ = ("total", "pending", "sending", "sent", "delivered", "failed", "cancelled")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    SENDING_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    total: int
    pending: int
    sending: int
    sent: int
    delivered: int
    failed: int
    cancelled: int
    def __init__(self, total: _Optional[int] = ..., pending: _Optional[int] = ..., sending: _Optional[int] = ..., sent: _Optional[int] = ..., delivered: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ...) -> None: ...

class GetBatchTaskReportResponse(_message.Message):
    __slots__ = ("task_id", "task_name", "status", "total_count", "sent_count", "success_count", "failed_count", "messages", "start_time", "end_time", "duration", "throughput_per_minute", "failure_reasons")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    SENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASONS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_name: str
    status: str
    total_count: int
    sent_count: int
    success_count: int
    failed_count: int
    messages: BatchMessageCounts
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    throughput_per_minute: float
    failure_reasons: _containers.RepeatedCompositeFieldContainer[FailureReason]
    def __init__(self, task_id: _Optional[str] = ..., task_name: _Optional[str] = ..., status: _Optional[str] = ..., total_count: _Optional[int] = ..., sent_count: _Optional[int] = ..., success_count: _Optional[int] = ..., failed_count: _Optional[int] = ..., messages: _Optional[_Union[BatchMessageCounts, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., throughput_per_minute: _Optional[float] = ..., failure_reasons: _Optional[_Iterable[_Union[FailureReason, _Mapping]]] = ...) -> None: ...

class GetTemplateUsageRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "page_size")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ...) -> None: ...

class TemplateUsage(_message.Message):
    __slots__ = ("template_id", "template_name", "message_count", "success_count", "failed_count", "lifetime_usage_count", "last_used_time")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_USAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_TIME_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    template_name: str
    message_count: int
    success_count: int
    failed_count: int
    lifetime_usage_count: int
    last_used_time: _timestamp_pb2.Timestamp
    def __init__(self, template_id: _Optional[str] = ..., template_name: _Optional[str] = ..., message_count: _Optional[int] = ..., success_count: _Optional[int] = ..., failed_count: _Optional[int] = ..., lifetime_usage_count: _Optional[int] = ..., last_used_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTemplateUsageResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[TemplateUsage]
    def __init__(self, templates: _Optional[_Iterable[_Union[TemplateUsage, _Mapping]]] = ...) -> None: ...
