"""Helpers of the puppet-service end-to-end tests: settings, the generated stubs with one
credential (keeping every answer for the token grep), a webhook receiver, polling."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import grpc
from aiohttp import web
from serverproc import TEST_ADMIN_KEY
from wework.v1 import account_pb2_grpc, callback_pb2_grpc, message_pb2_grpc, tenant_pb2_grpc
from wework.v1 import tenant_pb2 as tpb


def settings(endpoint: str) -> dict[str, Any]:
    return {
        "provider": {"kind": "puppet_service", "puppet_service": {
            "endpoint": endpoint, "server_name": "insecure", "qr_wait_seconds": 20, "login_wait_seconds": 5,
            "reconnect_backoff_initial_seconds": 0.2, "reconnect_backoff_max_seconds": 1,
            "ding_interval_seconds": 0.5, "ownership_lease_seconds": 3, "ownership_tick_seconds": 0.5}},
        "account": {"heartbeat_timeout_seconds": 5, "monitor_interval_seconds": 0.3,
                    "recovery_backoff_initial_seconds": 0.5, "recovery_backoff_max_seconds": 1,
                    "recovery_max_attempts": 20, "recovery_lease_seconds": 20},
        "message": {"account_min_interval_seconds": 0.05, "account_jitter_seconds": 0, "idle_poll_seconds": 0.2},
        "webhooks": {"allowed_target_cidrs": ["127.0.0.0/8"], "idle_poll_seconds": 0.2},
    }


class Api:
    """The generated stubs with one credential; keeps every answer (and error text) it saw."""

    def __init__(self, target: str, api_key: str, tenant_id: str | None = None) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.md = (("x-api-key", api_key),) + ((("x-wework-tenant", tenant_id),) if tenant_id else ())
        self.accounts = account_pb2_grpc.AccountServiceStub(self.channel)
        self.messages = message_pb2_grpc.MessageServiceStub(self.channel)
        self.callbacks = callback_pb2_grpc.CallbackServiceStub(self.channel)
        self.tenants = tenant_pb2_grpc.TenantServiceStub(self.channel)
        self.seen: list[bytes] = []

    async def __call__(self, method, request):
        try:
            answer = await method(request, metadata=self.md, timeout=30)
        except grpc.aio.AioRpcError as exc:
            self.seen.append(f"{exc.details()} {exc.trailing_metadata()}".encode())
            raise
        self.seen.append(answer.SerializeToString())
        return answer


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.raw: list[bytes] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.raw.append(body)
            self.bodies.append(json.loads(body))
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hooks"  # type: ignore[union-attr]
        return self

    def events(self, event_type: str) -> list[dict]:
        return [b for b in self.bodies if b.get("type") == event_type]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def eventually(check, *, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)




async def tenant_api(target: str) -> Api:
    """A new tenant, and the stubs with an API key of its admin role."""
    admin = Api(target, TEST_ADMIN_KEY)
    code = f"t{uuid.uuid4().hex[:12]}"
    tenant = await admin(admin.tenants.CreateTenant, tpb.CreateTenantRequest(
        tenant=tpb.Tenant(tenant_code=code, tenant_name=code)))
    tenant_admin = Api(target, TEST_ADMIN_KEY, tenant.id)
    roles = await tenant_admin(tenant_admin.tenants.ListRoles, tpb.ListRolesRequest())
    role = next(r.id for r in roles.roles if r.role_code == "admin")
    key = await tenant_admin(tenant_admin.tenants.CreateApiKey, tpb.CreateApiKeyRequest(
        api_key=tpb.ApiKey(display_name="e2e", role_id=role)))
    return Api(target, key.secret)
