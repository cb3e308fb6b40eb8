"""The persistence port of the use cases: units of work, each exposing its repositories.

The use cases open a unit of work (one transaction on one database of one shard) and use the
repositories it exposes (`uow.messages`, `uow.accounts`, ...); they never build a repository or
touch a session. `wework.persistence.database.Database` implements this port on MariaDB or
SQLite; tests/harness/fakes (FakeDatabase) implements it in memory, so the use cases run in unit
tests without a database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from wework.persistence.uow import UnitOfWork

T = TypeVar("T")


class UnitsOfWork(Protocol):
    """Where the use cases' transactions come from (implemented by Database)."""

    # The column cipher the units of work hand to the repositories that seal secrets.
    cipher: Any

    @property
    def shard_names(self) -> list[str]: ...

    def shard_for(self, tenant_id: str) -> str:
        """The shard holding the tenant's rows."""
        ...

    def unit_of_work(self, db: str, tenant_id: str, *,
                     read_only: bool = False) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction on the tenant's shard of service database `db`."""
        ...

    def shard_unit_of_work(self, db: str, shard: str, *, read_only: bool = False, tenants: Iterable[str] = (),
                           rendered_sql: bool = False) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction on a named shard (batched writes of several tenants, sweeps)."""
        ...

    def directory_unit_of_work(self, *, read_only: bool = False) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction on the directory (tenant codes, account guids, idempotency keys)."""
        ...

    async def for_each_shard(self, db: str, fn: Callable[[UnitOfWork], Awaitable[T]], *,
                             read_only: bool = True) -> list[T]:
        """`fn(uow)` on every shard of `db`, results in `shard_names` order."""
        ...
