"""Drop six messages indexes that no query needs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Every row written to `messages` updates each of its B-trees, and batch materialization and the
accept path write many rows: each secondary index cost about 2.5 us of server CPU per row.
Three of the design's indexes are left prefixes of others (idx_status of idx_claim,
idx_batch_id of idx_batch_status, idx_conversation_id of idx_conversation_time), and three
serve no query: every read of created_at, send_time or scheduled_time also filters on the
tenant, account or status and uses the composite index that leads with it. See
docs/decisions/0019-messages-indexes.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROPPED = {
    "idx_messages_status": ["status"],
    "idx_messages_batch_id": ["batch_id"],
    "idx_messages_conversation_id": ["conversation_id"],
    "idx_messages_created_at": ["created_at"],
    "idx_messages_send_time": ["send_time"],
    "idx_messages_scheduled_time": ["scheduled_time"],
}


def upgrade() -> None:
    for name in DROPPED:
        op.drop_index(name, table_name="messages")


def downgrade() -> None:
    for name, columns in DROPPED.items():
        op.create_index(name, "messages", columns, unique=False)
