"""Media use cases: upload (streamed, sniffed, deduplicated, within the tenant's quota), get,
list, delete, download links and streams; media references of messages; the retention sweep.

An upload holds at most one part (media.part_size_bytes) in memory. It first reserves its
declared size against the tenant's quota (a media_uploads row naming the object's key, under the
tenant's quota lock), then writes the object, then commits the media row in place of the
reservation: until the row commits nobody can name the object, and a failure after the write
deletes it again. A cut stream aborts the multipart upload (or never writes), so nothing is left
behind; `wework-admin maintain` removes what uploads of processes that died mid-way left (their
objects, reservations and multipart uploads).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from wework.domain.access import Principal
from wework.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    QuotaViolation,
    must_exist,
)
from wework.domain.identity import validate_request_id
from wework.domain.media import (
    KIND_RULES,
    Media,
    MediaKind,
    UploadDeclaration,
    check_declaration,
    sanitize_file_name,
    storage_key,
    type_violation,
)
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.persistence.repositories.media import PendingUpload
from wework.persistence.resilience import retrying
from wework.persistence.uow import UnitOfWork
from wework.server.application.context import require_id
from wework.server.http_client import TRANSPORT_ERRORS, GuardedHttp, describe
from wework.server.media.sniff import SNIFF_BYTES, sniff_content_type
from wework.server.media.store import MultipartUpload, ObjectStore

log = logging.getLogger(__name__)
MESSAGE_DB = "message"
UPLOAD_OPERATION = "UploadMedia"
# Media fetched for a provider callback: keyed by the callback's effect key and the attachment's
# index, so a replay of the callback finds the media instead of fetching the provider's URL again.
RECEIVE_OPERATION = "ReceiveMedia"
# Message kinds whose content may name a media_id, and the media kinds each accepts.
MESSAGE_MEDIA_KINDS: dict[str, frozenset[MediaKind]] = {
    "image": frozenset({MediaKind.IMAGE}),
    "file": frozenset(MediaKind),
    "voice": frozenset({MediaKind.VOICE}),
    "video": frozenset({MediaKind.VIDEO}),
}


class Idempotency(NamedTuple):
    """An idempotency-ledger key of an upload: (operation, key)."""

    operation: str
    key: str


@dataclass(frozen=True)
class MediaPolicy:
    key_prefix: str = ""
    tenant_quota_bytes: int = 0  # 0: unlimited
    link_ttl_seconds: int = 900
    max_link_ttl_seconds: int = 7 * 86400
    retention_days: int = 90
    incomplete_upload_hours: int = 24
    sweep_batch_size: int = 500


def media_policy(cfg: Any) -> MediaPolicy:
    """The policy from the `media` settings (a MediaConfig)."""
    return MediaPolicy(key_prefix=cfg.key_prefix, tenant_quota_bytes=cfg.tenant_quota_bytes,
                       link_ttl_seconds=cfg.link_ttl_seconds, max_link_ttl_seconds=cfg.max_link_ttl_seconds,
                       retention_days=cfg.retention_days, incomplete_upload_hours=cfg.incomplete_upload_hours,
                       sweep_batch_size=cfg.sweep_batch_size)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MediaUseCases:
    def __init__(self, db: Any, store: ObjectStore, policy: MediaPolicy,
                 clock: Callable[[], datetime] = _utcnow, page_tokens: Any = None) -> None:
        self._db, self.store, self._policy, self._clock = db, store, policy, clock
        self._page_tokens = page_tokens  # PageTokens: signed, tenant-bound ListMedia tokens

    # ---- upload --------------------------------------------------------------------------

    async def upload(self, principal: Principal, declaration: UploadDeclaration,
                     chunks: AsyncIterator[bytes]) -> Media:
        return await self.store_for_tenant(principal.require_tenant(), declaration, chunks, source="upload")

    async def store_for_tenant(self, tenant_id: str, declaration: UploadDeclaration, chunks: AsyncIterator[bytes],
                               *, source: str, once: Idempotency | None = None) -> Media:
        """An upload into `tenant_id` (UploadMedia, and media received from a provider). `once`
        (or the declaration's request_id): the media stored under that key before is returned,
        and the key is recorded with the media row (or pointing at the media it deduplicates to)."""
        validate_request_id(declaration.request_id, "metadata.request_id")
        violations = check_declaration(declaration)
        if violations:
            raise InvalidArgument(violations)
        assert declaration.kind is not None
        if declaration.request_id:
            once = Idempotency(UPLOAD_OPERATION, declaration.request_id)
        if once is not None:
            found = await self.stored_once(tenant_id, once)
            if found is not None:
                return found
        media_id = new_id()
        key = storage_key(self._policy.key_prefix, tenant_id, media_id)
        await self._reserve(PendingUpload(media_id, tenant_id, key, declaration.size_bytes, self._clock()))
        try:
            sniffed, sha256, multipart, rest = await self._store_stream(key, declaration, chunks)
            try:
                return await self._commit(tenant_id, media_id, key, declaration, sniffed, sha256, multipart, rest,
                                          source, once)
            except BaseException:
                if multipart is not None:
                    await _shielded(multipart.abort())
                raise
        except BaseException:
            await _shielded(self._release(tenant_id, media_id))
            raise

    async def _reserve(self, upload: PendingUpload) -> None:
        """Reserves the upload's declared size against the tenant's quota, before anything is
        written: under the tenant's quota lock, stored plus reserved bytes are counted and the
        reservation added in one transaction, so concurrent uploads cannot together pass the
        quota. QuotaExceeded when it does not fit."""
        async def run() -> None:
            async with self._db.unit_of_work(MESSAGE_DB, upload.tenant_id) as uow:
                repo = uow.media
                if self._policy.tenant_quota_bytes:
                    await repo.lock_quota(upload.tenant_id, upload.started_at)
                    self._check_quota(upload.tenant_id, await repo.used_bytes(upload.tenant_id), upload.size_bytes)
                await repo.add_upload(upload)

        await retrying(run)

    async def _release(self, tenant_id: str, media_id: str,
                       remember: tuple[Idempotency, str] | None = None) -> None:
        """Gives a reservation back (the upload failed, or its bytes were stored already: then
        `remember` records its idempotency key for the media it deduplicated to)."""
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            await uow.media.remove_upload(media_id)
        if remember is not None:
            once, existing_id = remember
            with contextlib.suppress(AlreadyExists):  # a concurrent call recorded it first
                async with self._db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
                    await uow.messages.put_idempotent(tenant_id, once.operation, once.key, existing_id,
                                                      self._clock())

    def _check_quota(self, tenant_id: str, used: int, adding: int) -> None:
        quota = self._policy.tenant_quota_bytes
        if quota and used + adding > quota:
            raise QuotaExceeded(
                f"the tenant's media storage quota is {quota} bytes: {used} are used and this upload needs "
                f"{adding} more; delete media or ask for a larger quota",
                [QuotaViolation(f"tenants/{tenant_id}/media_storage_bytes",
                                f"{used} of {quota} bytes used, {adding} requested")])

    async def _store_stream(self, key: str, d: UploadDeclaration, chunks: AsyncIterator[bytes]
                            ) -> tuple[str, str, MultipartUpload | None, bytes]:
        """Reads the stream: full parts go to a multipart upload as they fill (after the type of
        the first one is checked); returns (sniffed type, sha256, the open multipart upload or
        None, the bytes not yet written). Aborts the multipart upload on any failure."""
        assert d.kind is not None
        part_size, hasher = self.store.part_size, hashlib.sha256()
        # One part-sized buffer, filled in place and reused after each part has gone up: the
        # upload's memory is one part whatever the file's size.
        part = bytearray(part_size)
        view = memoryview(part)
        filled, total = 0, 0
        sniffed: str | None = None
        multipart: MultipartUpload | None = None
        starting: asyncio.Future[MultipartUpload] | None = None
        try:
            async for chunk in chunks:
                total += len(chunk)
                if total > d.size_bytes:
                    raise InvalidArgument(FieldViolation("metadata.size_bytes",
                                                         f"the chunks exceed the declared {d.size_bytes} bytes"))
                hasher.update(chunk)
                offset = 0
                while offset < len(chunk):
                    n = min(part_size - filled, len(chunk) - offset)
                    view[filled:filled + n] = chunk[offset:offset + n]
                    filled, offset = filled + n, offset + n
                    if filled == part_size:
                        if sniffed is None:
                            sniffed = self._check_type(d.kind, bytes(view[:SNIFF_BYTES]))
                            # Shielded: a call cancelled while S3 creates the upload still
                            # learns its id below, and aborts it.
                            starting = asyncio.ensure_future(self.store.start_multipart(key, sniffed))
                            multipart = await asyncio.shield(starting)
                        assert multipart is not None
                        await multipart.put_part(part)
                        filled = 0
            if total != d.size_bytes:
                raise InvalidArgument(FieldViolation(
                    "metadata.size_bytes", f"the upload ended after {total} of the declared {d.size_bytes} bytes"))
            tail = bytes(view[:filled])
            if sniffed is None:
                sniffed = self._check_type(d.kind, tail)
            sha256 = hasher.hexdigest()
            if d.sha256 and d.sha256 != sha256:
                raise InvalidArgument(FieldViolation("metadata.sha256", "the bytes do not match the declared sha256"))
        except BaseException:
            # A cut stream (CancelledError), bad bytes or a store failure: nothing stays behind.
            if multipart is None and starting is not None:
                multipart = await _started(starting)
            if multipart is not None:
                await _shielded(multipart.abort())
            raise
        return sniffed, sha256, multipart, tail

    @staticmethod
    def _check_type(kind: MediaKind, head: bytes) -> str:
        sniffed = sniff_content_type(head)
        violation = type_violation(kind, sniffed)
        if violation is not None:
            raise InvalidArgument(violation)
        return sniffed

    async def stored_once(self, tenant_id: str, once: Idempotency) -> Media | None:
        """The media stored under the idempotency key `once`, None if none was (or it was deleted)."""
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            done = await uow.messages.get_idempotent(tenant_id, once.operation, once.key)
            return await uow.media.get(tenant_id, done) if done else None

    async def _commit(self, tenant_id: str, media_id: str, key: str, d: UploadDeclaration, sniffed: str,
                      sha256: str, multipart: MultipartUpload | None, rest: bytes, source: str,
                      once: Idempotency | None) -> Media:
        assert d.kind is not None
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            same = await uow.media.find_by_hash(tenant_id, sha256, d.kind)
        if same is not None:  # dedupe: the tenant already has these bytes as this kind
            if multipart is not None:
                await multipart.abort()
            await self._release(tenant_id, media_id, remember=(once, same.id) if once else None)
            return same
        if multipart is not None:
            await multipart.put_part(rest)
            await multipart.complete()
        else:
            await self.store.put(key, rest, sniffed)
        now = self._clock()
        media = Media(id=media_id, tenant_id=tenant_id, kind=d.kind, file_name=sanitize_file_name(d.file_name),
                      content_type=sniffed, size_bytes=d.size_bytes, sha256=sha256, storage_key=key,
                      source=source, created_at=now, last_used_at=now)
        try:
            async with self._db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
                repo = uow.media
                if once is not None:
                    await uow.messages.put_idempotent(tenant_id, once.operation, once.key, media_id, now)
                await repo.add(media)
                # The reservation becomes the row, in one transaction: the quota counts the bytes
                # once, and the sweep never takes the object of a media row for an abandoned one.
                if not await repo.remove_upload(media_id):
                    raise FailedPrecondition(
                        f"the upload took longer than media.incomplete_upload_hours "
                        f"({self._policy.incomplete_upload_hours}) and was removed as abandoned; upload again")
        except BaseException as exc:
            await _shielded(self.store.delete(key))
            if isinstance(exc, AlreadyExists) or _is_duplicate(exc):
                winner = await self._winner(tenant_id, sha256, d, once)
                if winner is not None:
                    await self._release(tenant_id, media_id)
                    return winner
            raise
        return media

    async def _winner(self, tenant_id: str, sha256: str, d: UploadDeclaration,
                      once: Idempotency | None) -> Media | None:
        """After a lost race (same bytes or same idempotency key at once): the media that won."""
        assert d.kind is not None
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            repo = uow.media
            if once is not None:
                done = await uow.messages.get_idempotent(tenant_id, once.operation, once.key)
                if done:
                    return await repo.get(tenant_id, done)
            return await repo.find_by_hash(tenant_id, sha256, d.kind)

    # ---- reads and deletes ---------------------------------------------------------------

    async def get(self, principal: Principal, media_id: str) -> Media:
        tenant_id = principal.require_tenant()
        require_id(media_id, "id")
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            found = await uow.media.get(tenant_id, media_id)
        return must_exist(found, "media", media_id)

    async def list(self, principal: Principal, kind: MediaKind | None, page_size: int,
                   page_token: str) -> tuple[list[Media], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        after = self._page_tokens.after_id(page_token, "media", tenant_id)
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            rows = await uow.media.list_page(tenant_id, kind, after, limit + 1)
        return self._page_tokens.id_page(rows, limit, "media", tenant_id)

    async def delete(self, principal: Principal, media_id: str) -> None:
        tenant_id = principal.require_tenant()
        media = await self.get(principal, media_id)
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            if not await uow.media.delete(tenant_id, media_id):
                raise NotFound("media", media_id)
        await self.store.delete(media.storage_key)

    async def download_link(self, principal: Principal, media_id: str, ttl_seconds: int) -> tuple[str, datetime]:
        if ttl_seconds < 0:
            raise InvalidArgument(FieldViolation("ttl_seconds", "ttl_seconds must not be negative"))
        media = await self.get(principal, media_id)
        ttl = min(ttl_seconds or self._policy.link_ttl_seconds, self._policy.max_link_ttl_seconds)
        return await self.link_for(media, ttl)

    async def link_for(self, media: Media, ttl_seconds: int | None = None) -> tuple[str, datetime]:
        ttl = ttl_seconds or self._policy.link_ttl_seconds
        url = await self.store.download_url(media.storage_key, ttl, media.file_name, media.content_type)
        return url, self._clock() + timedelta(seconds=ttl)

    async def download(self, principal: Principal, media_id: str) -> tuple[Media, AsyncIterator[bytes]]:
        media = await self.get(principal, media_id)
        return media, self.store.read(media.storage_key)

    # ---- messages ------------------------------------------------------------------------

    async def check_references(self, tenant_id: str, references: list[tuple[str, str, str]]) -> None:
        """Every (field path, message type, media_id) names a media of this tenant of a kind the
        message type takes; marks them used now. InvalidArgument names the field otherwise."""
        if not references:
            return
        ids = sorted({m for _, _, m in references})
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id) as uow:
            repo = uow.media
            found = await repo.get_many(tenant_id, ids)
            bad = []
            for path, message_type, media_id in references:
                media = found.get(media_id)
                if media is None:
                    bad.append(FieldViolation(path, f"no media {media_id!r} in this tenant", "MEDIA_NOT_FOUND"))
                elif media.kind not in MESSAGE_MEDIA_KINDS.get(message_type, frozenset()):
                    bad.append(FieldViolation(path, f"media {media_id!r} is {media.kind.value} media, "
                                              f"not usable in a {message_type} message", "MEDIA_KIND_MISMATCH"))
            if bad:
                raise InvalidArgument(bad)
            await repo.touch(tenant_id, ids, self._clock())

    async def resolve_for_send(self, tenant_id: str, content: dict[str, Any]) -> dict[str, Any]:
        """The content a provider gets: a media_id of ours becomes a time-limited URL plus the
        file's metadata; content without one is returned unchanged."""
        media_id = content.get("media_id") if isinstance(content, dict) else None
        if not media_id:
            return content
        async with self._db.unit_of_work(MESSAGE_DB, tenant_id, read_only=True) as uow:
            media = await uow.media.get(tenant_id, media_id)
        if media is None:
            raise NotFound("media", media_id)
        url, _ = await self.link_for(media)
        return {**content, "url": url, "file_name": content.get("file_name") or media.file_name,
                "content_type": media.content_type, "size_bytes": media.size_bytes, "sha256": media.sha256}

    # ---- lifecycle -----------------------------------------------------------------------

    async def sweep(self, deleted_tenant_ids: list[str]) -> dict[str, int]:
        """Removes media unused past the retention period and media of deleted tenants, in
        batches of sweep_batch_size per shard (rows first, then objects); removes the objects and
        reservations of uploads that died before their row committed, and aborts multipart
        uploads left incomplete (both after incomplete_upload_hours). Returns counts for the
        operator."""
        p, now = self._policy, self._clock()
        cutoff = now - timedelta(days=p.retention_days)
        removed = {"expired": 0, "deleted_tenants": 0, "abandoned_uploads": 0, "incomplete_uploads": 0}

        async def batch(uow: UnitOfWork, which: str) -> list[Media]:
            repo = uow.media
            rows = (await repo.expired(cutoff, p.sweep_batch_size) if which == "expired"
                    else await repo.of_tenants(deleted_tenant_ids, p.sweep_batch_size))
            await repo.delete_ids([m.id for m in rows])
            return rows

        for which in ("expired", "deleted_tenants"):
            while True:
                per_shard = await self._db.for_each_shard(MESSAGE_DB, lambda s, w=which: batch(s, w),
                                                          read_only=False)
                rows = [m for shard_rows in per_shard for m in shard_rows]
                for m in rows:
                    await self.store.delete(m.storage_key)
                removed[which] += len(rows)
                if all(len(r) < p.sweep_batch_size for r in per_shard):
                    break
        started_before = now - timedelta(hours=p.incomplete_upload_hours)

        async def abandoned(uow: UnitOfWork) -> int:
            # An upload that died (killed, or its cleanup failed) after reserving its bytes: its
            # object may be in the store with no media row naming it. The object goes first,
            # then the reservation, in the transaction that holds it: a crash here leaves the
            # reservation for the next sweep, never an object nobody names.
            repo = uow.media
            uploads = await repo.abandoned_uploads(started_before, p.sweep_batch_size)
            for u in uploads:
                await self.store.delete(u.storage_key)
            await repo.remove_uploads([u.id for u in uploads])
            return len(uploads)

        while True:
            per_shard = await self._db.for_each_shard(MESSAGE_DB, abandoned, read_only=False)
            removed["abandoned_uploads"] += sum(per_shard)
            if all(n < p.sweep_batch_size for n in per_shard):
                break
        removed["incomplete_uploads"] = await self.store.abort_incomplete(f"{p.key_prefix}tenants/", started_before)
        return removed


def media_references(message_type: str, content: Any, path: str = "content.media_id") -> list[tuple[str, str, str]]:
    """The (field path, message type, media_id) a message content names, for check_references."""
    media_id = content.get("media_id") if isinstance(content, dict) else None
    return [(path, message_type, media_id)] if media_id and message_type in MESSAGE_MEDIA_KINDS else []


def _is_duplicate(exc: BaseException) -> bool:
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError)


