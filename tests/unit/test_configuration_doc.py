"""docs/configuration.md's settings reference is generated from the settings model: a setting
added, renamed or given a new default without regenerating the table fails here."""

from __future__ import annotations

from pathlib import Path

from wework.server.settings_reference import END, START, env_name, iter_settings, main, regenerate

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_reference_table_matches_the_settings_model():
    document = DOC.read_text()
    assert regenerate(document) == document, (
        "docs/configuration.md is out of date: run python -m wework.server.settings_reference docs/configuration.md")


def test_every_setting_has_a_row_with_its_environment_variable():
    table = DOC.read_text().partition(START)[2].partition(END)[0]
    for setting in iter_settings():
        assert f"| `{setting.name}` | `{setting.env}` |" in table
    assert "…" not in table.replace("rediss://…", "").replace("DELETE … LIMIT", "")
    assert env_name("webhooks.allowed_target_cidrs") == "WEWORK_WEBHOOKS__ALLOWED_TARGET_CIDRS"


def test_check_mode_refuses_a_stale_document(tmp_path):
    stale = tmp_path / "configuration.md"
    stale.write_text(DOC.read_text().replace("| `server.port` | `WEWORK_SERVER__PORT` | 50051 |",
                                             "| `server.port` | `WEWORK_SERVER__PORT` | 8080 |"))
    assert main(["--check", str(stale)]) == 1
    assert main([str(stale)]) == 0 and main(["--check", str(stale)]) == 0
    assert stale.read_text() == DOC.read_text()


def test_rows_added_by_hand_bring_their_meaning_in(tmp_path):
    """A merge or a hand edit may add rows in the old grouped form: regenerating folds them in."""
    doc = tmp_path / "configuration.md"
    doc.write_text(DOC.read_text().replace(
        END, "| `server.keepalive_time_seconds` / `keepalive_timeout_seconds` | … | 60 / 20 | pings, merged |\n" + END))
    assert main([str(doc)]) == 0
    table = doc.read_text().partition(START)[2].partition(END)[0]
    assert "| `server.keepalive_timeout_seconds` | `WEWORK_SERVER__KEEPALIVE_TIMEOUT_SECONDS` | 20 | pings, merged |" \
        in table
    assert table.count("keepalive_timeout_seconds") == 1 and "…" not in table.replace("rediss://…", "").replace(
        "DELETE … LIMIT", "")
