"""Crash safety of webhook delivery: kill -9 a `wework-worker webhooks` process while it posts a
burst, start another one. Every event arrives (at least once: the webhook contract), and an
event posted again after the crash carries the SAME webhook-id, so receivers can dedupe."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_webhook_delivery import eventually, node_maker, principal, serve_receiver, verify
from wework.domain.webhooks import DeliveryStatus
from wework.persistence.ids import new_id

pytestmark = [pytest.mark.mariadb, pytest.mark.redis]
BIN = Path(sys.executable).parent
N = 100
SECURITY = {  # the same test-only key as test_webhook_delivery.cipher()
    "admin_api_key": "wwadmin_test_only_0123456789abcdef",
    "token_secret": "test-only-token-secret-0123456789abcdef",
    "lookup_hash_key": "test-only-lookup-key-0123456789abcdef",
    "encryption_keys": {"k1": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
    "active_encryption_key_id": "k1",
}


def _start_worker(config: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([str(BIN / "wework-worker"), "webhooks"],
                                env={**os.environ, "WEWORK_CONFIG_FILE": str(config)}, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "running" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"worker did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    return proc


async def _terminate(proc: subprocess.Popen, timeout: float) -> bool:
    """SIGTERM, then waits without blocking the event loop: the receiver serving the worker's
    posts runs on this loop, and a blocked loop would hold those posts, and so the worker's
    exit, until their timeout. Kills the worker if it is still there after `timeout` (it never
    outlives the test); True if it exited by itself."""
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
        return False
    return True


async def test_kill_9_mid_burst_every_event_arrives_with_its_webhook_id(
        mariadb_database, mariadb_config, redis_server, tmp_path):
    # In-process: the endpoint use cases and the outbox; their own worker is stopped, so only
    # the wework-worker processes deliver.
    async with node_maker(mariadb_database, redis_server.url) as make:
        node = await make()
        await node.worker.close()
        await _crash_and_recover(node, mariadb_config, redis_server, tmp_path)


async def _crash_and_recover(node, mariadb_config, redis_server, tmp_path) -> None:
    prefix = f"wwtest:{new_id()}:"
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({
        "database": mariadb_config.model_dump(mode="json"),
        "redis": {"url": redis_server.url, "key_prefix": prefix},
        "security": SECURITY,
        "observability": {"metrics_enabled": False},
        "webhooks": {"allowed_target_cidrs": ["127.0.0.0/8"], "retry_schedule_seconds": [0, 0.5, 0.5, 0.5, 0.5],
                     "timeout_seconds": 2, "claim_lease_seconds": 3, "claim_batch_size": 20, "max_in_flight": 20,
                     "idle_poll_seconds": 0.2},
    }))
    async with serve_receiver() as rx:
        rx.behaviour["/burst"] = ("sleep", 0.3)  # slow answers: a kill always finds posts in flight
        tenant = new_id()
        ep = await node.webhooks.create_endpoint(principal(tenant), rx.base_url + "/burst", "", [], "")
        first = _start_worker(config, tmp_path / "w1.log")
        try:
            for i in range(N):
                await node.outbox.publish(None, tenant, "message.received", {"n": i}, f"crash-{i}")
            await eventually(lambda: len(rx.received) >= 40 and rx.in_flight > 0, timeout=30,
                             what="a burst in flight")
            # No await between the snapshot and the kill: the receiver's handlers cannot move on.
            in_flight_at_kill = {r.headers["webhook-id"] for r in rx.received[-rx.in_flight:]}
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        second_log = tmp_path / "w2.log"
        second = _start_worker(config, second_log)
        try:
            async def all_succeeded():
                page, _ = await node.webhooks.list_deliveries(principal(tenant), ep.id, None, 1000, "")
                return len(page) == N and all(d.status is DeliveryStatus.SUCCEEDED for d in page) and page

            deliveries = await eventually(all_succeeded, timeout=60, what="every delivery to succeed")
        finally:
            exited = await _terminate(second, 20)
        assert exited, f"the worker ignored SIGTERM for 20 s:\n{second_log.read_text(errors='replace')[-3000:]}"

        expected = {d.event_id for d in deliveries}
        seen = Counter(r.headers["webhook-id"] for r in rx.on("/burst"))
        assert set(seen) == expected and len(expected) == N  # every event, and no new ids
        # Posts cut off by the kill were posted again under their own webhook-id.
        again = {i for i, n in seen.items() if n > 1}
        assert in_flight_at_kill and in_flight_at_kill <= again
        by_n = {verify(ep.secret, r)["data"]["n"] for r in rx.on("/burst")}
        assert by_n == set(range(N))
