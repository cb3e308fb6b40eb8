"""The account service's ingest of provider callbacks (a CallbackSink).

A callback carries only the instance guid: the directory maps it to (tenant, account), then
the callback becomes a status transition (CALLBACK_TRIGGERS), a heartbeat or a conversation
update. Providers deliver late, twice or out of order: a callback whose transition is illegal
in the account's current status is logged and ignored, never applied (a late ONLINE cannot undo
a logout).

`apply` is the entry of the callback processor (application/callbacks.py): it raises on
failures (the processor retries) and, given an effect key, writes it to the effect ledger in
the transaction of the effect, so a callback processed twice has one effect. `deliver` is the
older direct sink (no ledger; errors logged), kept for tests of the provider adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
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
from wework.domain.callbacks import (
    ALREADY_APPLIED,
    APPLIED,
    NO_EFFECT,
    NOTHING_TO_DO,
    AlreadyApplied,
    Effect,
)
from wework.domain.errors import DomainError, FailedPrecondition, NotFound, Unavailable
from wework.persistence.resilience import retrying
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

    def __init__(self, store: AccountStore, login: LoginFlow, conversations: ConversationUseCases,
                 incoming_media: Any = None) -> None:
        self._store = store
        # IncomingMedia (application/media.py): received images/files become media of the tenant.
        self._incoming_media = incoming_media
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

    async def route(self, guid: str) -> tuple[str, str] | None:
        """(tenant_id, account_id) of the instance `guid`, None for an unknown guid."""
        return await self._route(guid)

    async def apply(self, callback: ProviderCallback, tenant_id: str, account_id: str,
                    effect_key: str | None) -> Effect:
        """Applies one callback of the account (notify_type known); raises on failures."""
        kind = NotifyType(callback.notify_type)
        # Status callbacks of an instance one at a time; conversation updates lock their own row.
        serial = kind not in (NotifyType.MESSAGE_RECEIVED, NotifyType.CONVERSATION_CHANGED)
        async with self._serialized(callback.guid) if serial else contextlib.nullcontext():
            try:
                return await self._effect(kind, callback, tenant_id, account_id, effect_key)
            except AlreadyApplied:
                return Effect(ALREADY_APPLIED, "applied before", *_event(kind, callback, account_id, None))
            except NotFound:
                return Effect(NO_EFFECT, "the account no longer exists")
            except FailedPrecondition as exc:
                return Effect(NO_EFFECT, exc.message)

    async def _handle(self, kind: NotifyType, cb: ProviderCallback, tenant_id: str, account_id: str) -> None:
        try:
            await self._effect(kind, cb, tenant_id, account_id, None)
        except FailedPrecondition:
            pass  # logged by _status

    async def _effect(self, kind: NotifyType, cb: ProviderCallback, tenant_id: str, account_id: str,
                      effect_key: str | None) -> Effect:
        now = self._store.ctx.clock()
        if kind is NotifyType.HEARTBEAT:
            # No ledger: a heartbeat only moves last_heartbeat_time forward, and twice is once.
            await self._heartbeat(tenant_id, account_id, now)
            return Effect(APPLIED)
        if kind.name in CALLBACK_TRIGGERS:
            previous = await self._status(CALLBACK_TRIGGERS[kind.name], cb, tenant_id, account_id, now, effect_key)
            return Effect(APPLIED, "", *_event(kind, cb, account_id, previous))
        if kind in (NotifyType.MESSAGE_RECEIVED, NotifyType.CONVERSATION_CHANGED):
            await self._store.get_cached(tenant_id, account_id)  # the account still exists
            stored_content = None
            if kind is NotifyType.MESSAGE_RECEIVED and self._incoming_media is not None and cb.data:
                content = await self._incoming_media.store_received(
                    tenant_id, str(cb.data.get("message_type") or ""), cb.data.get("content"), effect_key)
                if content is not cb.data.get("content"):
                    cb = replace(cb, data={**cb.data, "content": content})
                    stored_content = content
            record = (self._conversations.record_message if kind is NotifyType.MESSAGE_RECEIVED
                      else self._conversations.record_conversation)
            try:
                conversation = await record(tenant_id, account_id, cb.data, now, effect_key=effect_key)
            except AlreadyApplied:
                # A replay: its event and parsed_data name the stored media, never the provider's link.
                return Effect(ALREADY_APPLIED, "applied before", *_event(kind, cb, account_id, None),
                              stored_content=stored_content)
            if conversation is None:
                return Effect(NO_EFFECT, "data.conversation_id is missing or too long")
            event, data = _event(kind, cb, account_id, None)
            return Effect(APPLIED, "", event, {**(data or {}), "conversation": conversation.id,
                                               "unread_count": conversation.unread_count},
                          stored_content=stored_content)
        # LOGIN_CONFIRMED (ONLINE follows) and the message callbacks of the message service.
        log.debug("callback %s for account %s: nothing to do here", kind.name, account_id)
        return Effect(NOTHING_TO_DO)

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
                      now: datetime, effect_key: str | None = None) -> AccountStatus | None:
        """Applies the trigger; the status before it. FailedPrecondition when it does not apply."""
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
            if effect_key is None:
                account, _ = await self._store.transition(tenant_id, account_id, plan)
            else:
                account = await self._ledgered_transition(tenant_id, account_id, plan, effect_key, now)
        except FailedPrecondition as exc:
            # Late, repeated or out-of-order: the account has moved on. Applying it would corrupt.
            self.ignored += 1
            # A repeat of what is recorded already (e.g. LOGIN_QR after StartLogin stored that QR)
            # is routine; anything else is worth a line.
            repeat = bool(seen) and seen[-1] is TRIGGERS[trigger][1]
            log.log(logging.DEBUG if repeat else logging.INFO, "callback %s (%s) for account %s ignored: %s",
                    trigger.value, cb.event_id, account_id, exc.message)
            raise
        if trigger is Trigger.QR_EXPIRED and account.status is AccountStatus.LOGGING_IN:
            try:
                await self._login.fetch_qr(account)  # the next QR code (login_retry_count counts it)
            except Unavailable:
                raise
            except DomainError as exc:  # the provider refused: fetch_qr recorded LOGIN_FAILED
                log.warning("QR refresh for account %s failed: %s", account_id, exc)
        return seen[-1] if seen else None

    async def _ledgered_transition(self, tenant_id: str, account_id: str, plan: Any, effect_key: str,
                                   now: datetime) -> Account:
        """AccountStore.transition with the callback's key in the effect ledger, same transaction."""
        store = self._store

        async def run() -> Account:
            async with store.db.unit_of_work(ACCOUNT_DB, tenant_id) as uow:
                if not await uow.effects.record(effect_key, now):
                    raise AlreadyApplied(effect_key)
                current = await store.lock(uow, tenant_id, account_id)
                planned = plan(current)
                account, change = ((planned.account, planned.change) if hasattr(planned, "account")
                                   else planned)
                await store.write(uow, [(account, current.version)], [change] if change else [])
                return account

        return await retrying(run)

    async def _route(self, guid: str) -> tuple[str, str] | None:
        route = self._routes.get(guid)
        if route is not None:
            self._routes.move_to_end(guid)
            return route
        async with self._store.db.directory_unit_of_work(read_only=True) as uow:
            route = await uow.account_directory.lookup(guid)
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


