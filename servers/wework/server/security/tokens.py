"""Short-lived access tokens: JWT, HS256 (one shared secret; every replica issues and verifies).

Claims: iss, aud, sub (user id), tid (tenant id), perms, sv (session version), jti, iat, exp.
`sv` lets the caller revoke every outstanding token of a user (password change, lockout,
role change) by bumping the user's session_version and comparing it on verify.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
from wework.domain.errors import Unauthenticated

if TYPE_CHECKING:
    from wework.server.settings import SecurityConfig

ALGORITHM = "HS256"
DEFAULT_AUDIENCE = "wework-api"
_REQUIRED = ["exp", "iat", "sub", "aud", "iss"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    tenant_id: str
    permissions: frozenset[str]
    expires_at: datetime  # UTC
    session_version: int
    token_id: str


class TokenIssuer:
    def __init__(
        self,
        secret: bytes,
        ttl_seconds: int,
        issuer: str = "wework",
        *,
        audience: str = DEFAULT_AUDIENCE,
        leeway_seconds: float = 30.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if len(secret) < 32:
            # RFC 7518 3.2: an HS256 key must be at least as long as the hash (256 bits).
            raise ValueError("the token secret must be at least 32 bytes")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._secret = bytes(secret)
        self.ttl = timedelta(seconds=ttl_seconds)
        self.issuer = issuer
        self.audience = audience
        # Replicas' clocks differ a little; without leeway a fresh token could look "not yet valid".
        self.leeway = leeway_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, security: SecurityConfig) -> TokenIssuer:
        if security.token_secret is None:
            raise ValueError("security.token_secret is required")
        return cls(
            security.token_secret.get_secret_value().encode("utf-8"), security.access_token_ttl_seconds
        )

    def issue(
        self, user_id: str, tenant_id: str, permissions: Iterable[str], session_version: int
    ) -> tuple[str, datetime]:
        """Returns (token, expires_at in UTC, whole seconds as in the token)."""
        now = self._clock().astimezone(UTC).replace(microsecond=0)
        expires_at = now + self.ttl
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "tid": str(tenant_id),
            "perms": sorted(set(permissions)),
            "sv": int(session_version),
            "jti": uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), expires_at

    def verify(self, token: str) -> AccessClaims:
        """Raises Unauthenticated (short, safe message) for any bad, forged or expired token."""
        if not token or len(token) > 8192:
            raise Unauthenticated("invalid access token")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],  # pinned: never trust the token's own "alg"
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("invalid access token") from None
        try:
            user_id, tenant_id = claims["sub"], claims["tid"]
            perms, session_version = claims.get("perms", []), claims["sv"]
            if not (isinstance(user_id, str) and isinstance(tenant_id, str) and user_id and tenant_id):
                raise TypeError
            if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
                raise TypeError
            if isinstance(session_version, bool) or not isinstance(session_version, int):
                raise TypeError
            return AccessClaims(
                user_id=user_id,
                tenant_id=tenant_id,
                permissions=frozenset(perms),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                session_version=session_version,
                token_id=str(claims.get("jti", "")),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            # Signed by us but not our shape (e.g. another token type): still not a credential.
            raise Unauthenticated("invalid access token") from None
