"""Initial schema of the user database: tenants, users, roles, user_roles, api_keys, idempotency_keys.

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
    op.create_table('tenants',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_code', sa.String(length=50), nullable=False),
    sa.Column('tenant_name', sa.String(length=100), nullable=False),
    sa.Column('contact_person', sa.String(length=50), nullable=True),
    sa.Column('contact_phone', sa.String(length=512), nullable=True),
    sa.Column('contact_email', sa.String(length=512), nullable=True),
    sa.Column('max_accounts', sa.Integer(), server_default=sa.text('(10)'), nullable=False),
    sa.Column('max_daily_messages', sa.Integer(), server_default=sa.text('(10000)'), nullable=False),
    sa.Column('webhook_url', sa.String(length=500), nullable=True),
    sa.Column('config', sa.JSON(), nullable=True),
    sa.Column('status', sa.Enum('active', 'suspended', 'deleted', name='tenant_status', create_constraint=True), server_default=sa.text("'active'"), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('updated_at', DATETIME6, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_tenants_created_at', 'tenants', ['created_at'], unique=False)
    op.create_index('idx_tenants_status', 'tenants', ['status'], unique=False)
    op.create_index('uk_tenants_tenant_code', 'tenants', ['tenant_code'], unique=True)
    op.create_table('roles',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('role_code', sa.String(length=50), nullable=False),
    sa.Column('role_name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('permissions', sa.JSON(), nullable=False),
    sa.Column('is_system', sa.Boolean(), server_default=sa.text('0'), nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('1'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('updated_at', DATETIME6, nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_roles_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roles')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_roles_is_active', 'roles', ['is_active'], unique=False)
    op.create_index('idx_roles_tenant_id', 'roles', ['tenant_id'], unique=False)
    op.create_index('uk_roles_tenant_role_code', 'roles', ['tenant_id', 'role_code'], unique=True)
    op.create_table('users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('username', sa.String(length=50), nullable=False),
    sa.Column('email', sa.String(length=512), nullable=False),
    sa.Column('email_hash', sa.CHAR(length=64), nullable=False),
    sa.Column('phone', sa.String(length=512), nullable=True),
    sa.Column('phone_hash', sa.CHAR(length=64), nullable=True),
    sa.Column('real_name', sa.String(length=50), nullable=True),
    sa.Column('avatar_url', sa.String(length=500), nullable=True),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('status', sa.Enum('active', 'inactive', 'locked', 'deleted', name='user_status', create_constraint=True), server_default=sa.text("'active'"), nullable=False),
    sa.Column('last_login_time', DATETIME6, nullable=True),
    sa.Column('last_login_ip', sa.String(length=45), nullable=True),
    sa.Column('failed_login_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('locked_until', DATETIME6, nullable=True),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('updated_at', DATETIME6, nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_users_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_users_active_users', 'users', ['status', 'last_login_time'], unique=False)
    op.create_index('idx_users_email_hash', 'users', ['email_hash'], unique=False)
    op.create_index('idx_users_last_login', 'users', ['last_login_time'], unique=False)
    op.create_index('idx_users_status', 'users', ['status'], unique=False)
    op.create_index('idx_users_tenant_id', 'users', ['tenant_id'], unique=False)
    op.create_index('idx_users_tenant_status_login', 'users', ['tenant_id', 'status', 'last_login_time'], unique=False)
    op.create_index('uk_users_tenant_email_hash', 'users', ['tenant_id', 'email_hash'], unique=True)
    op.create_index('uk_users_tenant_username', 'users', ['tenant_id', 'username'], unique=True)
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('role_id', sa.String(length=36), nullable=False),
    sa.Column('display_name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.CHAR(length=64), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_at', DATETIME6, nullable=False),
    sa.Column('revoked_at', DATETIME6, nullable=True),
    sa.Column('expires_at', DATETIME6, nullable=True),
    sa.Column('last_used_at', DATETIME6, nullable=True),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_api_keys_role_id_roles')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_keys_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_api_keys_role_id', 'api_keys', ['role_id'], unique=False)
    op.create_index('idx_api_keys_tenant_created', 'api_keys', ['tenant_id', 'created_at'], unique=False)
    op.create_table('user_roles',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('role_id', sa.String(length=36), nullable=False),
    sa.Column('assigned_by', sa.String(length=36), nullable=False),
    sa.Column('assigned_at', DATETIME6, nullable=False),
    sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_user_roles_role_id_roles')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_roles_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_roles')),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci',
    mysql_engine='InnoDB'
    )
    op.create_index('idx_user_roles_assigned_at', 'user_roles', ['assigned_at'], unique=False)
    op.create_index('idx_user_roles_role_id', 'user_roles', ['role_id'], unique=False)
    op.create_index('idx_user_roles_tenant_role', 'user_roles', ['tenant_id', 'role_id'], unique=False)
    op.create_index('idx_user_roles_user_id', 'user_roles', ['user_id'], unique=False)
    op.create_index('uk_user_roles_user_role', 'user_roles', ['user_id', 'role_id'], unique=True)


def downgrade() -> None:
    op.drop_table('user_roles')
    op.drop_table('api_keys')
    op.drop_table('users')
    op.drop_table('roles')
    op.drop_table('tenants')
    op.drop_table('idempotency_keys')
