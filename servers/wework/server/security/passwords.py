"""Password hashing: Argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from wework.server.observability.metrics import PASSWORD_HASHES

logger = logging.getLogger(__name__)
T = TypeVar("T")


def default_concurrency() -> int:
    """One Argon2 computation per core, at most 4: each holds 64 MiB and a core for tens of ms."""
    return max(1, min(4, os.cpu_count() or 1))


class PasswordHasher:
    """`hash`, `verify`, `needs_rehash`, plus `dummy_verify` for unknown users.

    Each call costs tens of milliseconds of CPU and 64 MiB of memory. Servers use only the
    *_async variants: they run it on this hasher's own threads (the C library releases the GIL),
    at most `max_concurrency` at a time in the process, so a burst of logins can neither exhaust
    memory nor take every core from the other calls; the rest wait their turn. A slot is freed
    when the computation ends, not when its caller goes away: a cancelled login cannot make
    room for more computations than the limit.
    """

    def __init__(self, hasher: argon2.PasswordHasher | None = None, *, max_concurrency: int | None = None) -> None:
        self._hasher = hasher or argon2.PasswordHasher()  # argon2id, library defaults
        if self._hasher.type is not argon2.Type.ID:
            raise ValueError("only argon2id is allowed")
        # Made up front: computing it on first use would make that one call slower.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self.max_concurrency = max_concurrency or default_concurrency()
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        # Its own threads: queued hashes never hold the default executor others rely on.
        self._executor = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="argon2")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True iff `password` matches. False on a mismatch; an unreadable stored hash is
        also False (logged): the user cannot log in, but the caller sees no crash."""
        try:
            return self._hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError) as exc:
            logger.error("stored password hash cannot be verified: %s", type(exc).__name__)
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash uses other parameters than the current ones (rehash after a
        successful login). An unreadable hash also needs replacing."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def dummy_verify(self, password: str) -> bool:
        """Verifies against a throwaway hash with the same parameters and returns False.

        Call it when the user does not exist, so that a wrong username costs as much time
        as a wrong password and response times do not reveal which usernames exist.
        """
        self.verify(self._dummy_hash, password)
        return False

    async def _limited(self, operation: str, fn: Callable[..., T], *args: object) -> T:
        await self._semaphore.acquire()
        PASSWORD_HASHES.labels(operation=operation).inc()
        try:
            running = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except BaseException:
            self._semaphore.release()
            raise
        running.add_done_callback(lambda _: self._semaphore.release())
        return await asyncio.shield(running)

    async def hash_async(self, password: str) -> str:
        return await self._limited("hash", self.hash, password)

    async def verify_async(self, password_hash: str, password: str) -> bool:
        return await self._limited("verify", self.verify, password_hash, password)

    async def dummy_verify_async(self, password: str) -> bool:
        # Counted as a verify: from outside, an unknown user must look like a known one.
        await self.verify_async(self._dummy_hash, password)
        return False
