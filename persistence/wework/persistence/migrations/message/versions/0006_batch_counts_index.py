"""A batch's counters read from one index: idx_messages_batch_counts replaces idx_messages_batch_status.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

A batch task's counters are recomputed from its messages whenever the task is read or watched
(every 0.5 s per WatchBatchTask stream) and by every dispatcher's sweep of running tasks (every
second): `GROUP BY status` with the count of messages that reached the provider (send_time
set), filtered on the tenant. idx_messages_batch_status (batch_id, status) held neither
tenant_id nor send_time, so each reading looked up every message row of the batch: about 200 ms
for a batch of 100,000 on MariaDB. (tenant_id, batch_id, status, send_time) answers the reading,
pause, resume, cancel and the batch report from the index alone. Its entries move when the
status moves, as before: send_time changes only together with the status.

See docs/decisions/0019-messages-indexes.md. Both are in-place index changes in MariaDB.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("idx_messages_batch_counts", "messages", ["tenant_id", "batch_id", "status", "send_time"],
                    unique=False)
    op.drop_index("idx_messages_batch_status", table_name="messages")


def downgrade() -> None:
    op.create_index("idx_messages_batch_status", "messages", ["batch_id", "status"], unique=False)
    op.drop_index("idx_messages_batch_counts", table_name="messages")
