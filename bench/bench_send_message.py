"""SendMessage accepted per second against a no-op RPC (grpc.health.v1.Health/Check) on the
same server.

Starts wework-server (embedded: SQLite + in-process Redis; or --mariadb/--redis for the real
ones), creates a tenant with a quota large enough for the run, an API key and an account, then
drives both RPCs from N concurrent callers on one asyncio channel, in alternating rounds, and
prints throughput and P50/P95/P99 of each with the ratio. Every SendMessage carries its own
request_id, as the client facade sends it: the accept path is authentication, validation, the
tenant and account lookups (cached), the Redis quota INCRBY and one transaction inserting the
message and its idempotency key.

    .venv/bin/python bench/bench_send_message.py [--clients 16] [--seconds 5] [--rounds 2]
    .venv/bin/python bench/bench_send_message.py --mariadb mysql+aiomysql://root@127.0.0.1:3306 \\
        --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wework.client import ClientOptions, WeworkClient
from wework.v1 import account_pb2, message_pb2, message_pb2_grpc
from wework.v1 import tenant_pb2 as tpb

sys.path.insert(0, str(Path(__file__).parent))
from bench_get_account import _drop_databases, drive, percentile, start_server


def prepare(target: str, admin_key: str) -> tuple[str, str]:
    """A tenant (quota for the run), an admin API key and an account: (key, account id)."""
    with WeworkClient(ClientOptions(target, api_key=admin_key)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=f"bench{secrets.token_hex(3)}",
                                                        tenant_name="Bench", max_daily_messages=100_000_000))
        inside = admin.with_options(tenant_id=tenant.id)
        roles = {r.role_code: r.id for r in inside.tenants.iter_roles()}
        key = inside.tenants.create_api_key(tpb.ApiKey(display_name="bench", role_id=roles["admin"])).secret
    with WeworkClient(ClientOptions(target, api_key=key)) as client:
        account = client.accounts.create_account(account_pb2.Account(account_name="bench"))
    return key, account.id


async def measure(target: str, key: str, account_id: str, args: argparse.Namespace) -> dict[str, dict]:
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        messages = message_pb2_grpc.MessageServiceStub(channel)
        md = (("x-api-key", key),)
        check_req = health_pb2.HealthCheckRequest(service="wework.v1.MessageService")
        content = message_pb2.MessageContent(text=message_pb2.TextContent(text="benchmark message"))
        # Scheduled a day ahead: a dispatcher running in the server leaves them alone, so the
        # figure is the accept path only.
        later = time.time() + 86400

        def send():
            req = message_pb2.SendMessageRequest(account_id=account_id, conversation_id="wmbench",
                                                 content=content, request_id=str(uuid.uuid4()))
            req.scheduled_time.FromSeconds(int(later))
            return messages.SendMessage(req, metadata=md, timeout=10)

        calls = {
            "Health/Check (no-op)": lambda: health.Check(check_req, timeout=10),
            "SendMessage": send,
        }
        for call in calls.values():
            await drive(call, args.clients, args.warmup)
        results: dict[str, list[float]] = {name: [] for name in calls}
        elapsed: dict[str, float] = dict.fromkeys(calls, 0.0)
        for _ in range(args.rounds):
            for name, call in calls.items():
                t0 = time.perf_counter()
                results[name] += await drive(call, args.clients, args.seconds)
                elapsed[name] += time.perf_counter() - t0
    out = {}
    for name, lat in results.items():
        lat.sort()
        out[name] = {"calls": len(lat), "rps": len(lat) / elapsed[name], "p50": percentile(lat, 50) * 1e3,
                     "p95": percentile(lat, 95) * 1e3, "p99": percentile(lat, 99) * 1e3}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16, help="concurrent callers (default 16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per RPC and round (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per RPC (default 1)")
    parser.add_argument("--mariadb", help="MariaDB base URL, e.g. mysql+aiomysql://root@127.0.0.1:3306 "
                                          "(default: the embedded SQLite mode)")
    parser.add_argument("--redis", help="Redis URL, e.g. redis://127.0.0.1:6379/0 (default: in-process)")
    parser.add_argument("--dispatcher", action="store_true",
                        help="keep the dispatcher running inside the server (default: off, the accept path alone)")
    args = parser.parse_args()
    # Without the dispatcher the figures are those of the accept path alone.
    extra = None if args.dispatcher else {"message": {"run_dispatcher_in_server": False}}

    workdir = Path(tempfile.mkdtemp(prefix="wwbench-"))
    admin_key = "wwadmin_" + secrets.token_urlsafe(24)
    proc, port, info = start_server(workdir, args, admin_key, extra)
    try:
        target = f"127.0.0.1:{port}"
        key, account_id = prepare(target, admin_key)
        results = asyncio.run(measure(target, key, account_id, args))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if args.mariadb:
            _drop_databases(args.mariadb, info["prefix"])
        shutil.rmtree(workdir, ignore_errors=True)

    mode = f"MariaDB + {'Redis' if args.redis else 'in-process Redis'}" if args.mariadb else (
        "embedded (SQLite, in-process Redis)" if not args.redis else "SQLite + Redis")
    mode += "; dispatcher in the server" if args.dispatcher else "; no dispatcher in the server"
    print(f"SendMessage benchmark: {mode}; {args.clients} concurrent callers on one channel, "
          f"{args.rounds} x {args.seconds:g} s per RPC; {os.cpu_count()} CPU(s), {platform.python_version()}, "
          f"server and load generator on this machine")
    print(f"{'rpc':24} {'calls':>8} {'calls/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:24} {r['calls']:>8} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f}")
    noop, send = results["Health/Check (no-op)"], results["SendMessage"]
    ratio = send["rps"] / noop["rps"]
    print(f"SendMessage / no-op: throughput x{ratio:.2f} (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'}), "
          f"SendMessage p99 {send['p99']:.1f} ms (target < 50 ms: {'met' if send['p99'] < 50 else 'NOT met'})")
    print(json.dumps({"mode": mode, "clients": args.clients, "results": results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
