"""Operators' view: the real grpcurl binary against a running server, with no proto files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from serverproc import TEST_ADMIN_KEY

pytestmark = [pytest.mark.e2e]
GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def grpcurl(target: str, *args: str, data: dict | None = None, headers: dict | None = None):
    cmd = [GRPCURL, "-plaintext"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if data is not None:
        cmd += ["-d", json.dumps(data)]
    return subprocess.run([*cmd, target, *args], capture_output=True, text=True, check=False, timeout=60)


def test_reflection_lists_and_describes_services(platform):
    listed = grpcurl(platform.server.target, "list")
    assert listed.returncode == 0, listed.stderr
    services = set(listed.stdout.split())
    assert {"wework.v1.TenantService", "grpc.health.v1.Health"} <= services
    described = grpcurl(platform.server.target, "describe", "wework.v1.TenantService")
    assert described.returncode == 0, described.stderr
    assert "rpc CreateTenant ( .wework.v1.CreateTenantRequest ) returns ( .wework.v1.Tenant )" in described.stdout
    message = grpcurl(platform.server.target, "describe", "wework.v1.Tenant")
    assert "string tenant_code = 2;" in message.stdout


def test_health_per_service(platform):
    for service in ("", "wework.v1.TenantService"):
        out = grpcurl(platform.server.target, "grpc.health.v1.Health/Check", data={"service": service})
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["status"] == "SERVING"


def test_create_and_get_a_tenant_from_json(platform):
    code = f"cli{uuid.uuid4().hex[:10]}"
    created = grpcurl(platform.server.target, "wework.v1.TenantService/CreateTenant",
                      headers={"x-api-key": TEST_ADMIN_KEY},
                      data={"tenant": {"tenant_code": code, "tenant_name": "From grpcurl", "max_accounts": 4},
                            "request_id": str(uuid.uuid4())})
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    # grpcurl prints the proto field names.
    assert tenant["tenant_code"] == code and tenant["max_accounts"] == 4
    assert tenant["status"] == "TENANT_STATUS_ACTIVE"
    got = grpcurl(platform.server.target, "wework.v1.TenantService/GetTenant",
                  headers={"x-api-key": TEST_ADMIN_KEY}, data={"id": tenant["id"]})
    assert json.loads(got.stdout)["id"] == tenant["id"]


def test_errors_show_code_and_message(platform):
    out = grpcurl(platform.server.target, "wework.v1.TenantService/CreateTenant",
                  headers={"x-api-key": TEST_ADMIN_KEY}, data={"tenant": {"tenant_code": "Bad!"}})
    assert out.returncode != 0
    assert "InvalidArgument" in out.stderr and "tenant.tenant_code" in out.stderr
    anonymous = grpcurl(platform.server.target, "wework.v1.TenantService/ListTenants", data={})
    assert "Unauthenticated" in anonymous.stderr


# ---- docs/grpcurl.md: every recipe, run as written ------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs"
RECIPE_SERVICES = ("TenantService", "AccountService", "MessageService", "ReportService", "CallbackService",
                   "SimulatorService", "MediaService")


def _sh_blocks(document: Path) -> list[str]:
    parts = document.read_text().split("```sh\n")[1:]
    return [part.split("```", 1)[0] for part in parts]


def test_every_grpcurl_recipe_runs_as_written_against_the_embedded_default(tmp_path, monkeypatch):
    from serverproc import start_server

    for key in [k for k in os.environ if k.startswith("WEWORK_")]:
        monkeypatch.delenv(key)
    blocks = _sh_blocks(DOCS / "grpcurl.md")
    script = "\n".join(blocks)
    # A newcomer runs the README's tour first, then this page, on the same server.
    readme = (DOCS.parent / "README.md").read_text()
    readme_tour = readme[readme.index("<!-- readme-tour:"):].split("```sh\n", 1)[1].split("```", 1)[0]
    # Every service has recipes, the streaming calls included.
    for method in ("ImportBatchTargets", "WatchAccounts", "WatchBatchTask", "ExportMessageStats"):
        assert f"/{method}" in script
    for service in RECIPE_SERVICES:
        assert f"wework.v1.{service}/" in script, service
    server = start_server(tmp_path)  # the embedded default, as after `make run`
    try:
        script = script.replace("S=127.0.0.1:50051", f"S={server.target}")
        script = readme_tour.replace("127.0.0.1:50051", server.target) + "\n" + script
        # The server's directory holds var/ as the repository root does after `make run`; grpcurl
        # comes from the PATH step (a PATH without the virtualenv otherwise).
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("WEWORK_")},
               "PATH": f"{Path(GRPCURL).parent}:/usr/bin:/bin", "WEWORK_PORT": str(server.port)}
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                             capture_output=True, text=True, check=False, timeout=240)
        assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        assert "BATCH_TASK_STATUS_COMPLETED" in out.stdout  # WatchBatchTask followed the task to its end
        assert '"imported_count": "2"' in out.stdout  # one stream of two requests
        assert "hello, is my order on its way?" in out.stdout  # the simulated message's conversation
    finally:
        assert server.stop() == 0


def test_quickstart_on_a_configured_deployment(platform):
    code = f"qs{uuid.uuid4().hex[:8]}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WEWORK_")},
           "WEWORK_CONFIG_FILE": str(platform.config_path)}
    out = subprocess.run([str(Path(GRPCURL).parent / "wework-admin"), "quickstart", "--target",
                          platform.server.target, "--tenant-code", code],
                         env=env, capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines())
    listed = grpcurl(platform.server.target, "wework.v1.AccountService/ListAccounts",
                     headers={"authorization": f"Bearer {exports['WEWORK_ACCESS_TOKEN'].strip(chr(39))}"}, data={})
    assert listed.returncode == 0, listed.stderr
    tenant = grpcurl(platform.server.target, "wework.v1.TenantService/GetTenant",
                     headers={"x-api-key": exports["WEWORK_API_KEY"].strip("'")},
                     data={"id": exports["WEWORK_TENANT_ID"].strip("'")})
    assert json.loads(tenant.stdout)["tenant_code"] == code
