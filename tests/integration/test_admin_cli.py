"""`wework-admin` output (docs/operations-admin-cli.md): `--json` on every subcommand with the keys the
page documents, no control characters outside a terminal, rich progress on one.

The embedded mode (SQLite, a private data directory) keeps this fast. The same documents from
MariaDB, Redis and running servers are checked by the subcommands' own tests: test_maintenance,
test_backup_drill, test_verify, test_db_report, e2e/test_bucket_move, e2e/test_failover,
e2e/test_newcomer.
"""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness.admin_cli import ESC, admin_document

ADMIN = str(Path(sys.executable).parent / "wework-admin")
# What a CI runner may set: it must not bring escape codes into a log.
NOT_A_TERMINAL_ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("WEWORK_")},
                      "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "100"}


def admin(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([ADMIN, "--data-dir", str(data_dir), *args], env=NOT_A_TERMINAL_ENV,
                          capture_output=True, text=True, timeout=120, check=False)
    assert ESC not in proc.stdout and ESC not in proc.stderr, proc.stdout + proc.stderr
    return proc


def document(data_dir: Path, command: str, *args: str, exit_code: int = 0) -> dict:
    proc = admin(data_dir, command, *args, "--json")
    assert proc.returncode == exit_code, proc.stderr
    doc = admin_document(command, proc.returncode, proc.stdout, proc.stderr)
    assert ("error" in doc) is (exit_code != 0)  # every failure here happens before a result
    return doc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("admin") / "var"


def test_every_subcommand_prints_one_json_document_with_the_documented_keys(data_dir, tmp_path):
    migrated = document(data_dir, "migrate")
    assert all(d["after"] for d in migrated["databases"])
    assert {d["db"] for d in migrated["databases"] if d["changed"]} >= {"directory", "user", "message"}  # new

    config = document(data_dir, "check-config")
    assert config["embedded"] is True and [s["name"] for s in config["shards"]] == ["s0"]
    shard_of = document(data_dir, "shard-of", "tenant-1")
    assert (shard_of["tenant_id"], shard_of["shard"]) == ("tenant-1", "s0") and 0 <= shard_of["bucket"] < 1024
    shard_map = document(data_dir, "shard-map")
    assert (shard_map["version"], shard_map["source"], shard_map["history"]) == (0, "settings", [])

    maintained = document(data_dir, "maintain")
    assert maintained["failed"] == 0 and maintained["done"] == len(maintained["databases"]) > 0

    backed_up = document(data_dir, "backup", "--output", str(tmp_path / "backup"))
    assert (Path(backed_up["path"]) / "manifest.json").is_file() and backed_up["databases"] == 5
    fresh = tmp_path / "restored" / "var"
    dry = document(fresh, "restore", "--input", backed_up["path"], "--dry-run")
    assert dry["dry_run"] is True and dry["restored"] == [] and dry["data_as_of"] is None
    restored = document(fresh, "restore", "--input", backed_up["path"])
    assert len(restored["restored"]) == restored["databases"] == 5 and restored["rows"] == backed_up["rows"]
    # The restored directory is usable: the schema is already at head.
    assert not any(d["changed"] for d in document(fresh, "migrate")["databases"])

    verified = document(data_dir, "verify")
    assert (verified["kind"], verified["differences"], verified["errors"]) == ("replica", [], [])

    # Failures are documents too, with the exit code the command always had.
    assert "SQLite" in document(data_dir, "db-report", exit_code=2)["error"]
    assert "--buckets" in document(data_dir, "move-buckets", exit_code=2)["error"]
    assert document(data_dir, "failover", "--shard", "s0", exit_code=1)["error"].startswith("failover ")
    assert "directory_replicas" in document(data_dir, "failover", "--directory", exit_code=1)["error"]
    assert "backup failed" in document(data_dir, "backup", "--output", "/proc/no-such-dir", exit_code=1)["error"]
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    assert "UNAVAILABLE" in document(data_dir, "quickstart", "--target", closed, exit_code=1)["error"]


def test_human_output_outside_a_terminal_has_no_control_characters(data_dir, tmp_path):
    admin(data_dir, "migrate")
    backed_up = admin(data_dir, "backup", "--output", str(tmp_path / "backup"))  # admin() asserts no ESC
    assert backed_up.returncode == 0
    assert backed_up.stdout.splitlines() == [str(tmp_path / "backup")]  # stdout: just the path, for scripts
    assert re.search(r"^user@s0 +\d+ rows, \d+ tables", backed_up.stderr, re.MULTILINE)  # a line per database
    maintained = admin(data_dir, "maintain")
    assert maintained.returncode == 0
    assert re.search(r"^\[ *\d+\.\d\ds\] message@s0 +done$", maintained.stderr, re.MULTILINE)  # a line per step
    assert "done, 0 skipped" in maintained.stderr


def test_a_terminal_gets_rich_progress_bars(data_dir, tmp_path):
    admin(data_dir, "migrate")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([ADMIN, "--data-dir", str(data_dir), "backup", "--output", str(tmp_path / "b")],
                            stdin=follower, stdout=follower, stderr=follower,
                            env={**NOT_A_TERMINAL_ENV, "TERM": "xterm-256color"})
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 1)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the command exited and closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    assert proc.wait(timeout=30) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "\x1b[?25l" in text and "━" in text  # a live display (cursor hidden) with bars
    assert re.search(r"user@s0 .*done", text)
