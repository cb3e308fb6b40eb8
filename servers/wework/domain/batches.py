"""Batch send tasks: status machine, counters, progress and ETA. Pure rules, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wework.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from wework.domain.identity import etag_of
from wework.domain.names import name_violations

MAX_MANUAL_TARGETS = 10_000
MAX_TASK_NAME = 100


class BatchStatus(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED)


class TargetType(enum.StrEnum):
    MANUAL = "manual"
    IMPORT = "import"
    GROUP = "group"
    FILTER = "filter"


@dataclass(frozen=True)
class BatchTarget:
    conversation_id: str
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetFilter:
    """FILTER targets: every criterion must hold. conversation_type is "", "private" or "group"."""
    tags: tuple[str, ...] = ()
    conversation_type: str = ""
    active_since: datetime | None = None


@dataclass(frozen=True)
class SendStrategy:
    rate_per_minute: float = 0.0
    jitter_seconds: float = 0.0
    time_zone: str = "UTC"
    window_start: str = ""  # "HH:MM" local
    window_end: str = ""
    priority: int = 5


@dataclass
class BatchTask:
    """A batch send task. `message_type`/`content` use the same shapes as wework.domain.messages.Message."""
    tenant_id: str = ""
    creator_id: str = ""
    task_name: str = ""
    account_id: str = ""
    template_id: str = ""
    message_type: str = ""
    content: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    target_type: TargetType = TargetType.MANUAL
    manual_targets: list[BatchTarget] = field(default_factory=list)  # MANUAL only
    target_filter: TargetFilter | None = None  # FILTER only
    send_strategy: SendStrategy = field(default_factory=SendStrategy)
    id: str = ""
    status: BatchStatus = BatchStatus.CREATED
    total_count: int = 0
    sent_count: int = 0
    success_count: int = 0
    failed_count: int = 0
    cancelled_count: int = 0
    progress_percent: float = 0.0
    start_time: datetime | None = None
    end_time: datetime | None = None
    estimated_duration_seconds: int = 0
    error_message: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    # How many messages Start wrote. Several connections write a large batch: until all of them
    # have committed, fewer messages are visible and the task must not look finished.
    materialized_count: int = 0

    @property
    def etag(self) -> str:
        return etag_of(self.version)

    def validate(self) -> None:
        """Raises InvalidArgument listing every bad field of a task being created."""
        v: list[FieldViolation] = []
        if not self.task_name or len(self.task_name) > MAX_TASK_NAME:
            v.append(FieldViolation("task.task_name", f"must be 1-{MAX_TASK_NAME} characters"))
        v.extend(name_violations("task.task_name", self.task_name))
        if not self.account_id:
            v.append(FieldViolation("task.account_id", "account_id is required"))
        if self.target_type is TargetType.MANUAL:
            if not self.manual_targets:
                v.append(FieldViolation("task.manual.targets", "at least one target is required"))
            elif len(self.manual_targets) > MAX_MANUAL_TARGETS:
                v.append(FieldViolation("task.manual.targets",
                                        f"at most {MAX_MANUAL_TARGETS} targets; use an import task"))
            for i, t in enumerate(self.manual_targets[:MAX_MANUAL_TARGETS]):
                if not t.conversation_id or len(t.conversation_id) > 100:
                    v.append(FieldViolation(f"task.manual.targets[{i}].conversation_id",
                                            "must be 1-100 characters"))
                    break
        if self.target_type is TargetType.FILTER and self.target_filter is None:
            v.append(FieldViolation("task.filter", "filter is required"))
        s = self.send_strategy
        if s.rate_per_minute < 0:
            v.append(FieldViolation("task.send_strategy.rate_per_minute", "must not be negative"))
        if s.jitter_seconds < 0 or s.jitter_seconds > 3600:
            v.append(FieldViolation("task.send_strategy.jitter_seconds", "must be 0-3600"))
        if not 1 <= s.priority <= 10:
            v.append(FieldViolation("task.send_strategy.priority", "must be 1-10"))
        v.extend(_window_violations(s))
        if v:
            raise InvalidArgument(v)


def _window_violations(s: SendStrategy) -> list[FieldViolation]:
    from wework.domain.dispatch import TimeWindow  # dispatch owns the window rules

    try:
        TimeWindow.parse(s.time_zone, s.window_start, s.window_end)
    except InvalidArgument as exc:
        return list(exc.violations)
    return []


# ---- status machine ------------------------------------------------------------------------------

_ALLOWED: dict[str, dict[BatchStatus, frozenset[BatchStatus]]] = {
    "start": {BatchStatus.RUNNING: frozenset({BatchStatus.CREATED})},
    "pause": {BatchStatus.PAUSED: frozenset({BatchStatus.RUNNING})},
    "resume": {BatchStatus.RUNNING: frozenset({BatchStatus.PAUSED})},
    "cancel": {BatchStatus.CANCELLED: frozenset({BatchStatus.CREATED, BatchStatus.RUNNING,
                                                  BatchStatus.PAUSED})},
}
_TARGET = {"start": BatchStatus.RUNNING, "pause": BatchStatus.PAUSED, "resume": BatchStatus.RUNNING,
           "cancel": BatchStatus.CANCELLED}


def transition(current: BatchStatus, action: str) -> BatchStatus:
    """The status after `action` (start/pause/resume/cancel) or FailedPrecondition."""
    target = _TARGET[action]
    if current not in _ALLOWED[action][target]:
        raise FailedPrecondition(f"cannot {action} a batch task that is {current.value}")
    return target


# ---- counters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    """What the task's messages say, by status."""
    pending: int = 0
    sending: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    cancelled: int = 0
    # failed messages that had been handed to the provider (counted as sent_count too)
    failed_after_send: int = 0

    @classmethod
    def from_status_counts(cls, counts: dict[str, int], failed_after_send: int = 0) -> Counters:
        return cls(**{k: int(counts.get(k, 0)) for k in
                      ("pending", "sending", "sent", "delivered", "failed", "cancelled")},
                   failed_after_send=failed_after_send)

    @property
    def total(self) -> int:
        return self.pending + self.sending + self.sent + self.delivered + self.failed + self.cancelled

    @property
    def success(self) -> int:
        return self.sent + self.delivered

    @property
    def finished(self) -> int:
        return self.success + self.failed + self.cancelled

    @property
    def open(self) -> int:
        return self.pending + self.sending


