"""Dispatch rules: retry backoff, per-account pacing, per-recipient limits and send windows.

Pure and clock-injected: callers pass `now` (aware UTC) and, for jitter, a random source.
"""

from __future__ import annotations

import random as _random
import re
from collections import deque
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wework.domain.errors import FieldViolation, InvalidArgument

# WeCom's documented limits for one member (message/send, "每应用对同一个成员不可超过30次/分钟，
# 1000次/小时"): 30 messages a minute, 1000 an hour. Sources and assumptions: docs/pacing.md.
RECIPIENT_PER_MINUTE = 30
RECIPIENT_PER_HOUR = 1000

# Provider error codes worth another attempt (the rest fail the message at once).
TRANSIENT_ERROR_CODES = frozenset({"UNAVAILABLE", "TIMEOUT", "RATE_LIMITED", "INTERNAL", "DEADLINE_EXCEEDED"})


# ---- retry backoff --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 1.0
    factor: float = 2.0
    max_seconds: float = 300.0
    jitter: float = 0.2  # +- fraction of the delay

    def delay(self, retry_count: int, rnd: _random.Random | None = None) -> float:
        """Delay before attempt `retry_count` + 1 (retry_count >= 1 is the number of failures)."""
        raw = min(self.base_seconds * self.factor ** max(retry_count - 1, 0), self.max_seconds)
        r = (rnd or _random).uniform(-self.jitter, self.jitter)
        return max(raw * (1.0 + r), 0.0)


def should_retry(error_code: str, retry_count: int, max_attempts: int, *, retryable: bool = False) -> bool:
    """retry_count counts failed attempts so far (including this one); `retryable` is the
    provider adapter's own verdict (timeouts, 5xx)."""
    return (retryable or error_code in TRANSIENT_ERROR_CODES) and retry_count < max_attempts


