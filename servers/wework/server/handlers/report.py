"""ReportService handler: requests to use cases, reports to protos.

The use cases cache what a codec here encodes (the serialized response), so a cache hit is
one proto parse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.protobuf import duration_pb2
from wework.domain.access import Permissions as P
from wework.domain.reports import StatsRow
from wework.server.application.reports import (
    AccountHealth,
    BatchTaskReport,
    MessageStats,
    ReportUseCases,
    StatsQuery,
    TemplateUsageRow,
)
from wework.server.handlers.convert import from_timestamp, to_timestamp
from wework.server.runtime.context import current_principal
from wework.server.runtime.registry import ServiceRegistration
from wework.v1 import account_pb2, message_pb2
from wework.v1 import report_pb2 as pb
from wework.v1 import report_pb2_grpc as pb_grpc

METHOD_PERMISSIONS: dict[str, str | None] = {
    "GetMessageStats": P.REPORTS_READ,
    "GetAccountHealth": P.REPORTS_READ,
    "GetBatchTaskReport": P.REPORTS_READ,
    "GetTemplateUsage": P.REPORTS_READ,
    "ExportMessageStats": P.REPORTS_READ,
}

_GRANULARITY = {pb.GRANULARITY_UNSPECIFIED: None, pb.GRANULARITY_HOURLY: "hourly", pb.GRANULARITY_DAILY: "daily"}
_GRANULARITY_OUT = {"hourly": pb.GRANULARITY_HOURLY, "daily": pb.GRANULARITY_DAILY}


def _enum_name(enum: Any, prefix: str, value: str) -> str:
    """A stored lower-case status as its proto enum value name ("online" ->
    "ACCOUNT_STATUS_ONLINE"): reports name statuses the way every other RPC answers them."""
    name = prefix + value.upper()
    return name if name in enum.DESCRIPTOR.values_by_name else prefix + "UNSPECIFIED"


def _account_status(value: str) -> str:
    return _enum_name(account_pb2.AccountStatus, "ACCOUNT_STATUS_", value)


def _duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=seconds))
    return out


def fill_bucket(out: pb.MessageStatsBucket, row: StatsRow) -> pb.MessageStatsBucket:
    """Sets `out` (e.g. a fresh `response.buckets.add()`) from `row`: field by field, because a
    30-day hourly answer has 720 buckets and building each from keyword messages costs more."""
    c, b = row.counts, row.bucket
    out.start_time.seconds = int(b.start.timestamp())  # bucket bounds are whole seconds
    out.end_time.seconds = int(b.end.timestamp())
    out.local_start = b.local_start
    out.total_count, out.success_count, out.failed_count = c.total, c.success, c.failed
    out.success_rate, out.avg_response_seconds = c.success_rate, c.avg_response_seconds
    return out


def bucket_to_pb(row: StatsRow) -> pb.MessageStatsBucket:
    return fill_bucket(pb.MessageStatsBucket(), row)


@dataclass(frozen=True)
class ProtoCodec:
    """Report -> response proto -> bytes, and bytes -> response proto."""

    to_pb: Callable[[Any], Any]
    message: type

    def encode(self, result: Any) -> bytes:
        return self.to_pb(result).SerializeToString()

    def decode(self, raw: bytes) -> Any:
        return self.message.FromString(raw)


def _stats_to_pb(s: MessageStats) -> pb.GetMessageStatsResponse:
    out = pb.GetMessageStatsResponse(time_zone=s.range.time_zone,
                                     granularity=_GRANULARITY_OUT[s.range.granularity.value])
    for row in s.rows:
        fill_bucket(out.buckets.add(), row)
    fill_bucket(out.total, s.total)
    return out


def _health_to_pb(h: AccountHealth) -> pb.GetAccountHealthResponse:
    return pb.GetAccountHealthResponse(
        status_counts=[pb.AccountStatusCount(status=_account_status(k), count=v)
                       for k, v in sorted(h.status_counts.items())],
        total_accounts=h.total_accounts, online_rate=h.online_rate, recoveries=h.recoveries,
        mean_time_to_recover=_duration(h.mean_time_to_recover_seconds), open_outages=h.open_outages,
        top_failing_accounts=[pb.AccountHealthEntry(
            account_id=e.account_id, account_name=e.account_name, status=_account_status(e.status),
            failed_messages=e.failed_messages,
            total_messages=e.total_messages, error_transitions=e.error_transitions, online_rate=e.online_rate)
            for e in h.top_failing_accounts])


def _batch_to_pb(b: BatchTaskReport) -> pb.GetBatchTaskReportResponse:
    c = b.message_counts
    return pb.GetBatchTaskReportResponse(
        task_id=b.task_id, task_name=b.task_name,
        status=_enum_name(message_pb2.BatchTaskStatus, "BATCH_TASK_STATUS_", b.status), total_count=b.total_count,
        sent_count=b.sent_count, success_count=b.success_count, failed_count=b.failed_count,
        messages=pb.BatchMessageCounts(total=sum(c.values()), **{k: c.get(k, 0) for k in (
            "pending", "sending", "sent", "delivered", "failed", "cancelled")}),
        start_time=to_timestamp(b.start_time), end_time=to_timestamp(b.end_time),
        duration=_duration(b.duration_seconds), throughput_per_minute=b.throughput_per_minute,
        failure_reasons=[pb.FailureReason(error_code=code, count=n, sample_error_message=msg)
                         for code, n, msg in b.failure_reasons])


def _templates_to_pb(rows: list[TemplateUsageRow]) -> pb.GetTemplateUsageResponse:
    return pb.GetTemplateUsageResponse(templates=[pb.TemplateUsage(
        template_id=t.template_id, template_name=t.template_name, message_count=t.message_count,
        success_count=t.success_count, failed_count=t.failed_count, lifetime_usage_count=t.lifetime_usage_count,
        last_used_time=to_timestamp(t.last_used_time)) for t in rows])


STATS = ProtoCodec(_stats_to_pb, pb.GetMessageStatsResponse)
HEALTH = ProtoCodec(_health_to_pb, pb.GetAccountHealthResponse)
BATCH = ProtoCodec(_batch_to_pb, pb.GetBatchTaskReportResponse)
TEMPLATES = ProtoCodec(_templates_to_pb, pb.GetTemplateUsageResponse)


def _query(request: Any) -> StatsQuery:
    granularity = _GRANULARITY.get(request.granularity, f"value {request.granularity}")
    return StatsQuery(start=from_timestamp(request, "start_time"), end=from_timestamp(request, "end_time"),
                      granularity=granularity, time_zone=request.time_zone, account_id=request.account_id)


class ReportServiceHandler(pb_grpc.ReportServiceServicer):
    def __init__(self, reports: ReportUseCases) -> None:
        self._reports = reports

    async def GetMessageStats(self, request, context):
        return await self._reports.message_stats(current_principal(), _query(request), STATS)

    async def GetAccountHealth(self, request, context):
        return await self._reports.account_health(
            current_principal(), from_timestamp(request, "start_time"), from_timestamp(request, "end_time"),
            request.top_n, HEALTH)

    async def GetBatchTaskReport(self, request, context):
        return await self._reports.batch_task_report(current_principal(), request.task_id, BATCH)

    async def GetTemplateUsage(self, request, context):
        return await self._reports.template_usage(
            current_principal(), from_timestamp(request, "start_time"), from_timestamp(request, "end_time"),
            request.page_size, TEMPLATES)

    async def ExportMessageStats(self, request, context):
        chunks = await self._reports.export_message_stats(current_principal(), _query(request), request.chunk_size)
        try:
            index, pending = 0, None
            # One chunk of look-ahead, so that the last response can say so.
            async for rows in chunks:
                if pending is not None:
                    yield pb.ExportMessageStatsResponse(buckets=pending, chunk_index=index)
                    index += 1
                pending = [bucket_to_pb(r) for r in rows]
            yield pb.ExportMessageStatsResponse(buckets=pending or [], chunk_index=index, last=True)
        finally:
            await chunks.aclose()


def registration(handler: ReportServiceHandler) -> ServiceRegistration:
    return ServiceRegistration(
        name="report",
        service_full_name="wework.v1.ReportService",
        servicer=handler,
        add_to_server=pb_grpc.add_ReportServiceServicer_to_server,
        method_permissions=METHOD_PERMISSIONS,
    )
