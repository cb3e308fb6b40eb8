"""Account use cases (AccountService), and what the callback ingest and the heartbeat monitor
share with them:

- AccountStore: the transactions that change an account. A status change saves the account and
  appends its history row (with the tenant's next seq) in one transaction on the tenant's shard;
  after commit it invalidates the GetAccount cache in every process and wakes WatchAccounts.
- LoginFlow: fetching a QR code from the provider and recording it.
- AccountEventBus: the wake-ups of WatchAccounts streams (Redis pub/sub, a channel per tenant).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

from wework.domain.access import Principal
from wework.domain.accounts import (
    ACCOUNT_MUTABLE_FIELDS,
    SESSION_STATUSES,
    Account,
    AccountStatus,
    LoginPolicy,
    Operator,
    QrCode,
    RecoveryPolicy,
    StatusChange,
    Transition,
    Trigger,
    apply_trigger,
    creation_change,
    deletion_change,
    illegal,
    validate_account,
    validate_verification_code,
)
from wework.domain.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PreconditionViolation,
    QuotaExceeded,
    QuotaViolation,
    Unavailable,
    must_exist,
)
from wework.domain.identity import TenantStatus, check_etag, validate_request_id
from wework.domain.update_mask import check_update_mask
from wework.persistence.background import cancel_and_wait
from wework.persistence.ids import new_id
from wework.persistence.pagination import PageTokens, normalize_page_size
from wework.persistence.redis.cache import DecodedEntries, TwoLevelCache
from wework.persistence.redis.client import RedisClient, as_text
from wework.persistence.repositories.accounts import (
    AccountRepository,
)
from wework.persistence.resilience import RedisBreaker, listen, retrying
from wework.persistence.uow import UnitOfWork
from wework.server.application.context import AppContext, require_id
from wework.server.application.tenants import TenantUseCases
from wework.server.providers.base import InstanceNotFound, Provider, ProviderError

log = logging.getLogger(__name__)

ACCOUNT_DB = "account"
CREATE_OPERATION = "CreateAccount"
WATCH_BATCH = 500
MAX_WATCH_IDS = 100
T = TypeVar("T")


@dataclass(frozen=True)
class AccountPolicies:
    """The account service's settings as the use cases need them (built from AccountConfig)."""

    login: LoginPolicy = field(default_factory=LoginPolicy)
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    heartbeat_timeout: timedelta = timedelta(seconds=60)
    watch_poll_seconds: float = 1.0

    @property
    def heartbeat_resolution(self) -> timedelta:
        # A heartbeat is written at most this often per account: fresh enough for the monitor's
        # timeout, without a database write (and cache invalidation) per provider heartbeat.
        return self.heartbeat_timeout / 4


def operator_of(principal: Principal) -> Operator:
    return Operator.user(principal.subject_id)


def provider_failure(exc: ProviderError, subject: str) -> DomainError:
    """A provider error as the caller sees it: retryable -> UNAVAILABLE, else FAILED_PRECONDITION."""
    if exc.retryable:
        return Unavailable(f"the provider is unavailable: {exc}", metadata={"provider_code": exc.code})
    return FailedPrecondition(f"the provider refused: {exc}",
                              [PreconditionViolation("PROVIDER", subject, exc.code)])


# ---- wake-ups of WatchAccounts -------------------------------------------------------------------


class Listener:
    """One WatchAccounts stream's wake-up flag. Clear it before reading, then wait: a change
    committed after the clear always wakes the next wait."""

    def __init__(self, bus: AccountEventBus, tenant_id: str) -> None:
        self._bus, self.tenant_id = bus, tenant_id
        self.event = asyncio.Event()

    def clear(self) -> None:
        self.event.clear()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)

    def close(self) -> None:
        self._bus._remove(self)


