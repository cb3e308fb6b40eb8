"""Provider callbacks ingested per second and ack latency (P50/P95/P99) on the HTTP ingress,
against a no-op handler (POST /provider/noop) on the same aiohttp server stack in the same run.

Starts wework-server with the callback port, a signing secret and `callback.bench_routes`
(which adds the no-op route: it reads the body and answers 200, nothing else), creates a
tenant and an account, then drives both routes from N concurrent aiohttp callers (keep-alive), in
alternating rounds. Every ingested callback is a distinct, signed MESSAGE_RECEIVED for the
account: the measured path is signature check, replay check (Redis SET NX), guid -> tenant
(cached), one transaction inserting the dedupe row and the callback, and the wake-up. Callback
processing is off in the server by default (--with-processor turns it on), so that the figure
is the ingress alone.

    .venv/bin/python bench/bench_callback_ingest.py [--clients 32] [--seconds 5] [--rounds 2]
    .venv/bin/python bench/bench_callback_ingest.py --mariadb mysql+aiomysql://root@127.0.0.1:3306 \\
        --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from wework.client import ClientOptions, WeworkClient
from wework.domain.callbacks import sign

sys.path.insert(0, str(Path(__file__).parent))
from bench_get_account import clean_up, drive, free_port, percentile, prepare, start_server, stop_server

SECRET = "bench-callback-secret"


def callback_body(guid: str, i: int) -> bytes:
    return json.dumps({"event_id": uuid.uuid4().hex, "guid": guid, "notify_type": 12004,
                       "data": {"conversation_id": f"bench-{i % 100}", "sender": "bench",
                                "content": {"text": "hello from the benchmark"}},
                       "time": "2026-11-28T00:00:00Z"}, separators=(",", ":")).encode()


async def measure(base: str, guid: str, args: argparse.Namespace) -> dict[str, dict]:
    # aiohttp's client: far less CPU per request than httpx, so the load generator (on the same
    # machine) takes less from the server it measures.
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        async def ingest() -> None:
            raw = callback_body(guid, next(counter))
            ts = str(int(time.time()))
            async with http.post("/provider/callbacks", data=raw, headers={
                    "Content-Type": "application/json", "X-Provider-Timestamp": ts,
                    "X-Provider-Signature": sign(SECRET, ts, raw)}) as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"ingest answered {r.status}")

        async def noop() -> None:
            raw = callback_body(guid, next(counter))
            ts = str(int(time.time()))
            sign(SECRET, ts, raw)  # the client side does the same work for both
            async with http.post("/provider/noop", data=raw, headers={
                    "Content-Type": "application/json", "X-Provider-Timestamp": ts,
                    "X-Provider-Signature": "x"}) as r:
                await r.read()
                r.raise_for_status()

        calls = {"no-op handler": noop, "ingest (stored)": ingest}
        for call in calls.values():
            await drive(call, args.clients, args.warmup)
        results: dict[str, list[float]] = {name: [] for name in calls}
        elapsed = dict.fromkeys(calls, 0.0)
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
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP callers (default 32)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per route and round (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per route (default 1)")
    parser.add_argument("--with-processor", action="store_true", help="process callbacks in the server meanwhile")
    parser.add_argument("--mariadb", help="MariaDB base URL, e.g. mysql+aiomysql://root@127.0.0.1:3306 "
                                          "(default: the embedded SQLite mode)")
    parser.add_argument("--redis", help="Redis URL, e.g. redis://127.0.0.1:6379/0 (default: in-process)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wwbench-"))
    admin_key = "wwadmin_" + secrets.token_urlsafe(24)
    http_port = free_port()
    proc, port, info = start_server(workdir, args, admin_key, extra_settings={"callback": {
        "http_port": http_port, "secret": SECRET, "bench_routes": True,
        "run_processor_in_server": args.with_processor}})
    try:
        target = f"127.0.0.1:{port}"
        key, account_id = prepare(target, admin_key)
        with WeworkClient(ClientOptions(target, api_key=key)) as client:
            guid = client.accounts.get_account(account_id).guid
        results = asyncio.run(measure(f"http://127.0.0.1:{http_port}", guid, args))
    finally:
        stop_server(proc)
        clean_up(args.mariadb, info, workdir)

    mode = f"MariaDB + {'Redis' if args.redis else 'in-process Redis'}" if args.mariadb else (
        "embedded (SQLite, in-process Redis)" if not args.redis else "SQLite + Redis")
    print(f"Callback ingest benchmark: {mode}; {args.clients} concurrent HTTP callers (aiohttp, keep-alive), "
          f"{args.rounds} x {args.seconds:g} s per route; processor {'on' if args.with_processor else 'off'}; "
          f"{os.cpu_count()} CPU(s), {platform.python_version()}, server and load generator on this machine")
    print(f"{'route':18} {'calls':>8} {'calls/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:18} {r['calls']:>8} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f}")
    noop, ingest = results["no-op handler"], results["ingest (stored)"]
    print(f"ingest / no-op: throughput x{ingest['rps'] / noop['rps']:.2f}, p99 x{ingest['p99'] / noop['p99']:.2f}")
    print(json.dumps({"mode": mode, "clients": args.clients, "results": results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
