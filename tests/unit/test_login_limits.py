"""Login rate limits while Redis cannot be reached: each process keeps counting on its own."""

from __future__ import annotations

import socket

import pytest
from wework.domain.errors import QuotaExceeded
from wework.persistence.config import RedisConfig
from wework.persistence.redis.client import create_redis
from wework.server.application import login_limits
from wework.server.application.login_limits import LoginLimits, LoginRateLimiter


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: connections are refused


async def test_without_redis_the_limits_still_hold_in_the_process(monkeypatch):
    monkeypatch.setattr(login_limits, "REFUSAL_DELAY_SECONDS", 0.0)
    unreachable = create_redis(RedisConfig(url=f"redis://127.0.0.1:{_closed_port()}/0", socket_timeout_seconds=0.5))
    limiter = LoginRateLimiter(unreachable, "t:", LoginLimits(per_source_per_minute=2, per_tenant_per_minute=100))
    try:
        await limiter.admit("acme", "10.0.0.1")
        await limiter.admit("acme", "10.0.0.1")
        with pytest.raises(QuotaExceeded) as err:
            await limiter.admit("acme", "10.0.0.1")
        assert [v.subject for v in err.value.violations] == ["logins/source/10.0.0.1"]
        assert 1 <= err.value.retry_after_seconds <= login_limits.WINDOW_SECONDS
        await limiter.admit("acme", "10.0.0.2")  # another source has its own window
    finally:
        await unreachable.aclose()
