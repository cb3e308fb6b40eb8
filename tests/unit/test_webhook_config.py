"""Webhook settings are validated at start-up, and delivery posts go where the guard checked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from wework.server.settings import WebhookConfig
from wework.server.workers.webhooks import _pinned


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


def test_http_posts_are_pinned_to_the_checked_address_https_are_not():
    headers: dict[str, str] = {}
    url, _ = _pinned("http://hooks.example.com:8080/in?x=1", "93.184.216.34", headers)
    assert url == "http://93.184.216.34:8080/in?x=1" and headers["host"] == "hooks.example.com:8080"
    url, _ = _pinned("http://hooks.example.com/", "2606:4700::1111", {})
    assert url == "http://[2606:4700::1111]/"
    headers = {}
    assert _pinned("https://hooks.example.com/in", "93.184.216.34", headers) == ("https://hooks.example.com/in", {})
    assert headers == {}
