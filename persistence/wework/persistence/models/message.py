"""message database: messages, message_templates, batch_send_tasks, message_statistics."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..ids import new_id
from .base import (
    MYSQL_TABLE_ARGS,
    NAMING_CONVENTION,
    AppliedCallbackMixin,
    BigIntPK,
    IdempotencyKeyMixin,
    IdMixin,
    TimestampsMixin,
    TinyInt,
    UtcDateTime,
    VersionedMixin,
    enum_type,
    index,
    utcnow,
)

MESSAGE_TYPES = ("text", "image", "file", "link", "miniprogram", "at")
MESSAGE_STATUSES = ("pending", "sending", "sent", "delivered", "failed", "cancelled")
TARGET_TYPES = ("manual", "import", "group", "filter")
BATCH_STATUSES = ("created", "running", "paused", "completed", "failed", "cancelled")


class MessageBase(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Message(TimestampsMixin, MessageBase):
    """A message and its delivery state; the durable send queue. Partitioned by year on MySQL."""

    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    # Shadows the mixin's column to put it into the primary key (MySQL error 1503).
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True, default=utcnow)
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    account_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    conversation_id: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    message_type: Mapped[str] = mapped_column(enum_type("message_type", *MESSAGE_TYPES), nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    template_id: Mapped[str | None] = mapped_column(sa.String(36))
    status: Mapped[str] = mapped_column(enum_type("message_status", *MESSAGE_STATUSES), nullable=False,
                                        default="pending", server_default=sa.text("'pending'"))
    wework_msg_id: Mapped[str | None] = mapped_column(sa.String(100))
    send_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    callback_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error_code: Mapped[str | None] = mapped_column(sa.String(50))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    retry_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default=sa.text("0"))
    batch_id: Mapped[str | None] = mapped_column(sa.String(36))
    priority: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=5, server_default=sa.text("5"))
    scheduled_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Dispatch queue state (migration 0002; see wework.persistence.repositories.dispatch).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    hold_reason: Mapped[str | None] = mapped_column(sa.String(200))
    held_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    claimed_by: Mapped[str | None] = mapped_column(sa.String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    paused: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False, server_default=sa.text("0"))

    # Only the indexes a query reads: each one costs every insert and every status change.
    # Dropped from the design: idx_status, idx_batch_id, idx_conversation_id, idx_created_at,
    # idx_send_time and idx_scheduled_time (migration 0004), idx_scheduled_pending,
    # idx_claim_lease, idx_template_id, idx_tenant_account and idx_account_send_time (migration
    # 0005); idx_batch_status became idx_batch_counts (0006). See
    # docs/decisions/0019-messages-indexes.md.
    __table_args__ = (
        # The dispatch claim (status, paused, priority band, then age) and the expired-lease sweep.
        index("messages", "idx_claim", "status", "paused", "priority", "created_at"),
        # ListMessages of a tenant, newest first, and every per-tenant time range.
        index("messages", "idx_tenant_time_status", "tenant_id", "created_at", "status"),
        # ListMessages by conversation. The design's DESC key parts are dropped: InnoDB reads an
        # index backwards just as fast when every key part goes the same way.
        index("messages", "idx_conversation_time", "conversation_id", "created_at"),
        # A batch task's counters (from the index alone: status and whether it reached the
        # provider), pause, resume, cancel and the batch report (migration 0006).
        index("messages", "idx_batch_counts", "tenant_id", "batch_id", "status", "send_time"),
        {**MYSQL_TABLE_ARGS, "info": {"partition": ("created_at", "year")}},
    )


class MessageTemplate(IdMixin, VersionedMixin, TimestampsMixin, MessageBase):
    __tablename__ = "message_templates"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    creator_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    template_name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    template_type: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    category: Mapped[str | None] = mapped_column(sa.String(50))
    description: Mapped[str | None] = mapped_column(sa.String(500))
    template_content: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    variables: Mapped[Any | None] = mapped_column(sa.JSON)
    preview_data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    usage_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default=sa.text("0"))
    last_used_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    is_public: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False,
                                            server_default=sa.text("0"))
    is_active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True,
                                            server_default=sa.text("1"))
    tags: Mapped[list[str] | None] = mapped_column(sa.JSON)

    __table_args__ = (
        index("message_templates", "uk_tenant_template_name", "tenant_id", "template_name"),
        index("message_templates", "idx_tenant_id", "tenant_id"),
        index("message_templates", "idx_creator_id", "creator_id"),
        index("message_templates", "idx_template_type", "template_type"),
        index("message_templates", "idx_category", "category"),
        index("message_templates", "idx_is_active", "is_active"),
        index("message_templates", "idx_usage_count", "usage_count"),
        index("message_templates", "idx_created_at", "created_at"),
        dict(MYSQL_TABLE_ARGS),
    )


class BatchSendTask(IdMixin, VersionedMixin, TimestampsMixin, MessageBase):
    __tablename__ = "batch_send_tasks"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    creator_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    task_name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    account_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    template_id: Mapped[str | None] = mapped_column(sa.String(36))
    message_content: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    target_type: Mapped[str] = mapped_column(enum_type("target_type", *TARGET_TYPES), nullable=False)
    target_config: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    send_strategy: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(enum_type("batch_status", *BATCH_STATUSES), nullable=False,
                                        default="created", server_default=sa.text("'created'"))
    total_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default=sa.text("0"))
    sent_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default=sa.text("0"))
    success_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                               server_default=sa.text("0"))
    failed_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                              server_default=sa.text("0"))
    progress_percent: Mapped[Decimal] = mapped_column(sa.Numeric(5, 2), nullable=False, default=Decimal(0),
                                                      server_default=sa.text("0.00"))
    start_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    estimated_duration: Mapped[int | None] = mapped_column(sa.Integer)  # seconds
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    # Start's attempt (the decision for its XA branches) and how many messages it wrote (0007).
    materialization_id: Mapped[str | None] = mapped_column(sa.String(36))
    materialized_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                                    server_default=sa.text("0"))

    __table_args__ = (
        index("batch_send_tasks", "idx_tenant_id", "tenant_id"),
        index("batch_send_tasks", "idx_creator_id", "creator_id"),
        index("batch_send_tasks", "idx_account_id", "account_id"),
        index("batch_send_tasks", "idx_status", "status"),
        index("batch_send_tasks", "idx_created_at", "created_at"),
        dict(MYSQL_TABLE_ARGS),
    )


class MessageStatistic(TimestampsMixin, MessageBase):
    """Hourly (stat_hour 0-23) and daily (stat_hour NULL) counters per tenant and account.

    NULLs are distinct in unique keys, so the daily rows are not protected by the unique key:
    write them from a single aggregation job, not by concurrent upserts.
    """

    __tablename__ = "message_statistics"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    account_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    stat_date: Mapped[date] = mapped_column(sa.Date, nullable=False)
    stat_hour: Mapped[int | None] = mapped_column(TinyInt)
    total_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default=sa.text("0"))
    success_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                               server_default=sa.text("0"))
    failed_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0,
                                              server_default=sa.text("0"))
    avg_response_time: Mapped[Decimal | None] = mapped_column(sa.Numeric(10, 3))

    __table_args__ = (
        index("message_statistics", "uk_tenant_account_date_hour", "tenant_id", "account_id", "stat_date",
              "stat_hour"),
        index("message_statistics", "idx_stat_date", "stat_date"),
        index("message_statistics", "idx_tenant_date", "tenant_id", "stat_date"),
        dict(MYSQL_TABLE_ARGS),
    )


class BatchImportTarget(MessageBase):
    """Recipients streamed by ImportBatchTargets, staged until StartBatchTask materializes them."""

    __tablename__ = "batch_import_targets"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    conversation_id: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    variables: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)

    __table_args__ = (
        index("batch_import_targets", "idx_task_id", "task_id", "id"),
        dict(MYSQL_TABLE_ARGS),
    )


class IdempotencyKey(IdempotencyKeyMixin, MessageBase):
    # Added (0008): SHA-256 hex of the SendMessage request the key was first used with; a reuse
    # with another request is refused (REQUEST_ID_REUSED). NULL: not recorded (older keys, other
    # operations).
    request_hash: Mapped[str | None] = mapped_column(sa.String(64))



class AppliedCallback(AppliedCallbackMixin, MessageBase):
    pass


metadata = MessageBase.metadata


MEDIA_KINDS = ("image", "voice", "video", "file")


class MediaObject(MessageBase):
    """A media file of a tenant (MediaService); its bytes are in the object store at storage_key.

    On the message database, beside the messages that name it, so that the tenant's shard holds
    both. last_used_at moves when a message or template names the media: the retention sweep of
    `wework-admin maintain` removes media unused for media.retention_days.
    """

    __tablename__ = "media"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    kind: Mapped[str] = mapped_column(enum_type("media_kind", *MEDIA_KINDS), nullable=False)
    file_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(sa.String(127), nullable=False)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    storage_key: Mapped[str] = mapped_column(sa.String(512), nullable=False)
    source: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        # Dedupe: one stored copy of the same bytes per tenant and kind.
        index("media", "uk_tenant_sha256_kind", "tenant_id", "sha256", "kind"),
        # ListMedia, newest first (ids are UUIDv7: creation order).
        index("media", "idx_tenant_id", "tenant_id", "id"),
        # The retention sweep.
        index("media", "idx_last_used", "last_used_at"),
        dict(MYSQL_TABLE_ARGS),
    )


class MediaUpload(MessageBase):
    """An upload in progress: its bytes reserved against the tenant's quota and its object's key
    recorded, committed before the object is written. The upload's last transaction adds the
    media row and deletes this one; a row left behind belongs to an upload that died, and the
    media sweep deletes its object and the row (docs/media.md, "Lifecycle")."""

    __tablename__ = "media_uploads"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)  # the media id it becomes
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    storage_key: Mapped[str] = mapped_column(sa.String(512), nullable=False)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        # The quota: the tenant's reserved bytes.
        index("media_uploads", "idx_tenant", "tenant_id"),
        # The sweep of abandoned uploads.
        index("media_uploads", "idx_started", "started_at"),
        dict(MYSQL_TABLE_ARGS),
    )


class MediaQuotaLock(MessageBase):
    """One row per tenant with media, locked (upsert) by each quota reservation: the tenant's
    reservations run one at a time, so two uploads cannot both find room for themselves."""

    __tablename__ = "media_quota_locks"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    reserved_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    __table_args__ = (dict(MYSQL_TABLE_ARGS),)
