"""Runtime shard map versions, bucket moves and leases (directory database).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATETIME6 = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "shard_map_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layout", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("created_at", DATETIME6, nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_shard_map_versions")),
        **TABLE,
    )
    op.create_table(
        "bucket_moves",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("buckets", sa.String(length=255), nullable=False),
        sa.Column("source_shards", sa.String(length=255), nullable=False),
        sa.Column("target_shard", sa.String(length=32), nullable=False),
        sa.Column("target_dsn", sa.String(length=1024), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("created_at", DATETIME6, nullable=False),
        sa.Column("updated_at", DATETIME6, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bucket_moves")),
        **TABLE,
    )
    op.create_index("idx_bucket_moves_phase", "bucket_moves", ["phase"], unique=False)
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", DATETIME6, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
        **TABLE,
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index("idx_bucket_moves_phase", table_name="bucket_moves")
    op.drop_table("bucket_moves")
    op.drop_table("shard_map_versions")
