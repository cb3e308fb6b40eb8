"""callback database: callback_events (CallbackService), partitioned by month on MySQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..ids import new_id
from .base import MYSQL_TABLE_ARGS, NAMING_CONVENTION, LongText, UtcDateTime, enum_type, index, utcnow

CALLBACK_STATUSES = ("received", "processing", "processed", "failed", "ignored")


class CallbackBase(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class CallbackEvent(CallbackBase):
    """A provider callback as received (raw body kept for replay) and its processing state."""

    __tablename__ = "callback_events"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    # In the primary key because the table is partitioned by it (MySQL error 1503).
    received_time: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True, default=utcnow)
    # Added to the design: the tenant resolved from the directory by guid, NULL while unknown;
    # it decides the shard and keeps replays and listings tenant-scoped.
    tenant_id: Mapped[str | None] = mapped_column(sa.String(36))
    guid: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    notify_type: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    event_type: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    raw_data: Mapped[str] = mapped_column(LongText, nullable=False)
    parsed_data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(enum_type("callback_status", *CALLBACK_STATUSES), nullable=False,
                                        default="received", server_default=sa.text("'received'"))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    retry_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default=sa.text("0"))
    process_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    source_ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.Text)
    # Added (0002): the inbox. dedupe_key is the provider's event id ("ev:...") or a hash of
    # guid, notify_type and body ("h:..."); also the key of the effect ledgers downstream.
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(128))
    # A failed attempt waits until next_attempt_time (backoff); NULL means due at once.
    next_attempt_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # The processor holding a `processing` row and its lease (an expired lease is re-queued).
    claimed_by: Mapped[str | None] = mapped_column(sa.String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Added (0004): the credentials taken out of raw_data at ingress (wework.domain.redaction),
    # AES-GCM sealed with the field cipher; only the processor opens them, to apply the callback.
    sealed_secrets: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        index("callback_events", "idx_guid", "guid"),
        index("callback_events", "idx_notify_type", "notify_type"),
        index("callback_events", "idx_event_type", "event_type"),
        index("callback_events", "idx_status", "status"),
        index("callback_events", "idx_received_time", "received_time"),
        index("callback_events", "idx_process_time", "process_time"),
        # Added: workers claim by status in arrival order; listings are per tenant in time order.
        index("callback_events", "idx_status_received", "status", "received_time"),
        index("callback_events", "idx_tenant_received", "tenant_id", "received_time"),
        index("callback_events", "idx_dedupe_key", "dedupe_key"),
        index("callback_events", "idx_claim_lease", "status", "claimed_until"),
        {**MYSQL_TABLE_ARGS, "info": {"partition": ("received_time", "month")}},
    )


class CallbackDedupe(CallbackBase):
    """Added (0002): one row per distinct callback, so that a duplicate is found by primary key.
    A partitioned table cannot have a unique key without its partition column, so callback_events
    itself cannot say "this event_id was seen"; this small table can. Rows older than
    callback.dedupe_retention_days are purged by the processor."""

    __tablename__ = "callback_dedupe"

    dedupe_key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    callback_event_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    received_time: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __table_args__ = (
        index("callback_dedupe", "idx_received_time", "received_time"),
        dict(MYSQL_TABLE_ARGS),
    )


metadata = CallbackBase.metadata
