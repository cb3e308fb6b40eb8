"""PasswordHasher: argon2id round trips, wrong passwords, rehash, dummy verify."""

from __future__ import annotations

import asyncio
import threading
import time

import argon2
import pytest
from wework.server.security.passwords import PasswordHasher


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher()  # library defaults, as in production


def test_hash_is_argon2id_and_verifies(hasher):
    h = hasher.hash("correct horse battery staple")
    assert h.startswith("$argon2id$")
    assert hasher.verify(h, "correct horse battery staple") is True
    assert hasher.hash("correct horse battery staple") != h  # salted


def test_wrong_password_is_false_not_an_error(hasher):
    h = hasher.hash("s3cret")
    assert hasher.verify(h, "S3cret") is False
    assert hasher.verify(h, "") is False


def test_unreadable_stored_hash_is_false(hasher):
    assert hasher.verify("not-a-hash", "x") is False
    assert hasher.needs_rehash("not-a-hash") is True


def test_needs_rehash_when_parameters_change(hasher):
    weak = PasswordHasher(argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    old = weak.hash("pw")
    assert hasher.verify(old, "pw") is True  # old hashes keep working...
    assert hasher.needs_rehash(old) is True  # ...and get upgraded at the next login
    assert hasher.needs_rehash(hasher.hash("pw")) is False


def test_only_argon2id():
    with pytest.raises(ValueError):
        PasswordHasher(argon2.PasswordHasher(type=argon2.Type.I))


def test_dummy_verify_is_false_and_costs_like_a_real_verify(hasher):
    h = hasher.hash("pw")

    def best_of(fn, n=5):
        best = float("inf")
        for _ in range(n):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    real = best_of(lambda: hasher.verify(h, "wrong"))
    dummy = best_of(lambda: hasher.dummy_verify("wrong"))
    assert hasher.dummy_verify("pw") is False
    assert 0.33 < dummy / real < 3.0  # same parameters, so the same cost (loose: CI noise)


async def test_async_variants(hasher):
    h = await hasher.hash_async("pw")
    assert await hasher.verify_async(h, "pw") is True
    assert await hasher.verify_async(h, "nope") is False
    assert await hasher.dummy_verify_async("pw") is False


class _Counting(PasswordHasher):
    """A real hasher that records how many computations run at once."""

    def __init__(self, **kwargs) -> None:
        super().__init__(argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1), **kwargs)
        self.running = self.most = 0
        self._lock = threading.Lock()

    def verify(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)  # long enough for every caller to be waiting meanwhile
            return super().verify(password_hash, password)
        finally:
            with self._lock:
                self.running -= 1


async def test_the_limit_holds_even_when_callers_go_away():
    hasher = _Counting(max_concurrency=2)
    h = hasher.hash("pw")
    calls = [asyncio.ensure_future(hasher.verify_async(h, "pw")) for _ in range(8)]
    await asyncio.sleep(0.01)
    for call in calls[:4]:  # cancelled callers (a client deadline) must not free their slot early
        call.cancel()
    more = [asyncio.ensure_future(hasher.dummy_verify_async("x")) for _ in range(4)]
    assert await asyncio.gather(*calls[4:]) == [True] * 4
    assert await asyncio.gather(*more) == [False] * 4
    assert hasher.most == 2
