"""Batch materialization: 100,000 recipients into MariaDB, as StartBatchTask writes them.

Measures `BatchRepository.materialize_task`, StartBatchTask's write: the task row locked, the
batch split over --writers connections (Start's own transaction and XA branches prepared
beside it, committed after it), each writing pipelined `LOAD DATA LOCAL` statements of 5,000
rows served from memory (wework.persistence.bulk), the values the batch shares once per
statement. In the same run against the same table: the same rows through one connection
(`materialize`), and as the baseline a plain executemany of them through SQLAlchemy
(`session.execute(insert(Message), rows)`). Each run is one transaction, as in StartBatchTask.
Rows are shaped as Start makes them: each its own microsecond of created_at, and its own
content (per-recipient template variables) unless --shared-content.

    .venv/bin/python bench/bench_batch_materialize.py [--rows 100000] [--rounds 2] [--writers 2] [--shared-content] \\
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_get_account import _drop_databases
from harness.batches import add_created_task
from harness.servers import start_private_mariadb
from wework.persistence.config import DatabaseConfig, ShardSpec
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import message as mm
from wework.persistence.repositories.batches import MATERIALIZE_CHUNK, MATERIALIZE_WRITERS

TENANT = "00000000-0000-7000-8000-000000000001"
WAYS = ("executemany (baseline)", "one connection (materialize)", "StartBatchTask's write (materialize_task)")


def make_rows(n: int, batch_id: str, shared_content: bool) -> tuple[dict, list[dict]]:
    """What StartBatchTask hands to materialization: the columns the batch shares, and per
    recipient its id, its own microsecond of created_at, the conversation and, with
    per-recipient template variables, its own content."""
    now = datetime.now(UTC)
    shared = {"updated_at": now, "tenant_id": TENANT, "account_id": "acc-1", "message_type": "text",
              "template_id": None, "batch_id": batch_id, "priority": 5}
    if shared_content:
        shared["content"] = {"text": "Hello, this is a batch message."}
        return shared, [{"id": new_id(), "created_at": now + timedelta(microseconds=i),
                         "conversation_id": f"wmchat-{i:07d}"} for i in range(n)]
    return shared, [{"id": new_id(), "created_at": now + timedelta(microseconds=i), "conversation_id": f"wmchat-{i:07d}",
                     "content": {"text": f"Hello recipient {i}, this is a batch message."}} for i in range(n)]


async def run(args: argparse.Namespace) -> None:
    prefix = f"wwbench_{secrets.token_hex(4)}"
    base = args.mariadb.rstrip("/")
    config = DatabaseConfig(directory_dsn=f"{base}/{prefix}_directory",
                            shards=[ShardSpec(name="s0", buckets="0-1023", dsn=f"{base}/{prefix}_{{db}}_0")])
    try:
        await migrate_all(config)
        db = Database(config, ["message"])
        await db.start()
        results: dict[str, list[float]] = {name: [] for name in WAYS}
        try:
            for _ in range(args.rounds):
                for name, runs in results.items():
                    task_id = await add_created_task(db, TENANT, creator_id="bench", task_name="bench")
                    shared, rows = make_rows(args.rows, task_id, args.shared_content)
                    if name == WAYS[0]:
                        rows = [{**shared, **row} for row in rows]
                    t0 = time.perf_counter()
                    async with db.unit_of_work("message", TENANT) as uow:
                        repo = uow.batches
                        if name == WAYS[0]:
                            await uow.session.execute(sa.insert(mm.Message), rows)
                        elif name == WAYS[1]:
                            await repo.materialize(rows, args.chunk, shared=shared)
                        else:  # as Start: the task row locked, the batch split over XA branches
                            await repo.get(TENANT, task_id, for_update=True)
                            uow.enlist(await repo.materialize_task(task_id, rows, shared=shared,
                                                                   writers=args.writers, chunk=args.chunk))
                    runs.append(args.rows / (time.perf_counter() - t0))
            async with db.unit_of_work("message", TENANT, read_only=True) as uow:
                total = (await uow.session.execute(sa.select(sa.func.count()).select_from(mm.Message))).scalar_one()
            assert total == args.rows * args.rounds * len(WAYS), total
        finally:
            await db.dispose()
    finally:
        _drop_databases(args.mariadb, prefix)
    print(f"batch materialization: {args.rows} rows per run, {args.rounds} round(s), one transaction per run, "
          f"{args.chunk} rows per statement; "
          f"{os.cpu_count()} CPU(s), Python {platform.python_version()}")
    best = {name: max(v) for name, v in results.items()}
    for name, values in results.items():
        print(f"  {name:44s} best {best[name]:>9,.0f} rows/s   runs: {', '.join(f'{v:,.0f}' for v in values)}")
    print(f"  ratio Start's write / executemany: {best[WAYS[2]] / best[WAYS[0]]:.2f}x; "
          f"{args.writers} connections / one: {best[WAYS[2]] / best[WAYS[1]]:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=MATERIALIZE_CHUNK, help="rows per LOAD DATA statement")
    parser.add_argument("--writers", type=int, default=MATERIALIZE_WRITERS,
                        help="connections writing Start's batch (XA branches beside its transaction)")
    parser.add_argument("--shared-content", action="store_true",
                        help="one content for every recipient (no per-recipient template variables)")
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
