"""Security primitives: password hashing, field encryption, access tokens, API keys."""

from wework.server.security.api_keys import (
    ParsedApiKey,
    generate_api_key,
    hash_secret,
    parse_api_key,
    verify_secret,
)
from wework.server.security.field_crypto import FieldCipher, FieldCryptoError
from wework.server.security.passwords import PasswordHasher
from wework.server.security.tokens import AccessClaims, TokenIssuer

__all__ = [
    "AccessClaims",
    "FieldCipher",
    "FieldCryptoError",
    "ParsedApiKey",
    "PasswordHasher",
    "TokenIssuer",
    "generate_api_key",
    "hash_secret",
    "parse_api_key",
    "verify_secret",
]
