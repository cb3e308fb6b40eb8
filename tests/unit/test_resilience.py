"""The shared resilience helpers on their own (wework.persistence.resilience): the Redis breaker's
timing through an injected clock, close_quietly, and the tenacity-based transaction retry.
The resubscribing listener needs a real Redis: tests/integration/test_resilience_listener.py."""

from __future__ import annotations

import logging

import pymysql
import pytest
import sqlalchemy as sa
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from wework.persistence.resilience import RedisBreaker, close_quietly, retrying


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, pause: float = 1.0) -> RedisBreaker:
    return RedisBreaker("test", fallback="using the fallback", pause_seconds=pause, clock=clock,
                        logger=logging.getLogger("test.breaker"))


def test_breaker_opens_for_the_pause_after_a_failure_then_closes():
    clock = Clock()
    b = breaker(clock, pause=2.0)
    assert not b.is_open
    b.failed(RedisConnectionError("down"))
    assert b.is_open and not b.healthy
    clock.now += 1.999
    assert b.is_open
    clock.now += 0.001
    assert not b.is_open  # the pause is over: callers try Redis again
    assert not b.healthy  # ... but nothing has succeeded yet
    b.succeeded()
    assert b.healthy and not b.is_open
    assert b.failures == 1


def test_each_failure_restarts_the_pause():
    clock = Clock()
    b = breaker(clock)
    b.failed(RedisTimeoutError("slow"))
    clock.now += 0.8
    b.failed(OSError("in flight when it opened"))
    clock.now += 0.8
    assert b.is_open  # 1.6 s after the first failure, 0.8 s after the second
    clock.now += 0.2
    assert not b.is_open


def test_a_redis_answer_does_not_open_it():
    """WRONGTYPE, NOPERM...: Redis is reachable, so pausing would not help."""
    clock = Clock()
    b = breaker(clock)
    b.failed(ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"))
    assert not b.is_open and b.healthy and b.failures == 1


def test_an_outage_is_logged_once_and_its_end_once(caplog):
    clock = Clock()
    b = breaker(clock)
    with caplog.at_level(logging.INFO, logger="test.breaker"):
        for _ in range(5):
            b.failed(RedisConnectionError("down"))
            clock.now += 1.5
        b.succeeded()
        b.succeeded()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "Redis unreachable" in messages[0] and "using the fallback" in messages[0]
    assert "reachable again" in messages[1]


def test_an_error_level_failure_is_logged_even_during_a_known_outage(caplog):
    b = breaker(Clock())
    with caplog.at_level(logging.INFO, logger="test.breaker"):
        b.failed(RedisConnectionError("down"))
        b.failed(RedisConnectionError("still down"), level=logging.ERROR)
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.ERROR]


def test_a_zero_pause_never_skips_redis():
    b = breaker(Clock(), pause=0.0)
    b.failed(RedisConnectionError("down"))
    assert not b.is_open


def test_a_negative_pause_is_refused():
    with pytest.raises(ValueError):
        breaker(Clock(), pause=-1)


class Closable:
    def __init__(self, error: Exception | None = None, *, async_close_name: str = "close") -> None:
        self.closed = 0
        self._error = error

        async def close() -> None:
            self.closed += 1
            if self._error is not None:
                raise self._error

        setattr(self, async_close_name, close)


async def test_close_quietly_closes_and_swallows_a_failure(caplog):
    ok, broken = Closable(), Closable(OSError("connection reset"))
    with caplog.at_level(logging.DEBUG, logger="wework.persistence.resilience"):
        await close_quietly(ok, "session")
        await close_quietly(broken, "connection")
    assert ok.closed == 1 and broken.closed == 1
    assert any("closing the connection failed" in r.getMessage() for r in caplog.records)


async def test_close_quietly_prefers_aclose():
    """redis-py's clients deprecate close() in favour of aclose()."""
    resource = Closable(async_close_name="aclose")
    await close_quietly(resource)
    assert resource.closed == 1


async def test_close_quietly_lets_cancellation_through():
    import asyncio

    with pytest.raises(asyncio.CancelledError):
        await close_quietly(Closable(asyncio.CancelledError()))


def mysql_error(code: int, text: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("UPDATE t", {}, pymysql.err.OperationalError(code, text))


async def test_retrying_runs_the_transaction_again_after_a_deadlock():
    calls = []

    async def transaction() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise mysql_error(1213, "Deadlock found when trying to get lock; try restarting transaction")
        return "committed"

    assert await retrying(transaction) == "committed"
    assert len(calls) == 3


async def test_retrying_gives_up_after_the_attempts_with_the_last_error():
    calls = []

    async def transaction() -> None:
        calls.append(1)
        raise mysql_error(1205, "Lock wait timeout exceeded; try restarting transaction")

    with pytest.raises(sa.exc.OperationalError, match="Lock wait timeout"):
        await retrying(transaction, attempts=2)
    assert len(calls) == 2


async def test_retrying_does_not_repeat_other_errors():
    calls = []

    async def transaction() -> None:
        calls.append(1)
        raise mysql_error(1062, "Duplicate entry 'x' for key 'PRIMARY'")

    with pytest.raises(sa.exc.OperationalError, match="Duplicate entry"):
        await retrying(transaction)
    assert len(calls) == 1


async def test_retrying_takes_its_own_rule_of_what_to_repeat():
    """verify repeats a statement after a lock wait timeout only (a deadlock rolled back more)."""
    calls = []

    def lock_wait_only(exc: BaseException) -> bool:
        return isinstance(exc, sa.exc.OperationalError) and exc.orig.args[0] == 1205

    async def statement() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise mysql_error(1205, "Lock wait timeout exceeded")
        if len(calls) == 2:
            raise mysql_error(1213, "Deadlock found")
        return "done"

    with pytest.raises(sa.exc.OperationalError, match="Deadlock"):
        await retrying(statement, attempts=5, retry_on=lock_wait_only, first_wait=0.001)
    assert len(calls) == 2
