"""The models and the migrated schema agree (alembic autogenerate finds nothing to do)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from harness import make_database_config, make_sqlite_config
from wework.persistence.database import create_engine_for
from wework.persistence.migrate import migrate_all
from wework.persistence.migrations.common import compare_type, include_object
from wework.persistence.models import METADATA
from wework.persistence.sharding import physical_databases


def _diff(conn: sa.Connection, metadata: sa.MetaData) -> list:
    ctx = MigrationContext.configure(conn, opts={"compare_type": compare_type, "include_object": include_object})
    return compare_metadata(ctx, metadata)


async def _diffs(config, mutate=None) -> dict[str, list]:
    out = {}
    for target in physical_databases(config):
        if target.shard not in (None, config.shards[0].name):
            continue  # every shard runs the same revisions
        metadata = METADATA[target.db]
        if mutate is not None:
            metadata = mutate(target.db, metadata)
        engine = create_engine_for(target.dsn, config, pooled=False)
        try:
            async with engine.connect() as conn:
                out[target.db] = await conn.run_sync(_diff, metadata)
        finally:
            await engine.dispose()
    return out


def _mutated(db: str, metadata: sa.MetaData) -> sa.MetaData:
    """A copy with one changed column type and one extra index: the comparison must see them."""
    copy = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(copy)
    if db == "user":
        copy.tables["tenants"].c.tenant_name.type = sa.String(99)
        sa.Index("idx_extra", copy.tables["users"].c.real_name)
    return copy


def _assert_no_diff(diffs: dict[str, list]) -> None:
    assert set(diffs) == set(METADATA)
    assert {db: d for db, d in diffs.items() if d} == {}


@pytest.mark.mariadb
async def test_models_match_migrated_schema_on_mariadb(mariadb_server, unique_db_prefix):
    config = make_database_config(unique_db_prefix, [mariadb_server], 1)
    await migrate_all(config)
    _assert_no_diff(await _diffs(config))
    mutated = await _diffs(config, _mutated)
    kinds = sorted(d[0] if isinstance(d, tuple) else d[0][0] for d in mutated["user"])
    assert kinds == ["add_index", "modify_type"]


async def test_models_match_migrated_schema_on_sqlite(tmp_path):
    config = make_sqlite_config(tmp_path, 1)
    await migrate_all(config)
    _assert_no_diff(await _diffs(config))
    mutated = await _diffs(config, _mutated)
    assert len(mutated["user"]) == 2