class AccountEventBus:
    """Tells WatchAccounts streams that their tenant's change log grew.

    Published after commit on `<key_prefix>account-events:<tenant id>`; one pattern
    subscription per process fans it out to the local streams. Only a hint: the streams also
    poll, so a lost message (or Redis down) delays an event by at most the poll interval.
    """

    def __init__(self, redis: RedisClient, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}account-events:"
        self._listeners: dict[str, set[Listener]] = {}
        self._task: asyncio.Task[None] | None = None
        # Redis failed a moment ago: don't add its timeout to every change.
        self._publish_breaker = RedisBreaker("account events", fallback="watchers fall back to polling",
                                             logger=log)
        self.messages_received = 0

    def channel(self, tenant_id: str) -> str:
        return self._prefix + tenant_id

    def listen(self, tenant_id: str) -> Listener:
        listener = Listener(self, tenant_id)
        self._listeners.setdefault(tenant_id, set()).add(listener)
        return listener

    def _remove(self, listener: Listener) -> None:
        group = self._listeners.get(listener.tenant_id)
        if group is not None:
            group.discard(listener)
            if not group:
                del self._listeners[listener.tenant_id]

    def _wake(self, tenant_id: str) -> None:
        for listener in self._listeners.get(tenant_id, ()):
            listener.event.set()

    async def publish(self, tenant_id: str) -> None:
        self._wake(tenant_id)  # this process's streams do not wait for the round trip
        if self._publish_breaker.is_open:
            return
        try:
            await self._redis.publish(self.channel(tenant_id), b"1")
        except Exception as exc:  # noqa: BLE001 - only a hint: the watchers also poll
            self._publish_breaker.failed(exc)
        else:
            self._publish_breaker.succeeded()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._subscribe_loop(), name="account-events")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _subscribe_loop(self) -> None:
        await listen(self._redis, self._on_message, what="account events", patterns=[self._prefix + "*"])

    def _on_message(self, message: dict) -> None:
        kind = as_text(message["type"])
        if kind == "psubscribe":
            # (Re)subscribed: what was published meanwhile is lost; wake everyone.
            for tenant_id in list(self._listeners):
                self._wake(tenant_id)
        elif kind == "pmessage":
            self.messages_received += 1
            self._wake(as_text(message["channel"])[len(self._prefix):])


# ---- the store ------------------------------------------------------------------------------------

_DATETIME_FIELDS = frozenset(f.name for f in fields(Account)
                             if f.name.endswith(("_time", "_at")))
_CACHE_SECRETS = {"phone": "cache.wework_accounts.phone", "email": "cache.wework_accounts.email"}

def _shallow_copy(account: Account) -> Account:
    """copy.copy(account) at a fifth of its cost (it goes through __reduce_ex__): a plain
    dataclass's fields are its __dict__."""
    copied = object.__new__(Account)
    copied.__dict__.update(account.__dict__)
    return copied


