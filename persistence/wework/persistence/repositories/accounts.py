"""Repositories of the account database and the account part of the directory.

They speak domain entities (wework.domain.accounts) and never protobuf. phone, email and
login_token are encrypted here on the way in and out, like the identity repositories do.

Lock order (no deadlocks between status-changing transactions): account rows first
(FOR UPDATE), then the tenant's account_event_sequences row (StatusHistoryRepository.append),
which stays locked until commit. Several tenants' sequence rows are locked in tenant id order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncSession
from wework.domain.accounts import (
    Account,
    AccountStatus,
    Conversation,
    ConversationType,
    Operator,
    OperatorType,
    StatusChange,
)
from wework.domain.errors import AlreadyExists, EtagMismatch
from wework.persistence.errors import checked_flush, duplicate_key_name
from wework.persistence.ids import new_id
from wework.persistence.models import account as am
from wework.persistence.models import directory as dm
from wework.persistence.repositories.identity import Cipher

_PHONE = "wework_accounts.phone"
_EMAIL = "wework_accounts.email"
_TOKEN = "wework_accounts.login_token"
_PROVIDER_TOKEN = "wework_accounts.provider_token"


async def _flush(session: AsyncSession, subject: str, duplicates: dict[str, tuple[str, str, str]]) -> None:
    await checked_flush(session, subject, duplicates, am.metadata)


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name  # type: ignore[union-attr]


# ---- accounts ------------------------------------------------------------------------------------


class AccountRepository:
    def __init__(self, session: AsyncSession, cipher: Cipher) -> None:
        self._s = session
        self._c = cipher

    def _to_domain(self, r: am.WeworkAccount) -> Account:
        return Account(
            id=r.id, tenant_id=r.tenant_id, account_name=r.account_name, guid=r.guid, user_id=r.user_id,
            phone=self._c.decrypt(r.phone, context=_PHONE), email=self._c.decrypt(r.email, context=_EMAIL),
            status=AccountStatus(r.status), config=r.config, user_info=r.user_info,
            login_token=self._c.decrypt(r.login_token, context=_TOKEN), qr_code_url=r.qr_code_url,
            qr_payload=r.qr_payload, qr_expire_time=r.qr_expire_time, last_login_time=r.last_login_time,
            last_heartbeat_time=r.last_heartbeat_time, login_retry_count=r.login_retry_count,
            error_message=r.error_message, recovery_attempts=r.recovery_attempts,
            next_recovery_at=r.next_recovery_at, created_at=r.created_at, updated_at=r.updated_at,
            version=r.version, provider_token=self._c.decrypt(r.provider_token, context=_PROVIDER_TOKEN),
        )

    def _apply(self, r: am.WeworkAccount, a: Account) -> None:
        r.account_name = a.account_name
        r.user_id = a.user_id
        r.phone = self._c.encrypt(a.phone, context=_PHONE)
        r.phone_hash = self._c.lookup_hash(a.phone, context=_PHONE) if a.phone else None
        r.email = self._c.encrypt(a.email, context=_EMAIL)
        r.email_hash = self._c.lookup_hash(a.email, context=_EMAIL) if a.email else None
        r.guid = a.guid
        r.status = a.status.value
        r.config = a.config
        r.user_info = a.user_info
        r.login_token = self._c.encrypt(a.login_token, context=_TOKEN)
        r.provider_token = self._c.encrypt(a.provider_token, context=_PROVIDER_TOKEN)
        r.qr_code_url = a.qr_code_url
        r.qr_payload = a.qr_payload
        r.qr_expire_time = a.qr_expire_time
        r.last_login_time = a.last_login_time
        r.last_heartbeat_time = a.last_heartbeat_time
        r.login_retry_count = a.login_retry_count
        r.error_message = a.error_message
        r.recovery_attempts = a.recovery_attempts
        r.next_recovery_at = a.next_recovery_at
        if a.updated_at is not None:
            r.updated_at = a.updated_at

    @staticmethod
    def _duplicates(a: Account) -> dict[str, tuple[str, str, str]]:
        return {"uk_wework_accounts_tenant_account_name": ("account", "account_name", a.account_name)}

    async def add(self, a: Account) -> None:
        row = am.WeworkAccount(id=a.id, tenant_id=a.tenant_id, created_at=a.created_at, version=1)
        self._apply(row, a)
        self._s.add(row)
        await _flush(self._s, f"accounts/{a.id}", self._duplicates(a))

    async def get(self, tenant_id: str, account_id: str, *, for_update: bool = False) -> Account | None:
        stmt = sa.select(am.WeworkAccount).where(am.WeworkAccount.id == account_id,
                                                 am.WeworkAccount.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else self._to_domain(row)

    async def get_by_name(self, tenant_id: str, account_name: str) -> Account | None:
        row = (await self._s.execute(sa.select(am.WeworkAccount).where(
            am.WeworkAccount.tenant_id == tenant_id, am.WeworkAccount.account_name == account_name))
        ).scalar_one_or_none()
        return None if row is None else self._to_domain(row)

    async def save(self, a: Account, *, expected_version: int) -> None:
        """Writes `a` if the stored version is still `expected_version` (the ORM then bumps it)."""
        row = await self._s.get(am.WeworkAccount, a.id)
        if row is None or row.version != expected_version or row.tenant_id != a.tenant_id:
            raise EtagMismatch(f"accounts/{a.id}")
        self._apply(row, a)
        await _flush(self._s, f"accounts/{a.id}", self._duplicates(a))

    async def delete(self, tenant_id: str, account_id: str) -> None:
        await self._s.execute(sa.delete(am.WeworkAccount).where(am.WeworkAccount.id == account_id,
                                                                am.WeworkAccount.tenant_id == tenant_id))

    async def count(self, tenant_id: str) -> int:
        return (await self._s.execute(sa.select(sa.func.count()).select_from(am.WeworkAccount)
                                      .where(am.WeworkAccount.tenant_id == tenant_id))).scalar_one()

    async def count_by_status(self) -> dict[str, int]:
        """Accounts of every tenant on this shard, by status (the idx_status index serves it)."""
        rows = await self._s.execute(sa.select(am.WeworkAccount.status, sa.func.count())
                                     .group_by(am.WeworkAccount.status))
        return {status: n for status, n in rows}

    async def list_page(self, tenant_id: str, status: AccountStatus | None, user_id: str | None,
                        after_id: str | None, limit: int) -> list[Account]:
        stmt = (sa.select(am.WeworkAccount).where(am.WeworkAccount.tenant_id == tenant_id)
                .order_by(am.WeworkAccount.id).limit(limit))
        if status is not None:
            stmt = stmt.where(am.WeworkAccount.status == status.value)
        if user_id:
            stmt = stmt.where(am.WeworkAccount.user_id == user_id)
        if after_id:
            stmt = stmt.where(am.WeworkAccount.id > after_id)
        return [self._to_domain(r) for r in (await self._s.execute(stmt)).scalars()]

    async def touch_heartbeat(self, tenant_id: str, account_id: str, at: datetime,
                              resolution: timedelta) -> bool:
        """Records a heartbeat unless one within `resolution` is stored already. True if written.

        Not a versioned change: etags and update_time stay, so a client's etag is not made stale
        by every heartbeat.
        """
        t = am.WeworkAccount
        result = await self._s.execute(
            sa.update(t)
            .where(t.id == account_id, t.tenant_id == tenant_id,
                   sa.or_(t.last_heartbeat_time.is_(None), t.last_heartbeat_time < at - resolution))
            .values(last_heartbeat_time=at, updated_at=t.updated_at)
            .execution_options(synchronize_session=False))
        return result.rowcount > 0

    # -- the heartbeat monitor (one shard at a time, any tenant) -----------------------------------

    async def lock_stale_online(self, cutoff: datetime, limit: int) -> list[Account]:
        """ONLINE accounts without a heartbeat since `cutoff`, locked; rows another transaction
        holds are skipped (SKIP LOCKED; SQLAlchemy leaves it out on SQLite, which has one writer)."""
        t = am.WeworkAccount
        stmt = (sa.select(t).where(t.status == AccountStatus.ONLINE.value,
                                   sa.or_(t.last_heartbeat_time.is_(None), t.last_heartbeat_time < cutoff))
                .order_by(t.last_heartbeat_time).limit(limit).with_for_update(skip_locked=True))
        return [self._to_domain(r) for r in (await self._s.execute(stmt)).scalars()]

    async def guids_with_provider_sessions(self, statuses: Sequence[AccountStatus], limit: int) -> list[str]:
        """Guids of accounts with a provider token whose provider session someone must follow:
        in one of `statuses`, or OFFLINE with a recovery scheduled (idx_status serves it)."""
        t = am.WeworkAccount
        stmt = (sa.select(t.guid).where(
            t.guid.is_not(None), t.provider_token.is_not(None),
            sa.or_(t.status.in_([s.value for s in statuses]),
                   sa.and_(t.status == AccountStatus.OFFLINE.value, t.next_recovery_at.is_not(None))))
            .order_by(t.guid).limit(limit))
        return [g for g in (await self._s.execute(stmt)).scalars()]

    async def lock_due_recoveries(self, now: datetime, limit: int) -> list[Account]:
        """OFFLINE/RECOVERING accounts whose next recovery attempt is due, locked (SKIP LOCKED)."""
        t = am.WeworkAccount
        stmt = (sa.select(t).where(t.status.in_([AccountStatus.OFFLINE.value, AccountStatus.RECOVERING.value]),
                                   t.next_recovery_at.is_not(None), t.next_recovery_at <= now)
                .order_by(t.next_recovery_at).limit(limit).with_for_update(skip_locked=True))
        return [self._to_domain(r) for r in (await self._s.execute(stmt)).scalars()]


# ---- status history and the per-tenant sequence -------------------------------------------------------


class StatusHistoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    @staticmethod
    def _to_domain(r: am.AccountStatusHistory) -> StatusChange:
        return StatusChange(
            id=r.id, seq=r.seq, tenant_id=r.tenant_id, account_id=r.account_id, old_status=r.old_status,
            new_status=r.new_status, reason=r.reason or "", error_message=r.error_message,
            extra_data=r.extra_data, operator=Operator(OperatorType(r.operator_type), r.operator_id),
            created_at=r.created_at,
        )

    async def allocate(self, tenant_id: str, count: int = 1) -> int:
        """Reserves `count` consecutive seqs of the tenant; returns the first. Locks the tenant's
        sequence row until commit, so the tenant's changes commit in seq order and a rollback
        gives the numbers back (no gaps)."""
        t = am.AccountEventSequence
        if _dialect(self._s) == "sqlite":
            stmt = sqlite_dialect.insert(t).values(tenant_id=tenant_id, last_seq=count).on_conflict_do_update(
                index_elements=[t.tenant_id], set_={"last_seq": t.last_seq + count})
        else:
            # The upsert takes the row's exclusive lock, also when it creates the row.
            stmt = mysql_dialect.insert(t).values(tenant_id=tenant_id, last_seq=count).on_duplicate_key_update(
                last_seq=t.last_seq + count)
        await self._s.execute(stmt)
        last = (await self._s.execute(sa.select(t.last_seq).where(t.tenant_id == tenant_id))).scalar_one()
        return last - count + 1

    async def append(self, changes: Sequence[StatusChange]) -> list[StatusChange]:
        """Stores the changes with ids and seqs (per tenant, in the given order); call last in
        the transaction, after the account rows are locked and written."""
        stored: list[StatusChange] = []
        by_tenant: dict[str, list[StatusChange]] = {}
        for c in changes:
            by_tenant.setdefault(c.tenant_id, []).append(c)
        for tenant_id in sorted(by_tenant):  # one lock order for every transaction
            group = by_tenant[tenant_id]
            first = await self.allocate(tenant_id, len(group))
            for i, c in enumerate(group):
                stored.append(replace(c, id=c.id or new_id(), seq=first + i))
        for c in stored:
            self._s.add(am.AccountStatusHistory(
                id=c.id, created_at=c.created_at, tenant_id=c.tenant_id, account_id=c.account_id,
                old_status=c.old_status, new_status=c.new_status, reason=c.reason,
                error_message=c.error_message, extra_data=c.extra_data, operator_id=c.operator.id,
                operator_type=c.operator.type.value, seq=c.seq))
        await self._s.flush()
        return stored

    async def last_seq(self, tenant_id: str) -> int:
        t = am.AccountEventSequence
        value = (await self._s.execute(sa.select(t.last_seq).where(t.tenant_id == tenant_id))).scalar_one_or_none()
        return value or 0

    async def after(self, tenant_id: str, after_seq: int, upto_seq: int, account_ids: Iterable[str] | None,
                    limit: int) -> list[StatusChange]:
        """The tenant's changes with after_seq < seq <= upto_seq, oldest first."""
        h = am.AccountStatusHistory
        stmt = (sa.select(h).where(h.tenant_id == tenant_id, h.seq > after_seq, h.seq <= upto_seq)
                .order_by(h.seq).limit(limit))
        ids = list(account_ids or ())
        if ids:
            stmt = stmt.where(h.account_id.in_(ids))
        return [self._to_domain(r) for r in (await self._s.execute(stmt)).scalars()]

    async def page_for_account(self, tenant_id: str, account_id: str, before_seq: int | None,
                               limit: int) -> list[StatusChange]:
        """An account's changes, newest first, with seq < before_seq."""
        h = am.AccountStatusHistory
        stmt = (sa.select(h).where(h.tenant_id == tenant_id, h.account_id == account_id)
                .order_by(h.seq.desc(), h.id.desc()).limit(limit))
        if before_seq is not None:
            stmt = stmt.where(h.seq < before_seq)
        return [self._to_domain(r) for r in (await self._s.execute(stmt)).scalars()]


