"""Messages and templates: content rules per type, template rendering, the status machine and
the statistics each terminal status change implies. Pure: no I/O.

Content is kept as a plain dict of the type's fields (the proto's oneof member as JSON, e.g.
{"text": "hi"} for MessageType.TEXT); the `messages.content` column stores exactly that dict.
Violations carry request paths such as "content.text.text" so the handler can return them as
google.rpc.BadRequest without knowing the rules.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from wework.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, PreconditionViolation
from wework.domain.names import name_violations


class MessageType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    FILE = "file"
    LINK = "link"
    MINIPROGRAM = "miniprogram"
    AT = "at"


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class VariableType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"


MS = MessageStatus

TEXT_MAX = 4000
LINK_TITLE_MAX = 128
LINK_DESCRIPTION_MAX = 512
URL_MAX = 2048
FILE_NAME_MAX = 255
MEDIA_ID_MAX = 256
MENTION_MAX = 100
PRIORITY_MIN, PRIORITY_MAX, PRIORITY_DEFAULT = 1, 10, 5
CONVERSATION_ID_MAX = 100  # messages.conversation_id VARCHAR(100)
TEMPLATE_NAME_MAX = 100
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

# The fields of each type, and which of them are text a template may put {{variables}} into.
CONTENT_FIELDS: dict[MessageType, tuple[str, ...]] = {
    MessageType.TEXT: ("text",),
    MessageType.IMAGE: ("media_id", "url"),
    MessageType.FILE: ("media_id", "url", "file_name"),
    MessageType.LINK: ("title", "description", "url", "thumb_url"),
    MessageType.MINIPROGRAM: ("app_id", "title", "page_path", "thumb_media_id"),
    MessageType.AT: ("text", "user_ids", "at_all"),
}
TEMPLATED_FIELDS: dict[MessageType, tuple[str, ...]] = {
    MessageType.TEXT: ("text",),
    MessageType.IMAGE: ("url",),
    MessageType.FILE: ("url", "file_name"),
    MessageType.LINK: ("title", "description", "url", "thumb_url"),
    MessageType.MINIPROGRAM: ("title", "page_path"),
    MessageType.AT: ("text",),
}

# Legal (from -> to) status changes. DELIVERED and CANCELLED are final; FAILED only goes back
# to PENDING through RetryMessage.
TRANSITIONS: dict[MessageStatus, frozenset[MessageStatus]] = {
    MS.PENDING: frozenset({MS.SENDING, MS.FAILED, MS.CANCELLED}),
    # SENDING -> PENDING: a transient provider error puts the message back for a later attempt.
    MS.SENDING: frozenset({MS.SENT, MS.DELIVERED, MS.FAILED, MS.PENDING}),
    # SENT -> FAILED: the provider accepted the message but reported later that it failed.
    MS.SENT: frozenset({MS.DELIVERED, MS.FAILED}),
    MS.DELIVERED: frozenset(),
    MS.FAILED: frozenset({MS.PENDING}),
    MS.CANCELLED: frozenset(),
}
# How far along a message is; a receipt for an earlier step than the current one is stale
# (callbacks arrive out of order) and is ignored instead of moving the message backwards.
_PROGRESS = {MS.PENDING: 0, MS.SENDING: 1, MS.SENT: 2, MS.DELIVERED: 3}
FINAL_STATUSES = frozenset({MS.DELIVERED, MS.FAILED, MS.CANCELLED})
CANCELLABLE = frozenset({MS.PENDING})


def is_legal(old: MessageStatus, new: MessageStatus) -> bool:
    return new in TRANSITIONS[old]


def is_stale_receipt(current: MessageStatus, reported: MessageStatus) -> bool:
    """True when a provider report would move the message backwards (e.g. SENT after DELIVERED)."""
    if current == reported:
        return True
    if reported in _PROGRESS and current in _PROGRESS:
        return _PROGRESS[reported] < _PROGRESS[current]
    # FAILED after DELIVERED: the message did arrive; keep the better news.
    return current == MS.DELIVERED


@dataclass
class Message:
    """One row of `messages` (the durable send queue)."""

    id: str
    tenant_id: str
    account_id: str
    conversation_id: str
    message_type: MessageType
    content: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    status: MessageStatus = MS.PENDING
    template_id: str | None = None
    wework_msg_id: str | None = None
    send_time: datetime | None = None
    callback_time: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    retry_count: int = 0
    batch_id: str | None = None
    priority: int = PRIORITY_DEFAULT
    scheduled_time: datetime | None = None
    hold_reason: str | None = None  # why a PENDING message waits (set by the dispatcher)


def transition(message: Message, new: MessageStatus, *, now: datetime, wework_msg_id: str | None = None,
               error_code: str | None = None, error_message: str | None = None) -> Message | None:
    """The message after the change to `new`, None for a stale receipt; FailedPrecondition if illegal.

    Sets the bookkeeping each change implies: send_time on SENDING, callback_time on provider
    reports, error fields on FAILED (cleared again by a retry, which also counts the attempt).
    """
    old = message.status
    if old != new and not is_legal(old, new):
        if is_stale_receipt(old, new) and new in (MS.SENT, MS.DELIVERED, MS.FAILED, MS.SENDING):
            return None
        raise FailedPrecondition(
            f"a {old.value} message cannot become {new.value}",
            [PreconditionViolation("STATUS", f"messages/{message.id}", f"message is {old.value}")])
    if old == new:
        return None
    # A hold explains a wait in PENDING; any change of status ends it.
    changes: dict[str, Any] = {"status": new, "updated_at": now, "hold_reason": None}
    if new == MS.SENDING:
        changes["send_time"] = now
    if new in (MS.SENT, MS.DELIVERED, MS.FAILED) and old != MS.PENDING:
        changes["callback_time"] = now
    if wework_msg_id:
        changes["wework_msg_id"] = wework_msg_id
    if new == MS.FAILED:
        changes["error_code"] = error_code or "UNKNOWN"
        changes["error_message"] = error_message or ""
    if old == MS.FAILED and new == MS.PENDING:
        changes.update(retry_count=message.retry_count + 1, error_code=None, error_message=None,
                       scheduled_time=None, send_time=None)
    return replace(message, **changes)


# ---- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StatisticsDelta:
    """Change of one message_statistics row (tenant, account, stat_date, stat_hour)."""

    tenant_id: str
    account_id: str
    stat_date: date
    stat_hour: int
    total: int
    success: int
    failed: int
    response_time_seconds: float | None = None  # a sample for avg_response_time, if any


def terminal_statistics_delta(message: Message, old_status: MessageStatus, *,
                              now: datetime | None = None) -> StatisticsDelta | None:
    """The statistics change of `message` (already in its new status) leaving `old_status`.

    The original design's trigger: a change to SENT or FAILED counts the message once in the
    hour it was created (DATE/HOUR of created_at). Additions, so that a message counts at most
    once however its callbacks arrive:
    - DELIVERED straight from SENDING (the SENT receipt was lost) counts as a success;
    - SENT -> DELIVERED changes nothing; SENT -> FAILED moves one success to failed;
    - a retry (FAILED -> PENDING) takes the failure back out, the next outcome counts again.
    The response-time sample is send_time -> now on a success.
    """
    new = message.status
    total = success = failed = 0
    if new in (MS.SENT, MS.DELIVERED) and old_status in (MS.PENDING, MS.SENDING):
        total, success = 1, 1
    elif new == MS.FAILED and old_status in (MS.PENDING, MS.SENDING):
        total, failed = 1, 1
    elif new == MS.FAILED and old_status == MS.SENT:
        success, failed = -1, 1
    elif new == MS.PENDING and old_status == MS.FAILED:
        total, failed = -1, -1
    else:
        return None
    rt = None
    if success > 0 and now is not None and message.send_time is not None:
        rt = max(0.0, (now - message.send_time).total_seconds())
    created = message.created_at
    return StatisticsDelta(message.tenant_id, message.account_id, created.date(), created.hour,
                           total, success, failed, rt)


# ---- content -------------------------------------------------------------------------------


def _is_url(value: str, schemes: tuple[str, ...] = ("http", "https")) -> bool:
    if len(value) > URL_MAX or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname)


def _str(content: Mapping[str, Any], key: str) -> str:
    value = content.get(key)
    return value if isinstance(value, str) else ""


def validate_content(message_type: MessageType, content: Mapping[str, Any], *,
                     prefix: str = "content") -> list[FieldViolation]:
    """Every rule `content` breaks for its type, with paths like "content.text.text"."""
    if message_type is MessageType.TEXT:
        # The common case without the checkers below, which are made anew on every call.
        text = content.get("text")
        if type(text) is str and len(text) <= TEXT_MAX and text.strip():
            return []
    p = f"{prefix}.{message_type.value}"
    out: list[FieldViolation] = []

    def bad(name: str, description: str, reason: str = "INVALID_FIELD") -> None:
        out.append(FieldViolation(f"{p}.{name}" if name else p, description, reason))

    def text_field(name: str, maximum: int, *, required: bool) -> None:
        value = _str(content, name)
        if required and not value.strip():
            bad(name, f"{name} must not be empty", "REQUIRED")
        elif len(value) > maximum:
            bad(name, f"{name} is longer than {maximum} characters")

    def url_field(name: str, *, required: bool, schemes: tuple[str, ...] = ("http", "https")) -> None:
        value = _str(content, name)
        if not value:
            if required:
                bad(name, f"{name} is required", "REQUIRED")
        elif not _is_url(value, schemes):
            bad(name, f"{name} must be an absolute {' or '.join(schemes)} URL")

    def media(required_name: str) -> None:
        media_id, url = _str(content, "media_id"), _str(content, "url")
        if not media_id and not url:
            bad(required_name, "a media_id or a url is required", "REQUIRED")
        if len(media_id) > MEDIA_ID_MAX:
            bad("media_id", f"media_id is longer than {MEDIA_ID_MAX} characters")
        if url and not _is_url(url, ("https",)):
            bad("url", "url must be an absolute https URL")

    if message_type == MessageType.TEXT:
        text_field("text", TEXT_MAX, required=True)
    elif message_type == MessageType.IMAGE:
        media("media_id")
    elif message_type == MessageType.FILE:
        media("media_id")
        text_field("file_name", FILE_NAME_MAX, required=False)
    elif message_type == MessageType.LINK:
        text_field("title", LINK_TITLE_MAX, required=True)
        text_field("description", LINK_DESCRIPTION_MAX, required=False)
        url_field("url", required=True)
        url_field("thumb_url", required=False)
    elif message_type == MessageType.MINIPROGRAM:
        if not _str(content, "app_id").strip():
            bad("app_id", "app_id is required", "REQUIRED")
        text_field("title", LINK_TITLE_MAX, required=True)
        text_field("page_path", 512, required=False)
        if not _str(content, "thumb_media_id"):
            bad("thumb_media_id", "thumb_media_id is required", "REQUIRED")
    elif message_type == MessageType.AT:
        text_field("text", TEXT_MAX, required=True)
        user_ids = content.get("user_ids") or []
        if not user_ids and not content.get("at_all"):
            bad("user_ids", "mention at least one member or set at_all", "REQUIRED")
        elif len(user_ids) > MENTION_MAX:
            bad("user_ids", f"at most {MENTION_MAX} members can be mentioned")
        else:
            for i, uid in enumerate(user_ids):
                if not isinstance(uid, str) or not uid.strip() or len(uid) > 64:
                    bad(f"user_ids[{i}]", "a member id must be 1-64 characters")
    return out


def request_fingerprint(fields: Mapping[str, Any]) -> str:
    """SHA-256 hex of a request's fields in a canonical form (sorted keys, compact): stored with
    its request_id, so that the same request_id with a different request is told apart from a
    retry of the same one (which answers the first result)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def normalize_priority(priority: int | None, field_name: str = "priority") -> int:
    """0/None -> the default 5; outside 1-10 -> InvalidArgument."""
    if not priority:
        return PRIORITY_DEFAULT
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidArgument(FieldViolation(field_name, "priority must be between 1 and 10"))
    return priority


