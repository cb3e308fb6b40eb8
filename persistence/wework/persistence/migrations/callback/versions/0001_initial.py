"""Initial schema of the callback database: callback_events.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Tables are created explicitly so that this revision never changes when the models do.
On MySQL/MariaDB the time-partitioned tables are then partitioned (RANGE COLUMNS, from the
previous period to one year ahead, plus p_future); see wework.persistence.partitions.
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


def _partition(table: str, column: str, interval: str) -> None:
    if op.get_context().dialect.name not in ("mysql", "mariadb"):
        return  # SQLite (embedded mode) has no partitions
    from wework.persistence.partitions import partition_table_sql

    op.execute(partition_table_sql(table, column, interval))  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table('callback_events',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('received_time', DATETIME6, nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=True),
    sa.Column('guid', sa.String(length=100), nullable=False),
    sa.Column('notify_type', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=50), nullable=False),
    sa.Column('raw_data', sa.Text().with_variant(mysql.LONGTEXT(), 'mariadb').with_variant(mysql.LONGTEXT(), 'mysql'), nullable=False),
    sa.Column('parsed_data', sa.JSON(), nullable=True),
    sa.Column('status', sa.Enum('received', 'processing', 'processed', 'failed', 'ignored', name='callback_status', create_constraint=True), server_default=sa.text("'received'"), nullable=False),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('retry_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('process_time', DATETIME6, nullable=True),
    sa.Column('source_ip', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', 'received_time', name=op.f('pk_callback_events')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_callback_events_event_type', 'callback_events', ['event_type'], unique=False)
    op.create_index('idx_callback_events_guid', 'callback_events', ['guid'], unique=False)
    op.create_index('idx_callback_events_notify_type', 'callback_events', ['notify_type'], unique=False)
    op.create_index('idx_callback_events_process_time', 'callback_events', ['process_time'], unique=False)
    op.create_index('idx_callback_events_received_time', 'callback_events', ['received_time'], unique=False)
    op.create_index('idx_callback_events_status', 'callback_events', ['status'], unique=False)
    op.create_index('idx_callback_events_status_received', 'callback_events', ['status', 'received_time'], unique=False)
    op.create_index('idx_callback_events_tenant_received', 'callback_events', ['tenant_id', 'received_time'], unique=False)
    _partition('callback_events', 'received_time', 'month')


def downgrade() -> None:
    op.drop_table('callback_events')
