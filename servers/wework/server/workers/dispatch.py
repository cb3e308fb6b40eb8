"""The dispatcher: sends due messages from the messages table through the provider.

Safe in any number of processes at once (wework-server and `wework-worker dispatch`). Per shard:

1. One short transaction claims due messages (FOR UPDATE SKIP LOCKED, priority then age) and
   marks them `sending` with this worker's id and a lease (repositories/dispatch.py).
2. Outside any lock each message is checked and sent: a paused or cancelled batch puts it
   back; an account that is not online holds it (hold_reason, re-checked, failed after
   hold_timeout); pacing (per-account interval + jitter and ceilings, per-recipient 30/min and
   1000/h, the batch's rate and time window) defers it to the time it may go. The provider gets the
   message id as idempotency key.
3. The accepted sends of a claim are recorded together in one short transaction, for the
   messages this worker still owns (statistics in the same transaction); retries (exponential
   backoff), holds and failures are recorded one message at a time as they happen.

While a full batch is being sent, the loop already claims the next one and still records the
previous one (each in its own transaction): the database round trips overlap the sends instead
of adding to them. One claim ahead and one record behind at most.

A dispatcher that stops (close(): SIGTERM, a rolling update) lets the sends in flight finish
(up to stop_grace_seconds), records what it sent, and puts every message it claimed but did not
send back to pending at once, the claim ahead too: another dispatcher sends them now, not when
the lease expires. A worker killed between 1 and 3 leaves `sending` rows whose lease expires; any
dispatcher requeues them and the resend carries the same idempotency key, so the provider sends once.

Pacing state is shared by every dispatcher through Redis (workers/pacing.py); while Redis cannot
decide, sends are held, never sent unpaced (docs/pacing.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from wework.domain.accounts import AccountStatus
from wework.domain.dispatch import Backoff, PacingLimits, TimeWindow, should_retry
from wework.domain.errors import InvalidArgument, NotFound
from wework.domain.messages import Message
from wework.persistence.background import cancel_and_wait
from wework.persistence.database import Database
from wework.persistence.models import message as mm
from wework.persistence.resilience import RedisBreaker, listen
from wework.server.application.context import utcnow
from wework.server.observability import metrics
from wework.server.providers.base import Provider, ProviderError
from wework.server.workers.pacing import LocalPacing, Pacing, PacingUnavailable
from wework.server.workers.shard_loops import Chore, ShardWorker, wait_for_wake

log = logging.getLogger(__name__)
MESSAGE_DB = "message"


@dataclass(frozen=True)
class DispatchSettings:
    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    hold_recheck_seconds: float = 5.0
    hold_timeout_seconds: float = 3600.0
    claim_batch_size: int = 1000
    max_in_flight: int = 256
    claim_lease_seconds: float = 60.0
    idle_poll_seconds: float = 1.0
    account_min_interval_seconds: float = 1.0
    account_jitter_seconds: float = 0.5
    account_per_minute: int | None = None
    account_per_hour: int | None = None
    recipient_per_minute: int = 30
    recipient_per_hour: int = 1000
    # While the shared pacing (Redis) cannot decide, a send is held this long, then asked again.
    pacing_hold_seconds: float = 1.0
    # Sends whose pacing wait is at most this long wait in memory instead of going back.
    inline_wait_seconds: float = 0.25
    # On close, how long the sends in flight may take to finish before they are cut off.
    stop_grace_seconds: float = 5.0
    # wework_queue_depth{queue="messages"}: sampled this often per shard, reading at most
    # depth_examined pending rows (DispatchRepository.due_count), so it costs the same at any backlog.
    depth_sample_seconds: float = 15.0
    depth_examined: int = 50_000

    @classmethod
    def from_config(cls, cfg: Any) -> DispatchSettings:
        return cls(max_attempts=cfg.max_attempts,
                   backoff=Backoff(cfg.backoff_initial_seconds, 2.0, cfg.backoff_max_seconds, cfg.backoff_jitter),
                   hold_recheck_seconds=cfg.hold_recheck_seconds, hold_timeout_seconds=cfg.hold_timeout_seconds,
                   claim_batch_size=cfg.claim_batch_size, max_in_flight=cfg.max_in_flight,
                   claim_lease_seconds=cfg.claim_lease_seconds, idle_poll_seconds=cfg.idle_poll_seconds,
                   account_min_interval_seconds=cfg.account_min_interval_seconds,
                   account_jitter_seconds=cfg.account_jitter_seconds,
                   account_per_minute=cfg.account_per_minute, account_per_hour=cfg.account_per_hour,
                   recipient_per_minute=cfg.recipient_per_minute, recipient_per_hour=cfg.recipient_per_hour,
                   pacing_hold_seconds=cfg.pacing_hold_seconds)

    @property
    def pacing(self) -> PacingLimits:
        """The deployment's pacing defaults (tenants and accounts may override them)."""
        return PacingLimits(self.account_min_interval_seconds, self.account_jitter_seconds,
                            self.account_per_minute, self.account_per_hour,
                            self.recipient_per_minute, self.recipient_per_hour)


