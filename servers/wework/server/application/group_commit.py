"""One group-commit batcher: concurrent callers queue items per key (a shard), one writer task
per key commits whatever has queued in one transaction and answers each caller after it.

Used by SendMessage / BatchSendMessages (messages.MessageWriter) and by the callback inbox
(callbacks._StoreWriter); decision 0039. It owns the mechanism and nothing else: what a commit
writes, what an item costs (the message quota) and what a duplicate means are the writer's hooks.

- Per key, one writer task, started by the first item and ended when the queue runs empty (no
  await between the last look at the queue and the end: nothing is left behind). A batch is at
  most `max_batch` items, in the order they were queued.
- Linger (`linger_seconds`, None: never): the callers ready to run go first; when the previous
  batch had company, the writer also waits up to the linger, or until the queue holds twice the
  last batch (MySQL's binlog_group_commit_sync_delay / _no_delay_count). A lone item, or the
  first after a pause, never waits. The last batch's size counts for LOAD_MEMORY_SECONDS after
  its writer stopped, so a gap in the queue does not start the batches over at one.
- Followers: an item submitted with a `dedupe` key that an item in flight (queued or being
  committed) already holds is not queued; it learns that leader's outcome: the leader's error,
  or `on_duplicate(follower)` (default: the leader's result) once the leader is committed. A
  leader whose caller went away (its future cancelled) leaves its followers to go on their own
  (the first of them leads; the commit settles a duplicate of a leader that is written anyway).
- Hooks: `prepare(batch)` before the commit returns the items to commit and answers the others
  itself (the quota charge; items may also come charged by their caller). `refund(items)` gets
  the items whose commit failed, before their callers hear of it; the hook knows what each
  holds. If `prepare` itself raises, every item of the batch fails with its error, unrefunded.
- Failure: a failed commit of several items is retried one item per commit when
  `split_on_failure` (one bad item fails alone); otherwise, or for a batch of one, every item
  of the batch fails with the commit's error.
- Cancellation: the batch decides an item's fate, the caller only stops waiting. A caller that
  goes away calls `withdraw`: an item still queued is removed and handed back (never prepared
  nor committed; what its caller charged is the caller's to give back); one already taken is
  committed or failed with its batch as if its caller were there (a retry finds it by its
  idempotency key), and only a failed commit refunds it. The batcher sets a future only while
  it is pending, so a cancelled future is never touched.

Per item the batcher costs one list append and a dict look-up on submit and one set_result after
the commit; no task and no await per item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

# How long the size of a key's last batch still counts as the load when its writer starts again.
LOAD_MEMORY_SECONDS = 0.05


class Waiting(Protocol):
    """An item of the group commit: its caller waits on `future` (the batcher sets it)."""

    future: asyncio.Future[Any]


T = TypeVar("T", bound=Waiting)

# (key, items) -> one result per item, or None when every item's result is None. Raises to fail.
Commit = Callable[[str, list[T]], Awaitable[Sequence[Any] | None]]


class GroupCommit(Generic[T]):
    """The batcher (see the module docstring). `commit(key, items)` writes one batch in one
    transaction; the hooks are optional, and `linger_seconds=None` forms each batch at once."""

    def __init__(self, commit: Commit[T], *, name: str, max_batch: int = 500,
                 linger_seconds: float | None = None, split_on_failure: bool = True,
                 prepare: Callable[[list[T]], Awaitable[list[T]]] | None = None,
                 refund: Callable[[list[T]], Awaitable[None]] | None = None,
                 on_duplicate: Callable[[T], BaseException] | None = None) -> None:
        self._commit_fn = commit
        self._name = name
        self._max_batch = max_batch
        self._linger = linger_seconds
        self._split = split_on_failure
        self._prepare = prepare
        self._refund = refund
        self._on_duplicate = on_duplicate
        self._queues: dict[str, list[T]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # key -> (size, loop time) of its last committed batch
        self._last_batch: dict[str, tuple[int, float]] = {}
        # key -> (the writer's wake-up, the queue length that ends its linger)
        self._lingering: dict[str, tuple[asyncio.Future[None], int]] = {}
        # dedupe key -> the item in flight that holds it (the leader)
        self._leaders: dict[Hashable, T] = {}

    # -- callers -------------------------------------------------------------------------------

    def submit(self, key: str, item: T, dedupe: Hashable | None = None) -> None:
        """Queues `item` for `key`'s writer; `item.future` completes after its commit (or fails).
        With `dedupe`, an item in flight holding the same value makes this one its follower."""
        if dedupe is not None:
            leader = self._leaders.get(dedupe)
            if leader is not None:
                leader.future.add_done_callback(lambda done: self._follow(done, key, item, dedupe))
                return
            self._leaders[dedupe] = item
            # Registered before any follower's callback: the key is free again when they run.
            item.future.add_done_callback(lambda _done: self._leaders.pop(dedupe, None)
                                          if self._leaders.get(dedupe) is item else None)
        self._enqueue(key, item)

    def submit_many(self, key: str, items: Iterable[T]) -> None:
        """Queues several items for `key`'s writer, in order, without dedupe."""
        self._enqueue(key, *items)

    def withdraw(self, key: str, items: Sequence[T]) -> list[T]:
        """Takes back the items of `items` still queued for `key` (their callers went away) and
        returns them: they will be neither prepared nor committed, and what their callers charged
        for them is theirs to give back. Items the writer has taken are left to their batch.
        Their futures are left as they are."""
        queue = self._queues.get(key)
        if not queue:
            return []
        if len(items) == 1:  # a SendMessage caller: by identity, as items may compare equal
            for i, queued in enumerate(queue):
                if queued is items[0]:
                    del queue[i]
                    return [queued]
            return []
        mine = set(map(id, items))
        withdrawn = [item for item in queue if id(item) in mine]
        if withdrawn:
            queue[:] = [item for item in queue if id(item) not in mine]  # in place: the writer holds it
        return withdrawn

    async def commit_together(self, key: str, items: list[T]) -> None:
        """Commits `items` in one commit of their own, all or none, now (not queued, not
        prepared: the caller has charged them); raises the commit's error after refunding them.
        A caller that goes away does not stop the commit."""

        async def commit_or_refund() -> None:
            try:
                await self._commit_fn(key, items)
            except BaseException:
                if self._refund is not None:
                    await self._refund(items)
                raise

        await asyncio.shield(asyncio.ensure_future(commit_or_refund()))
        for item in items:
            if not item.future.done():
                item.future.set_result(None)

    # -- the writer ----------------------------------------------------------------------------

    def _enqueue(self, key: str, *items: T) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = []
        queue.extend(items)
        if self._lingering:
            lingering = self._lingering.get(key)
            if lingering is not None and len(queue) >= lingering[1]:
                _wake(lingering[0])
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._drain(key), name=f"{self._name}-{key}")

    def _follow(self, leader: asyncio.Future[Any], key: str, follower: T, dedupe: Hashable) -> None:
        if follower.future.done():  # its caller went away
            return
        if leader.cancelled():  # withdrawn before it was taken: this one goes on its own
            self.submit(key, follower, dedupe)
            return
        error = leader.exception()
        if error is not None:
            follower.future.set_exception(error)
        elif self._on_duplicate is not None:
            follower.future.set_exception(self._on_duplicate(follower))
        else:
            follower.future.set_result(leader.result())

    async def _drain(self, key: str) -> None:
        try:
            queue = self._queues[key]
            loop = asyncio.get_running_loop()
            last_batch = 0
            if self._linger is not None:
                size, ended = self._last_batch.get(key, (0, 0.0))
                # A writer that ran out of items a moment ago still knows the load: without this,
                # each gap in the queue would start the batches over at one item.
                last_batch = size if loop.time() - ended < LOAD_MEMORY_SECONDS else 0
            while queue:
                if self._linger is not None:
                    await self._gather(key, queue, last_batch)
                batch = queue[:self._max_batch]
                last_batch = len(batch)
                del queue[:last_batch]
                if self._prepare is not None:
                    try:
                        batch = await self._prepare(batch)
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
                        _fail_all(batch, exc)
                        batch = []
                if batch:
                    await self._commit(key, batch)
                if self._linger is not None:
                    self._last_batch[key] = (last_batch, loop.time())
        finally:
            # No await between the last `while queue` check and here: nothing can be left behind.
            self._tasks.pop(key, None)

    async def _gather(self, key: str, queue: list[T], last_batch: int) -> None:
        """Lets more items join the next batch: each one that joins saves a share of a commit."""
        # The callers that are ready to run go first: under load the event loop holds several
        # that are about to submit.
        await asyncio.sleep(0)
        linger = self._linger or 0.0
        enough = min(2 * last_batch, self._max_batch)
        if last_batch <= 1 or linger <= 0 or len(queue) >= enough:
            return
        # The previous batch had company, so more items are on their way (its callers come back
        # once answered): wait a little for them. `_enqueue` wakes the writer as soon as enough
        # have queued: one timer per batch, no polling.
        loop = asyncio.get_running_loop()
        wake_up: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(linger, _wake, wake_up)
        self._lingering[key] = (wake_up, enough)
        try:
            await wake_up
        finally:
            timer.cancel()
            del self._lingering[key]

    async def _commit(self, key: str, batch: list[T]) -> None:
        try:
            results = await self._commit_fn(key, batch)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
            if len(batch) == 1 or not self._split:
                await self._fail(batch, exc)
                return
            for item in batch:
                try:
                    one = await self._commit_fn(key, [item])
                except Exception as alone:  # noqa: BLE001 - handed to its caller
                    await self._fail([item], alone)
                else:
                    _resolve(item.future, one[0] if one is not None else None)
            return
        if results is None:
            for item in batch:
                if not item.future.done():
                    item.future.set_result(None)
        else:
            for item, result in zip(batch, results, strict=True):
                _resolve(item.future, result)

    async def _fail(self, items: list[T], error: BaseException) -> None:
        if self._refund is not None:
            await self._refund(items)
        _fail_all(items, error)


def _fail_all(items: list[Any], error: BaseException) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(error)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