async def _started(starting: asyncio.Future[MultipartUpload]) -> MultipartUpload | None:
    """The multipart upload a cancelled call was creating, once S3 has answered (None if it
    failed). Waits through further cancellation: the call ends with its own error anyway."""
    while not starting.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({starting})
    if starting.cancelled() or starting.exception() is not None:
        return None
    return starting.result()


async def _shielded(aw: Any) -> None:
    """Cleanup that must finish even when the RPC is being cancelled; its failure is logged
    (the sweep of wework-admin maintain removes what is left)."""
    try:
        await asyncio.shield(aw)
    except Exception:
        log.warning("media cleanup failed; wework-admin maintain will remove what is left", exc_info=True)


KIND_LIMITS = {kind: rule.max_bytes for kind, rule in KIND_RULES.items()}
MESSAGE_TYPE_KINDS = {"image": MediaKind.IMAGE, "file": MediaKind.FILE, "voice": MediaKind.VOICE,
                      "video": MediaKind.VIDEO}


def received_media_key(effect_key: str, index: int) -> str:
    """The idempotency key of a callback's `index`-th attachment (at most 128 characters)."""
    key = f"{effect_key}#{index}"
    return key if len(key) <= 128 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class MediaFetchFailed(Exception):
    """Fetching incoming media failed in a way that may pass (timeout, connection): the callback's
    processing is retried on its schedule."""