class AccountStore:
    """Reads and the transactions that change accounts; shared by use cases, callback ingest
    and the heartbeat monitor. `provider` is set once at start-up (the provider needs the
    callback sink, which needs this store)."""

    def __init__(self, ctx: AppContext, cache: TwoLevelCache, bus: AccountEventBus,
                 policies: AccountPolicies) -> None:
        self.ctx = ctx
        self.cache = cache
        self.bus = bus
        self.policies = policies
        self.provider: Provider | None = None
        # Accounts decoded from cache entries: see get_cached.
        self._decoded: DecodedEntries[Account] = DecodedEntries()

    @property
    def db(self):
        return self.ctx.db

    def require_provider(self) -> Provider:
        if self.provider is None:
            raise RuntimeError("AccountStore.provider is not set")
        return self.provider

    def accounts(self, uow: UnitOfWork) -> AccountRepository:
        return uow.accounts

    # -- reads --------------------------------------------------------------------------------

    @staticmethod
    def cache_key(tenant_id: str, account_id: str) -> str:
        # The tenant is part of the key: an id alone must never serve another tenant's account.
        return f"{tenant_id}/{account_id}"

    async def load(self, tenant_id: str, account_id: str) -> Account | None:
        async with self.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
            return await self.accounts(uow).get(tenant_id, account_id)

    async def require(self, tenant_id: str, account_id: str) -> Account:
        return must_exist(await self.load(tenant_id, account_id), "account", account_id)

    async def lock(self, uow: UnitOfWork, tenant_id: str, account_id: str, etag: str = "") -> Account:
        """The account, its row locked (FOR UPDATE) until `uow` ends: NotFound when there is
        none, EtagMismatch when an `etag` is given and stale."""
        current = must_exist(await self.accounts(uow).get(tenant_id, account_id, for_update=True),
                             "account", account_id)
        check_etag(etag, current.version, current.subject)
        return current

    async def provider_token(self, guid: str) -> str | None:
        """The puppet-service token of the account whose instance is `guid` (decrypted; the
        puppet_service provider's TokenSource). Never cached: the cache holds no secrets."""
        async with self.db.directory_unit_of_work(read_only=True) as uow:
            route = await uow.account_directory.lookup(guid)
        if route is None:
            return None
        account = await self.load(*route)
        return None if account is None else account.provider_token

    async def guids_with_provider_sessions(self, limit: int = 100_000) -> list[str]:
        """Every shard's accounts whose provider session must be followed (a login under way, online,
        recovering, or offline with a recovery due), for the puppet-service ownership leases."""
        statuses = [AccountStatus.LOGGING_IN, AccountStatus.WAITING_SCAN, AccountStatus.WAITING_CONFIRM,
                    AccountStatus.NEED_VERIFY, AccountStatus.ONLINE, AccountStatus.RECOVERING]

        async def one(uow: UnitOfWork) -> list[str]:
            return await uow.accounts.guids_with_provider_sessions(statuses, limit)

        return [g for guids in await self.db.for_each_shard(ACCOUNT_DB, one) for g in guids]

    async def get_cached(self, tenant_id: str, account_id: str) -> Account:
        """The account from the two-level cache (never its login token)."""

        async def loader() -> bytes | None:
            account = await self.load(tenant_id, account_id)
            return None if account is None else self._to_cache(account)

        key = self.cache_key(tenant_id, account_id)
        raw = must_exist(await self.cache.get_or_load(key, loader), "account", account_id)
        # Every send reads its account here: JSON, decryption and datetimes once per version of
        # the entry. A copy per caller, which may change its fields (config and user_info are
        # shared).
        return _shallow_copy(self._decoded.get(key, raw, self._from_cache))

    def _to_cache(self, a: Account) -> bytes:
        # No personal data in Redis in clear: phone and email stay encrypted, the token stays out.
        body: dict[str, Any] = {}
        for f in fields(Account):
            value = getattr(a, f.name)
            if f.name in ("login_token", "provider_token"):
                continue
            if f.name in _CACHE_SECRETS:
                value = self.ctx.cipher.encrypt(value, context=_CACHE_SECRETS[f.name])
            elif f.name in _DATETIME_FIELDS and value is not None:
                value = value.isoformat()
            body[f.name] = value
        return json.dumps(body, separators=(",", ":")).encode()

    def _from_cache(self, raw: bytes) -> Account:
        body = json.loads(raw)
        for name, context in _CACHE_SECRETS.items():
            body[name] = self.ctx.cipher.decrypt(body.get(name), context=context)
        for name in _DATETIME_FIELDS:
            if body.get(name) is not None:
                body[name] = datetime.fromisoformat(body[name])
        body["status"] = AccountStatus(body["status"])
        return Account(**body)

    # -- writes -----------------------------------------------------------------------------------

    def on_commit(self, uow: UnitOfWork, accounts: Iterable[tuple[str, str]], *, publish: bool) -> None:
        """After commit: drop the cached accounts everywhere, and wake their tenants' watchers."""
        keys = {self.cache_key(t, a) for t, a in accounts}
        tenants = {t for t, _ in accounts}

        async def hook() -> None:
            for key in keys:
                await self.cache.invalidate(key)
            if publish:
                for tenant_id in tenants:
                    await self.bus.publish(tenant_id)

        uow.after_commit(hook)

    async def write(self, uow: UnitOfWork, updates: Iterable[tuple[Account, int]],
                    changes: Iterable[StatusChange]) -> list[StatusChange]:
        """Saves each account (if still at its expected version) and appends the history rows:
        call with the accounts locked. Returns the changes with their ids and seqs."""
        updates = list(updates)
        changes = [c for c in changes if c is not None]
        repo = self.accounts(uow)
        for account, expected in updates:
            await repo.save(account, expected_version=expected)
        stored = await uow.status_history.append(changes) if changes else []
        self.on_commit(uow, [(a.tenant_id, a.id) for a, _ in updates], publish=bool(stored))
        return stored

    async def transition(
        self, tenant_id: str, account_id: str,
        plan: Callable[[Account], Transition | tuple[Account, StatusChange | None]],
        *, expected_version: int | None = None,
    ) -> tuple[Account, StatusChange | None]:
        """Locks the account, applies `plan` to it and commits, in one transaction.

        With `expected_version`, nothing happens (and the current account is returned) if the
        account has changed since: the caller's decision was based on a state that is gone.
        `plan` raising (FailedPrecondition for an illegal transition) changes nothing.
        """

        async def run() -> tuple[Account, StatusChange | None]:
            async with self.db.unit_of_work(ACCOUNT_DB, tenant_id) as uow:
                current = await self.lock(uow, tenant_id, account_id)
                if expected_version is not None and current.version != expected_version:
                    return current, None
                planned = plan(current)
                account, change = ((planned.account, planned.change) if isinstance(planned, Transition)
                                   else planned)
                stored = await self.write(uow, [(account, current.version)], [change] if change else [])
                return account, (stored[0] if stored else None)

        return await retrying(run)


