"""Chooses the provider adapter from settings (`provider.kind`)."""

from __future__ import annotations

from wework.server.providers.base import CallbackSink, Provider
from wework.server.providers.http import HttpProvider, HttpProviderConfig
from wework.server.providers.puppet_service.adapter import PuppetServiceProvider, TokenSource
from wework.server.providers.simulator import SimulatorProvider
from wework.server.settings import ProviderConfig


def http_config(settings_provider_config: ProviderConfig) -> HttpProviderConfig:
    c = settings_provider_config
    if not c.base_url:
        raise ValueError("provider.base_url is required when provider.kind is 'http'")
    return HttpProviderConfig(
        base_url=c.base_url, api_key=c.api_key, timeout_seconds=c.timeout_seconds,
        max_retries=c.max_retries, backoff_initial_seconds=c.backoff_initial_seconds,
        backoff_max_seconds=c.backoff_max_seconds, backoff_jitter_seconds=c.backoff_jitter_seconds,
    )


def create_provider(settings_provider_config: ProviderConfig, sink: CallbackSink,
                    tokens: TokenSource | None = None) -> Provider:
    """The simulator (default) and the puppet-service adapter deliver callbacks to `sink`; an
    HTTP provider posts them to the platform's callback ingress itself, so that adapter does not
    use `sink`. `tokens(guid)` gives the puppet-service adapter each account's token."""
    if settings_provider_config.kind == "http":
        return HttpProvider(http_config(settings_provider_config))
    if settings_provider_config.kind == "puppet_service":
        if tokens is None:
            raise ValueError("the puppet_service provider needs the accounts' tokens (tokens=...)")
        return PuppetServiceProvider(settings_provider_config.puppet_service, sink, tokens)
    return SimulatorProvider(sink, settings_provider_config.simulator)
