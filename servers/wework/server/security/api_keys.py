"""API keys for backends: `wwk_<tenant id hex>_<key id hex>_<secret>`.

The key names its tenant and its key row, so authentication is one primary-key read on
the right shard (no global index of secrets), followed by a comparison of hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

from wework.domain.errors import Unauthenticated

API_KEY_PREFIX = "wwk_"
DISPLAY_PREFIX_LENGTH = 12
# token_urlsafe(32): 32 random bytes -> 43 URL-safe base64 characters (may contain "_").
_API_KEY = re.compile(r"wwk_([0-9a-f]{32})_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class ParsedApiKey:
    tenant_id: str  # canonical UUID text, with dashes
    key_id: str
    secret: str

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"ParsedApiKey(tenant_id={self.tenant_id!r}, key_id={self.key_id!r}, secret=***)"


def generate_api_key(tenant_id: str | uuid.UUID, key_id: str | uuid.UUID) -> tuple[str, str, str]:
    """Returns (full_key, prefix, secret_hash). Show full_key once; store prefix and hash."""
    secret = secrets.token_urlsafe(32)
    full_key = f"{API_KEY_PREFIX}{_uuid(tenant_id).hex}_{_uuid(key_id).hex}_{secret}"
    return full_key, full_key[:DISPLAY_PREFIX_LENGTH], hash_secret(secret)


def parse_api_key(full_key: str) -> ParsedApiKey:
    """Raises Unauthenticated for anything that is not a well-formed key."""
    # fullmatch, not match with "$": "$" also matches before a trailing newline.
    match = _API_KEY.fullmatch(full_key) if isinstance(full_key, str) and len(full_key) < 256 else None
    if match is None:
        raise Unauthenticated("malformed API key")
    tenant_hex, key_hex, secret = match.groups()
    return ParsedApiKey(str(uuid.UUID(hex=tenant_hex)), str(uuid.UUID(hex=key_hex)), secret)


def hash_secret(secret: str) -> str:
    """SHA-256 hex. A fast hash is right here, unlike for passwords: the secret is 256 bits
    from a CSPRNG, so there is nothing to guess, and a slow KDF would only cost CPU on
    every authenticated call."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_secret(secret: str, stored_hash: str) -> bool:
    # Constant-time: a timing difference must not reveal how much of the hash matched.
    return hmac.compare_digest(hash_secret(secret).encode("ascii"), stored_hash.encode("utf-8"))


def _uuid(value: str | uuid.UUID) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"not a UUID: {value!r}") from None
