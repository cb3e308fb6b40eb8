"""Uploads in progress (media_uploads) and the per-tenant quota lock (media_quota_locks).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

An upload reserves its declared size in media_uploads, under the lock of its tenant's
media_quota_locks row, before its object is written: concurrent uploads cannot together pass
media.tenant_quota_bytes, and a row left by an upload that died names the object the media
sweep deletes (docs/decisions/0033, "Amended").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATETIME6 = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "media_uploads",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("started_at", DATETIME6, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_uploads")),
        **TABLE,
    )
    op.create_index("idx_media_uploads_tenant", "media_uploads", ["tenant_id"])
    op.create_index("idx_media_uploads_started", "media_uploads", ["started_at"])
    op.create_table(
        "media_quota_locks",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("reserved_at", DATETIME6, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_media_quota_locks")),
        **TABLE,
    )


def downgrade() -> None:
    op.drop_table("media_quota_locks")
    op.drop_table("media_uploads")