# ---- login ------------------------------------------------------------------------------------------


class LoginFlow:
    """Fetches a QR code for an account that is LOGGING_IN and records it (-> WAITING_SCAN)."""

    def __init__(self, store: AccountStore) -> None:
        self._store = store

    async def fetch_qr(self, account: Account) -> Account:
        provider = self._store.require_provider()
        now = self._store.ctx.clock
        try:
            # Idempotent, and it hands the provider the account's current config.
            await provider.create_instance(account.guid or "", config=account.config)
            qr = await provider.get_login_qr(account.guid or "")
        except ProviderError as exc:
            error = f"{exc.code}: {exc}"
            await self._store.transition(
                account.tenant_id, account.id,
                lambda a: apply_trigger(a, Trigger.LOGIN_FAILED, now=now(), reason="provider_error",
                                        error_message=error),
                expected_version=account.version)
            raise provider_failure(exc, account.subject) from exc
        updated, _ = await self._store.transition(
            account.tenant_id, account.id,
            lambda a: apply_trigger(a, Trigger.QR_READY, now=now(),
                                    qr=QrCode(qr.qr_code_url, qr.qr_payload, qr.expire_time)),
            expected_version=account.version)
        return updated


# ---- use cases ----------------------------------------------------------------------------------------


def encode_cursor(tokens: PageTokens, tenant_id: str, seq: int) -> str:
    return tokens.encode({"s": seq}, "account-watch", tenant_id)


def decode_cursor(tokens: PageTokens, cursor: str, tenant_id: str) -> int:
    try:
        seq = tokens.decode(cursor, "account-watch", tenant_id, {"s": int})["s"]
    except InvalidArgument:
        raise InvalidArgument(FieldViolation(
            "cursor", "not a cursor of WatchAccounts for this tenant; pass it unchanged")) from None
    if seq < 0:
        raise InvalidArgument(FieldViolation("cursor", "the cursor is damaged"))
    return seq


