"""What the use cases need from the outside world, wired once at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from wework.domain.errors import FieldViolation, InvalidArgument
from wework.domain.identity import LoginPolicy
from wework.persistence.pagination import PageTokens
from wework.persistence.redis.cache import TwoLevelCache
from wework.server.application.ports import UnitsOfWork
from wework.server.security.field_crypto import FieldCipher
from wework.server.security.passwords import PasswordHasher
from wework.server.security.tokens import TokenIssuer


def utcnow() -> datetime:
    """Aware UTC: the persistence layer refuses naive datetimes."""
    return datetime.now(UTC)


@dataclass
class AppContext:
    db: UnitsOfWork
    cipher: FieldCipher
    passwords: PasswordHasher
    tokens: TokenIssuer
    # Two-level caches, by purpose. Invalidated across processes via Redis pub/sub.
    tenant_cache: TwoLevelCache
    credential_cache: TwoLevelCache
    admin_api_key: str
    login_policy: LoginPolicy = field(default_factory=LoginPolicy)
    # Signs page tokens and watch cursors; wework-server derives it from security.token_secret.
    page_tokens: PageTokens = field(default_factory=PageTokens.with_random_key)
    clock: Callable[[], datetime] = utcnow

    def __post_init__(self) -> None:
        # One cipher per process: the units of work hand it to the repositories that seal
        # columns (uow.accounts, uow.users, uow.tenants), so the use cases never pass it around.
        if self.db is not None and self.db.cipher is None:
            self.db.cipher = self.cipher


def require_id(value: str, path: str) -> str:
    """An id field must be present; its shape is not checked (an unknown id is simply NOT_FOUND)."""
    if not value:
        raise InvalidArgument(FieldViolation(path, f"{path.rsplit('.', 1)[-1]} is required"))
    if len(value) > 64:
        raise InvalidArgument(FieldViolation(path, "must be at most 64 characters"))
    return value
