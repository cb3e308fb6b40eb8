"""`wework-server --workers N`: N processes on one port (SO_REUSEPORT), supervised by the parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import grpc
import harness
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serverproc import BIN, TEST_ADMIN_KEY, ServerProcess, free_port, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, WeworkClient
from wework.v1 import tenant_pb2 as pb

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def config_path(mariadb_server, redis_server, tmp_path_factory):
    """Migrated MariaDB shards + the real Redis: the settings every server of this module uses."""
    workdir = tmp_path_factory.mktemp("multiprocess")
    prefix = harness.new_db_prefix("mp")
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    path = settings_yaml(workdir / "settings.yaml", config.model_dump(mode="json"), redis_server.url,
                         redis={"key_prefix": f"{prefix}:"})
    migrated = run_admin(path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    yield path
    mariadb_server.drop_databases(prefix + "_")


@pytest.fixture
def workers(config_path, tmp_path):
    # With the provider callback ingress on: its port is not shared, so only worker 0 may bind it.
    server = start_server(tmp_path, config_path, args=("--workers", "2"), name="workers",
                          env={"WEWORK_CALLBACK__HTTP_PORT": str(free_port())})
    # Every worker must be up, not only the first to answer a probe.
    deadline = time.monotonic() + 60
    while len(worker_pids(server)) < 2:
        assert time.monotonic() < deadline, server.log()[-4000:]
        assert server.proc.poll() is None, server.log()[-4000:]
        time.sleep(0.2)
    yield server
    server.stop(signal.SIGTERM)


def _json_lines(server: ServerProcess) -> list[dict]:
    out = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def worker_pids(server: ServerProcess) -> set[int]:
    return {rec["pid"] for rec in _json_lines(server) if rec.get("message") == "gRPC server listening"}


def _served_by(server: ServerProcess, method: str) -> list[int]:
    return [rec["pid"] for rec in _json_lines(server) if rec.get("message") == "rpc" and rec.get("method") == method]


def _wait_served(server: ServerProcess, method: str, n: int, timeout: float = 10.0) -> list[int]:
    """The pids in the access log lines of `method` once there are `n` of them (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while len(served := _served_by(server, method)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return served


def _fresh_channel(target: str) -> grpc.Channel:
    # A private subchannel pool: a new TCP connection per channel, so the kernel picks a
    # listener anew (channels of one process otherwise share one connection).
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def test_calls_over_fresh_connections_are_spread_over_both_workers(workers):
    pids = worker_pids(workers)
    assert len(pids) == 2 and workers.proc.pid not in pids
    for _ in range(40):
        with _fresh_channel(workers.target) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
    # The access log line is written after the response: wait for the 40 lines, not a fixed time.
    served = _wait_served(workers, "/grpc.health.v1.Health/Check", 40)
    assert len(served) >= 40 and set(served) == pids
    ingress = [rec for rec in _json_lines(workers) if "callback ingress listening" in rec.get("message", "")]
    assert len(ingress) == 1


def test_a_tenant_created_through_one_worker_is_visible_through_the_other(workers):
    code = f"mp{os.urandom(5).hex()}"
    with WeworkClient(ClientOptions(target=workers.target, api_key=TEST_ADMIN_KEY)) as admin:
        tenant = admin.tenants.create_tenant(pb.Tenant(tenant_code=code, tenant_name="Multi"))
    created_by = _wait_served(workers, "/wework.v1.TenantService/CreateTenant", 1)
    for _ in range(30):
        with WeworkClient(ClientOptions(target=workers.target, api_key=TEST_ADMIN_KEY,
                                        channel_options=(("grpc.use_local_subchannel_pool", 1),))) as admin:
            assert admin.tenants.get_tenant(tenant.id).tenant_code == code
    readers = set(_wait_served(workers, "/wework.v1.TenantService/GetTenant", 30))
    # The reads hit both workers, so at least one is not the process that created it.
    assert readers == worker_pids(workers) and created_by


def test_sigterm_stops_every_worker_and_exits_0(workers):
    pids = worker_pids(workers)
    started = time.monotonic()
    workers.proc.send_signal(signal.SIGTERM)
    assert workers.proc.wait(5 + 15) == 0, workers.log()[-4000:]  # grace_period_seconds is 5
    assert time.monotonic() - started < 20
    for pid in pids:
        assert not _alive(pid)


def test_a_killed_worker_stops_the_others_and_the_parent_fails(workers):
    victim, other = sorted(worker_pids(workers))
    os.kill(victim, signal.SIGKILL)
    code = workers.proc.wait(30)
    assert code != 0
    assert not _alive(other)
    assert "exited unexpectedly" in workers.log()


def test_workers_in_the_embedded_mode_exit_2_naming_the_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEWORK_")}
    done = subprocess.run([str(BIN / "wework-server"), "--workers", "2", "--data-dir", str(tmp_path / "var")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "server.workers" in done.stderr and "WEWORK_SERVER__WORKERS" in done.stderr
    assert "embedded" in done.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: its parent has not reaped it yet.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
