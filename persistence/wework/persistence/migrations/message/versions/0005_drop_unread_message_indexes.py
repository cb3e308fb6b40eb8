"""Drop the five messages indexes that no query reads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

After 0004 `messages` still had nine secondary indexes, and every row written (an accepted
message, a batch recipient) and every status change moves entries in them. Five are read by
no statement the platform runs (checked against every query of the repositories, and by the
plans asserted in tests/integration/test_message_index_plans.py):

- idx_messages_scheduled_pending (status, scheduled_time): due scheduled messages are claimed
  through idx_messages_claim, whose due filter is coalesce(next_attempt_at, scheduled_time,
  created_at), which no index can serve.
- idx_messages_claim_lease (status, claimed_until): the expired-lease sweep reads the few
  `sending` rows (at most the claimed batches in flight) through idx_messages_claim.
- idx_messages_template_id, idx_messages_tenant_account, idx_messages_account_send_time: every
  read by template, account or send time also filters on the tenant and a time range, and
  uses idx_messages_tenant_time_status.

See docs/decisions/0019-messages-indexes.md. Each DROP INDEX is an in-place metadata change in
MariaDB; downgrade recreates them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROPPED = {
    "idx_messages_scheduled_pending": ["status", "scheduled_time"],
    "idx_messages_claim_lease": ["status", "claimed_until"],
    "idx_messages_template_id": ["template_id"],
    "idx_messages_tenant_account": ["tenant_id", "account_id"],
    "idx_messages_account_send_time": ["account_id", "send_time"],
}


def upgrade() -> None:
    for name in DROPPED:
        op.drop_index(name, table_name="messages")


def downgrade() -> None:
    for name, columns in DROPPED.items():
        op.create_index(name, "messages", columns, unique=False)