# ---- time windows ----------------------------------------------------------------------------------

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class TimeWindow:
    """Sends allowed from `start` to `end` local time; end < start wraps over midnight; None: all day."""
    zone: ZoneInfo
    start: time | None = None
    end: time | None = None

    @classmethod
    def parse(cls, tz: str, start: str, end: str, prefix: str = "task.send_strategy") -> TimeWindow:
        v: list[FieldViolation] = []
        zone: ZoneInfo = ZoneInfo("UTC")
        try:
            zone = ZoneInfo(tz or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            v.append(FieldViolation(f"{prefix}.time_zone", "unknown IANA time zone"))
        parsed: list[time | None] = []
        for name, value in (("window_start", start), ("window_end", end)):
            if not value:
                parsed.append(None)
                continue
            m = _HHMM.match(value)
            if not m:
                v.append(FieldViolation(f"{prefix}.{name}", "must be HH:MM"))
                parsed.append(None)
            else:
                parsed.append(time(int(m.group(1)), int(m.group(2))))
        if (parsed[0] is None) != (parsed[1] is None) and not v:
            v.append(FieldViolation(f"{prefix}.window_end", "window_start and window_end go together"))
        if v:
            raise InvalidArgument(v)
        return cls(zone, parsed[0], parsed[1])

    def open_at(self, now: datetime) -> bool:
        if self.start is None or self.end is None or self.start == self.end:
            return True
        t = now.astimezone(self.zone).time()
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # wraps midnight

    def next_open(self, now: datetime) -> datetime:
        """`now` if the window is open, else the next local start time (in UTC)."""
        if self.open_at(now) or self.start is None:
            return now
        local = now.astimezone(self.zone)
        candidate = datetime.combine(local.date(), self.start, tzinfo=self.zone)
        if candidate <= local:
            candidate += timedelta(days=1)
        return candidate.astimezone(UTC)


# ---- pacing ---------------------------------------------------------------------------------------

# The keys an override may set, under "pacing" in a tenant's or an account's config.
PACING_OVERRIDE_KEYS = {
    "min_interval_seconds": float, "jitter_seconds": float,
    "account_per_minute": int, "account_per_hour": int,
    "recipient_per_minute": int, "recipient_per_hour": int,
}
_MAX_INTERVAL_SECONDS = 86400.0
_MAX_COUNT = 1_000_000


@dataclass(frozen=True)
class PacingLimits:
    """The pacing of one account's sends (docs/pacing.md). A ceiling of None is off."""
    min_interval_seconds: float = 1.0
    jitter_seconds: float = 0.5
    account_per_minute: int | None = None
    account_per_hour: int | None = None
    recipient_per_minute: int = RECIPIENT_PER_MINUTE
    recipient_per_hour: int = RECIPIENT_PER_HOUR

    def with_overrides(self, config: Mapping[str, Any] | None) -> PacingLimits:
        """These limits with a tenant's or an account's `config.pacing` applied (validated on write;
        anything else in it is ignored, so an old or hand-made config never stops sending)."""
        pacing = (config or {}).get("pacing")
        if not isinstance(pacing, Mapping) or pacing_violations(pacing, ""):
            return self
        return replace(self, **{k: kind(v) for k, v in pacing.items() if (kind := PACING_OVERRIDE_KEYS.get(k))})

    def slowed_to(self, min_interval: float | None, jitter: float | None) -> PacingLimits:
        """A batch task's rate only slows an account down: the larger interval and jitter win."""
        return replace(self, min_interval_seconds=max(self.min_interval_seconds, min_interval or 0.0),
                       jitter_seconds=max(self.jitter_seconds, jitter or 0.0))

    def gap(self, rnd: _random.Random | None = None) -> float:
        """Seconds from one send of the account to the next: the interval plus this send's jitter."""
        j = self.jitter_seconds
        return self.min_interval_seconds + ((rnd or _random).uniform(0, j) if j > 0 else 0.0)


def pacing_violations(pacing: Any, path: str) -> list[FieldViolation]:
    """What is wrong with a `config.pacing` override object (empty: nothing)."""
    if not isinstance(pacing, Mapping):
        return [FieldViolation(path, "must be an object")]
    v: list[FieldViolation] = []
    for key, value in pacing.items():
        kind = PACING_OVERRIDE_KEYS.get(key)
        where = f"{path}.{key}"
        if kind is None:
            v.append(FieldViolation(where, "unknown pacing setting; known: " + ", ".join(PACING_OVERRIDE_KEYS)))
        elif isinstance(value, bool) or not isinstance(value, int | float):
            v.append(FieldViolation(where, "must be a number"))
        elif kind is float and not 0 <= value <= _MAX_INTERVAL_SECONDS:
            v.append(FieldViolation(where, f"must be between 0 and {_MAX_INTERVAL_SECONDS:g} seconds"))
        elif kind is int and (value != int(value) or not 1 <= value <= _MAX_COUNT):
            v.append(FieldViolation(where, f"must be a whole number between 1 and {_MAX_COUNT}"))
    return v


@dataclass
class SendWindows:
    """Send times of the last hour per key (an account, or an account and recipient), to keep
    sliding per-minute and per-hour ceilings. Times only grow per key (slots are handed out in
    order), so the n-th latest send decides when the next may go."""
    _sent: dict[Hashable, deque[float]] = field(default_factory=dict)

    def ready_at(self, key: Hashable, now: float, per_minute: int | None, per_hour: int | None) -> float:
        """`now` if a send is allowed now, else the earliest time it will be."""
        q = self._sent.get(key)
        if not q:
            return now
        while q and q[0] <= now - 3600:
            q.popleft()
        at = now
        if per_hour is not None and len(q) >= per_hour:
            at = max(at, q[-per_hour] + 3600)
        if per_minute is not None and len(q) >= per_minute:
            at = max(at, q[-per_minute] + 60)
        return at

    def record(self, key: Hashable, at: float) -> None:
        self._sent.setdefault(key, deque()).append(at)


@dataclass
class PacingState:
    """One process's pacing of every account (the embedded mode's; deployments share it in Redis,
    server/workers/pacing.py, with the same rules)."""
    _next: dict[str, float] = field(default_factory=dict)
    windows: SendWindows = field(default_factory=SendWindows)

    def ready_at(self, account_id: str, conversation_id: str, now: float,
                 limits: PacingLimits) -> tuple[float, bool]:
        """The earliest time of the next send, and whether the account (its interval or its own
        ceilings), rather than the recipient's limits, set it."""
        account = max(now, self._next.get(account_id, 0.0),
                      self.windows.ready_at(account_id, now, limits.account_per_minute, limits.account_per_hour))
        recipient = self.windows.ready_at((account_id, conversation_id), now, limits.recipient_per_minute,
                                          limits.recipient_per_hour)
        ready = max(account, recipient)
        return ready, account >= ready > now

    def record(self, account_id: str, conversation_id: str, at: float, gap: float) -> None:
        self._next[account_id] = at + gap
        self.windows.record(account_id, at)
        self.windows.record((account_id, conversation_id), at)
