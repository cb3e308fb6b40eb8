"""Another tenant's ListUsers while 200 concurrent Logins with made-up usernames hit the server.

Starts wework-server (embedded: SQLite + in-process Redis; or --mariadb/--redis for the real
ones), creates a flooded tenant and a bystander tenant (an API key and 20 users), then measures
the bystander's ListUsers from --clients callers in alternating rounds: without a flood (the
baseline) and while a separate process keeps --flood concurrent Logins with random usernames
against the flooded tenant's code (no credential needed). Prints ListUsers p50/p99 of both,
what the flood's Logins were answered, how often Health was not SERVING, and the server's
resident memory before and at its peak.

The login rate limits (docs/authentication.md) refuse most of a flood from one address at once;
--no-rate-limit lifts them to show what the hashing limiter alone does.

    .venv/bin/python bench/bench_login_flood.py [--flood 200] [--clients 8] [--seconds 10] [--rounds 2]
    .venv/bin/python bench/bench_login_flood.py --mariadb mysql+aiomysql://root@127.0.0.1:3306 \\
        --redis redis://127.0.0.1:6379/0 [--no-rate-limit]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
import grpc.aio
from bench_get_account import clean_up, percentile, start_server, stop_server
from grpc_health.v1 import health_pb2, health_pb2_grpc
from wework.v1 import tenant_pb2 as pb
from wework.v1 import tenant_pb2_grpc


def prepare(target: str, admin_key: str) -> tuple[str, str]:
    """(the flooded tenant's code, an admin API key of the bystander tenant with 20 users)."""
    with grpc.insecure_channel(target) as channel:
        stub = tenant_pb2_grpc.TenantServiceStub(channel)
        admin = (("x-api-key", admin_key),)
        flooded = stub.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(
            tenant_code=f"flooded{secrets.token_hex(3)}", tenant_name="Flooded")), metadata=admin)
        bystander = stub.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(
            tenant_code=f"bystander{secrets.token_hex(3)}", tenant_name="Bystander")), metadata=admin)
        inside = (*admin, ("x-wework-tenant", bystander.id))
        roles = {r.role_code: r.id for r in stub.ListRoles(pb.ListRolesRequest(), metadata=inside).roles}
        key = stub.CreateApiKey(pb.CreateApiKeyRequest(api_key=pb.ApiKey(
            display_name="bench", role_id=roles["admin"])), metadata=inside).secret
        for i in range(20):
            stub.CreateUser(pb.CreateUserRequest(user=pb.User(
                username=f"user{i}", email=f"user{i}@example.com", password="bench password")),
                metadata=(("x-api-key", key),))
    return flooded.tenant_code, key


def flood(target: str, tenant_code: str, concurrency: int, stop, answers) -> None:
    """Runs in its own process (its own CPU time and event loop): `concurrency` callers each
    sending Login after Login until `stop` is set; counts the answers by status code."""

    async def run() -> Counter:
        counts: Counter = Counter()
        async with grpc.aio.insecure_channel(target) as channel:
            stub = tenant_pb2_grpc.TenantServiceStub(channel)

            async def caller() -> None:
                while not stop.is_set():
                    try:
                        await stub.Login(pb.LoginRequest(tenant_code=tenant_code, username=secrets.token_hex(6),
                                                         password=secrets.token_hex(8)), timeout=30)
                        counts["OK"] += 1
                    except grpc.aio.AioRpcError as exc:
                        counts[exc.code().name] += 1

            await asyncio.gather(*(caller() for _ in range(concurrency)))
        return counts

    answers.update(asyncio.run(run()))


async def measure(target: str, key: str, clients: int, seconds: float) -> tuple[list[float], Counter, Counter]:
    """ListUsers latencies (s) and errors from `clients` callers, and Health answers, for `seconds`."""
    latencies: list[float] = []
    errors: Counter = Counter()
    health_answers: Counter = Counter()
    stop = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = tenant_pb2_grpc.TenantServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        request, md = pb.ListUsersRequest(page_size=20), (("x-api-key", key),)

        async def caller() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    await stub.ListUsers(request, metadata=md, timeout=30)
                    latencies.append(time.perf_counter() - t0)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1

        async def watch_health() -> None:
            while time.perf_counter() < stop:
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    health_answers[health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)] += 1
                except grpc.aio.AioRpcError as exc:
                    health_answers[exc.code().name] += 1
                await asyncio.sleep(0.25)

        await asyncio.gather(watch_health(), *(caller() for _ in range(clients)))
    return latencies, errors, health_answers


