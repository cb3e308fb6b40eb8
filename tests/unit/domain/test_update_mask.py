"""Update masks (wework.domain.update_mask): at least one field, each a mutable one."""

from __future__ import annotations

import pytest
from wework.domain.errors import InvalidArgument
from wework.domain.update_mask import check_update_mask, update_mask_violations


def test_an_empty_mask_and_each_immutable_field_are_named():
    assert [v.description for v in update_mask_violations([], {"a"})] == ["name at least one field to update"]
    assert [v.description for v in update_mask_violations(["a", "id", "guid"], {"a"})] == [
        "field 'id' cannot be updated", "field 'guid' cannot be updated"]
    with pytest.raises(InvalidArgument) as err:
        check_update_mask(["id"], {"a"})
    assert [v.field for v in err.value.violations] == ["update_mask"]
    check_update_mask(["a"], {"a"})  # a valid mask passes
