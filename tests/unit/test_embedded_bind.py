"""The embedded mode runs on a generated admin key: it listens on loopback unless told otherwise;
a configured deployment (the Helm chart) keeps 0.0.0.0."""

from __future__ import annotations

import pytest
from wework.server.settings import load_settings


@pytest.fixture(autouse=True)
def _no_wework_env(monkeypatch):
    import os

    for key in [k for k in os.environ if k.startswith("WEWORK_")]:
        monkeypatch.delenv(key)


def test_embedded_binds_loopback_by_default(tmp_path):
    settings = load_settings(data_dir=str(tmp_path))
    assert settings.embedded
    assert settings.server.host == "127.0.0.1" and settings.observability.metrics_host == "127.0.0.1"


def test_embedded_bind_address_stays_overridable(tmp_path, monkeypatch):
    monkeypatch.setenv("WEWORK_SERVER__HOST", "0.0.0.0")
    monkeypatch.setenv("WEWORK_OBSERVABILITY__METRICS_HOST", "::")
    settings = load_settings(data_dir=str(tmp_path))
    assert settings.server.host == "0.0.0.0" and settings.observability.metrics_host == "::"


def test_a_configured_deployment_keeps_binding_every_interface(tmp_path, monkeypatch):
    monkeypatch.setenv("WEWORK_DATABASE__DIRECTORY_DSN", "mysql+aiomysql://root@127.0.0.1:1/x")
    monkeypatch.setenv("WEWORK_DATABASE__SHARDS",
                       '[{"name": "s0", "buckets": "0-1023", "dsn": "mysql+aiomysql://root@127.0.0.1:1/{db}"}]')
    for name, value in (("ADMIN_API_KEY", "k" * 32), ("TOKEN_SECRET", "t" * 32), ("LOOKUP_HASH_KEY", "l" * 32),
                        ("ENCRYPTION_KEYS", '{"k1": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}'),
                        ("ACTIVE_ENCRYPTION_KEY_ID", "k1")):
        monkeypatch.setenv(f"WEWORK_SECURITY__{name}", value)
    settings = load_settings(data_dir=str(tmp_path))
    assert not settings.embedded
    assert settings.server.host == "0.0.0.0" and settings.observability.metrics_host == "0.0.0.0"
