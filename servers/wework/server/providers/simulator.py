"""The in-process WeCom provider simulator (the default provider).

It walks the QR login (scan, confirm, optional verification code), keeps logged-in
instances alive with heartbeats, sends messages with configurable latency and failure
rates, and reports everything as callbacks through a `CallbackSink`, the way a real
provider does. Faults (disconnects, failed recoveries, failed and lost sends) are
injected by configuration, globally (`SimulatorConfig`) or per instance (the account's
config dict under the key "simulator", e.g. {"simulator": {"require_verification": true}}).

Callbacks are never delivered inside the call that caused them: they go through one FIFO
queue and a dispatcher task, as a real provider posts them from elsewhere. That keeps the
per-instance order and lets a caller hold a database transaction across a provider call
without deadlocking against its own callback ingest. `await drain()` waits for delivery.

Every send is recorded per idempotency key (`sent_messages`, `send_counts`,
`duplicate_sends`): a repeated key is deduplicated like a real provider does, which is what
exactly-once tests assert on.

Test hooks (`scan`, `confirm`, `disconnect`, `expire_qr`, `remote_logout`,
`incoming_message`, `conversation_changed`) act like the phone or the network would. A
hook that moves the login along cancels the automatic flow of that instance: the test has
taken manual control.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
import random
import uuid
from collections import Counter, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from wework.server.providers.base import (
    CallbackSink,
    InstanceNotFound,
    Liveness,
    LoginQr,
    NotifyType,
    ProviderCallback,
    ProviderError,
    ProviderUnavailable,
    SendResult,
    media_fingerprint,
)

log = logging.getLogger(__name__)

# The key of an account's config dict that carries per-instance simulator overrides.
CONFIG_KEY = "simulator"


class SimulatorConfig(BaseModel):
    """Global simulator behaviour; every field can be overridden per instance."""

    model_config = ConfigDict(extra="forbid")

    # QR login
    scan_delay_seconds: float = Field(default=0.3, ge=0)
    confirm_delay_seconds: float = Field(default=0.3, ge=0)
    qr_ttl_seconds: float = Field(default=120, gt=0)
    auto_scan: bool = True  # False: nothing happens until the scan()/confirm() hooks
    require_verification: bool = False
    verification_code: str = "123456"
    # presence
    heartbeat_interval_seconds: float = Field(default=5, gt=0)
    # Drop the connection this long after the instance first comes online (fires once).
    disconnect_after_seconds: float | None = Field(default=None, ge=0)
    recover: bool = True  # False: reconnect() never restores the session
    recover_after_attempts: int = Field(default=1, ge=1)  # reconnect attempt N (1-based) succeeds
    # sending
    send_latency_seconds: float = Field(default=0.0, ge=0)
    delivery_delay_seconds: float = Field(default=0.05, ge=0)
    send_failure_rate: float = Field(default=0.0, ge=0, le=1)  # accepted, then MESSAGE_FAILED
    transient_failure_rate: float = Field(default=0.0, ge=0, le=1)  # ProviderUnavailable, not sent
    lost_ack_rate: float = Field(default=0.0, ge=0, le=1)  # sent, but the caller gets ProviderUnavailable
    # identity reported in ONLINE (merged over generated values)
    user_info: dict[str, str] | None = None
    # Seeds the per-instance random decisions (failures); ids stay unique (uuid4) regardless.
    seed: int | None = None
    # callback delivery
    callback_max_attempts: int = Field(default=3, ge=1)
    callback_retry_delay_seconds: float = Field(default=0.1, ge=0)
    callback_history: int = Field(default=1000, ge=0)  # recent callbacks kept in .callbacks
    # Sends remembered for idempotency (and tests), oldest forgotten first: a long-running
    # embedded server must not grow without bound. A real provider's dedupe window is finite too.
    send_history: int = Field(default=1_000_000, ge=1)
    close_drain_seconds: float = Field(default=1.0, ge=0)  # close() delivers what is queued, this long


class SimState(enum.StrEnum):
    CREATED = "created"
    WAITING_SCAN = "waiting_scan"
    SCANNED = "scanned"
    WAITING_VERIFY = "waiting_verify"
    ONLINE = "online"
    OFFLINE = "offline"
    LOGGED_OUT = "logged_out"
    QR_EXPIRED = "qr_expired"
    LOGIN_FAILED = "login_failed"


_QR_PENDING = (SimState.WAITING_SCAN, SimState.SCANNED)


@dataclass
class SentMessage:
    """What the simulated provider accepted for one idempotency key."""

    idempotency_key: str
    guid: str
    conversation_id: str
    message_type: str
    content: dict[str, Any]
    wework_msg_id: str
    accepted_at: datetime
    outcome: str = "pending"  # pending -> sent -> delivered | failed


@dataclass
class SimInstance:
    guid: str
    config: SimulatorConfig
    rng: random.Random
    state: SimState = SimState.CREATED
    qr: LoginQr | None = None
    qr_id: str | None = None
    login_token: str | None = None
    user_info: dict[str, str] | None = None
    last_seen: datetime | None = None
    heartbeats: int = 0
    reconnect_attempts: int = 0
    disconnect_fired: bool = False
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


class SimulatorProvider:
    """An in-process provider. Implements `wework.server.providers.base.Provider`."""

    def __init__(self, sink: CallbackSink, config: SimulatorConfig | None = None) -> None:
        self.sink = sink
        self.config = config or SimulatorConfig()
        self._instances: dict[str, SimInstance] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._queue: asyncio.Queue[ProviderCallback] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False
        # Names this simulator's tasks, so that leaks can be told apart from other simulators'.
        self.label = "simulator-" + uuid.uuid4().hex[:8]
        # Records for tests: the first accepted send per idempotency key, how many send calls
        # each key got (accepted ones, duplicates included), and the deduplicated repeats.
        self.sent_messages: dict[str, SentMessage] = {}
        self.send_counts: Counter[str] = Counter()
        self.duplicate_sends: Counter[str] = Counter()
        self.callbacks: deque[ProviderCallback] = deque(maxlen=self.config.callback_history)
        self.callback_failures = 0  # deliveries given up after callback_max_attempts
        # Accepted sends waiting for their delivery outcome: (due loop time, order, record, fails),
        # worked off by one task (not a task and a timer per send: a dispatcher sends thousands a second).
        self._outcomes: list[tuple[float, int, SentMessage, bool]] = []
        self._outcome_order = itertools.count()
        self._outcomes_task: asyncio.Task[None] | None = None
        self._outcomes_wake: asyncio.Future[None] | None = None

    # ---- Provider ------------------------------------------------------------------------

    async def create_instance(self, guid: str, *, config: dict[str, Any] | None = None) -> None:
        self._check_open()
        if not guid:
            raise ProviderError("guid is required", code="INVALID_ARGUMENT", status=400)
        effective = self._effective_config(config)
        inst = self._instances.get(guid)
        if inst is not None:
            # Idempotent; new overrides (if any) apply from the next step on.
            if config and CONFIG_KEY in config:
                inst.config = effective
            return
        seed = self.config.seed if effective.seed is None else effective.seed
        rng = random.Random(f"{seed}:{guid}") if seed is not None else random.Random()
        self._instances[guid] = SimInstance(guid=guid, config=effective, rng=rng)

    async def get_login_qr(self, guid: str) -> LoginQr:
        inst = self._get(guid)
        if inst.state == SimState.ONLINE:
            raise ProviderError(f"instance {guid!r} is already online", code="ALREADY_ONLINE", status=409)
        # A new QR replaces the old one and restarts the flow (refresh).
        self._cancel(inst, "flow", "expiry", "heartbeat", "disconnect")
        cfg = inst.config
        qr_id = uuid.uuid4().hex
        expire = _now() + timedelta(seconds=cfg.qr_ttl_seconds)
        payload = f"wxwork://login?sim=1&guid={guid}&qr={qr_id}"
        qr = LoginQr(qr_code_url=f"https://simulator.invalid/qr/{qr_id}.png", qr_payload=payload,
                     expire_time=expire)
        inst.qr, inst.qr_id, inst.state = qr, qr_id, SimState.WAITING_SCAN
        self._emit(guid, NotifyType.LOGIN_QR, {
            "qr_id": qr_id, "qr_code_url": qr.qr_code_url, "qr_payload": payload,
            "expire_time": _iso(expire),
        })
        self._spawn_for(inst, "expiry", self._expire_later(inst, qr_id, cfg.qr_ttl_seconds))
        if cfg.auto_scan:
            self._spawn_for(inst, "flow", self._auto_login(inst, qr_id))
        return qr

    async def submit_verification_code(self, guid: str, code: str) -> None:
        inst = self._get(guid)
        if inst.state != SimState.WAITING_VERIFY:
            raise ProviderError(f"instance {guid!r} is not waiting for a verification code "
                                f"(state {inst.state})", code="NOT_WAITING_VERIFICATION", status=409)
        if code != inst.config.verification_code:
            # A wrong code ends this login attempt: a new QR is needed.
            inst.state = SimState.LOGIN_FAILED
            self._emit(guid, NotifyType.LOGIN_FAILED, {"reason": "verification_failed"})
            raise ProviderError("wrong verification code", code="VERIFICATION_FAILED", status=400)
        self._emit(guid, NotifyType.LOGIN_CONFIRMED, {})
        self._go_online(inst)

    async def send_message(self, guid: str, *, conversation_id: str, message_type: str,
                           content: dict[str, Any], idempotency_key: str) -> SendResult:
        inst = self._get(guid)
        if not idempotency_key:
            raise ProviderError("idempotency_key is required", code="INVALID_ARGUMENT", status=400)
        if not conversation_id or not message_type:
            raise ProviderError("conversation_id and message_type are required",
                                code="INVALID_ARGUMENT", status=400)
        previous = self.sent_messages.get(idempotency_key)
        if previous is not None:
            # Dedupe happens before the online check, as a provider answers a retry from its record.
            if (previous.guid, previous.conversation_id, previous.message_type, media_fingerprint(previous.content)) != (
                    guid, conversation_id, message_type, media_fingerprint(content)):
                raise ProviderError(f"idempotency key {idempotency_key!r} was used for another message",
                                    code="IDEMPOTENCY_KEY_REUSED", status=409)
            self.send_counts[idempotency_key] += 1
            self.duplicate_sends[idempotency_key] += 1
            await self._sleep(inst.config.send_latency_seconds)
            return SendResult(wework_msg_id=previous.wework_msg_id)
        if inst.state != SimState.ONLINE:
            raise ProviderError(f"instance {guid!r} is not online (state {inst.state})",
                                code="NOT_ONLINE", status=409)
        cfg = inst.config
        # Draw every decision up front so that a seeded run decides the same way per send.
        transient = inst.rng.random() < cfg.transient_failure_rate
        lost_ack = inst.rng.random() < cfg.lost_ack_rate
        fails = inst.rng.random() < cfg.send_failure_rate
        if transient:
            await self._sleep(cfg.send_latency_seconds)
            raise ProviderUnavailable("simulated transient failure: message not sent", status=503)
        record = SentMessage(
            idempotency_key=idempotency_key, guid=guid, conversation_id=conversation_id,
            message_type=message_type, content=content, wework_msg_id="simmsg_" + uuid.uuid4().hex,
            accepted_at=_now(),
        )
        # Recorded on acceptance: a caller that times out or crashes after this point has sent it.
        self.sent_messages[idempotency_key] = record
        self.send_counts[idempotency_key] += 1
        if len(self.sent_messages) > self.config.send_history:
            oldest = next(iter(self.sent_messages))
            del self.sent_messages[oldest]
            self.send_counts.pop(oldest, None)
            self.duplicate_sends.pop(oldest, None)
        self._schedule_outcome(record, fails, cfg.delivery_delay_seconds)
        await self._sleep(cfg.send_latency_seconds)
        if lost_ack:
            raise ProviderUnavailable("simulated lost response: the message was sent", status=504)
        return SendResult(wework_msg_id=record.wework_msg_id)

    async def logout(self, guid: str) -> None:
        inst = self._get(guid)
        if inst.state == SimState.LOGGED_OUT:
            return  # idempotent
        self._end_session(inst, SimState.LOGGED_OUT)
        self._emit(guid, NotifyType.LOGGED_OUT, {"reason": "logout"})

    async def reconnect(self, guid: str, login_token: str | None) -> Liveness:
        inst = self._get(guid)
        if inst.state == SimState.ONLINE:
            return self._liveness(inst)
        if inst.state != SimState.OFFLINE or inst.login_token is None:
            return self._liveness(inst, reason="NO_SESSION", recoverable=False)
        if login_token is not None and login_token != inst.login_token:
            return self._liveness(inst, reason="INVALID_LOGIN_TOKEN", recoverable=False)
        inst.reconnect_attempts += 1
        if not inst.config.recover:
            return self._liveness(inst, reason="SESSION_LOST", recoverable=False)
        if inst.reconnect_attempts < inst.config.recover_after_attempts:
            return self._liveness(inst, reason="RECONNECT_FAILED", recoverable=True)
        self._go_online(inst, reconnected=True)
        return self._liveness(inst)

    async def check_liveness(self, guid: str) -> Liveness:
        return self._liveness(self._get(guid))

    async def close(self) -> None:
        """Cancels every background task; what is already queued gets close_drain_seconds to go out."""
        if self._closed:
            return
        self._closed = True
        for inst in self._instances.values():
            self._cancel(inst, *list(inst.tasks))
        producers = [t for t in self._tasks if t is not self._dispatcher]
        for task in producers:
            task.cancel()
        await asyncio.gather(*producers, return_exceptions=True)
        self._outcomes.clear()  # outcomes not reported yet are lost, as with a provider going away
        if self._dispatcher is not None and self._queue is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self.config.close_drain_seconds)
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        self._tasks.clear()

    # ---- test hooks (the phone, the network, the other side of a chat) -----------------------

    async def scan(self, guid: str) -> None:
        inst = self._get(guid)
        self._require(inst, SimState.WAITING_SCAN)
        self._cancel(inst, "flow")
        self._do_scan(inst)

    async def confirm(self, guid: str) -> None:
        inst = self._get(guid)
        self._require(inst, SimState.SCANNED)
        self._cancel(inst, "flow")
        self._do_confirm(inst)

    async def expire_qr(self, guid: str) -> None:
        inst = self._get(guid)
        self._require(inst, *_QR_PENDING)
        self._do_expire(inst)

    async def disconnect(self, guid: str, reason: str = "connection_lost") -> None:
        inst = self._get(guid)
        self._require(inst, SimState.ONLINE)
        self._drop(inst, reason)

    async def remote_logout(self, guid: str, reason: str = "logged_out_on_phone") -> None:
        inst = self._get(guid)
        if inst.state == SimState.LOGGED_OUT:
            return
        self._end_session(inst, SimState.LOGGED_OUT)
        self._emit(guid, NotifyType.LOGGED_OUT, {"reason": reason})

    async def incoming_message(self, guid: str, conversation_id: str, *,
                               content: dict[str, Any] | str = "hello",
                               message_type: str = "text",
                               sender: dict[str, str] | None = None,
                               conversation_name: str | None = None,
                               conversation_type: str = "single") -> ProviderCallback:
        inst = self._get(guid)
        self._require(inst, SimState.ONLINE)
        if isinstance(content, str):
            content = {"text": content}
        return self._emit(guid, NotifyType.MESSAGE_RECEIVED, {
            "conversation_id": conversation_id,
            "conversation_name": conversation_name or conversation_id,
            "conversation_type": conversation_type,
            "sender": sender or {"user_id": "sim-peer", "name": "Sim Peer"},
            "message_type": message_type,
            "content": content,
            "wework_msg_id": "simmsg_" + uuid.uuid4().hex,
            "time": _iso(_now()),
        })

    async def conversation_changed(self, guid: str, conversation_id: str, *,
                                   conversation_name: str | None = None,
                                   conversation_type: str = "group",
                                   member_count: int = 2) -> ProviderCallback:
        inst = self._get(guid)
        self._require(inst, SimState.ONLINE)
        return self._emit(guid, NotifyType.CONVERSATION_CHANGED, {
            "conversation_id": conversation_id,
            "conversation_name": conversation_name or conversation_id,
            "conversation_type": conversation_type,
            "member_count": member_count,
        })

    # ---- inspection -----------------------------------------------------------------------

    def instance(self, guid: str) -> SimInstance:
        return self._get(guid)

    def state(self, guid: str) -> SimState:
        return self._get(guid).state

    @property
    def instances(self) -> dict[str, SimInstance]:
        return dict(self._instances)

    def send_count(self, idempotency_key: str) -> int:
        """How many send calls the provider accepted for this key (duplicates included)."""
        return self.send_counts[idempotency_key]

    def active_tasks(self) -> list[asyncio.Task[Any]]:
        return [t for t in self._tasks if not t.done()]

    async def drain(self) -> None:
        """Waits until every callback emitted so far has been handed to the sink."""
        if self._queue is not None:
            await self._queue.join()

    # ---- flow ---------------------------------------------------------------------------------

    async def _auto_login(self, inst: SimInstance, qr_id: str) -> None:
        await asyncio.sleep(inst.config.scan_delay_seconds)
        if inst.qr_id != qr_id or inst.state != SimState.WAITING_SCAN:
            return
        self._do_scan(inst)
        await asyncio.sleep(inst.config.confirm_delay_seconds)
        if inst.qr_id != qr_id or inst.state != SimState.SCANNED:
            return
        self._do_confirm(inst)

    async def _expire_later(self, inst: SimInstance, qr_id: str, ttl: float) -> None:
        await asyncio.sleep(ttl)
        if inst.qr_id == qr_id and inst.state in _QR_PENDING:
            self._do_expire(inst)

    def _do_scan(self, inst: SimInstance) -> None:
        inst.state = SimState.SCANNED
        self._emit(inst.guid, NotifyType.QR_SCANNED, {"qr_id": inst.qr_id})

    def _do_confirm(self, inst: SimInstance) -> None:
        self._cancel(inst, "expiry")
        if inst.config.require_verification:
            inst.state = SimState.WAITING_VERIFY
            self._emit(inst.guid, NotifyType.NEED_VERIFY, {"qr_id": inst.qr_id, "method": "sms"})
            return
        self._emit(inst.guid, NotifyType.LOGIN_CONFIRMED, {"qr_id": inst.qr_id})
        self._go_online(inst)

    def _do_expire(self, inst: SimInstance) -> None:
        self._cancel(inst, "flow", "expiry")
        inst.state = SimState.QR_EXPIRED
        self._emit(inst.guid, NotifyType.QR_EXPIRED, {"qr_id": inst.qr_id})

    def _go_online(self, inst: SimInstance, *, reconnected: bool = False) -> None:
        if not reconnected:
            inst.login_token = "simtok_" + uuid.uuid4().hex
            suffix = inst.guid[-8:]
            inst.user_info = {
                "user_id": f"sim-user-{suffix}",
                "name": f"Sim User {suffix}",
                "corp_name": "Simulated Corp",
                "avatar": f"https://simulator.invalid/avatar/{suffix}.png",
                **(inst.config.user_info or {}),
            }
        inst.state = SimState.ONLINE
        inst.reconnect_attempts = 0
        inst.last_seen = _now()
        self._emit(inst.guid, NotifyType.ONLINE, {
            "user_info": dict(inst.user_info or {}), "login_token": inst.login_token,
            "reconnected": reconnected,
        })
        self._spawn_for(inst, "heartbeat", self._heartbeats(inst))
        after = inst.config.disconnect_after_seconds
        if after is not None and not inst.disconnect_fired:
            inst.disconnect_fired = True
            self._spawn_for(inst, "disconnect", self._disconnect_later(inst, after))

    async def _heartbeats(self, inst: SimInstance) -> None:
        while True:
            await asyncio.sleep(inst.config.heartbeat_interval_seconds)
            if inst.state != SimState.ONLINE:
                return
            inst.last_seen = _now()
            inst.heartbeats += 1
            self._emit(inst.guid, NotifyType.HEARTBEAT, {"seq": inst.heartbeats, "time": _iso(inst.last_seen)})

    async def _disconnect_later(self, inst: SimInstance, after: float) -> None:
        await asyncio.sleep(after)
        if inst.state == SimState.ONLINE:
            self._drop(inst, "connection_lost")

    def _drop(self, inst: SimInstance, reason: str) -> None:
        self._cancel(inst, "heartbeat", "disconnect")
        inst.state = SimState.OFFLINE
        self._emit(inst.guid, NotifyType.OFFLINE, {"reason": reason})

    def _end_session(self, inst: SimInstance, state: SimState) -> None:
        self._cancel(inst, *list(inst.tasks))
        inst.state = state
        inst.login_token = None  # a logged-out session cannot be reconnected

    def _schedule_outcome(self, record: SentMessage, fails: bool, delay: float) -> None:
        """A delivered message reports MESSAGE_SENT now and MESSAGE_DELIVERED `delay` later; a
        failing one reports MESSAGE_FAILED `delay` later (callbacks are queued, not delivered here)."""
        if not fails:
            record.outcome = "sent"
            self._emit(record.guid, NotifyType.MESSAGE_SENT, self._receipt(record))
        loop = asyncio.get_running_loop()
        item = (loop.time() + delay, next(self._outcome_order), record, fails)
        heapq.heappush(self._outcomes, item)
        if self._outcomes_task is None or self._outcomes_task.done():
            self._outcomes_task = self._spawn(self._report_outcomes(), f"{self.label}:message:outcomes")
        elif self._outcomes[0] is item and self._outcomes_wake is not None:
            _wake_up(self._outcomes_wake)  # due before the one the task sleeps for

    async def _report_outcomes(self) -> None:
        loop = asyncio.get_running_loop()
        while self._outcomes:
            due = self._outcomes[0][0]
            if due > loop.time():
                self._outcomes_wake = wake = loop.create_future()
                timer = loop.call_at(due, _wake_up, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                    self._outcomes_wake = None
                continue
            _, _, record, fails = heapq.heappop(self._outcomes)
            if fails:
                record.outcome = "failed"
                self._emit(record.guid, NotifyType.MESSAGE_FAILED, {
                    **self._receipt(record), "error_code": "SIM_DELIVERY_FAILED",
                    "error_message": "simulated delivery failure"})
            else:
                record.outcome = "delivered"
                self._emit(record.guid, NotifyType.MESSAGE_DELIVERED, self._receipt(record))

    @staticmethod
    def _receipt(record: SentMessage) -> dict[str, Any]:
        return {"msg_id": record.idempotency_key, "idempotency_key": record.idempotency_key,
                "wework_msg_id": record.wework_msg_id}

    # ---- callbacks -----------------------------------------------------------------------------

    def _emit(self, guid: str, notify_type: NotifyType, data: dict[str, Any]) -> ProviderCallback:
        cb = ProviderCallback(guid=guid, notify_type=int(notify_type), data=data,
                              event_id=str(uuid.uuid4()), time=_now())
        if self._closed:
            return cb
        self.callbacks.append(cb)
        if self._queue is None:
            self._queue = asyncio.Queue()
        self._queue.put_nowait(cb)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = self._spawn(self._dispatch(), f"{self.label}:callbacks")
        return cb

    async def _dispatch(self) -> None:
        assert self._queue is not None
        while True:
            cb = await self._queue.get()
            try:
                await self._deliver(cb)
            finally:
                self._queue.task_done()

    async def _deliver(self, cb: ProviderCallback) -> None:
        attempts = self.config.callback_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self.sink.deliver(cb)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                # A real provider retries its callbacks; the ingest must be idempotent (event_id).
                log.warning("simulator callback %s (%s) to %s failed, attempt %d/%d", cb.event_id,
                            cb.notify_type, cb.guid, attempt, attempts, exc_info=True)
                if attempt < attempts:
                    await asyncio.sleep(self.config.callback_retry_delay_seconds * 2 ** (attempt - 1))
        self.callback_failures += 1

    # ---- plumbing --------------------------------------------------------------------------------

    def _effective_config(self, config: dict[str, Any] | None) -> SimulatorConfig:
        overrides = (config or {}).get(CONFIG_KEY) or {}
        if not isinstance(overrides, dict):
            raise ProviderError(f"config.{CONFIG_KEY} must be an object", code="INVALID_CONFIG", status=400)
        if not overrides:
            return self.config
        try:
            return SimulatorConfig.model_validate({**self.config.model_dump(), **overrides})
        except ValidationError as exc:
            raise ProviderError(f"invalid config.{CONFIG_KEY}: {exc}", code="INVALID_CONFIG",
                                status=400) from None

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderError("the simulator is closed", code="PROVIDER_CLOSED")

    def _get(self, guid: str) -> SimInstance:
        self._check_open()
        inst = self._instances.get(guid)
        if inst is None:
            raise InstanceNotFound(guid)
        return inst

    @staticmethod
    def _require(inst: SimInstance, *states: SimState) -> None:
        if inst.state not in states:
            raise ProviderError(f"instance {inst.guid!r} is {inst.state}, expected "
                                f"{' or '.join(states)}", code="INVALID_STATE", status=409)

    def _liveness(self, inst: SimInstance, *, reason: str | None = None,
                  recoverable: bool | None = None) -> Liveness:
        details: dict[str, Any] = {"state": str(inst.state), "heartbeats": inst.heartbeats}
        if reason is not None:
            details.update(reason=reason, recoverable=recoverable, attempts=inst.reconnect_attempts)
        # "alive" is the instance's connection: a dropped (OFFLINE) instance is not alive.
        return Liveness(alive=inst.state != SimState.OFFLINE, online=inst.state == SimState.ONLINE,
                        last_seen=inst.last_seen, details=details)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _spawn_for(self, inst: SimInstance, key: str, coro: Coroutine[Any, Any, Any]) -> None:
        self._cancel(inst, key)
        inst.tasks[key] = self._spawn(coro, f"{self.label}:{inst.guid}:{key}")

    def _cancel(self, inst: SimInstance, *keys: str) -> None:
        current = asyncio.current_task()
        for key in keys:
            task = inst.tasks.pop(key, None)
            # A task that ends its own step (e.g. the flow going online) must not cancel itself.
            if task is not None and task is not current:
                task.cancel()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task %s failed", task.get_name(), exc_info=task.exception())
