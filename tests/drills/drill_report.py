"""The drills' figures: one line per drill, printed in the run's summary (conftest.py)."""

from __future__ import annotations

RECOVERY: list[str] = []
