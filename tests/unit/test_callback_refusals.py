"""Refusals of the callback use cases that a setting causes name that setting (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from wework.domain.access import Principal, PrincipalKind
from wework.domain.errors import InvalidArgument, Unauthenticated
from wework.persistence.pagination import PageTokens
from wework.server.application.callbacks import CallbackEventUseCases, CallbackInbox, InboxSettings, ListQuery

ADMIN = Principal(PrincipalKind.PLATFORM_ADMIN, "platform-admin", None, frozenset({"*"}))


async def test_ingest_without_a_configured_secret_names_the_setting():
    # Refused before anything is read or stored: no database, Redis or directory is needed.
    inbox = CallbackInbox(None, None, "p:", InboxSettings(secret=None), None)  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated) as refused:
        await inbox.ingest(b"{}", timestamp="1", signature="", source="grpc", require_signature=True)
    assert "callback.secret" in refused.value.message and "WEWORK_CALLBACK__SECRET" in refused.value.message


async def test_a_replay_beyond_the_window_names_the_setting():
    ops = CallbackEventUseCases(None, replay_window=timedelta(days=30), page_tokens=PageTokens.with_random_key())  # type: ignore[arg-type]
    now = datetime.now(UTC)
    with pytest.raises(InvalidArgument) as refused:
        await ops.replay_callbacks(ADMIN, [], ListQuery(received_after=now - timedelta(days=31),
                                                        received_before=now), "", 0)
    [violation] = refused.value.violations
    assert violation.field == "filter.received_after"
    assert "30 days" in violation.description and "WEWORK_CALLBACK__REPLAY_WINDOW_DAYS" in violation.description
