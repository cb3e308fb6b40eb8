"""What StartBatchTask wrote: batch_send_tasks.materialization_id and materialized_count.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

A large batch is written by several connections at once, each an XA branch that is prepared
before Start's own transaction commits (wework.persistence.xa, docs/decisions/0020). Start's
transaction records its attempt in materialization_id: that commit is the decision, so a branch
left prepared by a crash is committed if the task names its attempt and rolled back otherwise.
materialized_count is how many messages Start wrote: a task is not finished while fewer are
visible (a branch committed after Start's transaction).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("batch_send_tasks", sa.Column("materialization_id", sa.String(36), nullable=True))
    op.add_column("batch_send_tasks", sa.Column("materialized_count", sa.Integer, nullable=False,
                                                server_default=sa.text("0")))


def downgrade() -> None:
    op.drop_column("batch_send_tasks", "materialized_count")
    op.drop_column("batch_send_tasks", "materialization_id")
