"""callback database, tenant webhooks: endpoints, deliveries (the outbox) and their attempts.

Same MetaData as models/callback.py (one callback database per shard), sharded by tenant.
Not partitioned: deliveries are few next to callback_events and are pruned by age.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..ids import new_id
from .base import (
    CIPHERTEXT_LENGTH,
    MYSQL_TABLE_ARGS,
    BigIntPK,
    LongText,
    UtcDateTime,
    VersionedMixin,
    enum_type,
    index,
    utcnow,
)
from .callback import CallbackBase

ENDPOINT_STATUSES = ("enabled", "disabled", "disabled_failing")
DELIVERY_STATUSES = ("pending", "succeeded", "failed")


class WebhookEndpoint(VersionedMixin, CallbackBase):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    url: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    description: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="", server_default="")
    # Event types sent; [] sends every type.
    event_types: Mapped[list[str]] = mapped_column(sa.JSON, nullable=False, default=list)
    status: Mapped[str] = mapped_column(enum_type("webhook_endpoint_status", *ENDPOINT_STATUSES), nullable=False,
                                        default="enabled", server_default=sa.text("'enabled'"))
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(500))
    disabled_time: Mapped[datetime | None] = mapped_column(UtcDateTime())
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # AES-GCM ciphertexts (FieldCipher, context bound to the endpoint id).
    secret: Mapped[str] = mapped_column(sa.String(CIPHERTEXT_LENGTH), nullable=False)
    previous_secret: Mapped[str | None] = mapped_column(sa.String(CIPHERTEXT_LENGTH))
    previous_secret_expires: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # AIP-155 request id of the Create; unique per tenant (NULLs do not collide).
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        index("webhook_endpoints", "idx_tenant", "tenant_id", "id"),
        index("webhook_endpoints", "uk_tenant_request", "tenant_id", "request_id"),
        MYSQL_TABLE_ARGS,
    )


class WebhookDelivery(CallbackBase):
    """One event for one endpoint; the row is also the queue entry (status, next_attempt_at,
    claimed_by/claimed_until lease)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    endpoint_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    # The webhook-id header, derived from the source event: unique per endpoint, so a second
    # publish of the same event enqueues nothing.
    event_id: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    event_type: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    # The exact JSON body posted (kept as text so every attempt signs the same bytes).
    payload: Mapped[str] = mapped_column(LongText, nullable=False)
    status: Mapped[str] = mapped_column(enum_type("webhook_delivery_status", *DELIVERY_STATUSES), nullable=False,
                                        default="pending", server_default=sa.text("'pending'"))
    attempt_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default=sa.text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    claimed_by: Mapped[str | None] = mapped_column(sa.String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        index("webhook_deliveries", "uk_endpoint_event", "endpoint_id", "event_id"),
        # The claim scan: due pending rows in time order.
        index("webhook_deliveries", "idx_claim", "status", "next_attempt_at"),
        # ListWebhookDeliveries: an endpoint's deliveries newest first.
        index("webhook_deliveries", "idx_endpoint_id", "endpoint_id", "id"),
        index("webhook_deliveries", "idx_created_at", "created_at"),
        MYSQL_TABLE_ARGS,
    )


class WebhookAttempt(CallbackBase):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    attempt_number: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    attempt_time: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    # 0 when there was no HTTP answer (timeout, connection refused, refused target).
    response_status: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(sa.String(500))
    duration_ms: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)

    __table_args__ = (
        index("webhook_attempts", "idx_delivery", "delivery_id", "attempt_number"),
        MYSQL_TABLE_ARGS,
    )
