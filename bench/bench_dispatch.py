"""Dispatch throughput of one worker process through the provider simulator, on MariaDB.

Inserts N due messages over several ONLINE simulator instances (accounts), runs one Dispatcher's
shard loop (the same code `wework-worker dispatch` runs: claims ahead, records behind) until
every message is recorded as `sent`, and prints messages/s. Baseline in the same run: the same
loop with a no-op provider (returns at once, no simulator bookkeeping, no receipts), i.e. the
cost of claiming and recording alone. Pacing is off (interval 0) so that the machinery, not the
safety limits, is measured; the account lookup is a static table (the account service is not
what is measured here). After each run the database must show every message `sent` and counted
once in message_statistics, and the simulator must have received each message once.

    .venv/bin/python bench/bench_dispatch.py [--messages 20000] [--accounts 50] \\
        [--mariadb mysql+aiomysql://root@127.0.0.1:3306]
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
from bench_get_account import _drop_databases
from wework.domain.accounts import AccountStatus
from wework.persistence.config import DatabaseConfig, ShardSpec
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import message as mm
from wework.server.providers.base import SendResult
from wework.server.providers.simulator import SimulatorConfig, SimulatorProvider
from wework.server.providers.sinks import CollectingSink
from wework.server.workers.dispatch import Dispatcher, DispatchSettings

TENANT = "00000000-0000-7000-8000-000000000002"


class StaticAccounts:
    def __init__(self, guids: dict[str, str]) -> None:
        self.guids = guids

    async def account_for_send(self, tenant_id: str, account_id: str):
        return AccountStatus.ONLINE, self.guids[account_id]


class NoopProvider:
    async def send_message(self, guid, *, conversation_id, message_type, content, idempotency_key):
        return SendResult(wework_msg_id="noop")


async def insert(db: Database, n: int, accounts: list[str]) -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    rows = [{"id": new_id(), "created_at": now, "updated_at": now, "tenant_id": TENANT,
             "account_id": accounts[i % len(accounts)], "conversation_id": f"wmchat-{i}", "message_type": "text",
             "content": {"text": f"hello {i}"}, "template_id": None, "status": "pending", "retry_count": 0,
             "batch_id": None, "priority": 5, "paused": False} for i in range(n)]
    async with db.unit_of_work("message", TENANT) as uow:
        await uow.batches.materialize(rows)


async def measure(db: Database, provider, guids: dict[str, str], n: int, settings: DispatchSettings) -> float:
    """Inserts n due messages, runs a dispatcher's shard loop (what the worker runs) until all n
    are recorded as sent, and returns messages/s; then checks the run against the database."""
    await insert(db, n, list(guids))
    async with db.unit_of_work("message", TENANT, read_only=True) as uow:
        sent_before, counted_before = await _sent_and_counted(uow.session)
    d = Dispatcher(db, provider, StaticAccounts(guids), settings)
    t0 = time.perf_counter()
    await d.start()
    try:
        while d.stats.sent < n:
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - t0
    finally:
        await d.close()
    assert d.stats.sent == n, d.stats
    async with db.unit_of_work("message", TENANT, read_only=True) as uow:
        sent_after, counted_after = await _sent_and_counted(uow.session)
    # Every message sent and counted in message_statistics exactly once.
    assert (sent_after - sent_before, counted_after - counted_before) == (n, n), (sent_after, counted_after)
    return n / elapsed


async def _sent_and_counted(session) -> tuple[int, int]:
    m, s = mm.Message, mm.MessageStatistic
    sent = (await session.execute(sa.select(sa.func.count()).select_from(m).where(m.status == "sent"))).scalar_one()
    counted = (await session.execute(sa.select(sa.func.coalesce(sa.func.sum(s.success_count), 0)))).scalar_one()
    return int(sent), int(counted)


async def run(args: argparse.Namespace) -> None:
    prefix = f"wwbench_{secrets.token_hex(4)}"
    base = args.mariadb.rstrip("/")
    config = DatabaseConfig(directory_dsn=f"{base}/{prefix}_directory",
                            shards=[ShardSpec(name="s0", buckets="0-1023", dsn=f"{base}/{prefix}_{{db}}_0")])
    settings = DispatchSettings(account_min_interval_seconds=0, account_jitter_seconds=0,
                                claim_batch_size=args.claim, max_in_flight=256,
                                recipient_per_minute=10**9, recipient_per_hour=10**9)
    results: dict[str, list[float]] = {"no-op provider (baseline)": [], "simulator": []}
    sim = SimulatorProvider(CollectingSink(), SimulatorConfig(scan_delay_seconds=0, confirm_delay_seconds=0,
                                                             heartbeat_interval_seconds=3600,
                                                             delivery_delay_seconds=3600))
    try:
        await migrate_all(config)
        db = Database(config, ["message"])
        await db.start()
        guids = {f"acc-{i}": f"guid-{i}" for i in range(args.accounts)}
        for guid in guids.values():
            await sim.create_instance(guid)
            await sim.get_login_qr(guid)
        await sim.drain()
        try:
            for _ in range(args.rounds):
                for name, runs in results.items():
                    provider = NoopProvider() if name.startswith("no-op") else sim
                    runs.append(await measure(db, provider, guids, args.messages, settings))
            # The simulator received every message once: no duplicate send across the runs.
            assert len(sim.sent_messages) == args.messages * args.rounds and not sim.duplicate_sends
        finally:
            await db.dispose()
    finally:
        await sim.close()
        _drop_databases(args.mariadb, prefix)
    print(f"dispatch: {args.messages} messages per run over {args.accounts} accounts, one dispatcher "
          f"(claim batch {args.claim}), MariaDB, {args.rounds} round(s); {os.cpu_count()} CPU(s), "
          f"Python {platform.python_version()}")
    for name, runs in results.items():
        print(f"  {name:28s} best {max(runs):>8,.0f} messages/s   runs: {', '.join(f'{v:,.0f}' for v in runs)}")
    names = list(results)
    print(f"  ratio simulator / no-op: {max(results[names[1]]) / max(results[names[0]]):.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--claim", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mariadb", default="mysql+aiomysql://root@127.0.0.1:3306")
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
