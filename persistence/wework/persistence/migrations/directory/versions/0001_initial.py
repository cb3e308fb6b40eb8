"""Initial schema of the directory database: tenant_codes, account_guids, idempotency_keys (unsharded).

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Tables are created explicitly so that this revision never changes when the models do.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# UTC instants (the models' UtcDateTime): DATETIME(6) on MySQL/MariaDB.
DATETIME6 = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table('account_guids',
    sa.Column('guid', sa.String(length=100), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('guid', name=op.f('pk_account_guids')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_account_guids_tenant_account', 'account_guids', ['tenant_id', 'account_id'], unique=False)
    op.create_table('idempotency_keys',
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('resource_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'operation', 'request_id', name=op.f('pk_idempotency_keys')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_idempotency_keys_created_at', 'idempotency_keys', ['created_at'], unique=False)
    op.create_table('tenant_codes',
    sa.Column('tenant_code', sa.String(length=50), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('tenant_code', name=op.f('pk_tenant_codes')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('uk_tenant_codes_tenant_id', 'tenant_codes', ['tenant_id'], unique=True)


def downgrade() -> None:
    op.drop_table('tenant_codes')
    op.drop_table('idempotency_keys')
    op.drop_table('account_guids')
