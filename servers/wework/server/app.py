"""Composition root: builds the databases, Redis, caches, use cases and handlers
from the settings, once, and hands the gRPC runtime what it serves."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import timedelta

from wework.domain.identity import LoginPolicy
from wework.persistence.database import Database
from wework.persistence.redis.cache import TwoLevelCache
from wework.persistence.redis.client import create_redis
from wework.persistence.redis.client import ping as redis_ping
from wework.server.application.api_keys import ApiKeyUseCases
from wework.server.application.authn import CredentialAuthenticator
from wework.server.application.context import AppContext
from wework.server.application.roles import RoleUseCases
from wework.server.application.tenants import TenantUseCases
from wework.server.application.users import UserUseCases
from wework.server.handlers import tenant as tenant_handler
from wework.server.runtime.registry import ServiceRegistration
from wework.server.security.field_crypto import FieldCipher
from wework.server.security.passwords import PasswordHasher
from wework.server.security.tokens import TokenIssuer
from wework.server.settings import Settings


@dataclass
class Application:
    settings: Settings
    db: Database
    redis: object
    ctx: AppContext
    authenticator: CredentialAuthenticator
    registrations: list[ServiceRegistration]
    caches: list[TwoLevelCache] = field(default_factory=list)

    async def readiness_checks(self):
        return [self.db.ping, lambda: redis_ping(self.redis)]

    async def close(self) -> None:
        for cache in self.caches:
            await cache.close()
        await self.db.dispose()
        close = getattr(self.redis, "aclose", None)
        if close is not None:
            await close()


async def build_application(settings: Settings) -> Application:
    db = Database(settings.database_config)
    await db.start()
    redis = create_redis(settings.redis)
    sec = settings.security
    prefix = settings.redis.key_prefix
    tenant_cache = TwoLevelCache(redis, f"{prefix}tenant", local_ttl=30, redis_ttl=300)
    credential_cache = TwoLevelCache(redis, f"{prefix}cred", local_ttl=30, redis_ttl=300)
    for cache in (tenant_cache, credential_cache):
        await cache.start()
    ctx = AppContext(
        db=db,
        cipher=FieldCipher(
            keys={k: base64.b64decode(v.get_secret_value()) for k, v in sec.encryption_keys.items()},
            active_key_id=sec.active_encryption_key_id or next(iter(sec.encryption_keys)),
            lookup_key=sec.lookup_hash_key.get_secret_value().encode(),
        ),
        passwords=PasswordHasher(),
        tokens=TokenIssuer(sec.token_secret.get_secret_value().encode(), sec.access_token_ttl_seconds),
        tenant_cache=tenant_cache,
        credential_cache=credential_cache,
        admin_api_key=sec.admin_api_key.get_secret_value(),
        login_policy=LoginPolicy(max_failed_logins=sec.max_failed_logins,
                                 lockout=timedelta(minutes=sec.lockout_minutes)),
    )
    tenants = TenantUseCases(ctx)
    registrations: list[ServiceRegistration] = []
    if "tenant" in settings.server.services:
        handler = tenant_handler.TenantServiceHandler(
            tenants, UserUseCases(ctx, tenants), RoleUseCases(ctx), ApiKeyUseCases(ctx))
        registrations.append(tenant_handler.registration(handler))
    return Application(settings=settings, db=db, redis=redis, ctx=ctx,
                       authenticator=CredentialAuthenticator(ctx, tenants),
                       registrations=registrations, caches=[tenant_cache, credential_cache])
