"""The callback processor: works off callback_events (the inbox) on every callback shard.

Safe in any number of processes at once (wework-server with callback.run_processor_in_server,
and `wework-worker callbacks`). Per shard, in a loop:

1. One short transaction claims due `received` callbacks in arrival order (FOR UPDATE SKIP
   LOCKED) and marks them `processing` with this worker's id and a lease.
2. The batch is split by guid: each instance's callbacks are processed one after another in
   arrival order (QR -> scanned -> online), different instances concurrently.
3. Each callback's effect commits with its effect-ledger row; then a short transaction marks the
   callback (and enqueues its tenant webhook event).

A processor killed between 2 and 3 leaves `processing` rows whose lease expires; any processor
re-queues them, and the ledger turns the second processing into "applied before": one effect.
Wake-ups come over Redis pub/sub right after an ingest commits; idle processors poll too.
Old rows of callback_dedupe and of the effect ledgers are purged here in small batches.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from wework.persistence.database import Database
from wework.persistence.repositories.callbacks import EffectLedger, StoredCallback
from wework.server.application.callbacks import CALLBACK_DB, CallbackProcessing
from wework.server.application.context import utcnow
from wework.server.observability import metrics
from wework.server.workers.dispatch import DispatchWaker
from wework.server.workers.shard_loops import Chore, ShardWorker

log = logging.getLogger(__name__)


def lane_key(c: StoredCallback) -> str:
    """Callbacks with the same key are processed one after another, in arrival order. An
    instance's status callbacks must keep their order (QR -> scanned -> online); incoming
    messages and conversation changes only per conversation, receipts only per message (their
    effects commute otherwise), so those run concurrently."""
    if c.notify_type in (12001, 12002, 12003, 12004, 12005):
        try:
            data = json.loads(c.raw_data).get("data") or {}
            sub = data.get("msg_id") if c.notify_type <= 12003 else data.get("conversation_id")
        except (ValueError, AttributeError):
            sub = None
        if isinstance(sub, str) and sub:
            return f"{c.guid}/{c.notify_type // 1000}/{sub}"
    return c.guid


class CallbackWaker(DispatchWaker):
    """Redis pub/sub on `<prefix>callback-wake` (same mechanics as the dispatch wake-ups)."""

    CHANNEL = "callback-wake"


@dataclass(frozen=True)
class ProcessorSettings:
    batch_size: int = 200
    max_in_flight: int = 64
    lease_seconds: float = 60.0
    idle_poll_seconds: float = 1.0
    dedupe_retention: timedelta = timedelta(days=7)
    ledger_retention: timedelta = timedelta(days=190)
    purge_interval_seconds: float = 600.0
    purge_batch: int = 1000


class CallbackProcessor(ShardWorker):
    def __init__(self, db: Database, processing: CallbackProcessing, settings: ProcessorSettings, *,
                 waker: CallbackWaker | None = None, worker_id: str | None = None,
                 clock: Callable[[], datetime] = utcnow, ledger_dbs: tuple[str, ...] = ("account", "message")) -> None:
        super().__init__(db, "callbacks", waker, worker_id)
        self._db, self._processing, self._cfg = db, processing, settings
        self._clock = clock
        self._ledger_dbs = tuple(d for d in ledger_dbs if d in db.databases)
        self._sem = asyncio.Semaphore(settings.max_in_flight)
        self._batching = processing.batching()
        self.processed = 0

    async def close(self) -> None:
        await self._stop_loops()

    async def _shard_loop(self, shard: str) -> None:
        chores = [Chore(min(self._cfg.lease_seconds / 4, 5.0), lambda: self.requeue_expired(shard)),
                  Chore(self._cfg.purge_interval_seconds, lambda: self.purge(shard), first_after_seconds=30.0)]
        await self._claim_rounds(shard, chores, idle_poll_seconds=self._cfg.idle_poll_seconds,
                                 what="callback processing", failures_wait_for_wake=False)

    async def requeue_expired(self, shard: str) -> int:
        now = self._clock()
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
            repo = uow.callbacks
            n = await repo.requeue_expired(now)
            depth = await repo.due_count(now)
        metrics.QUEUE_DEPTH.labels(queue="callbacks", shard=shard).set(depth)
        if n:
            log.warning("%d callback(s) on shard %s re-queued after their processor's lease expired", n, shard)
        return n

    async def purge(self, shard: str) -> None:
        """Old dedupe keys (callback DB) and old ledger rows (account and message DBs)."""
        now = self._clock()
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
            await uow.callbacks.purge_dedupe(now - self._cfg.dedupe_retention, self._cfg.purge_batch)
        for db_name in self._ledger_dbs:
            async with self._db.shard_unit_of_work(db_name, shard) as uow:
                ledger = (EffectLedger.of_account_db(uow.session) if db_name == "account"
                          else EffectLedger.of_message_db(uow.session))
                await ledger.purge(now - self._cfg.ledger_retention, self._cfg.purge_batch)

    async def run_once(self, shard: str) -> int:
        """Claims one batch on `shard` and processes it; the number claimed."""
        async with self._db.shard_unit_of_work(CALLBACK_DB, shard) as uow:
            claimed = await uow.callbacks.claim(
                self.worker_id, self._clock(), self._cfg.batch_size, timedelta(seconds=self._cfg.lease_seconds))
        if not claimed:
            return 0
        lanes: dict[str, list[StoredCallback]] = {}
        for c in claimed:  # claim order is arrival order
            lanes.setdefault(lane_key(c), []).append(c)
        # The callbacks' marks (and tenant events) commit together after the claim: one
        # transaction instead of one per callback.
        self._batching.open(shard)
        try:
            await asyncio.gather(*(self._lane(shard, lane) for lane in lanes.values()))
        finally:
            await self._batching.flush(shard, self.worker_id)
        return len(claimed)

    async def _lane(self, shard: str, lane: list[StoredCallback]) -> None:
        for c in lane:
            async with self._sem:
                try:
                    await self._processing.process(shard, c, self.worker_id)
                    self.processed += 1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Even recording the failure failed (database down): the lease re-queues it.
                    log.exception("callback %s could not be processed; its lease will re-queue it", c.id)
