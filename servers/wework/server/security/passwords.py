"""Password hashing: Argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)."""

from __future__ import annotations

import asyncio
import logging
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

logger = logging.getLogger(__name__)


class PasswordHasher:
    """`hash`, `verify`, `needs_rehash`, plus `dummy_verify` for unknown users.

    Each call costs tens of milliseconds of CPU and 64 MiB of memory. The *_async variants
    run it in a worker thread (the C library releases the GIL), at most `max_concurrency`
    at a time so a burst of logins cannot exhaust memory or stall the event loop.
    """

    def __init__(self, hasher: argon2.PasswordHasher | None = None, *, max_concurrency: int = 4) -> None:
        self._hasher = hasher or argon2.PasswordHasher()  # argon2id, library defaults
        if self._hasher.type is not argon2.Type.ID:
            raise ValueError("only argon2id is allowed")
        # Made up front: computing it on first use would make that one call slower.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self._semaphore = asyncio.Semaphore(max_concurrency)

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

    async def hash_async(self, password: str) -> str:
        async with self._semaphore:
            return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, password_hash: str, password: str) -> bool:
        async with self._semaphore:
            return await asyncio.to_thread(self.verify, password_hash, password)

    async def dummy_verify_async(self, password: str) -> bool:
        async with self._semaphore:
            return await asyncio.to_thread(self.dummy_verify, password)
