"""The dispatch queue's batch paths on MariaDB (no fakes but the simulator).

Claims read one priority band after another and skip rows another claimer holds; recording a
batch updates only the messages this worker still owns and adds their statistics once, summed
per hour with the mean response time weighted by the samples; the pipelined shard loop (claim
ahead, record behind) sends every message once and puts its claim ahead back when it stops.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from wework.domain.accounts import AccountStatus
from wework.domain.messages import Message, MessageType
from wework.persistence.ids import new_id
from wework.persistence.models import message as mm
from wework.server.application.context import utcnow
from wework.server.providers.simulator import SimulatorConfig, SimulatorProvider
from wework.server.providers.sinks import CollectingSink
from wework.server.workers.dispatch import Dispatcher, DispatchSettings

pytestmark = pytest.mark.mariadb

LEASE = timedelta(seconds=60)
UNPACED = {"account_min_interval_seconds": 0, "account_jitter_seconds": 0, "idle_poll_seconds": 0.05,
           "recipient_per_minute": 10**6, "recipient_per_hour": 10**6}


async def _insert(db, tenant_id: str, priorities: list[int], *, account_id: str = "acc",
                  age: timedelta = timedelta(0), scheduled: dict[int, timedelta] | None = None) -> list[Message]:
    """Messages created one microsecond apart, `age` ago, with the given priorities."""
    start = utcnow() - age
    msgs = [Message(id=new_id(), tenant_id=tenant_id, account_id=account_id, conversation_id=f"conv-{i}",
                    message_type=MessageType.TEXT, content={"text": f"m{i}"},
                    created_at=start + timedelta(microseconds=i), updated_at=start, priority=p,
                    scheduled_time=utcnow() + scheduled[i] if scheduled and i in scheduled else None)
            for i, p in enumerate(priorities)]
    async with db.unit_of_work("message", tenant_id) as uow:
        await uow.messages.add_many(msgs)
    return msgs


async def _claim(db, shard: str, worker: str, limit: int = 1000, now=None) -> list[Message]:
    async with db.shard_unit_of_work("message", shard) as uow:
        return await uow.dispatch.claim(worker, now or utcnow(), limit, LEASE)


async def _rows(db, tenant_id: str) -> dict[str, mm.Message]:
    async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
        rows = (await uow.session.execute(sa.select(mm.Message).where(mm.Message.tenant_id == tenant_id))).scalars()
        return {r.id: r for r in rows}


async def _statistics(db, tenant_id: str) -> list[tuple]:
    s = mm.MessageStatistic
    async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
        rows = await uow.session.execute(
            sa.select(s.account_id, s.stat_hour, s.total_count, s.success_count, s.failed_count, s.avg_response_time)
            .where(s.tenant_id == tenant_id).order_by(s.account_id, s.stat_hour))
        return [tuple(r) for r in rows]


async def test_claims_read_priority_bands_in_order_and_skip_what_is_not_due(mariadb_database):
    db, tenant_id = mariadb_database, new_id()
    # 0 and 11 are outside the valid range (never accepted): claimed after every valid priority.
    msgs = await _insert(db, tenant_id, [1, 10, 5, 0, 11, 5, 10], scheduled={6: timedelta(hours=1)})
    got = [m for m in await _claim(db, db.shard_for(tenant_id), "w") if m.tenant_id == tenant_id]
    assert [m.priority for m in got] == [10, 5, 5, 1, 11, 0]
    assert [m.id for m in got] == [msgs[i].id for i in (1, 2, 5, 0, 4, 3)]
    index = {m.id: i for i, m in enumerate(msgs)}
    assert [m.content for m in got] == [{"text": f"m{index[m.id]}"} for m in got]
    rows = await _rows(db, tenant_id)
    assert rows[msgs[6].id].status == "pending" and rows[msgs[6].id].claimed_by is None  # not due yet
    assert {rows[m.id].status for m in got} == {"sending"} and {rows[m.id].claimed_by for m in got} == {"w"}


async def test_a_claim_goes_past_rows_another_claimer_holds(mariadb_database):
    db, tenant_id = mariadb_database, new_id()
    msgs = await _insert(db, tenant_id, [10] * 8, age=timedelta(days=1))
    shard = db.shard_for(tenant_id)
    async with db.shard_unit_of_work("message", shard) as first:  # holds its row locks until the end
        a = await first.dispatch.claim("a", utcnow(), 3, LEASE)
        b = await _claim(db, shard, "b", limit=3)  # another transaction, while `a` is uncommitted
    mine = [m.id for m in msgs]
    assert [m.id for m in a] == mine[:3] and [m.id for m in b] == mine[3:6]


async def test_recording_a_batch_updates_only_what_this_worker_still_owns(mariadb_database):
    db, tenant_id = mariadb_database, new_id()
    msgs = await _insert(db, tenant_id, [10] * 5, age=timedelta(days=1))
    shard = db.shard_for(tenant_id)
    claimed = [m for m in await _claim(db, shard, "w1") if m.tenant_id == tenant_id]
    assert len(claimed) == 5
    async with db.unit_of_work("message", tenant_id) as uow:
        t = mm.Message
        # A receipt got ahead of the worker for one; another one was requeued and re-claimed.
        await uow.session.execute(sa.update(t).where(t.id == msgs[0].id)
                                  .values(status="delivered", claimed_by=None, wework_msg_id="from-receipt"))
        await uow.session.execute(sa.update(t).where(t.id == msgs[1].id).values(claimed_by="w2"))
    async with db.shard_unit_of_work("message", shard) as uow:
        n = await uow.dispatch.mark_sent_many([(m, f"wid-{m.id}") for m in claimed], "w1",
                                                                utcnow())
    assert n == 3
    rows = await _rows(db, tenant_id)
    assert (rows[msgs[0].id].status, rows[msgs[0].id].wework_msg_id) == ("delivered", "from-receipt")
    assert (rows[msgs[1].id].status, rows[msgs[1].id].claimed_by) == ("sending", "w2")
    for m in msgs[2:]:
        r = rows[m.id]
        assert (r.status, r.wework_msg_id, r.claimed_by, r.claimed_until) == ("sent", f"wid-{m.id}", None, None)
    assert [(total, success) for _a, _h, total, success, _f, _rt in await _statistics(db, tenant_id)] == [(3, 3)]


async def test_batch_statistics_are_summed_per_hour_with_the_mean_weighted_by_samples(mariadb_database):
    db, tenant_id = mariadb_database, new_id()
    shard = db.shard_for(tenant_id)
    await _insert(db, tenant_id, [10] * 3, account_id="a1", age=timedelta(days=1))
    await _insert(db, tenant_id, [10] * 2, account_id="a2", age=timedelta(days=1, hours=1))
    t0 = utcnow()
    claimed = [m for m in await _claim(db, shard, "w", now=t0) if m.tenant_id == tenant_id]
    async with db.shard_unit_of_work("message", shard) as uow:  # 2 s after the claim
        assert await uow.dispatch.mark_sent_many(
            [(m, "x") for m in claimed], "w", t0 + timedelta(seconds=2)) == 5
    [later] = await _insert(db, tenant_id, [10], account_id="a1", age=timedelta(days=1))
    t1 = utcnow()
    again = [m for m in await _claim(db, shard, "w", now=t1) if m.tenant_id == tenant_id]
    assert [m.id for m in again] == [later.id]
    async with db.shard_unit_of_work("message", shard) as uow:  # 4 s after its claim
        await uow.dispatch.mark_sent_many([(again[0], "y")], "w", t1 + timedelta(seconds=4))
    stats = await _statistics(db, tenant_id)
    assert [(a, total, success, failed) for a, _h, total, success, failed, _rt in stats] == [
        ("a1", 4, 4, 0), ("a2", 2, 2, 0)]
    assert float(stats[0][5]) == pytest.approx((3 * 2 + 4) / 4, abs=0.001)  # 2.5, not (2 + 4) / 2
    assert float(stats[1][5]) == pytest.approx(2.0, abs=0.001)


async def test_a_released_claim_is_pending_again_and_due_as_before(mariadb_database):
    db, tenant_id = mariadb_database, new_id()
    msgs = await _insert(db, tenant_id, [10] * 3, age=timedelta(days=1))
    shard = db.shard_for(tenant_id)
    claimed = [m for m in await _claim(db, shard, "w") if m.tenant_id == tenant_id]
    async with db.shard_unit_of_work("message", shard) as uow:
        assert await uow.dispatch.release(claimed, "other", utcnow()) == 0  # not its claim
        assert await uow.dispatch.release(claimed, "w", utcnow()) == 3
    rows = await _rows(db, tenant_id)
    assert {(r.status, r.claimed_by, r.send_time) for r in rows.values()} == {("pending", None, None)}
    again = [m.id for m in await _claim(db, shard, "w2") if m.tenant_id == tenant_id]
    assert again == [m.id for m in msgs]


class _Accounts:
    def __init__(self, account_id: str, guid: str) -> None:
        self.account_id, self.guid = account_id, guid

    async def account_for_send(self, tenant_id: str, account_id: str):
        # Other tests' leftovers on the shard are held, not sent.
        return (AccountStatus.ONLINE, self.guid) if account_id == self.account_id else (AccountStatus.OFFLINE, None)


async def _simulator(guid: str, **config) -> SimulatorProvider:
    sim = SimulatorProvider(CollectingSink(), SimulatorConfig(scan_delay_seconds=0, confirm_delay_seconds=0,
                                                              heartbeat_interval_seconds=3600,
                                                              delivery_delay_seconds=3600, **config))
    await sim.create_instance(guid)
    await sim.get_login_qr(guid)
    async with asyncio.timeout(5):
        while (await sim.check_liveness(guid)).online is not True:
            await asyncio.sleep(0.01)
    return sim


async def test_the_pipelined_loop_sends_every_message_once_and_counts_it_once(mariadb_database):
    db, tenant_id, account_id = mariadb_database, new_id(), new_id()
    msgs = await _insert(db, tenant_id, [10, 5] * 150, account_id=account_id, age=timedelta(days=1))
    sim = await _simulator("g-pipeline")
    d = Dispatcher(db, sim, _Accounts(account_id, "g-pipeline"), DispatchSettings(claim_batch_size=25, **UNPACED))
    try:
        await d.start()
        async with asyncio.timeout(30):
            while any(r.status != "sent" for r in (await _rows(db, tenant_id)).values()):
                await asyncio.sleep(0.05)
    finally:
        await d.close()
        await sim.close()
    assert all(sim.send_count(m.id) == 1 for m in msgs) and not sim.duplicate_sends
    assert [(total, success) for _a, _h, total, success, _f, _rt in await _statistics(db, tenant_id)] == [(300, 300)]
    # Priority 10 went out before priority 5 (one lane: one account).
    order = sorted(msgs, key=lambda m: sim.sent_messages[m.id].accepted_at)
    assert [m.priority for m in order] == [10] * 150 + [5] * 150


async def test_a_stopping_loop_hands_back_every_message_it_did_not_send(mariadb_database):
    db, tenant_id, account_id = mariadb_database, new_id(), new_id()
    msgs = await _insert(db, tenant_id, [10] * 200, account_id=account_id, age=timedelta(days=1))
    sim = await _simulator("g-stop", send_latency_seconds=0.01)  # ~0.2 s per batch of 20
    d = Dispatcher(db, sim, _Accounts(account_id, "g-stop"), DispatchSettings(claim_batch_size=20, **UNPACED))
    try:
        await d.start()
        async with asyncio.timeout(10):
            while d.stats.sent < 20 or d.stats.claimed < 60:  # a batch recorded, one sending, one claimed ahead
                await asyncio.sleep(0.01)
        await d.close()
    finally:
        await sim.close()
    rows = await _rows(db, tenant_id)
    sending = [r for r in rows.values() if r.status == "sending"]
    sent = [r for r in rows.values() if r.status == "sent"]
    # Nothing waits for a lease: the batch being sent and the claim ahead are pending again.
    assert not sending
    assert len(sent) == d.stats.sent and len(sent) + len(sending) + sum(
        r.status == "pending" and r.claimed_by is None for r in rows.values()) == len(msgs)
    assert all(sim.send_count(r.id) == 1 for r in sent)
    assert [(total, success) for _a, _h, total, success, _f, _rt in await _statistics(db, tenant_id)] == [
        (len(sent), len(sent))]
