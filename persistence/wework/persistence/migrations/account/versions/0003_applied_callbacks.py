"""Effect ledger of provider callbacks: applied_callbacks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

The callback processor inserts the callback's dedupe key here in the same transaction as the
callback's effect; a second processing of the same callback finds it and changes nothing.
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


def upgrade() -> None:
    op.create_table(
        "applied_callbacks",
        sa.Column("effect_key", sa.String(128), nullable=False),
        sa.Column("applied_at", DATETIME6, nullable=False),
        sa.PrimaryKeyConstraint("effect_key", name=op.f("pk_applied_callbacks")),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("idx_applied_callbacks_applied_at", "applied_callbacks", ["applied_at"])


def downgrade() -> None:
    op.drop_index("idx_applied_callbacks_applied_at", table_name="applied_callbacks")
    op.drop_table("applied_callbacks")
