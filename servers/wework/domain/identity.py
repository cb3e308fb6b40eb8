"""Tenants, users, roles and API keys: entities and their rules. Pure: no I/O.

Validation functions return every violation at once (a client fixes all fields
in one round trip), with field paths as they appear in the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from wework.domain.access import TENANT_PERMISSIONS
from wework.domain.dispatch import pacing_violations
from wework.domain.errors import (
    EtagMismatch,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
)
from wework.domain.names import name_violations

CODE_RE = re.compile(r"^[a-z][a-z0-9_-]{1,49}$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9._-]{3,50}$")
PHONE_RE = re.compile(r"^\+?[0-9]{5,20}$")
# Deliberately simple: one @, no spaces, a dot in the domain. Deliverability is
# the mail system's business, not ours.
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PERMISSION_RE = re.compile(r"^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$")

MAX_QUOTA = 100_000_000
MAX_SUSPEND_REASON = 500
# Roles CreateUser may grant at once (more are given with AssignRole).
MAX_ROLES_ON_CREATE = 20


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class UserStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    LOCKED = "locked"
    DELETED = "deleted"


def etag_of(version: int) -> str:
    return f"v{version}"


def check_etag(given: str | None, version: int, subject: str) -> None:
    if given and given != etag_of(version):
        raise EtagMismatch(subject)


# ---- field checks shared by the entities (accounts too) -----------------------------------------


def _check_len(violations: list[FieldViolation], path: str, value: str | None, lo: int, hi: int) -> None:
    n = len(value or "")
    if n < lo or n > hi:
        what = "is required" if n == 0 and lo > 0 else f"must be {lo}-{hi} characters"
        violations.append(FieldViolation(path, f"{path.rsplit('.', 1)[-1]} {what}"))


def _check_name(violations: list[FieldViolation], path: str, value: str | None, lo: int, hi: int) -> None:
    _check_len(violations, path, value, lo, hi)
    violations.extend(name_violations(path, value))


def _check_url(violations: list[FieldViolation], path: str, value: str | None) -> None:
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 500:
        violations.append(FieldViolation(path, "must be an absolute http(s) URL of at most 500 characters"))


def check_email(violations: list[FieldViolation], path: str, value: str | None, *, required: bool) -> None:
    if not value:
        if required:
            violations.append(FieldViolation(path, "email is required"))
        return
    if len(value) > 100 or not EMAIL_RE.match(value):
        violations.append(FieldViolation(path, "must be an email address of at most 100 characters"))


def check_phone(violations: list[FieldViolation], path: str, value: str | None) -> None:
    if value and not PHONE_RE.match(value):
        violations.append(FieldViolation(path, "must be 5-20 digits with an optional leading +"))


def normalize_email(value: str) -> str:
    return value.strip().lower()


# ---- tenants ---------------------------------------------------------------------------


TENANT_MUTABLE_FIELDS = frozenset(
    {"tenant_name", "contact_person", "contact_phone", "contact_email", "max_accounts",
     "max_daily_messages", "webhook_url", "config"}
)


@dataclass
class Tenant:
    id: str
    tenant_code: str
    tenant_name: str
    contact_person: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    max_accounts: int = 10
    max_daily_messages: int = 10000
    webhook_url: str | None = None
    config: dict[str, Any] | None = None
    status: TenantStatus = TenantStatus.ACTIVE
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1
    # Why a platform admin suspended it; None unless suspended.
    suspend_reason: str | None = None

    @property
    def etag(self) -> str:
        return etag_of(self.version)

    def validate(self, prefix: str = "tenant", *, fields: frozenset[str] | None = None) -> None:
        """Raises InvalidArgument listing every bad field (only `fields` when given)."""
        v: list[FieldViolation] = []
        want = (lambda name: fields is None or name in fields)
        if want("tenant_code") and not CODE_RE.match(self.tenant_code or ""):
            v.append(FieldViolation(f"{prefix}.tenant_code",
                                    "must be 2-50 of a-z, 0-9, _ and -, starting with a letter"))
        if want("tenant_name"):
            _check_name(v, f"{prefix}.tenant_name", self.tenant_name, 1, 100)
        if want("contact_person"):
            _check_name(v, f"{prefix}.contact_person", self.contact_person, 0, 50)
        if want("contact_phone"):
            check_phone(v, f"{prefix}.contact_phone", self.contact_phone)
        if want("contact_email"):
            check_email(v, f"{prefix}.contact_email", self.contact_email, required=False)
        for name in ("max_accounts", "max_daily_messages"):
            value = getattr(self, name)
            if want(name) and not (0 <= value <= MAX_QUOTA):
                v.append(FieldViolation(f"{prefix}.{name}", f"must be between 0 and {MAX_QUOTA}"))
        if want("webhook_url"):
            _check_url(v, f"{prefix}.webhook_url", self.webhook_url)
        if want("config") and self.config and "pacing" in self.config:
            v.extend(pacing_violations(self.config["pacing"], f"{prefix}.config.pacing"))
        if v:
            raise InvalidArgument(v)

    def with_status(self, new: TenantStatus, reason: str | None = None) -> Tenant:
        """The tenant in `new` status; `reason` is kept while it is suspended."""
        if reason is not None and len(reason) > MAX_SUSPEND_REASON:
            raise InvalidArgument(FieldViolation("reason", f"at most {MAX_SUSPEND_REASON} characters"))
        allowed = {
            TenantStatus.ACTIVE: {TenantStatus.SUSPENDED, TenantStatus.DELETED},
            TenantStatus.SUSPENDED: {TenantStatus.ACTIVE, TenantStatus.DELETED},
            TenantStatus.DELETED: set(),
        }
        if new not in allowed[self.status]:
            raise FailedPrecondition(
                f"a {self.status.value} tenant cannot become {new.value}",
                [PreconditionViolation("STATUS", f"tenants/{self.id}",
                                       f"tenant is {self.status.value}")],
            )
        return replace(self, status=new,
                       suspend_reason=(reason or None) if new is TenantStatus.SUSPENDED else None)


# ---- users -------------------------------------------------------------------------------


USER_MUTABLE_FIELDS = frozenset({"email", "phone", "real_name", "avatar_url", "password"})


@dataclass
class User:
    id: str
    tenant_id: str
    username: str
    email: str
    password_hash: str = ""
    phone: str | None = None
    real_name: str | None = None
    avatar_url: str | None = None
    status: UserStatus = UserStatus.ACTIVE
    last_login_time: datetime | None = None
    last_login_ip: str | None = None
    failed_login_count: int = 0
    locked_until: datetime | None = None
    role_ids: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1
    # Access tokens carry the value current at login; moving it on ends every earlier session.
    session_version: int = 0

    @property
    def etag(self) -> str:
        return etag_of(self.version)

    def ending_sessions(self) -> User:
        """The user with every access token issued so far made invalid (password change,
        disable, role change)."""
        return replace(self, session_version=self.session_version + 1)


def validate_user_fields(values: dict[str, Any], prefix: str = "user", *, creating: bool) -> None:
    v: list[FieldViolation] = []
    if (creating or "username" in values) and not USERNAME_RE.match(values.get("username") or ""):
        v.append(FieldViolation(f"{prefix}.username", "must be 3-50 of A-Z, a-z, 0-9, '.', '_' and '-'"))
    if creating or "email" in values:
        check_email(v, f"{prefix}.email", values.get("email"), required=True)
    if "phone" in values:
        check_phone(v, f"{prefix}.phone", values.get("phone"))
    if "real_name" in values:
        _check_name(v, f"{prefix}.real_name", values.get("real_name"), 0, 50)
    if "avatar_url" in values:
        _check_url(v, f"{prefix}.avatar_url", values.get("avatar_url"))
    if creating or "password" in values:
        _check_len(v, f"{prefix}.password", values.get("password"), 8, 128)
    if v:
        raise InvalidArgument(v)


@dataclass(frozen=True)
class LoginPolicy:
    max_failed_logins: int = 5
    lockout: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class LoginOutcome:
    """What a login attempt does to the user, decided without I/O."""

    allowed: bool  # credentials accepted
    locked_seconds: int = 0  # > 0: refused because locked; retry after this many seconds
    user: User | None = None  # the user's new state to store (None: store nothing)


def decide_login(user: User, password_ok: bool, now: datetime, ip: str | None,
                 policy: LoginPolicy) -> LoginOutcome:
    """The lockout rule: `max_failed_logins` failures in a row lock the user for `lockout`.

    A locked user is refused without checking the password, so a locked account
    cannot be used to test guesses. When the lock has run out, the next attempt
    counts from zero again.
    """
    if user.status in (UserStatus.INACTIVE, UserStatus.DELETED):
        return LoginOutcome(allowed=False)
    if user.locked_until is not None and user.locked_until > now:
        return LoginOutcome(allowed=False, locked_seconds=max(1, int((user.locked_until - now).total_seconds())))
    failed = 0 if (user.locked_until is not None and user.locked_until <= now) else user.failed_login_count
    if password_ok:
        return LoginOutcome(True, user=replace(
            user, status=UserStatus.ACTIVE, failed_login_count=0, locked_until=None,
            last_login_time=now, last_login_ip=ip))
    failed += 1
    if failed >= policy.max_failed_logins:
        until = now + policy.lockout
        return LoginOutcome(False, locked_seconds=int(policy.lockout.total_seconds()), user=replace(
            user, status=UserStatus.LOCKED, failed_login_count=failed, locked_until=until))
    return LoginOutcome(False, user=replace(user, failed_login_count=failed, locked_until=None,
                                            status=UserStatus.ACTIVE))


# ---- roles -------------------------------------------------------------------------------


ROLE_MUTABLE_FIELDS = frozenset({"role_name", "description", "permissions", "is_active"})
_KNOWN_PREFIXES = {p.split(".")[0] for p in TENANT_PERMISSIONS}


@dataclass
class Role:
    id: str
    tenant_id: str
    role_code: str
    role_name: str
    permissions: list[str]
    description: str | None = None
    is_system: bool = False
    is_active: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1

    @property
    def etag(self) -> str:
        return etag_of(self.version)

    def validate(self, prefix: str = "role", *, fields: frozenset[str] | None = None) -> None:
        v: list[FieldViolation] = []
        want = (lambda name: fields is None or name in fields)
        if want("role_code") and not CODE_RE.match(self.role_code or ""):
            v.append(FieldViolation(f"{prefix}.role_code",
                                    "must be 2-50 of a-z, 0-9, _ and -, starting with a letter"))
        if want("role_name"):
            _check_name(v, f"{prefix}.role_name", self.role_name, 1, 100)
        if want("description"):
            _check_len(v, f"{prefix}.description", self.description, 0, 500)
        if want("permissions"):
            if not self.permissions:
                v.append(FieldViolation(f"{prefix}.permissions", "at least one permission is required"))
            for i, perm in enumerate(self.permissions):
                if not is_valid_tenant_permission(perm):
                    v.append(FieldViolation(f"{prefix}.permissions[{i}]", f"unknown permission {perm!r}"))
        if v:
            raise InvalidArgument(v)

    def ensure_mutable(self) -> None:
        if self.is_system:
            raise FailedPrecondition(
                "system roles cannot be changed or deleted",
                [PreconditionViolation("SYSTEM_ROLE", f"roles/{self.id}", "role is a system role")],
            )


def is_valid_tenant_permission(perm: str) -> bool:
    if perm == "*":
        return True
    if not PERMISSION_RE.match(perm) or perm.startswith("platform"):
        return False
    if perm.endswith(".*"):
        return perm[:-2].split(".")[0] in _KNOWN_PREFIXES
    return perm in TENANT_PERMISSIONS


# ---- API keys -----------------------------------------------------------------------------


@dataclass
class ApiKey:
    id: str
    tenant_id: str
    role_id: str
    display_name: str
    prefix: str
    secret_hash: str
    created_by: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def validate_api_key_fields(display_name: str, role_id: str, expires_at: datetime | None, now: datetime,
                            prefix: str = "api_key") -> None:
    v: list[FieldViolation] = []
    _check_name(v, f"{prefix}.display_name", display_name, 1, 100)
    if not role_id:
        v.append(FieldViolation(f"{prefix}.role_id", "role_id is required"))
    if expires_at is not None and expires_at <= now:
        v.append(FieldViolation(f"{prefix}.expire_time", "must be in the future"))
    if v:
        raise InvalidArgument(v)


def validate_request_id(request_id: str, path: str = "request_id") -> None:
    # AIP-155 suggests a UUID; we accept any printable token up to 64 characters
    # so that callers can reuse their own ids.
    if request_id and (len(request_id) > 64 or not request_id.isprintable() or " " in request_id):
        raise InvalidArgument(FieldViolation(path, "must be at most 64 printable characters without spaces"))
