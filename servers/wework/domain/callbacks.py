"""Provider callbacks, pure: signature check, parsing, event types, dedupe keys, retry backoff.

A provider callback is a JSON body {event_id, guid, notify_type, data, time} signed with
HMAC-SHA256 over "<timestamp>.<body>" (docs/callbacks.md). No I/O here: the ingress and the
processor (application/callbacks.py) call these functions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any

from wework.domain.redaction import REDACTED, split_secrets

# notify_type -> event_type (the stored, listable name of what the callback means).
EVENT_TYPES: dict[int, str] = {
    11001: "account.login_qr",
    11002: "account.qr_scanned",
    11003: "account.login_confirmed",
    11004: "account.need_verify",
    11005: "account.online",
    11006: "account.offline",
    11007: "account.logged_out",
    11008: "account.qr_expired",
    11009: "account.login_failed",
    11010: "account.heartbeat",
    12001: "message.sent",
    12002: "message.delivered",
    12003: "message.failed",
    12004: "message.received",
    12005: "conversation.changed",
}
UNKNOWN_EVENT_TYPE = "unknown"
MESSAGE_RECEIVED = 12004
# The provider's link to a received image, file, voice or video (docs/media.md, "Incoming
# media"): it may carry the provider's token, so it is sealed like a credential at ingress.
RECEIVED_MEDIA_LINK = ("data", "content", "url")
RECEIVED_MEDIA_TYPES = frozenset({"image", "file", "voice", "video"})
# The credentials a callback's effect needs (by notify_type, their paths in the body): the
# ONLINE callback's session token, which the account keeps (encrypted) to reconnect, and the
# link of a received media file, which the processor fetches. Every other credential in a body
# (wework.domain.redaction) is dropped at ingress.
CREDENTIALS_USED: dict[int, frozenset[tuple[str, ...]]] = {
    11005: frozenset({("data", "login_token")}), MESSAGE_RECEIVED: frozenset({RECEIVED_MEDIA_LINK})}
HEARTBEAT = 11010
MESSAGE_RECEIPTS = (12001, 12002, 12003)

MAX_EVENT_ID = 100  # longer provider ids are hashed into the key
# Arrays and objects nested deeper are refused at the ingress (a real callback nests a few
# levels): decoding and re-encoding deeper documents recurses towards Python's limit.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_A_BRACKET = re.compile(rb"[^\[\]{}]+")
SIGNATURE_PREFIX = "v1="
MAX_SIGNATURES = 4  # values in one signature header (a provider rotating its secret sends two)
_SIGNATURE_VALUE = re.compile(r"v1=[0-9a-f]{64}")


def event_type_of(notify_type: int) -> str:
    return EVENT_TYPES.get(notify_type, UNKNOWN_EVENT_TYPE)


# ---- signatures ---------------------------------------------------------------------------------


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """"v1=" + hex HMAC-SHA256(secret, "<timestamp>.<body>")."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def check_signature(secret: str, timestamp: str, signature: str, body: bytes, now: float,
                    tolerance_seconds: int) -> str | None:
    """None when the signature is good and fresh, else the reason it is refused (see
    verify_signature)."""
    return verify_signature(secret, timestamp, signature, body, now, tolerance_seconds)[0]


def verify_signature(secret: str, timestamp: str, signature: str, body: bytes, now: float,
                     tolerance_seconds: int) -> tuple[str | None, str]:
    """(None, the canonical signature) when the signature is good and fresh, else (the reason
    it is refused: "missing timestamp", "stale timestamp", "malformed signature", "bad
    signature", ""). The header is parsed strictly: 1 to MAX_SIGNATURES distinct values
    "v1=<64 lowercase hex>" separated by single spaces (several for a secret rotation on the
    provider's side; one good one suffices). The canonical signature depends only on what was
    signed (timestamp and body), never on how the header was written: replay protection keys
    on it, so a captured request re-sent with a reshaped header is still a replay."""
    if not timestamp or not timestamp.isdigit():
        return "missing timestamp", ""
    if abs(now - int(timestamp)) > tolerance_seconds:
        return "stale timestamp", ""
    values = signature.split(" ")
    if (len(values) > MAX_SIGNATURES or len(set(values)) != len(values)
            or not all(_SIGNATURE_VALUE.fullmatch(v) for v in values)):
        return "malformed signature", ""
    expected = sign(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, given) for given in values):
        return "bad signature", ""
    return None, expected


