"""HealthReporter: one verdict for "" and every service, timeouts, no flip-back after shutdown."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2
from wework.server.runtime.health import HealthReporter, non_critical

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_slow_or_failing_check_turns_every_service_not_serving():
    state = {"delay": 0.0, "fail": False}

    async def db_ping():
        await asyncio.sleep(state["delay"])

    def redis_ping():  # not even a coroutine: a sync raise must count as a failure too
        if state["fail"]:
            raise ConnectionError("redis down")
        return asyncio.sleep(0)

    reporter = HealthReporter(["wework.v1.TenantService"], [db_ping, redis_ping],
                              interval_seconds=60, timeout_seconds=0.05)
    await reporter.start()
    try:
        assert reporter.status("") == reporter.status("wework.v1.TenantService") == SERVING
        state["delay"] = 1.0
        assert await reporter.check_now() is False
        assert reporter.status("") == reporter.status("wework.v1.TenantService") == NOT_SERVING
        state.update(delay=0.0, fail=True)
        assert await reporter.check_now() is False
        state["fail"] = False
        assert await reporter.check_now() is True and reporter.status("") == SERVING
        assert reporter.status("wework.v1.Unknown") is None
    finally:
        await reporter.stop()


async def test_not_serving_is_final_after_shutdown():
    reporter = HealthReporter(["a.B"], interval_seconds=0.01)
    await reporter.start()
    await reporter.set_all_not_serving()
    assert await reporter.check_now() is False
    await asyncio.sleep(0.05)
    assert reporter.status("") == reporter.status("a.B") == NOT_SERVING


async def test_a_failing_non_critical_check_is_logged_but_keeps_serving(caplog):
    state = {"redis_up": True}

    async def database():
        return None

    async def redis():
        if not state["redis_up"]:
            raise ConnectionError("redis down")

    reporter = HealthReporter(["a.B"], [database, non_critical(redis)], interval_seconds=60)
    await reporter.start()
    try:
        state["redis_up"] = False
        assert await reporter.check_now() is True
        assert reporter.status("") == reporter.status("a.B") == SERVING
        assert "readiness check" in caplog.text and "non-critical" in caplog.text
    finally:
        await reporter.stop()
