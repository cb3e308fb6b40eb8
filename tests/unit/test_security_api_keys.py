"""API keys: format, parsing, hashing, malformed keys."""

from __future__ import annotations

import re
import uuid

import pytest
from wework.domain.errors import Unauthenticated
from wework.server.security.api_keys import (
    ParsedApiKey,
    generate_api_key,
    hash_secret,
    parse_api_key,
    verify_secret,
)

TENANT = "0191e0a0-1234-7abc-8def-00000000a001"
KEY = uuid.UUID("0191e0a0-5678-7abc-8def-00000000b002")


def test_generate_format_and_round_trip():
    full, prefix, secret_hash = generate_api_key(TENANT, KEY)
    assert re.fullmatch(r"wwk_[0-9a-f]{32}_[0-9a-f]{32}_[A-Za-z0-9_-]{43}", full)
    assert prefix == full[:12] and prefix.startswith("wwk_")
    parsed = parse_api_key(full)
    assert parsed == ParsedApiKey(TENANT, str(KEY), parsed.secret)
    assert full.endswith("_" + parsed.secret)
    assert re.fullmatch(r"[0-9a-f]{64}", secret_hash)
    assert verify_secret(parsed.secret, secret_hash) is True
    assert "secret=***" in repr(parsed) and parsed.secret not in repr(parsed)


def test_keys_are_unique():
    assert len({generate_api_key(TENANT, KEY)[0] for _ in range(50)}) == 50


def test_secret_with_underscores_parses():
    secret = "ab_cd-" + "x" * 37  # token_urlsafe output may contain "_"
    full = f"wwk_{uuid.UUID(TENANT).hex}_{KEY.hex}_{secret}"
    assert parse_api_key(full).secret == secret


def test_wrong_secret_rejected():
    full, _, secret_hash = generate_api_key(TENANT, KEY)
    secret = parse_api_key(full).secret
    assert verify_secret(secret[:-1] + ("A" if secret[-1] != "A" else "B"), secret_hash) is False
    assert verify_secret("", secret_hash) is False
    assert verify_secret(secret, "0" * 64) is False


def test_hash_secret_is_sha256_hex():
    assert hash_secret("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _valid() -> str:
    return generate_api_key(TENANT, KEY)[0]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda k: "",
        lambda k: "wwk_",
        lambda k: k.replace("wwk_", "wwx_", 1),
        lambda k: k[:-1],  # secret too short
        lambda k: k + "A",  # secret too long
        lambda k: k[:4] + k[5:],  # tenant hex too short
        lambda k: k[:4] + k[4:36].upper() + k[36:],  # uppercase hex
        lambda k: k[:4] + "g" + k[5:],  # not hex
        lambda k: k.replace("_", "-", 1),
        lambda k: k[:-1] + "=",  # not URL-safe base64
        lambda k: " " + k,
        lambda k: k + "\n",
        lambda k: k + "x" * 1000,
        lambda k: "Bearer " + k,
    ],
)
def test_malformed_keys_rejected(mutate):
    with pytest.raises(Unauthenticated, match="malformed API key"):
        parse_api_key(mutate(_valid()))


def test_non_string_rejected():
    with pytest.raises(Unauthenticated):
        parse_api_key(None)  # type: ignore[arg-type]


def test_bad_ids_refused_at_generation():
    with pytest.raises(ValueError):
        generate_api_key("not-a-uuid", KEY)
