"""TokenIssuer: HS256 access tokens; expired, forged and malformed tokens are rejected."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import SecretStr
from wework.domain.errors import Unauthenticated
from wework.server.security.tokens import AccessClaims, TokenIssuer
from wework.server.settings import SecurityConfig

SECRET = b"0123456789abcdef0123456789abcdef-test"
USER, TENANT = "0191e0a0-0000-7000-8000-000000000001", "0191e0a0-0000-7000-8000-0000000000aa"


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(SECRET, ttl_seconds=900)


def test_round_trip(issuer):
    token, expires_at = issuer.issue(USER, TENANT, ["messages.send", "accounts.read", "messages.send"], 3)
    claims = issuer.verify(token)
    assert isinstance(claims, AccessClaims)
    assert (claims.user_id, claims.tenant_id, claims.session_version) == (USER, TENANT, 3)
    assert claims.permissions == frozenset({"messages.send", "accounts.read"})
    assert claims.expires_at == expires_at and expires_at.tzinfo is not None
    now = datetime.now(UTC)
    assert timedelta(seconds=890) < expires_at - now <= timedelta(seconds=900)
    assert claims.token_id


def test_payload_has_required_claims(issuer):
    token, _ = issuer.issue(USER, TENANT, [], 0)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert {"exp", "iat", "sub", "aud", "iss", "tid", "perms", "sv", "jti"} <= payload.keys()
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_expired_rejected():
    past = TokenIssuer(SECRET, ttl_seconds=60, clock=lambda: datetime.now(UTC) - timedelta(hours=1))
    token, _ = past.issue(USER, TENANT, [], 0)
    with pytest.raises(Unauthenticated, match="expired"):
        TokenIssuer(SECRET, ttl_seconds=60).verify(token)


def test_small_clock_skew_tolerated():
    ahead = TokenIssuer(SECRET, ttl_seconds=60, clock=lambda: datetime.now(UTC) + timedelta(seconds=10))
    token, _ = ahead.issue(USER, TENANT, [], 0)
    assert TokenIssuer(SECRET, ttl_seconds=60).verify(token).user_id == USER


def test_forged_signature_rejected(issuer):
    forged, _ = TokenIssuer(b"another-secret-another-secret-xx", ttl_seconds=900).issue(
        USER, TENANT, ["*"], 0
    )
    with pytest.raises(Unauthenticated, match="invalid access token"):
        issuer.verify(forged)


def test_modified_payload_rejected(issuer):
    token, _ = issuer.issue(USER, TENANT, ["accounts.read"], 0)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tid"] = "someone-else"
    new_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated):
        issuer.verify(f"{header}.{new_payload}.{signature}")


def test_alg_none_rejected(issuer):
    now = int(datetime.now(UTC).timestamp())
    unsigned = jwt.encode(
        {
            "iss": "wework",
            "aud": "wework-api",
            "sub": USER,
            "tid": TENANT,
            "perms": [],
            "sv": 0,
            "iat": now,
            "exp": now + 600,
        },
        key=None,
        algorithm="none",
    )
    with pytest.raises(Unauthenticated):
        issuer.verify(unsigned)


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "aud", "iss", "tid", "sv"])
def test_missing_claim_rejected(issuer, missing):
    now = int(datetime.now(UTC).timestamp())
    payload = {
        "iss": "wework",
        "aud": "wework-api",
        "sub": USER,
        "tid": TENANT,
        "perms": [],
        "sv": 0,
        "iat": now,
        "exp": now + 600,
    }
    del payload[missing]
    with pytest.raises(Unauthenticated):
        issuer.verify(jwt.encode(payload, SECRET, algorithm="HS256"))


def test_wrong_audience_or_issuer_rejected(issuer):
    other_aud = TokenIssuer(SECRET, 900, audience="something-else")
    other_iss = TokenIssuer(SECRET, 900, issuer="not-wework")
    for other in (other_aud, other_iss):
        token, _ = other.issue(USER, TENANT, [], 0)
        with pytest.raises(Unauthenticated):
            issuer.verify(token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 10000])
def test_garbage_rejected(issuer, garbage):
    with pytest.raises(Unauthenticated):
        issuer.verify(garbage)


def test_short_secret_refused():
    with pytest.raises(ValueError):
        TokenIssuer(b"short", 900)


def test_from_settings():
    config = SecurityConfig(token_secret=SecretStr(SECRET.decode()), access_token_ttl_seconds=120)
    issuer = TokenIssuer.from_settings(config)
    token, expires_at = issuer.issue(USER, TENANT, [], 1)
    assert expires_at - datetime.now(UTC) <= timedelta(seconds=120)
    assert TokenIssuer(SECRET, 120).verify(token).session_version == 1
