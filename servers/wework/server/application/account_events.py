"""The account service's ingest of provider callbacks (a CallbackSink).

A callback carries only the instance guid: the directory maps it to (tenant, account), then
the callback becomes a status transition (CALLBACK_TRIGGERS), a heartbeat or a conversation
update. Providers deliver late, twice or out of order: a callback whose transition is illegal
in the account's current status is logged and ignored, never applied (a late ONLINE cannot undo
a logout). Deduplication by event_id belongs to the Callback service, which will sit in front.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from wework.domain.accounts import (
    CALLBACK_TRIGGERS,
    SYSTEM,
    TRIGGERS,
    Account,
    AccountStatus,
    QrCode,
    Trigger,
    apply_trigger,
)
from wework.domain.errors import DomainError, FailedPrecondition, NotFound, Unavailable
from wework.persistence.repositories.accounts import AccountDirectoryRepository
from wework.server.application.accounts import ACCOUNT_DB, AccountStore, LoginFlow
from wework.server.application.conversations import ConversationUseCases
from wework.server.providers.base import NotifyType, ProviderCallback

log = logging.getLogger(__name__)

_ROUTE_CACHE_SIZE = 10_000


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)  # 3.11 reads a trailing "Z"
    except ValueError:
        return None


class AccountEvents:
    """`deliver(callback)` is the CallbackSink the provider adapter calls."""

    def __init__(self, store: AccountStore, login: LoginFlow, conversations: ConversationUseCases) -> None:
        self._store = store
        self._login = login
        self._conversations = conversations
        # guid -> (tenant, account) never changes while the guid exists: keep recent ones here.
        self._routes: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._locks: dict[str, list] = {}  # guid -> [lock, users]
        self.ignored = 0  # callbacks that changed nothing (unknown guid, illegal transition)

    async def deliver(self, callback: ProviderCallback) -> None:
        """Raises only Unavailable (database down): the provider then delivers again later."""
        route = await self._route(callback.guid)
        if route is None:
            self.ignored += 1
            log.warning("callback %s for unknown guid %s ignored", callback.notify_type, callback.guid)
            return
        tenant_id, account_id = route
        try:
            kind = NotifyType(callback.notify_type)
        except ValueError:
            self.ignored += 1
            log.warning("callback with unknown notify_type %s for %s ignored", callback.notify_type, callback.guid)
            return
        # One callback of an instance at a time, in the order the provider sent them.
        async with self._serialized(callback.guid):
            try:
                await self._handle(kind, callback, tenant_id, account_id)
            except Unavailable:
                raise
            except NotFound:
                self.ignored += 1
                log.info("callback %s for deleted account %s ignored", kind.name, account_id)
            except Exception:
                log.exception("callback %s (%s) for account %s failed", kind.name, callback.event_id,
                              account_id)

    async def _handle(self, kind: NotifyType, cb: ProviderCallback, tenant_id: str, account_id: str) -> None:
        now = self._store.ctx.clock()
        if kind is NotifyType.HEARTBEAT:
            await self._heartbeat(tenant_id, account_id, now)
        elif kind.name in CALLBACK_TRIGGERS:
            await self._status(CALLBACK_TRIGGERS[kind.name], cb, tenant_id, account_id, now)
        elif kind is NotifyType.MESSAGE_RECEIVED:
            await self._store.get_cached(tenant_id, account_id)  # the account still exists
            await self._conversations.record_message(tenant_id, account_id, cb.data, now)
        elif kind is NotifyType.CONVERSATION_CHANGED:
            await self._store.get_cached(tenant_id, account_id)
            await self._conversations.record_conversation(tenant_id, account_id, cb.data, now)
        else:
            # LOGIN_CONFIRMED (ONLINE follows) and the message callbacks of the message service.
            log.debug("callback %s for account %s: nothing to do here", kind.name, account_id)

    async def _heartbeat(self, tenant_id: str, account_id: str, now: datetime) -> None:
        # The cached account shows the last heartbeat written (a write invalidates it): most
        # heartbeats need no database statement at all.
        resolution = self._store.policies.heartbeat_resolution
        cached = await self._store.get_cached(tenant_id, account_id)
        if cached.last_heartbeat_time is not None and now - cached.last_heartbeat_time < resolution:
            return
        async with self._store.db.unit_of_work(ACCOUNT_DB, tenant_id) as uow:
            written = await self._store.accounts(uow).touch_heartbeat(tenant_id, account_id, now, resolution)
            if written:
                self._store.on_commit(uow, [(tenant_id, account_id)], publish=False)

    async def _status(self, trigger: Trigger, cb: ProviderCallback, tenant_id: str, account_id: str,
                      now: datetime) -> None:
        data = cb.data or {}
        extra: dict[str, Any] = {"provider_event_id": cb.event_id}
        if data.get("reason"):
            extra["provider_reason"] = str(data["reason"])[:200]

        seen: list[AccountStatus] = []

        def plan(a: Account):
            seen.append(a.status)
            kwargs: dict[str, Any] = {}
            if trigger is Trigger.QR_READY:
                kwargs["qr"] = QrCode(str(data.get("qr_code_url") or "")[:500], str(data.get("qr_payload") or ""),
                                      _parse_time(data.get("expire_time")))
            elif trigger is Trigger.ONLINE:
                info = data.get("user_info")
                kwargs["user_info"] = info if isinstance(info, dict) else None
                kwargs["login_token"] = data.get("login_token") or None
                if a.status is AccountStatus.RECOVERING:
                    kwargs["reason"] = "reconnected"
            elif trigger is Trigger.LOGIN_FAILED:
                kwargs["error_message"] = str(data.get("reason") or "login failed")
            elif trigger is Trigger.QR_EXPIRED:
                kwargs["login_policy"] = self._store.policies.login
            return apply_trigger(a, trigger, now=now, operator=SYSTEM, extra=extra, **kwargs)

        try:
            account, _ = await self._store.transition(tenant_id, account_id, plan)
        except FailedPrecondition as exc:
            # Late, repeated or out-of-order: the account has moved on. Applying it would corrupt.
            self.ignored += 1
            # A repeat of what is recorded already (e.g. LOGIN_QR after StartLogin stored that QR)
            # is routine; anything else is worth a line.
            repeat = bool(seen) and seen[-1] is TRIGGERS[trigger][1]
            log.log(logging.DEBUG if repeat else logging.INFO, "callback %s (%s) for account %s ignored: %s",
                    trigger.value, cb.event_id, account_id, exc.message)
            return
        if trigger is Trigger.QR_EXPIRED and account.status is AccountStatus.LOGGING_IN:
            try:
                await self._login.fetch_qr(account)  # the next QR code (login_retry_count counts it)
            except Unavailable:
                raise
            except DomainError as exc:  # the provider refused: fetch_qr recorded LOGIN_FAILED
                log.warning("QR refresh for account %s failed: %s", account_id, exc)

    async def _route(self, guid: str) -> tuple[str, str] | None:
        route = self._routes.get(guid)
        if route is not None:
            self._routes.move_to_end(guid)
            return route
        async with self._store.db.directory_unit_of_work() as uow:
            route = await AccountDirectoryRepository(uow.session).lookup(guid)
        if route is not None:
            self._routes[guid] = route
            while len(self._routes) > _ROUTE_CACHE_SIZE:
                self._routes.popitem(last=False)
        return route

    @asynccontextmanager
    async def _serialized(self, guid: str) -> AsyncIterator[None]:
        entry = self._locks.get(guid)
        if entry is None:
            entry = self._locks[guid] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(guid, None)
