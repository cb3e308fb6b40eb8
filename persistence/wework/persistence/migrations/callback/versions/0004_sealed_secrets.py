"""Credentials out of stored callbacks: callback_events.sealed_secrets, and stored rows redacted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

From now on the ingress replaces credential values (wework.domain.redaction.SENSITIVE_KEYS) in a
callback body with "[REDACTED]" before storing it, and seals the values in sealed_secrets.
Rows stored before held them in clear in raw_data and parsed_data: they are redacted here
(their values dropped: a migration has no encryption keys, and those callbacks were processed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500
# Rows that may carry a sensitive key at all (the LIKE is case-insensitive on MariaDB and for
# ASCII on SQLite); the exact test is split_secrets.
_HINTS = ("%token%", "%code%", "%captcha%", "%otp%", "%passw%", "%secret%", "%key%", "%ticket%",
          "%cookie%", "%authorization%", "%session%")


def upgrade() -> None:
    op.add_column("callback_events", sa.Column("sealed_secrets", sa.Text(), nullable=True))
    _redact_stored_rows()


def _redact_stored_rows() -> None:
    from wework.domain.redaction import redact, split_secrets

    bind = op.get_bind()
    events = sa.table("callback_events", sa.column("id"), sa.column("received_time"), sa.column("raw_data"),
                      sa.column("parsed_data"))
    hint = sa.or_(*(events.c.raw_data.like(h) for h in _HINTS))
    after: tuple | None = None
    while True:
        stmt = (sa.select(events.c.id, events.c.received_time, events.c.raw_data, events.c.parsed_data)
                .where(hint).order_by(events.c.received_time, events.c.id).limit(BATCH))
        if after is not None:
            stmt = stmt.where(sa.tuple_(events.c.received_time, events.c.id) > sa.tuple_(*after))
        rows = bind.execute(stmt).all()
        if not rows:
            return
        for row in rows:
            try:
                body = json.loads(row.raw_data)
            except ValueError:
                continue
            redacted, found = split_secrets(body)
            if not found:
                continue
            parsed = row.parsed_data if not isinstance(row.parsed_data, str) else json.loads(row.parsed_data)
            bind.execute(sa.update(events).where(events.c.id == row.id,
                                                 events.c.received_time == row.received_time).values(
                raw_data=json.dumps(redacted, ensure_ascii=False, separators=(",", ":")),
                parsed_data=None if parsed is None else json.dumps(redact(parsed), ensure_ascii=False)))
        after = (rows[-1].received_time, rows[-1].id)


def downgrade() -> None:
    op.drop_column("callback_events", "sealed_secrets")
