"""The heartbeat monitor: ONLINE accounts without a recent heartbeat go OFFLINE (operator
system), then recovery is tried with backoff until they are ONLINE again or in ERROR.

Safe in every replica at once. Each tick, per shard:

1. One transaction locks a batch of stale ONLINE accounts (FOR UPDATE SKIP LOCKED: rows another
   monitor holds are skipped, not waited for) and moves them to OFFLINE with a history row each.
2. One transaction locks a batch of accounts whose recovery is due, counts the attempt and
   claims them for a lease (next_recovery_at = now + lease), OFFLINE -> RECOVERING on the first.
3. Outside any lock, the provider is asked to reconnect each claimed account.
4. A short transaction per account records the result if the account is still at the version
   the claim wrote (a callback or a user may have moved it meanwhile): ONLINE, ERROR, or the next
   attempt after the backoff.

A replica that dies between 2 and 4 leaves its claims to expire; the next monitor retries them.
SQLite (embedded mode) has no SKIP LOCKED and runs one process: its writers take turns anyway.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from wework.domain.accounts import (
    SYSTEM,
    Account,
    AccountStatus,
    Trigger,
    apply_trigger,
    claim_recovery,
    decide_recovery,
)
from wework.persistence.background import cancel_and_wait
from wework.persistence.uow import UnitOfWork
from wework.server.application.accounts import ACCOUNT_DB, AccountStore
from wework.server.observability.metrics import ACCOUNTS
from wework.server.providers.base import InstanceNotFound, ProviderError

log = logging.getLogger(__name__)

# Batches per shard and tick before yielding to the next tick (a backlog drains over ticks).
MAX_BATCHES_PER_TICK = 10
# The wework_accounts gauge is refreshed at most this often (or every tick of a slower monitor):
# a GROUP BY per shard is cheap, but not free at every tick of a fast one.
STATUS_COUNT_INTERVAL_SECONDS = 5.0


@dataclass
class SweepReport:
    went_offline: int = 0
    attempts: int = 0
    recovered: int = 0
    failed: int = 0

    def add(self, other: SweepReport) -> None:
        self.went_offline += other.went_offline
        self.attempts += other.attempts
        self.recovered += other.recovered
        self.failed += other.failed


class HeartbeatMonitor:
    def __init__(self, store: AccountStore, *, interval_seconds: float, batch_size: int,
                 concurrency: int = 16) -> None:
        self._store = store
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self._reconnects = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self._counted_at = float("-inf")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="heartbeat-monitor")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        while True:
            try:
                report = await self.run_once()
                if report.went_offline or report.attempts or \
                        asyncio.get_running_loop().time() - self._counted_at >= STATUS_COUNT_INTERVAL_SECONDS:
                    await self.publish_status_counts()
                if report.went_offline or report.attempts:
                    log.info("heartbeat monitor: %d offline, %d recovery attempt(s), %d recovered, %d failed",
                             report.went_offline, report.attempts, report.recovered, report.failed)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database or provider outage: log it and try again next tick.
                log.exception("heartbeat monitor tick failed")
            self.ticks += 1
            await asyncio.sleep(self.interval_seconds)

    async def publish_status_counts(self) -> dict[str, int]:
        """Sets wework_accounts{status} to the counts over every shard (every status present,
        zeros included, so an alert on online == 0 does not see a missing series)."""
        totals = {status.value: 0 for status in AccountStatus}

        async def one(uow: UnitOfWork) -> dict[str, int]:
            return await uow.accounts.count_by_status()

        for counts in await self._store.db.for_each_shard(ACCOUNT_DB, one):
            for status, n in counts.items():
                totals[status] = totals.get(status, 0) + n
        for status, n in totals.items():
            ACCOUNTS.labels(status=status).set(n)
        self._counted_at = asyncio.get_running_loop().time()
        return totals

    async def run_once(self) -> SweepReport:
        """One tick over every shard."""
        reports = await asyncio.gather(*(self._shard(s) for s in self._store.db.shard_names))
        total = SweepReport()
        for r in reports:
            total.add(r)
        return total

    async def _shard(self, shard: str) -> SweepReport:
        report = SweepReport()
        for _ in range(MAX_BATCHES_PER_TICK):
            n = await self.sweep_stale(shard)
            report.went_offline += n
            if n < self.batch_size:
                break
        for _ in range(MAX_BATCHES_PER_TICK):
            batch = await self.sweep_recoveries(shard)
            report.add(batch)
            if batch.attempts < self.batch_size:
                break
        return report

    async def sweep_stale(self, shard: str) -> int:
        """Step 1: stale ONLINE -> OFFLINE (with recovery scheduled). Returns how many."""
        store = self._store
        now = store.ctx.clock()
        cutoff = now - store.policies.heartbeat_timeout
        async with store.db.shard_unit_of_work(ACCOUNT_DB, shard) as uow:
            stale = await store.accounts(uow).lock_stale_online(cutoff, self.batch_size)
            planned = [apply_trigger(a, Trigger.HEARTBEAT_TIMEOUT, now=now, operator=SYSTEM, extra={
                "last_heartbeat_time": a.last_heartbeat_time.isoformat() if a.last_heartbeat_time else None,
                "timeout_seconds": store.policies.heartbeat_timeout.total_seconds()}) for a in stale]
            await store.write(uow, [(t.account, a.version) for t, a in zip(planned, stale, strict=True)],
                              [t.change for t in planned])
        return len(stale)

    async def sweep_recoveries(self, shard: str) -> SweepReport:
        """Steps 2-4 for one batch of due recoveries."""
        store = self._store
        policy = store.policies.recovery
        now = store.ctx.clock()
        async with store.db.shard_unit_of_work(ACCOUNT_DB, shard) as uow:
            due = await store.accounts(uow).lock_due_recoveries(now, self.batch_size)
            claims = [claim_recovery(a, now, policy) for a in due]
            await store.write(uow, [(c.account, a.version) for c, a in zip(claims, due, strict=True)],
                              [c.change for c in claims if c.change is not None])
        outcomes = await asyncio.gather(*(self._attempt(c.account) for c in claims))
        report = SweepReport(attempts=len(claims))
        for status in outcomes:
            if status is AccountStatus.ONLINE:
                report.recovered += 1
            elif status is AccountStatus.ERROR:
                report.failed += 1
        return report

    async def _attempt(self, claimed: Account) -> AccountStatus | None:
        """Steps 3-4 for one account; returns its status afterwards (None if it is gone)."""
        store = self._store
        policy = store.policies.recovery
        online, recoverable, detail = False, None, None
        async with self._reconnects:
            try:
                # Within half the lease: the result must be recorded before another monitor may
                # take the account over.
                async with asyncio.timeout(policy.lease.total_seconds() / 2):
                    liveness = await store.require_provider().reconnect(claimed.guid or "", claimed.login_token)
                online = liveness.online
                recoverable = liveness.details.get("recoverable")
                detail = liveness.details.get("reason")
            except InstanceNotFound:
                recoverable, detail = False, "INSTANCE_NOT_FOUND"
            except ProviderError as exc:
                recoverable, detail = (None if exc.retryable else False), exc.code
            except TimeoutError:
                detail = "TIMEOUT"
        try:
            account, _ = await store.transition(
                claimed.tenant_id, claimed.id,
                lambda a: _as_pair(decide_recovery(a, online=online, recoverable=recoverable, detail=detail,
                                                   now=store.ctx.clock(), policy=policy)),
                expected_version=claimed.version)
        except Exception:
            log.warning("recording the recovery attempt of account %s failed; its claim will expire",
                        claimed.id, exc_info=True)
            return None
        return account.status


def _as_pair(outcome):
    return outcome.account, outcome.change
