"""Column types and mixins shared by the models of every database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

from ..ids import new_id

# Explicit names everywhere keep MySQL and SQLite schemas comparable and migrations stable;
# the design's own names (uk_*, idx_*) are given on each index.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Table options of the design: InnoDB, utf8mb4, unicode collation. Ignored by SQLite.
MYSQL_TABLE_ARGS: dict[str, str] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC instant: DATETIME(6) on MySQL/MariaDB, DATETIME text on SQLite.

    DATETIME rather than TIMESTAMP: no 2038 limit and no conversion by the session time zone;
    the database stores the naive UTC wall time and Python always sees aware UTC datetimes.
    A naive datetime handed in is refused, because guessing its zone is how local times leak in.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UtcDateTime needs a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


# Long text (callback raw bodies can exceed TEXT's 64 KiB on MySQL).
LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TinyInt = sa.SmallInteger().with_variant(mysql.TINYINT(), "mysql", "mariadb")

# Sizes of the columns that hold AES-GCM ciphertext (key id + nonce + data + tag, base64).
CIPHERTEXT_LENGTH = 512
HASH_LENGTH = 64  # hex HMAC-SHA256


def Id(**kwargs: Any) -> sa.String:
    return sa.String(36, **kwargs)


def enum_type(name: str, *values: str) -> sa.Enum:
    """MySQL ENUM with the design's values; VARCHAR + CHECK elsewhere."""
    return sa.Enum(*values, name=name, native_enum=True, create_constraint=True, validate_strings=True,
                   length=max(len(v) for v in values))


class IdMixin:
    # Mixin columns sort first (id) or last (bookkeeping) so tables read like the design.
    id: Mapped[str] = mapped_column(Id(), primary_key=True, default=new_id, sort_order=-100)


class CreatedAtMixin:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow, sort_order=100)


class TimestampsMixin(CreatedAtMixin):
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow,
                                                 onupdate=utcnow, sort_order=101)


class VersionedMixin:
    """Optimistic locking: the ORM adds `AND version = :old` to every UPDATE and bumps it.

    A flush that matches no row raises sqlalchemy.orm.exc.StaleDataError, which repositories
    map to EtagMismatch. The etag of a resource is derived from this counter.
    """

    version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1, server_default=sa.text("1"),
                                         sort_order=99)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}


def index(table: str, design_name: str, *columns: Any, **kwargs: Any) -> sa.Index:
    """An index named after the design's name, made unique per database.

    SQLite index names are global to a database file while the design reuses names such as
    idx_status on several tables, so `idx_status` on `tenants` becomes `idx_tenants_status`
    (and `uk_tenant_code` becomes `uk_tenants_tenant_code`) on every engine alike.
    """
    kind, _, rest = design_name.partition("_")
    if kind not in ("idx", "uk"):
        raise ValueError(f"index name {design_name!r} must start with idx_ or uk_")
    return sa.Index(f"{kind}_{table}_{rest}", *columns, unique=(kind == "uk"), **kwargs)


class IdempotencyKeyMixin:
    """AIP-155 request ids: the first result of (tenant, operation, request_id) is kept.

    A create inserts this row in the same transaction as the resource; a retry finds the row
    (or hits its primary key) and returns `resource_id` instead of creating anything.
    """

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    operation: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    resource_id: Mapped[str] = mapped_column(sa.String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # Expiry sweeps delete old keys by age.
        return (index("idempotency_keys", "idx_created_at", "created_at"), dict(MYSQL_TABLE_ARGS))


class AppliedCallbackMixin:
    """Added (0003): the effect ledger of provider callbacks, in each database a callback's
    effect writes (account, message). The callback processor writes the callback's dedupe key
    here in the same transaction as its effect, so a callback processed again (a crash before it
    was marked processed, a replay) finds the row and has no second effect. Purged after
    callback.effect_ledger_retention_days (replays stop at that age)."""

    __tablename__ = "applied_callbacks"

    effect_key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (index("applied_callbacks", "idx_applied_at", "applied_at"), dict(MYSQL_TABLE_ARGS))
