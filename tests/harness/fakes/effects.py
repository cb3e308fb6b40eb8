"""In-memory applied-callbacks ledger (uow.effects) of the account and the message database.

As wework.persistence.repositories.callbacks.EffectLedger: each database keeps its own
applied_callbacks table, and a key recorded in a unit of work that rolls back is forgotten
with the effect. One module for both databases, whichever area's use cases write to it.
"""

from __future__ import annotations

from datetime import datetime

from harness.fakes import FakeUnitOfWork, repository


@repository("effects")
class InMemoryEffectLedger:
    """applied_callbacks: effect key -> applied_at."""

    def __init__(self, uow: FakeUnitOfWork) -> None:
        if uow.db not in ("account", "message"):
            raise RuntimeError(f"the {uow.db} database keeps no applied-callbacks ledger")
        self._rows: dict[str, datetime] = uow.tables["applied_callbacks"]

    async def record(self, effect_key: str, now: datetime) -> bool:
        """True when the key is new (apply the effect), False when it was applied before."""
        if effect_key in self._rows:
            return False
        self._rows[effect_key] = now
        return True

    async def purge(self, cutoff: datetime, limit: int) -> int:
        keys = [k for k, at in self._rows.items() if at < cutoff][:limit]
        for key in keys:
            del self._rows[key]
        return len(keys)
