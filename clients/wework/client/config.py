"""Client options and the gRPC channel they describe.

The channel carries a service config that balances calls over every resolved
address (round_robin: gRPC pins one HTTP/2 connection otherwise, so a
`dns:///` target naming a headless Service would send everything to one pod).
Retries are the client's (`retry=`, wework.client.Retry): they know which methods are
safe to repeat and honour the server's RetryInfo, which a channel retry policy cannot.
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata as _metadata
from typing import Any

import grpc
import grpc.aio

from .tracing import aio_interceptors, sync_interceptors

# Same limit as the server's default (server.max_message_bytes).
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# The server lets clients ping at most every 30 s without data
# (grpc.http2.min_ping_interval_without_data_ms); pinging more often gets the
# connection closed with GOAWAY "too_many_pings". 60 s leaves a margin, and no
# pings without calls, so idle connections never count as abusive.
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
)


def _version() -> str:
    # wework-client alone, or inside the server's wework-platform (the monorepo's install).
    for distribution in ("wework-client", "wework-platform"):
        try:
            return _metadata.version(distribution)
        except _metadata.PackageNotFoundError:
            continue
    return "0"


DEFAULT_USER_AGENT = f"wework-client-python/{_version()}"


@dataclass(frozen=True)
class ClientOptions:
    """How to reach the platform and who the caller is.

    target: a gRPC target, e.g. "dns:///wework-tenant-headless.ns.svc:50051".
    api_key: an API key or the platform-admin key (sent as `x-api-key`).
    access_token: a token from TenantService.Login (sent as `authorization: Bearer`).
    token_provider: instead of a fixed access_token, a callable returning the current one
        (a coroutine function is awaited by the asyncio client). It is called before every
        attempt, so it can refresh an expiring token; after an UNAUTHENTICATED answer it is
        asked once more and the call repeated when it returns another token.
    tenant_id: the tenant a platform admin acts in (sent as `x-wework-tenant`).
    timeout: default deadline of each call in seconds; None for no deadline.
    secure: False for plaintext, True for TLS with the system roots, or PEM root
        certificates (bytes) for TLS with a private CA.
    max_message_bytes: send and receive limit.
    user_agent: prefix of the HTTP/2 user-agent.
    channel_options: extra gRPC channel arguments; they override the defaults.
    """

    target: str
    api_key: str | None = None
    access_token: str | None = None
    token_provider: Callable[[], Any] | None = None
    tenant_id: str | None = None
    timeout: float | None = 10.0
    secure: bool | bytes = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    user_agent: str = DEFAULT_USER_AGENT
    channel_options: Sequence[tuple[str, Any]] = field(default=())

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError("target is required")
        if sum(1 for c in (self.api_key, self.access_token, self.token_provider) if c) > 1:
            # The server authenticates one credential; sending both is ambiguous.
            raise ValueError("give one of api_key, access_token or token_provider")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive or None")
        if self.max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")

    def credential_metadata(self) -> tuple[tuple[str, str], ...]:
        """The per-call metadata that carries a fixed credential and the tenant.

        Plain metadata rather than grpc call credentials: those are refused on
        plaintext channels, and in-cluster traffic is often plaintext.
        """
        md: list[tuple[str, str]] = []
        if self.api_key:
            md.append(("x-api-key", self.api_key))
        if self.access_token:
            md.append(("authorization", f"Bearer {self.access_token}"))
        if self.tenant_id:
            md.append(("x-wework-tenant", self.tenant_id))
        return tuple(md)

    def grpc_channel_options(self) -> list[tuple[str, Any]]:
        """Every channel argument: service config, retries, keepalive, limits, UA."""
        merged: dict[str, Any] = {
            "grpc.service_config": service_config_json(),
            # Ignore service configs published in DNS TXT records: ours must apply.
            "grpc.service_config_disable_resolution": 1,
            "grpc.enable_retries": 1,
            **dict(KEEPALIVE_OPTIONS),
            "grpc.max_send_message_length": self.max_message_bytes,
            "grpc.max_receive_message_length": self.max_message_bytes,
            "grpc.primary_user_agent": self.user_agent,
        }
        merged.update(dict(self.channel_options))
        return list(merged.items())

    def _channel_credentials(self) -> grpc.ChannelCredentials | None:
        if self.secure is False:
            return None
        roots = self.secure if isinstance(self.secure, bytes) else None
        return grpc.ssl_channel_credentials(root_certificates=roots)

    def create_channel(self) -> grpc.Channel:
        """The blocking channel; it propagates the caller's trace when OpenTelemetry is installed."""
        creds = self._channel_credentials()
        options = self.grpc_channel_options()
        if creds is None:
            channel = grpc.insecure_channel(self.target, options=options)
        else:
            channel = grpc.secure_channel(self.target, creds, options=options)
        interceptors = sync_interceptors()
        return grpc.intercept_channel(channel, *interceptors) if interceptors else channel

    def create_aio_channel(self) -> grpc.aio.Channel:
        """The grpc.aio channel; it propagates the caller's trace when OpenTelemetry is installed."""
        creds = self._channel_credentials()
        options = self.grpc_channel_options()
        interceptors = aio_interceptors() or None
        if creds is None:
            return grpc.aio.insecure_channel(self.target, options=options, interceptors=interceptors)
        return grpc.aio.secure_channel(self.target, creds, options=options, interceptors=interceptors)


@functools.cache
def wework_service_names() -> tuple[str, ...]:
    """Full names of every service in the generated wework.v1 modules.

    Read from the generated descriptors rather than listed by hand, so a new
    service is covered as soon as its code is generated.
    """
    import wework.v1 as api  # PEP 420 namespace package of the generated code

    names: set[str] = set()
    for module in pkgutil.iter_modules(api.__path__):
        if module.name.endswith("_pb2"):
            file_descriptor = importlib.import_module(f"{api.__name__}.{module.name}").DESCRIPTOR
            names.update(s.full_name for s in file_descriptor.services_by_name.values())
    return tuple(sorted(names))


def service_config(services: Sequence[str] | None = None) -> dict[str, Any]:
    """The gRPC service config: round_robin, and wait_for_ready off for every service.

    No retryPolicy: a channel that retried too would multiply the client's attempts.
    """
    names = wework_service_names() if services is None else tuple(services)
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [{"name": [{"service": name} for name in names], "waitForReady": False}],
    }


@functools.cache
def service_config_json() -> str:
    return json.dumps(service_config(), separators=(",", ":"))
