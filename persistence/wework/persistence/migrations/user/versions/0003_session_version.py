"""users.session_version: ends a user's earlier sessions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

Access tokens carry the user's session_version at login ("sv"); every authenticated call
compares it with this column (through the credential cache). A password change, DisableUser
and a role assignment move it on, so the tokens issued before stop working at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("session_version", sa.Integer, nullable=False,
                                     server_default=sa.text("0")))


def downgrade() -> None:
    op.drop_column("users", "session_version")
