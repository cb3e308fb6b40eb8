"""Settings refuse unsafe or inconsistent values before anything is served."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from wework.server.settings import CallbackConfig, SecurityConfig, ServerConfig


def test_unsigned_provider_callbacks_are_refused_beyond_loopback():
    assert CallbackConfig(http_port=8080).http_host == "127.0.0.1"  # a local simulator: allowed
    with pytest.raises(ValidationError, match="callback.secret is required"):
        CallbackConfig(http_port=8080, http_host="0.0.0.0")
    assert CallbackConfig(http_port=8080, http_host="0.0.0.0", secret="s" * 32).secret is not None
    assert CallbackConfig(http_host="0.0.0.0").http_port is None  # off: nothing to sign


def test_services_are_a_known_subset():
    assert ServerConfig(services="tenant, message").services == ["tenant", "message"]
    assert "account" in ServerConfig(services="all").services
    with pytest.raises(ValidationError, match="unknown service"):
        ServerConfig(services="tenant,nonsense")


def test_a_short_lookup_hash_key_is_refused():
    with pytest.raises(ValidationError, match="lookup_hash_key must be at least 32 characters"):
        SecurityConfig(lookup_hash_key="too-short")
    assert SecurityConfig(lookup_hash_key="x" * 32).lookup_hash_key is not None