# What str.isspace() or a code point below 32 is (re's \s is Python's Unicode whitespace): one
# C scan instead of a Python loop over the characters.
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f]")


def validate_conversation_id(value: str, field_name: str = "conversation_id") -> list[FieldViolation]:
    if not value or not value.strip():
        return [FieldViolation(field_name, "conversation_id is required", "REQUIRED")]
    if len(value) > CONVERSATION_ID_MAX or _SPACE_OR_CONTROL.search(value):
        return [FieldViolation(field_name, f"conversation_id must be 1-{CONVERSATION_ID_MAX} "
                                           "characters without spaces")]
    return []


def validate_schedule(scheduled_time: datetime | None, now: datetime, *, max_ahead: timedelta = timedelta(days=365),
                      field_name: str = "scheduled_time") -> list[FieldViolation]:
    if scheduled_time is None:
        return []
    if scheduled_time <= now:
        return [FieldViolation(field_name, "scheduled_time must be in the future")]
    if scheduled_time - now > max_ahead:
        return [FieldViolation(field_name, f"scheduled_time must be within {max_ahead.days} days")]
    return []


# ---- templates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VariableDef:
    name: str
    type: VariableType = VariableType.STRING
    required: bool = False
    default_value: str = ""
    description: str = ""


@dataclass
class Template:
    """One row of `message_templates`."""

    id: str
    tenant_id: str
    creator_id: str
    template_name: str
    template_type: MessageType
    template_content: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int = 1
    category: str | None = None
    description: str | None = None
    variables: list[VariableDef] = field(default_factory=list)
    preview_data: dict[str, Any] | None = None
    usage_count: int = 0
    last_used_time: datetime | None = None
    is_public: bool = False
    is_active: bool = True
    tags: list[str] = field(default_factory=list)

    def visible_to(self, subject_id: str | None) -> bool:
        """Private templates exist only for their creator; public ones for the whole tenant."""
        return self.is_public or (subject_id is not None and subject_id == self.creator_id)


