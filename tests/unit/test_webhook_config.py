"""Webhook settings are validated at start-up, and delivery posts go where the guard checked."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError
from wework.server.application.webhooks import TargetGuard, TargetRefused, WebhookPolicy
from wework.server.http_client import GuardedResolver
from wework.server.settings import WebhookConfig


def test_defaults_follow_the_svix_schedule():
    cfg = WebhookConfig()
    assert cfg.retry_schedule_seconds == [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    assert cfg.disable_after_seconds == 5 * 86400 and not cfg.allow_private_targets


@pytest.mark.parametrize("fields, where", [
    ({"retry_schedule_seconds": [0, -1]}, "retry_schedule_seconds"),
    ({"retry_schedule_seconds": []}, "retry_schedule_seconds"),
    ({"allowed_target_cidrs": ["not-a-net"]}, "allowed_target_cidrs"),
    ({"timeout_seconds": 30, "claim_lease_seconds": 30}, "claim_lease_seconds"),
])
def test_bad_settings_are_refused(fields, where):
    with pytest.raises(ValidationError) as caught:
        WebhookConfig(**fields)
    assert where in str(caught.value)


async def test_connections_resolve_through_the_guard_for_http_and_https_alike():
    """The webhook worker's session asks the guard for addresses (http_client.GuardedResolver):
    what it connects to is what the guard checked; a refused answer stops the connection."""
    answers = {"hooks.example.com": ["93.184.216.34", "2606:4700::1111"], "internal.example.com": ["10.0.0.7"]}

    async def dns(host: str, port: int) -> list[str]:
        return answers[host]

    policy = WebhookPolicy.from_config(WebhookConfig())
    resolver = GuardedResolver(TargetGuard(policy, dns).host_addresses)
    got = await resolver.resolve("hooks.example.com", 443)
    assert [(r["host"], r["port"], r["family"], r["hostname"]) for r in got] == [
        ("93.184.216.34", 443, socket.AF_INET, "hooks.example.com"),
        ("2606:4700::1111", 443, socket.AF_INET6, "hooks.example.com")]
    with pytest.raises(TargetRefused) as refused:
        await resolver.resolve("internal.example.com", 80)
    assert "resolves to a private address" in str(refused.value) and "10.0.0.7" not in str(refused.value)
