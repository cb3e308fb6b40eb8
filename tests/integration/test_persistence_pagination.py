"""Keyset pagination over real MariaDB and SQLite, with ties in the leading sort column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from harness import make_database_config, make_sqlite_config
from wework.domain.errors import InvalidArgument
from wework.persistence.database import Database
from wework.persistence.ids import new_id
from wework.persistence.migrate import migrate_all
from wework.persistence.models import Tenant
from wework.persistence.pagination import PageTokens, keyset_page

TOKENS = PageTokens.with_random_key()

N = 57
BASE = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
async def paged_db(request, tmp_path, unique_db_prefix):
    if request.param == "sqlite":
        config = make_sqlite_config(tmp_path, 1)
    else:
        config = make_database_config(unique_db_prefix, [request.getfixturevalue("mariadb_server")], 1)
    await migrate_all(config)
    db = Database(config)
    await db.start()
    rows = []
    async with db.shard_unit_of_work("user", "s0") as uow:
        for i in range(N):
            # Only 6 distinct timestamps and 3 statuses: most rows tie on the leading columns.
            row = Tenant(id=new_id(), tenant_code=f"c{i:03d}", tenant_name="t", created_at=BASE + timedelta(
                seconds=i % 6), status=("active", "suspended", "deleted")[i % 3], max_accounts=i % 3)
            uow.session.add(row)
            rows.append((row.status, row.created_at, row.id, row.max_accounts))
    yield db, rows
    await db.dispose()


async def _walk(db: Database, order, page_size: int, stmt=None) -> list:
    """Pages through `order` like a List RPC would: via an opaque token between pages."""
    stmt = stmt if stmt is not None else sa.select(Tenant)
    seen, token = [], None
    for _ in range(N + 2):
        after = TOKENS.decode(token, "tenants", "", {"after": list})["after"] if token else None
        async with db.shard_session("user", "s0", read_only=True) as session:
            rows, nxt = await keyset_page(session, stmt, order, after, page_size)
        assert len(rows) <= page_size
        seen.extend(rows)
        if nxt is None:
            return seen
        assert len(rows) == page_size
        token = TOKENS.encode({"after": nxt}, "tenants", "")
    raise AssertionError("pagination did not terminate")


@pytest.mark.parametrize("page_size", [1, 7, 50, 1000])
async def test_ascending_and_descending_pages_return_every_row_once(paged_db, page_size):
    db, rows = paged_db
    asc = await _walk(db, [Tenant.created_at, Tenant.id], page_size)
    assert [(t.created_at, t.id) for t in asc] == sorted((r[1], r[2]) for r in rows)
    desc = await _walk(db, [Tenant.created_at.desc(), Tenant.id.desc()], page_size)
    assert [(t.created_at, t.id) for t in desc] == sorted(((r[1], r[2]) for r in rows), reverse=True)


async def test_mixed_directions_and_three_columns(paged_db):
    db, rows = paged_db
    got = await _walk(db, [Tenant.max_accounts.asc(), Tenant.created_at.desc(), Tenant.id.asc()], 4)
    assert [(t.max_accounts, t.created_at, t.id) for t in got] == sorted(
        ((r[3], r[1], r[2]) for r in rows), key=lambda v: (v[0], -v[1].timestamp(), v[2]))


async def test_enum_sort_keys_are_refused(paged_db):
    # MySQL orders an ENUM by declaration but compares it as text: a cursor would skip rows.
    db, _ = paged_db
    async with db.shard_session("user", "s0", read_only=True) as session:
        with pytest.raises(TypeError, match="enum"):
            await keyset_page(session, sa.select(Tenant), [Tenant.status, Tenant.id], None, 10)


async def test_row_selects_and_filters(paged_db):
    db, rows = paged_db
    stmt = sa.select(Tenant.id, Tenant.created_at).where(Tenant.status == "active")
    got = await _walk(db, [Tenant.created_at.desc(), Tenant.id.desc()], 5, stmt)
    expected = sorted(((r[1], r[2]) for r in rows if r[0] == "active"), reverse=True)
    assert [(r.created_at, r.id) for r in got] == expected


async def test_corrupted_token_is_invalid_argument_on_page_token(paged_db):
    db, _ = paged_db
    async with db.shard_session("user", "s0", read_only=True) as session:
        _, nxt = await keyset_page(session, sa.select(Tenant), [Tenant.created_at, Tenant.id], None, 10)
    token = TOKENS.encode({"after": nxt}, "tenants", "")
    for bad in (token[: len(token) // 2], token[:-2] + "~~", "x" + token, token.upper()):
        with pytest.raises(InvalidArgument) as info:
            TOKENS.decode(bad, "tenants", "", {"after": list})
        assert [v.field for v in info.value.violations] == ["page_token"]
