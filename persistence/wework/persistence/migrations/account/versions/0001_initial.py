"""Initial schema of the account database: wework_accounts, account_status_history, conversations, idempotency_keys.

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
    op.create_table('account_status_history',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('old_status', sa.String(length=20), nullable=True),
    sa.Column('new_status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('extra_data', sa.JSON(), nullable=True),
    sa.Column('operator_id', sa.String(length=36), nullable=True),
    sa.Column('operator_type', sa.Enum('user', 'system', 'auto', name='operator_type', create_constraint=True), server_default=sa.text("'system'"), nullable=False),
    sa.PrimaryKeyConstraint('id', 'created_at', name=op.f('pk_account_status_history')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_account_status_history_account_id', 'account_status_history', ['account_id'], unique=False)
    op.create_index('idx_account_status_history_account_time', 'account_status_history', ['account_id', 'created_at'], unique=False)
    op.create_index('idx_account_status_history_created_at', 'account_status_history', ['created_at'], unique=False)
    op.create_index('idx_account_status_history_new_status', 'account_status_history', ['new_status'], unique=False)
    op.create_table('conversations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('conversation_id', sa.String(length=100), nullable=False),
    sa.Column('conversation_name', sa.String(length=200), nullable=True),
    sa.Column('conversation_type', sa.Enum('private', 'group', name='conversation_type', create_constraint=True), nullable=False),
    sa.Column('avatar_url', sa.String(length=500), nullable=True),
    sa.Column('member_count', sa.Integer(), server_default=sa.text('0'), nullable=True),
    sa.Column('last_msg_time', DATETIME6, nullable=True),
    sa.Column('last_msg_content', sa.Text(), nullable=True),
    sa.Column('unread_count', sa.Integer(), server_default=sa.text('0'), nullable=True),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('1'), nullable=False),
    sa.Column('is_pinned', sa.Boolean(), server_default=sa.text('0'), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=True),
    sa.Column('extra_info', sa.JSON(), nullable=True),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('updated_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversations')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_conversations_account_id', 'conversations', ['account_id'], unique=False)
    op.create_index('idx_conversations_conversation_type', 'conversations', ['conversation_type'], unique=False)
    op.create_index('idx_conversations_is_active', 'conversations', ['is_active'], unique=False)
    op.create_index('idx_conversations_last_msg_time', 'conversations', ['last_msg_time'], unique=False)
    op.create_index('idx_conversations_updated_at', 'conversations', ['updated_at'], unique=False)
    op.create_index('uk_conversations_account_conversation', 'conversations', ['account_id', 'conversation_id'], unique=True)
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
    op.create_table('wework_accounts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=True),
    sa.Column('account_name', sa.String(length=100), nullable=False),
    sa.Column('phone', sa.String(length=512), nullable=True),
    sa.Column('phone_hash', sa.CHAR(length=64), nullable=True),
    sa.Column('email', sa.String(length=512), nullable=True),
    sa.Column('email_hash', sa.CHAR(length=64), nullable=True),
    sa.Column('guid', sa.String(length=100), nullable=True),
    sa.Column('qr_code_url', sa.String(length=500), nullable=True),
    sa.Column('login_token', sa.String(length=512), nullable=True),
    sa.Column('status', sa.Enum('created', 'logging_in', 'waiting_scan', 'waiting_confirm', 'need_verify', 'online', 'offline', 'error', 'recovering', name='account_status', create_constraint=True), server_default=sa.text("'created'"), nullable=False),
    sa.Column('config', sa.JSON(), nullable=True),
    sa.Column('user_info', sa.JSON(), nullable=True),
    sa.Column('last_login_time', DATETIME6, nullable=True),
    sa.Column('last_heartbeat_time', DATETIME6, nullable=True),
    sa.Column('login_retry_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('updated_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wework_accounts')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_wework_accounts_account_name_search', 'wework_accounts', ['tenant_id', 'account_name'], unique=False, mysql_length={'account_name': 20})
    op.create_index('idx_wework_accounts_created_at', 'wework_accounts', ['created_at'], unique=False)
    op.create_index('idx_wework_accounts_guid', 'wework_accounts', ['guid'], unique=False)
    op.create_index('idx_wework_accounts_last_heartbeat', 'wework_accounts', ['last_heartbeat_time'], unique=False)
    op.create_index('idx_wework_accounts_online_heartbeat', 'wework_accounts', ['status', 'last_heartbeat_time'], unique=False)
    op.create_index('idx_wework_accounts_phone_hash', 'wework_accounts', ['phone_hash'], unique=False)
    op.create_index('idx_wework_accounts_status', 'wework_accounts', ['status'], unique=False)
    op.create_index('idx_wework_accounts_tenant_id', 'wework_accounts', ['tenant_id'], unique=False)
    op.create_index('idx_wework_accounts_tenant_status_heartbeat', 'wework_accounts', ['tenant_id', 'status', 'last_heartbeat_time'], unique=False)
    op.create_index('idx_wework_accounts_user_id', 'wework_accounts', ['user_id'], unique=False)
    op.create_index('uk_wework_accounts_tenant_account_name', 'wework_accounts', ['tenant_id', 'account_name'], unique=True)
    _partition('account_status_history', 'created_at', 'year')


def downgrade() -> None:
    op.drop_table('wework_accounts')
    op.drop_table('idempotency_keys')
    op.drop_table('conversations')
    op.drop_table('account_status_history')
