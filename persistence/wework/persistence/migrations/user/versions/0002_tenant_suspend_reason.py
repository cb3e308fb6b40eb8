"""tenants.suspend_reason: why SuspendTenant suspended a tenant (shown in GetTenant).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("suspend_reason", sa.String(500), nullable=True))


def downgrade() -> None:
    op.drop_column("tenants", "suspend_reason")
