"""A real platform for end-to-end tests: MariaDB shards, Redis, wework-server on a free port."""

from __future__ import annotations

import signal
import uuid

import harness
import pytest
from serverproc import TEST_ADMIN_KEY, ServerProcess, run_admin, settings_yaml, start_server
from wework.client import ClientOptions, WeworkClient
from wework.v1 import tenant_pb2 as pb


@pytest.fixture(scope="module")
def platform(mariadb_server, redis_server, tmp_path_factory):
    """Two shards on the default MariaDB, the real Redis, one server process, migrated by wework-admin."""
    workdir = tmp_path_factory.mktemp("platform")
    prefix = harness.new_db_prefix("e")
    config = harness.make_database_config(prefix, [mariadb_server], 2)
    config_path = settings_yaml(workdir / "settings.yaml", config.model_dump(mode="json"),
                                redis_server.url, redis={"key_prefix": f"{prefix}:"})
    migrated = run_admin(config_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    server = start_server(workdir, config_path)
    yield Platform(server, config, config_path, workdir, prefix)
    server.stop(signal.SIGTERM)
    mariadb_server.drop_databases(prefix + "_")


class Platform:
    def __init__(self, server: ServerProcess, config, config_path, workdir, prefix) -> None:
        self.server, self.config, self.config_path, self.workdir, self.prefix = (
            server, config, config_path, workdir, prefix)

    def client(self, **options) -> WeworkClient:
        return WeworkClient(ClientOptions(target=self.server.target, **options))

    def admin(self, tenant_id: str | None = None) -> WeworkClient:
        return self.client(api_key=TEST_ADMIN_KEY, tenant_id=tenant_id)

    def new_tenant(self, **fields) -> tuple[pb.Tenant, str, dict[str, str]]:
        """Creates a tenant and an API key of its admin role: (tenant, key secret, role ids by code)."""
        code = fields.pop("tenant_code", None) or f"t{uuid.uuid4().hex[:12]}"
        with self.admin() as admin:
            tenant = admin.tenants.create_tenant(pb.CreateTenantRequest(
                tenant=pb.Tenant(tenant_code=code, tenant_name=fields.pop("tenant_name", code), **fields)))
        with self.admin(tenant.id) as admin_in_tenant:
            roles = {r.role_code: r.id for r in admin_in_tenant.tenants.iter_roles()}
            created = admin_in_tenant.tenants.create_api_key(pb.CreateApiKeyRequest(
                api_key=pb.ApiKey(display_name="e2e", role_id=roles["admin"])))
        return tenant, created.secret, roles

    def key_for_role(self, tenant_id: str, role_id: str) -> str:
        with self.admin(tenant_id) as admin:
            return admin.tenants.create_api_key(pb.CreateApiKeyRequest(
                api_key=pb.ApiKey(display_name="role key", role_id=role_id))).secret
