"""Object storage of media behind one interface: an S3-compatible store (aiobotocore) or a local
directory (the embedded default). docs/decisions/0033-media-object-storage.md says why.

Uploads come in parts of at most `part_size` bytes: a file of one part is one PUT; a larger one
is a multipart upload whose parts go up as they arrive, so an upload holds one part in memory.
Nothing is visible under the final key before `complete()`; `abort()` leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import jwt

log = logging.getLogger(__name__)
READ_CHUNK = 1024 * 1024
LINK_AUDIENCE = "wework-media-link"
ABORT_RECHECKS, ABORT_RECHECK_SECONDS = 5, 0.5


class StoredObjectMissing(Exception):
    """The object is not in the store (deleted behind the platform's back)."""


class MultipartUpload(Protocol):
    async def put_part(self, data: bytes | bytearray) -> None: ...

    async def complete(self) -> None: ...

    async def abort(self) -> None: ...


class ObjectStore(Protocol):
    part_size: int

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def start_multipart(self, key: str, content_type: str) -> MultipartUpload: ...

    def read(self, key: str) -> AsyncIterator[bytes]: ...

    async def delete(self, key: str) -> None: ...

    async def download_url(self, key: str, ttl_seconds: int, file_name: str, content_type: str) -> str: ...

    async def abort_incomplete(self, prefix: str, older_than: datetime) -> int: ...

    async def close(self) -> None: ...


def content_disposition(file_name: str) -> str:
    # RFC 6266/5987: the sanitised name, UTF-8 percent-encoded, plus an ASCII fallback.
    ascii_name = file_name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file_name)}"


# ---- S3 ------------------------------------------------------------------------------------


