"""Checks of `wework-admin --json` output against docs/operations-admin-cli.md, for every test
that runs a subcommand."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "operations-admin-cli.md"
ESC = "\x1b"


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
