"""Update masks (AIP-134): an Update call names the fields it changes, at least one, each one
the resource lets callers change."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from wework.domain.errors import FieldViolation, InvalidArgument


def update_mask_violations(paths: Iterable[str], mutable: Collection[str]) -> list[FieldViolation]:
    """[] for a mask that names at least one field and only fields in `mutable`; else one
    violation of `update_mask` per problem."""
    paths = list(paths)
    if not paths:
        return [FieldViolation("update_mask", "name at least one field to update")]
    return [FieldViolation("update_mask", f"field {p!r} cannot be updated") for p in paths if p not in mutable]


def check_update_mask(paths: Iterable[str], mutable: Collection[str]) -> None:
    """Raises InvalidArgument with update_mask_violations, if any."""
    violations = update_mask_violations(paths, mutable)
    if violations:
        raise InvalidArgument(violations)
