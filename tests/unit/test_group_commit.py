"""GroupCommit on its own (no database): the commit is an in-memory ledger that can refuse
chosen items. Ordering, batch bounds, the linger, followers of a duplicate in flight,
withdrawal and cancellation, partial failure, and the charge / refund hooks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest
from wework.server.application.group_commit import GroupCommit

KEY = "s0"


@dataclass(eq=False)
class Item:
    value: str
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    charged: bool = False


class Refused(Exception):
    pass


class Ledger:
    """What a transaction would write: all of a batch or nothing (a refused value sinks it)."""

    def __init__(self, refuse: set[str] = frozenset(), delay: float = 0.0) -> None:
        self.refuse = set(refuse)
        self.delay = delay
        self.batches: list[list[str]] = []  # every attempted commit, in order
        self.rows: list[str] = []  # what was committed

    async def commit(self, key: str, items: list[Item]) -> list[str]:
        values = [i.value for i in items]
        self.batches.append(values)
        await asyncio.sleep(self.delay)
        bad = [v for v in values if v in self.refuse]
        if bad:
            raise Refused(f"refused {bad[0]}")
        self.rows += values
        return [f"id-{v}" for v in values]


class Quota:
    """The charge / refund hooks: a unit per item, `limit` in all."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit, self.used, self.refunds = limit, 0, []

    async def charge(self, batch: list[Item]) -> list[Item]:
        kept = []
        for item in batch:
            if item.charged:
                kept.append(item)
            elif self.used < self.limit:
                self.used += 1
                item.charged = True
                kept.append(item)
            else:
                item.future.set_exception(Refused(f"quota: {item.value}"))
        return kept

    async def refund(self, items: list[Item]) -> None:
        self.refunds.append([i.value for i in items if i.charged])
        for item in items:
            if item.charged:
                item.charged = False
                self.used -= 1


def batcher(ledger: Ledger, **kwargs) -> GroupCommit[Item]:
    return GroupCommit(ledger.commit, name="test", **kwargs)


def submit_all(gc: GroupCommit[Item], values: list[str]) -> list[Item]:
    items = [Item(v) for v in values]
    for item in items:
        gc.submit(KEY, item)
    return items


async def outcomes(items: list[Item]) -> list[object]:
    return list(await asyncio.gather(*(i.future for i in items), return_exceptions=True))


# -- ordering and batch bounds ----------------------------------------------------------------------


async def test_items_queued_together_commit_together_in_order_each_caller_gets_its_own_result():
    ledger = Ledger()
    gc = batcher(ledger)
    items = submit_all(gc, [f"m{i}" for i in range(20)])
    assert await outcomes(items) == [f"id-m{i}" for i in range(20)]
    assert ledger.batches == [[f"m{i}" for i in range(20)]]  # one commit for all twenty


async def test_a_batch_is_at_most_max_batch_items_and_the_queue_keeps_its_order():
    ledger = Ledger()
    gc = batcher(ledger, max_batch=3)
    items = submit_all(gc, [str(i) for i in range(8)])
    await outcomes(items)
    assert ledger.batches == [["0", "1", "2"], ["3", "4", "5"], ["6", "7"]]
    assert ledger.rows == [str(i) for i in range(8)]


async def test_items_that_arrive_during_a_commit_form_the_next_batch_and_keys_do_not_mix():
    ledger = Ledger(delay=0.02)
    gc = batcher(ledger)
    first = submit_all(gc, ["a1", "a2"])
    other = Item("b1")
    gc.submit("s1", other)  # another shard: its own writer, its own commit
    await asyncio.sleep(0.005)  # the first commit is under way
    later = submit_all(gc, ["a3", "a4", "a5"])
    await outcomes(first + later + [other])
    assert sorted(ledger.batches) == [["a1", "a2"], ["a3", "a4", "a5"], ["b1"]]


async def test_the_writer_stops_when_idle_and_the_next_item_starts_it_again():
    ledger = Ledger()
    gc = batcher(ledger)
    await outcomes(submit_all(gc, ["x"]))
    await asyncio.sleep(0)
    assert not gc._tasks  # no writer left behind
    assert await outcomes(submit_all(gc, ["y"])) == ["id-y"]


# -- linger ---------------------------------------------------------------------------------------


