"""Dispatch rules: retry backoff, per-account pacing, per-recipient limits and send windows.

Pure and clock-injected: callers pass `now` (aware UTC) and, for jitter, a random source.
"""

from __future__ import annotations

import random as _random
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wework.domain.errors import FieldViolation, InvalidArgument

# WeCom's documented limits for one member: 30 messages a minute, 1000 an hour.
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


@dataclass
class AccountPacer:
    """Minimum interval between two sends of one account, plus random jitter."""
    min_interval: float
    jitter: float = 0.0
    _next: dict[str, float] = field(default_factory=dict)

    def ready_at(self, account_id: str) -> float:
        return self._next.get(account_id, 0.0)

    def record(self, account_id: str, at: float, rnd: _random.Random | None = None,
               min_interval: float | None = None, jitter: float | None = None) -> None:
        gap = self.min_interval if min_interval is None else max(min_interval, self.min_interval)
        j = self.jitter if jitter is None else max(jitter, self.jitter)
        self._next[account_id] = at + gap + ((rnd or _random).uniform(0, j) if j > 0 else 0.0)


@dataclass
class RecipientLimiter:
    """Sliding windows per (account, conversation): at most 30 a minute and 1000 an hour."""
    per_minute: int = RECIPIENT_PER_MINUTE
    per_hour: int = RECIPIENT_PER_HOUR
    _sent: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def ready_at(self, account_id: str, conversation_id: str, now: float) -> float:
        """`now` if a send is allowed now, else the earliest time it will be."""
        q = self._sent.get((account_id, conversation_id))
        if not q:
            return now
        while q and q[0] <= now - 3600:
            q.popleft()
        at = now
        if len(q) >= self.per_hour:
            at = max(at, q[-self.per_hour] + 3600)
        recent = sum(1 for t in q if t > now - 60)
        if recent >= self.per_minute:
            at = max(at, q[-self.per_minute] + 60)
        return at

    def record(self, account_id: str, conversation_id: str, at: float) -> None:
        q = self._sent.setdefault((account_id, conversation_id), deque())
        q.append(at)
        while len(q) > self.per_hour:
            q.popleft()
