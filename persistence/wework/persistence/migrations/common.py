"""What every env.py does: configure the migration context for one database and run it."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic import context
from sqlalchemy.dialects import mysql

from ..models import METADATA


def compare_type(ctx: Any, inspected_column: Any, metadata_column: Any, inspected_type: Any,
                 metadata_type: Any) -> bool | None:
    """Type comparison for autogenerate that knows MariaDB's aliases.

    Returns False (same) for the pairs MariaDB reports differently from what was created,
    None to let alembic decide otherwise.
    """
    dialect = ctx.dialect
    if dialect.name not in ("mysql", "mariadb"):
        return None
    meta = metadata_type.dialect_impl(dialect)
    if isinstance(meta, sa.JSON) and isinstance(inspected_type, (mysql.LONGTEXT, sa.JSON)):
        # MariaDB's JSON is LONGTEXT with a json_valid() check.
        return False
    if isinstance(meta, sa.Boolean) and isinstance(inspected_type, mysql.TINYINT):
        return False
    return None


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Renders the models' UtcDateTime as the DATETIME6 constant every revision defines.

    Revisions stay free of model imports, so later model changes cannot alter old revisions.
    """
    from ..models.base import UtcDateTime

    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "DATETIME6"
    return False


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # alembic_version is alembic's own table in every database.
    return not (type_ == "table" and name == "alembic_version")


def _configure_and_run(connection: sa.Connection, db: str) -> None:
    context.configure(
        connection=connection,
        target_metadata=METADATA[db],
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=compare_type,
        include_object=include_object,
        render_item=render_item,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_env(db: str) -> None:
    """Entry point of migrations/<db>/env.py."""
    config = context.config
    connection = config.attributes.get("connection")
    if context.is_offline_mode():
        # `alembic upgrade --sql`: emit the DDL for a DBA instead of running it.
        context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=METADATA[db],
                          literal_binds=True, dialect_opts={"paramstyle": "named"})
        with context.begin_transaction():
            context.run_migrations()
        return
    if connection is not None:
        _configure_and_run(connection, db)
        return
    # Called by the alembic CLI with only a URL: the drivers are async, so bridge with run_sync.
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")

    async def _run() -> None:
        from ..database import create_engine_for

        engine = create_engine_for(url, pooled=False)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(_configure_and_run, db)
                await conn.commit()
        finally:
            await engine.dispose()

    asyncio.run(_run())
