"""The client-only distribution: `wework-client` built from clients/ with `python -m build`,
installed alone into a fresh virtualenv (pip's cache keeps this quick), calls a real server
on a real port, and has no server code to import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from serverproc import start_server

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]

CLIENT_SCRIPT = r"""
import asyncio, importlib.util, json, sys
from wework.client import AsyncWeworkClient, ClientOptions, NotFoundError, WeworkClient
from wework.v1 import tenant_pb2 as pb

target, key = sys.argv[1], sys.argv[2]
result = {"server_importable": importlib.util.find_spec("wework.server") is not None,
          "persistence_importable": importlib.util.find_spec("wework.persistence") is not None}
try:
    import wework.server  # noqa: F401
except ImportError:
    result["import_wework_server"] = "ImportError"
with WeworkClient(ClientOptions(target, api_key=key)) as client:
    tenant = client.tenants.create_tenant(pb.Tenant(tenant_code="wheel", tenant_name="Wheel"))
    pager = client.tenants.list_tenants(page_size=1)
    result["listed"] = [t.tenant_code for t in pager]
    try:
        client.tenants.get_tenant("01910000-0000-7000-8000-000000000000")
    except NotFoundError as exc:
        result["not_found_reason"] = exc.reason

# A token provider that logs in through its own client; a stale token does not block Login.
with WeworkClient(ClientOptions(target, api_key=key, tenant_id=tenant.id)) as admin:
    admin_role = next(r.id for r in admin.tenants.list_roles() if r.role_code == "admin")
    admin.tenants.create_user(pb.User(username="ann", email="ann@example.com", password="pw-123456-long",
                                      role_ids=[admin_role]))
stale = ClientOptions(target, access_token="expired-or-garbage")
with WeworkClient(stale) as client:
    logins = []

    def provider():
        login = client.tenants.login(tenant_code="wheel", username="ann", password="pw-123456-long")
        logins.append(login.user.username)
        return login.access_token

    as_ann = client.with_options(token_provider=provider)
    result["users"] = [u.username for u in as_ann.tenants.list_users()]
    result["logins"] = logins

async def main():
    async with AsyncWeworkClient(ClientOptions(target, api_key=key)) as client:
        return (await client.tenants.get_tenant(tenant.id)).tenant_name

result["async_name"] = asyncio.run(main())
print(json.dumps(result))
"""


def test_client_dependencies_match_the_server_distribution() -> None:
    # The server's wheel ships the client's files too: it must ask for the same packages.
    client = tomllib.loads((REPO / "clients" / "pyproject.toml").read_text())["project"]
    platform = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert client["dependencies"] == platform["dependencies"]
    assert client["optional-dependencies"]["tracing"] == platform["optional-dependencies"]["tracing"]
    assert client["version"] == platform["version"]


def test_the_client_wheel_alone_calls_a_running_server(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
                    str(REPO / "clients")], check=True, capture_output=True, timeout=120)
    (wheel,) = dist.glob("wework_client-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # The pinned versions, from pip's cache when it has them; nothing of the repository.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(REPO / "constraints.txt"), str(wheel)],
        capture_output=True, text=True, timeout=600, env=env, check=False)
    assert installed.returncode == 0, installed.stderr

    (tmp_path / "server").mkdir()
    server = start_server(tmp_path / "server")
    try:
        secrets = json.loads((tmp_path / "server" / "var" / "secrets.json").read_text())
        ran = subprocess.run([str(python), "-c", CLIENT_SCRIPT, server.target, secrets["admin_api_key"]],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False)
    finally:
        server.stop()
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result == {
        "server_importable": False,
        "persistence_importable": False,
        "import_wework_server": "ImportError",
        "listed": ["wheel"],
        "not_found_reason": "NOT_FOUND",
        "async_name": "Wheel",
        "users": ["ann"],
        "logins": ["ann"],
    }