async def _gather_time(gc: GroupCommit[Item], queue: list, last_batch: int) -> float:
    started = time.perf_counter()
    await gc._gather(KEY, queue, last_batch)
    return time.perf_counter() - started


async def test_a_lone_item_does_not_wait():
    assert await _gather_time(batcher(Ledger(), linger_seconds=0.5), ["x"], last_batch=1) < 0.1
    assert await _gather_time(batcher(Ledger(), linger_seconds=0.5), ["x"], last_batch=0) < 0.1


async def test_after_a_batch_of_several_the_next_waits_at_most_the_linger():
    waited = await _gather_time(batcher(Ledger(), linger_seconds=0.05), ["x"], last_batch=4)
    assert 0.04 <= waited < 0.5


async def test_no_linger_no_wait():
    assert await _gather_time(batcher(Ledger(), linger_seconds=0.0), ["x"], last_batch=10) < 0.1


async def test_the_wait_ends_once_the_queue_is_twice_the_last_batch():
    gc = batcher(Ledger(), linger_seconds=5.0)
    gc._queues[KEY] = queue = []
    gc._tasks[KEY] = asyncio.current_task()  # the writer is this test: arrivals only queue
    queue.append(Item("first"))

    async def arrivals():
        for i in range(7):
            await asyncio.sleep(0.002)
            gc.submit(KEY, Item(str(i)))

    filler = asyncio.create_task(arrivals())
    assert await _gather_time(gc, queue, last_batch=4) < 1.0
    assert len(queue) >= 8
    await filler
    gc._tasks.clear()


async def test_a_writer_that_just_ran_out_of_items_still_waits_for_company():
    ledger = Ledger()
    gc = batcher(ledger, linger_seconds=0.2)
    await outcomes(submit_all(gc, ["a", "b", "c", "d"]))
    assert ledger.batches == [["a", "b", "c", "d"]]  # the first batch: nothing to wait for
    # The queue ran empty and the writer stopped. The load goes on: the next items arrive one
    # by one, and the writer gathers them instead of committing the first alone.
    items = []
    for i in range(8):
        items += submit_all(gc, [str(i)])
        await asyncio.sleep(0.005)
    await outcomes(items)
    assert len(ledger.batches[1]) >= 4, ledger.batches


async def test_without_a_linger_nothing_waits_for_company():
    ledger = Ledger()
    gc = batcher(ledger)  # linger None: the callback inbox's writer
    await outcomes(submit_all(gc, ["a", "b", "c", "d"]))
    started = time.perf_counter()
    await outcomes(submit_all(gc, ["e"]))
    assert time.perf_counter() - started < 0.1
    assert ledger.batches[-1] == ["e"]


# -- followers ------------------------------------------------------------------------------------


async def test_a_duplicate_in_flight_follows_its_leader_and_is_not_committed_again():
    ledger = Ledger()
    gc = GroupCommit(ledger.commit, name="test", on_duplicate=lambda f: Refused(f"duplicate of {f.value}"))
    leader, follower, other = Item("r1"), Item("r1-again"), Item("r2")
    gc.submit(KEY, leader, dedupe="r1")
    gc.submit(KEY, follower, dedupe="r1")
    gc.submit(KEY, other, dedupe="r2")
    done = await outcomes([leader, follower, other])
    assert done[0] == "id-r1" and done[2] == "id-r2"
    assert isinstance(done[1], Refused) and str(done[1]) == "duplicate of r1-again"
    assert ledger.rows == ["r1", "r2"]


async def test_without_on_duplicate_a_follower_gets_its_leaders_result():
    ledger = Ledger()
    gc = batcher(ledger)
    leader, follower = Item("r1"), Item("r1-again")
    gc.submit(KEY, leader, dedupe="r1")
    gc.submit(KEY, follower, dedupe="r1")
    assert await outcomes([leader, follower]) == ["id-r1", "id-r1"]
    assert ledger.rows == ["r1"]


async def test_a_follower_of_a_failed_leader_gets_its_error_and_the_key_is_free_afterwards():
    ledger = Ledger(refuse={"r1"})
    gc = batcher(ledger)
    leader, follower = Item("r1"), Item("r1-again")
    gc.submit(KEY, leader, dedupe="r1")
    gc.submit(KEY, follower, dedupe="r1")
    done = await outcomes([leader, follower])
    assert done[0] is done[1] and isinstance(done[0], Refused)
    ledger.refuse.clear()
    again = Item("r1")  # the key left with its leader: a later send leads again
    gc.submit(KEY, again, dedupe="r1")
    assert await outcomes([again]) == ["id-r1"]
    assert ledger.rows == ["r1"]


