"""Dispatch rules: backoff, retry decision, send windows, account pacing, recipient limits."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from wework.domain.dispatch import (
    Backoff,
    PacingLimits,
    PacingState,
    SendWindows,
    TimeWindow,
    pacing_violations,
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


def test_account_interval_and_jitter():
    state, limits = PacingState(), PacingLimits(min_interval_seconds=1.0, jitter_seconds=0.5)
    rnd = random.Random(1)
    assert state.ready_at("a", "c", 100.0, limits) == (100.0, False)
    state.record("a", "c", 100.0, limits.gap(rnd))
    ready, account_bound = state.ready_at("a", "other", 100.0, limits)
    assert 101.0 <= ready <= 101.5 and account_bound
    assert state.ready_at("b", "c", 100.0, limits) == (100.0, False)  # per account
    slow = limits.slowed_to(3.0, None)  # a batch's slower rate wins, a faster one does not
    assert slow.min_interval_seconds == 3.0 and limits.slowed_to(0.1, 0.1) == limits


def test_recipient_limits_30_a_minute_and_1000_an_hour():
    windows, limits = SendWindows(), PacingLimits()
    t = 1000.0
    for i in range(30):
        assert windows.ready_at(("a", "c"), t + i, limits.recipient_per_minute, limits.recipient_per_hour) == t + i
        windows.record(("a", "c"), t + i)
    assert windows.ready_at(("a", "c"), t + 30, 30, 1000) == t + 60  # the 31st waits for the first to leave
    assert windows.ready_at(("a", "other"), t + 30, 30, 1000) == t + 30  # per recipient
    hour = SendWindows()
    for i in range(1000):
        hour.record(("a", "c"), t + i * 0.1)
    assert hour.ready_at(("a", "c"), t + 200, 10_000, 1000) == pytest.approx(t + 3600)


def test_account_ceilings_bound_the_account_across_recipients():
    state = PacingState()
    limits = PacingLimits(min_interval_seconds=0, jitter_seconds=0, account_per_minute=3, account_per_hour=4)
    for i in range(3):
        assert state.ready_at("a", f"member-{i}", 10.0 + i, limits) == (10.0 + i, False)
        state.record("a", f"member-{i}", 10.0 + i, 0.0)
    # A 4th recipient still waits: the account's minute is full.
    assert state.ready_at("a", "member-9", 13.0, limits) == (70.0, True)
    state.record("a", "member-9", 70.0, 0.0)
    assert state.ready_at("a", "member-10", 71.0, limits) == (3610.0, True)  # then its hour


def test_overrides_apply_tenant_then_account_and_ignore_what_is_not_pacing():
    base = PacingLimits()
    tenant = base.with_overrides({"pacing": {"min_interval_seconds": 2, "account_per_hour": 600}})
    account = tenant.with_overrides({"pacing": {"account_per_hour": 300}, "simulator": {}})
    assert (account.min_interval_seconds, account.account_per_hour, account.recipient_per_minute) == (2.0, 300, 30)
    assert base.with_overrides(None) == base and base.with_overrides({"pacing": "fast"}) == base
    assert base.with_overrides({"pacing": {"account_per_minute": -1}}) == base  # invalid: the defaults hold


def test_bad_pacing_overrides_name_each_field():
    bad = {"account_per_minute": 0, "min_interval_seconds": "1", "per_day": 5, "recipient_per_hour": 1.5}
    assert sorted(v.field for v in pacing_violations(bad, "account.config.pacing")) == [
        "account.config.pacing.account_per_minute", "account.config.pacing.min_interval_seconds",
        "account.config.pacing.per_day", "account.config.pacing.recipient_per_hour"]
    assert pacing_violations({"account_per_minute": 20, "jitter_seconds": 0.5}, "p") == []


def test_account_and_tenant_configs_refuse_bad_pacing_overrides():
    from wework.domain.accounts import validate_account
    from wework.domain.identity import Tenant

    with pytest.raises(InvalidArgument) as exc:
        validate_account({"config": {"pacing": {"account_per_hour": 0}}}, creating=False)
    assert [v.field for v in exc.value.violations] == ["account.config.pacing.account_per_hour"]
    validate_account({"config": {"pacing": {"account_per_hour": 600}}}, creating=False)
    tenant = Tenant(id="t", tenant_code="tc", tenant_name="T", config={"pacing": {"min_interval_seconds": -1}})
    with pytest.raises(InvalidArgument) as exc:
        tenant.validate(fields=frozenset({"config"}))
    assert [v.field for v in exc.value.violations] == ["tenant.config.pacing.min_interval_seconds"]
