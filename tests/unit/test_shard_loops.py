"""ShardLoops: one loop per shard, new shards picked up, stopped together (with a grace); the
ShardWorker frame of the queue workers: chores between claims, claim rounds, the stop."""

from __future__ import annotations

import asyncio

from wework.server.workers.shard_loops import Chore, ShardLoops, ShardWorker


class Shards:
    """What ShardLoops reads of a Database: the shard names, which the runtime map may change."""

    def __init__(self, *names: str) -> None:
        self.shard_names = list(names)


async def test_one_loop_per_shard_new_shards_on_ensure_and_none_after_close():
    db, seen = Shards("s0", "s1"), []

    async def loop(shard: str) -> None:
        seen.append(shard)
        await asyncio.sleep(3600)

    loops = ShardLoops(db, "work", loop)  # type: ignore[arg-type]
    loops.ensure()  # before start: nothing
    await asyncio.sleep(0)
    assert seen == []
    loops.start()
    await asyncio.sleep(0)
    db.shard_names.append("s2")
    loops.ensure()
    loops.ensure()  # idempotent: s2 once
    await asyncio.sleep(0)
    assert sorted(seen) == ["s0", "s1", "s2"]
    await loops.close()
    db.shard_names.append("s3")
    loops.ensure()  # after close: nothing
    await asyncio.sleep(0)
    assert "s3" not in seen


async def test_close_lets_loops_finish_within_the_grace_then_cancels_the_rest():
    stop, finished, cancelled = asyncio.Event(), [], []

    async def loop(shard: str) -> None:
        try:
            if shard == "quick":
                await stop.wait()
                finished.append(shard)
            else:
                await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(shard)
            raise

    loops = ShardLoops(Shards("quick", "stuck"), "work", loop)  # type: ignore[arg-type]
    loops.start()
    await asyncio.sleep(0)
    stop.set()
    await loops.close(grace_seconds=0.2)
    assert finished == ["quick"] and cancelled == ["stuck"]


async def test_a_chore_runs_when_due_and_then_not_before_its_interval():
    runs = []

    async def run() -> None:
        runs.append(1)

    now_due, later = Chore(3600, run, first_after_seconds=0), Chore(3600, run, first_after_seconds=3600)
    await asyncio.sleep(0.001)
    await now_due.run_if_due()
    await now_due.run_if_due()  # within the interval: not again
    await later.run_if_due()  # its first run is an hour away
    assert runs == [1]
    quick = Chore(0.01, run)  # due at once: the host has been up longer than 10 ms
    await quick.run_if_due()
    await asyncio.sleep(0.02)
    await quick.run_if_due()
    assert runs == [1, 1, 1]


class Worker(ShardWorker):
    """Claims what `queue` holds, one item a round; the first round fails."""

    def __init__(self, db: Shards, queue: list[str]) -> None:
        super().__init__(db, "work", None, "w1")  # type: ignore[arg-type]
        self.queue, self.handled, self.swept, self.rounds = queue, [], 0, 0

    async def _sweep(self) -> None:
        self.swept += 1

    async def run_once(self, shard: str) -> int:
        self.rounds += 1
        if self.rounds == 1:
            raise RuntimeError("the database blinked")
        if not self.queue:
            return 0
        self.handled.append((shard, self.queue.pop(0)))
        return 1

    async def _shard_loop(self, shard: str) -> None:
        await self._claim_rounds(shard, [Chore(3600, self._sweep, first_after_seconds=0)], idle_poll_seconds=3600,
                                 what="work", failures_wait_for_wake=True)


async def test_claim_rounds_retry_a_failed_round_run_chores_and_end_idle_loops_at_the_stop(caplog):
    worker = Worker(Shards("s0"), ["a", "b"])
    assert worker.worker_id == "w1"
    await worker.start()
    await asyncio.sleep(1.2)  # the failed round, its pause of a second, then both items
    assert worker.handled == [("s0", "a"), ("s0", "b")]
    assert worker.swept == 1  # due at once, then not within its hour
    assert "work on shard s0 failed; retrying" in caplog.text
    # Now idle for an hour: the stop wakes it, and it ends by itself within the grace.
    await asyncio.wait_for(worker._stop_loops(grace_seconds=5), 1.0)
    assert not worker._loop_events
