"""What the message service needs from the account service, as a port.

The message service never reads account-db tables: it asks the account application layer
through `AccountGateway`. `InProcessAccountGateway` is the implementation for a process that
serves both services; a split deployment would put a gRPC client behind the same protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from wework.domain.access import Principal, PrincipalKind
from wework.domain.accounts import AccountStatus, Conversation, ConversationType
from wework.server.application.accounts import AccountStore
from wework.server.application.conversations import ConversationUseCases


@dataclass(frozen=True)
class ConversationFilter:
    """Which of an account's conversations a batch targets (every given criterion must hold)."""

    conversation_type: ConversationType | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    active_since: datetime | None = None


class AccountGateway(Protocol):
    async def account_for_send(self, tenant_id: str, account_id: str) -> tuple[AccountStatus, str | None]:
        """(status, provider guid) of the tenant's account; NotFound for another tenant's or none."""
        ...

    async def conversation_exists(self, tenant_id: str, account_id: str, conversation_id: str) -> bool:
        """Whether the account has the conversation with this provider chat id."""
        ...

    def conversations_for_targets(self, tenant_id: str, account_id: str,
                                  filter: ConversationFilter) -> AsyncIterator[Conversation]:
        """The account's conversations matching `filter`, in pages behind the scenes."""
        ...


def _system_principal(tenant_id: str) -> Principal:
    # The gateway acts for the platform inside one tenant; it never crosses tenants.
    return Principal(PrincipalKind.API_KEY, "message-service", tenant_id, frozenset({"accounts.read"}))


class InProcessAccountGateway:
    """AccountGateway over the account use cases of the same process."""

    PAGE = 500

    def __init__(self, store: AccountStore, conversations: ConversationUseCases) -> None:
        self._store = store
        self._conversations = conversations

    async def account_for_send(self, tenant_id: str, account_id: str) -> tuple[AccountStatus, str | None]:
        # The cached read: SendMessage is hot, and a status a few ms old only delays a hold.
        account = await self._store.get_cached(tenant_id, account_id)
        return account.status, account.guid

    async def conversation_exists(self, tenant_id: str, account_id: str, conversation_id: str) -> bool:
        async for c in self.conversations_for_targets(tenant_id, account_id, ConversationFilter()):
            if c.conversation_id == conversation_id:
                return True
        return False

    async def conversations_for_targets(self, tenant_id: str, account_id: str,
                                        filter: ConversationFilter) -> AsyncIterator[Conversation]:
        principal = _system_principal(tenant_id)
        # ListConversations filters by one tag; the others and active_since are checked here.
        first_tag = filter.tags[0] if filter.tags else ""
        token = ""
        while True:
            page, token = await self._conversations.list_conversations(
                principal, account_id, filter.conversation_type, None, first_tag, self.PAGE, token)
            for c in page:
                if not set(filter.tags) <= set(c.tags):
                    continue
                if filter.active_since is not None and (c.last_msg_time is None
                                                        or c.last_msg_time < filter.active_since):
                    continue
                yield c
            if not token:
                return
