"""directory database (unsharded): what must be unique or found without knowing the tenant."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .base import MYSQL_TABLE_ARGS, NAMING_CONVENTION, IdempotencyKeyMixin, UtcDateTime, index, utcnow


class DirectoryBase(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class TenantCode(DirectoryBase):
    """Global uniqueness of tenant codes, which per-shard unique keys cannot give."""

    __tablename__ = "tenant_codes"

    tenant_code: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        index("tenant_codes", "uk_tenant_id", "tenant_id"),
        dict(MYSQL_TABLE_ARGS),
    )


class AccountGuid(DirectoryBase):
    """guid -> (tenant, account): routes provider callbacks, which carry only the guid."""

    __tablename__ = "account_guids"

    guid: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    account_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    __table_args__ = (
        index("account_guids", "idx_tenant_account", "tenant_id", "account_id"),
        dict(MYSQL_TABLE_ARGS),
    )


class ShardMapVersion(DirectoryBase):
    """The runtime shard map, one row per published version (shardmap.py); the highest wins.

    `layout` is JSON: bucket_count, shards (name, buckets, dsn, replicas) and frozen_buckets.
    The DSNs are stored as given, credentials included: this database is as sensitive as the
    settings that hold them.
    """

    __tablename__ = "shard_map_versions"

    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    layout: Mapped[str] = mapped_column(sa.Text, nullable=False)
    reason: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    __table_args__ = (dict(MYSQL_TABLE_ARGS),)


class BucketMove(DirectoryBase):
    """One `wework-admin move-buckets` run: its phase and checkpoint, so that it can resume."""

    __tablename__ = "bucket_moves"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    buckets: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    source_shards: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    target_shard: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    target_dsn: Mapped[str] = mapped_column(sa.String(1024), nullable=False)
    phase: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    checkpoint: Mapped[str] = mapped_column(sa.Text, nullable=False, default="{}")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        index("bucket_moves", "idx_phase", "phase"),
        dict(MYSQL_TABLE_ARGS),
    )


class Lease(DirectoryBase):
    """A named lease (one holder at a time, expires if the holder dies): one bucket move at once."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __table_args__ = (dict(MYSQL_TABLE_ARGS),)


class IdempotencyKey(IdempotencyKeyMixin, DirectoryBase):
    """Platform-level creates (CreateTenant) use tenant_id '' here."""


PLATFORM_TENANT_ID = ""

metadata = DirectoryBase.metadata