class IncomingMedia:
    """Media of messages received from a provider (MESSAGE_RECEIVED with a `url`): fetched through
    the webhook SSRF guard (the same `webhooks.allow_private_targets` / `allowed_target_cidrs`
    settings), stored as media of the tenant (source "received"), and named by `media_id` in the
    content that the conversation, the callback's effect and the message.received webhook get."""

    def __init__(self, media: MediaUseCases, guard: Any, timeout_seconds: float) -> None:
        self._media = media
        self._http = GuardedHttp(guard, timeout_seconds=timeout_seconds)

    async def close(self) -> None:
        await self._http.close()

    async def store_received(self, tenant_id: str, message_type: str, content: Any,
                             effect_key: str | None = None) -> Any:
        """The content with the provider's `url` replaced by the stored media (or `media_error`).
        With the callback's `effect_key`, the media is stored once per callback: a replay (the
        process died before the callback was marked processed) finds it and fetches nothing."""
        kind = MESSAGE_TYPE_KINDS.get(message_type)
        url = content.get("url") if isinstance(content, dict) else None
        if kind is None or not isinstance(url, str) or not url or content.get("media_id"):
            return content
        from wework.server.application.webhooks import TargetRefused

        kept = {k: v for k, v in content.items() if k != "url"}  # the provider's link expires
        once = Idempotency(RECEIVE_OPERATION, received_media_key(effect_key, 0)) if effect_key else None
        media = await self._media.stored_once(tenant_id, once) if once is not None else None
        if media is None:
            try:
                media = await self._fetch(tenant_id, kind, url, str(content.get("file_name") or ""), once)
            except (TargetRefused, InvalidArgument, QuotaExceeded) as exc:
                # Final for this media: the message still arrives, without it, and says why.
                log.warning("incoming %s media of tenant %s not stored: %s", message_type, tenant_id, exc)
                return {**kept, "media_error": str(exc)[:300]}
        return {**kept, "media_id": media.id, "file_name": media.file_name, "content_type": media.content_type,
                "size_bytes": media.size_bytes, "sha256": media.sha256}

    async def _fetch(self, tenant_id: str, kind: MediaKind, url: str, file_name: str,
                     once: Idempotency | None) -> Media:
        from urllib.parse import urlsplit

        if urlsplit(url).scheme not in ("http", "https"):
            raise InvalidArgument(FieldViolation("content.url", "the media URL is not http(s)"))
        limit = KIND_LIMITS[kind]
        try:
            async with self._http.request("GET", url) as answer:
                if answer.status != 200:
                    raise InvalidArgument(FieldViolation("content.url", f"the media URL answered HTTP {answer.status}"))
                size = int(answer.headers.get("content-length") or 0)
                if not 0 < size <= limit:
                    raise InvalidArgument(FieldViolation(
                        "content.url", f"the media's Content-Length must be 1-{limit} bytes for {kind.value} media"))
                name = file_name or urlsplit(url).path.rsplit("/", 1)[-1]
                declaration = UploadDeclaration(kind=kind, file_name=name, declared_content_type="", size_bytes=size,
                                                sha256="", request_id="")
                return await self._media.store_for_tenant(tenant_id, declaration, answer.content.iter_chunked(1 << 16),
                                                          source="received", once=once)
        except TRANSPORT_ERRORS as exc:
            # Never the URL in the error: the provider's link may carry a token.
            raise MediaFetchFailed(f"fetching the media failed: {describe(exc)}") from None
