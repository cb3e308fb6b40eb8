"""FieldCipher: AES-256-GCM tokens, context binding, rotation, lookup hashes."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import SecretStr
from wework.server.security.field_crypto import FieldCipher, FieldCryptoError, normalize
from wework.server.settings import SecurityConfig

K1, K2 = os.urandom(32), os.urandom(32)
LOOKUP = b"lookup-key-for-tests-0123456789abcdef"


@pytest.fixture
def cipher() -> FieldCipher:
    return FieldCipher({"k1": K1}, "k1", LOOKUP)


def test_round_trip_and_format(cipher):
    token = cipher.encrypt("Alice@Example.com", context="users.email")
    version, key_id, body = token.split(":")
    assert (version, key_id) == ("v1", "k1")
    raw = base64.urlsafe_b64decode(body)
    assert len(raw) == 12 + len("Alice@Example.com") + 16  # nonce + ciphertext + tag
    assert cipher.decrypt(token, context="users.email") == "Alice@Example.com"


def test_random_nonce_each_time(cipher):
    a = cipher.encrypt("same", context="users.phone")
    b = cipher.encrypt("same", context="users.phone")
    assert a != b
    assert cipher.decrypt(a, context="users.phone") == cipher.decrypt(b, context="users.phone") == "same"


def test_none_and_empty(cipher):
    assert cipher.encrypt(None, context="users.email") is None
    assert cipher.decrypt(None, context="users.email") is None
    assert cipher.lookup_hash(None, context="users.email") is None
    token = cipher.encrypt("", context="users.email")
    assert token and cipher.decrypt(token, context="users.email") == ""


def test_unicode(cipher):
    token = cipher.encrypt("张三 📱 +86 138", context="users.name")
    assert cipher.decrypt(token, context="users.name") == "张三 📱 +86 138"


def _flip(token: str, index: int) -> str:
    prefix, body = token.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[index] ^= 0x01
    return f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"


@pytest.mark.parametrize("index", [0, 11, 12, -1])  # nonce, first/last ciphertext+tag bytes
def test_tamper_detected(cipher, index):
    token = cipher.encrypt("secret value", context="users.email")
    with pytest.raises(FieldCryptoError, match="authentication"):
        cipher.decrypt(_flip(token, index), context="users.email")


def test_wrong_context_rejected(cipher):
    token = cipher.encrypt("x@y.z", context="users.email")
    with pytest.raises(FieldCryptoError, match="authentication"):
        cipher.decrypt(token, context="users.phone")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plain text",
        "v2:k1:AAAA",
        "v1::AAAA",
        "v1:k1",
        "v1:k1:not base64!",
        "v1:k1:AAAA",
        "v1:k1:AA:BB",
        "v1:k1:" + "A" * 40 + "\n",
    ],
)
def test_malformed_tokens_rejected(cipher, bad):
    with pytest.raises(FieldCryptoError):
        cipher.decrypt(bad, context="users.email")


def test_error_message_does_not_leak_plaintext(cipher):
    token = cipher.encrypt("very-private@example.com", context="users.email")
    with pytest.raises(FieldCryptoError) as info:
        cipher.decrypt(_flip(token, -1), context="users.email")
    assert "private" not in str(info.value)


def test_rotation(cipher):
    old_token = cipher.encrypt("13800138000", context="users.phone")
    assert cipher.needs_reencrypt(old_token) is False

    rotated = FieldCipher({"k1": K1, "k2": K2}, "k2", LOOKUP)
    assert rotated.decrypt(old_token, context="users.phone") == "13800138000"
    assert rotated.needs_reencrypt(old_token) is True
    new_token = rotated.encrypt("13800138000", context="users.phone")
    assert new_token.startswith("v1:k2:")
    assert rotated.needs_reencrypt(new_token) is False
    assert rotated.needs_reencrypt(None) is False

    # Once k1 is retired, its tokens fail clearly.
    retired = FieldCipher({"k2": K2}, "k2", LOOKUP)
    with pytest.raises(FieldCryptoError, match="unknown key id 'k1'"):
        retired.decrypt(old_token, context="users.phone")
    assert retired.decrypt(new_token, context="users.phone") == "13800138000"


def test_same_key_id_with_other_key_fails(cipher):
    token = cipher.encrypt("x", context="c.d")
    impostor = FieldCipher({"k1": K2}, "k1", LOOKUP)
    with pytest.raises(FieldCryptoError):
        impostor.decrypt(token, context="c.d")


def test_lookup_hash_stable_normalized_and_keyed(cipher):
    h = cipher.lookup_hash("Alice@Example.com", context="users.email")
    assert len(h) == 64 and int(h, 16) >= 0
    assert cipher.lookup_hash("  alice@example.COM \n", context="users.email") == h
    assert FieldCipher({"k9": K2}, "k9", LOOKUP).lookup_hash("alice@example.com", context="users.email") == h
    assert cipher.lookup_hash("bob@example.com", context="users.email") != h
    assert (
        FieldCipher({"k1": K1}, "k1", b"another-lookup-key").lookup_hash(
            "alice@example.com", context="users.email"
        )
        != h
    )
    # Domain separation: the same text in another column hashes differently.
    assert cipher.lookup_hash("alice@example.com", context="contacts.email") != h


def test_normalization_rules():
    assert normalize(" A@B.C ", context="users.email") == "a@b.c"
    assert normalize("+86 (138) 0013-8000", context="users.phone") == "+8613800138000"
    assert normalize("１３８", context="users.phone") == "138"  # full-width digits
    assert normalize(" Name ", context="users.display_name") == "Name"  # case kept


@pytest.mark.parametrize(
    "keys,active,lookup",
    [
        ({}, "k1", LOOKUP),
        ({"k1": b"short"}, "k1", LOOKUP),
        ({"k1": K1}, "k2", LOOKUP),
        ({"k:1": K1}, "k:1", LOOKUP),
        ({"k1": K1}, "k1", b""),
    ],
)
def test_bad_construction(keys, active, lookup):
    with pytest.raises(ValueError):
        FieldCipher(keys, active, lookup)


def test_from_settings():
    config = SecurityConfig(
        encryption_keys={
            "k1": SecretStr(base64.b64encode(K1).decode()),
            "k2": SecretStr(base64.b64encode(K2).decode()),
        },
        active_encryption_key_id="k2",
        lookup_hash_key=SecretStr(LOOKUP.decode()),
    )
    from_config = FieldCipher.from_settings(config)
    direct = FieldCipher({"k1": K1, "k2": K2}, "k2", LOOKUP)
    assert from_config.active_key_id == "k2"
    assert from_config.decrypt(direct.encrypt("v", context="a.b"), context="a.b") == "v"
    assert from_config.lookup_hash("v", context="a.b") == direct.lookup_hash("v", context="a.b")
    with pytest.raises(ValueError, match="lookup_hash_key"):
        FieldCipher.from_settings(
            SecurityConfig(encryption_keys=config.encryption_keys, active_encryption_key_id="k1")
        )
