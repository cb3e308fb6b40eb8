"""Media uploads under concurrency and crashes: MediaUseCases over real MariaDB and a real store
(the local directory backend; tests/e2e/test_media.py drives the S3 one through gRPC).

- the tenant quota holds when many uploads of one tenant run at once (docs/media.md);
- the media sweep removes the object and reservation an upload killed before its row left;
- a provider callback's media is fetched once: a replay of the callback (the process died
  before marking it processed) finds the stored media and never fetches the provider's URL again.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness.provider_files import ProviderFiles
from wework.domain.access import Principal, PrincipalKind
from wework.domain.errors import QuotaExceeded
from wework.domain.media import Media, MediaKind, UploadDeclaration
from wework.persistence.ids import new_id
from wework.persistence.repositories.media import PendingUpload
from wework.server.application.media import IncomingMedia, MediaPolicy, MediaUseCases
from wework.server.application.webhooks import TargetGuard, WebhookPolicy
from wework.server.media.store import LinkSigner, LocalStore

pytestmark = pytest.mark.mariadb

PDF_HEAD = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
PART = 5 * 1024 * 1024


def _pdf(size: int) -> bytes:
    return PDF_HEAD + os.urandom(size - len(PDF_HEAD))


def _declaration(data: bytes, request_id: str = "") -> UploadDeclaration:
    return UploadDeclaration(kind=MediaKind.FILE, file_name="report.pdf", declared_content_type="",
                             size_bytes=len(data), sha256="", request_id=request_id)


async def _stream(data: bytes, gate: asyncio.Event | None = None):
    if gate is not None:
        await gate.wait()
    yield data


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "media", PART, LinkSigner(b"k" * 32, None))


def _use_cases(db, store, **policy) -> MediaUseCases:
    return MediaUseCases(db, store, MediaPolicy(**policy))


async def _stored(db, store: LocalStore, tenant: str) -> tuple[list[Media], int]:
    """(the tenant's media rows, the bytes of its objects in the store)."""
    async with db.unit_of_work("message", tenant, read_only=True) as uow:
        rows = await uow.media.list_page(tenant, None, None, 1000)
    keys = await store.keys(f"tenants/{tenant}/")
    return rows, sum((store.root / k).stat().st_size for k in keys)


async def _waiting_inserts(uow) -> int:
    """Connections whose INSERT INTO media waits for the table lock of `_media_writes_held`."""
    return (await uow.session.execute(sa.text(
        "SELECT COUNT(*) FROM information_schema.processlist WHERE state LIKE 'Waiting for table%' "
        "AND info LIKE 'INSERT INTO media %'"))).scalar()


async def test_concurrent_uploads_never_pass_the_quota_together(mariadb_database, store):
    quota, size, n = 1_000_000, 300_000, 6  # room for three
    media = _use_cases(mariadb_database, store, tenant_quota_bytes=quota)
    tenant = new_id()
    async with mariadb_database.unit_of_work("message", tenant) as lock:
        # Writes to the media table wait (reads go on) until every upload has got as far as it
        # can: their commits then run at the same moment, as on a busy server.
        await lock.session.execute(sa.text("LOCK TABLES media READ"))
        try:
            uploads = [asyncio.ensure_future(media.store_for_tenant(tenant, _declaration(d), _stream(d),
                                                                    source="upload"))
                       for d in (_pdf(size) for _ in range(n))]
            deadline = time.monotonic() + 20
            while sum(u.done() for u in uploads) + await _waiting_inserts(lock) < n:
                assert time.monotonic() < deadline, "the uploads did not reach their commit"
                await asyncio.sleep(0.05)
        finally:
            await lock.session.execute(sa.text("UNLOCK TABLES"))
    results = await asyncio.gather(*uploads, return_exceptions=True)
    stored = [r for r in results if isinstance(r, Media)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(stored) + len(refused) == n, [r for r in results if not isinstance(r, Media | QuotaExceeded)]
    rows, object_bytes = await _stored(mariadb_database, store, tenant)
    assert sum(m.size_bytes for m in rows) <= quota and object_bytes <= quota
    assert len(stored) == quota // size
    assert sorted(m.id for m in rows) == sorted(m.id for m in stored)
    async with mariadb_database.unit_of_work("message", tenant, read_only=True) as uow:
        assert await uow.media.used_bytes(tenant) == len(stored) * size  # no reservation left over
    (violation,) = refused[0].violations
    assert violation.subject == f"tenants/{tenant}/media_storage_bytes"
    # A refused upload holds nothing back: once a stored one is deleted, another fits.
    await media.delete(Principal(PrincipalKind.API_KEY, "key", tenant, frozenset({"media.*"})), stored[0].id)
    data = _pdf(size)
    await media.store_for_tenant(tenant, _declaration(data), _stream(data), source="upload")


@pytest.fixture
def provider_files():
    files = ProviderFiles()
    yield files
    files.stop()


async def test_a_replayed_callback_finds_its_media_and_fetches_nothing(mariadb_database, store, provider_files):
    media = _use_cases(mariadb_database, store)
    incoming = IncomingMedia(media, TargetGuard(WebhookPolicy(allow_private_targets=True)), 10)
    tenant, data = new_id(), _pdf(50_000)
    provider_files.files["/scan.pdf"] = data
    url = provider_files.url("/scan.pdf", "token=provider-secret")
    content = {"url": url, "file_name": "scan.pdf"}
    try:
        first = await incoming.store_received(tenant, "file", content, "ev:callback-1")
        # The process dies here (before the callback is marked processed); the callback is
        # processed again with the same effect key.
        replayed = await incoming.store_received(tenant, "file", content, "ev:callback-1")
        assert replayed == first and first["media_id"] and "url" not in first
        assert len(provider_files.gets) == 1  # the provider's link was fetched once
        # Another callback with the same bytes: fetched, deduplicated to the same media, and its
        # replay fetches nothing either.
        other = await incoming.store_received(tenant, "file", content, "ev:callback-2")
        assert other["media_id"] == first["media_id"] and len(provider_files.gets) == 2
        assert await incoming.store_received(tenant, "file", content, "ev:callback-2") == other
        assert len(provider_files.gets) == 2
        rows, object_bytes = await _stored(mariadb_database, store, tenant)
        assert [m.id for m in rows] == [first["media_id"]] and object_bytes == len(data)
        assert all("provider-secret" not in str(v) for v in (*first.values(), *other.values()))
    finally:
        await incoming.close()


@pytest.fixture(params=["mariadb", "sqlite"])
def database(request):
    return request.getfixturevalue(f"{request.param}_database")


async def test_the_sweep_removes_what_a_dead_upload_left_and_nothing_else(database, store):
    """The state a process killed between an upload's object and its media row leaves (the
    reservation and the object), beside a stored media and an upload still running."""
    tenant = new_id()
    media = _use_cases(database, store, tenant_quota_bytes=10_000_000)
    kept_bytes = _pdf(1000)
    kept = await media.store_for_tenant(tenant, _declaration(kept_bytes), _stream(kept_bytes), source="upload")
    now = datetime.now(UTC)
    dead = PendingUpload(new_id(), tenant, f"tenants/{tenant}/media/dead", 2000, now - timedelta(hours=25))
    running = PendingUpload(new_id(), tenant, f"tenants/{tenant}/media/running", 3000, now - timedelta(hours=1))
    async with database.unit_of_work("message", tenant) as uow:
        await uow.media.add_upload(dead)
        await uow.media.add_upload(running)
    await store.put(dead.storage_key, _pdf(2000), "application/pdf")
    async with database.unit_of_work("message", tenant, read_only=True) as uow:
        assert await uow.media.used_bytes(tenant) == 6000  # reservations count against the quota

    removed = await media.sweep([])

    assert removed["abandoned_uploads"] == 1 and removed["expired"] == removed["deleted_tenants"] == 0
    assert sorted(await store.keys(f"tenants/{tenant}/")) == [kept.storage_key]
    async with database.unit_of_work("message", tenant, read_only=True) as uow:
        assert await uow.media.used_bytes(tenant) == 4000  # the dead upload's bytes are given back
        assert await uow.media.get(tenant, kept.id) == kept
