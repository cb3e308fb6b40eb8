"""In-memory repositories of the account database (uow.accounts, uow.status_history,
uow.conversations) and of the directory's guid index (uow.account_directory).

Same answers as wework.persistence.repositories.accounts: domain objects (copies: a caller
may change what it got, as it may change what the ORM built), AlreadyExists on the unique
keys, EtagMismatch when the stored version is not the expected one, and the same order of
pages. Columns are kept in clear: the column cipher is the SQL repositories' business.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from wework.domain.accounts import Account, AccountStatus, Conversation, ConversationType, StatusChange
from wework.domain.errors import AlreadyExists, EtagMismatch
from wework.persistence.ids import new_id

from harness.fakes import FakeUnitOfWork, repository


@repository("accounts")
class InMemoryAccounts:
    """wework_accounts: id -> Account."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, Account] = uow.tables["wework_accounts"]

    def _check_name(self, a: Account) -> None:
        # uk_wework_accounts_tenant_account_name
        if any(o.tenant_id == a.tenant_id and o.account_name == a.account_name and o.id != a.id
               for o in self._rows.values()):
            raise AlreadyExists("account", "account_name", a.account_name)

    async def add(self, a: Account) -> None:
        if a.id in self._rows:
            raise RuntimeError(f"duplicate primary key wework_accounts {a.id}")
        self._check_name(a)
        self._rows[a.id] = replace(copy.deepcopy(a), version=1)

    async def get(self, tenant_id: str, account_id: str, *, for_update: bool = False) -> Account | None:
        row = self._rows.get(account_id)
        return copy.deepcopy(row) if row is not None and row.tenant_id == tenant_id else None

    async def get_by_name(self, tenant_id: str, account_name: str) -> Account | None:
        for row in self._rows.values():
            if row.tenant_id == tenant_id and row.account_name == account_name:
                return copy.deepcopy(row)
        return None

    async def save(self, a: Account, *, expected_version: int) -> None:
        row = self._rows.get(a.id)
        if row is None or row.version != expected_version or row.tenant_id != a.tenant_id:
            raise EtagMismatch(f"accounts/{a.id}")
        self._check_name(a)
        # As the ORM: created_at is never rewritten, updated_at only when given, version bumped.
        self._rows[a.id] = replace(copy.deepcopy(a), created_at=row.created_at,
                                   updated_at=a.updated_at or row.updated_at, version=expected_version + 1)

    async def delete(self, tenant_id: str, account_id: str) -> None:
        row = self._rows.get(account_id)
        if row is not None and row.tenant_id == tenant_id:
            del self._rows[account_id]

    async def count(self, tenant_id: str) -> int:
        return sum(1 for row in self._rows.values() if row.tenant_id == tenant_id)

    async def list_page(self, tenant_id: str, status: AccountStatus | None, user_id: str | None,
                        after_id: str | None, limit: int) -> list[Account]:
        rows = sorted((r for r in self._rows.values()
                       if r.tenant_id == tenant_id
                       and (status is None or r.status is status)
                       and (not user_id or r.user_id == user_id)
                       and (not after_id or r.id > after_id)), key=lambda r: r.id)
        return [copy.deepcopy(r) for r in rows[:limit]]

    async def touch_heartbeat(self, tenant_id: str, account_id: str, at: datetime,
                              resolution: timedelta) -> bool:
        row = self._rows.get(account_id)
        if row is None or row.tenant_id != tenant_id:
            return False
        if row.last_heartbeat_time is not None and row.last_heartbeat_time >= at - resolution:
            return False
        # Not a versioned change: version and updated_at stay.
        self._rows[account_id] = replace(row, last_heartbeat_time=at)
        return True

    async def guids_with_provider_sessions(self, statuses: Sequence[AccountStatus], limit: int) -> list[str]:
        guids = sorted(r.guid for r in self._rows.values()
                       if r.guid is not None and r.provider_token is not None
                       and (r.status in statuses
                            or (r.status is AccountStatus.OFFLINE and r.next_recovery_at is not None)))
        return guids[:limit]


