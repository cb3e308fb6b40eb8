"""Initial schema of the message database: messages, message_templates, batch_send_tasks, message_statistics, idempotency_keys.

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
    op.create_table('batch_send_tasks',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('creator_id', sa.String(length=36), nullable=False),
    sa.Column('task_name', sa.String(length=100), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('template_id', sa.String(length=36), nullable=True),
    sa.Column('message_content', sa.JSON(), nullable=False),
    sa.Column('target_type', sa.Enum('manual', 'import', 'group', 'filter', name='target_type', create_constraint=True), nullable=False),
    sa.Column('target_config', sa.JSON(), nullable=False),
    sa.Column('send_strategy', sa.JSON(), nullable=True),
    sa.Column('status', sa.Enum('created', 'running', 'paused', 'completed', 'failed', 'cancelled', name='batch_status', create_constraint=True), server_default=sa.text("'created'"), nullable=False),
    sa.Column('total_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('sent_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('success_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('failed_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('progress_percent', sa.Numeric(precision=5, scale=2), server_default=sa.text('(0.00)'), nullable=False),
    sa.Column('start_time', DATETIME6, nullable=True),
    sa.Column('end_time', DATETIME6, nullable=True),
    sa.Column('estimated_duration', sa.Integer(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('updated_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_send_tasks')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_batch_send_tasks_account_id', 'batch_send_tasks', ['account_id'], unique=False)
    op.create_index('idx_batch_send_tasks_created_at', 'batch_send_tasks', ['created_at'], unique=False)
    op.create_index('idx_batch_send_tasks_creator_id', 'batch_send_tasks', ['creator_id'], unique=False)
    op.create_index('idx_batch_send_tasks_status', 'batch_send_tasks', ['status'], unique=False)
    op.create_index('idx_batch_send_tasks_tenant_id', 'batch_send_tasks', ['tenant_id'], unique=False)
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
    op.create_table('message_statistics',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('stat_date', sa.Date(), nullable=False),
    sa.Column('stat_hour', sa.SmallInteger().with_variant(mysql.TINYINT(), 'mariadb').with_variant(mysql.TINYINT(), 'mysql'), nullable=True),
    sa.Column('total_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('success_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('failed_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('avg_response_time', sa.Numeric(precision=10, scale=3), nullable=True),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('updated_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_statistics')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_message_statistics_stat_date', 'message_statistics', ['stat_date'], unique=False)
    op.create_index('idx_message_statistics_tenant_date', 'message_statistics', ['tenant_id', 'stat_date'], unique=False)
    op.create_index('uk_message_statistics_tenant_account_date_hour', 'message_statistics', ['tenant_id', 'account_id', 'stat_date', 'stat_hour'], unique=True)
    op.create_table('message_templates',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('creator_id', sa.String(length=36), nullable=False),
    sa.Column('template_name', sa.String(length=100), nullable=False),
    sa.Column('template_type', sa.String(length=50), nullable=False),
    sa.Column('category', sa.String(length=50), nullable=True),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('template_content', sa.JSON(), nullable=False),
    sa.Column('variables', sa.JSON(), nullable=True),
    sa.Column('preview_data', sa.JSON(), nullable=True),
    sa.Column('usage_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_used_time', DATETIME6, nullable=True),
    sa.Column('is_public', sa.Boolean(), server_default=sa.text('0'), nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('1'), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=True),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('updated_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_templates')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_message_templates_category', 'message_templates', ['category'], unique=False)
    op.create_index('idx_message_templates_created_at', 'message_templates', ['created_at'], unique=False)
    op.create_index('idx_message_templates_creator_id', 'message_templates', ['creator_id'], unique=False)
    op.create_index('idx_message_templates_is_active', 'message_templates', ['is_active'], unique=False)
    op.create_index('idx_message_templates_template_type', 'message_templates', ['template_type'], unique=False)
    op.create_index('idx_message_templates_tenant_id', 'message_templates', ['tenant_id'], unique=False)
    op.create_index('idx_message_templates_usage_count', 'message_templates', ['usage_count'], unique=False)
    op.create_index('uk_message_templates_tenant_template_name', 'message_templates', ['tenant_id', 'template_name'], unique=True)
    op.create_table('messages',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('conversation_id', sa.String(length=100), nullable=False),
    sa.Column('message_type', sa.Enum('text', 'image', 'file', 'link', 'miniprogram', 'at', name='message_type', create_constraint=True), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('template_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.Enum('pending', 'sending', 'sent', 'delivered', 'failed', 'cancelled', name='message_status', create_constraint=True), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('wework_msg_id', sa.String(length=100), nullable=True),
    sa.Column('send_time', DATETIME6, nullable=True),
    sa.Column('callback_time', DATETIME6, nullable=True),
    sa.Column('error_code', sa.String(length=50), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('retry_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('batch_id', sa.String(length=36), nullable=True),
    sa.Column('priority', sa.Integer(), server_default=sa.text('5'), nullable=False),
    sa.Column('scheduled_time', DATETIME6, nullable=True),
    sa.Column('updated_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('id', 'created_at', name=op.f('pk_messages')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_messages_account_send_time', 'messages', ['account_id', 'send_time'], unique=False)
    op.create_index('idx_messages_batch_id', 'messages', ['batch_id'], unique=False)
    op.create_index('idx_messages_batch_status', 'messages', ['batch_id', 'status'], unique=False)
    op.create_index('idx_messages_conversation_id', 'messages', ['conversation_id'], unique=False)
    op.create_index('idx_messages_conversation_time', 'messages', ['conversation_id', 'created_at'], unique=False)
    op.create_index('idx_messages_created_at', 'messages', ['created_at'], unique=False)
    op.create_index('idx_messages_scheduled_pending', 'messages', ['status', 'scheduled_time'], unique=False)
    op.create_index('idx_messages_scheduled_time', 'messages', ['scheduled_time'], unique=False)
    op.create_index('idx_messages_send_time', 'messages', ['send_time'], unique=False)
    op.create_index('idx_messages_status', 'messages', ['status'], unique=False)
    op.create_index('idx_messages_template_id', 'messages', ['template_id'], unique=False)
    op.create_index('idx_messages_tenant_account', 'messages', ['tenant_id', 'account_id'], unique=False)
    op.create_index('idx_messages_tenant_time_status', 'messages', ['tenant_id', 'created_at', 'status'], unique=False)
    _partition('messages', 'created_at', 'year')


def downgrade() -> None:
    op.drop_table('messages')
    op.drop_table('message_templates')
    op.drop_table('message_statistics')
    op.drop_table('idempotency_keys')
    op.drop_table('batch_send_tasks')
