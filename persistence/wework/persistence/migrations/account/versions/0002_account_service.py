"""AccountService: per-tenant change sequence, history seq, QR and recovery columns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

- account_event_sequences(tenant_id, last_seq): locked FOR UPDATE by every status-changing
  transaction of the tenant. It numbers the tenant's history rows without gaps and in commit
  order (the WatchAccounts cursor), and serializes CreateAccount's quota check.
- account_status_history.seq + (tenant_id, seq) and (account_id, seq) indexes.
- wework_accounts: qr_payload, qr_expire_time, recovery_attempts, next_recovery_at, and the
  monitor's (status, next_recovery_at) index.
- conversations: (account_id, last_msg_time) for ListConversations.
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


def upgrade() -> None:
    op.create_table(
        "account_event_sequences",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_account_event_sequences")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    op.add_column("account_status_history",
                  sa.Column("seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False))
    op.create_index("idx_account_status_history_tenant_seq", "account_status_history", ["tenant_id", "seq"],
                    unique=False)
    op.create_index("idx_account_status_history_account_seq", "account_status_history", ["account_id", "seq"],
                    unique=False)
    op.add_column("wework_accounts", sa.Column("qr_payload", sa.Text(), nullable=True))
    op.add_column("wework_accounts", sa.Column("qr_expire_time", DATETIME6, nullable=True))
    op.add_column("wework_accounts",
                  sa.Column("recovery_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column("wework_accounts", sa.Column("next_recovery_at", DATETIME6, nullable=True))
    op.create_index("idx_wework_accounts_recovery_due", "wework_accounts", ["status", "next_recovery_at"],
                    unique=False)
    op.create_index("idx_conversations_account_last_msg", "conversations", ["account_id", "last_msg_time"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("idx_conversations_account_last_msg", table_name="conversations")
    op.drop_index("idx_wework_accounts_recovery_due", table_name="wework_accounts")
    with op.batch_alter_table("wework_accounts") as batch:
        batch.drop_column("next_recovery_at")
        batch.drop_column("recovery_attempts")
        batch.drop_column("qr_expire_time")
        batch.drop_column("qr_payload")
    op.drop_index("idx_account_status_history_account_seq", table_name="account_status_history")
    op.drop_index("idx_account_status_history_tenant_seq", table_name="account_status_history")
    with op.batch_alter_table("account_status_history") as batch:
        batch.drop_column("seq")
    op.drop_table("account_event_sequences")