# ---- conversations ---------------------------------------------------------------------------------


class ConversationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    @staticmethod
    def _to_domain(r: am.Conversation) -> Conversation:
        return Conversation(
            id=r.id, tenant_id=r.tenant_id, account_id=r.account_id, conversation_id=r.conversation_id,
            conversation_type=ConversationType(r.conversation_type), conversation_name=r.conversation_name,
            avatar_url=r.avatar_url, member_count=r.member_count or 0, last_msg_time=r.last_msg_time,
            last_msg_content=r.last_msg_content, unread_count=r.unread_count or 0, is_active=r.is_active,
            is_pinned=r.is_pinned, tags=list(r.tags or []), extra_info=r.extra_info, created_at=r.created_at,
            updated_at=r.updated_at, version=r.version,
        )

    @staticmethod
    def _apply(r: am.Conversation, c: Conversation) -> None:
        r.conversation_name = c.conversation_name
        r.conversation_type = c.conversation_type.value
        r.avatar_url = c.avatar_url
        r.member_count = c.member_count
        r.last_msg_time = c.last_msg_time
        r.last_msg_content = c.last_msg_content
        r.unread_count = c.unread_count
        r.is_active = c.is_active
        r.is_pinned = c.is_pinned
        r.tags = list(c.tags)
        r.extra_info = c.extra_info
        if c.updated_at is not None:
            r.updated_at = c.updated_at

    async def add(self, c: Conversation) -> None:
        row = am.Conversation(id=c.id, tenant_id=c.tenant_id, account_id=c.account_id,
                              conversation_id=c.conversation_id, created_at=c.created_at, version=1)
        self._apply(row, c)
        self._s.add(row)
        await _flush(self._s, f"conversations/{c.id}", {
            "uk_conversations_account_conversation": ("conversation", "conversation_id", c.conversation_id)})

    async def get(self, tenant_id: str, conversation_id: str, *, for_update: bool = False) -> Conversation | None:
        stmt = sa.select(am.Conversation).where(am.Conversation.id == conversation_id,
                                                am.Conversation.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else self._to_domain(row)

    async def get_by_provider_id(self, tenant_id: str, account_id: str, provider_conversation_id: str, *,
                                 for_update: bool = False) -> Conversation | None:
        stmt = sa.select(am.Conversation).where(am.Conversation.tenant_id == tenant_id,
                                                am.Conversation.account_id == account_id,
                                                am.Conversation.conversation_id == provider_conversation_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = (await self._s.execute(stmt)).scalar_one_or_none()
        return None if row is None else self._to_domain(row)

    async def save(self, c: Conversation, *, expected_version: int) -> None:
        row = await self._s.get(am.Conversation, c.id)
        if row is None or row.version != expected_version or row.tenant_id != c.tenant_id:
            raise EtagMismatch(f"conversations/{c.id}")
        self._apply(row, c)
        await _flush(self._s, f"conversations/{c.id}", {})

    async def delete_for_account(self, tenant_id: str, account_id: str) -> None:
        await self._s.execute(sa.delete(am.Conversation).where(am.Conversation.tenant_id == tenant_id,
                                                               am.Conversation.account_id == account_id))

    async def list_page(self, tenant_id: str, account_id: str, conversation_type: ConversationType | None,
                        is_pinned: bool | None, tag: str | None, after: tuple[datetime, str] | None,
                        limit: int) -> list[Conversation]:
        """Newest last message first (last_msg_time is never NULL: set when first seen)."""
        c = am.Conversation
        stmt = (sa.select(c).where(c.tenant_id == tenant_id, c.account_id == account_id)
                .order_by(c.last_msg_time.desc(), c.id.desc()).limit(limit))
        if conversation_type is not None:
            stmt = stmt.where(c.conversation_type == conversation_type.value)
        if is_pinned is not None:
            stmt = stmt.where(c.is_pinned == is_pinned)
        if tag:
            stmt = stmt.where(self._has_tag(tag))
        if after is not None:
            t, i = after
            stmt = stmt.where(c.last_msg_time <= t, sa.or_(c.last_msg_time < t, c.id < i))
        return [self._to_domain(r) for r in (await self._s.execute(stmt)).scalars()]

    def _has_tag(self, tag: str) -> sa.ColumnElement[bool]:
        c = am.Conversation
        if _dialect(self._s) == "sqlite":
            each = sa.func.json_each(c.tags).table_valued("value")
            return sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))
        return sa.func.json_contains(c.tags, sa.func.json_quote(tag)) == 1


