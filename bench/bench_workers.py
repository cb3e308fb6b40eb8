"""Throughput of `wework-server --workers 1` vs `--workers 2` in the same run.

Starts the server (MariaDB + Redis: several workers cannot run on the embedded mode) once per
process count, creates a tenant, an API key and an account, then drives the cached
AccountService.GetAccount (authenticated) and the no-op grpc.health.v1.Health/Check with the same
client settings: N concurrent callers spread over C channels, each channel its own TCP connection
(a private subchannel pool) so the kernel's SO_REUSEPORT hash can send them to different workers.
Prints calls/s and p50/p95/p99 per process count and the 2/1 ratio. The load generator runs on
this machine too and competes with the workers for the cores (docs/benchmarks.md).

    .venv/bin/python bench/bench_workers.py --mariadb mysql+aiomysql://root@127.0.0.1:3306 \\
        --redis redis://127.0.0.1:6379/0 [--clients 32] [--channels 8] [--seconds 5] [--rounds 2] \\
        [--client-processes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wework.v1 import account_pb2, account_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_get_account import clean_up, drive, percentile, prepare, start_server, stop_server

NOOP, GET = "Health/Check (no-op)", "GetAccount (cached)"


def _start(workdir: Path, args: argparse.Namespace, admin_key: str, workers: int) -> tuple[subprocess.Popen, int, dict]:
    # bench_get_account.start_server passes our environment on: the worker count rides along.
    os.environ["WEWORK_SERVER__WORKERS"] = str(workers)
    proc, port, info = start_server(workdir, args, admin_key)
    # It waits for the first worker to answer; wait for every one (each prints its banner).
    deadline = time.monotonic() + 60
    while (workdir / "server.log").read_text(errors="replace").count("wework-server listening on") < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"not every worker started:\n{(workdir / 'server.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return proc, port, info


def _server_pids(parent: int) -> list[int]:
    """The server process and its children (the workers, and multiprocessing's helper)."""
    pids = [parent]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


async def _drive_calls(target: str, key: str, account_id: str, clients: int, channels: int,
                       seconds: float, warmup: float,
                       server_pids: list[int]) -> dict[str, tuple[list[float], float, float, float]]:
    """One round of both RPCs over `channels` connections:
    {rpc: (latencies, elapsed s, server CPU s, this client's CPU s)}."""
    chans = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
             for _ in range(channels)]
    try:
        md = (("x-api-key", key),)
        check_req = health_pb2.HealthCheckRequest(service="wework.v1.AccountService")
        get_req = account_pb2.GetAccountRequest(id=account_id)
        health = [health_pb2_grpc.HealthStub(c) for c in chans]
        accounts = [account_pb2_grpc.AccountServiceStub(c) for c in chans]
        counter = iter(range(1 << 62))

        # Each call takes the next channel: the callers share all connections evenly.
        def noop():
            return health[next(counter) % channels].Check(check_req, timeout=5)

        def get():
            return accounts[next(counter) % channels].GetAccount(get_req, metadata=md, timeout=5)

        out = {}
        for name, call in ((NOOP, noop), (GET, get)):
            await drive(call, clients, warmup)
            t0, server0, client0 = time.perf_counter(), _cpu_seconds(server_pids), time.process_time()
            lat = await drive(call, clients, seconds)
            out[name] = (lat, time.perf_counter() - t0, _cpu_seconds(server_pids) - server0,
                         time.process_time() - client0)
        return out
    finally:
        for c in chans:
            await c.close()


def _client_process(target, key, account_id, clients, channels, seconds, warmup, server_pids, queue) -> None:
    queue.put(asyncio.run(_drive_calls(target, key, account_id, clients, channels, seconds, warmup, server_pids)))


