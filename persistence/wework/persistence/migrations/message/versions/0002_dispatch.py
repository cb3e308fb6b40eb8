"""Dispatch queue columns and the batch import staging table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

- messages.next_attempt_at: when a pending message is due again (retry backoff, pacing
  deferral, hold re-check); NULL means "due at scheduled_time, or now".
- messages.hold_reason / held_since: why a message waits (account not online) and since when;
  the dispatcher fails it after message.hold_timeout_seconds.
- messages.claimed_by / claimed_until: the worker holding a `sending` message and its lease;
  an expired lease is re-queued (the provider dedupes on the message id).
- messages.paused: 1 while the message's batch task is paused; the claim query skips it.
- idx_messages_claim (status, paused, priority, created_at): the claim scan in priority, then age order.
- idx_messages_claim_lease (status, claimed_until): the expired-lease sweep.
- batch_import_targets: recipients streamed by ImportBatchTargets before StartBatchTask.
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
    with op.batch_alter_table("messages") as t:
        t.add_column(sa.Column("next_attempt_at", DATETIME6, nullable=True))
        t.add_column(sa.Column("hold_reason", sa.String(200), nullable=True))
        t.add_column(sa.Column("held_since", DATETIME6, nullable=True))
        t.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
        t.add_column(sa.Column("claimed_until", DATETIME6, nullable=True))
        t.add_column(sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.text("0")))
    op.create_index("idx_messages_claim", "messages", ["status", "paused", "priority", "created_at"])
    op.create_index("idx_messages_claim_lease", "messages", ["status", "claimed_until"])
    op.create_table(
        "batch_import_targets",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.String(100), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=True),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("idx_batch_import_targets_task_id", "batch_import_targets", ["task_id", "id"])


def downgrade() -> None:
    op.drop_index("idx_batch_import_targets_task_id", table_name="batch_import_targets")
    op.drop_table("batch_import_targets")
    op.drop_index("idx_messages_claim_lease", table_name="messages")
    op.drop_index("idx_messages_claim", table_name="messages")
    with op.batch_alter_table("messages") as t:
        for c in ("paused", "claimed_until", "claimed_by", "held_since", "hold_reason", "next_attempt_at"):
            t.drop_column(c)
