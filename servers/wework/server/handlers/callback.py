"""CallbackService handler: one servicer made of two halves, each thin over its use cases.

- callback_events.CallbackEventHandlers: IngestCallback, ListCallbackEvents, GetCallbackEvent,
  ReplayCallbacks (provider callbacks stored, processed and replayed).
- webhooks.WebhookHandlers: the tenant webhook endpoints and their deliveries.
"""

from __future__ import annotations

from typing import Any

from wework.server.handlers.callback_events import EVENT_METHOD_PERMISSIONS, CallbackEventHandlers
from wework.server.handlers.webhooks import WEBHOOK_METHOD_PERMISSIONS, WebhookHandlers
from wework.server.runtime.registry import ServiceRegistration
from wework.v1 import callback_pb2_grpc as pb_grpc

METHOD_PERMISSIONS: dict[str, str | None] = {**EVENT_METHOD_PERMISSIONS, **WEBHOOK_METHOD_PERMISSIONS}


class CallbackServiceHandler(CallbackEventHandlers, WebhookHandlers, pb_grpc.CallbackServiceServicer):
    def __init__(self, events: Any, webhooks: Any) -> None:
        self._events = events      # the callback-event use cases (callback_events.py)
        self._webhooks = webhooks  # the webhook use cases (webhooks.py)


def registration(handler: CallbackServiceHandler) -> ServiceRegistration:
    return ServiceRegistration(
        name="callback",
        service_full_name="wework.v1.CallbackService",
        servicer=handler,
        add_to_server=pb_grpc.add_CallbackServiceServicer_to_server,
        method_permissions=METHOD_PERMISSIONS,
    )
