"""Alembic migrations: one script directory (and one alembic_version table) per database.

    migrations/<db>/env.py        -> common.run_env("<db>")
    migrations/<db>/versions/     revisions of that database only

Run them with `wework.persistence.migrate.migrate_all`, which needs no alembic.ini. For a new
revision, `alembic_config(db, url)` gives a Config usable with `alembic.command.revision(...,
autogenerate=True)` against an up-to-date database.
"""

from __future__ import annotations

from pathlib import Path

DATABASES: tuple[str, ...] = ("directory", "user", "account", "message", "callback")

MIGRATIONS_DIR = Path(__file__).resolve().parent


def script_location(db: str) -> Path:
    if db not in DATABASES:
        raise ValueError(f"unknown database {db!r}; expected one of {DATABASES}")
    return MIGRATIONS_DIR / db
