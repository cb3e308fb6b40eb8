"""SendMessage's writer when a caller goes away (decision 0039), on MariaDB and Redis: a message
still queued is neither charged nor written; one the writer has taken is written once and keeps
its unit, its caller just stops waiting; a duplicate in flight follows the first and writes
nothing, and a follower whose first caller went away early is written in its place."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
from harness.batches import delete_messages
from wework.domain.errors import AlreadyExists
from wework.domain.messages import Message, MessageType
from wework.persistence.config import RedisConfig
from wework.persistence.ids import new_id
from wework.persistence.redis import create_redis
from wework.persistence.repositories.messages import MessageRepository
from wework.server.application.messages import SEND_OPERATION, DailyQuota, MessageWriter

pytestmark = [pytest.mark.mariadb, pytest.mark.redis]


class SlowQuota(DailyQuota):
    """The real counter, each take held back a little: time to act while a batch is charged."""

    async def take(self, tenant_id: str, day: date, wants: list[tuple[int, int]]):
        await asyncio.sleep(0.05)
        return await super().take(tenant_id, day, wants)


@pytest.fixture
async def setup(mariadb_database, redis_server):
    config = RedisConfig(url=redis_server.url, key_prefix=f"wwwc{uuid.uuid4().hex[:6]}:")
    client = create_redis(config)

    async def nothing_accepted(tenant_id: str, day: date) -> int:
        return 0

    now = datetime.now(UTC)
    quota = SlowQuota(client, config, 3600, nothing_accepted)
    writer = MessageWriter(SimpleNamespace(db=mariadb_database, clock=lambda: now), quota, [])  # type: ignore[arg-type]
    tenant_id = new_id()
    yield SimpleNamespace(db=mariadb_database, writer=writer, quota=quota, client=client, now=now, tenant=tenant_id)
    await delete_messages(mariadb_database, tenant_id)
    await client.aclose()


def _message(s) -> Message:
    return Message(id=new_id(), tenant_id=s.tenant, account_id="acc", conversation_id="wm", message_type=MessageType.TEXT,
                   content={"text": "hi"}, created_at=s.now, updated_at=s.now)


def _caller(writer: MessageWriter, pending) -> asyncio.Task:
    """What SendMessage does with its pending message (application/messages.py send_message)."""

    async def wait() -> None:
        try:
            await pending.future
        except asyncio.CancelledError:
            writer.withdraw(pending)
            raise

    return asyncio.create_task(wait())


async def _stored(s, message: Message, request_id: str) -> tuple[bool, str | None]:
    async with s.db.unit_of_work("message", s.tenant, read_only=True) as uow:
        repo = MessageRepository(uow.session)
        return (await repo.get(s.tenant, message.id) is not None,
                await repo.get_idempotent(s.tenant, SEND_OPERATION, request_id))


async def _units(s) -> int:
    return int(await s.client.get(s.quota.key(s.tenant, s.now.date())) or 0)


async def test_a_caller_gone_while_queued_leaves_nothing_and_one_gone_after_the_take_is_written_once(setup):
    s, day = setup, setup.now.date()
    first, taken, queued, last = (_message(s) for _ in range(4))
    ids = {m.id: new_id() for m in (first, taken, queued, last)}
    p_first = s.writer.submit(first, ids[first.id], 100, day)
    p_taken = s.writer.submit(taken, ids[taken.id], 100, day)
    c_first, c_taken = _caller(s.writer, p_first), _caller(s.writer, p_taken)
    await asyncio.sleep(0.02)  # the writer took both and is charging them
    p_queued = s.writer.submit(queued, ids[queued.id], 100, day)
    p_last = s.writer.submit(last, ids[last.id], 100, day)
    c_queued, c_last = _caller(s.writer, p_queued), _caller(s.writer, p_last)
    await asyncio.sleep(0)
    c_taken.cancel()  # taken already: its fate is its batch's
    c_queued.cancel()  # still queued: withdrawn
    await asyncio.gather(c_first, c_last)
    for task in (c_taken, c_queued):
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.2)  # anything left would have been written by now
    assert await _stored(s, taken, ids[taken.id]) == (True, taken.id)  # written once, nobody told
    assert await _stored(s, queued, ids[queued.id]) == (False, None)
    assert await _stored(s, first, ids[first.id]) == (True, first.id)
    assert await _units(s) == 3  # the withdrawn message took no unit


async def test_a_duplicate_in_flight_follows_the_first_and_writes_nothing(setup):
    s, day, request_id = setup, setup.now.date(), new_id()
    first, again = _message(s), _message(s)
    p_first = s.writer.submit(first, request_id, 100, day)
    p_again = s.writer.submit(again, request_id, 100, day)
    await p_first.future
    with pytest.raises(AlreadyExists):
        await p_again.future
    assert await _stored(s, first, request_id) == (True, first.id)
    assert (await _stored(s, again, request_id))[0] is False
    assert await _units(s) == 1  # the follower took no unit


async def test_a_follower_whose_first_caller_went_away_while_queued_is_written_in_its_place(setup):
    s, day, request_id = setup, setup.now.date(), new_id()
    busy = s.writer.submit(_message(s), new_id(), 100, day)
    await asyncio.sleep(0.02)  # the writer is charging `busy`: the next ones queue
    first, again = _message(s), _message(s)
    p_first = s.writer.submit(first, request_id, 100, day)
    p_again = s.writer.submit(again, request_id, 100, day)
    c_first = _caller(s.writer, p_first)
    await asyncio.sleep(0)
    c_first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await c_first
    await asyncio.gather(busy.future, p_again.future)
    assert await _stored(s, again, request_id) == (True, again.id)
    assert (await _stored(s, first, request_id))[0] is False
    assert await _units(s) == 2