class AccountLookup:
    """What the dispatcher needs of the AccountGateway port (application/message_ports.py)."""

    async def account_for_send(self, tenant_id: str, account_id: str) -> tuple[AccountStatus, str | None]:
        raise NotImplementedError


# ---- wake-ups -----------------------------------------------------------------------------------


class DispatchWaker:
    """Redis pub/sub on `<prefix>dispatch-wake`: a commit that makes a message due wakes every
    idle dispatcher at once. Only a hint: dispatchers also poll every idle_poll_seconds."""

    # After a failed PUBLISH, skip publishing this long: the wake-up runs after every accepting
    # commit, and a Redis that times out must not add its timeout to each of them.
    PUBLISH_PAUSE_SECONDS = 1.0
    # The channel after the key prefix; the other queues' wakers (callbacks, webhooks) name theirs.
    CHANNEL = "dispatch-wake"

    def __init__(self, redis: Any, key_prefix: str) -> None:
        self._redis = redis
        self.channel = f"{key_prefix}{self.CHANNEL}"
        self._events: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None
        self._publish_breaker = RedisBreaker("dispatch wake-ups", fallback="dispatchers poll",
                                             pause_seconds=self.PUBLISH_PAUSE_SECONDS, logger=log)

    async def wake(self, shard: str | None = None) -> None:
        self._local()
        if self._redis is None or self._publish_breaker.is_open:
            return
        try:
            await self._redis.publish(self.channel, (shard or "").encode())
        except Exception as exc:  # noqa: BLE001 - the poll covers a lost wake-up
            self._publish_breaker.failed(exc)
        else:
            self._publish_breaker.succeeded()

    def _local(self) -> None:
        for e in self._events:
            e.set()

    def event(self) -> asyncio.Event:
        e = asyncio.Event()
        self._events.add(e)
        return e

    async def start(self) -> None:
        if self._redis is not None and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="dispatch-wake")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        # Every message, the subscribe confirmation included: after a reconnect a wake-up may
        # have been missed, so the dispatchers look once more.
        await listen(self._redis, lambda _message: self._local(), what="dispatch wake-ups",
                     channels=[self.channel])


# ---- batch info ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchInfo:
    status: str
    window: TimeWindow | None
    min_interval: float
    jitter: float


class BatchInfoCache:
    """Batch status and strategy, re-read at most every `ttl` seconds (Pause takes effect in-flight
    within that time; pending messages are excluded by the claim query at once)."""

    def __init__(self, db: Database, ttl: float = 0.5) -> None:
        self._db, self._ttl = db, ttl
        self._cache: dict[str, tuple[float, BatchInfo | None]] = {}

    async def get(self, tenant_id: str, batch_id: str) -> BatchInfo | None:
        hit = self._cache.get(batch_id)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        t = mm.BatchSendTask
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            row = (await uow.session.execute(
                sa.select(t.status, t.send_strategy).where(t.id == batch_id, t.tenant_id == tenant_id))).first()
        info = None
        if row is not None:
            s = row.send_strategy or {}
            try:
                window = TimeWindow.parse(s.get("time_zone", "UTC"), s.get("window_start", ""),
                                          s.get("window_end", ""))
            except InvalidArgument:
                window = None
            rate = float(s.get("rate_per_minute") or 0)
            info = BatchInfo(row.status, window, 60.0 / rate if rate > 0 else 0.0,
                             float(s.get("jitter_seconds") or 0))
        self._cache[batch_id] = (time.monotonic(), info)
        return info


