"""Names refuse control characters (wework.domain.names), and only those."""

from __future__ import annotations

import pytest
from wework.domain.names import name_violations


@pytest.mark.parametrize("name", ["nul\x00", "\x1b[31mred", "two\nlines", "cr\r", "tab\t", "del\x7f",
                                  "c1 csi\x9b31m", "line\u2028sep", "para\u2029sep"])
def test_control_characters_are_refused_naming_the_field(name):
    [violation] = name_violations("role.role_name", name)
    assert violation.field == "role.role_name" and "role_name must not contain control characters" in violation.description


@pytest.mark.parametrize("name", ["Acme Inc.", "张三", "Zoë's café", "Team 🚀", "a\u200db", "", None])
def test_other_text_is_accepted(name):
    assert name_violations("tenant.tenant_name", name) == []
