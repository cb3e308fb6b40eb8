"""XA branches: more connections writing inside one unit of work's transaction (MariaDB).

A large write (a batch's materialization) is bound by the server's single thread for its
transaction. Split over several connections it uses more of the server's cores, and XA keeps
it atomic:

1. Each extra connection writes its part in an XA branch and prepares it: durable on the
   server, invisible to everyone else, holding its row locks.
2. The unit of work records the decision in its own transaction (what the caller writes to say
   "this attempt happened", e.g. an attempt id on a task row) and commits. That COMMIT is the
   decision.
3. The branches are committed after it (`UnitOfWork.enlist`), or rolled back if it failed.

A crash between 2 and 3 leaves branches prepared on the server (they survive a disconnect and a
server restart, MariaDB >= 10.5). `prepared` lists them and `finish` commits or rolls one back;
the caller decides from its record, read with a locking read so that a unit of work still in
flight is waited for.

Every branch is on the same database as the unit of work: nothing here crosses shards.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

# MariaDB's answer to XA COMMIT/ROLLBACK of an xid it does not hold (already finished).
XAER_NOTA = 1397
_XID_PART = re.compile(r"[A-Za-z0-9:._-]{1,64}")


@dataclass(frozen=True)
class Xid:
    """An XA transaction id: the global part names the work, the branch part one connection's share."""

    gtrid: str
    bqual: str

    def __post_init__(self) -> None:
        # Written into statements as literals: only characters that need no escaping.
        for part in (self.gtrid, self.bqual):
            if not _XID_PART.fullmatch(part):
                raise ValueError(f"bad XA id part {part!r}")

    def sql(self) -> str:
        return f"'{self.gtrid}','{self.bqual}'"


class PreparedBranches:
    """Branches prepared on their own connections; the unit of work they belong to decides."""

    def __init__(self, branches: list[tuple[Xid, AsyncConnection]]) -> None:
        self._branches = branches

    @property
    def xids(self) -> list[Xid]:
        return [xid for xid, _ in self._branches]

    async def commit(self) -> None:
        """After the unit of work committed: makes the branches' writes visible."""
        await self._finish(True)

    async def rollback(self) -> None:
        """The unit of work rolled back: the branches' writes are discarded."""
        await self._finish(False)

    async def abandon(self) -> None:
        """The unit of work's COMMIT failed and its outcome is unknown: the connections are
        dropped without a decision, and the branches stay prepared until `finish` is called
        from the recorded decision."""
        branches, self._branches = self._branches, []
        for _, conn in branches:
            await _discard(conn)

    async def _finish(self, commit: bool) -> None:
        branches, self._branches = self._branches, []
        for xid, conn in branches:
            try:
                await finish(conn, xid, commit=commit)
            except Exception:
                # Left prepared: the recorded decision resolves it later.
                log.exception("XA %s of %s failed; left for recovery", "COMMIT" if commit else "ROLLBACK", xid)
                await _discard(conn)
                continue
            await conn.close()


async def write_in_branches(engine: AsyncEngine, xids: Sequence[Xid],
                            work: Callable[[AsyncConnection, int], Awaitable[Any]],
                            alongside: Awaitable[Any] | None = None) -> PreparedBranches:
    """Opens a connection per xid and runs `work(conn, i)` in XA branch i, concurrently with
    `alongside` (the unit of work's own share), then prepares every branch. If anything fails,
    every branch is rolled back and the error raised; the caller's transaction is its own."""
    opened: list[tuple[Xid, AsyncConnection]] = []
    prepared: set[Xid] = set()

    async def branch(i: int, xid: Xid, conn: AsyncConnection) -> None:
        await work(conn, i)
        await conn.exec_driver_sql(f"XA END {xid.sql()}")
        await conn.exec_driver_sql(f"XA PREPARE {xid.sql()}")
        prepared.add(xid)

    try:
        for xid in xids:
            conn = await engine.connect()
            opened.append((xid, conn))
            await conn.exec_driver_sql(f"XA START {xid.sql()}")
        steps = [branch(i, xid, conn) for i, (xid, conn) in enumerate(opened)]
        await _all_or_none([*steps, alongside] if alongside is not None else steps)
    except BaseException:
        for xid, conn in opened:
            if xid in prepared:
                await PreparedBranches([(xid, conn)]).rollback()
            else:
                await _discard(conn)  # a branch not prepared ends with its connection
        raise
    return PreparedBranches(opened)


async def prepared(conn: AsyncConnection, gtrid_prefix: str) -> list[Xid]:
    """The prepared XA branches on this server whose global id starts with `gtrid_prefix`."""
    found = []
    for format_id, gtrid_length, bqual_length, data in (await conn.exec_driver_sql("XA RECOVER")).all():
        text = data.decode() if isinstance(data, bytes) else data
        gtrid, bqual = text[:gtrid_length], text[gtrid_length:gtrid_length + bqual_length]
        if format_id == 1 and gtrid.startswith(gtrid_prefix) and _XID_PART.fullmatch(gtrid) \
                and _XID_PART.fullmatch(bqual):
            found.append(Xid(gtrid, bqual))
    return found


async def finish(conn: AsyncConnection, xid: Xid, *, commit: bool) -> bool:
    """XA COMMIT or ROLLBACK of a prepared branch; False if the server no longer holds it
    (another process finished it first). For a branch of another connection, `conn` must be
    in autocommit mode (MariaDB: XAER_OUTSIDE otherwise)."""
    try:
        await conn.exec_driver_sql(f"XA {'COMMIT' if commit else 'ROLLBACK'} {xid.sql()}")
    except sa.exc.DBAPIError as exc:
        if exc.orig is not None and exc.orig.args and exc.orig.args[0] == XAER_NOTA:
            return False
        raise
    return True


async def _all_or_none(steps: Sequence[Awaitable[Any]]) -> None:
    """Runs the steps concurrently; when one fails the others are cancelled and awaited."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _discard(conn: AsyncConnection) -> None:
    """Drops the connection (the server ends what it held, but a prepared branch)."""
    try:
        await conn.invalidate()
        await conn.close()
    except Exception:
        log.debug("closing an XA branch connection failed", exc_info=True)
