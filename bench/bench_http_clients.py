"""Client CPU per HTTP request: httpx.AsyncClient against aiohttp.ClientSession, same run.

Both post the same small JSON body over keep-alive to one aiohttp server in a separate process
(its CPU is not counted), with N concurrent callers, in alternating rounds; the figure is the
client process's CPU time (time.process_time) per request, which the noise of a shared machine
moves far less than wall time. It decides whether the platform keeps two HTTP client stacks
(docs/decisions/0036): httpx in the platform (provider calls, webhook deliveries, tests), aiohttp
as the load generator of bench_callback_ingest.py.

    .venv/bin/python bench/bench_http_clients.py [--requests 3000] [--clients 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import socket
import statistics
import time

import aiohttp
import httpx
from aiohttp import web

BODY = b'{"guid":"bench","conversation_id":"wmchat-1","content":{"text":"hello"}}'


def serve(port: int) -> None:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/send", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def drive(post, n: int, clients: int) -> None:
    remaining = iter(range(n))

    async def caller() -> None:
        for _ in remaining:
            await post()

    await asyncio.gather(*(caller() for _ in range(clients)))


async def with_httpx(url: str, n: int, clients: int) -> float:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def post() -> None:
            (await client.post(url, content=BODY, headers={"content-type": "application/json"})).raise_for_status()

        await drive(post, clients, clients)  # connect and warm up
        started = time.process_time()
        await drive(post, n, clients)
        return (time.process_time() - started) / n


async def with_aiohttp(url: str, n: int, clients: int) -> float:
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def post() -> None:
            async with session.post(url, data=BODY, headers={"content-type": "application/json"}) as r:
                r.raise_for_status()
                await r.read()

        await drive(post, clients, clients)
        started = time.process_time()
        await drive(post, n, clients)
        return (time.process_time() - started) / n


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def run(args: argparse.Namespace, port: int) -> dict[str, list[float]]:
    await wait_listening(port)
    url = f"http://127.0.0.1:{port}/send"
    results: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
    for _ in range(args.rounds):
        results["httpx"].append(await with_httpx(url, args.requests, args.clients))
        results["aiohttp"].append(await with_aiohttp(url, args.requests, args.clients))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per client library and round")
    parser.add_argument("--clients", type=int, default=16, help="concurrent callers (default 16)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    server.start()
    try:
        results = asyncio.run(run(args, port))
    finally:
        server.terminate()
        server.join(10)
    print(f"HTTP client CPU per request: {args.requests} POSTs x {args.rounds} round(s), {args.clients} callers, "
          f"keep-alive; {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
          f"httpx {httpx.__version__}, aiohttp {aiohttp.__version__}")
    for name, runs in results.items():
        print(f"  {name:8s} median {statistics.median(runs) * 1e6:7.0f} us CPU/request   runs: "
              + ", ".join(f"{v * 1e6:.0f}" for v in runs))
    ratio = statistics.median(results["httpx"]) / statistics.median(results["aiohttp"])
    print(f"  httpx / aiohttp: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
