"""The shared, session-wide migrated databases of tests/conftest.py, and the session settings."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from wework.persistence.ids import new_id
from wework.persistence.models import Tenant


@pytest.mark.mariadb
async def test_shared_mariadb_database_and_session_settings(mariadb_database):
    tenant_id = new_id()
    async with mariadb_database.unit_of_work("user", tenant_id) as uow:
        uow.session.add(Tenant(id=tenant_id, tenant_code=f"fx-{tenant_id}", tenant_name="fx"))
        row = (await uow.session.execute(sa.text(
            "SELECT @@session.time_zone, @@character_set_connection, @@session.sql_mode"))).one()
        # tx_isolation on MariaDB 10.11, transaction_isolation on MySQL 8.
        isolation = (await uow.session.execute(sa.text("SHOW SESSION VARIABLES LIKE '%isolation'"))).all()
    assert row[0] == "+00:00"
    assert row[1] == "utf8mb4"
    assert "STRICT_TRANS_TABLES" in row[2]
    assert {v for k, v in isolation if k in ("tx_isolation", "transaction_isolation")} == {"READ-COMMITTED"}
    async with mariadb_database.session("user", tenant_id) as session:
        assert (await session.get(Tenant, tenant_id)) is not None


async def test_shared_sqlite_database(sqlite_database):
    tenant_id = new_id()
    async with sqlite_database.unit_of_work("user", tenant_id) as uow:
        uow.session.add(Tenant(id=tenant_id, tenant_code=f"fx-{tenant_id}", tenant_name="fx"))
    async with sqlite_database.session("user", tenant_id) as session:
        assert (await session.get(Tenant, tenant_id)) is not None
        assert (await session.execute(sa.text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await session.execute(sa.text("PRAGMA foreign_keys"))).scalar() == 1