async def test_followers_of_a_leader_withdrawn_before_it_was_taken_go_on_their_own():
    ledger = Ledger(delay=0.02)
    gc = batcher(ledger)
    busy = submit_all(gc, ["busy"])
    await asyncio.sleep(0.005)  # the writer is committing "busy": the next ones queue
    leader, first, second = Item("r1"), Item("r1-b"), Item("r1-c")
    gc.submit(KEY, leader, dedupe="r1")
    gc.submit(KEY, first, dedupe="r1")
    gc.submit(KEY, second, dedupe="r1")
    assert gc.withdraw(KEY, [leader]) == [leader]  # its caller went away
    leader.future.cancel()
    done = await outcomes([first, second] + busy)
    assert done[:2] == ["id-r1-b", "id-r1-b"]  # the first follower led, the second followed it
    assert ledger.rows == ["busy", "r1-b"]


async def test_a_follower_that_went_on_alone_can_still_be_withdrawn_by_its_caller():
    ledger = Ledger(delay=0.02)
    gc = batcher(ledger)
    busy = submit_all(gc, ["busy"])
    await asyncio.sleep(0.005)
    leader, follower = Item("r1"), Item("r1-b")
    gc.submit(KEY, leader, dedupe="r1")
    gc.submit(KEY, follower, dedupe="r1")
    gc.withdraw(KEY, [leader])
    leader.future.cancel()
    await asyncio.sleep(0)  # the follower now leads, queued under its own item
    assert gc.withdraw(KEY, [follower]) == [follower]  # so its caller's withdrawal finds it
    follower.future.cancel()
    await outcomes(busy)
    await asyncio.sleep(0.01)
    assert ledger.rows == ["busy"]


async def test_a_cancelled_follower_is_neither_committed_nor_answered():
    ledger = Ledger()
    gc = batcher(ledger)
    leader, follower = Item("r1"), Item("r1-again")
    gc.submit(KEY, leader, dedupe="r1")
    gc.submit(KEY, follower, dedupe="r1")
    follower.future.cancel()
    assert await outcomes([leader]) == ["id-r1"]
    assert follower.future.cancelled() and ledger.rows == ["r1"]


# -- cancellation ---------------------------------------------------------------------------------


async def test_an_item_withdrawn_while_queued_is_never_charged_nor_committed():
    ledger, quota = Ledger(delay=0.02), Quota()
    gc = batcher(ledger, prepare=quota.charge, refund=quota.refund)
    busy = submit_all(gc, ["busy"])
    await asyncio.sleep(0.005)
    gone, stays = submit_all(gc, ["gone", "stays"])
    assert gc.withdraw(KEY, [gone]) == [gone]
    assert gc.withdraw(KEY, [gone]) == []  # once
    gone.future.cancel()
    assert await outcomes(busy + [stays]) == ["id-busy", "id-stays"]
    assert ledger.rows == ["busy", "stays"] and quota.used == 2 and not gone.charged


async def test_withdrawing_many_keeps_the_others_in_order():
    ledger = Ledger(delay=0.02)
    gc = batcher(ledger)
    busy = submit_all(gc, ["busy"])
    await asyncio.sleep(0.005)
    items = submit_all(gc, [str(i) for i in range(6)])
    assert gc.withdraw(KEY, items[1::2]) == items[1::2]
    await outcomes(busy + items[0::2])
    assert ledger.rows == ["busy", "0", "2", "4"]
    assert all(not i.future.done() for i in items[1::2])  # left as they were: nobody waits


async def test_a_caller_cancelled_after_its_item_was_taken_does_not_lose_or_duplicate_it():
    ledger, quota = Ledger(delay=0.05), Quota()
    gc = batcher(ledger, prepare=quota.charge, refund=quota.refund)
    items = submit_all(gc, ["a", "b", "c"])

    async def caller(item: Item) -> object:
        return await item.future

    waiting = asyncio.create_task(caller(items[1]))
    await asyncio.sleep(0.01)  # the batch is being committed
    waiting.cancel()
    assert gc.withdraw(KEY, [items[1]]) == []  # too late to take back: the batch decides
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await outcomes([items[0], items[2]]) == ["id-a", "id-c"]
    await asyncio.sleep(0)
    assert ledger.rows == ["a", "b", "c"]  # committed once, its caller just stopped waiting
    assert quota.used == 3 and quota.refunds == []