# ---- the dispatcher -----------------------------------------------------------------------------


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    held: int = 0
    requeued: int = 0
    resolved_branches: int = 0  # batch-write XA branches a crash left prepared, committed or rolled back


class Dispatcher(ShardWorker):
    def __init__(self, db: Database, provider: Provider, accounts: AccountLookup, settings: DispatchSettings,
                 *, waker: DispatchWaker | None = None, worker_id: str | None = None,
                 clock: Callable[[], datetime] = utcnow, rnd: random.Random | None = None,
                 finish_batch: Callable[[str, str], Awaitable[Any]] | None = None,
                 pacing: Pacing | None = None,
                 pacing_overrides: Callable[[str, str], Awaitable[list[Mapping[str, Any] | None]]] | None = None,
                 resolve_content: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
                 ) -> None:
        super().__init__(db, "dispatch", waker, worker_id)
        self._db, self._provider, self._accounts, self._cfg = db, provider, accounts, settings
        self._clock, self._rnd = clock, rnd or random.Random()
        # Shared through Redis by the composition root (pacing.RedisPacing); this process alone otherwise.
        self._pacing: Pacing = pacing or LocalPacing(self._rnd)
        # The tenant's and the account's configs (in that order), whose "pacing" overrides the defaults.
        self._pacing_overrides = pacing_overrides
        self._batches = BatchInfoCache(db)
        self._sem = asyncio.Semaphore(settings.max_in_flight)
        self._lanes: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.stats = DispatchStats()
        self._pacing_warned_at = float("-inf")
        # Ends running batch tasks whose messages are all final (application/batches.py).
        self._finish_batch = finish_batch
        # Turns a media_id of ours into a time-limited URL for the provider (application/media.py).
        self._resolve_content = resolve_content

    # -- lifecycle --

    async def close(self) -> None:
        """Stops sending: the sends in flight finish (up to stop_grace_seconds), what was sent
        is recorded, and every claimed message not sent goes back to pending."""
        await self._stop_loops(grace_seconds=self._cfg.stop_grace_seconds)

    async def _shard_loop(self, shard: str) -> None:
        event = self._wake_event()

        async def sweep() -> None:
            self.stats.requeued += await self.requeue_expired(shard)
            self.stats.resolved_branches += await self.resolve_prepared_batches(shard)

        chores = [Chore(min(self._cfg.claim_lease_seconds / 4, 5.0), sweep),
                  Chore(self._cfg.depth_sample_seconds, lambda: self.sample_depth(shard))]
        if self._finish_batch is not None:
            chores.append(Chore(1.0, lambda: self.finish_batches(shard)))
        ahead: asyncio.Task[list[Message]] | None = None  # the next claim, taken while a batch is sent
        recording: asyncio.Task[None] | None = None  # the previous batch's results being written
        claimed: list[Message] = []  # the claim being sent
        sent: list[tuple[Message, str]] = []  # its accepted sends
        try:
            while not self._stopping.is_set():
                try:
                    await self._round_start(chores, event)
                    if ahead is not None:
                        # Shielded: a loop stopped meanwhile releases this claim (finally below).
                        claimed = await asyncio.shield(ahead)
                        ahead = None
                    elif self._stopping.is_set():
                        break
                    else:
                        claimed = await self._claim(shard)
                    sent = []
                    if not claimed:
                        await wait_for_wake(event, self._cfg.idle_poll_seconds)
                        continue
                    if len(claimed) >= self._cfg.claim_batch_size and not self._stopping.is_set():
                        ahead = asyncio.create_task(self._claim(shard), name=f"dispatch-claim-{shard}")
                    try:
                        await self._send_batch(shard, claimed, sent)
                    finally:
                        # Recorded while the next batch is sent, after the previous record (order),
                        # which this loop waits for first (at most one record behind).
                        previous = recording
                        recording = asyncio.create_task(self._record_sent(shard, sent, after=previous),
                                                        name=f"dispatch-record-{shard}")
                        await self._settle(previous)
                    if not self._stopping.is_set():
                        claimed = []  # all handled; on a stop the unsent part is released below
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dispatch loop on shard %s failed; retrying", shard)
                    await asyncio.sleep(1.0)
        finally:
            self._loop_events.discard(event)
            await self._settle(recording)
            sent_ids = {m.id for m, _ in sent}
            await self._release(shard, [m for m in claimed if m.id not in sent_ids])
            await self._release_claim(shard, ahead)

    @staticmethod
    async def _settle(task: asyncio.Task[None] | None) -> None:
        """Waits for a record to end and logs its failure. Shielded: a stopping loop lets it
        finish, since it writes sends that already happened."""
        if task is None:
            return
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.error("recording a dispatch batch failed; leases will requeue its messages",
                          exc_info=task.exception())
            raise
        except Exception:
            log.exception("recording a dispatch batch failed; leases will requeue its messages")

    async def _release_claim(self, shard: str, ahead: asyncio.Task[list[Message]] | None) -> None:
        """A claim taken ahead that the stopping loop will not send goes back to pending now,
        not when its lease expires."""
        if ahead is None:
            return
        try:
            claimed = await asyncio.shield(ahead)
        except Exception:
            log.exception("claiming ahead on shard %s failed", shard)  # nothing was claimed
            return
        await self._release(shard, claimed)

    async def _release(self, shard: str, unsent: list[Message]) -> None:
        """Claimed messages the stopping loop did not send go back to pending (the ones it
        deferred, held or failed meanwhile are no longer `sending` and stay as they are). If
        this fails, their lease brings them back later."""
        if not unsent:
            return
        try:
            async with await self._tx(shard) as uow:
                released = await uow.dispatch.release(unsent, self.worker_id, self._clock())
        except Exception:
            log.exception("handing back %d claimed messages on shard %s failed; their lease will requeue them",
                          len(unsent), shard)
            return
        if released:
            log.info("handed back %d claimed messages on shard %s", released, shard)

    async def finish_batches(self, shard: str) -> None:
        if self._finish_batch is None:
            return
        async with self._db.shard_unit_of_work(MESSAGE_DB, shard, read_only=True) as uow:
            running = await uow.batches.active_ids()
        for tenant_id, task_id in running:
            await self._finish_batch(tenant_id, task_id)

    async def resolve_prepared_batches(self, shard: str) -> int:
        """Finishes the XA branches of batch writes that a crash left prepared between Start's
        COMMIT and theirs (BatchRepository.materialize_task): committed where the task records
        that attempt, rolled back where it does not. Returns how many were finished here."""
        async with self._db.shard_unit_of_work(MESSAGE_DB, shard) as uow:
            repo = uow.batches
            xids = await repo.prepared_materializations()
            if not xids:
                return 0
            decisions = await repo.materialization_decisions(xids)  # waits for a Start in flight
        finished = 0
        async with self._db.shard_unit_of_work(MESSAGE_DB, shard) as uow:
            repo = uow.batches
            for xid, commit in decisions.items():
                if await repo.finish_prepared(xid, commit=commit):
                    finished += 1
                    log.warning("batch write branch %s left prepared by a crash: %s", xid,
                                "committed" if commit else "rolled back")
        return finished

    async def requeue_expired(self, shard: str) -> int:
        async with self._db.shard_unit_of_work(MESSAGE_DB, shard) as uow:
            return await uow.dispatch.requeue_expired(self._clock())

    async def sample_depth(self, shard: str) -> int:
        """Sets wework_queue_depth{queue="messages"} of `shard`: the messages due and not yet
        claimed (counted up to depth_examined pending ones); returns it."""
        async with self._db.shard_unit_of_work(MESSAGE_DB, shard, read_only=True) as uow:
            depth = await uow.dispatch.due_count(self._clock(), self._cfg.depth_examined)
        metrics.QUEUE_DEPTH.labels(queue="messages", shard=shard).set(depth)
        return depth

    async def run_once(self, shard: str) -> int:
        """Claims one batch on `shard` and processes it to the end; the number claimed."""
        claimed = await self._claim(shard)
        if not claimed:
            return 0
        sent: list[tuple[Message, str]] = []
        try:
            await self._send_batch(shard, claimed, sent)
        finally:
            await self._record_sent(shard, sent)
        return len(claimed)

    async def _claim(self, shard: str) -> list[Message]:
        now = self._clock()
        async with self._db.shard_unit_of_work(MESSAGE_DB, shard) as uow:
            claimed = await uow.dispatch.claim(
                self.worker_id, now, self._cfg.claim_batch_size, timedelta(seconds=self._cfg.claim_lease_seconds))
        self.stats.claimed += len(claimed)
        return claimed

    async def _send_batch(self, shard: str, claimed: list[Message], sent: list[tuple[Message, str]]) -> None:
        """Processes every claimed message; the accepted sends are appended to `sent` (recorded
        together afterwards: a commit per message would cap a worker at a few hundred a second)."""
        # One lane per account keeps its sends in claim (priority) order and its pacing exact.
        lanes: dict[str, list[Message]] = defaultdict(list)
        for m in claimed:
            lanes[m.account_id].append(m)
        await asyncio.gather(*(self._lane(shard, msgs, sent) for msgs in lanes.values()))

    async def _record_sent(self, shard: str, sent: list[tuple[Message, str]],
                           after: asyncio.Task[None] | None = None) -> None:
        if after is not None:
            await asyncio.wait([after])  # its outcome is logged by the loop (_settle)
        if not sent:
            return
        async with await self._tx(shard) as uow:
            await uow.dispatch.mark_sent_many(sent, self.worker_id, self._clock())
        self.stats.sent += len(sent)

    async def _lane(self, shard: str, msgs: list[Message], sent: list[tuple[Message, str]]) -> None:
        rest: list[Message] = []
        deferred_until: datetime | None = None
        async with self._lanes[msgs[0].account_id]:
            # A lane sends one message at a time, so one max_in_flight slot per lane bounds the
            # sends in flight as one per message did, without a semaphore round per message.
            async with self._sem:
                for i, m in enumerate(msgs):
                    if self._stopping.is_set():
                        return  # the rest of the lane is handed back by the stopping loop
                    try:
                        deferred_until = await self._process(shard, m, sent)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("dispatch of message %s failed; the lease will requeue it", m.id)
                        continue
                    if deferred_until is not None:
                        rest = msgs[i + 1:]
                        break
            if deferred_until is not None:
                # The account is paced: the rest of the lane waits too, each one interval
                # later, in one transaction (not one per message).
                await self._defer_rest(shard, rest, deferred_until)

    async def _defer_rest(self, shard: str, rest: list[Message], first: datetime) -> None:
        if not rest:
            return
        step = timedelta(seconds=max(self._cfg.account_min_interval_seconds, 0.001))
        items = [(m, first + step * (k + 1)) for k, m in enumerate(rest)]
        async with await self._tx(shard) as uow:
            await uow.dispatch.defer_many(items, self.worker_id, self._clock())
        self.stats.deferred += len(items)

    async def _tx(self, shard: str):
        return self._db.shard_unit_of_work(MESSAGE_DB, shard)

    async def _process(self, shard: str, m: Message, sent: list[tuple[Message, str]]) -> datetime | None:
        """Sends, holds, defers or fails one claimed message; the time it was deferred to when
        the account's pacing (not the recipient's or the window) put it back."""
        cfg = self._cfg
        now = self._clock()
        # 1. The batch: paused or cancelled ones go back (the claim query then skips them).
        batch = await self._batches.get(m.tenant_id, m.batch_id) if m.batch_id else None
        if m.batch_id and (batch is None or batch.status != "running"):
            async with await self._tx(shard) as uow:
                repo = uow.dispatch
                if batch is not None and batch.status == "paused":
                    await repo.put_back_paused(m, self.worker_id, now)
                else:  # cancelled or gone
                    await repo.cancel_claimed(m, self.worker_id, now)
            return
        # 2. The account.
        try:
            status, guid = await self._accounts.account_for_send(m.tenant_id, m.account_id)
        except NotFound:
            await self._fail(shard, m, "ACCOUNT_NOT_FOUND", "the sending account no longer exists", now)
            return
        if status != AccountStatus.ONLINE or not guid:
            await self._hold(shard, m, f"account is {status.value}", now)
            return
        # 3. Pacing: the batch window, the account interval (or the batch rate), the recipient.
        if batch is not None and batch.window is not None and not batch.window.open_at(now):
            await self._defer(shard, m, batch.window.next_open(now), now)
            return
        limits = cfg.pacing
        if self._pacing_overrides is not None:
            for config in await self._pacing_overrides(m.tenant_id, m.account_id):
                limits = limits.with_overrides(config)
        if batch is not None:
            limits = limits.slowed_to(batch.min_interval, batch.jitter)
        try:
            slot = await self._pacing.reserve(m.account_id, m.conversation_id, m.id,
                                              horizon=cfg.inline_wait_seconds, limits=limits)
        except PacingUnavailable as exc:
            # Hold, never send unpaced; the rest of the lane waits too (docs/pacing.md).
            until = now + timedelta(seconds=cfg.pacing_hold_seconds)
            self._warn_pacing_unavailable(exc)
            await self._defer(shard, m, until, now)
            metrics.PACING_HELD.inc()
            return until
        if not slot.reserved:
            until = now + timedelta(seconds=slot.wait)
            await self._defer(shard, m, until, now)
            return until if slot.account_bound else None
        if slot.wait > 0:
            await asyncio.sleep(slot.wait)
        # 4. Send.
        try:
            content = m.content
            if self._resolve_content is not None and content.get("media_id"):
                try:
                    content = await self._resolve_content(m.tenant_id, content)
                except NotFound:  # deleted after the message was accepted: final, like a refusal
                    raise ProviderError("the message's media was deleted", code="MEDIA_NOT_FOUND") from None
            result = await self._provider.send_message(
                guid, conversation_id=m.conversation_id, message_type=m.message_type.value,
                content=content, idempotency_key=m.id)
        except ProviderError as exc:
            attempts = m.retry_count + 1
            code = exc.code or "PROVIDER_ERROR"
            if should_retry(code, attempts, cfg.max_attempts, retryable=exc.retryable):
                delay = cfg.backoff.delay(attempts, self._rnd)
                async with await self._tx(shard) as uow:
                    await uow.dispatch.defer(
                        m, self.worker_id, self._clock() + timedelta(seconds=delay), self._clock(),
                        retry_count=attempts, error_code=code, error_message=str(exc))
                self.stats.retried += 1
            else:
                await self._fail(shard, m, code, str(exc), self._clock(), retry_count=attempts)
            return
        sent.append((m, result.wework_msg_id))
        _observe_sent(shard, m, self._clock())
        return None

    def _warn_pacing_unavailable(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._pacing_warned_at >= 10.0:  # once per 10 s, not once per held send
            self._pacing_warned_at = now
            log.warning("%s (%r): sends are held until it answers", exc, exc.__cause__)

    async def _fail(self, shard: str, m: Message, code: str, message: str, now: datetime,
                    retry_count: int | None = None) -> None:
        async with await self._tx(shard) as uow:
            await uow.dispatch.mark_failed(m, self.worker_id, code, message, now,
                                                               retry_count=retry_count)
        self.stats.failed += 1
        metrics.MESSAGES_FAILED.labels(m.message_type.value, code).inc()

    async def _defer(self, shard: str, m: Message, until: datetime, now: datetime) -> None:
        async with await self._tx(shard) as uow:
            await uow.dispatch.defer(m, self.worker_id, until, now)
        self.stats.deferred += 1

    async def _hold(self, shard: str, m: Message, reason: str, now: datetime) -> None:
        async with await self._tx(shard) as uow:
            repo = uow.dispatch
            since = await repo.held_since(m) or now
            if (now - since).total_seconds() >= self._cfg.hold_timeout_seconds:
                await repo.mark_failed(m, self.worker_id, "ACCOUNT_NOT_ONLINE",
                                       f"{reason} for longer than {self._cfg.hold_timeout_seconds:g}s", now)
                self.stats.failed += 1
                metrics.MESSAGES_FAILED.labels(m.message_type.value, "ACCOUNT_NOT_ONLINE").inc()
                return
            await repo.defer(m, self.worker_id, now + timedelta(seconds=self._cfg.hold_recheck_seconds), now,
                             hold_reason=reason, held_since=now)
        self.stats.held += 1


def _observe_sent(shard: str, m: Message, now: datetime) -> None:
    """The provider accepted `m`: wework_messages_sent_total and the time it waited since due."""
    metrics.MESSAGES_SENT.labels(m.message_type.value).inc()
    due = m.scheduled_time or m.created_at
    metrics.MESSAGE_DISPATCH_LAG.labels(shard).observe(max((now - due).total_seconds(), 0.0))