def placeholders(message_type: MessageType, content: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for key in TEMPLATED_FIELDS[message_type]:
        names.update(PLACEHOLDER_RE.findall(_str(content, key)))
    return names


def validate_template(template_name: str, message_type: MessageType, content: Mapping[str, Any],
                      variables: list[VariableDef], *, prefix: str = "template") -> list[FieldViolation]:
    """Rules for a template: name, variable definitions, every placeholder declared, and the
    content valid for its type once the placeholders are filled with sample values."""
    out: list[FieldViolation] = []
    if not template_name.strip() or len(template_name) > TEMPLATE_NAME_MAX:
        out.append(FieldViolation(f"{prefix}.template_name", f"template_name must be 1-{TEMPLATE_NAME_MAX} "
                                                             "characters", "REQUIRED"))
    out.extend(name_violations(f"{prefix}.template_name", template_name))
    seen: set[str] = set()
    for i, var in enumerate(variables):
        if not VARIABLE_NAME_RE.match(var.name):
            out.append(FieldViolation(f"{prefix}.variables[{i}].name", "a variable name is "
                                      "[A-Za-z_][A-Za-z0-9_]{0,49}"))
        elif var.name in seen:
            out.append(FieldViolation(f"{prefix}.variables[{i}].name", f"variable {var.name!r} is defined twice"))
        seen.add(var.name)
        if var.default_value:
            try:
                coerce_variable(var, var.default_value, from_text=True)
            except ValueError as exc:
                out.append(FieldViolation(f"{prefix}.variables[{i}].default_value", str(exc)))
    for name in sorted(placeholders(message_type, content) - seen):
        out.append(FieldViolation(f"{prefix}.template_content", f"placeholder {{{{{name}}}}} has no variable "
                                                                "definition"))
    sample = {v.name: _sample(v) for v in variables}
    filled = {k: (PLACEHOLDER_RE.sub(lambda m: sample.get(m.group(1), "x"), v) if isinstance(v, str) else v)
              for k, v in content.items()}
    out.extend(validate_content(message_type, filled, prefix=f"{prefix}.template_content"))
    return out


def _sample(var: VariableDef) -> str:
    return {VariableType.NUMBER: "1", VariableType.BOOL: "true", VariableType.DATE: "2000-01-01"}.get(var.type, "x")


def coerce_variable(var: VariableDef, value: Any, *, from_text: bool = False) -> str:
    """The text a value of `var` renders as; ValueError when it has the wrong type."""
    if var.type == VariableType.STRING:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, str | int | float):
            return str(value)
        raise ValueError(f"{var.name} must be a string")
    if var.type == VariableType.NUMBER:
        if isinstance(value, str) and from_text:
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{var.name} must be a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{var.name} must be a number")
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if var.type == VariableType.BOOL:
        if isinstance(value, str) and from_text and value in ("true", "false"):
            return value
        if not isinstance(value, bool):
            raise ValueError(f"{var.name} must be true or false")
        return "true" if value else "false"
    # DATE
    try:
        return date.fromisoformat(str(value) if isinstance(value, str) else "").isoformat()
    except ValueError:
        raise ValueError(f"{var.name} must be a date (YYYY-MM-DD)") from None


