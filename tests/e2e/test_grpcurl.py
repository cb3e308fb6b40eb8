"""Operators' view: the real grpcurl binary against a running server, with no proto files."""

from __future__ import annotations

import json
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
