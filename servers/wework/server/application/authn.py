"""Turns the credential in a call's metadata into a Principal.

Three credentials: the platform-admin key (x-api-key, from the settings), a
tenant API key (x-api-key), and an access token from Login
(authorization: Bearer ...). What a credential maps to is kept in the
two-level credential cache, so the hot path does no database read; revoking a
key, disabling a user, changing a password or a role invalidates the entry in every
process. An access token only names a user and a session: the user's permissions, tenant
and status come from the entry, never from the token's claims.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from wework.domain.access import Principal, PrincipalKind, tenant_grants
from wework.domain.errors import FailedPrecondition, Unauthenticated
from wework.domain.identity import TenantStatus, UserStatus
from wework.persistence.redis.cache import DecodedEntries
from wework.server.application.context import AppContext
from wework.server.application.tenants import TenantUseCases
from wework.server.security.api_keys import ParsedApiKey, parse_api_key, verify_secret

ADMIN_PERMISSIONS = frozenset({"*"})
TENANT_HEADER = "x-wework-tenant"
# ApiKey.last_used_time is refreshed at most this often per key and process: a
# write per call would turn every read RPC into a database write.
LAST_USED_RESOLUTION_SECONDS = 60.0

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class _VerifiedKey:
    """An API key whose secret matched its credential cache entry: the parse, the hash
    comparison, the JSON decoding and the grants are done once per key and entry, not per
    call. Any change of the entry (revocation, expiry, a role edit: the cache entry is
    invalidated and reloaded) gives other bytes, so the key is verified again from scratch;
    expiry and the tenant's status are still checked on every call."""

    parsed: ParsedApiKey
    revoked: bool
    expires_at: datetime | None
    principal: Principal


def _verify(parsed: ParsedApiKey, raw: bytes | None) -> _VerifiedKey:
    """The key checked against its credential cache entry (first call with this key, or the
    entry changed: revoked, role edited...)."""
    entry = json.loads(raw) if raw else None
    if entry is None or entry["tenant_id"] != parsed.tenant_id \
            or not verify_secret(parsed.secret, entry["secret_hash"]):
        raise Unauthenticated("unknown API key")
    grants = tenant_grants([entry["permissions"]]) if entry["role_active"] else frozenset()
    return _VerifiedKey(parsed, bool(entry["revoked"]),
                        datetime.fromisoformat(entry["expires_at"]) if entry["expires_at"] else None,
                        Principal(PrincipalKind.API_KEY, parsed.key_id, parsed.tenant_id, grants))


def user_credential_key(tenant_id: str, user_id: str) -> str:
    """The credential cache key of a user: its tenant is part of it, so a token naming another
    tenant can neither read nor poison the user's entry. Use cases that change what the entry
    holds (status, session version, roles, role permissions) invalidate it."""
    return f"user:{tenant_id}:{user_id}"


@dataclass(frozen=True, slots=True)
class _KnownUser:
    """A user's credential cache entry, decoded once per version of the entry."""

    tenant_id: str
    enabled: bool
    session_version: int
    permissions: frozenset[str]


def _decode_user(raw: bytes | None) -> _KnownUser | None:
    entry = json.loads(raw) if raw else None
    if entry is None:
        return None
    return _KnownUser(entry["tenant_id"], entry["status"] in (UserStatus.ACTIVE.value, UserStatus.LOCKED.value),
                      int(entry["session_version"]), frozenset(entry["permissions"]))


