"""Reports, the pure part: validating ranges and time zones, bucket series, rates, outages.

message_statistics holds one row per (tenant, account, UTC date, UTC hour). A bucket of the
caller's time zone is therefore a whole number of UTC hours only when the zone's offset is a
whole number of hours for the whole range; other zones (Asia/Kolkata, +05:30) are refused
rather than answered with hours smeared across buckets (docs/decisions/0015-reports.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import FieldViolation, InvalidArgument

HOUR = timedelta(hours=1)


class Granularity(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"


@dataclass(frozen=True)
class Range:
    """A validated, bucket-aligned [start, end) in UTC, with its zone and granularity."""

    start: datetime
    end: datetime
    tz: ZoneInfo
    granularity: Granularity

    @property
    def time_zone(self) -> str:
        return self.tz.key


@dataclass(frozen=True)
class Bucket:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    local_start: str  # ISO 8601 in the range's zone, with offset


@dataclass
class Counts:
    """Counts of a bucket. rt_weighted is the sum of avg_response_time * success_count of the
    hourly rows summed into it; rt_samples the successes it stands for."""

    total: int = 0
    success: int = 0
    failed: int = 0
    rt_weighted: float = 0.0
    rt_samples: int = 0

    def add(self, other: Counts) -> None:
        self.total += other.total
        self.success += other.success
        self.failed += other.failed
        self.rt_weighted += other.rt_weighted
        self.rt_samples += other.rt_samples

    @property
    def success_rate(self) -> float:
        return self.success / self.total if self.total else 0.0

    @property
    def avg_response_seconds(self) -> float:
        return self.rt_weighted / self.rt_samples if self.rt_samples else 0.0


@dataclass
class StatsRow:
    bucket: Bucket
    counts: Counts = field(default_factory=Counts)


def parse_time_zone(name: str, path: str = "time_zone") -> ZoneInfo:
    """The IANA zone named `name` ("" means UTC); INVALID_ARGUMENT naming `path` otherwise."""
    name = (name or "UTC").strip()
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(FieldViolation(path, f"unknown IANA time zone {name!r}",
                                             "UNKNOWN_TIME_ZONE")) from None


def validate_range(start: datetime | None, end: datetime | None, *, max_days: int,
                   now: datetime | None = None, limit_setting: str = "") -> tuple[datetime, datetime]:
    """start < end, at most max_days apart; both required. Violations name start_time/end_time,
    and a range too long the setting that sets the limit (`limit_setting`)."""
    bad: list[FieldViolation] = []
    if start is None:
        bad.append(FieldViolation("start_time", "required", "REQUIRED"))
    if end is None:
        bad.append(FieldViolation("end_time", "required", "REQUIRED"))
    if bad:
        raise InvalidArgument(bad)
    assert start is not None and end is not None
    if end <= start:
        raise InvalidArgument(FieldViolation("end_time", "must be after start_time", "RANGE_END_BEFORE_START"))
    if end - start > timedelta(days=max_days):
        raise InvalidArgument(FieldViolation(
            "end_time", f"the range may span at most {max_days} days"
                        + (f" (the setting {limit_setting})" if limit_setting else ""), "RANGE_TOO_LONG"))
    return start, end


def _floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(t: datetime) -> datetime:
    f = _floor_hour(t)
    return f if f == t.astimezone(UTC) else f + HOUR


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def make_range(start: datetime, end: datetime, granularity: Granularity, tz: ZoneInfo) -> Range:
    """Aligns [start, end) outwards to whole buckets of `granularity` in `tz`, and refuses
    zones whose offset is not a whole number of hours anywhere in it."""
    if granularity is Granularity.HOURLY:
        s, e = _floor_hour(start), _ceil_hour(end)
    else:
        s = _local_midnight(start.astimezone(tz).date(), tz)
        local_end = end.astimezone(tz)
        end_day = local_end.date()
        e = _local_midnight(end_day, tz)
        if e < end.astimezone(UTC):
            e = _local_midnight(end_day + timedelta(days=1), tz)
    _require_whole_hour_offsets(s, e, tz)
    return Range(s, e, tz, granularity)


def _require_whole_hour_offsets(start: datetime, end: datetime, tz: ZoneInfo) -> None:
    # Offsets change only at transitions, months apart in the zone database: checking every day
    # boundary and both ends finds any zone that leaves whole hours within the range.
    t = start
    while True:
        offset = t.astimezone(tz).utcoffset()
        if offset is None or offset.total_seconds() % 3600:
            raise InvalidArgument(FieldViolation(
                "time_zone", f"{tz.key} is {offset} from UTC at {t.isoformat()}: statistics are kept per UTC "
                "hour, so only zones with whole-hour offsets can be bucketed", "TIME_ZONE_NOT_WHOLE_HOURS"))
        if t >= end:
            return
        t = min(t + timedelta(days=1), end)


def buckets(r: Range) -> Iterator[Bucket]:
    """Every bucket of the range, oldest first."""
    t = r.start
    while t < r.end:
        if r.granularity is Granularity.HOURLY:
            nxt = t + HOUR
        else:
            nxt = _local_midnight(t.astimezone(r.tz).date() + timedelta(days=1), r.tz)
        yield Bucket(t, nxt, t.astimezone(r.tz).isoformat())
        t = nxt


def bucket_count(r: Range) -> int:
    return sum(1 for _ in buckets(r))


def fill_series(r: Range, hourly: Mapping[datetime, Counts]) -> list[StatsRow]:
    """The series of `r` with every bucket present: `hourly` maps a UTC hour to its counts."""
    rows = [StatsRow(b) for b in buckets(r)]
    if not rows:
        return rows
    if r.granularity is Granularity.HOURLY:
        by_start = {row.bucket.start: row for row in rows}
        for hour, c in hourly.items():
            row = by_start.get(hour)
            if row is not None:
                row.counts.add(c)
        return rows
    starts = [row.bucket.start for row in rows]
    for hour, c in sorted(hourly.items()):
        if hour < r.start or hour >= r.end:
            continue
        # Days are few (<= a year): a bisect is not worth its import.
        i = _bucket_index(starts, hour)
        rows[i].counts.add(c)
    return rows


def _bucket_index(starts: list[datetime], t: datetime) -> int:
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= t:
            lo = mid
        else:
            hi = mid - 1
    return lo


def total_of(rows: Iterable[StatsRow], r: Range) -> StatsRow:
    out = StatsRow(Bucket(r.start, r.end, r.start.astimezone(r.tz).isoformat()))
    for row in rows:
        out.counts.add(row.counts)
    return out


def split_range(r: Range, max_buckets: int) -> Iterator[Range]:
    """`r` cut into consecutive ranges of at most `max_buckets` buckets (for streaming)."""
    starts: list[datetime] = []
    for b in buckets(r):
        starts.append(b.start)
        if len(starts) == max_buckets:
            yield Range(starts[0], b.end, r.tz, r.granularity)
            starts = []
    if starts:
        yield Range(starts[0], r.end, r.tz, r.granularity)


# ---- account health ------------------------------------------------------------------------

ONLINE = "online"
ERROR = "error"
DELETED = "deleted"


@dataclass(frozen=True)
class Transition:
    at: datetime
    old_status: str | None
    new_status: str


@dataclass
class AccountTimeline:
    """What one account did in a range: time observed and online, outages recovered."""

    observed_seconds: float = 0.0
    online_seconds: float = 0.0
    error_transitions: int = 0
    recoveries: list[float] = field(default_factory=list)  # outage lengths, seconds
    open_outage: bool = False


def account_timeline(status_at_start: str | None, outage_since: datetime | None,
                     transitions: Iterable[Transition], start: datetime, end: datetime) -> AccountTimeline:
    """Walks one account's history over [start, end).

    `status_at_start` is its status at `start` (None: it did not exist yet); `outage_since` when
    it last left ONLINE, if it was not ONLINE at `start`. An outage starts when the account leaves
    ONLINE and ends when it is ONLINE again (a recovery, however it came: reconnect or a new
    login); the first login is not an outage. Deletion ends the account's observed time.
    """
    out = AccountTimeline()
    status = status_at_start if status_at_start != DELETED else None
    since = outage_since if status not in (None, ONLINE) else None
    t = start
    for tr in transitions:
        at = min(max(tr.at, start), end)
        if status is not None:
            out.observed_seconds += (at - t).total_seconds()
            if status == ONLINE:
                out.online_seconds += (at - t).total_seconds()
        new = tr.new_status
        if new == ERROR and tr.at >= start:
            out.error_transitions += 1
        if status == ONLINE and new != ONLINE:
            since = tr.at
        elif new == ONLINE and since is not None:
            out.recoveries.append((tr.at - since).total_seconds())
            since = None
        status = None if new == DELETED else new
        if status is None:
            since = None
        t = at
    if status is not None:
        out.observed_seconds += (end - t).total_seconds()
        if status == ONLINE:
            out.online_seconds += (end - t).total_seconds()
    out.open_outage = since is not None and status is not None
    return out
