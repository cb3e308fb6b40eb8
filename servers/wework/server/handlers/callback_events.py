"""CallbackService, provider-callback half: IngestCallback, ListCallbackEvents,
GetCallbackEvent, ReplayCallbacks. Mixed into handlers/callback.CallbackServiceHandler,
which sets `self._events` (a CallbackEvents bundle: the inbox and the operators' use cases)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from wework.domain.access import Permissions as P
from wework.persistence.repositories.callbacks import StoredCallback
from wework.server.application.callbacks import CallbackEventUseCases, CallbackInbox, ListQuery
from wework.server.handlers.convert import from_timestamp, peer_ip, to_struct, to_timestamp
from wework.server.runtime.context import current_principal
from wework.v1 import callback_pb2 as pb

log = logging.getLogger(__name__)

EVENT_METHOD_PERMISSIONS: dict[str, str | None] = {
    # Public at the gRPC layer: the provider authenticates with its signature (the inbox checks it).
    "IngestCallback": None,
    "ListCallbackEvents": P.CALLBACKS_READ,
    "GetCallbackEvent": P.CALLBACKS_READ,
    "ReplayCallbacks": P.CALLBACKS_REPLAY,
}

_STATUS = {"received": pb.CALLBACK_EVENT_STATUS_RECEIVED, "processing": pb.CALLBACK_EVENT_STATUS_PROCESSING,
           "processed": pb.CALLBACK_EVENT_STATUS_PROCESSED, "failed": pb.CALLBACK_EVENT_STATUS_FAILED,
           "ignored": pb.CALLBACK_EVENT_STATUS_IGNORED}
_STATUS_IN = {v: k for k, v in _STATUS.items()}


@dataclass
class CallbackEvents:
    inbox: CallbackInbox
    use_cases: CallbackEventUseCases


def callback_event_to_pb(c: StoredCallback) -> pb.CallbackEvent:
    try:
        parsed = to_struct(c.parsed_data) if isinstance(c.parsed_data, dict) else None
    except (ValueError, TypeError):
        parsed = None
    return pb.CallbackEvent(
        id=c.id, tenant_id=c.tenant_id or "", guid=c.guid, notify_type=c.notify_type, event_type=c.event_type,
        raw_data=c.raw_data, parsed_data=parsed, status=_STATUS.get(c.status, pb.CALLBACK_EVENT_STATUS_UNSPECIFIED),
        error_message=c.error_message or "", retry_count=c.retry_count, received_time=to_timestamp(c.received_time),
        process_time=to_timestamp(c.process_time), source_ip=c.source_ip or "", user_agent=c.user_agent or "",
        dedupe_key=c.dedupe_key or "")


def _query(f: pb.CallbackEventFilter) -> ListQuery:
    return ListQuery(tenant_id=f.tenant_id, guid=f.guid, notify_type=f.notify_type, event_type=f.event_type,
                     status=_STATUS_IN.get(f.status) if f.status else None,
                     received_after=from_timestamp(f, "received_after"),
                     received_before=from_timestamp(f, "received_before"))


class CallbackEventHandlers:
    _events: Any

    async def IngestCallback(self, request, context):
        md = dict(context.invocation_metadata() or ())
        result = await self._events.inbox.ingest(
            request.body, timestamp=str(request.timestamp) if request.timestamp else "", signature=request.signature,
            source="grpc", source_ip=peer_ip(context.peer() or ""), user_agent=md.get("user-agent"),
            require_signature=True)
        return pb.IngestCallbackResponse(callback_event_id=result.callback_event_id, duplicate=result.duplicate)

    async def ListCallbackEvents(self, request, context):
        page, token = await self._events.use_cases.list_callback_events(
            current_principal(), _query(request.filter), request.page_size, request.page_token)
        return pb.ListCallbackEventsResponse(callback_events=[callback_event_to_pb(c) for c in page],
                                             next_page_token=token)

    async def GetCallbackEvent(self, request, context):
        return callback_event_to_pb(await self._events.use_cases.get_callback_event(
            current_principal(), request.id, request.tenant_id))

    async def ReplayCallbacks(self, request, context):
        ids = await self._events.use_cases.replay_callbacks(
            current_principal(), list(request.ids), _query(request.filter) if request.HasField("filter") else None,
            request.tenant_id, request.max_events)
        return pb.ReplayCallbacksResponse(replayed_count=len(ids), ids=ids)
