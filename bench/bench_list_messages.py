"""ListMessages page latency with 10,000 rows against 1,000,000 rows in `messages`.

Starts wework-server on MariaDB (+ Redis if given), creates a tenant, an API key and an account,
inserts 10,000 messages of that account in bulk directly into the shard's `messages` table
(multi-row INSERTs, created_at spread over 30 days), and measures ListMessages pages
(page_size 50) through gRPC: the first page, a page from the middle of the listing (its keyset
token), and the first page filtered by account_id and by status. Then it adds rows up to
1,000,000 and measures the same again, and prints both with the ratio. Keyset pages (AIP-158)
should cost the same at any table size: the target is a ratio of at most 1.2.

    .venv/bin/python bench/bench_list_messages.py --mariadb mysql+aiomysql://root@127.0.0.1:3306 \\
        [--redis redis://127.0.0.1:6379/0] [--small 10000] [--large 1000000] [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc.aio
import pymysql
import yaml
from sqlalchemy.engine import make_url
from wework.persistence.ids import new_id
from wework.persistence.pagination import PageTokens
from wework.v1 import message_pb2, message_pb2_grpc

sys.path.insert(0, str(Path(__file__).parent))
import bench_send_message
from bench_get_account import clean_up, percentile, start_server, stop_server

STATUSES = ("sent", "delivered", "failed", "pending")
BATCH = 5000


def connect(base_url: str, database: str) -> pymysql.Connection:
    url = make_url(base_url)
    return pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", database=database, autocommit=True, charset="utf8mb4")


def bulk_insert(conn: pymysql.Connection, tenant_id: str, account_id: str, count: int,
                rng: random.Random) -> float:
    """`count` rows in multi-row INSERTs; returns rows/s."""
    now = datetime.now(UTC).replace(tzinfo=None)
    content = json.dumps({"text": "bulk benchmark row"})
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        done = 0
        while done < count:
            n = min(BATCH, count - done)
            rows = []
            for _ in range(n):
                created = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
                rows.append((new_id(), created, created, tenant_id, account_id, f"wm{rng.randrange(1000)}",
                             "text", content, rng.choice(STATUSES), 5))
            cur.executemany(
                "INSERT INTO messages (id, created_at, updated_at, tenant_id, account_id, conversation_id, "
                "message_type, content, status, priority) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
            done += n
        cur.execute("ANALYZE TABLE messages")
        cur.fetchall()
    return count / (time.perf_counter() - t0)


def middle_token(conn: pymysql.Connection, tokens: PageTokens, tenant_id: str, total: int) -> str:
    """The keyset token of the page that starts halfway down the listing (newest first), signed
    like the server's own (same token_secret)."""
    with conn.cursor() as cur:
        cur.execute("SELECT created_at, status + 0, id FROM messages WHERE tenant_id=%s "
                    "ORDER BY created_at DESC, status DESC, id DESC LIMIT 1 OFFSET %s", (tenant_id, total // 2))
        created, _status_key, mid = cur.fetchone()
    return tokens.encode({"t": created.replace(tzinfo=UTC), "id": mid}, "messages", tenant_id)


async def measure(target: str, key: str, account_id: str, token: str, calls: int) -> dict[str, dict]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = message_pb2_grpc.MessageServiceStub(channel)
        md = (("x-api-key", key),)
        requests = {
            "first page": message_pb2.ListMessagesRequest(page_size=50),
            "middle page (token)": message_pb2.ListMessagesRequest(page_size=50, page_token=token),
            "by account_id": message_pb2.ListMessagesRequest(page_size=50, account_id=account_id),
            "by status=FAILED": message_pb2.ListMessagesRequest(page_size=50,
                                                                 status=message_pb2.MESSAGE_STATUS_FAILED),
        }
        out = {}
        for name, req in requests.items():
            for _ in range(5):  # warm the buffer pool and the code path
                await stub.ListMessages(req, metadata=md, timeout=60)
            lat = []
            for _ in range(calls):
                t0 = time.perf_counter()
                resp = await stub.ListMessages(req, metadata=md, timeout=60)
                lat.append(time.perf_counter() - t0)
                assert len(resp.messages) == 50
            lat.sort()
            out[name] = {"p50": percentile(lat, 50) * 1e3, "p95": percentile(lat, 95) * 1e3,
                         "p99": percentile(lat, 99) * 1e3}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mariadb", required=True, help="MariaDB base URL, e.g. mysql+aiomysql://root@127.0.0.1:3306")
    parser.add_argument("--redis", help="Redis URL (default: in-process)")
    parser.add_argument("--small", type=int, default=10_000, help="rows in the first measurement (default 10,000)")
    parser.add_argument("--large", type=int, default=1_000_000, help="rows in the second (default 1,000,000)")
    parser.add_argument("--calls", type=int, default=200, help="calls per listing and size (default 200)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wwbench-"))
    admin_key = "wwadmin_" + secrets.token_urlsafe(24)
    # No dispatcher: nothing else runs on the server while it is measured.
    proc, port, info = start_server(workdir, args, admin_key, {"message": {"run_dispatcher_in_server": False}})
    rng = random.Random(7)
    results: dict[int, dict] = {}
    rates: list[float] = []
    try:
        target = f"127.0.0.1:{port}"
        key, account_id = bench_send_message.prepare(target, admin_key)
        tenant_id = _tenant_of(target, key)
        secret = yaml.safe_load((workdir / "settings.yaml").read_text())["security"]["token_secret"]
        tokens = PageTokens(secret.encode())
        conn = connect(args.mariadb.replace("+aiomysql", ""), f"{info['prefix']}_message_0")
        inserted = 0
        for size in (args.small, args.large):
            rates.append(bulk_insert(conn, tenant_id, account_id, size - inserted, rng))
            inserted = size
            results[size] = asyncio.run(measure(target, key, account_id, middle_token(conn, tokens, tenant_id, size),
                                                args.calls))
        conn.close()
    finally:
        stop_server(proc)
        clean_up(args.mariadb, info, workdir)

    small, large = results[args.small], results[args.large]
    print(f"ListMessages benchmark: MariaDB; page_size 50, {args.calls} sequential calls per listing; one tenant "
          f"and account holding every row; {os.cpu_count()} CPU(s), {platform.python_version()}; bulk insert "
          f"{rates[0]:.0f} and {rates[1]:.0f} rows/s")
    print(f"{'listing':22} {'rows':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for size, res in ((args.small, small), (args.large, large)):
        for name, r in res.items():
            print(f"{name:22} {size:>9} {r['p50']:>8.2f} {r['p95']:>8.2f} {r['p99']:>8.2f}")
    for name in small:
        ratio = large[name]["p50"] / small[name]["p50"]
        print(f"{name}: p50 ratio {args.large:,} / {args.small:,} rows = {ratio:.2f} "
              f"(target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")
    print(json.dumps({"small": args.small, "large": args.large, "results": {str(k): v for k, v in results.items()}},
                     separators=(",", ":")))
    return 0


def _tenant_of(target: str, key: str) -> str:
    from wework.client import ClientOptions, WeworkClient

    with WeworkClient(ClientOptions(target, api_key=key)) as client:
        return next(iter(client.accounts.iter_accounts())).tenant_id


if __name__ == "__main__":
    raise SystemExit(main())
