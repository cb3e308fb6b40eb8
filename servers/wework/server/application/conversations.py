"""Conversation use cases: list/get/update for callers, and recording what the provider reports
(incoming messages, conversation changes) for the callback ingest."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from wework.domain.access import Principal
from wework.domain.accounts import (
    Conversation,
    ConversationType,
    conversation_type_of,
    message_preview,
    validate_conversation_update,
)
from wework.domain.callbacks import AlreadyApplied
from wework.domain.errors import AlreadyExists, FieldViolation, InvalidArgument, must_exist
from wework.domain.identity import check_etag
from wework.persistence.ids import new_id
from wework.persistence.pagination import normalize_page_size
from wework.persistence.resilience import retrying
from wework.server.application.accounts import ACCOUNT_DB, AccountStore
from wework.server.application.context import require_id

log = logging.getLogger(__name__)

MAX_PROVIDER_ID = 100


class ConversationUseCases:
    def __init__(self, store: AccountStore) -> None:
        self._store = store
        self._ctx = store.ctx

    # -- callers ---------------------------------------------------------------------------------

    async def list_conversations(self, principal: Principal, account_id: str,
                                 conversation_type: ConversationType | None, is_pinned: bool | None, tag: str,
                                 page_size: int, page_token: str) -> tuple[list[Conversation], str]:
        tenant_id = principal.require_tenant()
        require_id(account_id, "account_id")
        limit = normalize_page_size(page_size)
        if tag and len(tag) > 50:
            raise InvalidArgument(FieldViolation("tag", "a tag is at most 50 characters"))
        after = None
        if page_token:
            body = self._ctx.page_tokens.decode(page_token, "conversations", tenant_id, {"t": (datetime, type(None)), "id": str})
            after = (body["t"], body["id"])
        await self._store.get_cached(tenant_id, account_id)  # NOT_FOUND for another tenant's account
        async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
            rows = await uow.conversations.list_page(
                tenant_id, account_id, conversation_type, is_pinned, tag or None, after, limit + 1)
        page = rows[:limit]
        token = ""
        if len(rows) > limit:
            token = self._ctx.page_tokens.encode({"t": page[-1].last_msg_time, "id": page[-1].id}, "conversations",
                                        tenant_id)
        return page, token

    async def get_conversation(self, principal: Principal, conversation_id: str) -> Conversation:
        tenant_id = principal.require_tenant()
        require_id(conversation_id, "id")
        async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id, read_only=True) as uow:
            found = await uow.conversations.get(tenant_id, conversation_id)
        return must_exist(found, "conversation", conversation_id)

    async def update_conversation(self, principal: Principal, conversation_id: str, values: dict[str, Any],
                                  paths: list[str], etag: str) -> Conversation:
        tenant_id = principal.require_tenant()
        require_id(conversation_id, "conversation.id")
        validate_conversation_update(values, paths)

        async def run() -> Conversation:
            async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id) as uow:
                repo = uow.conversations
                current = must_exist(await repo.get(tenant_id, conversation_id, for_update=True),
                                     "conversation", conversation_id)
                check_etag(etag, current.version, f"conversations/{conversation_id}")
                changes = {p: values[p] for p in paths}
                if "tags" in changes:
                    changes["tags"] = list(changes["tags"])
                updated = replace(current, **changes, updated_at=self._ctx.clock(), version=current.version + 1)
                await repo.save(updated, expected_version=current.version)
                return updated

        return await retrying(run)

    # -- provider callbacks -----------------------------------------------------------------------

    async def record_message(self, tenant_id: str, account_id: str, data: dict[str, Any],
                             now: datetime, *, effect_key: str | None = None) -> Conversation | None:
        """An incoming message: the conversation's last message, one more unread.

        `effect_key` (a provider callback's dedupe key) goes into the effect ledger in the same
        transaction: the same callback processed again raises AlreadyApplied and changes nothing,
        so unread_count counts each incoming message once."""
        def change(c: Conversation) -> Conversation:
            return replace(c, last_msg_time=max(now, c.last_msg_time or now),
                           last_msg_content=message_preview(data.get("content")),
                           unread_count=c.unread_count + 1, is_active=True)

        return await self._upsert(tenant_id, account_id, data, now, change, effect_key)

    async def record_conversation(self, tenant_id: str, account_id: str, data: dict[str, Any],
                                  now: datetime, *, effect_key: str | None = None) -> Conversation | None:
        """A conversation appeared or changed (name, members)."""
        def change(c: Conversation) -> Conversation:
            member_count = data.get("member_count")
            return replace(c, member_count=int(member_count) if isinstance(member_count, int) else c.member_count,
                           is_active=bool(data.get("is_active", True)))

        return await self._upsert(tenant_id, account_id, data, now, change, effect_key)

    async def _upsert(self, tenant_id: str, account_id: str, data: dict[str, Any], now: datetime,
                      change, effect_key: str | None = None) -> Conversation | None:
        provider_id = str(data.get("conversation_id") or "")
        if not provider_id or len(provider_id) > MAX_PROVIDER_ID:
            log.warning("callback for account %s without a usable conversation_id; ignored", account_id)
            return None

        async def run() -> Conversation:
            async with self._ctx.db.unit_of_work(ACCOUNT_DB, tenant_id) as uow:
                if effect_key is not None and not await uow.effects.record(
                        effect_key, now):
                    raise AlreadyApplied(effect_key)
                repo = uow.conversations
                current = await repo.get_by_provider_id(tenant_id, account_id, provider_id, for_update=True)
                name = data.get("conversation_name")
                if current is None:
                    fresh = Conversation(
                        id=new_id(), tenant_id=tenant_id, account_id=account_id, conversation_id=provider_id,
                        conversation_type=conversation_type_of(data.get("conversation_type")),
                        conversation_name=str(name)[:200] if name else None,
                        # Never NULL: ListConversations pages by it.
                        last_msg_time=now, created_at=now, updated_at=now)
                    updated = change(replace(fresh, unread_count=0))
                    await repo.add(updated)
                    return updated
                updated = change(current)
                if name:
                    updated = replace(updated, conversation_name=str(name)[:200])
                updated = replace(updated, updated_at=now, version=current.version + 1)
                await repo.save(updated, expected_version=current.version)
                return updated

        try:
            return await retrying(run)
        except AlreadyExists:
            return await retrying(run)  # created concurrently by another callback: update it
