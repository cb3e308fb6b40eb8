"""Batch tasks: validation, status machine, counters from messages, progress and ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from wework.domain.batches import (
    BatchStatus,
    BatchTarget,
    BatchTask,
    Counters,
    SendStrategy,
    TargetType,
    apply_counters,
    eta_seconds,
    final_status,
    transition,
)
from wework.domain.errors import FailedPrecondition, InvalidArgument


def _task(**kw) -> BatchTask:
    base = {"task_name": "t", "account_id": "a", "message_type": "text", "content": {"text": "hi"},
                "target_type": TargetType.MANUAL, "manual_targets": [BatchTarget("c1")]}
    base.update(kw)
    return BatchTask(**base)


def test_valid_task_passes():
    _task().validate()


def test_invalid_task_lists_every_field():
    bad = _task(task_name="", manual_targets=[BatchTarget(f"c{i}") for i in range(10_001)],
                send_strategy=SendStrategy(priority=11, time_zone="Nowhere/Else"))
    with pytest.raises(InvalidArgument) as exc:
        bad.validate()
    fields = {v.field for v in exc.value.violations}
    assert fields == {"task.task_name", "task.manual.targets", "task.send_strategy.priority",
                      "task.send_strategy.time_zone"}


def test_filter_task_needs_a_filter():
    with pytest.raises(InvalidArgument):
        _task(target_type=TargetType.FILTER, manual_targets=[]).validate()
    _task(target_type=TargetType.GROUP, manual_targets=[]).validate()


@pytest.mark.parametrize(("status", "action", "result"), [
    (BatchStatus.CREATED, "start", BatchStatus.RUNNING),
    (BatchStatus.RUNNING, "pause", BatchStatus.PAUSED),
    (BatchStatus.PAUSED, "resume", BatchStatus.RUNNING),
    (BatchStatus.PAUSED, "cancel", BatchStatus.CANCELLED),
    (BatchStatus.CREATED, "cancel", BatchStatus.CANCELLED),
])
def test_legal_transitions(status, action, result):
    assert transition(status, action) is result


@pytest.mark.parametrize(("status", "action"), [
    (BatchStatus.RUNNING, "start"), (BatchStatus.CREATED, "pause"), (BatchStatus.RUNNING, "resume"),
    (BatchStatus.COMPLETED, "cancel"), (BatchStatus.CANCELLED, "resume"),
])
def test_illegal_transitions(status, action):
    with pytest.raises(FailedPrecondition):
        transition(status, action)


def test_counters_equal_the_messages():
    c = Counters.from_status_counts({"pending": 2, "sending": 1, "sent": 3, "delivered": 4, "failed": 5,
                                     "cancelled": 5}, failed_after_send=2)
    t = _task()
    apply_counters(t, c)
    assert (t.total_count, t.success_count, t.failed_count, t.sent_count) == (20, 7, 5, 9)
    assert t.progress_percent == 85.0


def test_final_status():
    t = _task(status=BatchStatus.RUNNING)
    assert final_status(t, Counters(pending=1, sent=1)) is None
    assert final_status(t, Counters(sent=1, failed=3)) == (BatchStatus.COMPLETED, "")
    status, reason = final_status(t, Counters(failed=3))
    assert status is BatchStatus.FAILED and "3 failed" in reason


def test_a_task_is_not_final_while_part_of_its_batch_is_not_visible():
    t = _task(status=BatchStatus.RUNNING)
    t.materialized_count = 10  # Start wrote ten; a second connection's six are not committed yet
    assert final_status(t, Counters(sent=4)) is None
    assert final_status(t, Counters(sent=10)) == (BatchStatus.COMPLETED, "")


def test_eta_from_the_observed_rate_then_the_configured_one():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = start + timedelta(seconds=10)
    assert eta_seconds(Counters(sent=10, pending=30), start, now) == 30
    assert eta_seconds(Counters(pending=60), None, now, rate_per_minute=30) == 120
    assert eta_seconds(Counters(sent=5), start, now) == 0
