"""Page tokens are signed with a server key and bound to a listing and a tenant (issue 17):
anything the server did not issue for this caller and listing is INVALID_ARGUMENT on
page_token, never a KeyError or a wrong type reaching a query."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from wework.domain.errors import InvalidArgument
from wework.persistence.pagination import PageTokens

TOKENS = PageTokens(b"a server secret of 32 bytes or more!")
AFTER = {"after": str}


def refused(token: str, kind: str = "users", scope: str = "tenant-a", fields=AFTER) -> str:
    with pytest.raises(InvalidArgument) as info:
        TOKENS.decode(token, kind, scope, fields)
    assert [v.field for v in info.value.violations] == ["page_token"]
    return info.value.violations[0].description


def test_round_trip_keeps_types():
    values = {"t": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "id": "0193c3b6", "d": Decimal("1.50"),
              "n": 7}
    token = TOKENS.encode(values, "messages", "tenant-a")
    assert "=" not in token and "+" not in token and "/" not in token
    assert TOKENS.decode(token, "messages", "tenant-a", {"t": datetime, "id": str, "d": Decimal, "n": int}) == values


def test_a_token_of_tenant_a_is_refused_in_tenant_b():
    token = TOKENS.encode({"after": "x"}, "users", "tenant-a")
    assert TOKENS.decode(token, "users", "tenant-a", AFTER) == {"after": "x"}
    refused(token, scope="tenant-b")
    refused(token, scope="")  # nor platform-wide


def test_a_token_of_another_listing_is_refused():
    refused(TOKENS.encode({"after": "x"}, "roles", "tenant-a"), kind="users")


def test_a_token_signed_with_another_key_is_refused():
    other = PageTokens(b"another server secret of 32 bytes!!")
    refused(other.encode({"after": "x"}, "users", "tenant-a"))


def _forged(payload: dict, mac: str = "") -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{body}.{mac}" if mac else body


@pytest.mark.parametrize("token", [
    _forged({"k": "users", "v": 1, "after": "x"}),  # the old unsigned format
    _forged({"k": "users", "v": 2, "after": "x"}, "AAAA"),
    _forged({"k": "users", "v": 2}, "AAAA"),  # a missing key: was a KeyError
    "%%%", "", "a.b.c", "." * 3, "x" * 5000, "W10.W10",
])
def test_forged_and_malformed_tokens_are_refused(token):
    refused(token)


def test_an_altered_token_is_refused():
    token = TOKENS.encode({"after": "x"}, "users", "tenant-a")
    body, mac = token.split(".")
    altered_body = _forged({"after": "y", "k": "users", "v": 2})
    refused(f"{altered_body}.{mac}")
    refused(f"{body}.{mac[:-2]}AA")


def test_a_signed_token_without_the_expected_fields_or_types_is_refused():
    # Only a token of another version of the server could look like this; never a KeyError.
    refused(TOKENS.encode({"before": 3}, "users", "tenant-a"))
    refused(TOKENS.encode({"after": 3}, "users", "tenant-a"))
    refused(TOKENS.encode({"n": True}, "users", "tenant-a"), fields={"n": int})


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError):
        PageTokens(b"short")


def test_an_id_ordered_listing_pages_by_the_last_id_and_ends_without_a_token():
    class Row:
        def __init__(self, id: str) -> None:
            self.id = id

    rows = [Row(f"id-{i}") for i in range(3)]  # read with limit + 1: there is more
    page, token = TOKENS.id_page(rows, 2, "users", "tenant-a")
    assert [r.id for r in page] == ["id-0", "id-1"]
    assert TOKENS.after_id(token, "users", "tenant-a") == "id-1"
    assert TOKENS.after_id("", "users", "tenant-a") is None  # the first page
    assert "different listing" in refused(token, kind="roles")
    last, end = TOKENS.id_page(rows[2:], 2, "users", "tenant-a")
    assert [r.id for r in last] == ["id-2"] and end == ""