# Webhook event of each applied kind (heartbeats and LOGIN_CONFIRMED make none).
_STATUS_KINDS = frozenset(NotifyType[name] for name in CALLBACK_TRIGGERS)


def _event(kind: NotifyType, cb: ProviderCallback, account_id: str,
           previous: AccountStatus | None) -> tuple[str | None, dict[str, Any] | None]:
    """(tenant event type, payload) of an applied callback: small, JSON-able, no secrets."""
    base: dict[str, Any] = {"account_id": account_id, "guid": cb.guid}
    if kind in _STATUS_KINDS:
        status = TRIGGERS[CALLBACK_TRIGGERS[kind.name]][1]
        data = {**base, "status": status.value, "reason": str((cb.data or {}).get("reason") or "")[:200]}
        if previous is not None:
            data["previous_status"] = previous.value
        return "account.status_changed", data
    if kind is NotifyType.MESSAGE_RECEIVED:
        d = cb.data or {}
        return "message.received", {**base, "conversation_id": str(d.get("conversation_id") or ""),
                                    "sender": d.get("sender"), "content": d.get("content"),
                                    "time": d.get("time")}
    if kind is NotifyType.CONVERSATION_CHANGED:
        d = cb.data or {}
        return "conversation.changed", {**base, "conversation_id": str(d.get("conversation_id") or ""),
                                        "conversation_name": d.get("conversation_name"),
                                        "member_count": d.get("member_count")}
    return None, None
