"""Every RPC of every service in protos/wework/v1 has a method in both clients, of the right
kind, read from the .proto sources (not from the generated code it checks)."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest
from wework.client import AsyncWeworkClient, WeworkClient
from wework.client._base import service_attribute, snake_case

PROTO_DIR = Path(__file__).resolve().parents[3] / "protos" / "wework" / "v1"
RPC = re.compile(r"^\s*rpc\s+(\w+)\s*\(\s*(stream\s+)?[\w.]+\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)\s*\)",
                 re.MULTILINE)


def rpcs_in_protos() -> list[tuple[str, str, bool, bool, str]]:
    """(service, rpc, client streaming, server streaming, response type) of every rpc."""
    found = []
    for proto in sorted(PROTO_DIR.glob("*.proto")):
        text = re.sub(r"//.*", "", proto.read_text())
        for service, body in re.findall(r"^service\s+(\w+)\s*\{(.*?)^\}", text, re.MULTILINE | re.DOTALL):
            for name, client_stream, server_stream, response in RPC.findall(body):
                found.append((service, name, bool(client_stream), bool(server_stream), response))
    return found


RPCS = rpcs_in_protos()


def test_the_protos_were_read() -> None:
    services = {service for service, *_ in RPCS}
    assert {"TenantService", "AccountService", "MessageService"} <= services and len(RPCS) > 60


@pytest.mark.parametrize(("service", "rpc", "client_stream", "server_stream", "response"), RPCS,
                         ids=[f"{s}.{r}" for s, r, *_ in RPCS])
def test_every_rpc_has_a_method_in_both_clients(service: str, rpc: str, client_stream: bool,
                                                 server_stream: bool, response: str) -> None:
    attribute = service_attribute(service)
    sync_method = getattr(service_class(WeworkClient, attribute), snake_case(rpc))
    async_method = getattr(service_class(AsyncWeworkClient, attribute), snake_case(rpc))
    assert not inspect.iscoroutinefunction(sync_method)
    # asyncio: unary answers and client streams are awaited; server streams are async iterators.
    assert inspect.iscoroutinefunction(async_method) is (not server_stream)
    assert (sync_method.__doc__ or "").startswith(f"{rpc}:")
    if rpc.startswith("List") and not server_stream and "page_token" in request_fields(rpc):
        iter_name = "iter_" + snake_case(rpc.removeprefix("List"))
        assert hasattr(service_class(WeworkClient, attribute), iter_name)
        assert hasattr(service_class(AsyncWeworkClient, attribute), iter_name)


def service_class(root: type, attribute: str) -> type:
    """The class of a root client's service attribute (a cached_property)."""
    return typing.get_type_hints(getattr(root, attribute).func)["return"]


def request_fields(rpc: str) -> str:
    text = "\n".join(p.read_text() for p in PROTO_DIR.glob("*.proto"))
    match = re.search(rf"rpc\s+{rpc}\s*\(\s*(?:stream\s+)?(\w+)", text)
    assert match
    body = re.search(rf"message\s+{match.group(1)}\s*\{{(.*?)^\}}", text, re.MULTILINE | re.DOTALL)
    return body.group(1) if body else ""
