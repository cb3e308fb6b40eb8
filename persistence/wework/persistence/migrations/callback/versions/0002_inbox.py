"""Callback inbox: dedupe and processing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28

- callback_events.dedupe_key: the provider's event id ("ev:...") or a hash of guid, notify_type
  and body ("h:..."); the effect ledgers of the account and message databases use it too.
- callback_events.next_attempt_time: a failed attempt waits until then (retry backoff).
- callback_events.claimed_by / claimed_until: the processor holding a `processing` row and its
  lease; an expired lease is re-queued as `received` (the effect ledger prevents a second effect).
- callback_dedupe: one row per distinct callback by dedupe_key (a partitioned table cannot
  carry that unique key itself, MySQL error 1503).
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
    with op.batch_alter_table("callback_events") as t:
        t.add_column(sa.Column("dedupe_key", sa.String(128), nullable=True))
        t.add_column(sa.Column("next_attempt_time", DATETIME6, nullable=True))
        t.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
        t.add_column(sa.Column("claimed_until", DATETIME6, nullable=True))
    op.create_index("idx_callback_events_dedupe_key", "callback_events", ["dedupe_key"])
    op.create_index("idx_callback_events_claim_lease", "callback_events", ["status", "claimed_until"])
    op.create_table(
        "callback_dedupe",
        sa.Column("dedupe_key", sa.String(128), nullable=False),
        sa.Column("callback_event_id", sa.String(36), nullable=False),
        sa.Column("received_time", DATETIME6, nullable=False),
        sa.PrimaryKeyConstraint("dedupe_key", name=op.f("pk_callback_dedupe")),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("idx_callback_dedupe_received_time", "callback_dedupe", ["received_time"])


def downgrade() -> None:
    op.drop_index("idx_callback_dedupe_received_time", table_name="callback_dedupe")
    op.drop_table("callback_dedupe")
    op.drop_index("idx_callback_events_claim_lease", table_name="callback_events")
    op.drop_index("idx_callback_events_dedupe_key", table_name="callback_events")
    with op.batch_alter_table("callback_events") as t:
        for c in ("claimed_until", "claimed_by", "next_attempt_time", "dedupe_key"):
            t.drop_column(c)
