"""Redis clients from RedisConfig: embedded (fakeredis), single server, or Redis Cluster.

Everything here speaks bytes (decode_responses=False): callers serialize, and binary
values (hashes, encrypted blobs) never pass through a text codec.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from wework.persistence.config import RedisConfig

if TYPE_CHECKING:
    import fakeredis

log = logging.getLogger(__name__)

RedisClient: TypeAlias = aioredis.Redis | RedisCluster

MEMORY_URL = "memory://"

# Seconds between PINGs on idle pooled connections, so a connection that died silently
# (NAT timeout, failover) is noticed before a request uses it.
_HEALTH_CHECK_INTERVAL = 30

_fake_server: fakeredis.FakeServer | None = None
_fake_server_lock = threading.Lock()


def _embedded_server() -> fakeredis.FakeServer:
    """The one in-process Redis: every memory:// client shares it, so pub/sub and keys
    behave as if all of them talked to the same server.

    fakeredis is imported only here: processes that talk to a real Redis never load it."""
    import fakeredis

    global _fake_server
    with _fake_server_lock:
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
        return _fake_server


def _retry() -> Retry:
    # redis-py's default (10 retries, up to 1 s apart) would stall each request for
    # seconds when Redis is down; callers degrade to the database instead, so fail fast.
    return Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries=2)


def create_redis(config: RedisConfig) -> RedisClient:
    """A client for `config.url`: `memory://` (embedded), `redis://`, `rediss://`, `unix://`.

    With `cluster=True`, a RedisCluster that discovers the other nodes from the URL's node.
    Creating a client does not connect; use `ping()` to check reachability at startup.
    """
    url = config.url.strip()
    if url.startswith(MEMORY_URL):
        if config.cluster:
            raise ValueError("redis.cluster=true needs a redis:// or rediss:// url, not memory://")
        from fakeredis import FakeAsyncRedis

        return FakeAsyncRedis(server=_embedded_server(), decode_responses=False)

    scheme = url.partition("://")[0].lower()
    timeouts = {
        "socket_timeout": config.socket_timeout_seconds,
        "socket_connect_timeout": config.socket_timeout_seconds,
    }
    if config.cluster:
        if scheme not in ("redis", "rediss"):
            raise ValueError(f"redis.url: cluster mode needs redis:// or rediss://, got {scheme}://")
        return RedisCluster.from_url(
            url,
            decode_responses=False,
            retry=_retry(),
            health_check_interval=_HEALTH_CHECK_INTERVAL,
            **timeouts,
        )
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"redis.url: unsupported scheme {scheme}:// (use memory://, redis://, rediss://)")
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        retry=_retry(),
        health_check_interval=_HEALTH_CHECK_INTERVAL,
        **timeouts,
    )


async def ping(client: RedisClient) -> None:
    """Raises (redis.exceptions.RedisError / OSError) unless Redis answers PING."""
    if not await client.ping():
        raise aioredis.ConnectionError("redis did not answer PING")


async def subscriber(client: RedisClient) -> aioredis.client.PubSub:
    """A PubSub for SUBSCRIBE/PSUBSCRIBE that works on a single server and on a Redis Cluster.

    On a cluster, classic pub/sub is cluster-wide: a PUBLISH on any node reaches the
    subscribers on every node (over the cluster bus), so a subscriber may sit on any node. We
    load the slot map first (a fresh client has none, and ClusterPubSub would fail with
    KeyError) and pick a random node, so a reconnect after a node failure can land elsewhere.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        return client.pubsub(node=client.get_random_node())
    return client.pubsub()


def as_text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def hash_tag(value: object) -> str:
    """`{value}`: Redis Cluster hashes only the text inside the first braces, so keys
    sharing a tag land in one slot (needed for multi-key commands and scripts)."""
    text = str(value)
    if not text or "{" in text or "}" in text:
        raise ValueError(f"bad hash tag value {text!r}")
    return "{" + text + "}"


def key(config: RedisConfig, *parts: object) -> str:
    """`<key_prefix><part>:<part>...`, e.g. key(cfg, "cache", "tenant") -> "wework:cache:tenant".

    Pass `hash_tag(tenant_id)` as a part for keys that must share a cluster slot.
    """
    if not parts:
        raise ValueError("a key needs at least one part")
    if "{" in config.key_prefix or "}" in config.key_prefix:
        # A tag in the prefix would put every key of the deployment in one slot.
        raise ValueError("redis.key_prefix must not contain braces")
    texts = [str(p) for p in parts]
    if any(not t for t in texts):
        raise ValueError(f"empty key part in {texts!r}")
    return config.key_prefix + ":".join(texts)


def tenant_key(config: RedisConfig, tenant_id: object, *parts: object) -> str:
    """`<key_prefix>{tenant_id}:<part>...`: all of one tenant's keys in one cluster slot."""
    return key(config, hash_tag(tenant_id), *parts)
