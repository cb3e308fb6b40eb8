"""Unit of work: one transaction on one physical database.

A transaction never spans shards or services; work that must touch several goes through
durable rows and idempotent consumers (see ARCHITECTURE.md, Data).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from wework.domain.errors import Unavailable

from .driver_tx import DriverTransaction
from .errors import is_unavailable
from .repositories.accounts import (
    AccountDirectoryRepository,
    AccountRepository,
    ConversationRepository,
    StatusHistoryRepository,
)
from .repositories.batches import BatchRepository
from .repositories.callbacks import CallbackRepository, EffectLedger
from .repositories.dispatch import DispatchRepository
from .repositories.identity import (
    ApiKeyRepository,
    Cipher,
    DirectoryRepository,
    IdempotencyRepository,
    RoleRepository,
    TenantRepository,
    UserRepository,
)
from .repositories.media import MediaRepository
from .repositories.messages import MessageRepository, TemplateRepository
from .repositories.reports import ReportRepository
from .repositories.webhooks import WebhookDeliveryRepository, WebhookEndpointRepository
from .resilience import close_quietly

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[Any] | Any]


class Participant(Protocol):
    """Work prepared elsewhere that commits or rolls back with a unit of work."""

    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    async def abandon(self) -> None: ...


class UnitOfWork:
    """`session` is the transaction; the context manager commits on success, rolls back on error.

    `session` is an AsyncSession, or a driver_tx.DriverTransaction for a unit of work that runs
    rendered SQL only (Database.shard_unit_of_work(rendered_sql=True)).

    The repositories are attributes (`uow.messages`, `uow.accounts`, ...), built on first use:
    the use cases name what they need and never the session, so a test can hand them an
    in-memory unit of work with the same attributes (tests/harness/fakes). Each
    repository works on the tables of the database this unit of work is open on."""

    def __init__(self, session: AsyncSession, db: str, shard: str | None, tenant_id: str | None,
                 cipher: Cipher | None = None) -> None:
        self.session = session
        self.db = db
        self.shard = shard
        self.tenant_id = tenant_id
        # Seals the columns that hold secrets (tokens, password-derived material); set by the
        # Database that opened this unit of work.
        self.cipher = cipher
        self._after_commit: list[AfterCommit] = []
        self._enlisted: list[Participant] = []

    # ---- repositories -------------------------------------------------------------------------
    # account database
    @functools.cached_property
    def accounts(self) -> AccountRepository:
        return AccountRepository(self.session, self._require_cipher())

    @functools.cached_property
    def status_history(self) -> StatusHistoryRepository:
        return StatusHistoryRepository(self.session)

    @functools.cached_property
    def conversations(self) -> ConversationRepository:
        return ConversationRepository(self.session)

    # directory database
    @functools.cached_property
    def account_directory(self) -> AccountDirectoryRepository:
        return AccountDirectoryRepository(self.session)

    @functools.cached_property
    def directory(self) -> DirectoryRepository:
        return DirectoryRepository(self.session)

    @functools.cached_property
    def idempotency(self) -> IdempotencyRepository:
        return IdempotencyRepository(self.session)

    # user database
    @functools.cached_property
    def tenants(self) -> TenantRepository:
        return TenantRepository(self.session, self._require_cipher())

    @functools.cached_property
    def users(self) -> UserRepository:
        return UserRepository(self.session, self._require_cipher())

    @functools.cached_property
    def roles(self) -> RoleRepository:
        return RoleRepository(self.session)

    @functools.cached_property
    def api_keys(self) -> ApiKeyRepository:
        return ApiKeyRepository(self.session)

    # message database
    @functools.cached_property
    def messages(self) -> MessageRepository:
        return MessageRepository(self.session)

    @functools.cached_property
    def templates(self) -> TemplateRepository:
        return TemplateRepository(self.session)

    @functools.cached_property
    def batches(self) -> BatchRepository:
        return BatchRepository(self.session)

    @functools.cached_property
    def dispatch(self) -> DispatchRepository:
        return DispatchRepository(self.session)

    @functools.cached_property
    def media(self) -> MediaRepository:
        return MediaRepository(self.session)

    @functools.cached_property
    def reports(self) -> ReportRepository:
        return ReportRepository(self.session)

    # callback database
    @functools.cached_property
    def callbacks(self) -> CallbackRepository:
        return CallbackRepository(self.session)

    @functools.cached_property
    def webhook_endpoints(self) -> WebhookEndpointRepository:
        return WebhookEndpointRepository(self.session)

    @functools.cached_property
    def webhook_deliveries(self) -> WebhookDeliveryRepository:
        return WebhookDeliveryRepository(self.session)

    @functools.cached_property
    def effects(self) -> EffectLedger:
        """The applied-callbacks ledger of this database (account or message): an effect and
        its ledger row commit or roll back together."""
        if self.db == "account":
            return EffectLedger.of_account_db(self.session)
        if self.db == "message":
            return EffectLedger.of_message_db(self.session)
        raise RuntimeError(f"the {self.db} database keeps no applied-callbacks ledger")

    def _require_cipher(self) -> Cipher:
        if self.cipher is None:
            raise RuntimeError("this unit of work was opened without a column cipher (Database(cipher=...))")
        return self.cipher

    def enlist(self, participant: Participant | None) -> None:
        """Makes prepared work on other connections of this database (XA branches,
        wework.persistence.xa) part of this transaction: committed right after it commits,
        rolled back if it rolls back, and left to recovery if the COMMIT's outcome is unknown."""
        if participant is not None:
            self._enlisted.append(participant)

    def after_commit(self, fn: AfterCommit) -> None:
        """Runs `fn` once the transaction has committed (cache invalidation, worker wake-ups).

        Never before: a reader woken early would not see the rows yet. Failures are logged and
        swallowed, because the transaction is already durable and the hooks are best-effort.
        """
        self._after_commit.append(fn)

    async def flush(self) -> None:
        await self.session.flush()

    async def _decide(self, outcome: str) -> None:
        enlisted, self._enlisted = self._enlisted, []
        for participant in enlisted:
            try:
                await getattr(participant, outcome)()
            except Exception:
                log.exception("enlisted participant failed to %s (db=%s shard=%s)", outcome, self.db, self.shard)

    async def _run_after_commit(self) -> None:
        # Shielded: a caller cancelled right after the COMMIT (a client gone) must not leave the
        # enlisted work prepared until a recovery sweep. Only then: shield makes a task, and
        # every commit (the send path's too) passes here.
        if self._enlisted:
            await asyncio.shield(self._decide("commit"))
        for fn in self._after_commit:
            try:
                result = fn()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("after-commit hook failed (db=%s shard=%s)", self.db, self.shard)


