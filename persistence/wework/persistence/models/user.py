"""user database: tenants, users, roles, user_roles, api_keys, idempotency_keys (TenantService)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .base import (
    CIPHERTEXT_LENGTH,
    HASH_LENGTH,
    MYSQL_TABLE_ARGS,
    NAMING_CONVENTION,
    BigIntPK,
    IdempotencyKeyMixin,
    IdMixin,
    TimestampsMixin,
    UtcDateTime,
    VersionedMixin,
    enum_type,
    index,
    utcnow,
)

TENANT_STATUSES = ("active", "suspended", "deleted")
USER_STATUSES = ("active", "inactive", "locked", "deleted")


class UserBase(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(IdMixin, VersionedMixin, TimestampsMixin, UserBase):
    """One tenant. The row lives on the tenant's own shard; the directory keeps tenant_code unique."""

    __tablename__ = "tenants"

    tenant_code: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    tenant_name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    contact_person: Mapped[str | None] = mapped_column(sa.String(50))
    contact_phone: Mapped[str | None] = mapped_column(sa.String(CIPHERTEXT_LENGTH))  # ciphertext
    contact_email: Mapped[str | None] = mapped_column(sa.String(CIPHERTEXT_LENGTH))  # ciphertext
    max_accounts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=10,
                                              server_default=sa.text("10"))
    max_daily_messages: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=10000,
                                                    server_default=sa.text("10000"))
    webhook_url: Mapped[str | None] = mapped_column(sa.String(500))
    config: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(enum_type("tenant_status", *TENANT_STATUSES), nullable=False,
                                        default="active", server_default=sa.text("'active'"))
    # SuspendTenant's reason; cleared when the tenant leaves `suspended`.
    suspend_reason: Mapped[str | None] = mapped_column(sa.String(500))

    __table_args__ = (
        index("tenants", "uk_tenant_code", "tenant_code"),
        index("tenants", "idx_status", "status"),
        index("tenants", "idx_created_at", "created_at"),
        dict(MYSQL_TABLE_ARGS),
    )


class User(IdMixin, VersionedMixin, TimestampsMixin, UserBase):
    __tablename__ = "users"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("tenants.id"), nullable=False)
    username: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    email: Mapped[str] = mapped_column(sa.String(CIPHERTEXT_LENGTH), nullable=False)  # ciphertext
    # Keyed hash (HMAC) of the normalized e-mail: equality lookups and uniqueness on ciphertext.
    email_hash: Mapped[str] = mapped_column(sa.CHAR(HASH_LENGTH), nullable=False)
    phone: Mapped[str | None] = mapped_column(sa.String(CIPHERTEXT_LENGTH))  # ciphertext
    phone_hash: Mapped[str | None] = mapped_column(sa.CHAR(HASH_LENGTH))
    real_name: Mapped[str | None] = mapped_column(sa.String(50))
    avatar_url: Mapped[str | None] = mapped_column(sa.String(500))
    # Argon2 encoded hash; it embeds its salt, so the design's salt column is gone.
    password_hash: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    status: Mapped[str] = mapped_column(enum_type("user_status", *USER_STATUSES), nullable=False,
                                        default="active", server_default=sa.text("'active'"))
    last_login_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_login_ip: Mapped[str | None] = mapped_column(sa.String(45))
    failed_login_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                                    server_default=sa.text("0"))
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Compared with the "sv" claim of access tokens on every call: bumped to end earlier sessions.
    session_version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                                 server_default=sa.text("0"))

    __table_args__ = (
        index("users", "uk_tenant_username", "tenant_id", "username"),
        # Replaces uk_tenant_email: the e-mail itself is ciphertext with a random nonce.
        index("users", "uk_tenant_email_hash", "tenant_id", "email_hash"),
        index("users", "idx_tenant_id", "tenant_id"),
        index("users", "idx_status", "status"),
        index("users", "idx_email_hash", "email_hash"),
        index("users", "idx_last_login", "last_login_time"),
        index("users", "idx_tenant_status_login", "tenant_id", "status", "last_login_time"),
        # Design: idx_active_users (status, last_login_time) WHERE status = 'active'; MySQL has no
        # partial indexes, and leading with status serves the same query.
        index("users", "idx_active_users", "status", "last_login_time"),
        # Design idx_search_fields (tenant_id, username(10), email(20)) is dropped: username
        # prefixes are served by uk_tenant_username and the e-mail is ciphertext.
        dict(MYSQL_TABLE_ARGS),
    )


class Role(IdMixin, VersionedMixin, TimestampsMixin, UserBase):
    __tablename__ = "roles"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("tenants.id"), nullable=False)
    role_code: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    role_name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.String(500))
    permissions: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False)
    is_system: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False,
                                            server_default=sa.text("0"))
    is_active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True,
                                            server_default=sa.text("1"))

    __table_args__ = (
        index("roles", "uk_tenant_role_code", "tenant_id", "role_code"),
        index("roles", "idx_tenant_id", "tenant_id"),
        index("roles", "idx_is_active", "is_active"),
        dict(MYSQL_TABLE_ARGS),
    )


class UserRole(UserBase):
    __tablename__ = "user_roles"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # Added to the design: lets "who holds role X" stay a tenant-scoped query.
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    user_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("users.id"), nullable=False)
    role_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("roles.id"), nullable=False)
    assigned_by: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        index("user_roles", "uk_user_role", "user_id", "role_id"),
        index("user_roles", "idx_user_id", "user_id"),
        index("user_roles", "idx_role_id", "role_id"),
        index("user_roles", "idx_assigned_at", "assigned_at"),
        index("user_roles", "idx_tenant_role", "tenant_id", "role_id"),
        dict(MYSQL_TABLE_ARGS),
    )


class ApiKey(IdMixin, UserBase):
    """An API key of a backend. Only a hash of the secret is stored; `prefix` is shown to humans."""

    __tablename__ = "api_keys"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("tenants.id"), nullable=False)
    role_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("roles.id"), nullable=False)
    display_name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    secret_hash: Mapped[str] = mapped_column(sa.CHAR(HASH_LENGTH), nullable=False)
    created_by: Mapped[str | None] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        index("api_keys", "idx_tenant_created", "tenant_id", "created_at"),
        index("api_keys", "idx_role_id", "role_id"),  # MySQL wants an index behind each FK
        dict(MYSQL_TABLE_ARGS),
    )


class IdempotencyKey(IdempotencyKeyMixin, UserBase):
    pass


metadata = UserBase.metadata
