"""The webhook delivery worker: posts due deliveries to tenants' endpoints, signed.

Safe in any number of processes (wework-server with webhooks.run_worker_in_server, and
`wework-worker webhooks`). Per callback shard:

1. A short transaction claims due pending deliveries (FOR UPDATE SKIP LOCKED) with this
   worker's id and a lease (repositories/webhooks.py). A killed worker's claims expire and are
   claimed again: at least once, with the same webhook-id, which receivers dedupe on.
2. Outside any transaction each delivery is checked (endpoint still enabled; its host resolved
   and every address allowed by the SSRF guard) and posted to the checked address (the session
   resolves through the guard: http_client.GuardedHttp), with the Standard Webhooks headers and
   one signature per valid secret.
3. A short transaction records the attempt and the outcome: succeeded (a 2xx within the
   timeout), pending again at the next time of the retry schedule, or failed when the schedule
   is used up. An endpoint whose failures have lasted webhooks.disable_after_seconds is
   disabled (DISABLED_FAILING, with the reason), and its waiting deliveries end failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from wework.domain.webhooks import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    next_attempt_delay,
    signature_header,
)
from wework.persistence.database import Database
from wework.server.application.context import utcnow
from wework.server.application.webhooks import TargetGuard, TargetRefused, WebhookPolicy
from wework.server.http_client import TRANSPORT_ERRORS, GuardedHttp, describe
from wework.server.observability import metrics
from wework.server.security.field_crypto import FieldCryptoError
from wework.server.workers.dispatch import DispatchWaker
from wework.server.workers.shard_loops import Chore, ShardWorker

log = logging.getLogger(__name__)
CALLBACK_DB = "callback"
USER_AGENT = "wework-webhooks/1"
# The attempt error recorded (and shown by ListWebhookDeliveries) for an endpoint whose secret
# the configured keys cannot open; it names the setting to fix.
UNREADABLE_SECRET = "the endpoint's signing secret cannot be decrypted with security.encryption_keys"


class WebhookWaker(DispatchWaker):
    """Redis pub/sub on `<prefix>webhook-wake`: a commit that enqueues deliveries wakes idle
    workers at once (they also poll every idle_poll_seconds)."""

    CHANNEL = "webhook-wake"


@dataclass(frozen=True)
class WorkerSettings:
    claim_batch_size: int = 100
    max_in_flight: int = 64
    claim_lease_seconds: float = 60.0
    idle_poll_seconds: float = 1.0
    retention: timedelta = timedelta(days=30)
    purge_every_seconds: float = 600.0
    purge_batch: int = 1000

    @classmethod
    def from_config(cls, cfg: Any) -> WorkerSettings:
        return cls(claim_batch_size=cfg.claim_batch_size, max_in_flight=cfg.max_in_flight,
                   claim_lease_seconds=cfg.claim_lease_seconds, idle_poll_seconds=cfg.idle_poll_seconds,
                   retention=timedelta(days=cfg.delivery_retention_days))


@dataclass
class WebhookStats:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0


class WebhookDeliveryWorker(ShardWorker):
    def __init__(self, db: Database, policy: WebhookPolicy, guard: TargetGuard,
                 reveal: Callable[[WebhookEndpoint], WebhookEndpoint], settings: WorkerSettings, *,
                 waker: WebhookWaker | None = None, worker_id: str | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(db, "webhooks", waker, worker_id)
        self._db, self._policy, self._reveal, self._cfg = db, policy, reveal, settings
        self._clock = clock
        self._sem = asyncio.Semaphore(settings.max_in_flight)
        # Connects only where the guard allows; no redirects (a 3xx is not a 2xx, and following
        # one would skip the guard); no proxies from the environment.
        self._http = GuardedHttp(guard, timeout_seconds=policy.timeout_seconds,
                                 max_connections=settings.max_in_flight)
        self.stats = WebhookStats()

    # -- lifecycle --

    async def close(self, grace_seconds: float = 10.0) -> None:
        """Lets each loop finish its round (posts in flight get recorded, no needless redelivery,
        no connection cancelled mid-query), then cancels what is still running."""
        await self._stop_loops(grace_seconds)
        await self._http.close()

    async def _shard_loop(self, shard: str) -> None:
        chores = [Chore(5.0, lambda: self._measure_depth(shard)),
                  Chore(self._cfg.purge_every_seconds, lambda: self.purge(shard))]
        await self._claim_rounds(shard, chores, idle_poll_seconds=self._cfg.idle_poll_seconds,
                                 what="webhook delivery loop", failures_wait_for_wake=True)

    async def _measure_depth(self, shard: str) -> None:
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard, read_only=True) as uow:
            depth = await uow.webhook_deliveries.due_count(self._clock())
        metrics.QUEUE_DEPTH.labels(queue="webhooks", shard=shard).set(depth)

    async def purge(self, shard: str) -> int:
        """Deletes finished deliveries past the retention, in bounded batches; the number deleted."""
        total = 0
        while not self._stopping.is_set():
            async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
                n = await uow.webhook_deliveries.purge(self._clock() - self._cfg.retention,
                                                                       self._cfg.purge_batch)
            total += n
            if n < self._cfg.purge_batch:
                break
        return total

    # -- one round --

    async def run_once(self, shard: str) -> int:
        """Claims one batch on `shard` and posts it; the number claimed."""
        now = self._clock()
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
            claimed = await uow.webhook_deliveries.claim(
                self.worker_id, now, self._cfg.claim_batch_size, timedelta(seconds=self._cfg.claim_lease_seconds))
        if not claimed:
            return 0
        self.stats.claimed += len(claimed)
        endpoints, sealed = await self._endpoints(shard, claimed)
        await asyncio.gather(*(self._one(shard, d, endpoints.get(d.endpoint_id), sealed.get(d.endpoint_id))
                               for d in claimed))
        return len(claimed)

    async def _endpoints(self, shard: str, claimed: list[WebhookDelivery]
                         ) -> tuple[dict[str, WebhookEndpoint], dict[str, WebhookEndpoint]]:
        """The claimed deliveries' endpoints with their secrets revealed, and apart from them the
        endpoints whose secret the configured keys cannot open (security.encryption_keys lost a
        key, or a row was tampered with): one such endpoint must not stop the shard's deliveries."""
        out: dict[str, WebhookEndpoint] = {}
        sealed: dict[str, WebhookEndpoint] = {}
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard, read_only=True) as uow:
            repo = uow.webhook_endpoints
            for tenant_id, endpoint_id in {(d.tenant_id, d.endpoint_id) for d in claimed}:
                ep = await repo.get(tenant_id, endpoint_id)
                if ep is None:
                    continue
                try:
                    out[endpoint_id] = self._reveal(ep)
                except FieldCryptoError:
                    sealed[endpoint_id] = ep
                    log.error("webhook endpoint %s of tenant %s: its signing secret does not decrypt with "
                              "security.encryption_keys; its deliveries are retried on the schedule",
                              endpoint_id, tenant_id)
        return out, sealed

    async def _one(self, shard: str, d: WebhookDelivery, ep: WebhookEndpoint | None,
                   sealed: WebhookEndpoint | None = None) -> None:
        async with self._sem:
            try:
                if sealed is not None:  # a failed attempt on the retry schedule, nothing posted
                    await self._record(shard, d, sealed, WebhookAttempt(
                        attempt_number=d.attempt_count + 1, attempt_time=self._clock(), response_status=0,
                        error=UNREADABLE_SECRET, duration_ms=0))
                    return
                if ep is None or not ep.enabled:
                    await self._skip(shard, d)
                    return
                attempt = await self._post(d, ep)
                await self._record(shard, d, ep, attempt)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery %s failed; its lease will bring it back", d.id)

    async def _skip(self, shard: str, d: WebhookDelivery) -> None:
        """The endpoint was disabled or deleted after the event was queued: failed, no attempt."""
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
            await uow.webhook_deliveries.finish(
                d, self.worker_id, status=DeliveryStatus.FAILED, attempt_count=d.attempt_count,
                next_attempt_at=None, now=self._clock())
        self.stats.skipped += 1
        metrics.WEBHOOK_DELIVERIES.labels(outcome="skipped").inc()

    async def _post(self, d: WebhookDelivery, ep: WebhookEndpoint) -> WebhookAttempt:
        started_at, t0 = self._clock(), time.monotonic()
        status, error, result = 0, "", "connection_error"
        try:
            body = _body(d)
            ts = int(time.time())
            headers = {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": d.event_id,
                       "webhook-timestamp": str(ts),
                       "webhook-signature": signature_header(ep.signing_secrets(self._clock()), d.event_id, ts, body)}
            # The answer's body is not read: only its status counts, and an endpoint cannot make
            # the worker hold a large body in memory.
            async with asyncio.timeout(self._policy.timeout_seconds), \
                    self._http.request("POST", ep.url, data=body, headers=headers) as response:
                status = response.status
            if 200 <= status < 300:
                result = "success"
            else:
                result, error = "http_error", f"HTTP {status}"
        except TargetRefused as exc:
            result, error = "refused", str(exc)
        except TimeoutError:
            result, error = "timeout", f"no answer within {self._policy.timeout_seconds:g} s"
        except TRANSPORT_ERRORS as exc:
            error = describe(exc)
        elapsed = time.monotonic() - t0
        metrics.WEBHOOK_ATTEMPT_DURATION.labels(result=result).observe(elapsed)
        return WebhookAttempt(attempt_number=d.attempt_count + 1, attempt_time=started_at, response_status=status,
                              error="" if result == "success" else error, duration_ms=int(elapsed * 1000))

    async def _record(self, shard: str, d: WebhookDelivery, ep: WebhookEndpoint, a: WebhookAttempt) -> None:
        now = self._clock()
        ok = not a.error
        attempts = a.attempt_number
        delay = None if ok else next_attempt_delay(self._policy.schedule, attempts)
        if ok:
            status, next_at, outcome = DeliveryStatus.SUCCEEDED, None, "delivered"
        elif delay is not None:
            status, next_at, outcome = DeliveryStatus.PENDING, now + timedelta(seconds=delay), "retrying"
        else:
            status, next_at, outcome = DeliveryStatus.FAILED, None, "failed"
        disabled = False
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
            deliveries, endpoints = uow.webhook_deliveries, uow.webhook_endpoints
            await deliveries.add_attempt(d.id, a)
            if ok:
                await endpoints.record_success(ep.id, now)
            else:
                disabled = await endpoints.record_failure(ep.id, now, self._policy.disable_after)
            if disabled and status is DeliveryStatus.PENDING:
                status, next_at, outcome = DeliveryStatus.FAILED, None, "failed"
            await deliveries.finish(d, self.worker_id, status=status, attempt_count=attempts, next_attempt_at=next_at,
                                    now=now)
            if disabled:
                await deliveries.fail_pending_of(ep.id, now)
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        metrics.WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()
        if disabled:
            metrics.WEBHOOK_ENDPOINTS_DISABLED.inc()
            log.warning("webhook endpoint %s of tenant %s disabled after failing for %s", ep.id, ep.tenant_id,
                        self._policy.disable_after)


def _body(d: WebhookDelivery) -> bytes:
    return d.body.encode()  # the stored JSON text, byte for byte

