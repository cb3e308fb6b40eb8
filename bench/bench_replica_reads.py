"""Cost of replica routing: read-only transactions on a replica vs on the primary, same run.

Starts a private MariaDB primary/replica pair (semi-sync, GTID; tests/harness/replication.py),
migrates one shard, and measures sequential read-only units of work (one primary-key SELECT of a
tenant row) in these modes:

- primary (baseline): the same shard map without replicas;
- replica, local tracker: reads routed to the replica, read-your-writes state in the process;
- replica, Redis tracker: the same with the GTIDs shared through Redis (one MGET per read);
- write then read, primary: a tenant write followed by its read, no replicas (baseline);
- write then read, replica: the same with routing: the read waits for its own write's GTID on
  the replica (`MASTER_GTID_WAIT`), the write records its GTID (`@@last_gtid`, Redis).

    .venv/bin/python bench/bench_replica_reads.py [--redis redis://127.0.0.1:6379/0] [--ops 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness import make_database_config, new_db_prefix
from harness.replication import execute, start_replicated_pair
from wework.persistence.config import RedisConfig, ShardSpec
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import Tenant
from wework.persistence.redis.client import create_redis
from wework.persistence.replicas import RedisWriteTracker, ReplicaMonitor


async def _write(db: Database, tenant_id: str) -> None:
    async with db.unit_of_work("user", tenant_id) as uow:
        uow.session.add(Tenant(id=tenant_id, tenant_code=f"c-{tenant_id[-12:]}", tenant_name="Acme"))


async def _read(db: Database, tenant_id: str) -> None:
    async with db.unit_of_work("user", tenant_id, read_only=True) as uow:
        await uow.session.get(Tenant, tenant_id)


async def _measure(label: str, n: int, op) -> None:
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        await op(i)
        latencies.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    print(f"{label:<34} {n / total:>8.0f} ops/s   p50 {q[49] * 1000:6.2f} ms   p99 {q[98] * 1000:6.2f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args()
    print(f"{platform.platform()}, {platform.processor() or 'cpu'}, python {platform.python_version()}")
    pair = start_replicated_pair()
    try:
        prefix = new_db_prefix("b")
        base = make_database_config(prefix, [pair.primary], 1)
        replicated = base.model_copy(update={"shards": [ShardSpec(
            **{**base.shards[0].model_dump(), "replicas": [pair.replica.url(f"{prefix}_{{db}}_0")]})]})
        await migrate_all(base)
        position = execute(pair.primary, "SELECT @@gtid_binlog_pos")[0][0]
        execute(pair.replica, "SELECT MASTER_GTID_WAIT(%s, 60)", (position,))
        tenants = [new_id() for _ in range(200)]
        plain = Database(base)
        for t in tenants:
            await _write(plain, t)

        routed = Database(replicated)
        monitor = ReplicaMonitor(routed)
        await monitor.start()
        while not routed.replicas.usable("s0"):
            await asyncio.sleep(0.05)
        reached: dict[str, int] = {}
        routed.replicas.on_read = lambda shard, target, reason: reached.__setitem__(
            f"{target}/{reason}", reached.get(f"{target}/{reason}", 0) + 1)
        redis = create_redis(RedisConfig(url=args.redis))
        n = args.ops
        try:
            await _measure("read, primary (baseline)", n, lambda i: _read(plain, tenants[i % 200]))
            await _measure("read, replica, local tracker", n, lambda i: _read(routed, tenants[i % 200]))
            routed.replicas.tracker = RedisWriteTracker(redis, f"{prefix}:", ttl=10)
            await _measure("read, replica, Redis tracker", n, lambda i: _read(routed, tenants[i % 200]))

            async def write_read(db: Database) -> None:
                t = new_id()
                await _write(db, t)
                await _read(db, t)

            await _measure("write+read, primary (baseline)", n // 4, lambda i: write_read(plain))
            await _measure("write+read, replica (RYW wait)", n // 4, lambda i: write_read(routed))
            print("read routing:", dict(sorted(reached.items())))
        finally:
            await monitor.close()
            await routed.dispose()
            await plain.dispose()
            keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()
    finally:
        pair.stop()


if __name__ == "__main__":
    asyncio.run(main())
