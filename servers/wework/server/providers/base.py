"""The one interface the platform uses to talk to a WeCom protocol provider.

A provider hosts WeCom client instances, each named by a `guid`. The platform
asks it to create instances, walk the QR login, send messages and log out; the
provider reports what happens (QR scanned, login confirmed, message delivered,
incoming message, heartbeat...) asynchronously as callbacks keyed by guid and a
numeric notify_type. Callbacks go to a `CallbackSink`: until the Callback
service exists, the account service's own ingest entry point; later, the
Callback service's durable ingress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any, Protocol


class ProviderError(Exception):
    """A provider call failed. `retryable` says whether the same call may succeed later."""

    def __init__(self, message: str, *, code: str = "PROVIDER_ERROR", retryable: bool = False,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.status = status


class ProviderUnavailable(ProviderError):
    """Timeouts, connection failures, 5xx: retryable."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, code="PROVIDER_UNAVAILABLE", retryable=True, status=status)


class InstanceNotFound(ProviderError):
    def __init__(self, guid: str) -> None:
        super().__init__(f"provider has no instance {guid!r}", code="INSTANCE_NOT_FOUND")


class NotifyType(IntEnum):
    """Callback kinds (the provider's notify_type numbers)."""

    LOGIN_QR = 11001          # a (new) QR code is ready: {qr_code_url, qr_payload, expire_time}
    QR_SCANNED = 11002        # the QR was scanned: waiting for confirmation on the phone
    LOGIN_CONFIRMED = 11003   # the user confirmed on the phone
    NEED_VERIFY = 11004       # a verification code is required
    ONLINE = 11005            # logged in: {user_info: {...}, login_token}
    OFFLINE = 11006           # connection lost: {reason}
    LOGGED_OUT = 11007        # logged out (by us or remotely): {reason}
    QR_EXPIRED = 11008        # the QR code expired without a login
    LOGIN_FAILED = 11009      # the login failed: {reason}
    HEARTBEAT = 11010         # the instance is alive
    MESSAGE_SENT = 12001      # {msg_id (ours), wework_msg_id}
    MESSAGE_DELIVERED = 12002 # {msg_id, wework_msg_id}
    MESSAGE_FAILED = 12003    # {msg_id, error_code, error_message}
    MESSAGE_RECEIVED = 12004  # incoming: {conversation_id, conversation_name, conversation_type, sender, content, time}
    CONVERSATION_CHANGED = 12005  # {conversation_id, conversation_name, conversation_type, member_count}


@dataclass(frozen=True)
class ProviderCallback:
    """One callback as a provider sends it."""

    guid: str
    notify_type: int
    data: dict[str, Any]
    event_id: str  # the provider's unique id of this callback (dedupe key)
    time: datetime


class CallbackSink(Protocol):
    async def deliver(self, callback: ProviderCallback) -> None: ...


@dataclass(frozen=True)
class LoginQr:
    qr_code_url: str
    qr_payload: str
    expire_time: datetime


@dataclass(frozen=True)
class SendResult:
    wework_msg_id: str


@dataclass(frozen=True)
class Liveness:
    alive: bool
    online: bool
    last_seen: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """Every method is idempotent where the provider allows it: `create_instance` with the same
    guid returns the same instance; `send_message` with the same idempotency_key sends once."""

    async def create_instance(self, guid: str, *, config: dict[str, Any] | None = None) -> None: ...

    async def get_login_qr(self, guid: str) -> LoginQr: ...

    async def submit_verification_code(self, guid: str, code: str) -> None: ...

    async def send_message(self, guid: str, *, conversation_id: str, message_type: str,
                           content: dict[str, Any], idempotency_key: str) -> SendResult: ...

    async def logout(self, guid: str) -> None: ...

    async def reconnect(self, guid: str, login_token: str | None) -> Liveness:
        """Tries to restore a lost session without a new QR scan (recovery)."""
        ...

    async def check_liveness(self, guid: str) -> Liveness: ...

    async def close(self) -> None: ...


def media_fingerprint(content: dict[str, Any]) -> dict[str, Any]:
    """The content as a provider compares a retried send with the first one: the media link the
    platform makes at each attempt (a new signature and expiry) is left out when the content
    names a media_id, which stays the same."""
    if isinstance(content, dict) and content.get("media_id"):
        return {k: v for k, v in content.items() if k != "url"}
    return content
