"""idempotency_keys.request_hash: what a SendMessage request_id was first used for.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

SendMessage stores the SHA-256 of its request (wework.domain.messages.request_fingerprint) with
the request_id, in the group commit's same multi-row INSERT. A later call with the same
request_id and another request is refused (REQUEST_ID_REUSED) instead of answering the first
message. Keys written before have NULL: they keep answering the first message.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("request_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("idempotency_keys", "request_hash")