class S3Store:
    """Any S3-compatible server, through aiobotocore (botocore's signing and retries, on aiohttp)."""

    def __init__(self, client: Any, stack: AsyncExitStack, bucket: str, part_size: int,
                 sse: dict[str, str]) -> None:
        self._client, self._stack, self._bucket = client, stack, bucket
        self.part_size = part_size
        self._sse = sse  # ServerSideEncryption / SSEKMSKeyId, passed through on every write

    @classmethod
    async def connect(cls, cfg: Any, part_size: int) -> S3Store:
        import aiobotocore.session
        from botocore.config import Config

        stack = AsyncExitStack()
        session = aiobotocore.session.get_session()
        client = await stack.enter_async_context(session.create_client(
            "s3", endpoint_url=cfg.endpoint_url, region_name=cfg.region,
            aws_access_key_id=cfg.access_key_id.get_secret_value() if cfg.access_key_id else None,
            aws_secret_access_key=cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None,
            config=Config(signature_version="s3v4", s3={"addressing_style": cfg.addressing_style},
                          retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                          # Content-MD5 guards each PUT; a second (CRC) pass over every part is not needed.
                          request_checksum_calculation="when_required")))
        sse: dict[str, str] = {}
        if cfg.server_side_encryption:
            sse["ServerSideEncryption"] = cfg.server_side_encryption
        if cfg.sse_kms_key_id:
            sse["SSEKMSKeyId"] = cfg.sse_kms_key_id
        store = cls(client, stack, cfg.bucket, part_size, sse)
        if cfg.create_bucket:
            await store._ensure_bucket()
        return store

    async def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            await self._client.head_bucket(Bucket=self._bucket)
        except ClientError:
            with contextlib.suppress(ClientError):  # made meanwhile by another replica
                await self._client.create_bucket(Bucket=self._bucket)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type,
                                      ContentMD5=_md5(data), **self._sse)

    async def start_multipart(self, key: str, content_type: str) -> MultipartUpload:
        started = await self._client.create_multipart_upload(Bucket=self._bucket, Key=key,
                                                             ContentType=content_type, **self._sse)
        return _S3Multipart(self._client, self._bucket, key, started["UploadId"])

    async def read(self, key: str) -> AsyncIterator[bytes]:  # type: ignore[override]
        from botocore.exceptions import ClientError

        try:
            answer = await self._client.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoredObjectMissing(key) from None
            raise
        async with answer["Body"] as body:
            while chunk := await body.read(READ_CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self._bucket, Key=key)

    async def download_url(self, key: str, ttl_seconds: int, file_name: str, content_type: str) -> str:
        return await self._client.generate_presigned_url("get_object", ExpiresIn=ttl_seconds, Params={
            "Bucket": self._bucket, "Key": key, "ResponseContentType": content_type,
            "ResponseContentDisposition": content_disposition(file_name)})

    async def abort_incomplete(self, prefix: str, older_than: datetime) -> int:
        aborted = 0
        paginator = self._client.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for up in page.get("Uploads", []):
                initiated = up.get("Initiated")
                if initiated is not None and initiated < older_than:
                    await self._client.abort_multipart_upload(Bucket=self._bucket, Key=up["Key"],
                                                              UploadId=up["UploadId"])
                    aborted += 1
        return aborted

    async def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (tests and the bench)."""
        out = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    async def close(self) -> None:
        await self._stack.aclose()


class _S3Multipart:
    def __init__(self, client: Any, bucket: str, key: str, upload_id: str) -> None:
        self._client, self._bucket, self._key, self._id = client, bucket, key, upload_id
        self._parts: list[dict[str, Any]] = []
        self._part_in_flight = False

    async def put_part(self, data: bytes | bytearray) -> None:
        number = len(self._parts) + 1
        self._part_in_flight = True
        answer = await self._client.upload_part(Bucket=self._bucket, Key=self._key, UploadId=self._id,
                                                PartNumber=number, Body=data, ContentMD5=_md5(data))
        self._part_in_flight = False
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def complete(self) -> None:
        await self._client.complete_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._id,
                                                     MultipartUpload={"Parts": self._parts})

    async def abort(self) -> None:
        from botocore.exceptions import ClientError

        await self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._id)
        if not self._part_in_flight:
            return
        # A part cut off mid-request may still land after the abort and bring the upload back
        # (S3's documentation: abort again until no part is left).
        for _ in range(ABORT_RECHECKS):
            await asyncio.sleep(ABORT_RECHECK_SECONDS)
            try:
                await self._client.list_parts(Bucket=self._bucket, Key=self._key, UploadId=self._id)
            except ClientError:
                return  # NoSuchUpload: gone
            await self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._id)


def _md5(data: bytes) -> str:
    import base64

    # Integrity on the wire (S3 refuses a part whose bytes do not match), not a security hash.
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


# ---- local directory -----------------------------------------------------------------------


class LinkSigner:
    """Time-limited links to media served by the platform's HTTP listener (local backend): a
    JWT (HS256, its own audience) naming the key, file name and type, with an expiry."""

    def __init__(self, token_secret: bytes, base_url: str | None) -> None:
        # A key of its own, derived: a link can never pass for an access token or the reverse.
        self._key = hmac.new(token_secret, b"wework media links", hashlib.sha256).digest()
        self.base_url = base_url.rstrip("/") if base_url else None

    def sign(self, key: str, ttl_seconds: int, file_name: str, content_type: str) -> str:
        claims = {"aud": LINK_AUDIENCE, "exp": int(time.time()) + ttl_seconds, "k": key, "n": file_name,
                  "t": content_type}
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str) -> dict[str, Any] | None:
        try:
            return jwt.decode(token, self._key, algorithms=["HS256"], audience=LINK_AUDIENCE)
        except jwt.PyJWTError:
            return None


LOCAL_LINK_PATH = "/media/download"
INCOMPLETE_DIR = ".incomplete"


class LocalStore:
    """A directory: objects are files at their key; an upload writes a temporary file under
    .incomplete/ and renames it into place, so a cut upload never shows under its key."""

    def __init__(self, root: Path, part_size: int, signer: LinkSigner) -> None:
        self.root, self.part_size, self.signer = root, part_size, signer
        (root / INCOMPLETE_DIR).mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("key outside the media directory")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        upload = await self.start_multipart(key, content_type)
        await upload.put_part(data)
        await upload.complete()

    async def start_multipart(self, key: str, content_type: str) -> MultipartUpload:
        temp = self.root / INCOMPLETE_DIR / uuid.uuid4().hex
        return _LocalUpload(temp, self.path(key))

    async def read(self, key: str) -> AsyncIterator[bytes]:  # type: ignore[override]
        try:
            fh = await asyncio.to_thread(open, self.path(key), "rb")
        except FileNotFoundError:
            raise StoredObjectMissing(key) from None
        try:
            while chunk := await asyncio.to_thread(fh.read, READ_CHUNK):
                yield chunk
        finally:
            fh.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, True)

    async def download_url(self, key: str, ttl_seconds: int, file_name: str, content_type: str) -> str:
        if self.signer.base_url is None:
            from wework.domain.errors import FailedPrecondition

            raise FailedPrecondition("download links of the local media backend are served by the HTTP "
                                     "listener: set callback.http_port (or media.public_base_url)")
        token = self.signer.sign(key, ttl_seconds, file_name, content_type)
        return f"{self.signer.base_url}{LOCAL_LINK_PATH}?token={token}"

    async def abort_incomplete(self, prefix: str, older_than: datetime) -> int:
        def sweep() -> int:
            removed, cutoff = 0, older_than.timestamp()
            for entry in os.scandir(self.root / INCOMPLETE_DIR):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            return removed

        return await asyncio.to_thread(sweep)

    async def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        return [str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file()] if base.exists() else []

    async def close(self) -> None:
        return None


class _LocalUpload:
    def __init__(self, temp: Path, final: Path) -> None:
        self._temp, self._final = temp, final
        self._fh: Any = None

    async def put_part(self, data: bytes) -> None:
        if self._fh is None:
            self._fh = await asyncio.to_thread(open, self._temp, "wb")
        await asyncio.to_thread(self._fh.write, data)

    async def complete(self) -> None:
        def finish() -> None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._temp, self._final)

        await asyncio.to_thread(finish)

    async def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
        await asyncio.to_thread(self._temp.unlink, True)


async def build_store(media: Any, data_dir: Path, token_secret: bytes, link_base_url: str | None) -> ObjectStore:
    """The store the settings (`media`, a MediaConfig) name."""
    if media.backend == "s3":
        return await S3Store.connect(media.s3, media.part_size_bytes)
    root = (media.local_dir or data_dir / "media").resolve()
    return LocalStore(root, media.part_size_bytes, LinkSigner(token_secret, media.public_base_url or link_base_url))


def utcnow() -> datetime:
    return datetime.now(UTC)