def apply_counters(task: BatchTask, c: Counters) -> None:
    """Copies the message counts into the task (counters always equal what the messages say)."""
    task.total_count = c.total
    task.success_count = c.success
    task.failed_count = c.failed
    task.cancelled_count = c.cancelled
    task.sent_count = c.success + c.failed_after_send
    task.progress_percent = progress_percent(c)


def progress_percent(c: Counters) -> float:
    if c.total == 0:
        return 0.0
    return round(100.0 * c.finished / c.total, 2)


def final_status(task: BatchTask, c: Counters) -> tuple[BatchStatus, str] | None:
    """The terminal status once every message is final (None while some are open)."""
    if task.status not in (BatchStatus.RUNNING, BatchStatus.PAUSED) or c.open:
        return None
    if c.total < task.materialized_count:  # part of the batch is not committed yet
        return None
    if c.success > 0:
        return BatchStatus.COMPLETED, ""
    if c.total == 0:
        return BatchStatus.FAILED, "the task has no recipients"
    return BatchStatus.FAILED, f"no message was sent ({c.failed} failed, {c.cancelled} cancelled)"


def eta_seconds(c: Counters, started: datetime | None, now: datetime, rate_per_minute: float = 0.0) -> int:
    """Seconds to the end: from the observed rate since the start, else the configured rate."""
    remaining = c.open
    if remaining == 0:
        return 0
    done = c.finished
    if started is not None and done > 0:
        elapsed = max((now - started).total_seconds(), 0.001)
        return round(remaining * elapsed / done)
    if rate_per_minute > 0:
        return round(remaining * 60.0 / rate_per_minute)
    return 0


def estimated_duration(c: Counters, started: datetime | None, now: datetime, rate_per_minute: float) -> int:
    elapsed = int((now - started).total_seconds()) if started else 0
    eta = eta_seconds(c, started, now, rate_per_minute)
    return elapsed + eta
