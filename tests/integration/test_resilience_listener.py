"""The resubscribing listener (wework.persistence.resilience.listen) against a real redis-server
of its own: its connection is killed (CLIENT KILL), then the server is stopped and started again;
each time it resubscribes, tells its user so, and receives what is published afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import harness
import pytest
from harness import servers as harness_servers
from wework.persistence.config import RedisConfig
from wework.persistence.redis.client import as_text, create_redis
from wework.persistence.resilience import listen

pytestmark = pytest.mark.redis


async def eventually(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def subscriber_ids(admin, name: str) -> list[int]:
    return [c["id"] for c in await admin.client_list()
            if c.get("name") == name and c.get("sub") not in (None, "0")]


@pytest.fixture
def private_redis():
    """A redis-server of this test alone: it is killed and restarted, and its clients killed."""
    try:
        server = harness.start_private_redis()
    except harness.ServerUnavailable as exc:
        pytest.fail(str(exc))
    servers = [server]
    yield servers
    for s in servers:
        harness_servers.forget(s)


async def test_listener_resubscribes_after_a_killed_connection_and_a_redis_restart(private_redis):
    server = private_redis[0]
    name = "wwt-listen-" + uuid.uuid4().hex[:12]
    channel = f"wwtest:listen:{uuid.uuid4().hex}"
    sub_client = create_redis(RedisConfig(url=f"{server.url}?client_name={name}", socket_timeout_seconds=1))
    kinds: list[str] = []
    data: list[bytes] = []
    disconnects = 0
    ticks = 0

    def on_message(message: dict) -> None:
        kinds.append(as_text(message["type"]))
        if kinds[-1] == "message":
            data.append(message["data"])

    def on_disconnect() -> None:
        nonlocal disconnects
        disconnects += 1

    async def on_tick() -> None:
        nonlocal ticks
        ticks += 1

    async def publish(url: str, body: bytes) -> None:
        admin = create_redis(RedisConfig(url=url))
        try:
            await admin.publish(channel, body)
        finally:
            await admin.aclose()

    task = asyncio.create_task(listen(sub_client, on_message, what="test listener", channels=[channel],
                                      on_tick=on_tick, on_disconnect=on_disconnect, poll_seconds=0.1))
    try:
        await eventually(lambda: kinds.count("subscribe") == 1)
        await publish(server.url, b"before")
        await eventually(lambda: data == [b"before"])
        assert ticks > 0  # on_tick runs while connected

        # 1. Our connection is killed: it comes back subscribed (redis-py reconnects in place or
        #    the loop resubscribes), and the user sees a new subscribe confirmation.
        admin = create_redis(RedisConfig(url=server.url))
        try:
            ids = await subscriber_ids(admin, name)
            assert len(ids) == 1
            await admin.execute_command("CLIENT", "KILL", "ID", ids[0])
            await eventually(lambda: kinds.count("subscribe") >= 2)
            new_ids = await subscriber_ids(admin, name)
            assert len(new_ids) == 1 and new_ids != ids  # a new connection, not the killed one
        finally:
            await admin.aclose()
        await publish(server.url, b"after kill")
        await eventually(lambda: b"after kill" in data)

        # 2. Redis itself goes away: the loop reports the gap and keeps trying, and once a Redis
        #    listens there again it is subscribed again and receives what is published.
        subscribed = kinds.count("subscribe")
        port = server.port
        harness_servers.forget(server)
        await eventually(lambda: disconnects >= 1)
        restarted = harness.start_private_redis(port=port)
        private_redis.append(restarted)
        await eventually(lambda: kinds.count("subscribe") > subscribed)
        await publish(restarted.url, b"after restart")
        await eventually(lambda: b"after restart" in data)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sub_client.aclose()
