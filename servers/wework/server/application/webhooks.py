"""Tenant webhooks: endpoint use cases (CallbackService webhook RPCs), the outbox that
enqueues deliveries, and the SSRF guard shared with the delivery worker (workers/webhooks.py).

- WebhookUseCases: one method per RPC. Tenant-scoped (a platform admin names the tenant with
  x-wework-tenant). Secrets are "whsec_" + base64, stored AES-GCM encrypted (ctx.cipher, bound
  to the endpoint id) and shown only by Create and Rotate.
- WebhookOutbox.publish(uow, tenant_id, event_type, data, source_event_id): the WebhookSink the
  callback processor calls in the callback-DB transaction that marks a callback processed. One
  delivery per enabled endpoint of the tenant whose filter matches, in that same transaction;
  the webhook-id derives from source_event_id and is unique per endpoint, so publishing the same
  event twice enqueues nothing the second time.
- TargetGuard: private, loopback, link-local, multicast and reserved targets are refused unless
  settings allow them, when an endpoint is created or changed AND at every delivery, after DNS
  resolution (the worker then connects to the checked address, so DNS cannot be swapped between
  the check and the connection).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from wework.domain.access import Principal
from wework.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    RequestIdReused,
    must_exist,
)
from wework.domain.errors import QuotaViolation as QV
from wework.domain.identity import check_etag, validate_request_id
from wework.domain.redaction import redact
from wework.domain.update_mask import check_update_mask
from wework.domain.webhooks import (
    DEFAULT_SCHEDULE,
    DeliveryStatus,
    EndpointStatus,
    Network,
    WebhookDelivery,
    WebhookEndpoint,
    blocked_address,
    event_id_for,
    literal_ip,
    new_secret,
    parse_networks,
    validate_description,
    validate_event_types,
    validate_url,
)
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.persistence.uow import UnitOfWork
from wework.server.application.context import AppContext, require_id

CALLBACK_DB = "callback"
MUTABLE_FIELDS = frozenset({"url", "description", "event_types", "enabled"})
MAX_PREVIOUS_SECRET_TTL = 7 * 86400


@dataclass(frozen=True)
class WebhookPolicy:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    timeout_seconds: float = 15.0
    disable_after: timedelta = timedelta(days=5)
    allow_private_targets: bool = False
    allowed_networks: tuple[Network, ...] = ()
    previous_secret_ttl_seconds: int = 86400
    max_endpoints_per_tenant: int = 20

    @classmethod
    def from_config(cls, cfg: Any) -> WebhookPolicy:
        return cls(schedule=tuple(cfg.retry_schedule_seconds), timeout_seconds=cfg.timeout_seconds,
                   disable_after=timedelta(seconds=cfg.disable_after_seconds),
                   allow_private_targets=cfg.allow_private_targets,
                   allowed_networks=tuple(parse_networks(cfg.allowed_target_cidrs)),
                   previous_secret_ttl_seconds=cfg.previous_secret_ttl_seconds,
                   max_endpoints_per_tenant=cfg.max_endpoints_per_tenant)


def secret_context(endpoint_id: str) -> str:
    return f"webhook_endpoints.secret:{endpoint_id}"


# ---- SSRF guard ---------------------------------------------------------------------------------

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# Named in every refusal of a target address: the settings that lift it.
ALLOW_TARGETS_SETTINGS = ("webhooks.allowed_target_cidrs (env WEWORK_WEBHOOKS__ALLOWED_TARGET_CIDRS) or "
                          "webhooks.allow_private_targets (env WEWORK_WEBHOOKS__ALLOW_PRIVATE_TARGETS)")


class TargetRefused(Exception):
    """The URL's host is, or resolves to, an address the platform does not post to."""


