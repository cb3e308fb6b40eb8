"""Identifiers: UUIDv7 as 36-character strings.

Version 7 puts a millisecond timestamp first, so new rows append to the right edge of InnoDB's
clustered index (random v4 ids split pages all over it), and ids sort by creation time, which
keyset pagination relies on as its tie-breaker.
"""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> str:
    """A new time-ordered id, e.g. '0193c3b6-3f1e-7a2c-9b1d-5e4f3a2b1c0d'."""
    # uuid_utils (RFC 9562, in Rust) counts within one millisecond, so ids from one process
    # also sort in creation order when several are made in the same millisecond. About 0.2 us
    # against 2.7 us for the pure-Python uuid6, which read the OS's random source on each id:
    # one per accepted message, 100,000 per large batch task.
    return str(uuid_utils.uuid7())


def is_valid_id(value: str) -> bool:
    """True for the canonical 36-character hyphenated form of any UUID."""
    if len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False