def render(message_type: MessageType, content: Mapping[str, Any], variables: list[VariableDef],
           values: Mapping[str, Any] | None, *, prefix: str = "variables",
           content_prefix: str = "content") -> dict[str, Any]:
    """The content with every {{name}} replaced; InvalidArgument listing every problem.

    Unknown variables (not defined by the template), missing required ones (no value, no
    default) and values of the wrong type are reported at "variables.<name>"; the rendered
    content is then validated for its type at "content.<type>.<field>".
    """
    values = dict(values or {})
    defs = {v.name: v for v in variables}
    out: list[FieldViolation] = []
    text: dict[str, str] = {}
    for name in sorted(set(values) - set(defs)):
        out.append(FieldViolation(f"{prefix}.{name}", f"the template has no variable {name!r}", "UNKNOWN_VARIABLE"))
    for var in variables:
        if var.name in values and values[var.name] is not None:
            try:
                text[var.name] = coerce_variable(var, values[var.name])
            except ValueError as exc:
                out.append(FieldViolation(f"{prefix}.{var.name}", str(exc)))
        elif var.default_value:
            text[var.name] = coerce_variable(var, var.default_value, from_text=True)
        elif var.required:
            out.append(FieldViolation(f"{prefix}.{var.name}", f"variable {var.name!r} is required",
                                      "MISSING_VARIABLE"))
        else:
            text[var.name] = ""
    # A placeholder without a definition cannot be filled (templates are validated on create,
    # so this only guards rows written by older code).
    for name in sorted(placeholders(message_type, content) - set(defs)):
        out.append(FieldViolation(f"{prefix}.{name}", f"variable {name!r} is not defined by the template",
                                  "MISSING_VARIABLE"))
    if out:
        raise InvalidArgument(out)
    rendered = dict(content)
    for key in TEMPLATED_FIELDS[message_type]:
        value = rendered.get(key)
        if isinstance(value, str):
            rendered[key] = PLACEHOLDER_RE.sub(lambda m: text.get(m.group(1), ""), value)
    violations = validate_content(message_type, rendered, prefix=content_prefix)
    if violations:
        raise InvalidArgument(violations)
    return rendered