class TargetGuard:
    def __init__(self, policy: WebhookPolicy, resolver: Resolver = resolve_host) -> None:
        self._policy, self._resolve = policy, resolver

    def _blocked(self, address: str) -> str | None:
        return blocked_address(address, allow_private=self._policy.allow_private_targets,
                               allowed=self._policy.allowed_networks)

    async def addresses(self, url: str) -> list[str]:
        """The addresses `url` may be posted to (all of its host's, all allowed); TargetRefused
        when any is refused or none resolves."""
        parts = urlsplit(url)
        return await self.host_addresses(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))

    async def host_addresses(self, host: str, port: int) -> list[str]:
        """The addresses `host` may be connected to on `port` (the webhook worker's and the media
        fetcher's HTTP sessions resolve through this: http_client.GuardedResolver)."""
        literal = literal_ip(host)
        if literal is not None:
            found = [literal]
        else:
            try:
                found = await self._resolve(host, port)
            except (OSError, UnicodeError) as exc:
                raise TargetRefused(f"cannot resolve {host!r}: {exc}") from None
            if not found:
                raise TargetRefused(f"{host!r} resolves to no address")
        for address in found:
            why = self._blocked(address)
            if why is not None:
                # Never the resolved address: the answer must not map internal names for the caller.
                raise TargetRefused(f"{host!r} {'is' if literal else 'resolves to'} a {why} address; the platform "
                                    f"does not post to it unless the setting {ALLOW_TARGETS_SETTINGS} allows it")
        return found

    async def check_url(self, url: str, path: str) -> None:
        """At create/update: a refused address is a field violation. A host that does not resolve
        (yet) is accepted; every delivery checks again."""
        host = urlsplit(url).hostname or ""
        try:
            await self.addresses(url)
        except TargetRefused as exc:
            if literal_ip(host) is None and ("cannot resolve" in str(exc) or "no address" in str(exc)):
                return
            raise InvalidArgument(FieldViolation(path, str(exc), reason="WEBHOOK_TARGET_NOT_ALLOWED")) from None


# ---- endpoint use cases -------------------------------------------------------------------------


