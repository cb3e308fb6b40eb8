"""account database: wework_accounts, account_status_history, conversations (AccountService)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..ids import new_id
from .base import (
    CIPHERTEXT_LENGTH,
    HASH_LENGTH,
    MYSQL_TABLE_ARGS,
    NAMING_CONVENTION,
    AppliedCallbackMixin,
    IdempotencyKeyMixin,
    IdMixin,
    TimestampsMixin,
    UtcDateTime,
    VersionedMixin,
    enum_type,
    index,
    utcnow,
)

ACCOUNT_STATUSES = ("created", "logging_in", "waiting_scan", "waiting_confirm", "need_verify", "online",
                    "offline", "error", "recovering")
OPERATOR_TYPES = ("user", "system", "auto")
CONVERSATION_TYPES = ("private", "group")


class AccountBase(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class WeworkAccount(IdMixin, VersionedMixin, TimestampsMixin, AccountBase):
    __tablename__ = "wework_accounts"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    user_id: Mapped[str | None] = mapped_column(sa.String(36))
    account_name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    phone: Mapped[str | None] = mapped_column(sa.String(CIPHERTEXT_LENGTH))  # ciphertext
    phone_hash: Mapped[str | None] = mapped_column(sa.CHAR(HASH_LENGTH))
    email: Mapped[str | None] = mapped_column(sa.String(CIPHERTEXT_LENGTH))  # ciphertext
    email_hash: Mapped[str | None] = mapped_column(sa.CHAR(HASH_LENGTH))
    # The provider's instance id. Globally unique through the directory's account_guids.
    guid: Mapped[str | None] = mapped_column(sa.String(100))
    qr_code_url: Mapped[str | None] = mapped_column(sa.String(500))
    login_token: Mapped[str | None] = mapped_column(sa.String(CIPHERTEXT_LENGTH))  # ciphertext
    status: Mapped[str] = mapped_column(enum_type("account_status", *ACCOUNT_STATUSES), nullable=False,
                                        default="created", server_default=sa.text("'created'"))
    config: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    user_info: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    last_login_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_heartbeat_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    login_retry_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                                   server_default=sa.text("0"))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    # Added (0002): the current QR code beside its URL, and recovery bookkeeping of the monitor.
    qr_payload: Mapped[str | None] = mapped_column(sa.Text)
    qr_expire_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    recovery_attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                                   server_default=sa.text("0"))
    next_recovery_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Added (0004): the account's puppet-service token (write-only in the API).
    provider_token: Mapped[str | None] = mapped_column(sa.String(CIPHERTEXT_LENGTH))  # ciphertext

    __table_args__ = (
        index("wework_accounts", "uk_tenant_account_name", "tenant_id", "account_name"),
        # Not unique: a per-shard unique key cannot make a guid unique across shards; the
        # directory's account_guids primary key does.
        index("wework_accounts", "idx_guid", "guid"),
        index("wework_accounts", "idx_tenant_id", "tenant_id"),
        index("wework_accounts", "idx_user_id", "user_id"),
        index("wework_accounts", "idx_status", "status"),
        index("wework_accounts", "idx_phone_hash", "phone_hash"),
        index("wework_accounts", "idx_last_heartbeat", "last_heartbeat_time"),
        index("wework_accounts", "idx_created_at", "created_at"),
        index("wework_accounts", "idx_tenant_status_heartbeat", "tenant_id", "status", "last_heartbeat_time"),
        # Design: idx_online_heartbeat ... WHERE status = 'online' (no partial indexes in MySQL).
        index("wework_accounts", "idx_online_heartbeat", "status", "last_heartbeat_time"),
        index("wework_accounts", "idx_account_name_search", "tenant_id", "account_name",
              mysql_length={"account_name": 20}),
        # Added (0002): the heartbeat monitor's scan for recoveries that are due.
        index("wework_accounts", "idx_recovery_due", "status", "next_recovery_at"),
        dict(MYSQL_TABLE_ARGS),
    )


class AccountStatusHistory(AccountBase):
    """Status transitions. Partitioned by year of created_at on MySQL (see migrations).

    The id is a UUIDv7 rather than the design's AUTO_INCREMENT bigint: with the partition column
    in the primary key, SQLite could not auto-increment it, and v7 ids sort by time anyway.
    """

    __tablename__ = "account_status_history"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    # The partitioning column must be part of every unique key (MySQL error 1503).
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True, default=utcnow)
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)  # added: tenant-scoped reads
    account_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    old_status: Mapped[str | None] = mapped_column(sa.String(20))
    new_status: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    extra_data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    operator_id: Mapped[str | None] = mapped_column(sa.String(36))
    operator_type: Mapped[str] = mapped_column(enum_type("operator_type", *OPERATOR_TYPES), nullable=False,
                                               default="system", server_default=sa.text("'system'"))
    # Added (0002): position in the tenant's change log, allocated under the row lock of
    # account_event_sequences, so it is gap-free and commits in order (WatchAccounts cursors).
    seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0, server_default=sa.text("0"))

    __table_args__ = (
        index("account_status_history", "idx_tenant_seq", "tenant_id", "seq"),
        index("account_status_history", "idx_account_seq", "account_id", "seq"),
        index("account_status_history", "idx_account_id", "account_id"),
        index("account_status_history", "idx_account_time", "account_id", "created_at"),
        index("account_status_history", "idx_new_status", "new_status"),
        index("account_status_history", "idx_created_at", "created_at"),
        {**MYSQL_TABLE_ARGS, "info": {"partition": ("created_at", "year")}},
    )


class Conversation(IdMixin, VersionedMixin, TimestampsMixin, AccountBase):
    __tablename__ = "conversations"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)  # added: tenant-scoped reads
    account_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    conversation_id: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    conversation_name: Mapped[str | None] = mapped_column(sa.String(200))
    conversation_type: Mapped[str] = mapped_column(enum_type("conversation_type", *CONVERSATION_TYPES),
                                                   nullable=False)
    avatar_url: Mapped[str | None] = mapped_column(sa.String(500))
    member_count: Mapped[int | None] = mapped_column(sa.Integer, default=0, server_default=sa.text("0"))
    last_msg_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_msg_content: Mapped[str | None] = mapped_column(sa.Text)
    unread_count: Mapped[int | None] = mapped_column(sa.Integer, default=0, server_default=sa.text("0"))
    is_active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True,
                                            server_default=sa.text("1"))
    is_pinned: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False,
                                            server_default=sa.text("0"))
    tags: Mapped[list[str] | None] = mapped_column(sa.JSON)
    extra_info: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)

    __table_args__ = (
        index("conversations", "uk_account_conversation", "account_id", "conversation_id"),
        index("conversations", "idx_account_id", "account_id"),
        index("conversations", "idx_conversation_type", "conversation_type"),
        index("conversations", "idx_last_msg_time", "last_msg_time"),
        index("conversations", "idx_is_active", "is_active"),
        index("conversations", "idx_updated_at", "updated_at"),
        # Added (0002): ListConversations, newest message first per account.
        index("conversations", "idx_account_last_msg", "account_id", "last_msg_time"),
        dict(MYSQL_TABLE_ARGS),
    )


class AccountEventSequence(AccountBase):
    """Added (0002): the last history seq per tenant. Every status-changing transaction locks
    its tenant's row, which orders the tenant's changes and serializes CreateAccount's quota."""

    __tablename__ = "account_event_sequences"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0, server_default=sa.text("0"))

    __table_args__ = (dict(MYSQL_TABLE_ARGS),)


class IdempotencyKey(IdempotencyKeyMixin, AccountBase):
    pass


class AppliedCallback(AppliedCallbackMixin, AccountBase):
    pass


metadata = AccountBase.metadata