# ---- the directory's guid index ----------------------------------------------------------------------


class AccountDirectoryRepository:
    """guid -> (tenant, account): the global uniqueness of guids, and callback routing."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def reserve_guid(self, guid: str, tenant_id: str, account_id: str, now: datetime) -> None:
        self._s.add(dm.AccountGuid(guid=guid, tenant_id=tenant_id, account_id=account_id, created_at=now))
        try:
            await self._s.flush()
        except sa.exc.IntegrityError as exc:
            if duplicate_key_name(exc, dm.metadata) == "PRIMARY":
                raise AlreadyExists("account", "guid", guid) from exc
            raise

    async def lookup(self, guid: str) -> tuple[str, str] | None:
        row = await self._s.get(dm.AccountGuid, guid)
        return None if row is None else (row.tenant_id, row.account_id)

    async def guid_of(self, tenant_id: str, account_id: str) -> str | None:
        return (await self._s.execute(sa.select(dm.AccountGuid.guid).where(
            dm.AccountGuid.tenant_id == tenant_id, dm.AccountGuid.account_id == account_id))).scalar_one_or_none()

    async def release(self, guid: str) -> None:
        await self._s.execute(sa.delete(dm.AccountGuid).where(dm.AccountGuid.guid == guid))

    async def forget_request(self, tenant_id: str, operation: str, request_id: str) -> None:
        await self._s.execute(sa.delete(dm.IdempotencyKey).where(
            dm.IdempotencyKey.tenant_id == tenant_id, dm.IdempotencyKey.operation == operation,
            dm.IdempotencyKey.request_id == request_id))
