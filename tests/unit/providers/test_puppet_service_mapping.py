"""The puppet_service provider's pure parts: settings, token rules, event and send mapping, the
ownership split. (The adapter itself is tested against the reference server in
tests/integration/test_provider_puppet_service.py.)"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from wework.domain.accounts import Account, validate_account
from wework.domain.errors import InvalidArgument
from wework.server.providers.base import NotifyType
from wework.server.providers.factory import create_provider
from wework.server.providers.puppet_service import mapping
from wework.server.providers.puppet_service.adapter import PuppetServiceProvider, token_sni, uses_tls
from wework.server.providers.puppet_service.config import PuppetServiceConfig
from wework.server.providers.sinks import CollectingSink
from wework.server.settings import Settings
from wework.server.workers.puppet_ownership import rendezvous_owner

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=120)


async def test_the_kind_and_its_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("WEWORK_PROVIDER__KIND", "puppet_service")
    monkeypatch.setenv("WEWORK_PROVIDER__PUPPET_SERVICE__ENDPOINT", "grpc.provider.example:8788")
    monkeypatch.setenv("WEWORK_PROVIDER__PUPPET_SERVICE__SERVER_NAME", "insecure")
    settings = Settings()

    async def tokens(guid: str) -> str | None:
        return None

    provider = create_provider(settings.provider, CollectingSink(), tokens)
    try:
        assert isinstance(provider, PuppetServiceProvider)
        assert provider.config.endpoint == "grpc.provider.example:8788" and provider.config.tls
    finally:
        await provider.close()


def test_the_default_stays_the_simulator():
    assert Settings().provider.kind == "simulator"


def test_tls_and_the_server_name_follow_the_token_convention():
    config = PuppetServiceConfig()
    assert uses_tls(config, "puppet_workpro_abc") and not uses_tls(config, "insecure_abc")
    assert not uses_tls(PuppetServiceConfig(tls=False), "puppet_workpro_abc")
    assert token_sni("puppet_workpro_ABC") == "puppet_workpro" and token_sni("nounderscore") is None


def test_the_token_is_validated_without_being_repeated_and_never_in_a_repr():
    secret = "puppet_workpro_" + "x" * 300
    with pytest.raises(InvalidArgument) as caught:
        validate_account({"account_name": "a", "provider_token": secret}, creating=True)
    assert [v.field for v in caught.value.violations] == ["account.provider_token"]
    assert secret not in str(caught.value.violations)
    validate_account({"account_name": "a", "provider_token": "puppet_workpro_ok"}, creating=True)
    assert "puppet_workpro_ok" not in repr(Account(id="1", tenant_id="t", account_name="a",
                                                   provider_token="puppet_workpro_ok"))


@pytest.mark.parametrize(("status", "notify"), [
    (mapping.SCAN_SCANNED, NotifyType.QR_SCANNED), (mapping.SCAN_CONFIRMED, NotifyType.LOGIN_CONFIRMED),
    (mapping.SCAN_TIMEOUT, NotifyType.QR_EXPIRED), (mapping.SCAN_CANCEL, NotifyType.LOGIN_FAILED),
])
def test_scan_statuses_map_to_login_callbacks(status, notify):
    assert mapping.scan_callback({"status": status, "qrcode": "x"}, NOW, TTL)[0] is notify


def test_a_waiting_scan_is_the_qr_code():
    notify, data = mapping.scan_callback({"status": mapping.SCAN_WAITING, "qrcode": "https://q.example/1"}, NOW, TTL)
    assert notify is NotifyType.LOGIN_QR
    assert data == {"qr_code_url": "https://q.example/1", "qr_payload": "https://q.example/1",
                    "expire_time": "2026-12-07T12:02:00Z"}
    _, raw = mapping.scan_callback({"status": mapping.SCAN_WAITING, "qrcode": "raw-code"}, NOW, TTL)
    assert raw["qr_code_url"] == "" and raw["qr_payload"] == "raw-code"


def test_contents_the_protocol_cannot_carry_are_refused():
    for kind, content in [("image", {"media_id": "m"}), ("at", {"text": "x", "at_all": True}),
                          ("voice", {"url": "https://a"}), ("contact_card", {})]:
        with pytest.raises(mapping.UnsupportedContent):
            mapping.send_request("c", kind, content)


def test_a_file_box_by_url_takes_its_name_from_the_url():
    assert '"name":"a.pdf"' in mapping.file_box_json("https://x.example/docs/a.pdf", "")
    assert '"name":"b.pdf"' in mapping.file_box_json("https://x.example/docs/a.pdf", "b.pdf")


def test_rendezvous_splits_accounts_evenly_and_moves_only_a_leavers_share():
    guids = [f"wg_{i}" for i in range(3000)]
    three = ["m-a", "m-b", "m-c"]
    before = {g: rendezvous_owner(three, g) for g in guids}
    counts = Counter(before.values())
    assert all(800 < n < 1200 for n in counts.values()), counts
    after = {g: rendezvous_owner(["m-a", "m-c"], g) for g in guids}
    moved = [g for g in guids if before[g] != after[g]]
    assert moved and all(before[g] == "m-b" for g in moved)
    assert rendezvous_owner([], "wg_1") is None