async def test_commit_together_survives_its_callers_cancellation():
    ledger = Ledger(delay=0.03)
    gc = batcher(ledger)
    items = [Item("x"), Item("y")]
    caller = asyncio.create_task(gc.commit_together(KEY, items))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0.05)
    assert ledger.rows == ["x", "y"]


# -- partial failure and refunds ----------------------------------------------------------------


async def test_one_bad_item_fails_alone_and_only_its_charge_is_refunded():
    ledger, quota = Ledger(refuse={"bad"}), Quota()
    gc = batcher(ledger, prepare=quota.charge, refund=quota.refund)
    items = submit_all(gc, ["a", "bad", "c"])
    done = await outcomes(items)
    assert done[0] == "id-a" and done[2] == "id-c"
    assert isinstance(done[1], Refused) and str(done[1]) == "refused bad"
    assert ledger.batches == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]  # the batch, then one by one
    assert ledger.rows == ["a", "c"]
    assert quota.refunds == [["bad"]] and quota.used == 2


async def test_without_splitting_a_failed_batch_fails_every_item_and_refunds_them_all():
    ledger, quota = Ledger(refuse={"bad"}), Quota()
    gc = batcher(ledger, prepare=quota.charge, refund=quota.refund, split_on_failure=False)
    items = submit_all(gc, ["a", "bad", "c"])
    done = await outcomes(items)
    assert all(isinstance(d, Refused) for d in done) and done[0] is done[1] is done[2]
    assert ledger.batches == [["a", "bad", "c"]] and ledger.rows == []
    assert quota.refunds == [["a", "bad", "c"]] and quota.used == 0


async def test_items_the_charge_refuses_are_answered_by_it_and_not_committed():
    ledger, quota = Ledger(), Quota(limit=2)
    gc = batcher(ledger, prepare=quota.charge, refund=quota.refund)
    items = submit_all(gc, ["a", "b", "c"])
    done = await outcomes(items)
    assert done[:2] == ["id-a", "id-b"] and str(done[2]) == "quota: c"
    assert ledger.rows == ["a", "b"] and quota.refunds == []


async def test_items_charged_by_their_caller_are_refunded_when_their_commit_fails():
    ledger, quota = Ledger(refuse={"b"}), Quota()
    gc = batcher(ledger, prepare=quota.charge, refund=quota.refund)
    quota.used = 2  # the caller took both units at once (BatchSendMessages)
    items = [Item("a", charged=True), Item("b", charged=True)]
    gc.submit_many(KEY, items)
    done = await outcomes(items)
    assert done[0] == "id-a" and isinstance(done[1], Refused)
    assert quota.used == 1 and quota.refunds == [["b"]]


async def test_a_failing_charge_fails_its_batch_and_the_writer_goes_on():
    ledger = Ledger()
    calls = 0

    async def charge(batch: list[Item]) -> list[Item]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Refused("the counter is down")
        return batch

    gc = batcher(ledger, prepare=charge, max_batch=2)
    items = submit_all(gc, ["a", "b", "c"])
    done = await outcomes(items)
    assert [str(d) for d in done[:2]] == ["the counter is down"] * 2 and done[2] == "id-c"
    assert ledger.rows == ["c"]


async def test_commit_together_is_all_or_none_and_refunds_on_failure():
    ledger, quota = Ledger(refuse={"b"}), Quota()
    gc = batcher(ledger, prepare=quota.charge, refund=quota.refund)
    quota.used = 3
    items = [Item(v, charged=True) for v in ("a", "b", "c")]
    with pytest.raises(Refused):
        await gc.commit_together(KEY, items)
    assert ledger.rows == [] and quota.used == 0 and quota.refunds == [["a", "b", "c"]]
    ledger.refuse.clear()
    fresh = [Item(v, charged=True) for v in ("a", "b")]
    await gc.commit_together(KEY, fresh)
    assert ledger.rows == ["a", "b"] and all(i.future.done() for i in fresh)
