"""The provider simulator: login flow, presence, recovery, sending, faults, cleanup.

Delays are shortened to tens of milliseconds; tests wait for callbacks (never sleep for them)
except where the point is that something does NOT happen.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from wework.server.providers.base import (
    InstanceNotFound,
    NotifyType,
    ProviderCallback,
    ProviderError,
    ProviderUnavailable,
)
from wework.server.providers.simulator import SimState, SimulatorConfig, SimulatorProvider
from wework.server.providers.sinks import CollectingSink

FAST = {
    "scan_delay_seconds": 0.02,
    "confirm_delay_seconds": 0.02,
    "qr_ttl_seconds": 5,
    "heartbeat_interval_seconds": 0.05,
    "delivery_delay_seconds": 0.02,
    "callback_retry_delay_seconds": 0.01,
}
NT = NotifyType


@pytest.fixture
async def made():
    """Builds simulators with a collecting sink; closes every one after the test."""
    sims: list[SimulatorProvider] = []

    def make(sink=None, **overrides) -> tuple[SimulatorProvider, CollectingSink]:
        sink = sink or CollectingSink()
        sim = SimulatorProvider(sink, SimulatorConfig(**{**FAST, **overrides}))
        sims.append(sim)
        return sim, sink

    yield make
    for sim in sims:
        await sim.close()


@pytest.fixture
def guid() -> str:
    return "g-" + uuid.uuid4().hex


async def login(sim: SimulatorProvider, sink: CollectingSink, guid: str, **overrides) -> ProviderCallback:
    await sim.create_instance(guid, config={"simulator": overrides} if overrides else None)
    await sim.get_login_qr(guid)
    return await sink.wait_for(guid, NT.ONLINE)


async def send(sim: SimulatorProvider, guid: str, key: str, text: str = "hi"):
    return await sim.send_message(guid, conversation_id="conv-1", message_type="text",
                                  content={"text": text}, idempotency_key=key)


# ---- login --------------------------------------------------------------------------------------

async def test_qr_flow_goes_online_with_user_info_and_token(made, guid):
    sim, sink = made()
    await sim.create_instance(guid)
    before = datetime.now(UTC)
    qr = await sim.get_login_qr(guid)
    assert qr.qr_code_url and guid in qr.qr_payload
    assert before + timedelta(seconds=4) < qr.expire_time <= datetime.now(UTC) + timedelta(seconds=5)

    online = await sink.wait_for(guid, NT.ONLINE)
    assert sink.types(guid)[:4] == [NT.LOGIN_QR, NT.QR_SCANNED, NT.LOGIN_CONFIRMED, NT.ONLINE]
    first = sink.of(guid, NT.LOGIN_QR)[0]
    assert first.data["qr_payload"] == qr.qr_payload
    assert datetime.fromisoformat(first.data["expire_time"]) == qr.expire_time
    assert set(online.data["user_info"]) >= {"user_id", "name", "corp_name", "avatar"}
    assert online.data["login_token"].startswith("simtok_")
    live = await sim.check_liveness(guid)
    assert live.alive and live.online and live.last_seen is not None
    ids = [c.event_id for c in sink.callbacks]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i) for i in ids)
    assert all(c.time.tzinfo is UTC for c in sink.callbacks)


async def test_create_instance_is_idempotent_and_unknown_guid_is_not_found(made, guid):
    sim, _sink = made()
    await sim.create_instance(guid, config={"simulator": {"auto_scan": False}})
    await sim.create_instance(guid, config={"account": "settings without simulator overrides"})
    await sim.create_instance(guid)
    assert list(sim.instances) == [guid]
    assert sim.instance(guid).config.auto_scan is False  # overrides kept
    await sim.create_instance(guid, config={"simulator": {"qr_ttl_seconds": 9}})
    assert sim.instance(guid).config.qr_ttl_seconds == 9 and sim.instance(guid).config.auto_scan
    with pytest.raises(InstanceNotFound):
        await sim.get_login_qr("nope")
    with pytest.raises(InstanceNotFound):
        await sim.check_liveness("nope")


async def test_invalid_overrides_are_rejected(made, guid):
    sim, _ = made()
    with pytest.raises(ProviderError) as err:
        await sim.create_instance(guid, config={"simulator": {"scan_delay_secs": 1}})
    assert err.value.code == "INVALID_CONFIG"


async def test_manual_scan_and_confirm_when_auto_scan_is_off(made, guid):
    sim, sink = made()
    await sim.create_instance(guid, config={"simulator": {"auto_scan": False}, "other": "ignored"})
    await sim.get_login_qr(guid)
    await asyncio.sleep(0.1)  # several scan delays: nothing may happen on its own
    await sim.drain()
    assert sink.types(guid) == [NT.LOGIN_QR]
    with pytest.raises(ProviderError) as err:
        await sim.confirm(guid)
    assert err.value.code == "INVALID_STATE"
    await sim.scan(guid)
    await sink.wait_for(guid, NT.QR_SCANNED)
    assert sim.state(guid) == SimState.SCANNED
    await sim.confirm(guid)
    await sink.wait_for(guid, NT.ONLINE)
    assert sink.types(guid) == [NT.LOGIN_QR, NT.QR_SCANNED, NT.LOGIN_CONFIRMED, NT.ONLINE]


async def test_verification_with_the_right_code(made, guid):
    sim, sink = made()
    await sim.create_instance(guid, config={"simulator": {"require_verification": True}})
    await sim.get_login_qr(guid)
    await sink.wait_for(guid, NT.NEED_VERIFY)
    assert NT.ONLINE not in sink.types(guid)
    with pytest.raises(ProviderError) as err:
        await send(sim, guid, "k-" + guid)
    assert err.value.code == "NOT_ONLINE"
    await sim.submit_verification_code(guid, "123456")
    await sink.wait_for(guid, NT.ONLINE)
    assert sink.types(guid)[-3:] == [NT.NEED_VERIFY, NT.LOGIN_CONFIRMED, NT.ONLINE]
    assert (await sim.check_liveness(guid)).online


async def test_verification_with_a_wrong_code_fails_the_login(made, guid):
    sim, sink = made(verification_code="654321")
    await sim.create_instance(guid, config={"simulator": {"require_verification": True}})
    await sim.get_login_qr(guid)
    await sink.wait_for(guid, NT.NEED_VERIFY)
    with pytest.raises(ProviderError) as err:
        await sim.submit_verification_code(guid, "123456")
    assert err.value.code == "VERIFICATION_FAILED" and not err.value.retryable
    failed = await sink.wait_for(guid, NT.LOGIN_FAILED)
    assert failed.data["reason"] == "verification_failed"
    assert sim.state(guid) == SimState.LOGIN_FAILED
    with pytest.raises(ProviderError) as err:
        await sim.submit_verification_code(guid, "654321")
    assert err.value.code == "NOT_WAITING_VERIFICATION"
    # A new QR starts over, and the right code then logs in.
    await sim.get_login_qr(guid)
    await sink.wait_for(guid, NT.NEED_VERIFY, count=2)
    await sim.submit_verification_code(guid, "654321")
    await sink.wait_for(guid, NT.ONLINE)


async def test_qr_expires_without_a_scan_and_a_new_qr_refreshes_it(made, guid):
    sim, sink = made()
    await sim.create_instance(guid, config={"simulator": {"auto_scan": False, "qr_ttl_seconds": 0.1}})
    first = await sim.get_login_qr(guid)
    expired = await sink.wait_for(guid, NT.QR_EXPIRED)
    assert sim.state(guid) == SimState.QR_EXPIRED
    assert expired.data["qr_id"] == sink.of(guid, NT.LOGIN_QR)[0].data["qr_id"]
    with pytest.raises(ProviderError):
        await sim.scan(guid)
    second = await sim.get_login_qr(guid)
    assert second.qr_payload != first.qr_payload and second.expire_time > first.expire_time
    await sim.scan(guid)
    await sim.confirm(guid)
    await sink.wait_for(guid, NT.ONLINE)
    await asyncio.sleep(0.15)  # past the second QR's ttl: a logged-in instance does not expire
    await sim.drain()
    assert len(sink.of(guid, NT.QR_EXPIRED)) == 1


async def test_refreshing_the_qr_restarts_its_expiry(made, guid):
    sim, sink = made()
    await sim.create_instance(guid, config={"simulator": {"auto_scan": False, "qr_ttl_seconds": 0.6}})
    await sim.get_login_qr(guid)
    await asyncio.sleep(0.4)
    await sim.get_login_qr(guid)
    await asyncio.sleep(0.4)  # past the first QR's ttl, 0.2 s before the second's
    await sim.drain()
    assert NT.QR_EXPIRED not in sink.types(guid)
    expired = await sink.wait_for(guid, NT.QR_EXPIRED)
    assert expired.data["qr_id"] == sink.of(guid, NT.LOGIN_QR)[1].data["qr_id"]


async def test_get_login_qr_while_online_is_refused(made, guid):
    sim, sink = made()
    await login(sim, sink, guid)
    with pytest.raises(ProviderError) as err:
        await sim.get_login_qr(guid)
    assert err.value.code == "ALREADY_ONLINE"


# ---- presence -----------------------------------------------------------------------------------

async def test_heartbeats_while_online(made, guid):
    sim, sink = made()
    await login(sim, sink, guid)
    third = await sink.wait_for(guid, NT.HEARTBEAT, count=3)
    beats = sink.of(guid, NT.HEARTBEAT)
    assert [b.data["seq"] for b in beats[:3]] == [1, 2, 3]
    live = await sim.check_liveness(guid)
    assert live.last_seen is not None and live.last_seen >= third.time - timedelta(seconds=1)


async def test_disconnect_stops_heartbeats_and_reconnect_restores_them(made, guid):
    sim, sink = made()
    online = await login(sim, sink, guid, disconnect_after_seconds=0.12)
    offline = await sink.wait_for(guid, NT.OFFLINE)
    assert offline.data["reason"] == "connection_lost"
    live = await sim.check_liveness(guid)
    assert not live.alive and not live.online
    await sim.drain()
    beats = len(sink.of(guid, NT.HEARTBEAT))
    await asyncio.sleep(0.15)  # three intervals: no heartbeat while offline
    await sim.drain()
    assert len(sink.of(guid, NT.HEARTBEAT)) == beats

    live = await sim.reconnect(guid, online.data["login_token"])
    assert live.online and live.alive
    again = await sink.wait_for(guid, NT.ONLINE, count=2)
    assert again.data["reconnected"] is True
    assert again.data["login_token"] == online.data["login_token"]
    await sink.wait_for(guid, NT.HEARTBEAT, count=beats + 2)
    await asyncio.sleep(0.15)  # the injected disconnect fires once
    assert sim.state(guid) == SimState.ONLINE


async def test_reconnect_fails_when_the_session_cannot_recover(made, guid):
    sim, sink = made()
    online = await login(sim, sink, guid, recover=False)
    await sim.disconnect(guid)
    await sink.wait_for(guid, NT.OFFLINE)
    for _ in range(3):
        live = await sim.reconnect(guid, online.data["login_token"])
        assert not live.online
        assert live.details["reason"] == "SESSION_LOST" and live.details["recoverable"] is False
    await sim.drain()
    assert len(sink.of(guid, NT.ONLINE)) == 1
    assert sim.state(guid) == SimState.OFFLINE


async def test_reconnect_succeeds_on_the_configured_attempt(made, guid):
    sim, sink = made()
    online = await login(sim, sink, guid, recover_after_attempts=3)
    await sim.disconnect(guid, reason="network")
    assert (await sink.wait_for(guid, NT.OFFLINE)).data["reason"] == "network"
    token = online.data["login_token"]
    for attempt in (1, 2):
        live = await sim.reconnect(guid, token)
        assert not live.online
        assert live.details == {"state": "offline", "heartbeats": live.details["heartbeats"],
                                "reason": "RECONNECT_FAILED", "recoverable": True, "attempts": attempt}
    live = await sim.reconnect(guid, token)
    assert live.online
    await sink.wait_for(guid, NT.ONLINE, count=2)


async def test_reconnect_needs_the_right_token_and_a_session(made, guid):
    sim, sink = made()
    await login(sim, sink, guid)
    assert (await sim.reconnect(guid, None)).online  # already online: nothing to do
    await sim.disconnect(guid)
    live = await sim.reconnect(guid, "simtok_wrong")
    assert not live.online and live.details["reason"] == "INVALID_LOGIN_TOKEN"
    await sim.logout(guid)
    live = await sim.reconnect(guid, None)
    assert not live.online and live.details["reason"] == "NO_SESSION"


async def test_logout_ends_the_session_once(made, guid):
    sim, sink = made()
    await login(sim, sink, guid)
    await sim.logout(guid)
    await sim.logout(guid)
    await sim.drain()
    assert [c.data["reason"] for c in sink.of(guid, NT.LOGGED_OUT)] == ["logout"]
    live = await sim.check_liveness(guid)
    assert not live.online and live.details["state"] == "logged_out"
    beats = len(sink.of(guid, NT.HEARTBEAT))
    await asyncio.sleep(0.12)
    await sim.drain()
    assert len(sink.of(guid, NT.HEARTBEAT)) == beats
    with pytest.raises(ProviderError) as err:
        await send(sim, guid, "k-" + guid)
    assert err.value.code == "NOT_ONLINE"


async def test_remote_logout(made, guid):
    sim, sink = made()
    await login(sim, sink, guid)
    await sim.remote_logout(guid)
    assert (await sink.wait_for(guid, NT.LOGGED_OUT)).data["reason"] == "logged_out_on_phone"


# ---- sending ------------------------------------------------------------------------------------

async def test_send_then_sent_and_delivered_callbacks(made, guid):
    sim, sink = made(send_latency_seconds=0.05)
    await login(sim, sink, guid)
    key = "msg-" + guid
    started = time.monotonic()
    result = await send(sim, guid, key)
    assert time.monotonic() - started >= 0.05
    delivered = await sink.wait_for(guid, NT.MESSAGE_DELIVERED)
    sent = sink.of(guid, NT.MESSAGE_SENT)
    assert len(sent) == 1 and sent[0].time <= delivered.time
    for cb in (sent[0], delivered):
        assert cb.data["msg_id"] == key and cb.data["wework_msg_id"] == result.wework_msg_id
    record = sim.sent_messages[key]
    assert (record.guid, record.conversation_id, record.content, record.outcome) == (
        guid, "conv-1", {"text": "hi"}, "delivered")


async def test_send_failure_by_rate(made, guid):
    sim, sink = made()
    await login(sim, sink, guid, send_failure_rate=1.0)
    result = await send(sim, guid, "f-" + guid)
    failed = await sink.wait_for(guid, NT.MESSAGE_FAILED)
    assert failed.data["wework_msg_id"] == result.wework_msg_id
    assert failed.data["msg_id"] == "f-" + guid and failed.data["error_code"]
    await sim.drain()
    assert NT.MESSAGE_SENT not in sink.types(guid) and NT.MESSAGE_DELIVERED not in sink.types(guid)
    assert sim.sent_messages["f-" + guid].outcome == "failed"


async def test_transient_failure_is_retryable_and_sends_nothing(made, guid):
    sim, sink = made()
    await login(sim, sink, guid, transient_failure_rate=1.0)
    with pytest.raises(ProviderUnavailable) as err:
        await send(sim, guid, "t-" + guid)
    assert err.value.retryable
    await asyncio.sleep(0.05)
    await sim.drain()
    assert "t-" + guid not in sim.sent_messages and sim.send_count("t-" + guid) == 0
    assert not {NT.MESSAGE_SENT, NT.MESSAGE_FAILED} & set(sink.types(guid))


async def test_duplicate_idempotency_key_is_sent_once(made, guid):
    sim, sink = made()
    await login(sim, sink, guid)
    key = "d-" + guid
    first = await send(sim, guid, key)
    second = await send(sim, guid, key)
    assert first == second
    await sink.wait_for(guid, NT.MESSAGE_DELIVERED)
    await asyncio.sleep(0.05)
    await sim.drain()
    assert len(sink.of(guid, NT.MESSAGE_SENT)) == 1 and len(sink.of(guid, NT.MESSAGE_DELIVERED)) == 1
    assert list(sim.sent_messages) == [key]
    assert sim.send_count(key) == 2 and sim.duplicate_sends[key] == 1
    with pytest.raises(ProviderError) as err:
        await send(sim, guid, key, text="something else")
    assert err.value.code == "IDEMPOTENCY_KEY_REUSED"


async def test_the_send_record_keeps_only_the_newest_sends(made, guid):
    sim, sink = made(send_history=2)
    await login(sim, sink, guid)
    for key in ("k1", "k2", "k3"):
        await send(sim, guid, f"{key}-{guid}")
    assert list(sim.sent_messages) == [f"k2-{guid}", f"k3-{guid}"]
    assert sim.send_count(f"k1-{guid}") == 0  # forgotten: the record is bounded


async def test_lost_ack_sends_and_the_retry_is_deduplicated(made, guid):
    sim, sink = made()
    await login(sim, sink, guid, lost_ack_rate=1.0)
    key = "l-" + guid
    with pytest.raises(ProviderUnavailable):
        await send(sim, guid, key)
    assert key in sim.sent_messages  # sent, though the caller could not know
    retried = await send(sim, guid, key)
    assert retried.wework_msg_id == sim.sent_messages[key].wework_msg_id
    assert sim.duplicate_sends.total() == 1
    await sink.wait_for(guid, NT.MESSAGE_DELIVERED)
    assert len(sink.of(guid, NT.MESSAGE_SENT)) == 1


async def test_send_needs_an_online_instance(made, guid):
    sim, _sink = made()
    await sim.create_instance(guid, config={"simulator": {"auto_scan": False}})
    with pytest.raises(ProviderError) as err:
        await send(sim, guid, "n-" + guid)
    assert err.value.code == "NOT_ONLINE" and not err.value.retryable
    with pytest.raises(InstanceNotFound):
        await send(sim, "g-unknown", "n2-" + guid)
    assert sim.sent_messages == {}


async def test_seeded_failures_are_deterministic(made, guid):
    outcomes = []
    for _ in range(2):
        sim, sink = made(seed=7, send_failure_rate=0.5, delivery_delay_seconds=0)
        await login(sim, sink, guid)
        for i in range(20):
            await send(sim, guid, f"s{len(outcomes)}-{i}-{guid}")
        await sink.wait_for(guid, NT.MESSAGE_FAILED, count=1)
        await asyncio.sleep(0.05)
        await sim.drain()
        outcomes.append([r.outcome for r in sim.sent_messages.values()])
        await sim.close()
    assert outcomes[0] == outcomes[1]
    assert {"failed", "delivered"} == set(outcomes[0])


# ---- incoming -----------------------------------------------------------------------------------

async def test_incoming_message_and_conversation_change(made, guid):
    sim, sink = made()
    await login(sim, sink, guid)
    await sim.incoming_message(guid, "room-1", content="hello there", conversation_name="Room 1",
                               conversation_type="group", sender={"user_id": "u9", "name": "Nine"})
    got = await sink.wait_for(guid, NT.MESSAGE_RECEIVED)
    assert got.data["conversation_id"] == "room-1" and got.data["conversation_type"] == "group"
    assert got.data["content"] == {"text": "hello there"} and got.data["sender"]["user_id"] == "u9"
    await sim.conversation_changed(guid, "room-1", member_count=5)
    changed = await sink.wait_for(guid, NT.CONVERSATION_CHANGED)
    assert changed.data["member_count"] == 5
    await sim.disconnect(guid)
    with pytest.raises(ProviderError):
        await sim.incoming_message(guid, "room-1", content="late")


# ---- callback delivery and cleanup --------------------------------------------------------------

class FlakySink(CollectingSink):
    """A consumer that refuses the first `failures` deliveries."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.refused = 0

    async def deliver(self, callback: ProviderCallback) -> None:
        if self.refused < self.failures:
            self.refused += 1
            raise ConnectionError("ingest down")
        await super().deliver(callback)


