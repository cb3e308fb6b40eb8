"""Throughput of the shared pacing (workers/pacing.py) across many accounts, on a real Redis.

Several dispatchers (each with its own Redis client, as separate processes have) send for many
accounts at once; every account is paced at INTERVAL and each dispatcher runs one lane per
account it holds, exactly as the dispatcher does (reserve, sleep the wait, "send"). Prints the
sends per second reached beside what the accounts' intervals allow (accounts / interval), and
beside a same-run baseline with the process-local pacing (one dispatcher, no Redis round trip):
the shared pacing should scale with the number of accounts, not serialise them.

    .venv/bin/python bench/bench_pacing.py [--accounts 200] [--sends 10] [--dispatchers 3] \\
        [--interval 0.05] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import secrets
import time

from wework.domain.dispatch import PacingLimits
from wework.persistence.config import RedisConfig
from wework.persistence.redis.client import create_redis
from wework.server.workers.pacing import LocalPacing, Pacing, RedisPacing


async def _lane(pacing: Pacing, account: str, sends: int, limits: PacingLimits) -> None:
    for i in range(sends):
        while True:
            slot = await pacing.reserve(account, f"member-{i}", secrets.token_hex(8), horizon=1.0, limits=limits)
            await asyncio.sleep(slot.wait)
            if slot.reserved:
                break


async def _run(pacers: list[Pacing], accounts: list[str], sends: int, limits: PacingLimits) -> float:
    started = time.perf_counter()
    # Each account's sends are split between the dispatchers (they claim its messages in turn).
    await asyncio.gather(*(_lane(pacers[k % len(pacers)], a, sends // len(pacers) or 1, limits)
                           for a in accounts for k in range(len(pacers))))
    return time.perf_counter() - started


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--sends", type=int, default=9, help="per account")
    ap.add_argument("--dispatchers", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    limits = PacingLimits(args.interval, 0.0, None, None, 10**6, 10**6)
    clients = [create_redis(RedisConfig(url=args.redis)) for _ in range(args.dispatchers)]
    prefix = f"bench-pacing-{secrets.token_hex(4)}:"  # its own keys, which expire by themselves
    try:
        per_account = (args.sends // args.dispatchers or 1) * args.dispatchers
        total = args.accounts * per_account
        ideal = args.accounts / args.interval
        shared = await _run([RedisPacing(c, prefix) for c in clients], [f"a{i}" for i in range(args.accounts)],
                            per_account, limits)
        local = await _run([LocalPacing()], [f"a{i}" for i in range(args.accounts)], per_account, limits)
    finally:
        for c in clients:
            await c.aclose()
    print(f"python {platform.python_version()}, {args.accounts} accounts x {per_account} sends, "
          f"interval {args.interval} s, {args.dispatchers} dispatchers")
    print(f"intervals allow      {ideal:10.0f} sends/s")
    print(f"shared (Redis)       {total / shared:10.0f} sends/s  ({shared:.2f} s)")
    print(f"baseline (in memory) {total / local:10.0f} sends/s  ({local:.2f} s)")


if __name__ == "__main__":
    asyncio.run(main())
