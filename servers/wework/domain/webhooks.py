"""Tenant webhooks, the pure part: endpoint validation, Standard Webhooks signing, the retry
schedule and the SSRF address rules. No I/O: DNS resolution and HTTP live in the worker.

Signing follows https://www.standardwebhooks.com: a secret is "whsec_" + base64 of random
bytes; a delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature`, a space-separated list of "v1," + base64(HMAC-SHA256(secret bytes,
"<id>.<timestamp>.<body>")) - one per valid secret while a rotation overlaps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from wework.domain.errors import FieldViolation

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # Svix's size; Standard Webhooks asks for 24-64
MAX_URL = 500
MAX_DESCRIPTION = 500
MAX_EVENT_TYPES = 50
EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

# What the platform sends (docs/webhooks.md). A filter may name only these, or "<group>.*".
EVENT_TYPES: tuple[str, ...] = (
    "account.status_changed", "message.sent", "message.delivered", "message.failed",
    "message.received", "conversation.changed",
)
# Svix's schedule: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after each failure.
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"  # by the tenant
    DISABLED_FAILING = "disabled_failing"  # by the platform, after failing for too long


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class WebhookEndpoint:
    id: str
    tenant_id: str
    url: str
    description: str = ""
    event_types: list[str] = field(default_factory=list)
    status: EndpointStatus = EndpointStatus.ENABLED
    disabled_reason: str | None = None
    disabled_time: datetime | None = None
    failing_since: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1
    # Plaintext secrets: only in memory (stored encrypted), shown once by Create and Rotate.
    secret: str | None = None
    previous_secret: str | None = None
    previous_secret_expires: datetime | None = None

    @property
    def enabled(self) -> bool:
        return self.status is EndpointStatus.ENABLED

    @property
    def etag(self) -> str:
        return f"v{self.version}"

    def wants(self, event_type: str) -> bool:
        return event_type_matches(self.event_types, event_type)

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and the previous one
        until it expires."""
        out = [self.secret] if self.secret else []
        if self.previous_secret and self.previous_secret_expires and now < self.previous_secret_expires:
            out.append(self.previous_secret)
        return out


@dataclass
class WebhookAttempt:
    attempt_number: int
    attempt_time: datetime
    response_status: int
    error: str
    duration_ms: int


@dataclass
class WebhookDelivery:
    id: str
    tenant_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    payload: dict
    status: DeliveryStatus
    attempt_count: int
    next_attempt_time: datetime | None
    created_at: datetime
    attempts: list[WebhookAttempt] = field(default_factory=list)
    # The exact JSON text posted (what every attempt signs); `payload` is it parsed.
    body: str = ""


# ---- validation -------------------------------------------------------------------------------


def event_type_matches(filters: Sequence[str], event_type: str) -> bool:
    """An empty filter list matches every type; "message.*" matches every message event."""
    if not filters:
        return True
    for f in filters:
        if f == event_type or (f.endswith(".*") and event_type.startswith(f[:-1])):
            return True
    return False


def validate_url(url: str, path: str) -> list[FieldViolation]:
    """Shape only; where it points is checked by `blocked_address` (create, update, delivery)."""
    if not url:
        return [FieldViolation(path, "url is required")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL:
        return [FieldViolation(path, f"must be an absolute http(s) URL of at most {MAX_URL} characters")]
    if parts.username or parts.password:
        return [FieldViolation(path, "must not carry credentials (user:password@)")]
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return [FieldViolation(path, "has an invalid port")]
    return []


def validate_event_types(values: Iterable[str], path: str) -> list[FieldViolation]:
    values = list(values)
    if len(values) > MAX_EVENT_TYPES:
        return [FieldViolation(path, f"at most {MAX_EVENT_TYPES} event types")]
    groups = {t.split(".", 1)[0] for t in EVENT_TYPES}
    out = []
    for i, v in enumerate(values):
        known = v in EVENT_TYPES or (v.endswith(".*") and v[:-2] in groups)
        if not known:
            out.append(FieldViolation(f"{path}[{i}]", f"unknown event type {v[:60]!r}; one of "
                                      f"{', '.join(EVENT_TYPES)} or <group>.*"))
    return out


def validate_description(value: str, path: str) -> list[FieldViolation]:
    if len(value) > MAX_DESCRIPTION:
        return [FieldViolation(path, f"description is at most {MAX_DESCRIPTION} characters")]
    return []


# ---- secrets and signatures -------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: "v1," + base64 HMAC-SHA256 of "<id>.<timestamp>.<body>"."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def event_id_for(tenant_id: str, event_type: str, source_event_id: str | None) -> str:
    """The webhook-id: derived from the source event so that a second publish of the same
    event is recognised (unique per endpoint); random when there is no source event."""
    if not source_event_id:
        return "msg_" + uuid.uuid4().hex
    digest = hashlib.sha256(f"{tenant_id}\n{event_type}\n{source_event_id}".encode()).hexdigest()
    return "msg_" + digest[:32]


# ---- retries ----------------------------------------------------------------------------------


def next_attempt_delay(schedule: Sequence[float], attempts_made: int) -> float | None:
    """Seconds until the next attempt after `attempts_made` failed ones; None when the schedule
    is used up (the delivery has failed). schedule[0] is the first attempt's delay."""
    if attempts_made < len(schedule):
        return float(schedule[attempts_made])
    return None


def should_disable(failing_since: datetime | None, now: datetime, disable_after: timedelta) -> bool:
    return failing_since is not None and now - failing_since >= disable_after


# ---- SSRF -------------------------------------------------------------------------------------

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local use): the last 32 bits are an IPv4 address.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(ip: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and reaches: IPv4-mapped (::ffff:a.b.c.d),
    6to4 (2002:AABB:CCDD::/16), Teredo (2001::/32: server and client) and NAT64; [] for others."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if any(ip in net for net in _NAT64):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def blocked_address(address: str, *, allow_private: bool = False,
                    allowed: Sequence[Network] = ()) -> str | None:
    """Why a target address is refused (private, loopback, link-local...), or None when it may
    be posted to. `allowed` networks and `allow_private` lift the refusal. An IPv6 address that
    carries IPv4 ones (embedded_ipv4: 6to4, Teredo, NAT64) is refused when any of them is, and
    otherwise judged itself: 2002:7f00:1:: reaches 127.0.0.1. An IPv4-mapped one is its IPv4."""
    try:
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    for v4 in embedded_ipv4(ip):
        why = blocked_address(str(v4), allow_private=allow_private, allowed=allowed)
        if why is not None or (isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None):
            return why
    if any(ip in net for net in allowed if net.version == ip.version):
        return None
    if allow_private:
        return None
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:  # shared address space (100.64/10) and the like
        return "not-global"
    return None


def literal_ip(host: str) -> str | None:
    """The host as an address when it is an IP literal, else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