async def test_callbacks_are_retried_when_the_sink_fails(made, guid):
    sink = FlakySink(failures=2)
    sim, _ = made(sink=sink)
    await login(sim, sink, guid)
    assert sink.refused == 2 and sim.callback_failures == 0
    assert sink.types(guid)[:4] == [NT.LOGIN_QR, NT.QR_SCANNED, NT.LOGIN_CONFIRMED, NT.ONLINE]


async def test_a_callback_is_given_up_after_max_attempts(made, guid):
    sink = FlakySink(failures=3)
    sim, _ = made(sink=sink, callback_max_attempts=3)
    await login(sim, sink, guid)  # LOGIN_QR is lost, the rest arrives
    assert sim.callback_failures == 1
    assert sink.types(guid)[:3] == [NT.QR_SCANNED, NT.LOGIN_CONFIRMED, NT.ONLINE]


async def test_close_cancels_every_background_task(made):
    sim, sink = made(delivery_delay_seconds=5, qr_ttl_seconds=30)
    guids = [f"g-close-{i}-{uuid.uuid4().hex}" for i in range(3)]
    for g in guids[:2]:
        await login(sim, sink, g, disconnect_after_seconds=30)
    await send(sim, guids[0], "c-" + guids[0])  # its delivery waits 5 s
    await sim.create_instance(guids[2], config={"simulator": {"auto_scan": False}})
    await sim.get_login_qr(guids[2])  # its expiry waits 30 s
    names = {t.get_name() for t in sim.active_tasks()}
    assert {f"{sim.label}:{guids[0]}:heartbeat", f"{sim.label}:{guids[0]}:disconnect",
            f"{sim.label}:{guids[2]}:expiry", f"{sim.label}:callbacks"} <= names
    assert any(":message:" in n for n in names)

    await sim.close()
    assert sim.active_tasks() == []
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith(sim.label)] == []
    with pytest.raises(ProviderError) as err:
        await sim.check_liveness(guids[0])
    assert err.value.code == "PROVIDER_CLOSED"
    await sim.close()  # idempotent