@repository("status_history")
class InMemoryStatusHistory:
    """account_status_history (id -> StatusChange) and account_event_sequences (tenant -> last seq)."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, StatusChange] = uow.tables["account_status_history"]
        self._seqs: dict[str, int] = uow.tables["account_event_sequences"]

    async def allocate(self, tenant_id: str, count: int = 1) -> int:
        last = self._seqs.get(tenant_id, 0) + count
        self._seqs[tenant_id] = last
        return last - count + 1

    async def append(self, changes: Sequence[StatusChange]) -> list[StatusChange]:
        stored: list[StatusChange] = []
        by_tenant: dict[str, list[StatusChange]] = {}
        for c in changes:
            by_tenant.setdefault(c.tenant_id, []).append(c)
        for tenant_id in sorted(by_tenant):
            group = by_tenant[tenant_id]
            first = await self.allocate(tenant_id, len(group))
            stored.extend(replace(c, id=c.id or new_id(), seq=first + i) for i, c in enumerate(group))
        for c in stored:
            self._rows[c.id] = copy.deepcopy(c)
        return stored

    async def last_seq(self, tenant_id: str) -> int:
        return self._seqs.get(tenant_id, 0)

    async def after(self, tenant_id: str, after_seq: int, upto_seq: int, account_ids: Iterable[str] | None,
                    limit: int) -> list[StatusChange]:
        ids = set(account_ids or ())
        rows = sorted((c for c in self._rows.values()
                       if c.tenant_id == tenant_id and after_seq < c.seq <= upto_seq
                       and (not ids or c.account_id in ids)), key=lambda c: c.seq)
        return [copy.deepcopy(c) for c in rows[:limit]]

    async def page_for_account(self, tenant_id: str, account_id: str, before_seq: int | None,
                               limit: int) -> list[StatusChange]:
        rows = sorted((c for c in self._rows.values()
                       if c.tenant_id == tenant_id and c.account_id == account_id
                       and (before_seq is None or c.seq < before_seq)),
                      key=lambda c: (c.seq, c.id), reverse=True)
        return [copy.deepcopy(c) for c in rows[:limit]]


@repository("conversations")
class InMemoryConversations:
    """conversations: id -> Conversation."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._rows: dict[str, Conversation] = uow.tables["conversations"]

    async def add(self, c: Conversation) -> None:
        # uk_conversations_account_conversation
        if any(o.account_id == c.account_id and o.conversation_id == c.conversation_id
               for o in self._rows.values()):
            raise AlreadyExists("conversation", "conversation_id", c.conversation_id)
        self._rows[c.id] = replace(copy.deepcopy(c), version=1)

    async def get(self, tenant_id: str, conversation_id: str, *, for_update: bool = False) -> Conversation | None:
        row = self._rows.get(conversation_id)
        return copy.deepcopy(row) if row is not None and row.tenant_id == tenant_id else None

    async def get_by_provider_id(self, tenant_id: str, account_id: str, provider_conversation_id: str, *,
                                 for_update: bool = False) -> Conversation | None:
        for row in self._rows.values():
            if (row.tenant_id, row.account_id, row.conversation_id) == (tenant_id, account_id,
                                                                          provider_conversation_id):
                return copy.deepcopy(row)
        return None

    async def save(self, c: Conversation, *, expected_version: int) -> None:
        row = self._rows.get(c.id)
        if row is None or row.version != expected_version or row.tenant_id != c.tenant_id:
            raise EtagMismatch(f"conversations/{c.id}")
        self._rows[c.id] = replace(copy.deepcopy(c), created_at=row.created_at,
                                   updated_at=c.updated_at or row.updated_at, version=expected_version + 1)

    async def delete_for_account(self, tenant_id: str, account_id: str) -> None:
        for key in [k for k, r in self._rows.items() if r.tenant_id == tenant_id and r.account_id == account_id]:
            del self._rows[key]

    async def list_page(self, tenant_id: str, account_id: str, conversation_type: ConversationType | None,
                        is_pinned: bool | None, tag: str | None, after: tuple[datetime, str] | None,
                        limit: int) -> list[Conversation]:
        """Newest last message first, then id descending (as the SQL's ORDER BY)."""

        def follows(r: Conversation) -> bool:
            if after is None:
                return True
            t, i = after
            return r.last_msg_time < t or (r.last_msg_time == t and r.id < i)

        rows = sorted((r for r in self._rows.values()
                       if r.tenant_id == tenant_id and r.account_id == account_id
                       and (conversation_type is None or r.conversation_type is conversation_type)
                       and (is_pinned is None or r.is_pinned == is_pinned)
                       and (not tag or tag in r.tags)
                       and follows(r)),
                      key=lambda r: (r.last_msg_time, r.id), reverse=True)
        return [copy.deepcopy(r) for r in rows[:limit]]


@repository("account_directory")
class InMemoryAccountDirectory:
    """The directory's account_guids (guid -> (tenant, account)); forget_request deletes from
    the directory's idempotency_keys, which uow.directory keeps (fakes/identity.py)."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._guids: dict[str, tuple[str, str, datetime]] = uow.tables["account_guids"]
        self._idempotency: dict[tuple[str, str, str], str] = uow.tables["idempotency_keys"]

    async def reserve_guid(self, guid: str, tenant_id: str, account_id: str, now: datetime) -> None:
        if guid in self._guids:
            raise AlreadyExists("account", "guid", guid)
        self._guids[guid] = (tenant_id, account_id, now)

    async def lookup(self, guid: str) -> tuple[str, str] | None:
        row = self._guids.get(guid)
        return None if row is None else (row[0], row[1])

    async def guid_of(self, tenant_id: str, account_id: str) -> str | None:
        for guid, (t, a, _) in self._guids.items():
            if (t, a) == (tenant_id, account_id):
                return guid
        return None

    async def release(self, guid: str) -> None:
        self._guids.pop(guid, None)

    async def forget_request(self, tenant_id: str, operation: str, request_id: str) -> None:
        self._idempotency.pop((tenant_id, operation, request_id), None)
