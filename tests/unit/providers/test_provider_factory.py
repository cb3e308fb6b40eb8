"""Choosing the provider from settings."""

from __future__ import annotations

import pytest
from wework.server.providers.factory import create_provider
from wework.server.providers.http import HttpProvider
from wework.server.providers.simulator import SimulatorProvider
from wework.server.providers.sinks import CollectingSink
from wework.server.settings import ProviderConfig, Settings


async def test_the_simulator_is_the_default_and_takes_its_settings(monkeypatch):
    monkeypatch.setenv("WEWORK_PROVIDER__SIMULATOR__SCAN_DELAY_SECONDS", "0.01")
    monkeypatch.setenv("WEWORK_PROVIDER__SIMULATOR__REQUIRE_VERIFICATION", "true")
    settings = Settings()
    provider = create_provider(settings.provider, CollectingSink())
    try:
        assert isinstance(provider, SimulatorProvider)
        assert provider.config.scan_delay_seconds == 0.01 and provider.config.require_verification
    finally:
        await provider.close()


async def test_http_kind_builds_the_http_adapter():
    config = ProviderConfig(kind="http", base_url="http://127.0.0.1:9/", api_key="k", max_retries=1,
                            backoff_initial_seconds=0.5)
    provider = create_provider(config, CollectingSink())
    try:
        assert isinstance(provider, HttpProvider)
        assert provider.config.max_retries == 1 and provider.config.backoff_initial_seconds == 0.5
        assert provider.config.api_key is not None and provider.config.api_key.get_secret_value() == "k"
    finally:
        await provider.close()


def test_http_kind_needs_a_base_url():
    with pytest.raises(ValueError, match="base_url"):
        ProviderConfig(kind="http")


def test_unknown_simulator_setting_is_rejected():
    with pytest.raises(ValueError, match="scan_delay"):
        ProviderConfig(simulator={"scan_delay": 1})
