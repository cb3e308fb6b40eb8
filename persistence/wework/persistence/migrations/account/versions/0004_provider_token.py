"""The account's puppet-service token: wework_accounts.provider_token (ciphertext).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Write-only in the API (AccountService: CreateAccount/UpdateAccount provider_token); the
puppet_service provider reads it to authorize the account's calls (docs/puppet-service.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("wework_accounts", sa.Column("provider_token", sa.String(512), nullable=True))


def downgrade() -> None:
    op.drop_column("wework_accounts", "provider_token")
