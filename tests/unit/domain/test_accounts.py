"""The account state machine: every (from, to) pair, every trigger in every status, login and
recovery rules, validation. Pure domain code: no I/O."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from wework.domain.accounts import (
    ACCOUNT_DELETED,
    AUTO,
    CALLBACK_TRIGGERS,
    SYSTEM,
    TRANSITIONS,
    TRIGGERS,
    Account,
    AccountStatus,
    ConversationType,
    LoginPolicy,
    Operator,
    OperatorType,
    QrCode,
    RecoveryPolicy,
    Trigger,
    apply_trigger,
    claim_recovery,
    conversation_type_of,
    creation_change,
    decide_recovery,
    deletion_change,
    plan_transition,
    recovery_delay,
    validate_account,
    validate_conversation_update,
    validate_verification_code,
)
from wework.domain.errors import FailedPrecondition, InvalidArgument
from wework.server.providers.base import NotifyType

S = AccountStatus
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

# The table of docs/accounts.md, written out independently of the code: changing one without
# the other fails here.
EXPECTED_LEGAL = {
    (S.CREATED, S.LOGGING_IN),
    (S.LOGGING_IN, S.WAITING_SCAN), (S.LOGGING_IN, S.ONLINE), (S.LOGGING_IN, S.ERROR),
    (S.LOGGING_IN, S.OFFLINE),
    (S.WAITING_SCAN, S.WAITING_CONFIRM), (S.WAITING_SCAN, S.NEED_VERIFY), (S.WAITING_SCAN, S.ONLINE),
    (S.WAITING_SCAN, S.LOGGING_IN), (S.WAITING_SCAN, S.ERROR), (S.WAITING_SCAN, S.OFFLINE),
    (S.WAITING_CONFIRM, S.NEED_VERIFY), (S.WAITING_CONFIRM, S.ONLINE), (S.WAITING_CONFIRM, S.LOGGING_IN),
    (S.WAITING_CONFIRM, S.ERROR), (S.WAITING_CONFIRM, S.OFFLINE),
    (S.NEED_VERIFY, S.ONLINE), (S.NEED_VERIFY, S.ERROR), (S.NEED_VERIFY, S.OFFLINE),
    (S.ONLINE, S.OFFLINE),
    (S.OFFLINE, S.LOGGING_IN), (S.OFFLINE, S.RECOVERING),
    (S.RECOVERING, S.ONLINE), (S.RECOVERING, S.ERROR), (S.RECOVERING, S.OFFLINE),
    (S.ERROR, S.LOGGING_IN),
}


def _account(status: AccountStatus = S.CREATED, **fields) -> Account:
    return Account(id="acc-1", tenant_id="ten-1", account_name="a", guid="g-1", status=status, version=3,
                   **fields)


def test_there_are_the_nine_statuses_of_the_design():
    assert [s.value for s in S] == ["created", "logging_in", "waiting_scan", "waiting_confirm", "need_verify",
                                    "online", "offline", "error", "recovering"]
    assert set(TRANSITIONS) == set(S)


def test_the_transition_table_is_the_documented_one():
    actual = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert actual == EXPECTED_LEGAL


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)), ids=lambda s: s.value)
def test_every_pair_is_either_applied_with_history_or_refused_without_change(old, new):
    account = _account(old)
    before = replace(account)
    op = Operator.user("key-7")
    if (old, new) in EXPECTED_LEGAL:
        t = plan_transition(account, new, reason="why", now=NOW, operator=op, history_error="e",
                            extra={"k": 1})
        assert t.account.status is new and t.account.version == 4 and t.account.updated_at == NOW
        c = t.change
        assert (c.old_status, c.new_status, c.reason, c.error_message, c.extra_data) == (
            old.value, new.value, "why", "e", {"k": 1})
        assert (c.operator.type, c.operator.id, c.account_id, c.tenant_id, c.created_at) == (
            OperatorType.USER, "key-7", "acc-1", "ten-1", NOW)
    else:
        with pytest.raises(FailedPrecondition) as err:
            plan_transition(account, new, reason="why", now=NOW, operator=op)
        (violation,) = err.value.violations
        assert (violation.type, violation.subject) == ("STATUS", "accounts/acc-1")
        assert old.value in violation.description
    assert account == before  # the input is never changed


def test_every_trigger_target_is_a_legal_transition():
    for trigger, (sources, target) in TRIGGERS.items():
        for source in sources:
            assert (source, target) in EXPECTED_LEGAL, (trigger, source)
    # QR_EXPIRED may also end the login in ERROR.
    for source in TRIGGERS[Trigger.QR_EXPIRED][0]:
        assert (source, S.ERROR) in EXPECTED_LEGAL


def _apply(account: Account, trigger: Trigger, **kw):
    if trigger is Trigger.QR_READY:
        kw.setdefault("qr", QrCode("https://qr/1.png", "payload-1", NOW + timedelta(seconds=60)))
    return apply_trigger(account, trigger, now=NOW, **kw)


@pytest.mark.parametrize(("trigger", "status"), list(itertools.product(Trigger, S)),
                         ids=lambda x: x.value)
def test_every_trigger_in_every_status(trigger, status):
    sources, target = TRIGGERS[trigger]
    account = _account(status)
    if status in sources:
        t = _apply(account, trigger)
        assert t.account.status is target and t.change.reason == trigger.value
    else:
        with pytest.raises(FailedPrecondition) as err:
            _apply(account, trigger)
        assert err.value.violations[0].type == "STATUS"


def test_callback_triggers_name_real_notify_types():
    assert set(CALLBACK_TRIGGERS) <= set(NotifyType.__members__)
    # Every status-changing provider callback is mapped.
    assert set(CALLBACK_TRIGGERS) == {"LOGIN_QR", "QR_SCANNED", "NEED_VERIFY", "ONLINE", "OFFLINE",
                                      "LOGGED_OUT", "QR_EXPIRED", "LOGIN_FAILED"}


def test_qr_login_walk_to_online_sets_login_fields():
    a = _account(S.CREATED, login_retry_count=2, error_message="old", next_recovery_at=NOW)
    a = apply_trigger(a, Trigger.START_LOGIN, now=NOW, operator=Operator.user("u")).account
    assert (a.status, a.login_retry_count, a.error_message, a.next_recovery_at) == (S.LOGGING_IN, 0, None, None)
    t = _apply(a, Trigger.QR_READY)
    a = t.account
    assert (a.status, a.qr_payload, a.qr_code_url) == (S.WAITING_SCAN, "payload-1", "https://qr/1.png")
    assert t.change.extra_data == {"qr_expire_time": (NOW + timedelta(seconds=60)).isoformat()}
    a = apply_trigger(a, Trigger.QR_SCANNED, now=NOW).account
    assert a.status is S.WAITING_CONFIRM and a.qr_payload == "payload-1"
    a = apply_trigger(a, Trigger.ONLINE, now=NOW, user_info={"name": "x"}, login_token="tok").account
    assert (a.status, a.user_info, a.login_token, a.last_login_time, a.last_heartbeat_time, a.qr_payload) == (
        S.ONLINE, {"name": "x"}, "tok", NOW, NOW, None)


def test_qr_expiry_refreshes_up_to_the_limit_then_errors():
    policy = LoginPolicy(max_qr_refreshes=2)
    a = _account(S.WAITING_SCAN, qr_payload="p")
    for expected in (1, 2):
        t = apply_trigger(a, Trigger.QR_EXPIRED, now=NOW, login_policy=policy)
        assert (t.account.status, t.account.login_retry_count, t.account.qr_payload) == (
            S.LOGGING_IN, expected, None)
        a = _apply(t.account, Trigger.QR_READY).account
    t = apply_trigger(a, Trigger.QR_EXPIRED, now=NOW, login_policy=policy)
    assert t.account.status is S.ERROR and "expired 3 time(s)" in t.account.error_message
    assert t.change.new_status == "error" and t.change.reason == "qr_expired"


def test_loss_of_connection_schedules_recovery_but_logout_does_not():
    online = _account(S.ONLINE, login_token="tok")
    for trigger in (Trigger.CONNECTION_LOST, Trigger.HEARTBEAT_TIMEOUT):
        a = apply_trigger(online, trigger, now=NOW).account
        assert (a.status, a.next_recovery_at, a.recovery_attempts, a.login_token) == (S.OFFLINE, NOW, 0, "tok")
    for trigger in (Trigger.LOGOUT, Trigger.LOGGED_OUT):
        a = apply_trigger(online, trigger, now=NOW).account
        assert (a.status, a.next_recovery_at, a.login_token) == (S.OFFLINE, None, None)


def test_recovery_backoff_schedule():
    p = RecoveryPolicy(max_attempts=5, backoff_initial=timedelta(seconds=5), backoff_max=timedelta(seconds=30))
    assert [recovery_delay(n, p).total_seconds() for n in range(7)] == [0, 5, 10, 20, 30, 30, 30]


def test_recovery_claim_then_success_keeps_last_login_time():
    p = RecoveryPolicy(max_attempts=3, lease=timedelta(seconds=30))
    earlier = NOW - timedelta(days=1)
    a = apply_trigger(_account(S.ONLINE, last_login_time=earlier), Trigger.HEARTBEAT_TIMEOUT, now=NOW).account
    claim = claim_recovery(a, NOW, p)
    assert claim.change is not None and (claim.change.old_status, claim.change.new_status) == ("offline",
                                                                                               "recovering")
    assert claim.change.operator == AUTO
    c = claim.account
    assert (c.status, c.recovery_attempts, c.next_recovery_at) == (S.RECOVERING, 1, NOW + timedelta(seconds=30))
    out = decide_recovery(c, online=True, recoverable=None, detail=None, now=NOW, policy=p)
    assert out.change is not None and out.change.reason == "recovered"
    assert (out.account.status, out.account.last_login_time, out.account.recovery_attempts,
            out.account.next_recovery_at) == (S.ONLINE, earlier, 0, None)


def test_recovery_retries_with_backoff_then_gives_up():
    p = RecoveryPolicy(max_attempts=2, backoff_initial=timedelta(seconds=5))
    a = apply_trigger(_account(S.ONLINE), Trigger.CONNECTION_LOST, now=NOW).account
    claim = claim_recovery(a, NOW, p)
    out = decide_recovery(claim.account, online=False, recoverable=True, detail="RECONNECT_FAILED", now=NOW,
                          policy=p)
    assert out.change is None and out.account.status is S.RECOVERING
    assert out.account.next_recovery_at == NOW + timedelta(seconds=5)
    second = claim_recovery(out.account, NOW, p)
    assert second.change is None and second.account.recovery_attempts == 2  # no history for a retry
    out = decide_recovery(second.account, online=False, recoverable=True, detail="RECONNECT_FAILED", now=NOW,
                          policy=p)
    assert out.account.status is S.ERROR and out.change.reason == "recovery_exhausted"
    assert "2 time(s)" in out.account.error_message and out.account.next_recovery_at is None


def test_recovery_refused_by_the_provider_errors_at_once():
    p = RecoveryPolicy(max_attempts=5)
    claim = claim_recovery(apply_trigger(_account(S.ONLINE), Trigger.CONNECTION_LOST, now=NOW).account, NOW, p)
    out = decide_recovery(claim.account, online=False, recoverable=False, detail="SESSION_LOST", now=NOW, policy=p)
    assert out.account.status is S.ERROR and out.change.reason == "recovery_refused"
    assert out.change.extra_data == {"attempt": 1, "provider_reason": "SESSION_LOST"}


def test_claim_needs_a_scheduled_recovery():
    logged_out = apply_trigger(_account(S.ONLINE), Trigger.LOGOUT, now=NOW).account
    with pytest.raises(FailedPrecondition):
        claim_recovery(logged_out, NOW, RecoveryPolicy())


def test_creation_and_deletion_entries():
    a = _account(S.ONLINE)
    assert creation_change(replace(a, status=S.CREATED), SYSTEM, NOW).old_status is None
    d = deletion_change(a, Operator.user("u"), NOW)
    assert (d.old_status, d.new_status, d.reason) == ("online", ACCOUNT_DELETED, "deleted")


@pytest.mark.parametrize(
    ("values", "paths"),
    [
        ({"account_name": ""}, ["account.account_name"]),
        ({"account_name": " padded "}, ["account.account_name"]),
        ({"account_name": "x" * 101}, ["account.account_name"]),
        ({"account_name": "ok", "phone": "12ab"}, ["account.phone"]),
        ({"account_name": "ok", "email": "nope"}, ["account.email"]),
        ({"account_name": "ok", "user_id": "u" * 37}, ["account.user_id"]),
        ({"account_name": "ok", "config": {"simulator": 3}}, ["account.config"]),
        ({"account_name": "", "phone": "x", "email": "y"}, ["account.account_name", "account.phone",
                                                             "account.email"]),
    ],
)
def test_account_validation_names_every_bad_field(values, paths):
    with pytest.raises(InvalidArgument) as err:
        validate_account(values, creating=True)
    assert [v.field for v in err.value.violations] == paths


def test_valid_account_and_partial_update_pass():
    validate_account({"account_name": "Sales 1", "phone": "+8613800000000", "email": "a@b.cn",
                      "config": {"simulator": {"auto_scan": False}}}, creating=True)
    validate_account({"phone": "+12345"}, creating=False)


def test_verification_code_and_conversation_rules():
    validate_verification_code("123456")
    for bad in ("", " 1", "x" * 33):
        with pytest.raises(InvalidArgument):
            validate_verification_code(bad)
    validate_conversation_update({"tags": ["a", "b"], "unread_count": 0}, ["tags", "unread_count"])
    with pytest.raises(InvalidArgument) as err:
        validate_conversation_update({"tags": ["a", "a", ""], "unread_count": 3},
                                     ["tags", "unread_count", "conversation_name"])
    assert sorted({v.field for v in err.value.violations}) == [
        "conversation.tags", "conversation.tags[2]", "conversation.unread_count", "update_mask"]
    assert conversation_type_of("single") is ConversationType.PRIVATE
    assert conversation_type_of("group") is ConversationType.GROUP
