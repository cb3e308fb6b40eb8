"""ListMessages pages are keyed on what never changes: a message whose status changes between
two page requests is neither skipped nor listed twice (MessageRepository.list_page)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from wework.domain.messages import Message, MessageStatus, MessageType
from wework.persistence.ids import new_id
from wework.persistence.repositories.messages import MessageFilter


@pytest.fixture(params=["mariadb", "sqlite"])
def database(request):
    return request.getfixturevalue(f"{request.param}_database")


async def _page(db, tenant_id, after):
    async with db.unit_of_work("message", tenant_id, read_only=True) as uow:
        return await uow.messages.list_page(tenant_id, MessageFilter(), after, 2)


async def test_a_status_change_between_pages_neither_skips_nor_repeats(database):
    tenant_id = new_id()
    # One created_at for all, as messages accepted in the same microsecond have.
    at = datetime(2026, 11, 28, 12, 0, 0, 500000, tzinfo=UTC)
    messages = [Message(id=new_id(), tenant_id=tenant_id, account_id="acc", conversation_id=f"c{i}",
                        message_type=MessageType.TEXT, content={"text": str(i)}, created_at=at, updated_at=at)
                for i in range(5)]
    async with database.unit_of_work("message", tenant_id) as uow:
        for m in messages:
            await uow.messages.add(m)
    seen: list[str] = []
    page, after = await _page(database, tenant_id, None)
    seen += [m.id for m in page]
    # Every message not listed yet is sent now: in a status-keyed order they would all jump
    # ahead of the cursor and never be listed.
    async with database.unit_of_work("message", tenant_id) as uow:
        repo = uow.messages
        for m in messages:
            if m.id not in seen:
                assert await repo.save_state(replace(m, status=MessageStatus.SENT), expected_status=m.status)
    while after is not None:
        page, after = await _page(database, tenant_id, after)
        seen += [m.id for m in page]
    assert sorted(seen) == sorted(m.id for m in messages) and len(seen) == 5
    assert seen == sorted(seen, reverse=True)  # newest first: ids break the tie
