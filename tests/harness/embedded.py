"""The whole platform in the test's own process: embedded settings (SQLite files, in-process
Redis, the simulator provider), every service, served by GrpcServer on a free loopback port.

For tests that need to look inside the server while calling it over a real port (its asyncio
tasks, its CPU time) or that send many calls cheaply (the fuzz test).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import redis
import yaml
from wework.persistence.migrate import migrate_all
from wework.server.app import Application, build_application
from wework.server.runtime.server import GrpcServer
from wework.server.settings import load_settings
from wework.v1 import tenant_pb2, tenant_pb2_grpc

from .databases import make_database_config, new_db_prefix
from .servers import MariaDBServer, RedisServer


@dataclass
class EmbeddedStack:
    app: Application
    server: GrpcServer
    target: str
    admin_key: str
    tenant_id: str = ""
    tenant_key: str = ""

    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.admin_key),)

    def tenant_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.tenant_key),)

    async def new_tenant(self) -> tuple[str, str]:
        """A new tenant and an API key of its admin role: (tenant id, key secret)."""
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = tenant_pb2_grpc.TenantServiceStub(channel)
            admin = self.admin_metadata()
            code = f"t{uuid.uuid4().hex[:12]}"
            tenant = await stub.CreateTenant(tenant_pb2.CreateTenantRequest(
                tenant=tenant_pb2.Tenant(tenant_code=code, tenant_name=code)), metadata=admin)
            in_tenant = (*admin, ("x-wework-tenant", tenant.id))
            roles = await stub.ListRoles(tenant_pb2.ListRolesRequest(), metadata=in_tenant)
            admin_role = next(r.id for r in roles.roles if r.role_code == "admin")
            key = await stub.CreateApiKey(tenant_pb2.CreateApiKeyRequest(
                api_key=tenant_pb2.ApiKey(display_name="embedded", role_id=admin_role)), metadata=in_tenant)
        return tenant.id, key.secret


@contextlib.asynccontextmanager
async def embedded_stack(data_dir: Path, config_file: Path | None = None) -> AsyncIterator[EmbeddedStack]:
    """`config_file`: settings for other parts (MariaDB shards, a Redis) than the embedded ones."""
    settings = load_settings(str(config_file) if config_file else None, data_dir=str(data_dir))
    settings.server.host, settings.server.port = "127.0.0.1", 0
    await migrate_all(settings.database_config)
    app = await build_application(settings)
    server = GrpcServer(settings.server, app.registrations, app.authenticator,
                        readiness_checks=await app.readiness_checks(), on_shutdown=[app.close])
    port = await server.start()
    stack = EmbeddedStack(app, server, f"127.0.0.1:{port}", settings.security.admin_api_key.get_secret_value())
    try:
        stack.tenant_id, stack.tenant_key = await stack.new_tenant()
        yield stack
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def mariadb_stack(data_dir: Path, mariadb: MariaDBServer, redis_server: RedisServer,
                        shards: int = 2) -> AsyncIterator[EmbeddedStack]:
    """The same stack in process, on MariaDB shards and the real Redis, under a unique prefix
    whose databases and Redis keys are removed afterwards."""
    prefix = new_db_prefix("s")
    config = make_database_config(prefix, [mariadb], shards)
    settings_file = data_dir / "settings.yaml"
    settings_file.write_text(yaml.safe_dump({
        "database": config.model_dump(mode="json"),
        "redis": {"url": redis_server.url, "key_prefix": f"{prefix}:"},
        "security": {"admin_api_key": "wwadmin_" + secrets.token_urlsafe(24),
                     "token_secret": secrets.token_urlsafe(48), "lookup_hash_key": secrets.token_urlsafe(48),
                     "encryption_keys": {"k1": base64.b64encode(secrets.token_bytes(32)).decode()},
                     "active_encryption_key_id": "k1"},
    }))
    try:
        async with embedded_stack(data_dir, settings_file) as stack:
            yield stack
    finally:
        mariadb.drop_databases(prefix + "_")
        client = redis.Redis.from_url(redis_server.url)
        try:
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                client.delete(key)
        finally:
            client.close()
