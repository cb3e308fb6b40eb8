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


class IdempotencyKey(IdempotencyKeyMixin, DirectoryBase):
    """Platform-level creates (CreateTenant) use tenant_id '' here."""


PLATFORM_TENANT_ID = ""

metadata = DirectoryBase.metadata
