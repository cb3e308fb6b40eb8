"""The platform inside network namespaces (netlab.py), for partition and slowness drills.

Everything here is private to the drills: a mariadbd and a redis-server started inside their own
namespaces by the harness (never the shared servers), the provider simulator, and one
wework-server (with its dispatcher and callback ingress) in the `app` namespace. Where the
kernel or the user cannot make namespaces, the drills are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import harness
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import httpcall

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))  # serverproc: settings of a test server
from drill_report import RECOVERY
from netlab import LabUnavailable, NetLab
from serverproc import BIN, settings_yaml

SECRET = "drill-callback-secret"
GRPC_PORT, INGRESS_PORT, SIM_PORT = 50051, 8080, 8600


def pytest_terminal_summary(terminalreporter) -> None:
    if RECOVERY:
        terminalreporter.section("partition and slowness drills: time to recover")
        for line in RECOVERY:
            terminalreporter.write_line(line)


@dataclass
class LabPlatform:
    lab: NetLab
    target: str  # the server's gRPC address, from the test's namespace
    db: harness.MariaDBServer  # the private mariadbd, from the test's namespace
    config: object  # DatabaseConfig of the server
    sim_url: str  # the simulator, from the test's namespace
    workdir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    server: subprocess.Popen | None = None

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _start(lab: NetLab, role: str, args: list[str], log_path: Path, env: dict[str, str] | None = None):
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen([*lab.exec_prefix(role), *args], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def _wait_serving(target: str, proc: subprocess.Popen, log, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"wework-server exited with {proc.returncode}:\n{log()}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service="wework.v1.MessageService"),
                              timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"wework-server did not become SERVING in {timeout} s:\n{log()}")


def skip(reason: str) -> None:
    """Skips the drills, and says so in the run's summary too: never silently."""
    RECOVERY.append(f"all drills SKIPPED: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def lab_platform(tmp_path_factory):
    if os.geteuid() != 0:
        skip("the partition drills make network namespaces and veth pairs: they need root (CAP_NET_ADMIN)")
    lab = NetLab()
    try:
        lab.create(["app", "db", "redis", "prov"])
    except LabUnavailable as exc:
        lab.close()
        skip(f"the kernel refuses network namespaces here: {exc}")
    workdir = tmp_path_factory.mktemp("drills")
    mariadb = redis = None
    platform = None
    try:
        app_db, app_redis, app_prov = lab.connect("app", "db"), lab.connect("app", "redis"), lab.connect("app", "prov")
        root_app, root_db = lab.connect(None, "app"), lab.connect(None, "db")
        root_redis, root_prov = lab.connect(None, "redis"), lab.connect(None, "prov")
        mariadb = harness.start_private_mariadb(netns=lab.ns("db"), host=root_db.b_ip)
        redis = harness.start_private_redis(netns=lab.ns("redis"), host=root_redis.b_ip)
        sim = _start(lab, "prov", [
            sys.executable, "-m", "wework.server.providers.sim_server", "--host", "0.0.0.0", "--port", str(SIM_PORT),
            "--callback-url", f"http://{app_prov.a_ip}:{INGRESS_PORT}/provider/callbacks",
            "--callback-secret", SECRET,
            "--config", json.dumps({"scan_delay_seconds": 0.1, "confirm_delay_seconds": 0.1,
                                    "heartbeat_interval_seconds": 1, "delivery_delay_seconds": 0.01})],
            workdir / "sim.log")
        sim_url = f"http://{root_prov.b_ip}:{SIM_PORT}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpcall.get(sim_url + "/_requests", timeout=1)
                break
            except httpcall.TRANSPORT_ERRORS:
                assert time.monotonic() < deadline and sim.poll() is None, (workdir / "sim.log").read_text()
                time.sleep(0.1)

        # The server reaches the database, Redis and the provider over the links the drills cut.
        server_side_db = harness.MariaDBServer(app_db.b_ip, mariadb.port)
        config = harness.make_database_config(harness.new_db_prefix("n"), [server_side_db], 1,
                                              connect_timeout_seconds=2, pool_timeout_seconds=5)
        settings = settings_yaml(
            workdir / "server.yaml", config.model_dump(mode="json"), f"redis://{app_redis.b_ip}:6379/0",
            server={"host": "0.0.0.0", "grace_period_seconds": 5, "health_check_interval_seconds": 0.5},
            redis={"socket_timeout_seconds": 0.5},
            provider={"kind": "http", "base_url": f"http://{app_prov.b_ip}:{SIM_PORT}", "timeout_seconds": 1},
            callback={"http_host": "0.0.0.0", "http_port": INGRESS_PORT, "secret": SECRET},
            message={"account_min_interval_seconds": 0.02, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2,
                     "claim_lease_seconds": 15})
        env = {"WEWORK_CONFIG_FILE": str(settings)}
        migrated = subprocess.run([*lab.exec_prefix("app"), str(BIN / "wework-admin"), "migrate"], env={
            **os.environ, **env}, capture_output=True, text=True, timeout=300, check=False)
        assert migrated.returncode == 0, migrated.stderr
        platform = LabPlatform(lab, f"{root_app.b_ip}:{GRPC_PORT}", mariadb, config, sim_url, workdir, [sim])
        platform.server = _start(lab, "app", [str(BIN / "wework-server"), "--port", str(GRPC_PORT)],
                                 workdir / "server.log", env)
        platform.processes.append(platform.server)
        _wait_serving(platform.target, platform.server, platform.log)
        yield platform
    finally:
        if platform is not None:
            for proc in reversed(platform.processes):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(10)
        for server in (redis, mariadb):
            if server is not None:
                harness.servers.forget(server)
        lab.close()
