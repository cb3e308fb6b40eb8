"""WeCom accounts: the status state machine, login and recovery rules. Pure: no I/O.

Every status change goes through `plan_transition` (the legal pairs of TRANSITIONS) and
usually through `apply_trigger` (what causes it, from which states, and what else it changes
on the account). Both return the account's next state plus the history entry to write in the
same transaction; an illegal change raises FailedPrecondition and changes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from wework.domain.dispatch import pacing_violations
from wework.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, PreconditionViolation
from wework.domain.identity import check_email, check_phone, etag_of
from wework.domain.names import name_violations
from wework.domain.update_mask import update_mask_violations


class AccountStatus(StrEnum):
    CREATED = "created"
    LOGGING_IN = "logging_in"
    WAITING_SCAN = "waiting_scan"
    WAITING_CONFIRM = "waiting_confirm"
    NEED_VERIFY = "need_verify"
    ONLINE = "online"
    OFFLINE = "offline"
    ERROR = "error"
    RECOVERING = "recovering"


# Written as the new_status of the last history entry of a deleted account. Not a status an
# account can be in: DeleteAccount removes the row.
ACCOUNT_DELETED = "deleted"

S = AccountStatus

# The legal (from -> to) pairs. Everything else is refused. Drawn in docs/accounts.md.
TRANSITIONS: dict[AccountStatus, frozenset[AccountStatus]] = {
    S.CREATED: frozenset({S.LOGGING_IN}),
    S.LOGGING_IN: frozenset({S.WAITING_SCAN, S.ONLINE, S.ERROR, S.OFFLINE}),
    # -> LOGGING_IN: the QR code expired and a new one is being fetched.
    S.WAITING_SCAN: frozenset({S.WAITING_CONFIRM, S.NEED_VERIFY, S.ONLINE, S.LOGGING_IN, S.ERROR, S.OFFLINE}),
    S.WAITING_CONFIRM: frozenset({S.NEED_VERIFY, S.ONLINE, S.LOGGING_IN, S.ERROR, S.OFFLINE}),
    S.NEED_VERIFY: frozenset({S.ONLINE, S.ERROR, S.OFFLINE}),
    S.ONLINE: frozenset({S.OFFLINE}),
    # An OFFLINE account comes back only through a new login or a recovery, never straight
    # to ONLINE: a late ONLINE callback must not undo a logout.
    S.OFFLINE: frozenset({S.LOGGING_IN, S.RECOVERING}),
    S.RECOVERING: frozenset({S.ONLINE, S.ERROR, S.OFFLINE}),
    S.ERROR: frozenset({S.LOGGING_IN}),
}

LOGIN_STEPS: frozenset[AccountStatus] = frozenset({S.LOGGING_IN, S.WAITING_SCAN, S.WAITING_CONFIRM, S.NEED_VERIFY})
# Statuses in which the provider instance may hold a session that a logout must end.
SESSION_STATUSES: frozenset[AccountStatus] = LOGIN_STEPS | {S.ONLINE, S.OFFLINE, S.RECOVERING}


def is_legal(old: AccountStatus, new: AccountStatus) -> bool:
    return new in TRANSITIONS[old]


class OperatorType(StrEnum):
    USER = "user"  # a call by a user or an API key
    SYSTEM = "system"  # the platform: monitors, provider callbacks
    AUTO = "auto"  # an automatic rule: recovery


@dataclass(frozen=True)
class Operator:
    type: OperatorType
    id: str | None = None

    @classmethod
    def user(cls, subject_id: str | None) -> Operator:
        return cls(OperatorType.USER, subject_id)


SYSTEM = Operator(OperatorType.SYSTEM)
AUTO = Operator(OperatorType.AUTO)


# ---- entities ----------------------------------------------------------------------------------


@dataclass
class Account:
    id: str
    tenant_id: str
    account_name: str
    guid: str | None = None
    user_id: str | None = None
    phone: str | None = None
    email: str | None = None
    status: AccountStatus = AccountStatus.CREATED
    config: dict[str, Any] | None = None
    user_info: dict[str, Any] | None = None
    login_token: str | None = None
    qr_code_url: str | None = None
    qr_payload: str | None = None
    qr_expire_time: datetime | None = None
    last_login_time: datetime | None = None
    last_heartbeat_time: datetime | None = None
    login_retry_count: int = 0
    error_message: str | None = None
    recovery_attempts: int = 0
    next_recovery_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1
    # The account's token at a puppet-service provider: write-only (never answered, cached or
    # logged; repr=False keeps it out of every repr of the account).
    provider_token: str | None = field(default=None, repr=False)

    @property
    def etag(self) -> str:
        return etag_of(self.version)

    @property
    def subject(self) -> str:
        return f"accounts/{self.id}"


@dataclass(frozen=True)
class StatusChange:
    """One row of account_status_history. `id` and `seq` are assigned when it is stored."""

    tenant_id: str
    account_id: str
    old_status: str | None  # None for the creation
    new_status: str  # an AccountStatus value, or ACCOUNT_DELETED
    reason: str
    operator: Operator
    created_at: datetime
    error_message: str | None = None
    extra_data: dict[str, Any] | None = None
    id: str = ""
    seq: int = 0


@dataclass(frozen=True)
class Transition:
    """The account after a change (version bumped) and the history entry that records it."""

    account: Account
    change: StatusChange


# ---- transitions ---------------------------------------------------------------------------------

MAX_REASON = 500


def illegal(account: Account, target: str, why: str | None = None) -> FailedPrecondition:
    description = why or f"account is {account.status.value}; it cannot become {target}"
    return FailedPrecondition(
        f"account {account.id} is {account.status.value}: {description}",
        [PreconditionViolation("STATUS", account.subject, description)],
    )


def plan_transition(account: Account, new_status: AccountStatus, *, reason: str, now: datetime,
                    operator: Operator = SYSTEM, history_error: str | None = None,
                    extra: dict[str, Any] | None = None, **changes: Any) -> Transition:
    """`account` moved to `new_status` (plus `changes` to other fields), and its history entry
    (`history_error`: the error text it records).

    Raises FailedPrecondition (PreconditionViolation type STATUS) when the pair is not legal.
    """
    if not is_legal(account.status, new_status):
        raise illegal(account, new_status.value)
    updated = replace(account, **changes, status=new_status, updated_at=now, version=account.version + 1)
    change = StatusChange(
        tenant_id=account.tenant_id, account_id=account.id, old_status=account.status.value,
        new_status=new_status.value, reason=reason[:MAX_REASON], operator=operator, created_at=now,
        error_message=history_error, extra_data=extra or None,
    )
    return Transition(updated, change)


def creation_change(account: Account, operator: Operator, now: datetime) -> StatusChange:
    return StatusChange(tenant_id=account.tenant_id, account_id=account.id, old_status=None,
                        new_status=account.status.value, reason="created", operator=operator, created_at=now)


def deletion_change(account: Account, operator: Operator, now: datetime) -> StatusChange:
    return StatusChange(tenant_id=account.tenant_id, account_id=account.id, old_status=account.status.value,
                        new_status=ACCOUNT_DELETED, reason="deleted", operator=operator, created_at=now)


class Trigger(StrEnum):
    """What causes a status change. The value is the history `reason` unless one is given."""

    START_LOGIN = "start_login"  # StartLogin
    QR_READY = "qr_ready"  # the provider handed out a QR code
    QR_EXPIRED = "qr_expired"  # ... which expired unscanned: fetch another, or give up
    QR_SCANNED = "qr_scanned"
    NEED_VERIFY = "need_verify"
    ONLINE = "online"  # the provider reports the instance logged in (or reconnected)
    LOGIN_FAILED = "login_failed"
    CONNECTION_LOST = "connection_lost"  # provider OFFLINE callback: recover
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"  # no heartbeat for too long: recover
    LOGGED_OUT = "logged_out"  # provider LOGGED_OUT callback (e.g. logged out on the phone)
    LOGOUT = "logout"  # Logout
    RECOVERY_STARTED = "recovery_started"
    RECOVERED = "recovered"
    RECOVERY_FAILED = "recovery_failed"


# Trigger -> (states it applies in, target). Each (from, target) is also in TRANSITIONS
# (a unit test checks it). QR_EXPIRED targets LOGGING_IN, or ERROR once the refreshes are used up.
TRIGGERS: dict[Trigger, tuple[frozenset[AccountStatus], AccountStatus]] = {
    Trigger.START_LOGIN: (frozenset({S.CREATED, S.OFFLINE, S.ERROR}), S.LOGGING_IN),
    Trigger.QR_READY: (frozenset({S.LOGGING_IN}), S.WAITING_SCAN),
    Trigger.QR_EXPIRED: (frozenset({S.WAITING_SCAN, S.WAITING_CONFIRM}), S.LOGGING_IN),
    Trigger.QR_SCANNED: (frozenset({S.WAITING_SCAN}), S.WAITING_CONFIRM),
    Trigger.NEED_VERIFY: (frozenset({S.WAITING_SCAN, S.WAITING_CONFIRM}), S.NEED_VERIFY),
    Trigger.ONLINE: (LOGIN_STEPS | {S.RECOVERING}, S.ONLINE),
    Trigger.LOGIN_FAILED: (LOGIN_STEPS, S.ERROR),
    Trigger.CONNECTION_LOST: (frozenset({S.ONLINE}), S.OFFLINE),
    Trigger.HEARTBEAT_TIMEOUT: (frozenset({S.ONLINE}), S.OFFLINE),
    Trigger.LOGGED_OUT: (frozenset({S.ONLINE, S.RECOVERING}), S.OFFLINE),
    Trigger.LOGOUT: (LOGIN_STEPS | {S.ONLINE, S.RECOVERING}, S.OFFLINE),
    Trigger.RECOVERY_STARTED: (frozenset({S.OFFLINE}), S.RECOVERING),
    Trigger.RECOVERED: (frozenset({S.RECOVERING}), S.ONLINE),
    Trigger.RECOVERY_FAILED: (frozenset({S.RECOVERING}), S.ERROR),
}

# Provider callbacks (wework.server.providers.base.NotifyType member names) -> the trigger they
# fire. LOGIN_CONFIRMED changes nothing (ONLINE follows); HEARTBEAT, message and conversation
# callbacks are not status changes.
CALLBACK_TRIGGERS: dict[str, Trigger] = {
    "LOGIN_QR": Trigger.QR_READY,
    "QR_SCANNED": Trigger.QR_SCANNED,
    "NEED_VERIFY": Trigger.NEED_VERIFY,
    "ONLINE": Trigger.ONLINE,
    "OFFLINE": Trigger.CONNECTION_LOST,
    "LOGGED_OUT": Trigger.LOGGED_OUT,
    "QR_EXPIRED": Trigger.QR_EXPIRED,
    "LOGIN_FAILED": Trigger.LOGIN_FAILED,
}


def trigger_applies(trigger: Trigger, status: AccountStatus) -> bool:
    return status in TRIGGERS[trigger][0]


@dataclass(frozen=True)
class LoginPolicy:
    # QR codes fetched after the first one expired unscanned, before the login ends in ERROR.
    max_qr_refreshes: int = 3


_CLEAR_QR: dict[str, Any] = {"qr_code_url": None, "qr_payload": None, "qr_expire_time": None}
_CLEAR_RECOVERY: dict[str, Any] = {"recovery_attempts": 0, "next_recovery_at": None}


def apply_trigger(account: Account, trigger: Trigger, *, now: datetime, operator: Operator = SYSTEM,
                  reason: str | None = None, error_message: str | None = None,
                  extra: dict[str, Any] | None = None, qr: QrCode | None = None,
                  user_info: dict[str, Any] | None = None, login_token: str | None = None,
                  login_policy: LoginPolicy = LoginPolicy()) -> Transition:
    """The change `trigger` makes to `account`, with everything that goes with it.

    Raises FailedPrecondition when the trigger does not apply in the account's status.
    """
    allowed, target = TRIGGERS[trigger]
    if account.status not in allowed:
        raise illegal(account, target.value,
                      f"{trigger.value} does not apply to an account that is {account.status.value}")
    changes: dict[str, Any] = {}
    extra = dict(extra or {})
    match trigger:
        case Trigger.START_LOGIN:
            changes = {**_CLEAR_QR, **_CLEAR_RECOVERY, "login_retry_count": 0, "error_message": None}
        case Trigger.QR_READY:
            if qr is None:
                raise ValueError("QR_READY needs the QR code")
            changes = {"qr_code_url": qr.url, "qr_payload": qr.payload, "qr_expire_time": qr.expire_time}
            if qr.expire_time is not None:
                extra.setdefault("qr_expire_time", qr.expire_time.isoformat())
        case Trigger.QR_EXPIRED:
            changes = dict(_CLEAR_QR)
            if account.login_retry_count >= login_policy.max_qr_refreshes:
                target = S.ERROR
                error_message = error_message or (
                    f"the QR code expired {account.login_retry_count + 1} time(s) without a login")
            else:
                changes["login_retry_count"] = account.login_retry_count + 1
        case Trigger.NEED_VERIFY:
            changes = dict(_CLEAR_QR)
        case Trigger.ONLINE | Trigger.RECOVERED:
            changes = {**_CLEAR_QR, **_CLEAR_RECOVERY, "error_message": None, "login_retry_count": 0,
                       "last_heartbeat_time": now}
            if user_info is not None:
                changes["user_info"] = user_info
            if login_token is not None:
                changes["login_token"] = login_token
            if account.status is S.RECOVERING:
                extra.setdefault("reconnected", True)
            else:
                changes["last_login_time"] = now
        case Trigger.LOGIN_FAILED | Trigger.RECOVERY_FAILED:
            changes = {**_CLEAR_QR, **_CLEAR_RECOVERY, "error_message": error_message or trigger.value}
        case Trigger.CONNECTION_LOST | Trigger.HEARTBEAT_TIMEOUT:
            # The first recovery attempt is due at once; later ones back off (recovery_delay).
            changes = {"recovery_attempts": 0, "next_recovery_at": now}
        case Trigger.LOGGED_OUT | Trigger.LOGOUT:
            # A logged-out session cannot be restored: no recovery, and the token is void.
            changes = {**_CLEAR_QR, **_CLEAR_RECOVERY, "login_token": None}
        case Trigger.RECOVERY_STARTED:
            changes = {}
    if target is S.ERROR and "error_message" not in changes:
        changes["error_message"] = error_message or trigger.value
    return plan_transition(account, target, reason=reason or trigger.value, now=now, operator=operator,
                           history_error=error_message, extra=extra, **changes)


@dataclass(frozen=True)
class QrCode:
    url: str
    payload: str
    expire_time: datetime | None


# ---- recovery ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryPolicy:
    max_attempts: int = 5
    backoff_initial: timedelta = timedelta(seconds=5)
    backoff_max: timedelta = timedelta(seconds=300)
    # While one process tries a reconnect, the account is claimed this long: other monitors
    # skip it, and if the process dies the attempt is retried after it.
    lease: timedelta = timedelta(seconds=30)


def recovery_delay(attempts_done: int, policy: RecoveryPolicy) -> timedelta:
    """Wait before the next attempt after `attempts_done` failed ones: initial, x2, x4... capped."""
    if attempts_done < 1:
        return timedelta(0)
    factor = 2 ** min(attempts_done - 1, 30)
    return min(policy.backoff_max, policy.backoff_initial * factor)


@dataclass(frozen=True)
class RecoveryClaim:
    account: Account  # RECOVERING, attempt counted, claimed until next_recovery_at
    change: StatusChange | None  # OFFLINE -> RECOVERING on the first attempt


def claim_recovery(account: Account, now: datetime, policy: RecoveryPolicy) -> RecoveryClaim:
    """Starts the next recovery attempt of an OFFLINE or RECOVERING account that is due."""
    if account.next_recovery_at is None or account.status not in (S.OFFLINE, S.RECOVERING):
        raise illegal(account, S.RECOVERING.value, "no recovery is scheduled")
    bookkeeping = {"recovery_attempts": account.recovery_attempts + 1, "next_recovery_at": now + policy.lease}
    if account.status is S.OFFLINE:
        t = apply_trigger(account, Trigger.RECOVERY_STARTED, now=now, operator=AUTO,
                          extra={"attempt": account.recovery_attempts + 1})
        return RecoveryClaim(replace(t.account, **bookkeeping), t.change)
    return RecoveryClaim(replace(account, **bookkeeping, updated_at=now, version=account.version + 1), None)


@dataclass(frozen=True)
class RecoveryOutcome:
    account: Account
    change: StatusChange | None  # None: still RECOVERING, next attempt at account.next_recovery_at


def decide_recovery(account: Account, *, online: bool, recoverable: bool | None, detail: str | None,
                    now: datetime, policy: RecoveryPolicy) -> RecoveryOutcome:
    """What a reconnect attempt's result does to a claimed RECOVERING account.

    Online: RECOVERING -> ONLINE. Refused for good by the provider (recoverable False) or the
    last attempt used up: -> ERROR with the reason. Otherwise the next attempt after the backoff.
    """
    attempt = account.recovery_attempts
    extra = {"attempt": attempt}
    if detail:
        extra["provider_reason"] = detail
    if online:
        t = apply_trigger(account, Trigger.RECOVERED, now=now, operator=AUTO, extra=extra)
        return RecoveryOutcome(t.account, t.change)
    if recoverable is False or attempt >= policy.max_attempts:
        why = (f"the provider cannot restore the session ({detail or 'no reason given'})" if recoverable is False
               else f"recovery failed {attempt} time(s) ({detail or 'no reason given'})")
        reason = "recovery_refused" if recoverable is False else "recovery_exhausted"
        t = apply_trigger(account, Trigger.RECOVERY_FAILED, now=now, operator=AUTO, reason=reason,
                          error_message=why, extra=extra)
        return RecoveryOutcome(t.account, t.change)
    nxt = now + recovery_delay(attempt, policy)
    return RecoveryOutcome(replace(account, next_recovery_at=nxt, error_message=detail or account.error_message,
                                   updated_at=now, version=account.version + 1), None)


# ---- validation ----------------------------------------------------------------------------------

ACCOUNT_MUTABLE_FIELDS = frozenset({"account_name", "phone", "email", "user_id", "config", "provider_token"})
MAX_PROVIDER_TOKEN = 300
MAX_CONFIG_BYTES = 64 * 1024
GUID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def validate_account(values: dict[str, Any], prefix: str = "account", *, creating: bool) -> None:
    """Every bad field at once, with request paths. Only the keys present are checked on update."""
    v: list[FieldViolation] = []
    if creating or "account_name" in values:
        name = values.get("account_name") or ""
        if not name.strip() or len(name) > 100 or name != name.strip():
            v.append(FieldViolation(f"{prefix}.account_name",
                                    "account_name is required: 1-100 characters without surrounding spaces"))
        v.extend(name_violations(f"{prefix}.account_name", name))
    check_phone(v, f"{prefix}.phone", values.get("phone"))
    check_email(v, f"{prefix}.email", values.get("email"), required=False)
    user_id = values.get("user_id")
    if user_id and len(user_id) > 36:
        v.append(FieldViolation(f"{prefix}.user_id", "must be a user id (at most 36 characters)"))
    token = values.get("provider_token")
    if token and (len(token) > MAX_PROVIDER_TOKEN or any(c.isspace() or ord(c) < 32 for c in token)):
        # The value itself is never echoed: it is a secret.
        v.append(FieldViolation(f"{prefix}.provider_token",
                                f"must be at most {MAX_PROVIDER_TOKEN} characters without spaces"))
    config = values.get("config")
    if config is not None:
        if len(json.dumps(config, separators=(",", ":")).encode()) > MAX_CONFIG_BYTES:
            v.append(FieldViolation(f"{prefix}.config", f"must be at most {MAX_CONFIG_BYTES} bytes as JSON"))
        elif "simulator" in config and not isinstance(config["simulator"], dict):
            v.append(FieldViolation(f"{prefix}.config", "config.simulator must be an object"))
        elif "pacing" in config:
            v.extend(pacing_violations(config["pacing"], f"{prefix}.config.pacing"))
    if v:
        raise InvalidArgument(v)


def validate_verification_code(code: str, path: str = "code") -> None:
    if not code or len(code) > 32 or not code.isprintable() or code.strip() != code:
        raise InvalidArgument(FieldViolation(path, "code is required: 1-32 printable characters"))


# ---- conversations -----------------------------------------------------------------------------------


class ConversationType(StrEnum):
    PRIVATE = "private"
    GROUP = "group"


# How providers name conversation kinds -> ours.
_PROVIDER_CONVERSATION_TYPES = {"single": ConversationType.PRIVATE, "private": ConversationType.PRIVATE,
                                "p2p": ConversationType.PRIVATE, "group": ConversationType.GROUP,
                                "room": ConversationType.GROUP}


def conversation_type_of(provider_value: Any) -> ConversationType:
    return _PROVIDER_CONVERSATION_TYPES.get(str(provider_value or "").lower(), ConversationType.PRIVATE)


CONVERSATION_MUTABLE_FIELDS = frozenset({"is_pinned", "tags", "unread_count"})
MAX_TAGS = 20
MAX_TAG_LENGTH = 50
MAX_LAST_CONTENT = 500


@dataclass
class Conversation:
    id: str
    tenant_id: str
    account_id: str
    conversation_id: str
    conversation_type: ConversationType
    conversation_name: str | None = None
    avatar_url: str | None = None
    member_count: int = 0
    last_msg_time: datetime | None = None
    last_msg_content: str | None = None
    unread_count: int = 0
    is_active: bool = True
    is_pinned: bool = False
    tags: list[str] = field(default_factory=list)
    extra_info: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1

    @property
    def etag(self) -> str:
        return etag_of(self.version)


def validate_conversation_update(values: dict[str, Any], paths: list[str], prefix: str = "conversation") -> None:
    v: list[FieldViolation] = []
    v.extend(update_mask_violations(paths, CONVERSATION_MUTABLE_FIELDS))
    if "tags" in paths:
        tags = values.get("tags") or []
        if len(tags) > MAX_TAGS:
            v.append(FieldViolation(f"{prefix}.tags", f"at most {MAX_TAGS} tags"))
        for i, tag in enumerate(tags):
            if not tag or len(tag) > MAX_TAG_LENGTH or tag.strip() != tag:
                v.append(FieldViolation(f"{prefix}.tags[{i}]",
                                        f"a tag is 1-{MAX_TAG_LENGTH} characters without surrounding spaces"))
        if len(set(tags)) != len(tags):
            v.append(FieldViolation(f"{prefix}.tags", "tags must be unique"))
    if "unread_count" in paths and values.get("unread_count") != 0:
        v.append(FieldViolation(f"{prefix}.unread_count", "can only be set to 0 (mark read)"))
    if v:
        raise InvalidArgument(v)


def message_preview(content: Any) -> str:
    """A short text of an incoming message for last_msg_content."""
    if isinstance(content, dict):
        text = content.get("text") or content.get("title") or content.get("file_name")
        text = str(text) if text is not None else json.dumps(content, ensure_ascii=False)
    else:
        text = str(content)
    return text[:MAX_LAST_CONTENT]