class CredentialAuthenticator:
    def __init__(self, ctx: AppContext, tenants: TenantUseCases) -> None:
        self._ctx = ctx
        self._tenants = tenants
        self._last_touched: dict[str, float] = {}
        self._touch_tasks: set[asyncio.Task] = set()
        # Full API key -> what its cache entry said when the key was last verified.
        self._verified_keys: DecodedEntries[_VerifiedKey] = DecodedEntries()
        self._known_users: DecodedEntries[_KnownUser | None] = DecodedEntries()

    async def authenticate(self, metadata: Mapping[str, str], method: str) -> Principal:
        api_key = metadata.get("x-api-key")
        authorization = metadata.get("authorization")
        if api_key:
            if hmac.compare_digest(api_key.encode(), self._ctx.admin_api_key.encode()):
                return Principal(PrincipalKind.PLATFORM_ADMIN, "platform-admin",
                                 metadata.get(TENANT_HEADER) or None, ADMIN_PERMISSIONS)
            return await self._api_key_principal(api_key)
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
            return await self._token_principal(token.strip())
        raise Unauthenticated("no credential: send x-api-key or authorization: Bearer <token>")

    async def _api_key_principal(self, full_key: str) -> Principal:
        last = self._verified_keys.last(full_key)
        parsed = last.parsed if last is not None else parse_api_key(full_key)
        raw = await self._cached_raw(f"apikey:{parsed.key_id}",
                                     lambda: self._load_api_key(parsed.tenant_id, parsed.key_id))
        known = self._verified_keys.get(full_key, raw, lambda entry: _verify(parsed, entry))
        now = self._ctx.clock()
        if known.revoked or (known.expires_at is not None and known.expires_at <= now):
            raise Unauthenticated("the API key is revoked or expired")
        await self._require_usable_tenant(parsed.tenant_id)
        self._touch_later(parsed.tenant_id, parsed.key_id)
        return known.principal

    def _touch_later(self, tenant_id: str, key_id: str) -> None:
        now = time.monotonic()
        if now - self._last_touched.get(key_id, float("-inf")) < LAST_USED_RESOLUTION_SECONDS:
            return
        self._last_touched[key_id] = now
        task = asyncio.get_running_loop().create_task(self._touch(tenant_id, key_id))
        self._touch_tasks.add(task)  # keep a reference until done
        task.add_done_callback(self._touch_tasks.discard)

    async def _touch(self, tenant_id: str, key_id: str) -> None:
        try:
            async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
                await uow.api_keys.touch(key_id, self._ctx.clock())
        except Exception:  # bookkeeping must never fail a call
            log.warning("could not record last use of API key %s", key_id, exc_info=True)

    async def _token_principal(self, token: str) -> Principal:
        claims = self._ctx.tokens.verify(token)
        key = user_credential_key(claims.tenant_id, claims.user_id)
        raw = await self._cached_raw(key, lambda: self._load_user(claims.tenant_id, claims.user_id))
        user = self._known_users.get(key, raw, _decode_user)
        # The signature alone proves nothing about the present: the user's tenant, status,
        # session and permissions are what the database says now (through the cache), never
        # what the token says. A lock only stops new logins: tokens already issued keep
        # working, so that someone guessing a password cannot log the real user out.
        if user is None or user.tenant_id != claims.tenant_id or not user.enabled:
            raise Unauthenticated("the user is disabled or no longer exists")
        if user.session_version != claims.session_version:
            raise Unauthenticated("this session has ended (password, status or roles changed); log in again")
        await self._require_usable_tenant(claims.tenant_id)
        return Principal(PrincipalKind.USER, claims.user_id, claims.tenant_id, user.permissions)

    async def _require_usable_tenant(self, tenant_id: str) -> None:
        status = await self._tenants.tenant_status(tenant_id)
        if status is None or status is TenantStatus.DELETED:
            raise Unauthenticated("the tenant of this credential no longer exists")
        if status is TenantStatus.SUSPENDED:
            raise FailedPrecondition("the tenant is suspended", reason="TENANT_SUSPENDED")

    async def _cached_raw(self, key: str, load) -> bytes | None:
        async def loader() -> bytes | None:
            value = await load()
            return None if value is None else json.dumps(value).encode()

        return await self._ctx.credential_cache.get_or_load(key, loader)

    async def _load_api_key(self, tenant_id: str, key_id: str) -> dict | None:
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            key = await uow.api_keys.get(tenant_id, key_id)
            if key is None:
                return None
            role = await uow.roles.get(tenant_id, key.role_id)
        return {
            "tenant_id": key.tenant_id,
            "secret_hash": key.secret_hash,
            "revoked": key.revoked_at is not None,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "permissions": list(role.permissions) if role else [],
            "role_active": bool(role and role.is_active),
        }

    async def _load_user(self, tenant_id: str, user_id: str) -> dict | None:
        async with self._ctx.db.unit_of_work("user", tenant_id) as uow:
            user = await uow.users.get(tenant_id, user_id)
            if user is None:
                return None
            role_permissions = await uow.roles.active_permissions_of_user(tenant_id, user_id)
        # Only what authentication needs: no personal data goes into Redis.
        return {"tenant_id": user.tenant_id, "status": user.status.value,
                "session_version": user.session_version,
                "permissions": sorted(tenant_grants(role_permissions))}
