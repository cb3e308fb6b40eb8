"""Batch materialization: 100,000 recipients into MariaDB, as StartBatchTask writes them.

Measures `BatchRepository.materialize` (pipelined `LOAD DATA LOCAL` statements of 5,000 rows
served from memory by wework.persistence.bulk) and,
as the baseline in the same run against the same table, a plain executemany of the same rows
through SQLAlchemy (`session.execute(insert(Message), rows)`). Each run is one transaction, as
in StartBatchTask; rows/s is printed for both with the ratio.

    .venv/bin/python bench/bench_batch_materialize.py [--rows 100000] [--rounds 2] \\
        [--mariadb mysql+aiomysql://root@127.0.0.1:3306 | --own-server]

--own-server starts a private mariadbd (tests/harness) with a buffer pool, redo log and log
buffer sized like a database host's (the machine's shared server has a 128 MB pool, a 16 MB log
buffer, and serves other jobs) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_get_account import _drop_databases
from harness.servers import start_private_mariadb
from wework.persistence.config import DatabaseConfig, ShardSpec
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import message as mm
from wework.persistence.repositories.batches import MATERIALIZE_CHUNK, BatchRepository

TENANT = "00000000-0000-7000-8000-000000000001"


def make_rows(n: int, batch_id: str) -> list[dict]:
    now = datetime.now(UTC)
    return [{"id": new_id(), "created_at": now, "updated_at": now, "tenant_id": TENANT, "account_id": "acc-1",
             "conversation_id": f"wmchat-{i:07d}", "message_type": "text",
             "content": {"text": f"Hello recipient {i}, this is a batch message."}, "template_id": None,
             "status": "pending", "retry_count": 0, "batch_id": batch_id, "priority": 5, "paused": False}
            for i in range(n)]


async def run(args: argparse.Namespace) -> None:
    prefix = f"wwbench_{secrets.token_hex(4)}"
    base = args.mariadb.rstrip("/")
    config = DatabaseConfig(directory_dsn=f"{base}/{prefix}_directory",
                            shards=[ShardSpec(name="s0", buckets="0-1023", dsn=f"{base}/{prefix}_{{db}}_0")])
    try:
        await migrate_all(config)
        db = Database(config, ["message"])
        await db.start()
        results: dict[str, list[float]] = {"executemany (baseline)": [], "materialize (LOAD DATA LOCAL)": []}
        try:
            for _ in range(args.rounds):
                for name, runs in results.items():
                    rows = make_rows(args.rows, new_id())
                    t0 = time.perf_counter()
                    async with db.unit_of_work("message", TENANT) as uow:
                        if name.startswith("executemany"):
                            await uow.session.execute(sa.insert(mm.Message), rows)
                        else:
                            await BatchRepository(uow.session).materialize(rows, args.chunk)
                    runs.append(args.rows / (time.perf_counter() - t0))
            async with db.unit_of_work("message", TENANT, read_only=True) as uow:
                total = (await uow.session.execute(sa.select(sa.func.count()).select_from(mm.Message))).scalar_one()
            assert total == args.rows * args.rounds * 2, total
        finally:
            await db.dispose()
    finally:
        _drop_databases(args.mariadb, prefix)
    print(f"batch materialization: {args.rows} rows per run, {args.rounds} round(s), one transaction per run, "
          f"{args.chunk} rows per statement; "
          f"{os.cpu_count()} CPU(s), Python {platform.python_version()}")
    best = {name: max(v) for name, v in results.items()}
    for name, values in results.items():
        print(f"  {name:34s} best {best[name]:>9,.0f} rows/s   runs: {', '.join(f'{v:,.0f}' for v in values)}")
    names = list(results)
    print(f"  ratio materialize / executemany: {best[names[1]] / best[names[0]]:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=MATERIALIZE_CHUNK, help="rows per LOAD DATA statement")
    parser.add_argument("--mariadb", default="mysql+aiomysql://root@127.0.0.1:3306")
    parser.add_argument("--own-server", action="store_true",
                        help="start a private mariadbd with a 2 GB buffer pool, a 1 GB redo log and a "
                             "256 MB log buffer")
    args = parser.parse_args()
    if not args.own_server:
        asyncio.run(run(args))
        return 0
    # A 100,000-row transaction writes tens of MB of redo: with the default 16 MB log buffer the
    # writing thread waits for the log writer.
    server = start_private_mariadb(["--innodb-buffer-pool-size=2G", "--innodb-log-file-size=1G",
                                    "--innodb-log-buffer-size=256M",
                                    "--innodb-io-capacity=2000", "--innodb-io-capacity-max=4000"])
    try:
        args.mariadb = server.url()
        print(f"private mariadbd on port {server.port}: 2 GB buffer pool, 1 GB redo log, 256 MB log buffer")
        asyncio.run(run(args))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