class WebhookUseCases:
    def __init__(self, ctx: AppContext, policy: WebhookPolicy, guard: TargetGuard,
                 wake: Callable[[str | None], Awaitable[None]] | None = None) -> None:
        self._ctx, self._policy, self._guard = ctx, policy, guard
        self._wake = wake

    # -- secrets --

    def _seal(self, ep: WebhookEndpoint) -> WebhookEndpoint:
        c, ctx = self._ctx.cipher, secret_context(ep.id)
        return replace(ep, secret=c.encrypt(ep.secret, context=ctx),
                       previous_secret=c.encrypt(ep.previous_secret, context=ctx))

    def reveal(self, ep: WebhookEndpoint) -> WebhookEndpoint:
        """The endpoint with plaintext secrets (for signing, or the Create/Rotate answer)."""
        c, ctx = self._ctx.cipher, secret_context(ep.id)
        return replace(ep, secret=c.decrypt(ep.secret, context=ctx),
                       previous_secret=c.decrypt(ep.previous_secret, context=ctx))

    @staticmethod
    def _public(ep: WebhookEndpoint) -> WebhookEndpoint:
        return replace(ep, secret=None, previous_secret=None)

    # -- RPCs --

    async def create_endpoint(self, principal: Principal, url: str, description: str, event_types: Sequence[str],
                              request_id: str) -> WebhookEndpoint:
        tenant_id = principal.require_tenant()
        validate_request_id(request_id)
        violations = (validate_url(url, "url") + validate_description(description, "description")
                      + validate_event_types(event_types, "event_types"))
        if violations:
            raise InvalidArgument(violations)
        await self._guard.check_url(url, "url")
        now = self._ctx.clock()
        ep = WebhookEndpoint(id=new_id(), tenant_id=tenant_id, url=url, description=description,
                             event_types=list(dict.fromkeys(event_types)), created_at=now, updated_at=now,
                             secret=new_secret())
        async with self._ctx.db.unit_of_work(CALLBACK_DB, tenant_id) as uow:
            repo = uow.webhook_endpoints
            if request_id:
                done = await repo.get_by_request(tenant_id, request_id)
                if done is not None:
                    if (done.url, done.description, done.event_types) != (ep.url, ep.description, ep.event_types):
                        raise RequestIdReused(request_id, f"webhookEndpoints/{done.id}")
                    return self.reveal(done)
            if await repo.count(tenant_id) >= self._policy.max_endpoints_per_tenant:
                raise QuotaExceeded("too many webhook endpoints", [QV(
                    f"tenants/{tenant_id}", f"at most {self._policy.max_endpoints_per_tenant} webhook endpoints "
                    "(the setting webhooks.max_endpoints_per_tenant, env WEWORK_WEBHOOKS__MAX_ENDPOINTS_PER_TENANT)")])
            await repo.add(self._seal(ep), request_id)
        return ep

    async def _get(self, principal: Principal, endpoint_id: str, path: str = "id") -> WebhookEndpoint:
        tenant_id = principal.require_tenant()
        require_id(endpoint_id, path)
        async with self._ctx.db.unit_of_work(CALLBACK_DB, tenant_id, read_only=True) as uow:
            found = await uow.webhook_endpoints.get(tenant_id, endpoint_id)
        return must_exist(found, "webhook endpoint", endpoint_id)

    async def get_endpoint(self, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
        return self._public(await self._get(principal, endpoint_id))

    async def list_endpoints(self, principal: Principal, page_size: int,
                             page_token: str) -> tuple[list[WebhookEndpoint], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        after = self._ctx.page_tokens.after_id(page_token, "webhook_endpoints", tenant_id)
        async with self._ctx.db.unit_of_work(CALLBACK_DB, tenant_id, read_only=True) as uow:
            rows = await uow.webhook_endpoints.list_page(tenant_id, after, limit + 1)
        page, token = self._ctx.page_tokens.id_page(rows, limit, "webhook_endpoints", tenant_id)
        return [self._public(e) for e in page], token

    async def update_endpoint(self, principal: Principal, changes: WebhookEndpoint, enabled: bool,
                              paths: Sequence[str], given_etag: str) -> WebhookEndpoint:
        tenant_id = principal.require_tenant()
        require_id(changes.id, "webhook_endpoint.id")
        check_update_mask(paths, MUTABLE_FIELDS)
        violations: list[FieldViolation] = []
        if "url" in paths:
            violations += validate_url(changes.url, "webhook_endpoint.url")
        if "description" in paths:
            violations += validate_description(changes.description, "webhook_endpoint.description")
        if "event_types" in paths:
            violations += validate_event_types(changes.event_types, "webhook_endpoint.event_types")
        if violations:
            raise InvalidArgument(violations)
        if "url" in paths:
            await self._guard.check_url(changes.url, "webhook_endpoint.url")
        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work(CALLBACK_DB, tenant_id) as uow:
            repo = uow.webhook_endpoints
            current = must_exist(await repo.get(tenant_id, changes.id, for_update=True),
                                 "webhook endpoint", changes.id)
            check_etag(given_etag, current.version, f"webhookEndpoints/{current.id}")
            updated = replace(current, updated_at=now)
            if "url" in paths:
                updated.url = changes.url
            if "description" in paths:
                updated.description = changes.description
            if "event_types" in paths:
                updated.event_types = list(dict.fromkeys(changes.event_types))
            if "enabled" in paths:
                if enabled and not current.enabled:
                    # Re-enabled: a fresh start, the failing run forgotten.
                    updated.status, updated.disabled_reason = EndpointStatus.ENABLED, None
                    updated.disabled_time, updated.failing_since = None, None
                elif not enabled and current.status is EndpointStatus.ENABLED:
                    updated.status, updated.disabled_reason, updated.disabled_time = EndpointStatus.DISABLED, None, now
            saved = await repo.save(updated)
            if not saved.enabled:
                await uow.webhook_deliveries.fail_pending_of(saved.id, now)
        return self._public(saved)

    async def delete_endpoint(self, principal: Principal, endpoint_id: str) -> None:
        tenant_id = principal.require_tenant()
        require_id(endpoint_id, "id")
        async with self._ctx.db.unit_of_work(CALLBACK_DB, tenant_id) as uow:
            if not await uow.webhook_endpoints.delete(tenant_id, endpoint_id):
                raise NotFound("webhook endpoint", endpoint_id)

    async def rotate_secret(self, principal: Principal, endpoint_id: str, ttl_seconds: int) -> WebhookEndpoint:
        tenant_id = principal.require_tenant()
        require_id(endpoint_id, "id")
        if ttl_seconds < 0 or ttl_seconds > MAX_PREVIOUS_SECRET_TTL:
            raise InvalidArgument(FieldViolation(
                "previous_secret_ttl_seconds", f"must be 0-{MAX_PREVIOUS_SECRET_TTL} (0: the default)"))
        ttl = ttl_seconds or self._policy.previous_secret_ttl_seconds
        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work(CALLBACK_DB, tenant_id) as uow:
            repo = uow.webhook_endpoints
            current = must_exist(await repo.get(tenant_id, endpoint_id, for_update=True),
                                 "webhook endpoint", endpoint_id)
            plain = self.reveal(current)
            rotated = replace(plain, previous_secret=plain.secret, previous_secret_expires=now + timedelta(seconds=ttl),
                              secret=new_secret(), updated_at=now)
            saved = await repo.save(self._seal(rotated))
        return replace(saved, secret=rotated.secret, previous_secret=None)

    async def list_deliveries(self, principal: Principal, endpoint_id: str, status: DeliveryStatus | None,
                              page_size: int, page_token: str) -> tuple[list[WebhookDelivery], str]:
        tenant_id = principal.require_tenant()
        require_id(endpoint_id, "webhook_endpoint_id")
        limit = normalize_page_size(page_size)
        before = self._ctx.page_tokens.decode(page_token, "webhook_deliveries", tenant_id, {"before": str})["before"] if page_token else None
        async with self._ctx.db.unit_of_work(CALLBACK_DB, tenant_id, read_only=True) as uow:
            if await uow.webhook_endpoints.get(tenant_id, endpoint_id) is None:
                raise NotFound("webhook endpoint", endpoint_id)
            rows = await uow.webhook_deliveries.list_page(tenant_id, endpoint_id, status, before,
                                                                          limit + 1)
        page = rows[:limit]
        token = self._ctx.page_tokens.encode({"before": page[-1].id}, "webhook_deliveries", tenant_id) if len(rows) > limit else ""
        return page, token

    async def redeliver(self, principal: Principal, delivery_id: str) -> WebhookDelivery:
        tenant_id = principal.require_tenant()
        require_id(delivery_id, "id")
        now = self._ctx.clock()
        async with self._ctx.db.unit_of_work(CALLBACK_DB, tenant_id) as uow:
            deliveries = uow.webhook_deliveries
            d = must_exist(await deliveries.get(tenant_id, delivery_id, for_update=True),
                           "webhook delivery", delivery_id)
            ep = await uow.webhook_endpoints.get(tenant_id, d.endpoint_id)
            if ep is None or not ep.enabled:
                raise FailedPrecondition(
                    "the delivery's endpoint is deleted or disabled; re-enable it first (UpdateWebhookEndpoint)")
            await deliveries.redeliver(tenant_id, delivery_id, now)
            if self._wake is not None:
                uow.after_commit(lambda: self._wake(uow.shard))
        return replace(d, status=DeliveryStatus.PENDING, next_attempt_time=now)


# ---- outbox -------------------------------------------------------------------------------------


class WebhookOutbox:
    """The WebhookSink of the callback processor (application/callbacks.py)."""

    def __init__(self, ctx: AppContext, policy: WebhookPolicy,
                 wake: Callable[[str | None], Awaitable[None]] | None = None) -> None:
        self._ctx, self._policy, self._wake = ctx, policy, wake

    async def publish(self, uow: UnitOfWork | None, tenant_id: str, event_type: str, data: dict[str, Any],
                      source_event_id: str | None) -> int:
        """Enqueues the event for every matching enabled endpoint of the tenant, in `uow` (a
        callback-DB unit of work on the tenant's shard) or in a transaction of its own. The number
        of deliveries added (0 for a repeated source event)."""
        if (uow is None or uow.db != CALLBACK_DB or uow.shard is None
                or uow.shard != self._ctx.db.shard_for(tenant_id)):
            async with self._ctx.db.unit_of_work(CALLBACK_DB, tenant_id) as own:
                return await self._publish(own, tenant_id, event_type, data, source_event_id)
        return await self._publish(uow, tenant_id, event_type, data, source_event_id)

    async def _publish(self, uow: UnitOfWork, tenant_id: str, event_type: str, data: dict[str, Any],
                       source_event_id: str | None) -> int:
        endpoints = [e for e in await uow.webhook_endpoints.enabled_for_tenant(tenant_id)
                     if e.wants(event_type)]
        if not endpoints:
            return 0
        now = self._ctx.clock()
        event_id = event_id_for(tenant_id, event_type, source_event_id)
        # Standard Webhooks payload shape: type, timestamp, data. Fixed bytes: every attempt and
        # every signature covers exactly this body.
        # Provider data copied into an event (an incoming message's fields) never carries credentials.
        body = json.dumps({"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"),
                           "data": redact(data)},
                          separators=(",", ":"), ensure_ascii=False, default=str)
        due = now + timedelta(seconds=self._policy.schedule[0] if self._policy.schedule else 0)
        rows = [{"id": new_id(), "tenant_id": tenant_id, "endpoint_id": e.id, "event_id": event_id,
                 "event_type": event_type, "payload": body, "status": DeliveryStatus.PENDING.value,
                 "attempt_count": 0, "next_attempt_at": due, "created_at": now, "updated_at": now}
                for e in endpoints]
        added = await uow.webhook_deliveries.enqueue(rows)
        if added and self._wake is not None:
            shard = uow.shard
            uow.after_commit(lambda: self._wake(shard))
        return added