def unavailable(db: str, shard: str | None, exc: BaseException) -> Unavailable:
    where = db if shard is None else f"{db} database on shard {shard}"
    meta = {"database": db}
    if shard is not None:
        meta["shard"] = shard
    # The driver's text (host, port, SQL) is for the log, not for callers.
    log.debug("the %s is unavailable: %r", where, exc)
    return Unavailable(f"the {where} is unavailable; retry shortly", metadata=meta)


@asynccontextmanager
async def mapped_errors(db: str, shard: str | None) -> AsyncIterator[None]:
    """Turns connection-level failures into Unavailable; everything else passes unchanged."""
    try:
        yield
    except Unavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(db, shard, exc) from exc
        raise


@asynccontextmanager
async def open_session(engine: AsyncEngine, db: str, shard: str | None) -> AsyncIterator[AsyncSession]:
    """A session the caller commits itself; rolled back and closed on exit."""
    # expire_on_commit=False: objects stay readable after commit, e.g. to build the response.
    session = AsyncSession(bind=engine, expire_on_commit=False)
    try:
        async with mapped_errors(db, shard):
            yield session
    finally:
        await close_quietly(session, "session")


def open_unit_of_work(engine: AsyncEngine, db: str, shard: str | None,
                      tenant_id: str | None) -> AbstractAsyncContextManager[UnitOfWork]:
    # expire_on_commit=False: objects stay readable after commit, e.g. to build the response.
    return _run_unit_of_work(AsyncSession(bind=engine, expire_on_commit=False), db, shard, tenant_id)


@asynccontextmanager
async def open_driver_unit_of_work(engine: AsyncEngine, db: str, shard: str | None,
                                   tenant_id: str | None) -> AsyncIterator[UnitOfWork]:
    """A unit of work whose `session` is a DriverTransaction (driver_tx): for work that runs
    rendered SQL only (bulk.MultiRowInsert), on MySQL/MariaDB (driver_tx.driver_level)."""
    async with mapped_errors(db, shard):
        connection = await engine.raw_connection()
    transaction = DriverTransaction(connection, engine.dialect)
    async with _run_unit_of_work(transaction, db, shard, tenant_id) as uow:  # type: ignore[arg-type]
        yield uow


@asynccontextmanager
async def _run_unit_of_work(session: AsyncSession, db: str, shard: str | None,
                            tenant_id: str | None) -> AsyncIterator[UnitOfWork]:
    uow = UnitOfWork(session, db, shard, tenant_id)
    try:
        async with mapped_errors(db, shard):
            try:
                yield uow
            except BaseException:
                await _rollback_quietly(session)
                await uow._decide("rollback")
                raise
            try:
                await session.commit()
            except BaseException:
                await uow._decide("abandon")  # committed or not: the recorded decision tells
                raise
    finally:
        await close_quietly(session, "session")
    await uow._run_after_commit()


async def _rollback_quietly(session: AsyncSession) -> None:
    # The original error matters more than a rollback on a connection that may be dead.
    try:
        await session.rollback()
    except Exception:
        log.debug("rollback failed", exc_info=True)