class AccountUseCases:
    def __init__(self, store: AccountStore, login: LoginFlow, tenants: TenantUseCases) -> None:
        self._store = store
        self._login = login
        self._tenants = tenants
        self._ctx = store.ctx

    # -- create ------------------------------------------------------------------------------------

    async def create_account(self, principal: Principal, values: dict[str, Any], request_id: str) -> Account:
        """Directory (guid + request id) -> provider instance -> account row + history.

        Each step is idempotent, so a retry with the same request_id finishes what a crashed
        attempt began; a refused create (quota, name taken) gives the guid back.
        """
        tenant_id = principal.require_tenant()
        validate_request_id(request_id)
        validate_account(values, creating=True)
        limits = must_exist(await self._tenants.tenant_limits(tenant_id), "tenant", tenant_id)
        if limits.status is not TenantStatus.ACTIVE:
            raise FailedPrecondition("the tenant is not active", reason="TENANT_SUSPENDED")
        now = self._ctx.clock()
        db = self._ctx.db

        # 1. Directory: a globally unique guid, and the request id pointing at the account id.
        async with db.directory_unit_of_work() as uow:
            idem, guids = uow.directory, uow.account_directory
            account_id = await idem.get_idempotent(tenant_id, CREATE_OPERATION, request_id) if request_id else None
            fresh = account_id is None
            guid = None if fresh else await guids.guid_of(tenant_id, account_id)
            if guid is not None:
                # A retry: return the first result, or finish what a crashed attempt began.
                existing = await self._store.load(tenant_id, account_id)
                if existing is not None:
                    return existing
            else:
                # An early answer without the lock; the locked count in step 3 is the real check.
                await self._check_quota(tenant_id, limits.max_accounts, locked=False)
                account_id = account_id or new_id()
                guid = "wg_" + uuid4().hex
                await guids.reserve_guid(guid, tenant_id, account_id, now)
                if fresh and request_id:
                    await idem.put_idempotent(tenant_id, CREATE_OPERATION, request_id, account_id, now)

        account = Account(id=account_id, tenant_id=tenant_id, account_name=values["account_name"], guid=guid,
                          user_id=values.get("user_id") or None, phone=values.get("phone") or None,
                          email=values.get("email") or None, config=values.get("config"),
                          provider_token=values.get("provider_token") or None, status=AccountStatus.CREATED,
                          created_at=now, updated_at=now, version=1)
        try:
            # 2. The provider instance (idempotent by guid): it validates the config too.
            await self._create_instance(account)
            # 3. The account and its first history row; the tenant's sequence lock serializes
            #    concurrent creates, so the count cannot overrun max_accounts.
            return await retrying(lambda: self._insert(account, limits.max_accounts, operator_of(principal)))
        except DomainError as exc:
            # A refusal gives the guid and request id back; after UNAVAILABLE they stay, so a
            # retry with the same request_id continues with the same guid.
            if fresh and not isinstance(exc, Unavailable):
                await self._release(guid, tenant_id, request_id)
            raise

    async def _insert(self, account: Account, max_accounts: int, operator: Operator) -> Account:
        async with self._ctx.db.unit_of_work(ACCOUNT_DB, account.tenant_id) as uow:
            repo = self._store.accounts(uow)
            existing = await repo.get(account.tenant_id, account.id)
            if existing is not None:
                return existing
            history = uow.status_history
            await history.allocate(account.tenant_id, 0)  # takes the tenant's lock
            await self._check_quota(account.tenant_id, max_accounts, locked=True, repo=repo)
            await repo.add(account)
            await history.append([creation_change(account, operator, account.created_at)])
            self._store.on_commit(uow, [(account.tenant_id, account.id)], publish=True)
        return account

    async def _check_quota(self, tenant_id: str, max_accounts: int, *, locked: bool,
                           repo: AccountRepository | None = None) -> None:
        if repo is None:
            async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
                count = await self._store.accounts(uow).count(tenant_id)
        else:
            count = await repo.count(tenant_id)
        if count >= max_accounts:
            raise QuotaExceeded(
                f"the tenant has {count} account(s); its quota max_accounts is {max_accounts}",
                [QuotaViolation(f"tenants/{tenant_id}", f"max_accounts {max_accounts} reached")])

    async def _create_instance(self, account: Account) -> None:
        try:
            await self._store.require_provider().create_instance(account.guid or "", config=account.config)
        except ProviderError as exc:
            if exc.code == "INVALID_CONFIG":
                raise InvalidArgument(FieldViolation("account.config", str(exc))) from exc
            raise provider_failure(exc, account.subject) from exc

    async def _release(self, guid: str, tenant_id: str, request_id: str) -> None:
        try:
            async with self._ctx.db.directory_unit_of_work() as uow:
                repo = uow.account_directory
                await repo.release(guid)
                if request_id:
                    await repo.forget_request(tenant_id, CREATE_OPERATION, request_id)
        except Exception:  # an orphaned reservation routes nothing; keep the real error
            log.warning("could not release guid %s of a refused create", guid, exc_info=True)

    # -- read ----------------------------------------------------------------------------------------

    async def get_account(self, principal: Principal, account_id: str) -> Account:
        tenant_id = principal.require_tenant()
        require_id(account_id, "id")
        return await self._store.get_cached(tenant_id, account_id)

    async def list_accounts(self, principal: Principal, status: AccountStatus | None, user_id: str,
                            page_size: int, page_token: str) -> tuple[list[Account], str]:
        tenant_id = principal.require_tenant()
        limit = normalize_page_size(page_size)
        after = self._ctx.page_tokens.after_id(page_token, "accounts", tenant_id)
        async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
            rows = await self._store.accounts(uow).list_page(tenant_id, status, user_id or None, after, limit + 1)
        return self._ctx.page_tokens.id_page(rows, limit, "accounts", tenant_id)

    # -- update / delete --------------------------------------------------------------------------------

    async def update_account(self, principal: Principal, account_id: str, values: dict[str, Any],
                             paths: list[str], etag: str) -> Account:
        tenant_id = principal.require_tenant()
        require_id(account_id, "account.id")
        check_update_mask(paths, ACCOUNT_MUTABLE_FIELDS)
        changed = {p: values.get(p) for p in paths}
        for name in ("phone", "email", "user_id", "provider_token"):
            if name in changed:
                changed[name] = changed[name] or None
        validate_account(changed, creating=False)
        if "config" in changed:
            # The provider validates (and takes) the new config before it is stored.
            current = await self._store.require(tenant_id, account_id)
            check_etag(etag, current.version, current.subject)
            await self._create_instance(replace(current, config=changed["config"]))

        async def run() -> Account:
            async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id) as uow:
                current = await self._store.lock(uow, tenant_id, account_id, etag)
                updated = replace(current, **changed, updated_at=self._ctx.clock(), version=current.version + 1)
                await self._store.write(uow, [(updated, current.version)], [])
                return updated

        return await retrying(run)

    async def delete_account(self, principal: Principal, account_id: str, etag: str) -> None:
        tenant_id = principal.require_tenant()
        require_id(account_id, "id")
        current = await self._store.require(tenant_id, account_id)
        check_etag(etag, current.version, current.subject)
        if current.status in SESSION_STATUSES:
            await self._provider_logout(current)

        async def run() -> Account:
            async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id) as uow:
                account = await self._store.lock(uow, tenant_id, account_id, etag)
                await uow.status_history.append(
                    [deletion_change(account, operator_of(principal), self._ctx.clock())])
                await uow.conversations.delete_for_account(tenant_id, account_id)
                await self._store.accounts(uow).delete(tenant_id, account_id)
                self._store.on_commit(uow, [(tenant_id, account_id)], publish=True)
                return account

        deleted = await retrying(run)
        if deleted.guid:
            try:
                async with self._ctx.db.directory_unit_of_work() as uow:
                    await uow.account_directory.release(deleted.guid)
            except Exception:  # a leftover guid only routes late callbacks to nothing
                log.warning("could not release guid %s of deleted account %s", deleted.guid, account_id,
                            exc_info=True)

    async def _provider_logout(self, account: Account) -> None:
        try:
            await self._store.require_provider().logout(account.guid or "")
        except InstanceNotFound:
            pass
        except ProviderError as exc:
            if exc.retryable:
                raise provider_failure(exc, account.subject) from exc
            log.warning("provider refused logout of %s (%s): %s; continuing", account.id, exc.code, exc)

    # -- login ------------------------------------------------------------------------------------------

    async def start_login(self, principal: Principal, account_id: str) -> Account:
        tenant_id = principal.require_tenant()
        require_id(account_id, "id")
        account, _ = await self._store.transition(
            tenant_id, account_id,
            lambda a: apply_trigger(a, Trigger.START_LOGIN, now=self._ctx.clock(), operator=operator_of(principal)))
        return await self._login.fetch_qr(account)

    async def submit_verification_code(self, principal: Principal, account_id: str, code: str) -> Account:
        tenant_id = principal.require_tenant()
        require_id(account_id, "id")
        validate_verification_code(code)
        account = await self._store.require(tenant_id, account_id)
        if account.status is not AccountStatus.NEED_VERIFY:
            raise illegal(account, AccountStatus.ONLINE.value,
                          f"account is {account.status.value}; a verification code is only taken in need_verify")
        try:
            await self._store.require_provider().submit_verification_code(account.guid or "", code)
        except ProviderError as exc:
            if exc.code == "VERIFICATION_FAILED":
                raise InvalidArgument(FieldViolation("code", "the verification code is wrong; this login has "
                                                             "ended, start a new one")) from exc
            raise provider_failure(exc, account.subject) from exc
        return await self._store.require(tenant_id, account_id)

    async def logout(self, principal: Principal, account_id: str) -> Account:
        tenant_id = principal.require_tenant()
        require_id(account_id, "id")
        current = await self._store.require(tenant_id, account_id)
        if current.status is AccountStatus.OFFLINE:
            # No status change: cancel a scheduled recovery (a lost connection the user gives up
            # on), and repeat the provider logout (e.g. a retry after it failed).
            def forget_session(a: Account) -> tuple[Account, None]:
                if a.status is not AccountStatus.OFFLINE:  # moved meanwhile: decide again
                    raise illegal(a, AccountStatus.OFFLINE.value, "the account changed; retry the logout")
                return replace(a, next_recovery_at=None, recovery_attempts=0, login_token=None,
                               updated_at=self._ctx.clock(), version=a.version + 1), None

            if current.next_recovery_at is not None or current.login_token is not None:
                current, _ = await self._store.transition(tenant_id, account_id, forget_session)
            await self._provider_logout(current)
            return current
        # The status first, so that the history names the user; the provider's LOGGED_OUT
        # callback then finds the account OFFLINE already and changes nothing.
        account, _ = await self._store.transition(
            tenant_id, account_id,
            lambda a: apply_trigger(a, Trigger.LOGOUT, now=self._ctx.clock(), operator=operator_of(principal)))
        await self._provider_logout(account)
        return account

    async def get_login_state(self, principal: Principal, account_id: str) -> Account:
        return await self.get_account(principal, account_id)

    # -- history and watch --------------------------------------------------------------------------------

    async def list_status_history(self, principal: Principal, account_id: str, page_size: int,
                                  page_token: str) -> tuple[list[StatusChange], str]:
        tenant_id = principal.require_tenant()
        require_id(account_id, "account_id")
        limit = normalize_page_size(page_size)
        before = self._ctx.page_tokens.decode(page_token, "account-history", tenant_id,
                                                 {"before": int})["before"] if page_token else None
        async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
            rows = await uow.status_history.page_for_account(tenant_id, account_id, before,
                                                                               limit + 1)
            if not rows and before is None and await self._store.accounts(uow).get(tenant_id, account_id) is None:
                raise NotFound("account", account_id)
        page = rows[:limit]
        token = self._ctx.page_tokens.encode({"before": page[-1].seq}, "account-history", tenant_id) if len(rows) > limit else ""
        return page, token

    async def watch(self, principal: Principal, account_ids: list[str],
                    cursor: str) -> AsyncIterator[tuple[StatusChange | None, str]]:
        """(None, start cursor) first, then (change, cursor after it) for every change, in seq order.

        Reads are bounded by the tenant's committed last_seq: seqs are allocated under the
        tenant's row lock and commit in order, so every seq up to it is visible and none is
        skipped. Waits between reads for a wake-up, or the poll interval.
        """
        tenant_id = principal.require_tenant()
        ids = list(dict.fromkeys(account_ids))
        if len(account_ids) > MAX_WATCH_IDS:
            raise InvalidArgument(FieldViolation("account_ids", f"at most {MAX_WATCH_IDS} accounts"))
        for i, account_id in enumerate(ids):
            if not account_id or len(account_id) > 64:
                raise InvalidArgument(FieldViolation(f"account_ids[{i}]", "must be an account id"))
        after = decode_cursor(self._ctx.page_tokens, cursor, tenant_id) if cursor else None
        listener = self._store.bus.listen(tenant_id)
        try:
            last = await self._last_seq(tenant_id)
            if after is None:
                after = last
            elif after > last:
                raise InvalidArgument(FieldViolation("cursor", "the cursor is ahead of the change log"))
            yield None, encode_cursor(self._ctx.page_tokens, tenant_id, after)
            poll = self._store.policies.watch_poll_seconds
            while True:
                listener.clear()
                async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
                    history = uow.status_history
                    upto = await history.last_seq(tenant_id)
                    rows = await history.after(tenant_id, after, upto, ids, WATCH_BATCH) if upto > after else []
                for change in rows:
                    after = change.seq
                    yield change, encode_cursor(self._ctx.page_tokens, tenant_id, after)
                if len(rows) == WATCH_BATCH:
                    continue  # more to replay
                after = max(after, upto)  # nothing more of the watched accounts up to there
                await listener.wait(poll)
        finally:
            listener.close()

    async def _last_seq(self, tenant_id: str) -> int:
        async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
            return await uow.status_history.last_seq(tenant_id)
