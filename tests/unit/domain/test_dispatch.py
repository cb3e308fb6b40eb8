"""Dispatch rules: backoff, retry decision, send windows, account pacing, recipient limits."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from wework.domain.dispatch import (
    AccountPacer,
    Backoff,
    RecipientLimiter,
    TimeWindow,
    should_retry,
)
from wework.domain.errors import InvalidArgument


def test_backoff_grows_exponentially_and_is_capped():
    b = Backoff(base_seconds=1, factor=2, max_seconds=10, jitter=0)
    assert [b.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_backoff_jitter_stays_within_the_fraction():
    b = Backoff(base_seconds=4, factor=2, max_seconds=100, jitter=0.25)
    rnd = random.Random(7)
    delays = [b.delay(1, rnd) for _ in range(500)]
    assert all(3.0 <= d <= 5.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # it does vary


def test_should_retry_only_transient_errors_below_the_limit():
    assert should_retry("UNAVAILABLE", 1, 3)
    assert not should_retry("UNAVAILABLE", 3, 3)
    assert not should_retry("INVALID_ARGUMENT", 1, 3)
    assert should_retry("SOMETHING", 1, 3, retryable=True)


def test_window_inside_and_outside_in_its_time_zone():
    w = TimeWindow.parse("Asia/Shanghai", "09:00", "18:00")
    assert w.open_at(datetime(2026, 11, 28, 2, 0, tzinfo=UTC))  # 10:00 Shanghai
    assert not w.open_at(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))  # 20:00 Shanghai
    nxt = w.next_open(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    assert nxt == datetime(2026, 11, 29, 1, 0, tzinfo=UTC)  # 09:00 next day Shanghai


def test_window_over_midnight_and_all_day():
    w = TimeWindow.parse("UTC", "22:00", "06:00")
    assert w.open_at(datetime(2026, 1, 1, 23, 0, tzinfo=UTC))
    assert w.open_at(datetime(2026, 1, 1, 5, 59, tzinfo=UTC))
    assert not w.open_at(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    assert TimeWindow.parse("", "", "").open_at(datetime(2026, 1, 1, 3, 0, tzinfo=UTC))


@pytest.mark.parametrize(("tz", "start", "end", "path"), [
    ("Mars/Olympus", "", "", "task.send_strategy.time_zone"),
    ("UTC", "25:00", "10:00", "task.send_strategy.window_start"),
    ("UTC", "09:00", "", "task.send_strategy.window_end"),
])
def test_bad_windows_name_the_field(tz, start, end, path):
    with pytest.raises(InvalidArgument) as exc:
        TimeWindow.parse(tz, start, end)
    assert [v.field for v in exc.value.violations] == [path]


def test_account_pacer_interval_and_jitter():
    p = AccountPacer(min_interval=1.0, jitter=0.5)
    assert p.ready_at("a") == 0.0
    rnd = random.Random(1)
    p.record("a", 100.0, rnd)
    assert 101.0 <= p.ready_at("a") <= 101.5
    assert p.ready_at("b") == 0.0  # per account
    p.record("a", 200.0, rnd, min_interval=3.0)  # a batch's slower rate wins
    assert p.ready_at("a") >= 203.0


def test_recipient_limiter_30_a_minute_and_1000_an_hour():
    lim = RecipientLimiter()
    t = 1000.0
    for i in range(30):
        assert lim.ready_at("a", "c", t + i) == t + i
        lim.record("a", "c", t + i)
    assert lim.ready_at("a", "c", t + 30) == t + 60  # the 31st waits until the first leaves the minute
    assert lim.ready_at("a", "other", t + 30) == t + 30  # per recipient
    hour = RecipientLimiter(per_minute=10_000, per_hour=1000)
    for i in range(1000):
        hour.record("a", "c", t + i * 0.1)
    assert hour.ready_at("a", "c", t + 200) == pytest.approx(t + 3600)
