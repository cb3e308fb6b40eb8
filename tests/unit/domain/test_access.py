"""The delegation rule in the domain: what a grant list covers, and who may hand it out."""

from __future__ import annotations

import pytest
from wework.domain.access import (
    TENANT_PERMISSIONS,
    Principal,
    PrincipalKind,
    covered_permissions,
    tenant_grants,
)
from wework.domain.errors import DelegationDenied


def _key(*grants: str) -> Principal:
    return Principal(PrincipalKind.API_KEY, "k", "t", tenant_grants([list(grants)]))


def test_wildcards_cover_the_catalogue_they_name():
    assert covered_permissions(["*"]) == TENANT_PERMISSIONS
    assert covered_permissions(["messages.*"]) == {"messages.read", "messages.send"}
    assert covered_permissions(["platform.tenants.write", "users.read"]) == {"users.read"}


def test_a_principal_delegates_only_what_it_holds():
    helper = _key("users.write", "messages.*")
    helper.require_delegable(["users.write", "messages.read"], "roles/r")
    helper.require_delegable(["messages.*"], "roles/r")  # the same power, written another way
    with pytest.raises(DelegationDenied) as err:
        helper.require_delegable(["*"], "roles/admin")
    assert "users.read" in err.value.missing and "messages.send" not in err.value.missing
    assert err.value.metadata["subject"] == "roles/admin" and err.value.reason == "PERMISSION_DENIED"


def test_holding_every_permission_concretely_equals_the_star():
    _key(*TENANT_PERMISSIONS).require_delegable(["*"], "roles/admin")


def test_the_platform_admin_delegates_anything():
    Principal(PrincipalKind.PLATFORM_ADMIN, "platform-admin", "t", frozenset({"*"})).require_delegable(
        ["*"], "roles/admin")
