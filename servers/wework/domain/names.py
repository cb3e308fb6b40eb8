"""Names that people type and other people read: tenant, account, user (real name), role,
template and task names, contact persons, display names of API keys.

Besides their lengths (checked where each is defined), a name holds no control character:
NUL, tab, line breaks, the ESC that starts a terminal escape code ("\\x1b[31m"), DEL, the C1
controls, nor the Unicode line and paragraph separators. In a name they only serve to break a
log line, a CSV export or an operator's terminal. Free text (descriptions, message content)
may hold line breaks and is not checked here.
"""

from __future__ import annotations

import re

from wework.domain.errors import FieldViolation

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def name_violations(path: str, value: str | None) -> list[FieldViolation]:
    """[] for a name without control characters, else the one violation naming `path`."""
    if value and _CONTROL.search(value):
        field = path.rsplit(".", 1)[-1]
        return [FieldViolation(path, f"{field} must not contain control characters "
                                     "(line breaks, tabs, escape codes)")]
    return []
