"""Callback database migration 0004: callbacks stored before credentials were redacted at
ingress lose them (raw_data and parsed_data); other callbacks are left byte for byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from harness import create_scratch_database
from wework.persistence.migrate import alembic_config

pytestmark = pytest.mark.mariadb


def test_stored_credentials_are_redacted_by_the_migration(mariadb_server, unique_db_prefix):
    name = f"{unique_db_prefix}_callback"
    create_scratch_database(mariadb_server, name)
    engine = sa.create_engine(mariadb_server.url(name, driver="mysql+pymysql"))

    def upgrade(target: str) -> None:
        with engine.connect() as conn:
            cfg = alembic_config("callback")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)
            conn.commit()

    upgrade("0003")
    online = {"guid": "g1", "notify_type": 11005, "data": {"login_token": "clear-token-1", "user_info": {"n": 1}}}
    plain = '{"guid": "g1",  "notify_type": 12004, "data": {"conversation_id": "c", "code": "x"}}'
    conn = mariadb_server.sync_connect(name)
    try:
        with conn.cursor() as cur:
            for i, (raw, parsed) in enumerate(((json.dumps(online), json.dumps(online)), (plain, None))):
                cur.execute("INSERT INTO callback_events (id, received_time, guid, notify_type, event_type, raw_data,"
                            " parsed_data, status, retry_count) VALUES (%s, %s, 'g1', 1, 'x', %s, %s, 'processed', 0)",
                            (f"cb-{i}", datetime.now(UTC).replace(tzinfo=None), raw, parsed))
        upgrade("head")
        with conn.cursor() as cur:
            cur.execute("SELECT id, raw_data, parsed_data, sealed_secrets FROM callback_events ORDER BY id")
            rows = {r[0]: r[1:] for r in cur.fetchall()}
    finally:
        conn.close()
        engine.dispose()
    raw, parsed, sealed = rows["cb-0"]
    assert "clear-token-1" not in raw and "clear-token-1" not in parsed and sealed is None
    assert json.loads(raw)["data"] == {"login_token": "[REDACTED]", "user_info": {"n": 1}}
    assert json.loads(parsed)["data"]["login_token"] == "[REDACTED]"
    assert rows["cb-1"] == (plain, None, None)  # nothing to redact: untouched
