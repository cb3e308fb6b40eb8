"""Running `wework-admin` from a test (a settings file, the command as a subprocess) and checks of
its `--json` output against docs/operations-admin-cli.md, for every test that runs a subcommand."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import yaml

DOC = Path(__file__).parents[2] / "docs" / "operations-admin-cli.md"
ESC = "\x1b"
ADMIN = str(Path(sys.executable).parent / "wework-admin")
# Test-only keys (never used outside tests): what the admin CLI's settings require.
SECURITY = {
    "admin_api_key": "wwadmin_test_only_0123456789abcdef",
    "token_secret": "test-only-token-secret-0123456789abcdef",
    "lookup_hash_key": "test-only-lookup-key-0123456789abcdef",
    "encryption_keys": {"k1": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="},
    "active_encryption_key_id": "k1",
}


def write_settings(path: Path, database: Any) -> Path:
    """A settings file at `path` with the shard map `database` (a DatabaseConfig) and SECURITY."""
    path.write_text(yaml.safe_dump({"database": database.model_dump(mode="json"), "security": SECURITY}))
    return path


class AdminRun(NamedTuple):
    """How a run ended; unpacks as `code, out, err`."""

    returncode: int
    stdout: str
    stderr: str


async def run_admin(settings: Path, *args: str, timeout: float = 300) -> AdminRun:
    """`wework-admin --config settings ARGS` without blocking the event loop (the test's own
    writers keep running); tables 160 columns wide, as on an operator's terminal."""
    proc = await asyncio.create_subprocess_exec(ADMIN, "--config", str(settings), *args,
                                                env={**os.environ, "COLUMNS": "160"},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return AdminRun(proc.returncode, out.decode(), err.decode())


def documented_keys(command: str) -> set[str]:
    """The top-level keys the docs table lists for `command` (nested ones are in parentheses)."""
    for line in DOC.read_text().splitlines():
        if line.startswith(f"| `{command}` |"):
            return set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", line.split("|")[2])))
    raise AssertionError(f"{command} is missing from {DOC.name}")


def admin_document(command: str, returncode: int, stdout: str, stderr: str) -> dict:
    """The one JSON document of a `--json` run (nothing else on stdout), its common keys consistent
    with the exit code, the documented keys present when it has a result, no escape codes (a pipe)."""
    assert ESC not in stdout and ESC not in stderr, stdout + stderr
    doc = json.loads(stdout)
    assert (doc["command"], doc["exit_code"], doc["ok"]) == (command, returncode, returncode == 0), stderr
    if "error" in doc:  # failed before a result
        assert returncode != 0 and doc["error"].splitlines()[0] in stderr  # the same message for humans
    else:  # a result, also with a non-zero exit code (verify's differences, a table a move did not verify)
        assert documented_keys(command) <= set(doc), documented_keys(command) - set(doc)
    return doc
