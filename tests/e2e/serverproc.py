"""Runs the real `wework-server` as a subprocess on a free port, as an operator would."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import httpcall
from wework.v1 import account_pb2 as apb

BIN = Path(sys.executable).parent
TEST_ADMIN_KEY = "wwadmin_test_only_0123456789abcdef"
TEST_SECURITY = {
    "admin_api_key": TEST_ADMIN_KEY,
    "token_secret": "test-only-token-secret-0123456789abcdef",
    "lookup_hash_key": "test-only-lookup-key-0123456789abcdef",
    # base64 of 32 bytes: test-only key
    "encryption_keys": {"k1": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
    "active_encryption_key_id": "k1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_yaml(path: Path, database: dict | None, redis_url: str, **extra) -> Path:
    # Metrics on a free loopback port: concurrent test servers must not fight over 9464.
    doc: dict = {"redis": {"url": redis_url}, "security": dict(TEST_SECURITY),  # extra= updates it
                 "server": {"grace_period_seconds": 5, "health_check_interval_seconds": 0.5},
                 "observability": {"metrics_host": "127.0.0.1", "metrics_port": free_port()}}
    if database is not None:
        doc["database"] = database
    for key, value in extra.items():
        doc.setdefault(key, {}).update(value) if isinstance(value, dict) else doc.__setitem__(key, value)
    path.write_text(yaml.safe_dump(doc))
    return path


def run_admin(config: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "WEWORK_CONFIG_FILE": str(config)}
    return subprocess.run([str(BIN / "wework-admin"), *args], env=env, capture_output=True, text=True, check=False,
                          timeout=timeout)


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def metrics_port(self) -> int | None:
        """The /metrics port the server logged ("metrics endpoint listening"), None if none."""
        for line in self.log().splitlines():
            if "metrics endpoint listening" in line:
                found = re.search(r'metrics_port"?[=:] ?(\d+)', line)  # JSON or text log format
                if found:
                    return int(found.group(1))
        return None

    @property
    def metrics_url(self) -> str:
        port = self.metrics_port
        if port is None:
            raise RuntimeError(f"the server logged no metrics endpoint:\n{self.log()[-4000:]}")
        return f"http://127.0.0.1:{port}/metrics"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_server(workdir: Path, config: Path | None = None, *, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, name: str = "server",
                 wait_service: str = "wework.v1.TenantService", timeout: float = 60) -> ServerProcess:
    port = free_port()
    log_path = workdir / f"{name}-{port}.log"
    full_env = {**os.environ, **(env or {})}
    if config is not None:
        full_env["WEWORK_CONFIG_FILE"] = str(config)
    else:
        # No settings file to carry a free metrics port: let the server pick one (and log it).
        full_env.setdefault("WEWORK_OBSERVABILITY__METRICS_PORT", "0")
    log = open(log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
    proc = subprocess.Popen([str(BIN / "wework-server"), "--port", str(port), *args], cwd=workdir,
                            env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, port, log_path)
    wait_serving(server, wait_service, timeout)
    return server


def wait_serving(server: ServerProcess, service: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"wework-server exited with {server.proc.returncode}:\n{server.log()[-4000:]}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"wework-server did not become SERVING in {timeout} s:\n{server.log()[-4000:]}")


def wait_http(url: str, timeout: float = 20) -> None:
    """Waits until an HTTP server answers `url` (any status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpcall.get(url, timeout=1)
            return
        except httpcall.TRANSPORT_ERRORS:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def online_account(client, name: str = "sender", timeout: float = 20) -> apb.Account:
    """Creates an account with `client` (a WeworkClient) and logs it in through the server's
    provider simulator; returns the account once it is ONLINE."""
    account = client.accounts.create_account(apb.Account(account_name=name))
    client.accounts.start_login(account.id)
    deadline = time.monotonic() + timeout
    while True:
        account = client.accounts.get_account(account.id)
        if account.status == apb.ACCOUNT_STATUS_ONLINE:
            return account
        if time.monotonic() > deadline:
            raise AssertionError(f"account {account.id} did not come online in {timeout:g} s: "
                                 f"{apb.AccountStatus.Name(account.status)}")
        time.sleep(0.1)
