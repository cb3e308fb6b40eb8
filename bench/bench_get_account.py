"""Cached GetAccount against a no-op RPC (grpc.health.v1.Health/Check) on the same server.

Starts wework-server (embedded: SQLite + in-process Redis; or --mariadb/--redis for the real
ones), creates a tenant, an API key and an account, then drives both RPCs from N concurrent
callers on one asyncio channel, in alternating rounds, and prints throughput and latency
percentiles of each with the ratio. GetAccount pays for authentication (the credential cache),
the permission check and the account cache (L1 after the first call); Check pays for none.

    .venv/bin/python bench/bench_get_account.py [--clients 16] [--seconds 5] [--rounds 2]
    .venv/bin/python bench/bench_get_account.py --mariadb mysql+aiomysql://root@127.0.0.1:3306 \\
        --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wework.client import ClientOptions, WeworkClient
from wework.v1 import account_pb2, account_pb2_grpc
from wework.v1 import tenant_pb2 as tpb

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, args: argparse.Namespace, admin_key: str,
                 extra_settings: dict | None = None) -> tuple[subprocess.Popen, int, dict]:
    """Starts wework-server; `extra_settings` are top-level sections added to its settings file."""
    port = free_port()
    prefix = f"wwbench_{secrets.token_hex(4)}"
    doc: dict = {
        "data_dir": str(workdir / "var"),
        "logging": {"level": "WARNING"},  # no access log line per call: measure the RPC path
        "observability": {"metrics_host": "127.0.0.1", "metrics_port": 0},
        "security": {
            "admin_api_key": admin_key, "token_secret": secrets.token_urlsafe(48),
            "lookup_hash_key": secrets.token_urlsafe(48),
            "encryption_keys": {"k1": base64.b64encode(os.urandom(32)).decode()},
            "active_encryption_key_id": "k1",
        },
    }
    if args.mariadb:
        base = args.mariadb.rstrip("/")
        doc["database"] = {"directory_dsn": f"{base}/{prefix}_directory",
                           "shards": [{"name": "s0", "buckets": "0-1023", "dsn": f"{base}/{prefix}_{{db}}_0"}]}
    if args.redis:
        doc["redis"] = {"url": args.redis, "key_prefix": f"{prefix}:"}
    doc.update(extra_settings or {})
    config = workdir / "settings.yaml"
    config.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "WEWORK_CONFIG_FILE": str(config)}
    if args.mariadb:
        subprocess.run([str(BIN / "wework-admin"), "migrate"], env=env, check=True, capture_output=True)
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - open for the child's lifetime
    proc = subprocess.Popen([str(BIN / "wework-server"), "--port", str(port)], cwd=workdir, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"wework-server did not start:\n{(workdir / 'server.log').read_text()[-3000:]}")
            try:
                req = health_pb2.HealthCheckRequest(service="wework.v1.AccountService")
                if stub.Check(req, timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return proc, port, {"prefix": prefix}


def stop_server(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if the server is still draining after `timeout` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def clean_up(mariadb: str | None, info: dict, *workdirs: Path) -> None:
    """Drops the run's databases (on MariaDB) and removes its work directories."""
    if mariadb:
        _drop_databases(mariadb, info["prefix"])
    for workdir in workdirs:
        shutil.rmtree(workdir, ignore_errors=True)


def prepare(target: str, admin_key: str) -> tuple[str, str]:
    """A tenant, an API key of its admin role and an account: (key, account id)."""
    with WeworkClient(ClientOptions(target, api_key=admin_key)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=f"bench{secrets.token_hex(3)}",
                                                        tenant_name="Bench"))
        inside = admin.with_options(tenant_id=tenant.id)
        roles = {r.role_code: r.id for r in inside.tenants.iter_roles()}
        key = inside.tenants.create_api_key(tpb.ApiKey(display_name="bench", role_id=roles["admin"])).secret
    with WeworkClient(ClientOptions(target, api_key=key)) as client:
        account = client.accounts.create_account(account_pb2.Account(account_name="bench",
                                                                     phone="+8613800000000"))
    return key, account.id


async def drive(call: Callable[[], Awaitable[object]], clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


async def measure(target: str, key: str, account_id: str, args: argparse.Namespace) -> dict[str, dict]:
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        accounts = account_pb2_grpc.AccountServiceStub(channel)
        md = (("x-api-key", key),)
        check_req = health_pb2.HealthCheckRequest(service="wework.v1.AccountService")
        get_req = account_pb2.GetAccountRequest(id=account_id)
        calls = {
            "Health/Check (no-op)": lambda: health.Check(check_req, timeout=5),
            "GetAccount (cached)": lambda: accounts.GetAccount(get_req, metadata=md, timeout=5),
        }
        for call in calls.values():  # warm up: connections, caches, code paths
            await drive(call, args.clients, args.warmup)
        results: dict[str, list[float]] = {name: [] for name in calls}
        elapsed: dict[str, float] = dict.fromkeys(calls, 0.0)
        for _ in range(args.rounds):  # alternate, so drift hits both alike
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
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wwbench-"))
    admin_key = "wwadmin_" + secrets.token_urlsafe(24)
    proc, port, info = start_server(workdir, args, admin_key)
    try:
        target = f"127.0.0.1:{port}"
        key, account_id = prepare(target, admin_key)
        results = asyncio.run(measure(target, key, account_id, args))
    finally:
        stop_server(proc)
        clean_up(args.mariadb, info, workdir)

    mode = f"MariaDB + {'Redis' if args.redis else 'in-process Redis'}" if args.mariadb else (
        "embedded (SQLite, in-process Redis)" if not args.redis else "SQLite + Redis")
    print(f"GetAccount benchmark: {mode}; {args.clients} concurrent callers on one channel, "
          f"{args.rounds} x {args.seconds:g} s per RPC; {os.cpu_count()} CPU(s), {platform.python_version()}, "
          f"server and load generator on this machine")
    print(f"{'rpc':24} {'calls':>8} {'calls/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:24} {r['calls']:>8} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f}")
    noop, get = results["Health/Check (no-op)"], results["GetAccount (cached)"]
    print(f"GetAccount / no-op: throughput x{get['rps'] / noop['rps']:.2f}, p95 x{get['p95'] / noop['p95']:.2f}")
    print(json.dumps({"mode": mode, "clients": args.clients, "results": results}, separators=(",", ":")))
    return 0


def _drop_databases(base_url: str, prefix: str) -> None:
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    conn = pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW DATABASES LIKE %s", (prefix + "\\_%",))
            for (name,) in cur.fetchall():
                cur.execute(f"DROP DATABASE `{name}`")
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
