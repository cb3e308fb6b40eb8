"""Tenant webhooks: endpoints, deliveries (the outbox and its queue) and attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

- webhook_endpoints: a tenant's targets with event-type filters and the signing secret (and the
  previous one during a rotation), AES-GCM encrypted; status and why it was disabled.
- webhook_deliveries: one event for one endpoint; uk (endpoint_id, event_id) makes a second
  publish of the same source event a no-op. Claimed with a lease (claimed_by, claimed_until).
- webhook_attempts: every attempt with its HTTP status, error and duration.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATETIME6 = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LONGTEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("description", sa.String(500), server_default="", nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("status", sa.Enum("enabled", "disabled", "disabled_failing", name="webhook_endpoint_status",
                                    create_constraint=True), server_default=sa.text("'enabled'"), nullable=False),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        sa.Column("disabled_time", DATETIME6, nullable=True),
        sa.Column("failing_since", DATETIME6, nullable=True),
        sa.Column("secret", sa.String(512), nullable=False),
        sa.Column("previous_secret", sa.String(512), nullable=True),
        sa.Column("previous_secret_expires", DATETIME6, nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", DATETIME6, nullable=False),
        sa.Column("updated_at", DATETIME6, nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
        **TABLE,
    )
    op.create_index("idx_webhook_endpoints_tenant", "webhook_endpoints", ["tenant_id", "id"])
    op.create_index("uk_webhook_endpoints_tenant_request", "webhook_endpoints", ["tenant_id", "request_id"],
                    unique=True)
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("endpoint_id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", LONGTEXT, nullable=False),
        sa.Column("status", sa.Enum("pending", "succeeded", "failed", name="webhook_delivery_status",
                                    create_constraint=True), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", DATETIME6, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", DATETIME6, nullable=True),
        sa.Column("created_at", DATETIME6, nullable=False),
        sa.Column("updated_at", DATETIME6, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        **TABLE,
    )
    op.create_index("uk_webhook_deliveries_endpoint_event", "webhook_deliveries", ["endpoint_id", "event_id"],
                    unique=True)
    op.create_index("idx_webhook_deliveries_claim", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("idx_webhook_deliveries_endpoint_id", "webhook_deliveries", ["endpoint_id", "id"])
    op.create_index("idx_webhook_deliveries_created_at", "webhook_deliveries", ["created_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("attempt_number", sa.Integer(), nullable=False),
        sa.Column("attempt_time", DATETIME6, nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
        **TABLE,
    )
    op.create_index("idx_webhook_attempts_delivery", "webhook_attempts", ["delivery_id", "attempt_number"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
