"""Tenant webhooks, pure part: signatures checked by an independent Standard Webhooks
implementation (PyPI standardwebhooks), SSRF address rules, validation, the retry schedule."""

from __future__ import annotations

import ipaddress
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from wework.domain.webhooks import (
    DEFAULT_SCHEDULE,
    WebhookEndpoint,
    blocked_address,
    embedded_ipv4,
    event_id_for,
    event_type_matches,
    new_secret,
    next_attempt_delay,
    parse_networks,
    should_disable,
    sign,
    signature_header,
    validate_event_types,
    validate_url,
)


def _headers(msg_id: str, ts: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_signature_verifies_with_standardwebhooks():
    secret = new_secret()
    assert secret.startswith("whsec_")
    body = json.dumps({"type": "message.sent", "data": {"id": "m1", "text": "你好"}}, ensure_ascii=False).encode()
    ts = int(time.time())
    payload = Webhook(secret).verify(body, _headers("msg_1", ts, sign(secret, "msg_1", ts, body)))
    assert payload["data"]["text"] == "你好"


def test_tampered_body_or_other_secret_fails_verification():
    secret, other = new_secret(), new_secret()
    body, ts = b'{"a":1}', int(time.time())
    signature = sign(secret, "msg_1", ts, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', _headers("msg_1", ts, signature))
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, _headers("msg_1", ts, signature))
    with pytest.raises(WebhookVerificationError):  # the id is signed too
        Webhook(secret).verify(body, _headers("msg_2", ts, signature))


def test_rotation_header_carries_both_signatures_and_each_secret_verifies():
    old, new = new_secret(), new_secret()
    body, ts = b'{"type":"x"}', int(time.time())
    header = signature_header([new, old], "msg_9", ts, body)
    assert len(header.split(" ")) == 2 and all(p.startswith("v1,") for p in header.split(" "))
    for secret in (old, new):
        Webhook(secret).verify(body, _headers("msg_9", ts, header))


def test_previous_secret_signs_until_it_expires():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ep = WebhookEndpoint(id="e", tenant_id="t", url="https://x.example", secret="whsec_A",
                         previous_secret="whsec_B", previous_secret_expires=now + timedelta(hours=1))
    assert ep.signing_secrets(now) == ["whsec_A", "whsec_B"]
    assert ep.signing_secrets(now + timedelta(hours=1)) == ["whsec_A"]


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.0.0.1", "private"), ("192.168.1.5", "private"),
    ("172.16.0.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("::ffff:127.0.0.1", "loopback"),
    ("100.64.0.1", "not-global"), ("fd00::1", "private"), ("240.0.0.1", "reserved"),
    # IPv6 forms that carry an IPv4 address are judged by it too (issue 17: 6to4 got through).
    ("2002:7f00:1::", "loopback"), ("2002:a9fe:a9fe::", "link-local"), ("2002:a00:1::1", "private"),
    ("64:ff9b::7f00:1", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"), ("64:ff9b:1::a00:1", "private"),
    ("::ffff:169.254.169.254", "link-local"), ("::ffff:a9fe:a9fe", "link-local"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
])
def test_non_public_addresses_are_refused(address, kind):
    assert blocked_address(address) == kind


def test_public_addresses_pass_and_settings_lift_the_refusal():
    assert blocked_address("93.184.216.34") is None
    assert blocked_address("2606:4700::1111") is None
    loopback = parse_networks(["127.0.0.0/8"])
    assert blocked_address("127.0.0.1", allowed=loopback) is None
    assert blocked_address("10.0.0.1", allowed=loopback) == "private"  # only the listed network
    assert blocked_address("::1", allowed=loopback) == "loopback"
    assert blocked_address("10.0.0.1", allow_private=True) is None
    assert blocked_address("::ffff:127.0.0.1", allowed=loopback) is None
    assert blocked_address("::ffff:8.8.8.8") is None
    assert embedded_ipv4(ipaddress.ip_address("2002:808:808::1")) == [ipaddress.IPv4Address("8.8.8.8")]
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1111")) == []


def test_url_and_event_type_validation():
    assert validate_url("https://hooks.example.com/x?y=1", "url") == []
    for bad in ("", "ftp://x.example", "https://", "hooks.example.com", "https://u:p@x.example/",
                "https://x.example:99999/"):
        assert validate_url(bad, "url"), bad
    assert validate_event_types(["message.sent", "account.*"], "event_types") == []
    [v] = validate_event_types(["message.sent", "message.bogus"], "event_types")
    assert v.field == "event_types[1]"


def test_event_type_filter():
    assert event_type_matches([], "message.sent")
    assert event_type_matches(["message.*"], "message.delivered")
    assert not event_type_matches(["message.*"], "account.status_changed")
    assert not event_type_matches(["message.sent"], "message.delivered")


def test_event_id_is_deterministic_per_source_event():
    a = event_id_for("t1", "message.sent", "cb-1")
    assert a == event_id_for("t1", "message.sent", "cb-1") and a.startswith("msg_")
    assert a != event_id_for("t2", "message.sent", "cb-1")
    assert event_id_for("t1", "message.sent", None) != event_id_for("t1", "message.sent", None)


def test_schedule_and_disabling():
    assert [next_attempt_delay(DEFAULT_SCHEDULE, n) for n in range(1, 9)] == [
        5, 300, 1800, 7200, 18000, 36000, 36000, None]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert not should_disable(None, now, timedelta(days=5))
    assert not should_disable(now - timedelta(days=4), now, timedelta(days=5))
    assert should_disable(now - timedelta(days=5), now, timedelta(days=5))
