"""In-memory stand-ins for the persistence port of the use cases (application/ports.py).

`FakeDatabase` implements `UnitsOfWork`: its units of work expose the same repository
attributes as wework.persistence.uow.UnitOfWork (`uow.messages`, `uow.accounts`, ...), each an
in-memory repository with the methods the use cases call and the same answers (the domain
objects, the domain errors on conflicts). The use-case unit tests (tests/unit/application) run
on it in seconds, with no database.

Transactions: each (database, shard) keeps its tables in one `Tables` object; a unit of work
works on it directly and, if its block raises, puts back a deep copy taken when it opened, so
a failed use case leaves nothing behind (as a rollback would). After-commit hooks run only
after a successful block. Units of work are not isolated from each other while open (the tests
do not interleave transactions on one shard); the SQL repositories' locking is what the
integration suites test.

Each area's in-memory repositories live in a module beside this one (accounts.py,
messages.py, ...) and register themselves by attribute name with `repository(...)`; importing
`harness.fakes` imports them all.
"""

from __future__ import annotations

import copy
import inspect
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")

DIRECTORY = "directory"

# attribute name on the unit of work -> factory(uow) of the in-memory repository
_REPOSITORIES: dict[str, Callable[[FakeUnitOfWork], Any]] = {}


def repository(name: str) -> Callable[[Callable[[FakeUnitOfWork], Any]], Callable[[FakeUnitOfWork], Any]]:
    """Registers an in-memory repository class (or factory taking the unit of work) as
    `uow.<name>`; use it as a class decorator."""

    def register(factory: Callable[[FakeUnitOfWork], Any]) -> Callable[[FakeUnitOfWork], Any]:
        if name in _REPOSITORIES:
            raise RuntimeError(f"two in-memory repositories registered as uow.{name}")
        _REPOSITORIES[name] = factory
        return factory

    return register


class Tables(defaultdict):
    """The rows of one physical database: table name -> whatever the repositories keep there
    (usually a dict by primary key). Missing tables start as empty dicts."""

    def __init__(self) -> None:
        super().__init__(dict)


class FakeUnitOfWork:
    """One transaction on one in-memory database; repositories are attributes."""

    def __init__(self, database: FakeDatabase, db: str, shard: str | None, tenant_id: str | None,
                 read_only: bool) -> None:
        self.database = database
        self.db = db
        self.shard = shard
        self.tenant_id = tenant_id
        self.read_only = read_only
        self.tables: Tables = database.tables(db, shard)
        self.cipher = database.cipher
        self._after_commit: list[Callable[[], Any]] = []
        self._repositories: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "session":
            raise AttributeError("the use cases reach the database through the repositories, not uow.session")
        factory = _REPOSITORIES.get(name)
        if factory is None:
            raise AttributeError(f"no in-memory repository uow.{name} (register one in tests/harness/fakes/)")
        repo = self._repositories.get(name)
        if repo is None:
            repo = self._repositories[name] = factory(self)
        return repo

    def after_commit(self, fn: Callable[[], Any]) -> None:
        self._after_commit.append(fn)

    def enlist(self, participant: Any) -> None:
        if participant is not None:
            raise NotImplementedError("XA branches have no in-memory form")

    async def flush(self) -> None:
        return None

    async def _run_after_commit(self) -> None:
        for fn in self._after_commit:
            result = fn()
            if inspect.isawaitable(result):
                await result


class FakeDatabase:
    """UnitsOfWork in memory: `shards` names the shards; tenants map to them by a stable hash
    (or by `place(tenant_id, shard)`)."""

    def __init__(self, shards: Iterable[str] = ("s0",), cipher: Any = None) -> None:
        self.shard_names = list(shards)
        self.cipher = cipher
        self._tables: dict[tuple[str, str | None], Tables] = {}
        self._placed: dict[str, str] = {}
        self.committed = 0  # units of work that committed (a test can check "nothing written")
        self.failing: BaseException | None = None  # raised by the next unit of work opened

    def place(self, tenant_id: str, shard: str) -> None:
        self._placed[tenant_id] = shard

    def shard_for(self, tenant_id: str) -> str:
        if tenant_id in self._placed:
            return self._placed[tenant_id]
        return self.shard_names[zlib.crc32(tenant_id.encode()) % len(self.shard_names)]

    def tables(self, db: str, shard: str | None) -> Tables:
        key = (db, None if db == DIRECTORY else shard)
        tables = self._tables.get(key)
        if tables is None:
            tables = self._tables[key] = Tables()
        return tables

    @asynccontextmanager
    async def _open(self, db: str, shard: str | None, tenant_id: str | None,
                    read_only: bool) -> AsyncIterator[FakeUnitOfWork]:
        if self.failing is not None:
            failing, self.failing = self.failing, None
            raise failing
        uow = FakeUnitOfWork(self, db, shard, tenant_id, read_only)
        before = copy.deepcopy(dict(uow.tables))
        try:
            yield uow
        except BaseException:
            uow.tables.clear()
            uow.tables.update(before)
            raise
        self.committed += 0 if read_only else 1
        await uow._run_after_commit()

    def unit_of_work(self, db: str, tenant_id: str, *, read_only: bool = False):
        return self._open(db, self.shard_for(tenant_id), tenant_id, read_only)

    def shard_unit_of_work(self, db: str, shard: str, *, read_only: bool = False, tenants: Iterable[str] = (),
                           rendered_sql: bool = False):
        return self._open(db, shard, None, read_only)

    def directory_unit_of_work(self, *, read_only: bool = False):
        return self._open(DIRECTORY, None, None, read_only)

    async def for_each_shard(self, db: str, fn: Callable[[FakeUnitOfWork], Awaitable[T]], *,
                             read_only: bool = True) -> list[T]:
        results = []
        for shard in self.shard_names:
            async with self.shard_unit_of_work(db, shard, read_only=read_only) as uow:
                results.append(await fn(uow))
        return results


def _import_area_modules() -> None:
    # Each area module registers its repositories on import.
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_area_modules()

__all__ = ["DIRECTORY", "FakeDatabase", "FakeUnitOfWork", "Tables", "repository"]
