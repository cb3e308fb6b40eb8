"""Redis helpers: client factory (embedded fakeredis, single server, cluster), keys, two-level cache."""

from wework.persistence.redis.cache import TwoLevelCache
from wework.persistence.redis.client import (
    MEMORY_URL,
    RedisClient,
    create_redis,
    hash_tag,
    key,
    ping,
    subscriber,
    tenant_key,
)

__all__ = [
    "MEMORY_URL",
    "RedisClient",
    "TwoLevelCache",
    "create_redis",
    "hash_tag",
    "key",
    "ping",
    "subscriber",
    "tenant_key",
]