def memory_mib(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of a process, in MiB (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def summary(latencies: list[float]) -> dict:
    values = sorted(latencies)
    return {"calls": len(values), "p50_ms": percentile(values, 50) * 1e3, "p99_ms": percentile(values, 99) * 1e3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flood", type=int, default=200, help="concurrent bogus Logins (default 200)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent ListUsers callers (default 8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per phase and round (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--no-rate-limit", action="store_true",
                        help="lift the login rate limits: only the hashing limiter protects the server")
    parser.add_argument("--mariadb", help="MariaDB base URL, e.g. mysql+aiomysql://root@127.0.0.1:3306 "
                                          "(default: the embedded SQLite mode)")
    parser.add_argument("--redis", help="Redis URL, e.g. redis://127.0.0.1:6379/0 (default: in-process)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wwbench-"))
    admin_key = "wwadmin_" + secrets.token_urlsafe(24)
    if args.no_rate_limit:  # through the environment: it overrides single settings of the file
        os.environ["WEWORK_SECURITY__LOGIN_ATTEMPTS_PER_SOURCE_PER_MINUTE"] = str(10**9)
        os.environ["WEWORK_SECURITY__LOGIN_ATTEMPTS_PER_TENANT_PER_MINUTE"] = str(10**9)
    proc, port, info = start_server(workdir, args, admin_key)
    target = f"127.0.0.1:{port}"
    results: dict[str, list[float]] = {"baseline": [], "flood": []}
    errors = {"baseline": Counter(), "flood": Counter()}
    health = {"baseline": Counter(), "flood": Counter()}
    login_answers: Counter = Counter()
    try:
        tenant_code, key = prepare(target, admin_key)
        asyncio.run(measure(target, key, args.clients, 1.0))  # warm up
        rss_before = memory_mib(proc.pid, "VmRSS")
        for _ in range(args.rounds):
            lat, err, hl = asyncio.run(measure(target, key, args.clients, args.seconds))
            results["baseline"] += lat
            errors["baseline"] += err
            health["baseline"] += hl
            with multiprocessing.Manager() as manager:
                stop, answers = manager.Event(), manager.dict()
                flooder = multiprocessing.Process(target=flood, args=(target, tenant_code, args.flood, stop, answers))
                flooder.start()
                time.sleep(1.0)  # let the flood build up
                lat, err, hl = asyncio.run(measure(target, key, args.clients, args.seconds))
                stop.set()
                flooder.join(60)
                login_answers.update(dict(answers))
            results["flood"] += lat
            errors["flood"] += err
            health["flood"] += hl
        rss_peak = memory_mib(proc.pid, "VmHWM")
    finally:
        stop_server(proc)
        clean_up(args.mariadb, info, workdir)

    mode = f"MariaDB + {'Redis' if args.redis else 'in-process Redis'}" if args.mariadb else (
        "embedded (SQLite, in-process Redis)" if not args.redis else "SQLite + Redis")
    limits = "login rate limits lifted" if args.no_rate_limit else "default login rate limits"
    print(f"Login flood benchmark: {mode}; {limits}; {args.flood} concurrent bogus Logins (separate process) "
          f"vs {args.clients} ListUsers callers of another tenant, {args.rounds} x {args.seconds:g} s per phase; "
          f"{os.cpu_count()} CPU(s), {platform.python_version()}, server and load generators on this machine")
    print(f"{'ListUsers (other tenant)':28} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8}  errors  health")
    out = {}
    for phase, label in (("baseline", "baseline (no flood)"), ("flood", f"during {args.flood} bogus Logins")):
        s = summary(results[phase])
        out[phase] = {**s, "errors": dict(errors[phase]), "health": dict(health[phase])}
        print(f"{label:28} {s['calls']:>7} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f}  "
              f"{dict(errors[phase]) or '-'}  {dict(health[phase])}")
    base, flooded = out["baseline"], out["flood"]
    print(f"flood / baseline: p50 x{flooded['p50_ms'] / base['p50_ms']:.2f}, p99 x{flooded['p99_ms'] / base['p99_ms']:.2f}")
    print(f"bogus Logins answered: {dict(login_answers)}")
    print(f"server memory: {rss_before:.0f} MiB before the floods, peak {rss_peak:.0f} MiB")
    print(json.dumps({"mode": mode, "limits": limits, "flood": args.flood, "clients": args.clients,
                      "results": out, "logins": dict(login_answers), "rss_mib": [rss_before, rss_peak]},
                     separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
