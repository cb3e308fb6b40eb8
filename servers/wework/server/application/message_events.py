"""Provider receipts for sent messages: MESSAGE_SENT, MESSAGE_DELIVERED, MESSAGE_FAILED.

`data.msg_id` is our message id (the idempotency key of the send). The message's shard is not
known from the callback (the provider knows only the instance), so each shard is asked by
primary key. A receipt never moves a message backwards (DELIVERED is not overwritten by a late
SENT); a terminal change writes message_statistics in the same transaction.

`apply` is the entry of the callback processor (application/callbacks.py): given an effect key
(the callback's dedupe key) it writes the key to the message database's effect ledger in the
transaction of the status change, so a receipt processed twice has one effect; it returns what
happened (domain.callbacks.Effect) and raises on failures, which the processor retries.

`ProviderEventRouter` is the direct callback sink (no inbox): message receipts go here,
everything else to the account service's AccountEvents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from wework.domain.callbacks import (
    ALREADY_APPLIED,
    APPLIED,
    NO_EFFECT,
    AlreadyApplied,
    Effect,
    TenantEvent,
    receipt_event_key,
)
from wework.domain.errors import FailedPrecondition
from wework.domain.messages import MessageStatus, transition
from wework.server.application.context import utcnow
from wework.server.application.ports import UnitsOfWork
from wework.server.providers.base import CallbackSink, NotifyType, ProviderCallback

log = logging.getLogger(__name__)
MS = MessageStatus
MESSAGE_DB = "message"

RECEIPTS = {NotifyType.MESSAGE_SENT: MS.SENT, NotifyType.MESSAGE_DELIVERED: MS.DELIVERED,
            NotifyType.MESSAGE_FAILED: MS.FAILED}


class _NoEffect(Exception):
    pass


class MessageEvents:
    def __init__(self, db: UnitsOfWork, clock: Callable[[], datetime] = utcnow) -> None:
        self._db, self._clock = db, clock
        self.applied = 0
        self.ignored = 0

    async def deliver(self, callback: ProviderCallback) -> None:
        reported = RECEIPTS.get(NotifyType(callback.notify_type))
        msg_id = str(callback.data.get("msg_id") or "")
        if reported is None or not msg_id:
            self.ignored += 1
            return
        for shard in self._db.shard_names:
            found = await self._apply(shard, msg_id, reported, callback.data)
            if found:
                return
        log.info("receipt for unknown message %s ignored", msg_id)
        self.ignored += 1

    async def apply(self, callback: ProviderCallback, effect_key: str | None,
                    tenant_id: str | None = None) -> Effect:
        """Applies one receipt (the message is looked up on the tenant's shard when known)."""
        reported = RECEIPTS[NotifyType(callback.notify_type)]
        msg_id = str(callback.data.get("msg_id") or "")
        shards = [self._db.shard_for(tenant_id)] if tenant_id else self._db.shard_names
        base = {"message_id": msg_id, "status": reported.value,
                "wework_msg_id": str(callback.data.get("wework_msg_id") or ""),
                "error_code": str(callback.data.get("error_code") or ""),
                "error_message": str(callback.data.get("error_message") or "")[:500]}
        for shard in shards:
            outcome: list[Any] = []
            try:
                found = await self._apply(shard, msg_id, reported, callback.data, effect_key, outcome)
            except AlreadyApplied as applied:
                return _receipt_effect(ALREADY_APPLIED, "applied before", reported, msg_id, base, applied.subject)
            except _NoEffect:
                return Effect(NO_EFFECT, "the message has moved on (a late or repeated receipt)")
            if found:
                return _receipt_effect(APPLIED, "", reported, msg_id, base, outcome[0])
        self.ignored += 1
        return Effect(NO_EFFECT, f"no message {msg_id!r}")

    async def _apply(self, shard: str, msg_id: str, reported: MessageStatus, data: dict[str, Any],
                     effect_key: str | None = None, outcome: list[Any] | None = None) -> bool:
        now = self._clock()
        async with self._db.shard_unit_of_work(MESSAGE_DB, shard) as uow:
            m = await uow.messages.get_for_receipt(msg_id)
            if m is None:
                return False
            # The ledger first: a receipt applied before (crash before it was marked processed,
            # replay) is told apart from one that never applied.
            if effect_key is not None and not await uow.effects.record(effect_key, now):
                raise AlreadyApplied(effect_key, m)
            old = m.status
            wework_msg_id = str(data.get("wework_msg_id") or "") or None
            base = m
            if old == MS.PENDING and reported in (MS.SENT, MS.DELIVERED):
                # The provider took it although our send saw an error (lost ack) and queued a
                # retry: the receipt is the truth, and the retry must not happen.
                base = replace(m, status=MS.SENDING)
            try:
                new = transition(base, reported, now=now, wework_msg_id=wework_msg_id,
                                 error_code=str(data.get("error_code") or "") or None,
                                 error_message=str(data.get("error_message") or "") or None)
            except FailedPrecondition:
                new = None  # e.g. SENT for a message we already failed: keep our final word
            if new is None and old == MS.SENT and reported == MS.SENT and m.callback_time is None:
                # The provider confirms what the dispatcher recorded from its answer: no change of
                # status, but the receipt's time is kept and it is an effect (message.sent once).
                new = replace(m, callback_time=now, updated_at=now, wework_msg_id=m.wework_msg_id or wework_msg_id)
            if new is None or not await uow.messages.save_receipt(new, expected_status=old, now=now):
                self.ignored += 1
                if effect_key is not None:
                    raise _NoEffect  # rolls the ledger row back: this receipt had no effect
                return True
            if new.batch_id and new.status == MS.FAILED and old in (MS.SENT, MS.DELIVERED):
                await uow.batches.count_late_failure(new.tenant_id, new.batch_id, now)
            self.applied += 1
            if outcome is not None:
                outcome.append(new)
            return True


def _receipt_effect(outcome: str, reason: str, reported: MessageStatus, msg_id: str, base: dict[str, Any],
                    m: Any) -> Effect:
    """The tenant events of an applied receipt. message.sent and message.delivered are one per
    message (their webhook-ids derive from the message): a DELIVERED receipt also makes the
    message.sent event, because the provider's SENT receipt may come later - and then no longer
    applies (DELIVERED is not moved back) - or never; when SENT came first, the outbox knows
    that event id already and adds nothing."""
    where = {"account_id": m.account_id, "conversation_id": m.conversation_id} if m is not None else {}
    data = {**base, **where}
    if reported is MS.FAILED:
        return Effect(outcome, reason, "message.failed", data)
    key = receipt_event_key(msg_id)
    effect = Effect(outcome, reason, f"message.{reported.value}", data, event_key=key)
    if reported is MS.DELIVERED:
        sent = {**data, "status": MS.SENT.value}
        effect = replace(effect, more_events=(TenantEvent("message.sent", sent, key),))
    return effect


class ProviderEventRouter:
    """The provider's callback sink: message receipts to MessageEvents, the rest to `accounts`."""

    def __init__(self, accounts: CallbackSink | None, messages: MessageEvents | None) -> None:
        self.accounts, self.messages = accounts, messages

    async def deliver(self, callback: ProviderCallback) -> None:
        if callback.notify_type in RECEIPTS:
            if self.messages is not None:
                await self.messages.deliver(callback)
            return
        if self.accounts is not None:
            await self.accounts.deliver(callback)
