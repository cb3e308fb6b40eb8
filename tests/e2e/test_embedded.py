"""The README's `make run`: wework-server with no settings runs on the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from serverproc import BIN, free_port, start_server
from wework.client import ClientOptions, WeworkClient
from wework.v1 import tenant_pb2 as pb

pytestmark = [pytest.mark.e2e]


def _clean_env() -> dict[str, str]:
    # Nothing from the developer's shell may leak in: this is what a new user runs.
    return {k: v for k, v in os.environ.items() if not k.startswith("WEWORK_")}


def test_embedded_default_starts_answers_and_keeps_data(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("WEWORK_")]:
        monkeypatch.delenv(key)
    server = start_server(tmp_path)
    try:
        banner = server.log()
        assert f"listening on 127.0.0.1:{server.port}" in banner and "grpcurl" in banner
        secrets = json.loads((tmp_path / "var" / "secrets.json").read_text())
        assert oct((tmp_path / "var" / "secrets.json").stat().st_mode & 0o777) == "0o600"
        with WeworkClient(ClientOptions(target=server.target, api_key=secrets["admin_api_key"])) as admin:
            tenant = admin.tenants.create_tenant(pb.CreateTenantRequest(
                tenant=pb.Tenant(tenant_code="embedded", tenant_name="Embedded")))
        assert list((tmp_path / "var" / "data").glob("*.db"))
    finally:
        assert server.stop() == 0
    # A restart finds the tenant again (SQLite files, same generated secrets).
    again = start_server(tmp_path)
    try:
        with WeworkClient(ClientOptions(target=again.target, api_key=secrets["admin_api_key"])) as admin:
            assert admin.tenants.get_tenant(pb.GetTenantRequest(id=tenant.id)).tenant_code == "embedded"
    finally:
        again.stop()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEWORK_PORT": "not-a-port"}, "WEWORK_PORT"),
        ({"WEWORK_SERVER__SERVICES": "tenant,nonsense"}, "WEWORK_SERVER__SERVICES"),
        ({"WEWORK_DATABASE__DIRECTORY_DSN": "mysql+aiomysql://root@127.0.0.1:1/x"}, "WEWORK_SECURITY__ADMIN_API_KEY"),
    ],
)
def test_a_bad_setting_stops_the_process_and_names_the_setting(tmp_path, env, named):
    # --port would override WEWORK_PORT, so the port comes from the environment here.
    env = {"WEWORK_PORT": str(free_port()), **env}
    out = subprocess.run([str(BIN / "wework-server")], cwd=tmp_path,
                         env={**_clean_env(), **env}, capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 2
    assert named in out.stderr


def test_cli_help_documents_the_port(tmp_path):
    out = subprocess.run([sys.executable, "-m", "wework.server.cli", "--help"], capture_output=True, text=True, check=False,
                         cwd=tmp_path, timeout=60)
    assert "--port" in out.stdout and "WEWORK_PORT" in out.stdout
    assert Path(BIN / "wework-admin").exists()


def test_a_message_only_process_serves_messages_without_serving_accounts(tmp_path, monkeypatch):
    """The chart runs MessageService in its own Deployment (`--services message`)."""
    from wework.client import NotFoundError
    from wework.v1 import message_pb2

    for key in [k for k in os.environ if k.startswith("WEWORK_")]:
        monkeypatch.delenv(key)
    server = start_server(tmp_path, args=("--services", "message"), wait_service="wework.v1.MessageService")
    try:
        listed = subprocess.run([str(BIN / "grpcurl"), "-plaintext", server.target, "list"], capture_output=True,
                                text=True, check=False, timeout=60).stdout.split()
        assert "wework.v1.MessageService" in listed
        assert "wework.v1.AccountService" not in listed and "wework.v1.TenantService" not in listed
        secrets = json.loads((tmp_path / "var" / "secrets.json").read_text())
        options = ClientOptions(target=server.target, api_key=secrets["admin_api_key"],
                                tenant_id="0190d2f3-0000-7000-8000-000000000000")
        with WeworkClient(options) as admin, pytest.raises(NotFoundError):
            admin.messages.send_message(message_pb2.SendMessageRequest(
                account_id="0190d2f3-0000-7000-8000-000000000001", conversation_id="wm-1",
                content=message_pb2.MessageContent(text=message_pb2.TextContent(text="hi"))))
    finally:
        assert server.stop() == 0
