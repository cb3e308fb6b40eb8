"""CallbackService, tenant-webhook half: endpoints, secrets, deliveries. Mixed into
handlers/callback.CallbackServiceHandler, which sets `self._webhooks` (WebhookUseCases)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wework.domain.access import Permissions as P
from wework.domain.webhooks import DeliveryStatus, EndpointStatus, WebhookDelivery, WebhookEndpoint
from wework.server.handlers.convert import to_struct, to_timestamp
from wework.server.runtime.context import current_principal
from wework.v1 import callback_pb2 as pb

if TYPE_CHECKING:
    from wework.server.application.webhooks import WebhookUseCases

WEBHOOK_METHOD_PERMISSIONS: dict[str, str | None] = {
    "CreateWebhookEndpoint": P.WEBHOOKS_WRITE,
    "GetWebhookEndpoint": P.WEBHOOKS_READ,
    "ListWebhookEndpoints": P.WEBHOOKS_READ,
    "UpdateWebhookEndpoint": P.WEBHOOKS_WRITE,
    "DeleteWebhookEndpoint": P.WEBHOOKS_WRITE,
    "RotateWebhookSecret": P.WEBHOOKS_WRITE,
    "ListWebhookDeliveries": P.WEBHOOKS_READ,
    "RedeliverWebhook": P.WEBHOOKS_WRITE,
}

_ENDPOINT_STATUS = {s: getattr(pb, f"WEBHOOK_ENDPOINT_STATUS_{s.name}") for s in EndpointStatus}
_DELIVERY_STATUS = {s: getattr(pb, f"WEBHOOK_DELIVERY_STATUS_{s.name}") for s in DeliveryStatus}
_DELIVERY_STATUS_IN = {v: k for k, v in _DELIVERY_STATUS.items()}


def endpoint_to_pb(e: WebhookEndpoint) -> pb.WebhookEndpoint:
    return pb.WebhookEndpoint(
        id=e.id, tenant_id=e.tenant_id, url=e.url, description=e.description, event_types=e.event_types,
        enabled=e.enabled, status=_ENDPOINT_STATUS[e.status], disabled_reason=e.disabled_reason or "",
        disabled_time=to_timestamp(e.disabled_time), failing_since=to_timestamp(e.failing_since),
        signing_secret=e.secret or "", create_time=to_timestamp(e.created_at),
        update_time=to_timestamp(e.updated_at), etag=e.etag)


def delivery_to_pb(d: WebhookDelivery) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
        id=d.id, webhook_endpoint_id=d.endpoint_id, event_id=d.event_id, event_type=d.event_type,
        payload=to_struct(d.payload), status=_DELIVERY_STATUS[d.status], attempt_count=d.attempt_count,
        next_attempt_time=to_timestamp(d.next_attempt_time), create_time=to_timestamp(d.created_at),
        attempts=[pb.WebhookAttempt(attempt_number=a.attempt_number, attempt_time=to_timestamp(a.attempt_time),
                                    response_status=a.response_status, error=a.error, duration_ms=a.duration_ms)
                  for a in d.attempts])


class WebhookHandlers:
    _webhooks: WebhookUseCases

    async def CreateWebhookEndpoint(self, request, context):
        return endpoint_to_pb(await self._webhooks.create_endpoint(
            current_principal(), request.url, request.description, list(request.event_types), request.request_id))

    async def GetWebhookEndpoint(self, request, context):
        return endpoint_to_pb(await self._webhooks.get_endpoint(current_principal(), request.id))

    async def ListWebhookEndpoints(self, request, context):
        page, token = await self._webhooks.list_endpoints(current_principal(), request.page_size, request.page_token)
        return pb.ListWebhookEndpointsResponse(webhook_endpoints=[endpoint_to_pb(e) for e in page],
                                               next_page_token=token)

    async def UpdateWebhookEndpoint(self, request, context):
        m = request.webhook_endpoint
        changes = WebhookEndpoint(id=m.id, tenant_id="", url=m.url, description=m.description,
                                  event_types=list(m.event_types))
        return endpoint_to_pb(await self._webhooks.update_endpoint(
            current_principal(), changes, m.enabled, list(request.update_mask.paths), m.etag))

    async def DeleteWebhookEndpoint(self, request, context):
        await self._webhooks.delete_endpoint(current_principal(), request.id)
        return pb.DeleteWebhookEndpointResponse()

    async def RotateWebhookSecret(self, request, context):
        return endpoint_to_pb(await self._webhooks.rotate_secret(
            current_principal(), request.id, request.previous_secret_ttl_seconds))

    async def ListWebhookDeliveries(self, request, context):
        page, token = await self._webhooks.list_deliveries(
            current_principal(), request.webhook_endpoint_id, _DELIVERY_STATUS_IN.get(request.status),
            request.page_size, request.page_token)
        return pb.ListWebhookDeliveriesResponse(webhook_deliveries=[delivery_to_pb(d) for d in page],
                                                next_page_token=token)

    async def RedeliverWebhook(self, request, context):
        return delivery_to_pb(await self._webhooks.redeliver(current_principal(), request.id))