def measure(target: str, key: str, account_id: str, server_pids: list[int],
            args: argparse.Namespace) -> dict[str, dict]:
    results: dict[str, list[float]] = {NOOP: [], GET: []}
    calls_per_s: dict[str, float] = dict.fromkeys(results, 0.0)
    # Cores busy during the measured seconds (CPU s / wall s), averaged over the rounds.
    server_cores: dict[str, float] = dict.fromkeys(results, 0.0)
    client_cores: dict[str, float] = dict.fromkeys(results, 0.0)
    for _ in range(args.rounds):
        if args.client_processes == 1:
            rounds = [asyncio.run(_drive_calls(target, key, account_id, args.clients, args.channels,
                                               args.seconds, args.warmup, server_pids))]
        else:  # the load split over processes, each with its share of callers and channels
            ctx = multiprocessing.get_context("spawn")
            queue = ctx.Queue()
            procs = [ctx.Process(target=_client_process, args=(
                target, key, account_id, max(1, args.clients // args.client_processes),
                max(1, args.channels // args.client_processes), args.seconds, args.warmup, server_pids, queue))
                for _ in range(args.client_processes)]
            for p in procs:
                p.start()
            rounds = [queue.get() for _ in procs]
            for p in procs:
                p.join()
        for one in rounds:
            for name, (lat, elapsed, server_cpu, client_cpu) in one.items():
                results[name] += lat
                calls_per_s[name] += len(lat) / elapsed / args.rounds
                client_cores[name] += client_cpu / elapsed / args.rounds
        # Every client process samples the server over the same window: count it once.
        for name in results:
            server_cores[name] += sum(one[name][2] / one[name][1] for one in rounds) / len(rounds) / args.rounds
    out = {}
    for name, lat in results.items():
        lat.sort()
        out[name] = {"calls": len(lat), "rps": calls_per_s[name], "p50": percentile(lat, 50) * 1e3,
                     "p95": percentile(lat, 95) * 1e3, "p99": percentile(lat, 99) * 1e3,
                     "server_cores": server_cores[name], "client_cores": client_cores[name]}
    return out


def run(workers: int, args: argparse.Namespace) -> dict[str, dict]:
    workdir = Path(tempfile.mkdtemp(prefix="wwbench-workers-"))
    admin_key = "wwadmin_" + secrets.token_urlsafe(24)
    proc, port, info = _start(workdir, args, admin_key, workers)
    try:
        target = f"127.0.0.1:{port}"
        key, account_id = prepare(target, admin_key)
        return measure(target, key, account_id, _server_pids(proc.pid), args)
    finally:
        stop_server(proc, 60)
        clean_up(args.mariadb, info, workdir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mariadb", required=True, help="MariaDB base URL, e.g. mysql+aiomysql://root@127.0.0.1:3306")
    parser.add_argument("--redis", required=True, help="Redis URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--clients", type=int, default=32, help="concurrent callers in all (default 32)")
    parser.add_argument("--channels", type=int, default=8, help="client connections in all (default 8)")
    parser.add_argument("--client-processes", type=int, default=1, help="load generator processes (default 1)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per RPC and round (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per process count (default 2)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per RPC and round (default 1)")
    args = parser.parse_args()

    results = {workers: run(workers, args) for workers in (1, 2)}

    print(f"wework-server --workers 1 vs 2: MariaDB + Redis; {args.clients} callers over {args.channels} "
          f"connections in {args.client_processes} client process(es), {args.rounds} x {args.seconds:g} s "
          f"per RPC; {os.cpu_count()} CPU(s) shared by server and client, {platform.python_version()}")
    print(f"{'workers':>7} {'rpc':24} {'calls':>8} {'calls/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'server cores':>12} {'client cores':>12}")
    for workers, res in results.items():
        for name, r in res.items():
            print(f"{workers:>7} {name:24} {r['calls']:>8} {r['rps']:>9.0f} {r['p50']:>8.2f} "
                  f"{r['p95']:>8.2f} {r['p99']:>8.2f} {r['server_cores']:>12.2f} {r['client_cores']:>12.2f}")
    for name in (NOOP, GET):
        one, two = results[1][name], results[2][name]
        print(f"{name}: 2 workers / 1 worker: throughput x{two['rps'] / one['rps']:.2f}, "
              f"p95 x{two['p95'] / one['p95']:.2f}")
    print(json.dumps({"clients": args.clients, "channels": args.channels,
                      "client_processes": args.client_processes, "results": results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
