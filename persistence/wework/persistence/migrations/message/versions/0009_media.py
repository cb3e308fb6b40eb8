"""Media of the tenants (MediaService): media.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

One row per stored file; the bytes are in the object store under storage_key (docs/media.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATETIME6 = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
KINDS = ("image", "voice", "video", "file")


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.Enum(*KINDS, name="media_kind", create_constraint=True), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(127), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", DATETIME6, nullable=False),
        sa.Column("last_used_at", DATETIME6, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media")),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("uk_media_tenant_sha256_kind", "media", ["tenant_id", "sha256", "kind"], unique=True)
    op.create_index("idx_media_tenant_id", "media", ["tenant_id", "id"])
    op.create_index("idx_media_last_used", "media", ["last_used_at"])


def downgrade() -> None:
    op.drop_table("media")
