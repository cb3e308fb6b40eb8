"""ClientOptions and the service config: it parses and covers every wework.v1 service."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool
from wework.client import ClientOptions, config

PROTO_DIR = Path(__file__).resolve().parents[3] / "protos" / "wework" / "v1"


def services_in_protos() -> set[str]:
    names = set()
    for proto in PROTO_DIR.glob("*.proto"):
        names |= {f"wework.v1.{m}" for m in re.findall(r"^service\s+(\w+)", proto.read_text(), re.MULTILINE)}
    return names


def services_in_descriptor_pool() -> set[str]:
    config.wework_service_names()  # imports every generated wework.v1 module
    pool = descriptor_pool.Default()
    names = set()
    for proto in PROTO_DIR.glob("*.proto"):
        file_descriptor = pool.FindFileByName(f"wework/v1/{proto.name}")
        names |= {s.full_name for s in file_descriptor.services_by_name.values()}
    return names


def test_service_config_parses_and_names_every_wework_service() -> None:
    parsed = json.loads(config.service_config_json())
    assert parsed["loadBalancingConfig"] == [{"round_robin": {}}]
    (method_config,) = parsed["methodConfig"]
    named = {n["service"] for n in method_config["name"]}
    assert "wework.v1.TenantService" in named
    assert named == services_in_protos() == services_in_descriptor_pool()
    # Retries are the client's (retry=), which know what is safe to repeat: a channel retry
    # policy would multiply their attempts.
    assert "retryPolicy" not in method_config


def test_channel_options() -> None:
    options = dict(ClientOptions("dns:///wework:50051", max_message_bytes=1024, user_agent="billing/2").grpc_channel_options())
    assert json.loads(options["grpc.service_config"])["loadBalancingConfig"] == [{"round_robin": {}}]
    assert options["grpc.enable_retries"] == 1
    # The server allows a ping without data at most every 30 s.
    assert options["grpc.keepalive_time_ms"] >= 30_000
    assert options["grpc.keepalive_permit_without_calls"] == 0
    assert options["grpc.max_receive_message_length"] == options["grpc.max_send_message_length"] == 1024
    assert options["grpc.primary_user_agent"] == "billing/2"

    overridden = dict(ClientOptions("x:1", channel_options=[("grpc.keepalive_time_ms", 120_000)]).grpc_channel_options())
    assert overridden["grpc.keepalive_time_ms"] == 120_000


def test_credential_metadata() -> None:
    assert ClientOptions("x:1").credential_metadata() == ()
    assert ClientOptions("x:1", access_token="t", tenant_id="9").credential_metadata() == (
        ("authorization", "Bearer t"),
        ("x-wework-tenant", "9"),
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"target": ""}, {"api_key": "k", "access_token": "t"}, {"timeout": 0}, {"max_message_bytes": 0}],
)
def test_invalid_options(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ClientOptions(**{"target": "x:1", **kwargs})


def test_secure_channels_are_created() -> None:
    for secure in (True, b"-----BEGIN CERTIFICATE-----\n"):
        ClientOptions("x:443", secure=secure).create_channel().close()