# ---- parsing ------------------------------------------------------------------------------------


class MalformedCallback(ValueError):
    """The body is not a callback; the message says what is wrong."""


@dataclass(frozen=True)
class Envelope:
    """What the ingress reads of a body before storing it: never fails (a malformed body is
    stored too, and fails in processing)."""

    guid: str
    notify_type: int
    event_id: str | None
    body: dict[str, Any] | None  # None: not a JSON object


def json_nesting_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the arrays and objects of the JSON text `raw` nest more than `limit` deep.

    Without decoding (no recursion) and, for ordinary bodies, without a Python-level loop: a
    body with at most `limit` brackets cannot be deeper.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _NOT_A_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw))
    return max(accumulate(1 if b in (0x5B, 0x7B) else -1 for b in brackets), default=0) > limit


def envelope(raw: bytes | str) -> Envelope:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return Envelope("", 0, None, None)
    if not isinstance(body, dict):
        return Envelope("", 0, None, None)
    guid = body.get("guid")
    notify_type = body.get("notify_type")
    event_id = body.get("event_id")
    return Envelope(
        guid=str(guid)[:100] if isinstance(guid, str | int) and not isinstance(guid, bool) else "",
        notify_type=notify_type if isinstance(notify_type, int) and not isinstance(notify_type, bool)
        and -2**31 <= notify_type < 2**31 else 0,
        event_id=str(event_id) if isinstance(event_id, str | int) and not isinstance(event_id, bool)
        and str(event_id) else None,
        body=body)


def dedupe_key(raw: bytes, env: Envelope) -> str:
    """The provider's event id when it sends one, else a hash of guid, notify_type and body."""
    if env.event_id:
        if len(env.event_id) <= MAX_EVENT_ID:
            return "ev:" + env.event_id
        return "ev#" + hashlib.sha256(env.event_id.encode()).hexdigest()
    digest = hashlib.sha256(f"{env.guid}\n{env.notify_type}\n".encode() + raw).hexdigest()
    return "h:" + digest


@dataclass(frozen=True)
class ParsedCallback:
    guid: str
    notify_type: int
    event_id: str
    data: dict[str, Any]
    time: datetime | None


