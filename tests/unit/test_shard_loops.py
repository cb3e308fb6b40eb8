"""ShardLoops: one loop per shard, new shards picked up, stopped together (with a grace)."""

from __future__ import annotations

import asyncio

from wework.server.workers.shard_loops import ShardLoops


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
