"""Encryption of sensitive columns (AES-256-GCM) and keyed hashes for equality lookups.

Token format: `v1:<key_id>:<urlsafe base64(nonce(12) + ciphertext + tag(16))>`. The key id
travels with the value, so after a rotation old rows still decrypt with their old key and a
background job can find them (`needs_reencrypt`) and rewrite them under the active key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import unicodedata
from typing import TYPE_CHECKING, overload

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from wework.server.settings import SecurityConfig

VERSION = "v1"
_NONCE_BYTES = 12  # 96-bit random nonces: safe for ~2^32 encryptions per key (NIST SP 800-38D)
_TAG_BYTES = 16
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")  # no ":", the token separator
_PHONE_NOISE = re.compile(r"[\s\-().]")
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class FieldCryptoError(ValueError):
    """A token cannot be decrypted: malformed, unknown key id, or tampered with."""


class FieldCipher:
    """`encrypt`/`decrypt` with a `context` (e.g. "users.email") bound as associated data:
    a ciphertext copied into another column fails to decrypt there. Put a row id in the
    context too (e.g. "users.email:<user_id>") to also stop swaps between rows."""

    def __init__(self, keys: dict[str, bytes], active_key_id: str, lookup_key: bytes) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        for key_id, key in keys.items():
            if not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"bad encryption key id {key_id!r} (1-32 of A-Z a-z 0-9 _ . -)")
            if len(key) != 32:
                raise ValueError(f"encryption key {key_id!r} must be 32 bytes (AES-256), got {len(key)}")
        if active_key_id not in keys:
            raise ValueError(f"active key id {active_key_id!r} is not among the keys")
        if not lookup_key:
            raise ValueError("the lookup hash key must not be empty")
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id
        self._lookup_key = bytes(lookup_key)

    @classmethod
    def from_settings(cls, security: SecurityConfig) -> FieldCipher:
        """From SecurityConfig: encryption_keys are base64 of 32 bytes, lookup_hash_key is text."""
        if not security.encryption_keys or security.active_encryption_key_id is None:
            raise ValueError("security.encryption_keys and security.active_encryption_key_id are required")
        if security.lookup_hash_key is None:
            raise ValueError("security.lookup_hash_key is required")
        keys = {
            key_id: base64.b64decode(secret.get_secret_value(), validate=True)
            for key_id, secret in security.encryption_keys.items()
        }
        return cls(
            keys, security.active_encryption_key_id, security.lookup_hash_key.get_secret_value().encode()
        )

    @overload
    def encrypt(self, plaintext: str, *, context: str) -> str: ...
    @overload
    def encrypt(self, plaintext: None, *, context: str) -> None: ...

    def encrypt(self, plaintext: str | None, *, context: str) -> str | None:
        """None stays None (a NULL column); "" is encrypted like any other value."""
        if plaintext is None:
            return None
        if not context:
            raise ValueError("context must not be empty")
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead[self.active_key_id].encrypt(nonce, plaintext.encode("utf-8"), context.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{VERSION}:{self.active_key_id}:{body}"

    @overload
    def decrypt(self, token: str, *, context: str) -> str: ...
    @overload
    def decrypt(self, token: None, *, context: str) -> None: ...

    def decrypt(self, token: str | None, *, context: str) -> str | None:
        """Raises FieldCryptoError when the token is malformed, names an unknown key, was
        altered, or belongs to another context. The message never contains the data."""
        if token is None:
            return None
        key_id, blob = self._parse(token)
        aead = self._aead.get(key_id)
        if aead is None:
            raise FieldCryptoError(f"encrypted value uses unknown key id {key_id!r}")
        try:
            plaintext = aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise FieldCryptoError(
                f"encrypted value failed authentication (tampered, or not a {context!r} value)"
            ) from None
        return plaintext.decode("utf-8")

    def needs_reencrypt(self, token: str | None) -> bool:
        """True when the token was made under another key than the active one."""
        if token is None:
            return False
        key_id, _ = self._parse(token)
        return key_id != self.active_key_id

    def key_id_of(self, token: str) -> str:
        return self._parse(token)[0]

    @overload
    def lookup_hash(self, value: str, *, context: str) -> str: ...
    @overload
    def lookup_hash(self, value: None, *, context: str) -> None: ...

    def lookup_hash(self, value: str | None, *, context: str) -> str | None:
        """HMAC-SHA256 hex (64 chars) of the normalized value, for `WHERE email_hash = ?`.

        Keyed, so a database dump alone cannot be brute-forced for known emails/phones.
        The context is hashed in too, so equal values in different columns do not match.
        Normalization depends on the context's last part: "*email" lowercases and strips,
        "*phone" also drops spaces, dashes, dots and parentheses, anything else is stripped.
        """
        if value is None:
            return None
        if not context:
            raise ValueError("context must not be empty")
        normalized = normalize(value, context=context)
        message = context.encode() + b"\x00" + normalized.encode("utf-8")
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()

    def _parse(self, token: str) -> tuple[str, bytes]:
        parts = token.split(":")
        if len(parts) != 3 or parts[0] != VERSION or not parts[1]:
            raise FieldCryptoError("not an encrypted value (expected v1:<key_id>:<data>)")
        if not _B64URL.fullmatch(parts[2]):  # the decoder alone would skip stray characters
            raise FieldCryptoError("encrypted value is not valid base64")
        try:
            blob = base64.urlsafe_b64decode(parts[2].encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise FieldCryptoError("encrypted value is not valid base64") from None
        if len(blob) < _NONCE_BYTES + _TAG_BYTES:
            raise FieldCryptoError("encrypted value is truncated")
        return parts[1], blob


def normalize(value: str, *, context: str) -> str:
    """The form that lookup hashes are computed over (see FieldCipher.lookup_hash)."""
    # NFKC: full-width characters (common in CJK input methods) hash like ASCII ones.
    text = unicodedata.normalize("NFKC", value).strip()
    column = context.rsplit(".", 1)[-1].split(":", 1)[0].lower()
    if column.endswith("email"):
        return text.lower()
    if column.endswith("phone"):
        return _PHONE_NOISE.sub("", text)
    return text