def parse(raw: str) -> ParsedCallback:
    """The callback in `raw`, or MalformedCallback saying what is wrong."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise MalformedCallback(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedCallback("body is not a JSON object")
    guid = body.get("guid")
    if not isinstance(guid, str) or not guid:
        raise MalformedCallback("guid is missing or not a string")
    if len(guid) > 100:
        raise MalformedCallback("guid is longer than 100 characters")
    notify_type = body.get("notify_type")
    if not isinstance(notify_type, int) or isinstance(notify_type, bool):
        raise MalformedCallback("notify_type is missing or not an integer")
    data = body.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MalformedCallback("data is not a JSON object")
    t = body.get("time")
    when: datetime | None = None
    if t not in (None, ""):
        if not isinstance(t, str):
            raise MalformedCallback("time is not an ISO 8601 string")
        try:
            when = datetime.fromisoformat(t)
        except ValueError:
            raise MalformedCallback(f"time {t!r} is not ISO 8601") from None
        if when.tzinfo is None:
            raise MalformedCallback(f"time {t!r} has no UTC offset")
    event_id = body.get("event_id")
    return ParsedCallback(guid=guid, notify_type=notify_type, data=data,
                          event_id=str(event_id) if event_id not in (None, "") else "", time=when)


def check_receipt(parsed: ParsedCallback) -> None:
    """Message receipts must name our message (data.msg_id)."""
    if parsed.notify_type in MESSAGE_RECEIPTS:
        msg_id = parsed.data.get("msg_id")
        if not isinstance(msg_id, str) or not msg_id:
            raise MalformedCallback("data.msg_id is missing (a message receipt names our message id)")


# ---- retries ------------------------------------------------------------------------------------


def retry_delay(attempt: int, initial_seconds: float, max_seconds: float) -> timedelta:
    """Exponential backoff after failed attempt number `attempt` (1-based), capped."""
    return timedelta(seconds=min(max_seconds, initial_seconds * (2 ** max(attempt - 1, 0))))


# ---- effects ------------------------------------------------------------------------------------


class AlreadyApplied(Exception):
    """The effect ledger holds this callback's key: its effect happened before (raised inside the
    effect's transaction, which then changes nothing)."""

    def __init__(self, effect_key: str, subject: Any = None) -> None:
        super().__init__(f"callback {effect_key} was applied before")
        self.effect_key = effect_key
        self.subject = subject  # what the effect was on (e.g. the message), when known


APPLIED = "applied"                  # the effect happened now
ALREADY_APPLIED = "already_applied"  # the ledger says it happened before (crash, replay)
NOTHING_TO_DO = "nothing_to_do"      # a callback that needs no effect (LOGIN_CONFIRMED)
NO_EFFECT = "no_effect"              # refused: illegal transition, unknown message, deleted account


@dataclass(frozen=True)
class TenantEvent:
    """A tenant event an effect makes. `key` is what its webhook-id derives from: None for the
    callback (one event per callback); a key of its own when the event is one per something
    else (message.sent is one per message, whichever receipt makes it)."""

    type: str
    data: dict[str, Any]
    key: str | None = None


@dataclass(frozen=True)
class Effect:
    """What processing one callback did, and the tenant event it makes (webhook_event None: none)."""

    outcome: str
    reason: str = ""
    webhook_event: str | None = None
    data: dict[str, Any] | None = None
    event_key: str | None = None  # TenantEvent.key of webhook_event
    more_events: tuple[TenantEvent, ...] = ()
    # The message content the effect kept when it differs from the body's (incoming media stored
    # and named by media_id): what the stored callback's parsed_data then shows.
    stored_content: dict[str, Any] | None = None

    @property
    def processed(self) -> bool:
        return self.outcome in (APPLIED, ALREADY_APPLIED, NOTHING_TO_DO)

    @property
    def events(self) -> list[TenantEvent]:
        first = [TenantEvent(self.webhook_event, self.data or {}, self.event_key)] if self.webhook_event else []
        return first + list(self.more_events)


def receipt_event_key(message_id: str) -> str:
    """The TenantEvent.key of message.sent and message.delivered: one of each per message, in
    whatever order, and however often, the provider's receipts arrive."""
    return f"message:{message_id}"


def split_callback_secrets(notify_type: int, body: Any) -> tuple[Any, list[tuple[tuple[str | int, ...], Any]]]:
    """split_secrets (wework.domain.redaction) plus, in a received media message, the provider's
    link: (the body to store, [(path, value)] taken out)."""
    redacted, found = split_secrets(body)
    data = redacted.get("data") if isinstance(redacted, dict) else None
    content = data.get("content") if isinstance(data, dict) else None
    if (notify_type == MESSAGE_RECEIVED and isinstance(content, dict) and data.get("message_type") in RECEIVED_MEDIA_TYPES
            and content.get("url") not in (None, "", REDACTED)):
        found.append((RECEIVED_MEDIA_LINK, content["url"]))
        redacted = {**redacted, "data": {**data, "content": {**content, "url": REDACTED}}}
    return redacted, found
