"""Reports, pure part: ranges, time zones, bucket series, outages."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from wework.domain.errors import InvalidArgument
from wework.domain.reports import (
    Counts,
    Granularity,
    Transition,
    account_timeline,
    bucket_count,
    buckets,
    fill_series,
    make_range,
    parse_time_zone,
    split_range,
    total_of,
    validate_range,
)

H, D = Granularity.HOURLY, Granularity.DAILY
UTCZ = ZoneInfo("UTC")


def t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fields(exc: pytest.ExceptionInfo) -> list[str]:
    return [v.field for v in exc.value.violations]


def test_range_validation_names_the_field():
    with pytest.raises(InvalidArgument) as e:
        validate_range(t(2026, 1, 2), t(2026, 1, 1), max_days=31)
    assert fields(e) == ["end_time"] and e.value.violations[0].reason == "RANGE_END_BEFORE_START"
    with pytest.raises(InvalidArgument) as e:
        validate_range(t(2026, 1, 1), t(2026, 1, 1), max_days=31)
    assert fields(e) == ["end_time"]
    with pytest.raises(InvalidArgument) as e:
        validate_range(t(2026, 1, 1), t(2026, 2, 2), max_days=31)
    assert e.value.violations[0].reason == "RANGE_TOO_LONG"
    with pytest.raises(InvalidArgument) as e:
        validate_range(None, None, max_days=31)
    assert fields(e) == ["start_time", "end_time"]
    assert validate_range(t(2026, 1, 1), t(2026, 2, 1), max_days=31) == (t(2026, 1, 1), t(2026, 2, 1))


@pytest.mark.parametrize("name", ["Mars/Olympus", "../etc/passwd", "/etc/localtime", "Not a zone"])
def test_unknown_time_zones_are_refused(name):
    with pytest.raises(InvalidArgument) as e:
        parse_time_zone(name)
    assert fields(e) == ["time_zone"] and e.value.violations[0].reason == "UNKNOWN_TIME_ZONE"


def test_empty_time_zone_is_utc():
    assert parse_time_zone("").key == "UTC"


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide"])
def test_zones_with_non_whole_hour_offsets_are_refused(zone):
    with pytest.raises(InvalidArgument) as e:
        make_range(t(2026, 1, 1), t(2026, 1, 3), D, ZoneInfo(zone))
    assert fields(e) == ["time_zone"] and e.value.violations[0].reason == "TIME_ZONE_NOT_WHOLE_HOURS"


def test_hourly_range_is_aligned_outwards_to_whole_hours():
    r = make_range(t(2026, 1, 1, 10, 15), t(2026, 1, 1, 12, 1), H, UTCZ)
    assert (r.start, r.end) == (t(2026, 1, 1, 10), t(2026, 1, 1, 13))
    assert [b.start.hour for b in buckets(r)] == [10, 11, 12]


def test_daily_buckets_start_at_local_midnight():
    tz = ZoneInfo("Asia/Shanghai")
    r = make_range(t(2026, 3, 1, 0), t(2026, 3, 3, 0), D, tz)  # 08:00 on 1 March to 08:00 on 3 March local
    bs = list(buckets(r))
    assert [b.start for b in bs] == [t(2026, 2, 28, 16), t(2026, 3, 1, 16), t(2026, 3, 2, 16)]
    assert bs[0].local_start == "2026-03-01T00:00:00+08:00"
    assert bs[-1].end == t(2026, 3, 3, 16)


def test_daily_buckets_follow_daylight_saving_time():
    tz = ZoneInfo("America/New_York")
    r = make_range(t(2026, 3, 7, 12), t(2026, 3, 10, 12), D, tz)
    lengths = [(b.end - b.start) / timedelta(hours=1) for b in buckets(r)]
    assert lengths == [24, 23, 24, 24]  # 8 March 2026 has 23 hours


def test_series_has_every_bucket_and_sums_hours_into_local_days():
    tz = ZoneInfo("Asia/Shanghai")
    hourly = {t(2026, 3, 1, 15): Counts(2, 1, 1, 3.0, 1),  # 23:00 on 1 March in Shanghai
              t(2026, 3, 1, 16): Counts(4, 4, 0, 8.0, 4),  # 00:00 on 2 March
              t(2026, 3, 5, 0): Counts(9, 9, 0, 0, 0)}  # outside the range
    r = make_range(t(2026, 2, 28, 16), t(2026, 3, 3, 16), D, tz)
    rows = fill_series(r, hourly)
    assert [(x.counts.total, x.counts.success, x.counts.failed) for x in rows] == [(2, 1, 1), (4, 4, 0), (0, 0, 0)]
    assert rows[0].counts.success_rate == 0.5 and rows[1].counts.avg_response_seconds == 2.0
    assert rows[2].counts.success_rate == 0 and rows[2].counts.avg_response_seconds == 0
    # The same hours in UTC days: both fall on 1 March.
    rows_utc = fill_series(make_range(t(2026, 3, 1), t(2026, 3, 3), D, UTCZ), hourly)
    assert [x.counts.total for x in rows_utc] == [6, 0]
    total = total_of(rows_utc, make_range(t(2026, 3, 1), t(2026, 3, 3), D, UTCZ))
    assert (total.counts.total, total.counts.avg_response_seconds) == (6, 11 / 5)


def test_hourly_series_zero_fills():
    r = make_range(t(2026, 1, 1), t(2026, 1, 2), H, UTCZ)
    rows = fill_series(r, {t(2026, 1, 1, 5): Counts(1, 1, 0)})
    assert len(rows) == 24 and [x.counts.total for x in rows].count(1) == 1 and rows[5].counts.total == 1


def test_split_range_covers_the_range_in_chunks():
    r = make_range(t(2026, 1, 1), t(2026, 1, 11), D, UTCZ)
    parts = list(split_range(r, 3))
    assert [bucket_count(p) for p in parts] == [3, 3, 3, 1]
    assert parts[0].start == r.start and parts[-1].end == r.end
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))


def test_account_timeline_online_rate_and_recoveries():
    s, e = t(2026, 1, 1), t(2026, 1, 2)
    tl = account_timeline("online", None, [
        Transition(t(2026, 1, 1, 6), "online", "offline"),
        Transition(t(2026, 1, 1, 7), "offline", "recovering"),
        Transition(t(2026, 1, 1, 8), "recovering", "online"),  # outage of 2 h
        Transition(t(2026, 1, 1, 12), "online", "error"),
    ], s, e)
    assert tl.observed_seconds == 86400 and tl.online_seconds == (6 + 4) * 3600
    assert tl.recoveries == [7200] and tl.error_transitions == 1 and tl.open_outage


def test_outage_begun_before_the_range_counts_from_when_it_began():
    tl = account_timeline("offline", t(2025, 12, 31, 23), [Transition(t(2026, 1, 1, 1), "offline", "online")],
                          t(2026, 1, 1), t(2026, 1, 2))
    assert tl.recoveries == [2 * 3600] and not tl.open_outage
    assert tl.online_seconds == 23 * 3600


def test_first_login_is_not_an_outage_and_created_accounts_are_observed_from_creation():
    tl = account_timeline(None, None, [Transition(t(2026, 1, 1, 12), None, "created"),
                                       Transition(t(2026, 1, 1, 13), "created", "logging_in"),
                                       Transition(t(2026, 1, 1, 14), "logging_in", "online"),
                                       Transition(t(2026, 1, 1, 18), "online", "deleted")],
                          t(2026, 1, 1), t(2026, 1, 2))
    assert tl.recoveries == [] and tl.observed_seconds == 6 * 3600 and tl.online_seconds == 4 * 3600
    assert not tl.open_outage
